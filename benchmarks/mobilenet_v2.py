"""MobileNetV2 end to end: what dwc buys inside PyTorch and inside TVM Relax.

usage: python benchmarks/mobilenet_v2.py [ROUNDS]

MobileNetV2 (dwc_compiler/benchmarking/mobilenet_v2.py: 224x224, random weights, eval mode) at
1 and 2 threads, batch 1 and 8, in one process, interleaved rounds (the order reversed every
other round, each block of calls warmed up first), whole forward calls:
- ``torch NCHW`` / ``torch channels_last``: PyTorch eager under ``inference_mode``;
- ``torch+dwc NCHW`` / ``torch+dwc channels_last``: the same after ``replace_depthwise`` as it
  ships (each block's depthwise conv -> BatchNorm -> ReLU6 -> 1x1 projection -> BatchNorm on one
  fused dwc separable kernel); ``torch+dwc-dw ...``: with ``fuse_pointwise=False`` (each
  depthwise conv, with its BatchNorm and ReLU6 folded, on a dwc kernel, the 1x1 convs PyTorch's);
- ``onnxruntime``: the model exported to ONNX, ORT's CPU provider with all graph optimizations;
- ``tvm`` / ``tvm+dwc`` / ``tvm+dwc-dw``: ``from_exported_program`` then ``tvm.compile`` for the
  host as TVM ships it (its default pipeline, no tuning), without ``offload_depthwise``, with it
  as it ships (BatchNorms folded, projections fused into separable kernels) and with
  ``fuse_pointwise=False``.
Each way's output is checked against PyTorch's first. Besides, per layer: the time of each dwc
layer inside the model (forward hooks; the fused separable ones and, with ``fuse_pointwise=False``,
the depthwise ones, and PyTorch's own depthwise convs) against the same layer called alone on the
same input right after each forward (interleaved: a forward, then each layer alone, every round),
and the share of the model's time spent in those layers (channels_last).
Writes benchmarks/results/mobilenet-v2-<stamp>.json, .md and .png.
"""

import copy
import io
import statistics
import time
from pathlib import Path

import numpy as np
import torch

import dwc_compiler as dwc
import dwc_compiler.torch as dwc_torch
from dwc_compiler.benchmarking.interleaved import block_mean_us, int_arguments, median_ratio, write_results
from dwc_compiler.benchmarking.mobilenet_v2 import mobilenet_v2

RESULTS = Path(__file__).resolve().parent / "results"
THREADS, BATCHES = (1, 2), (1, 8)
WARMUP_CALLS = 1
BLOCK_SECONDS = 0.15  # each block of timed calls lasts about this long (at least one call)


def _torch_ways(model, replaced, depthwise_only, data):
    channels_last = data.contiguous(memory_format=torch.channels_last)

    def run(network, tensor):
        def call():
            with torch.inference_mode():
                return network(tensor)
        return call

    ways = {}
    for name, network in (("torch", model), ("torch+dwc", replaced), ("torch+dwc-dw", depthwise_only)):
        ways[f"{name} NCHW"] = run(network, data)
        ways[f"{name} channels_last"] = run(copy.deepcopy(network).to(memory_format=torch.channels_last),
                                            channels_last)
    return ways


def _onnxruntime_way(model, data, threads):
    import onnxruntime

    buffer = io.BytesIO()
    torch.onnx.export(model, (data,), buffer, dynamo=False, opset_version=17)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = onnxruntime.InferenceSession(buffer.getvalue(), options, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: data.numpy()}
    return lambda: session.run(None, feed)[0]


def _tvm_ways(model, data):
    import tvm
    from tvm import relax
    from tvm.relax.frontend.torch import from_exported_program

    import dwc_compiler.relax as dwc_relax

    mod = from_exported_program(torch.export.export(model, (data,)), keep_params_as_input=False,
                                unwrap_unit_return_tuple=True)
    ways, build_seconds = {}, {}
    for name, module in (("tvm", mod), ("tvm+dwc", dwc_relax.offload_depthwise(mod, "host")),
                         ("tvm+dwc-dw", dwc_relax.offload_depthwise(mod, "host", fuse_pointwise=False))):
        started = time.perf_counter()
        executable = tvm.compile(module, target=dwc_relax.tvm_target("host"))
        build_seconds[name] = time.perf_counter() - started
        machine = relax.VirtualMachine(executable, tvm.cpu())
        tensor = tvm.runtime.tensor(data.numpy())
        ways[name] = (lambda machine=machine, tensor=tensor: machine["main"](tensor))
    return ways, build_seconds


def _as_numpy(result):
    return result.numpy() if hasattr(result, "numpy") else np.asarray(result)


def _set_threads(threads: int) -> None:
    torch.set_num_threads(threads)
    dwc.set_num_threads(threads)


ALONE_WARMUP, ALONE_TIMED = 2, 5  # each round's block of a layer called alone
SWEPT_CALLS = 3  # each round's calls of a layer alone right after sweeping the caches
SWEEP_BYTES = 8 << 20  # more than this machine's 2 MB L2 per core, far less than its L3


def _swept_call_us(call, sweep: np.ndarray) -> float:
    """The median time of a few calls of `call`, each right after reading `sweep` (which evicts
    the L2 and L1 caches: what the model's other layers do between two depthwise layers)."""
    times = []
    for _ in range(SWEPT_CALLS):
        sweep.sum()
        begin = time.perf_counter()
        call()
        times.append((time.perf_counter() - begin) * 1e6)
    return statistics.median(times)


def _inside_and_alone(model, data, layers: list, rounds: int) -> tuple[list[dict], float]:
    """Per layer of `layers` (modules of `model`): its time inside the model (forward hooks) and
    alone on the same input, in interleaved rounds: each round one forward, then each layer alone
    (a few warm-up calls, then a block of calls on the input it just had), so both meet the
    machine in the same state, and alone right after a sweep of the caches (``swept_us``).
    Returns the rows (medians over rounds; ``inside_over_alone`` and ``inside_over_swept`` the
    medians of the per-round ratios) and the median share of the forward's time in `layers`."""
    started, inputs, inside = {}, {}, {}
    sweep = np.ones(SWEEP_BYTES // 8)

    def before(index):
        def hook(module, args):
            inputs[index] = args[0]
            started[index] = time.perf_counter()
        return hook

    def after(index):
        def hook(module, args, output):
            inside[index] = (time.perf_counter() - started[index]) * 1e6
        return hook

    handles = [layer.register_forward_pre_hook(before(i)) for i, layer in enumerate(layers)]
    handles += [layer.register_forward_hook(after(i)) for i, layer in enumerate(layers)]
    samples = {index: [] for index in range(len(layers))}  # (inside, alone, swept) per round
    shares = []
    try:
        with torch.inference_mode():
            model(data)
            for _ in range(rounds):
                begin = time.perf_counter()
                model(data)
                whole = (time.perf_counter() - begin) * 1e6
                shares.append(sum(inside.values()) / whole)
                this_round = dict(inside)
                for index, layer in enumerate(layers):
                    alone = block_mean_us(lambda: layer(inputs[index]), ALONE_WARMUP, ALONE_TIMED)
                    swept = _swept_call_us(lambda: layer(inputs[index]), sweep)
                    samples[index].append((this_round[index], alone, swept))
    finally:
        for handle in handles:
            handle.remove()
    rows = [{"layer": index, "kind": type(layer).__name__, "shape": list(inputs[index].shape),
             "stride": list(layer.stride),
             "inside_us": statistics.median(sample[0] for sample in samples[index]),
             "alone_us": statistics.median(sample[1] for sample in samples[index]),
             "swept_us": statistics.median(sample[2] for sample in samples[index]),
             "inside_over_alone": statistics.median(sample[0] / sample[1] for sample in samples[index]),
             "inside_over_swept": statistics.median(sample[0] / sample[2] for sample in samples[index])}
            for index, layer in enumerate(layers)]
    return rows, statistics.median(shares)


def _dwc_layers(model) -> list:
    """The dwc modules of a replaced model."""
    return [module for module in model.modules()
            if isinstance(module, (dwc_torch.DepthwiseConv2d, dwc_torch.SeparableConv2d))]


def _pytorch_depthwise_layers(model) -> list:
    """PyTorch's depthwise convolutions of a model."""
    return [m for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.groups == m.in_channels > 1]


def measure(threads: int, batch: int, rounds: int) -> dict:
    _set_threads(threads)
    model = mobilenet_v2()
    replaced = dwc_torch.replace_depthwise(copy.deepcopy(model))
    depthwise_only = dwc_torch.replace_depthwise(copy.deepcopy(model), fuse_pointwise=False)
    data = torch.randn(batch, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    calls = _torch_ways(model, replaced, depthwise_only, data)
    try:
        calls["onnxruntime"] = _onnxruntime_way(model, data, threads)
    except ImportError:
        pass
    tvm_calls, build_seconds = _tvm_ways(model, data)
    calls.update(tvm_calls)
    with torch.inference_mode():
        expected = model(data).numpy()
    for name, call in calls.items():
        result = _as_numpy(call())
        error = np.max(np.abs(result - expected)) / np.max(np.abs(expected))
        if error > 1e-3:
            raise AssertionError(f"{name} differs from PyTorch at batch {batch}: {error:.2e}")
    timed = {name: max(1, int(BLOCK_SECONDS * 1e6 / block_mean_us(call, 1, 1))) for name, call in calls.items()}
    samples = {name: [] for name in calls}
    for round_index in range(rounds):
        order = list(calls) if round_index % 2 == 0 else list(reversed(calls))
        for name in order:
            samples[name].append(block_mean_us(calls[name], WARMUP_CALLS, timed[name]))
    data_cl = data.contiguous(memory_format=torch.channels_last)
    converted = {name: copy.deepcopy(way).to(memory_format=torch.channels_last)
                 for name, way in (("fused", replaced), ("depthwise", depthwise_only), ("pytorch", model))}
    layers, fused_share = _inside_and_alone(converted["fused"], data_cl, _dwc_layers(converted["fused"]), 2 * rounds)
    depthwise_layers, dwc_share = _inside_and_alone(converted["depthwise"], data_cl,
                                                    _dwc_layers(converted["depthwise"]), 2 * rounds)
    pytorch_layers, pytorch_share = _inside_and_alone(converted["pytorch"], data_cl,
                                                      _pytorch_depthwise_layers(converted["pytorch"]), 2 * rounds)
    row = {"threads": threads, "batch": batch, "median_ms": {k: statistics.median(v) / 1e3 for k, v in samples.items()},
           "samples_us": samples, "tvm_build_seconds": build_seconds, "layers": layers,
           "depthwise_layers": depthwise_layers, "pytorch_depthwise_layers": pytorch_layers,
           "depthwise_share": {"torch channels_last": pytorch_share, "torch+dwc-dw channels_last": dwc_share,
                               "torch+dwc channels_last (separable kernels)": fused_share}}
    row["speedups"] = {f"{way} {layout} / torch {layout}": median_ratio(samples[f"torch {layout}"],
                                                                      samples[f"{way} {layout}"])
                       for way in ("torch+dwc", "torch+dwc-dw") for layout in ("NCHW", "channels_last")}
    row["speedups"].update({f"{way} / tvm": median_ratio(samples["tvm"], samples[way])
                            for way in ("tvm+dwc", "tvm+dwc-dw")})
    return row


def _plot(rows, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ways = list(rows[0]["median_ms"])
    figure, axes = plt.subplots(1, len(rows), figsize=(4.2 * len(rows), 4.2), sharey=False)
    for axis, row in zip(np.atleast_1d(axes), rows):
        values = [row["median_ms"][way] for way in ways]
        axis.barh(range(len(ways)), values, color=["#888" if "dwc" not in way else "#2a7" for way in ways])
        axis.set_yticks(range(len(ways)), ways if axis is np.atleast_1d(axes)[0] else [""] * len(ways))
        axis.invert_yaxis()
        axis.set_title(f"{row['threads']} thread(s), batch {row['batch']}")
        axis.set_xlabel("ms per forward (median)")
    figure.suptitle("MobileNetV2 224x224, whole forward calls")
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main() -> None:
    (rounds,) = int_arguments(7)
    rows = []
    for threads in THREADS:
        for batch in BATCHES:
            row = measure(threads, batch, rounds)
            rows.append(row)
            print(f"{threads} thread(s) batch {batch}: " + " ".join(f"{k} {v:.2f}" for k, v in row["median_ms"].items())
                  + " | " + " ".join(f"{k} {v:.2f}x" for k, v in row["speedups"].items()), flush=True)
    ways = list(rows[0]["median_ms"])
    method = (f"PyTorch {torch.__version__}, dwc {dwc.__version__}; one process, threads set per block for "
              f"PyTorch, dwc and TVM (ORT per session); {rounds} interleaved rounds (order reversed every other "
              f"round), each block {WARMUP_CALLS} warm-up call then about {BLOCK_SECONDS * 1e3:.0f} ms of timed forward "
              f"calls, at least one (block mean); "
              f"times are medians over rounds, speedups medians of per-round ratios; TVM built as it ships "
              f"(tvm.compile's default pipeline for the host, no MetaSchedule tuning) with and without "
              f"offload_depthwise; layer times inside the model from forward hooks, {2 * rounds} rounds of one "
              f"forward then each layer alone ({ALONE_WARMUP} warm-up, {ALONE_TIMED} timed calls) on the input it had; "
              f"inside / alone the median of per-round ratios; swept: {SWEPT_CALLS} calls alone, each right after "
              f"reading {SWEEP_BYTES >> 20} MB")
    speedups = list(rows[0]["speedups"])
    table = ["| threads | batch | " + " | ".join(f"{way} (ms)" for way in ways) + " | "
             + " | ".join(speedups) + " |", "|---:|---:|" + "---:|" * (len(ways) + len(speedups))]
    for row in rows:
        table.append(f"| {row['threads']} | {row['batch']} | " + " | ".join(f"{row['median_ms'][w]:.2f}" for w in ways)
                     + " | " + " | ".join(f"{row['speedups'][name]:.2f}x" for name in speedups) + " |")
    kinds = (("PyTorch's depthwise convs", "pytorch_depthwise_layers", "torch channels_last"),
             ("dwc depthwise kernels (torch+dwc-dw)", "depthwise_layers", "torch+dwc-dw channels_last"),
             ("dwc separable kernels (torch+dwc)", "layers", "torch+dwc channels_last (separable kernels)"))
    table += ["", "Layers inside the model against the same layer alone, warm and right after an "
                  f"{SWEEP_BYTES >> 20} MB sweep of the caches (channels_last; per kind: the share of the forward "
                  "time, the worst inside / alone, and the range of inside / swept):", "",
              "| threads | batch | " + " | ".join(f"{name}: share | worst inside / alone | inside / swept"
                                                   for name, _, _ in kinds) + " |",
              "|---:|---:|" + "---:|---:|---:|" * len(kinds)]
    for row in rows:
        cells = []
        for _, key, share_key in kinds:
            ratios = [layer["inside_over_swept"] for layer in row[key]]
            cells += [f"{100 * row['depthwise_share'][share_key]:.0f}%",
                      f"{max(layer['inside_over_alone'] for layer in row[key]):.2f}x",
                      f"{min(ratios):.2f}-{max(ratios):.2f}x"]
        table.append(f"| {row['threads']} | {row['batch']} | " + " | ".join(cells) + " |")
    markdown = write_results(RESULTS, "mobilenet-v2", "MobileNetV2 end to end: PyTorch, ONNX Runtime and TVM, "
                             "with and without dwc", method, {"rounds": rounds, "rows": rows}, table)
    _plot(rows, markdown.with_suffix(".png"))
    print("\n".join(table))


if __name__ == "__main__":
    main()
