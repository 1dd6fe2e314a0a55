"""Building and timing candidate schedules for tuning: locally, or on devices behind a TVM RPC tracker."""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

from ..errors import InvalidArgumentError

BUILD_TIMEOUT_S = 120
BUILDS_PER_WORKER = 64


@dataclasses.dataclass(frozen=True)
class RpcConfig:
    """Where to measure remotely: a TVM RPC tracker and the key its devices registered with."""

    tracker_host: str
    tracker_port: int
    key: str
    session_timeout_s: int = 120

    @classmethod
    def parse(cls, tracker: str, key: str) -> "RpcConfig":
        """From ``HOST:PORT`` and a key; errors name the option."""
        host, _, port = tracker.rpartition(":")
        if not host or not port.isdigit():
            raise InvalidArgumentError(f"rpc-tracker: expected HOST:PORT such as 127.0.0.1:9190, got {tracker!r}")
        if not key:
            raise InvalidArgumentError("rpc-key: give the key the devices registered with (e.g. --rpc-key x86)")
        return cls(host, int(port), key)


def _build_function(mod, target, _params):
    """MetaSchedule builder: ``tvm.compile`` directly, with the pass configuration dwc's builds
    use (so candidates are timed as they will be built).

    MetaSchedule's default build imports ``tvm.s_tir.tensor_intrin``, which took 25 s here,
    in every builder process: long enough to time every build out.
    """
    from ..toolchain import compile_for

    # the runtime module, as the exporter expects
    return compile_for(mod, target, target.kind.name == "cuda").mod


def _keep_artifacts(*_session_and_paths: Any) -> None:
    """Runner clean-up that keeps the built module, so the final rounds re-run the same builds
    (local runners call it with no arguments, RPC runners with the session and remote path)."""


def _export_function(cross_compiler: str | None) -> Callable[[Any], str] | None:
    if cross_compiler is None:
        return None

    def export(module) -> str:
        import os
        import tempfile

        import tvm.support.cc

        path = os.path.join(tempfile.mkdtemp(), "tvm_tmp_mod.so")
        module.export_library(path, fcompile=tvm.support.cc.cross_compiler(cross_compiler))
        return path

    return export


def runner(target: Any, rpc: RpcConfig | None, number: int, repeat: int, min_repeat_ms: int,
           keep_artifacts: bool = False):
    """MetaSchedule's runner for `target`: RPC when `rpc` is given, else local.

    Raises:
        InvalidArgumentError: `target`'s modules cannot run here and no RPC tracker was given.
    """
    from tvm.s_tir import meta_schedule as ms

    evaluator = ms.runner.EvaluatorConfig(number=number, repeat=repeat, min_repeat_ms=min_repeat_ms)
    cleanup = _keep_artifacts if keep_artifacts else None
    if rpc is not None:
        config = ms.runner.RPCConfig(tracker_host=rpc.tracker_host, tracker_port=rpc.tracker_port,
                                     tracker_key=rpc.key, session_timeout_sec=rpc.session_timeout_s)
        return ms.runner.RPCRunner(rpc_config=config, evaluator_config=evaluator, f_cleanup=cleanup)
    if not target.runs_natively and target.family != "cuda":
        raise InvalidArgumentError(
            f"target: {target.name} modules do not run on this machine; measure them on the device with "
            "--rpc-tracker HOST:PORT --rpc-key KEY (python -m tvm.exec.rpc_server on the device)")
    return ms.runner.LocalRunner(evaluator_config=evaluator, f_cleanup=cleanup)


def builder(target: Any):
    """A MetaSchedule builder for `target` (cross-linking foreign CPUs' modules) whose worker
    processes serve every build until its ``close()``. TVM's ``LocalBuilder`` starts a new pool
    for every batch of builds (and one more to check itself), and a worker took 5-7 s to start
    on this project's 2-core machine (it imports TVM). A worker is replaced after
    ``BUILDS_PER_WORKER`` builds (TVM's reason for its fresh pools: a leak in long-lived
    workers), and after a build that crashed it or ran past ``BUILD_TIMEOUT_S``."""
    return _pooled_builder_class()(_export_function(target.cross_compiler))


@functools.cache
def _pooled_builder_class():
    """The class of :func:`builder` (made on first use: it derives from TVM's, imported late)."""
    from tvm.ir.utils import derived_object
    from tvm.s_tir import meta_schedule as ms
    from tvm.s_tir.meta_schedule.builder import local_builder
    from tvm.s_tir.meta_schedule.utils import cpu_count
    from tvm.support.popen_pool import PopenPoolExecutor, StatusKind

    def build_one(arguments):
        return local_builder._worker_func(*arguments)

    @derived_object
    class PooledBuilder(ms.builder.PyBuilder):
        def __init__(self, f_export: Callable[[Any], str] | None) -> None:
            super().__init__()
            self.f_export = f_export
            self.pool = PopenPoolExecutor(max_workers=cpu_count(logical=True), timeout=BUILD_TIMEOUT_S,
                                          maximum_process_uses=BUILDS_PER_WORKER)

        def build(self, build_inputs):
            results = []
            jobs = [(_build_function, self.f_export, item.mod, item.target, None) for item in build_inputs]
            for outcome in self.pool.map_with_error_catching(build_one, jobs):
                if outcome.status == StatusKind.COMPLETE:
                    results.append(ms.builder.BuilderResult(outcome.value, None))
                elif outcome.status == StatusKind.TIMEOUT:
                    results.append(ms.builder.BuilderResult(None, f"build timed out after {BUILD_TIMEOUT_S} s"))
                else:
                    results.append(ms.builder.BuilderResult(None, f"build failed:\n{outcome.value}"))
            return results

        def close(self) -> None:
            """Stop the worker processes."""
            self.pool.shutdown()

    return PooledBuilder


def build_inputs(schedules: list[Any], target: Any, builder) -> list[tuple[Any, str | None]]:
    """Build `schedules`; returns (runner input or None, build error) per schedule."""
    from tvm.s_tir import meta_schedule as ms

    built = builder.build([ms.builder.BuilderInput(sch.mod, target.tvm()) for sch in schedules])
    device = "cuda" if target.family == "cuda" else "cpu"
    return [(None, build.error_msg) if build.error_msg else
            (ms.runner.RunnerInput(build.artifact_path, device, ms.arg_info.ArgInfo.from_prim_func(sch.mod["main"])), None)
            for sch, build in zip(schedules, built)]


def run_inputs(inputs: list[tuple[Any, str | None]], runner) -> list[tuple[list[float] | None, str | None]]:
    """Run the built inputs once each; returns (run_secs, error) per input."""
    futures = iter(runner.run([item for item, _ in inputs if item is not None]))
    results = []
    for item, error in inputs:
        if item is None:
            results.append((None, error))
            continue
        outcome = next(futures).result()
        results.append(([float(s) for s in outcome.run_secs] if outcome.run_secs else None, outcome.error_msg))
    return results
