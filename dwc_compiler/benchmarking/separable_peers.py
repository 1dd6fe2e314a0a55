"""A MobileNet block (depthwise -> bias -> ReLU6 -> pointwise -> bias) as each library runs it.

Each peer is set up in its own best configuration and layout and timed on its whole call:
dwc's fused ``separable_conv2d`` (NHWC and NCHW, plain NumPy arrays), PyTorch (two ``conv2d``
calls and a ReLU6, NCHW and channels_last), ONNX Runtime (a ``Conv`` group + ``Clip`` + ``Conv``
graph, which its optimizer fuses to two kernels), TensorFlow (the same ops in a ``tf.function``)
and XNNPACK through LiteRT (the block converted to TFLite, where the bias and ReLU6 fuse into
the convolutions). Every peer is optional: a missing library is skipped and said so.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any, Callable

import numpy as np

from ..ops.separable import SeparableSpec


@dataclasses.dataclass(frozen=True)
class BlockArrays:
    """One block's arrays in TF's layouts: NHWC input (and its NCHW copy), ``[KH, KW, C, 1]``
    depthwise filter, ``[1, 1, C, O]`` pointwise filter, and both biases."""

    nhwc: np.ndarray
    nchw: np.ndarray
    depthwise_filter: np.ndarray
    depthwise_bias: np.ndarray
    pointwise_filter: np.ndarray
    pointwise_bias: np.ndarray


def block_arrays(spec: SeparableSpec, seed: int = 0) -> BlockArrays:
    """Random arrays for `spec` (NHWC), allocated as NumPy allocates them (no realignment)."""
    rng = np.random.default_rng(seed)
    depthwise = spec.depthwise
    nhwc = rng.random(depthwise.input_shape).astype(np.float32)
    return BlockArrays(nhwc, np.ascontiguousarray(nhwc.transpose(0, 3, 1, 2)),
                       rng.standard_normal(depthwise.filter_shape).astype(np.float32) / 3,
                       rng.standard_normal(spec.depthwise_channels).astype(np.float32),
                       rng.standard_normal(spec.pointwise_filter_shape).astype(np.float32) / 8,
                       rng.standard_normal(spec.out_channels).astype(np.float32))


# name -> (library module, setup(spec, arrays) -> (call, result as NHWC NumPy))
Setup = Callable[[SeparableSpec, BlockArrays], tuple[Callable[[], Any], Callable[[Any], np.ndarray]]]


def _dwc(data_format: str) -> Setup:
    def setup(spec, arrays):
        import dwc_compiler as dwc

        data = arrays.nhwc if data_format == "NHWC" else arrays.nchw
        strides = list(spec.depthwise.strides)

        def call():
            return dwc.separable_conv2d(data, arrays.depthwise_filter, arrays.pointwise_filter, strides, "SAME",
                                        data_format, depthwise_bias=arrays.depthwise_bias,
                                        depthwise_activation="relu6", pointwise_bias=arrays.pointwise_bias)

        to_nhwc = (lambda out: out) if data_format == "NHWC" else (lambda out: out.transpose(0, 2, 3, 1))
        return call, to_nhwc

    return setup


def _torch(channels_last: bool) -> Setup:
    def setup(spec, arrays):
        import torch
        import torch.nn.functional as functional

        depthwise = spec.depthwise
        data = torch.from_numpy(arrays.nchw)
        if channels_last:
            data = data.contiguous(memory_format=torch.channels_last)
        depthwise_weight = torch.from_numpy(np.ascontiguousarray(arrays.depthwise_filter.transpose(2, 3, 0, 1)))
        pointwise_weight = torch.from_numpy(np.ascontiguousarray(arrays.pointwise_filter[0, 0].T))[:, :, None, None]
        if channels_last:
            pointwise_weight = pointwise_weight.contiguous(memory_format=torch.channels_last)
        depthwise_bias = torch.from_numpy(arrays.depthwise_bias)
        pointwise_bias = torch.from_numpy(arrays.pointwise_bias)
        top, bottom, left, right = depthwise.pads
        symmetric = top == bottom and left == right

        def call():
            with torch.inference_mode():
                source = data if symmetric else functional.pad(data, (left, right, top, bottom))
                middle = functional.conv2d(source, depthwise_weight, depthwise_bias, depthwise.strides,
                                           (top, left) if symmetric else 0, 1, depthwise.in_channels)
                return functional.conv2d(functional.relu6(middle), pointwise_weight, pointwise_bias)

        return call, lambda out: out.contiguous().numpy().transpose(0, 2, 3, 1)

    return setup


def _onnxruntime(spec, arrays):
    import onnxruntime
    from onnx import TensorProto, helper, numpy_helper

    depthwise = spec.depthwise
    top, bottom, left, right = depthwise.pads
    grouped = np.ascontiguousarray(arrays.depthwise_filter.transpose(2, 3, 0, 1))
    nodes = [helper.make_node("Conv", ["X", "W1", "B1"], ["D"], group=depthwise.in_channels,
                              strides=list(depthwise.strides), pads=[top, left, bottom, right], kernel_shape=[3, 3]),
             helper.make_node("Clip", ["D", "lo", "hi"], ["R"]),
             helper.make_node("Conv", ["R", "W2", "B2"], ["Y"], kernel_shape=[1, 1])]
    initializers = [numpy_helper.from_array(grouped, "W1"), numpy_helper.from_array(arrays.depthwise_bias, "B1"),
                    numpy_helper.from_array(np.array(0, np.float32), "lo"),
                    numpy_helper.from_array(np.array(6, np.float32), "hi"),
                    numpy_helper.from_array(np.ascontiguousarray(arrays.pointwise_filter[0, 0].T)[:, :, None, None],
                                            "W2"),
                    numpy_helper.from_array(arrays.pointwise_bias, "B2")]
    graph = helper.make_graph(nodes, "block", [helper.make_tensor_value_info("X", TensorProto.FLOAT,
                                                                              list(arrays.nchw.shape))],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)], initializer=initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9  # what ONNX Runtime reads; newer onnx packages write newer IR
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    session = onnxruntime.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    feed = {"X": arrays.nchw}
    return (lambda: session.run(None, feed)[0]), (lambda out: out.transpose(0, 2, 3, 1))


def _tf_block(tf, spec, arrays):
    depthwise_filter, pointwise_filter = tf.constant(arrays.depthwise_filter), tf.constant(arrays.pointwise_filter)
    depthwise_bias, pointwise_bias = tf.constant(arrays.depthwise_bias), tf.constant(arrays.pointwise_bias)
    strides = [1, *spec.depthwise.strides, 1]

    def block(x):
        middle = tf.nn.relu6(tf.nn.bias_add(tf.nn.depthwise_conv2d(x, depthwise_filter, strides, "SAME"),
                                            depthwise_bias))
        return tf.nn.bias_add(tf.nn.conv2d(middle, pointwise_filter, 1, "VALID"), pointwise_bias)

    return block


def _configure_tensorflow(tf) -> None:
    try:
        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # already initialized in this process with these settings
        pass


def _tensorflow(spec, arrays):
    import tensorflow as tf

    _configure_tensorflow(tf)
    block = tf.function(_tf_block(tf, spec, arrays))
    data = tf.constant(arrays.nhwc)
    return (lambda: block(data)), (lambda out: out.numpy())


def _litert(spec, arrays):
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    _configure_tensorflow(tf)
    block = tf.function(_tf_block(tf, spec, arrays), input_signature=[tf.TensorSpec(arrays.nhwc.shape, tf.float32)])
    converter = tf.lite.TFLiteConverter.from_concrete_functions([block.get_concrete_function()], block)
    interpreter = Interpreter(model_content=converter.convert(), num_threads=1)
    interpreter.allocate_tensors()
    input_index = interpreter.get_input_details()[0]["index"]
    output_index = interpreter.get_output_details()[0]["index"]

    def call():
        interpreter.set_tensor(input_index, arrays.nhwc)
        interpreter.invoke()
        return interpreter.get_tensor(output_index)

    return call, lambda out: out


PEERS: dict[str, tuple[str, Setup]] = {
    "dwc NHWC": ("dwc_compiler", _dwc("NHWC")),
    "dwc NCHW": ("dwc_compiler", _dwc("NCHW")),
    "torch NCHW": ("torch", _torch(channels_last=False)),
    "torch channels_last": ("torch", _torch(channels_last=True)),
    "onnxruntime": ("onnxruntime", _onnxruntime),
    "tensorflow": ("tensorflow", _tensorflow),
    "xnnpack-litert": ("ai_edge_litert", _litert),
}


def available_peers() -> tuple[dict[str, Setup], dict[str, str]]:
    """(the peers whose library imports here, {peer: why not} for the others)."""
    ready, missing = {}, {}
    for name, (module, setup) in PEERS.items():
        try:
            importlib.import_module(module)
        except Exception as exc:  # ImportError, or a broken install
            missing[name] = f"{module}: {type(exc).__name__}"
        else:
            ready[name] = setup
    return ready, missing
