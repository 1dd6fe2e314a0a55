"""GPU check and benchmark for dwc's CUDA backend.

Two steps, because a GPU machine may carry TVM's runtime but not its 100 MB compiler:

    python benchmarks/gpu_check.py build DIR [--target cuda-sm90]
        (any machine with the compiler and nvcc) builds every golden case, every MobileNetV2
        depthwise layer (float32 and float16, batch 1 and 32) and every MobileNetV2 separable
        block (the fused kernel with bias + ReLU6 and bias, NHWC and NCHW, float32, batch 1 and
        32) into DIR, with manifests.

    TVM_USE_RUNTIME_LIB=1 python benchmarks/gpu_check.py run DIR [--results benchmarks/results]
        (the GPU machine, PyTorch with CUDA installed) checks every golden case on the GPU against
        TensorFlow's outputs, then times dwc against PyTorch's conv2d(groups=C) on channels_last
        tensors (cuDNN or PyTorch's own depthwise kernels) with CUDA events, after warm-up, taking
        medians; reports us, GB/s and the fraction of the device's measured copy bandwidth; checks
        every separable block against the float64 reference and times it against PyTorch's block
        (depthwise conv2d + ReLU6 + 1x1 conv2d, channels_last); writes JSON with the GPU it ran on.
"""

from __future__ import annotations

import argparse
import datetime
import json
import shutil
import statistics
import sys
from pathlib import Path

import numpy as np

GOLDEN = Path(__file__).resolve().parent.parent / "tests" / "data" / "golden" / "tf_depthwise_cases.npz"
TOLERANCE = {"float16": 2e-2, "float32": 1e-5, "float64": 1e-12}
BATCHES = (1, 32)
DTYPES = ("float32", "float16")


def build(directory: Path, target: str) -> None:
    """Build every golden case and benchmark layer for `target` into `directory`."""
    import dwc_compiler as dwc
    from dwc_compiler.workloads import MOBILENET_V2

    directory.mkdir(parents=True, exist_ok=True)
    golden = np.load(GOLDEN)
    plan = {"target": target, "golden": [], "layers": []}
    for index in range(int(golden["count"])):
        params = json.loads(str(golden[f"c{index}_params"]))
        spec = dwc.DepthwiseSpec.create(golden[f"c{index}_input"].shape, golden[f"c{index}_filter"].shape,
                                        params["strides"], params["padding"], params["data_format"],
                                        params["dilations"], params["dtype"])
        dwc.build(spec, target).export(directory / f"golden-{index}.so")
        plan["golden"].append({"index": index, "module": f"golden-{index}.so"})
    for name, base in MOBILENET_V2.items():
        for dtype in DTYPES:
            for batch in BATCHES:
                spec = dwc.DepthwiseSpec.create((batch, *base.input_shape[1:]), base.filter_shape, base.strides,
                                                "SAME", dtype=dtype)
                module = f"{name}-{dtype}-b{batch}.so"
                dwc.build(spec, target).export(directory / module)
                plan["layers"].append({"name": name, "dtype": dtype, "batch": batch, "module": module})
        print(f"built {name}", flush=True)
    plan["separable"] = _build_separable(directory, target)
    shutil.copyfile(GOLDEN, directory / GOLDEN.name)
    (directory / "plan.json").write_text(json.dumps(plan, indent=1))
    print(f"wrote {len(plan['golden'])} golden and {len(plan['layers'])} layer modules to {directory}")


def _build_separable(directory: Path, target: str) -> list[dict]:
    """The MobileNetV2 separable blocks as fused kernels (bias + ReLU6, then bias), both layouts."""
    import dwc_compiler as dwc
    from dwc_compiler.workloads import MOBILENET_V2_BLOCKS

    entries = []
    for name, block in MOBILENET_V2_BLOCKS.items():
        base = block.depthwise
        for data_format in ("NHWC", "NCHW"):
            for batch in BATCHES:
                shape = ((batch, *base.input_shape[1:]) if data_format == "NHWC"
                         else (batch, base.in_channels, base.in_height, base.in_width))
                spec = dwc.SeparableSpec.create(shape, base.filter_shape, block.pointwise_filter_shape, base.strides,
                                                "SAME", data_format, with_depthwise_bias=True,
                                                depthwise_activation="relu6", with_pointwise_bias=True)
                module = f"{name}-{data_format}-b{batch}.so"
                dwc.build(spec, target).export(directory / module)
                entries.append({"name": name, "data_format": data_format, "batch": batch, "module": module})
        print(f"built {name}", flush=True)
    return entries


def _run_separable(directory: Path, entries: list[dict], torch) -> tuple[list[dict], list]:
    """Check each separable module against the float64 reference and time it against PyTorch."""
    import torch.nn.functional as functional

    import dwc_compiler as dwc
    from dwc_compiler.ops.compare import max_relative_error

    rows, failures = [], []
    for entry in entries:
        kernel = dwc.load(directory / entry["module"])
        spec = kernel.spec
        rng = np.random.default_rng(0)
        arrays = [rng.standard_normal(argument.shape).astype(np.float32) for argument in spec.arguments[:-1]]
        error = max_relative_error(kernel(*arrays), spec.reference(*arrays))
        if not error <= TOLERANCE["float32"]:
            failures.append((entry["module"], error))
        data, depthwise_filter, pointwise_filter, depthwise_bias, pointwise_bias = (
            torch.from_numpy(array).cuda() for array in arrays)
        out = torch.empty(spec.output_shape, device="cuda")
        depthwise = spec.depthwise
        nchw = data if spec.data_format == "NCHW" else data.permute(0, 3, 1, 2)
        torch_input = nchw.contiguous(memory_format=torch.channels_last)
        torch_depthwise = depthwise_filter.permute(2, 3, 0, 1).contiguous()
        torch_pointwise = pointwise_filter[0, 0].T.contiguous()[:, :, None, None]
        top, bottom, left, right = depthwise.pads

        def torch_run():
            padded = functional.pad(torch_input, (left, right, top, bottom))
            middle = functional.relu6(functional.conv2d(padded, torch_depthwise, depthwise_bias, depthwise.strides,
                                                        groups=depthwise.in_channels))
            return functional.conv2d(middle, torch_pointwise, pointwise_bias)

        function = kernel.loaded.module["main"]
        device_arrays = (data, depthwise_filter, pointwise_filter, depthwise_bias, pointwise_bias)
        dwc_us = _time_us(torch, lambda: function(*device_arrays, out))
        torch_us = _time_us(torch, torch_run)
        rows.append({**entry, "dwc_us": dwc_us, "pytorch_us": torch_us, "speedup": torch_us / dwc_us,
                     "gflops": spec.flops / dwc_us / 1e3, "max_relative_error": error})
        print(f"{entry['name']:26s} {entry['data_format']} b{entry['batch']:<3d} dwc {dwc_us:8.1f} us  "
              f"pytorch {torch_us:8.1f} us  {torch_us / dwc_us:5.2f}x", flush=True)
    return rows, failures


def _copy_bandwidth_gbytes_per_s(torch) -> float:
    source = torch.empty(256 * 2**20, dtype=torch.uint8, device="cuda")
    target = torch.empty_like(source)
    for _ in range(3):
        target.copy_(source)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    samples = []
    for _ in range(20):
        start.record()
        target.copy_(source)
        end.record()
        torch.cuda.synchronize()
        samples.append(start.elapsed_time(end) / 1e3)
    return 2 * source.numel() / statistics.median(samples) / 1e9  # read + write


def _time_us(torch, run, calls: int = 50, repeats: int = 15) -> float:
    for _ in range(10):
        run()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    samples = []
    for _ in range(repeats):
        start.record()
        for _ in range(calls):
            run()
        end.record()
        torch.cuda.synchronize()
        samples.append(start.elapsed_time(end) * 1e3 / calls)
    return statistics.median(samples)


def run(directory: Path, results: Path) -> int:
    """Check and benchmark the modules in `directory` on this machine's GPU; returns an exit code."""
    import torch
    import torch.nn.functional as functional

    import dwc_compiler as dwc
    from dwc_compiler.ops.compare import max_relative_error

    plan = json.loads((directory / "plan.json").read_text())
    golden = np.load(directory / GOLDEN.name)
    failures = []
    for entry in plan["golden"]:
        index = entry["index"]
        kernel = dwc.load(directory / entry["module"])
        expected = golden[f"c{index}_output"]
        actual = kernel(golden[f"c{index}_input"], golden[f"c{index}_filter"])
        error = max_relative_error(actual, expected)
        if not error <= TOLERANCE[str(expected.dtype)]:
            failures.append((index, error))
    print(f"golden: {len(plan['golden']) - len(failures)}/{len(plan['golden'])} cases match TF", flush=True)

    bandwidth = _copy_bandwidth_gbytes_per_s(torch)
    rows = []
    for entry in plan["layers"]:
        kernel = dwc.load(directory / entry["module"])
        spec = kernel.spec
        dtype = getattr(torch, spec.dtype)
        data = torch.randn(spec.input_shape, dtype=dtype, device="cuda")
        weights = torch.randn(spec.filter_shape, dtype=dtype, device="cuda")
        out = torch.empty(spec.output_shape, dtype=dtype, device="cuda")
        # PyTorch's channels_last NCHW tensor shares the NHWC memory layout dwc reads.
        torch_input = data.permute(0, 3, 1, 2)
        torch_weights = weights.permute(2, 3, 0, 1).reshape(spec.out_channels, 1, spec.filter_height,
                                                             spec.filter_width).contiguous()
        top, bottom, left, right = spec.pads

        def torch_run():
            padded = functional.pad(torch_input, (left, right, top, bottom)) if (top, left) != (bottom, right) else torch_input
            return functional.conv2d(padded, torch_weights, stride=spec.strides,
                                     padding=(top, left) if (top, left) == (bottom, right) else 0,
                                     groups=spec.in_channels)

        function = kernel.loaded.module["main"]
        kernel(data, weights, out=out)
        reference = torch_run().permute(0, 2, 3, 1).float().cpu().numpy()
        error = max_relative_error(out.float().cpu().numpy(), reference)
        dwc_us = _time_us(torch, lambda: function(data, weights, out))
        torch_us = _time_us(torch, torch_run)
        rows.append({**entry, "dwc_us": dwc_us, "pytorch_us": torch_us, "speedup": torch_us / dwc_us,
                     "dwc_gbytes_per_s": spec.min_bytes_moved / dwc_us / 1e3,
                     "copy_bandwidth_fraction": spec.min_bytes_moved / dwc_us / 1e3 / bandwidth,
                     "max_relative_error_vs_pytorch": error})
        print(f"{entry['name']:22s} {entry['dtype']} b{entry['batch']:<3d} dwc {dwc_us:8.1f} us  "
              f"pytorch {torch_us:8.1f} us  {torch_us / dwc_us:5.2f}x", flush=True)
    separable_rows, separable_failures = _run_separable(directory, plan.get("separable", []), torch)
    failures += separable_failures
    speedups = [row["speedup"] for row in rows]
    report = {
        "gpu": torch.cuda.get_device_name(0), "torch": torch.__version__, "cudnn": torch.backends.cudnn.version(),
        "dwc": dwc.__version__, "copy_bandwidth_gbytes_per_s": bandwidth,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "golden_failures": failures, "layers": rows, "separable_blocks": separable_rows,
        "geomean_speedup": float(np.exp(np.mean(np.log(speedups)))) if speedups else None,
        "method": "CUDA events around 50 back-to-back calls, 15 repeats after 10 warm-up calls, median; "
                  "dwc called on device tensors through its exported module",
    }
    results.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H%M")
    (results / f"gpu-{stamp}.json").write_text(json.dumps(report, indent=1))
    print(f"geomean speedup over PyTorch: {report['geomean_speedup']:.2f}x; wrote {results / f'gpu-{stamp}.json'}")
    return 1 if failures else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    build_parser = commands.add_parser("build", help="build the modules (needs TVM's compiler and nvcc)")
    build_parser.add_argument("directory", type=Path)
    build_parser.add_argument("--target", default="cuda-sm90")
    run_parser = commands.add_parser("run", help="check and time them on this machine's GPU")
    run_parser.add_argument("directory", type=Path)
    run_parser.add_argument("--results", type=Path, default=Path(__file__).resolve().parent / "results")
    arguments = parser.parse_args()
    if arguments.command == "build":
        build(arguments.directory, arguments.target)
        return 0
    return run(arguments.directory, arguments.results)


if __name__ == "__main__":
    sys.exit(main())
