"""The implementations dwc is measured against, each called the way its users call it.

Every peer gets the layer in its own preferred layout (converted before timing) and is timed on
its whole call: PyTorch's ``conv2d(groups=C)`` (NCHW and channels_last), TensorFlow's
``tf.nn.depthwise_conv2d`` in a ``tf.function``, ONNX Runtime's grouped ``Conv``, and XNNPACK
through LiteRT (the TFLite interpreter's default CPU delegate). Thread counts are set when a peer
is prepared: the harness runs each thread count in its own process, since TensorFlow fixes its
thread pools at start-up. The peers are optional (``pip install .[bench]``): a missing one is
reported as unavailable, not as an error.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Callable

import numpy as np

from ..ops.depthwise import DepthwiseSpec

Run = Callable[[], object]
ToNhwc = Callable[[object], np.ndarray]


@dataclasses.dataclass
class Prepared:
    """A peer ready to run one layer: `run` is timed, `to_nhwc` turns its result into NumPy NHWC."""

    run: Run
    to_nhwc: ToNhwc


class Peer:
    """One implementation of depthwise convolution."""

    name = "?"
    module = ""

    def unavailable(self) -> str | None:
        """Why this peer cannot run here, or None when it can."""
        try:
            importlib.import_module(self.module)
        except Exception as exc:  # ImportError, or a broken install
            return f"{self.module} not importable ({type(exc).__name__}: {exc})".splitlines()[0]
        return None

    def version(self) -> str:
        """The peer library's version."""
        return str(getattr(importlib.import_module(self.module), "__version__", "?"))

    def prepare(self, spec: DepthwiseSpec, data: np.ndarray, weights: np.ndarray, threads: int) -> Prepared:
        """Set up `spec` on NHWC `data` and ``[KH, KW, C, M]`` `weights` with `threads` threads."""
        raise NotImplementedError


def _nchw(array: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(array.transpose(0, 3, 1, 2))


def _grouped_weights(spec: DepthwiseSpec, weights: np.ndarray) -> np.ndarray:
    """``[KH, KW, C, M]`` as PyTorch/ONNX's grouped ``[C*M, 1, KH, KW]``."""
    return np.ascontiguousarray(weights.transpose(2, 3, 0, 1).reshape(spec.out_channels, 1, spec.filter_height,
                                                                       spec.filter_width))


class Dwc(Peer):
    """dwc itself, through the public API call (``dwc_compiler.depthwise_conv2d``) on plain NumPy
    arrays as NumPy allocates them (large ones start 16 bytes past a 64-byte boundary here).

    Variants beside it: ``dwc-nchw`` (the same call with ``data_format="NCHW"`` on a plain NCHW
    array), ``dwc-aligned`` (NHWC input copied once, outside the timing, to a 64-byte
    boundary: what alignment is worth) and ``dwc-avx2`` (the same call built for the named
    ``x86-avx2`` target, its kernels and records, on this CPU where it runs AVX2 code)."""

    module = "dwc_compiler"

    def __init__(self, data_format: str = "NHWC", aligned: bool = False, target: str = "host") -> None:
        self.data_format, self.aligned, self.target = data_format, aligned, target
        self.name = ("dwc-aligned" if aligned else "dwc-nchw" if data_format == "NCHW"
                     else "dwc" if target == "host" else f"dwc-{target.removeprefix('x86-')}")

    def unavailable(self) -> str | None:
        """Why the variant cannot run here: dwc not importable, or a named target this CPU cannot run."""
        missing = super().unavailable()
        if missing is not None or self.target == "host":
            return missing
        from dwc_compiler.targets import missing_cpu_flags, resolve_target

        target = resolve_target(self.target)
        lacking = missing_cpu_flags(target.required_cpu_flags, target.arch)
        return f"this CPU lacks {', '.join(lacking)} for {self.target}" if lacking else None

    def prepare(self, spec, data, weights, threads):
        import dwc_compiler
        from dwc_compiler.runtime.arrays import empty_aligned

        dwc_compiler.set_num_threads(threads)
        padding = "SAME" if spec.padding_mode == "SAME" else [list(spec.pads[:2]), list(spec.pads[2:])]
        strides, dilations = list(spec.strides), list(spec.dilations)
        source = _nchw(data) if self.data_format == "NCHW" else data
        if self.aligned:
            aligned = empty_aligned(source.shape, source.dtype)
            aligned[...] = source
            source = aligned

        def run():
            return dwc_compiler.depthwise_conv2d(source, weights, strides, padding, self.data_format,
                                                 dilations=dilations, target=self.target)

        run()  # compile outside the timing
        to_nhwc = (lambda result: result.transpose(0, 2, 3, 1)) if self.data_format == "NCHW" else (lambda r: r)
        return Prepared(run, to_nhwc)


class TorchConv(Peer):
    """PyTorch ``F.conv2d(groups=C)`` on NCHW or channels_last tensors."""

    module = "torch"

    def __init__(self, channels_last: bool) -> None:
        self.channels_last = channels_last
        self.name = "pytorch-channels-last" if channels_last else "pytorch-nchw"

    def prepare(self, spec, data, weights, threads):
        import torch
        import torch.nn.functional as functional

        torch.set_num_threads(threads)
        tensor = torch.from_numpy(_nchw(data))
        if self.channels_last:
            tensor = tensor.contiguous(memory_format=torch.channels_last)
        kernel = torch.from_numpy(_grouped_weights(spec, weights))
        top, bottom, left, right = spec.pads
        symmetric = top == bottom and left == right
        options = dict(stride=spec.strides, dilation=spec.dilations, groups=spec.in_channels,
                       padding=(top, left) if symmetric else 0)

        def run():
            with torch.inference_mode():
                source = tensor if symmetric else functional.pad(tensor, (left, right, top, bottom))
                return functional.conv2d(source, kernel, **options)

        return Prepared(run, lambda result: result.contiguous().numpy().transpose(0, 2, 3, 1))


class TensorFlow(Peer):
    """TensorFlow's ``tf.nn.depthwise_conv2d`` inside a ``tf.function``."""

    name = "tensorflow"
    module = "tensorflow"

    def prepare(self, spec, data, weights, threads):
        import tensorflow as tf

        _configure_tensorflow_threads(tf, threads)
        tensor, kernel = tf.constant(data), tf.constant(weights)
        padding = _tf_padding(spec)

        @tf.function
        def run():
            return tf.nn.depthwise_conv2d(tensor, kernel, [1, *spec.strides, 1], padding,
                                          dilations=list(spec.dilations))

        return Prepared(run, lambda result: result.numpy())


def _tf_padding(spec: DepthwiseSpec):
    if spec.padding_mode in ("SAME", "VALID"):
        return spec.padding_mode
    top, bottom, left, right = spec.pads
    return [[0, 0], [top, bottom], [left, right], [0, 0]]


def _configure_tensorflow_threads(tf, threads: int) -> None:
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # already initialized in this process with these settings
        pass


class OnnxRuntime(Peer):
    """ONNX Runtime's CPU ``Conv`` with ``group=C`` on NCHW input."""

    name = "onnxruntime"
    module = "onnxruntime"

    def unavailable(self):
        return super().unavailable() or _missing("onnx")

    def prepare(self, spec, data, weights, threads):
        import onnxruntime
        from onnx import TensorProto, helper, numpy_helper

        top, bottom, left, right = spec.pads
        node = helper.make_node("Conv", ["X", "W"], ["Y"], group=spec.in_channels, strides=list(spec.strides),
                                dilations=list(spec.dilations), pads=[top, left, bottom, right],
                                kernel_shape=[spec.filter_height, spec.filter_width])
        batch, height, width, channels = data.shape
        out_shape = [spec.batch, spec.out_channels, spec.out_height, spec.out_width]
        graph = helper.make_graph(
            [node], "depthwise", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [batch, channels, height, width])],
            [helper.make_tensor_value_info("Y", TensorProto.FLOAT, out_shape)],
            initializer=[numpy_helper.from_array(_grouped_weights(spec, weights), "W")])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 9  # what ONNX Runtime reads; newer onnx packages write newer IR
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        session = onnxruntime.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        feed = {"X": _nchw(data)}

        def run():
            return session.run(None, feed)[0]

        return Prepared(run, lambda result: result.transpose(0, 2, 3, 1))


class Xnnpack(Peer):
    """XNNPACK through LiteRT: a one-op TFLite model run by the interpreter's XNNPACK delegate."""

    name = "xnnpack-litert"
    module = "ai_edge_litert"

    def unavailable(self):
        return super().unavailable() or _missing("tensorflow")

    def version(self):
        from importlib.metadata import version

        return version("ai-edge-litert")

    def prepare(self, spec, data, weights, threads):
        import tensorflow as tf
        from ai_edge_litert.interpreter import Interpreter

        _configure_tensorflow_threads(tf, threads)
        kernel = tf.constant(weights)
        padding = _tf_padding(spec)

        @tf.function(input_signature=[tf.TensorSpec(data.shape, tf.float32)])
        def layer(x):
            return tf.nn.depthwise_conv2d(x, kernel, [1, *spec.strides, 1], padding, dilations=list(spec.dilations))

        converter = tf.lite.TFLiteConverter.from_concrete_functions([layer.get_concrete_function()], layer)
        interpreter = Interpreter(model_content=converter.convert(), num_threads=threads)
        interpreter.allocate_tensors()
        input_index = interpreter.get_input_details()[0]["index"]
        output_index = interpreter.get_output_details()[0]["index"]

        def run():
            interpreter.set_tensor(input_index, data)
            interpreter.invoke()
            return interpreter.get_tensor(output_index)

        return Prepared(run, lambda result: result)


def _missing(module: str) -> str | None:
    try:
        importlib.import_module(module)
    except Exception as exc:
        return f"{module} not importable ({type(exc).__name__})"
    return None


def all_peers() -> list[Peer]:
    """dwc and every peer, in report order."""
    return [Dwc(), Dwc(data_format="NCHW"), Dwc(aligned=True), Dwc(target="x86-avx2"), TorchConv(channels_last=False),
            TorchConv(channels_last=True), TensorFlow(), OnnxRuntime(), Xnnpack()]


def is_dwc(name: str) -> bool:
    """Whether the implementation called `name` is dwc (or one of its variants), not a peer."""
    return name == "dwc" or name.startswith("dwc-")
