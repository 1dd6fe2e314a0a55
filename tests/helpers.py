"""One helper that checks dwc against the float64 reference, so each test case is one line."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from functools import lru_cache
from pathlib import Path

import numpy as np

import dwc_compiler as dwc
from dwc_compiler.ops.compare import TOLERANCES, max_relative_error
from dwc_compiler.ops.depthwise import filter_from_hwcm
from dwc_compiler.ops.tf_params import spatial_pair

GOLDEN_PATH = Path(__file__).parent / "data" / "golden" / "tf_depthwise_cases.npz"


def skip_unless_this_cpu_runs(target: str) -> None:
    """Skip the calling test when this CPU lacks an instruction set `target`'s modules need."""
    import pytest

    from dwc_compiler.targets import missing_cpu_flags, resolve_target

    info = resolve_target(target)
    if missing_cpu_flags(info.required_cpu_flags, info.arch):
        pytest.skip(f"this CPU cannot run {target} modules")


def random_inputs(spec, seed: int = 0) -> list[np.ndarray]:
    """Random normal arrays for every input argument of `spec` (input, filter, bias, ...)."""
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(argument.shape).astype(argument.dtype) for argument in spec.arguments[:-1]]


def check_against_reference(input_shape, filter_shape, strides=1, padding="SAME", data_format="NHWC",
                            dilations=None, dtype="float32", target="host", seed=0, *, bias=False,
                            activation=None, filter_format="HWCM") -> float:
    """Run dwc's API on fresh random data and assert it matches the float64 reference.

    `filter_shape` is TF's ``[KH, KW, C, M]``; the filter is passed in `filter_format`, and the
    result is compared with the reference of the TF-format spec (so every format is held to TF),
    except where TF has no answer (a stride with a dilation, which only PyTorch's and oneDNN's
    forms take): there with the reference of the `filter_format` spec, the op's definition.
    Returns the max relative error, for messages.
    """
    rng = np.random.default_rng(seed)
    data = rng.standard_normal(input_shape).astype(dtype)
    weights = rng.standard_normal(filter_shape).astype(dtype)
    passed_filter = filter_from_hwcm(weights, filter_format)
    together = (max(spatial_pair(strides, "strides", data_format)) > 1
                and max(spatial_pair(dilations, "dilations", data_format)) > 1)
    spec, reference_filter = ((dwc.DepthwiseSpec.create(input_shape, passed_filter.shape, strides, padding, data_format,
                                                        dilations, dtype, filter_format=filter_format,
                                                        with_bias=bias, activation=activation), passed_filter)
                              if together else
                              (dwc.DepthwiseSpec.create(input_shape, filter_shape, strides, padding, data_format,
                                                        dilations, dtype, with_bias=bias, activation=activation),
                               weights))
    bias_values = [rng.standard_normal(spec.out_channels).astype(dtype)] if bias else []
    actual = dwc.depthwise_conv2d(data, passed_filter, strides, padding, data_format, dilations, target=target,
                                  bias=bias_values[0] if bias else None, activation=activation,
                                  filter_format=filter_format)
    assert actual.shape == spec.output_shape and actual.dtype == np.dtype(dtype)
    error = max_relative_error(actual, spec.reference(data, reference_filter, *bias_values))
    assert error <= TOLERANCES[dtype], (
        f"{spec.describe()} ({filter_format} filter) on {target}: max relative error {error:.3g}")
    return error


@lru_cache(maxsize=1)
def _golden_file():
    return np.load(GOLDEN_PATH)


def golden_count() -> int:
    """How many TF golden cases there are."""
    return int(_golden_file()["count"])


def golden_case(index: int) -> dict:
    """Golden case `index`: input, filter, TF's output, and TF's parameters."""
    data = _golden_file()
    params = json.loads(str(data[f"c{index}_params"]))
    return {"input": data[f"c{index}_input"], "filter": data[f"c{index}_filter"],
            "output": data[f"c{index}_output"], **params}


def check_golden(index: int, target: str = "host") -> None:
    """Assert that dwc reproduces TF's output for golden case `index` on `target`."""
    case = golden_case(index)
    actual = dwc.depthwise_conv2d(case["input"], case["filter"], case["strides"], case["padding"],
                                  data_format=case["data_format"], dilations=case["dilations"], target=target)
    expected = case["output"]
    assert actual.shape == expected.shape, f"case {index}: shape {actual.shape} != TF's {expected.shape}"
    assert actual.dtype == expected.dtype, f"case {index}: dtype {actual.dtype} != TF's {expected.dtype}"
    error = max_relative_error(actual, expected)
    assert error <= TOLERANCES[case["dtype"]], (
        f"case {index} ({case['data_format']} {case['dtype']} strides {case['strides']} padding "
        f"{case['padding']} dilations {case['dilations']}) on {target}: max relative error {error:.3g}")


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _start_group(command, **options) -> subprocess.Popen:
    """`command` as the leader of a process group of its own, so that it can be ended with every
    process it forks (TVM's RPC server forks a worker per session, the tracker its own)."""
    return subprocess.Popen(command, start_new_session=True, **options)


def _end_group(process: subprocess.Popen) -> None:
    """End `process` and every process of its group: SIGTERM, then SIGKILL after 10 s."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass
    deadline = time.monotonic() + 10
    while _group_alive(process.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


@contextlib.contextmanager
def rpc_tracker_with_server(server_command):
    """A TVM RPC tracker on 127.0.0.1 and a server registered with it; yields the tracker address.
    `server_command(tracker)` is the server's command line. On exit both end with every process
    they started, and the test fails if any of them is left (a leaked worker would keep a port)."""
    port = _free_port()
    tracker = _start_group([sys.executable, "-m", "tvm.exec.rpc_tracker", "--host", "127.0.0.1", "--port",
                            str(port), "--port-end", str(port + 1), "--silent"])
    server = None
    try:
        time.sleep(3)
        server = _start_group(server_command(f"127.0.0.1:{port}"), stderr=subprocess.DEVNULL)
        time.sleep(5)
        yield f"127.0.0.1:{port}"
    finally:
        groups = [process for process in (server, tracker) if process is not None]
        for process in groups:
            _end_group(process)
    left = [process.pid for process in groups if _group_alive(process.pid)]
    assert not left, f"RPC processes left running in groups {left}"
