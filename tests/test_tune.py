"""Tuning jobs and records: a real job, kill and resume, concurrency, corrupt files, isolation.

Each job here is small (4-15 trials on 8x8x8 to 14x14x32 layers): these check the machinery, not speed.
"""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time

import pytest

import dwc_compiler as dwc
from dwc_compiler.tuning.records import RecordStore, choose, record_id, stores_for, tvm_version

from helpers import rpc_tracker_with_server

SPEC = dwc.DepthwiseSpec.create((1, 14, 14, 32), (3, 3, 32, 1), 1, "SAME")
OTHER_SPEC = dwc.DepthwiseSpec.create((1, 7, 7, 64), (3, 3, 64, 1), 1, "SAME")
TARGET = "x86-avx2"


def tune_command(records, *extra, input_shape="1,14,14,32", filter_shape="3,3,32,1"):
    return ["dwc", "tune", "--target", TARGET, "--input-shape", input_shape, "--filter-shape", filter_shape,
            "--records", str(records), "--seed", "0", *extra]


def lines_of(records, target=TARGET):
    path = RecordStore(records, target).path
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def measurements(entries, key=SPEC.tuning_key):
    return [entry for entry in entries if entry["kind"] == "measurement" and entry["workload_key"] == key]


def test_tuning_job_records_every_trial_and_builds_use_the_verdict(tmp_path):
    """A job of 8 trials records the hand schedule, 8 search trials and a verdict; builds follow it."""
    done = subprocess.run(tune_command(tmp_path, "--trials", "8"), capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    entries = lines_of(tmp_path)
    found = measurements(entries)
    assert sum(entry["origin"] == "hand" for entry in found) == 1
    assert sum(entry["origin"] == "search" for entry in found) == 8
    verdicts = [entry for entry in entries if entry["kind"] == "verdict"]
    assert len(verdicts) == 1 and verdicts[0]["use"] in ("record", "hand")
    assert "tuned" in done.stdout and "hand" in done.stdout
    kernel = dwc.build(SPEC, TARGET, records=tmp_path)
    if verdicts[0]["use"] == "record":
        assert kernel.schedule == verdicts[0]["record_id"]
    else:
        assert kernel.schedule == "hand:x86" and verdicts[0]["record_id"] in kernel.record["choice"]
    data, weights = (dwc.empty_aligned(shape, "float32") for shape in (SPEC.input_shape, SPEC.filter_shape))
    data[...], weights[...] = 0.5, 0.25
    assert abs(float(kernel(data, weights)[0, 5, 5, 0]) - 9 * 0.125) < 1e-5


def _fake_record(spec, run_us, origin="search", use_hand_decisions=False, target=TARGET, postprocessed=False):
    """A measurement entry whose trace is a real point of dwc's design space, with a given time
    (`postprocessed`: its trace ends with MetaSchedule's post-processing mark, as searched ones do)."""
    import tvm
    from tvm.s_tir import meta_schedule as ms

    from dwc_compiler.ops.primfunc import prim_func
    from dwc_compiler.schedules import apply_rules
    from dwc_compiler.targets import resolve_target

    info = resolve_target(target)
    module = tvm.IRModule({"main": prim_func(spec)})
    schedule, _ = apply_rules(tvm.s_tir.Schedule(module), spec, info, tunable=True, hand_decisions=use_hand_decisions)
    if postprocessed:
        schedule.enter_postproc()
    trace = ms.database.TuningRecord(schedule.trace, ms.database.Workload(module), None, info.tvm(), None).as_json()
    return {"kind": "measurement", "workload_key": spec.tuning_key, "spec": spec.to_dict(), "trace": trace,
            "run_secs": [run_us * 1e-6] * 3, "error": None, "origin": origin}


def _tile_decisions(entry):
    """The perfect-tile decisions of a dwc-space record, as a hashable point of the space."""
    (instructions, decisions), *_ = entry["trace"]
    tiles = {index for index, instruction in enumerate(instructions) if instruction[0] == "SamplePerfectTile"}
    return tuple(tuple(value) for index, value in decisions if index in tiles)


def test_job_sweeps_dwc_space_then_searches_the_union(tmp_path):
    """A job first measures every point of dwc's own space (8x8x8 on AVX2: rows 1/2/4 x columns
    1/2/4/8 x one 8-lane vector = 12 tilings, a round of 12), then continues with the union of
    dwc's and the generic space for the rest of the budget."""
    done = subprocess.run(tune_command(tmp_path, "--trials", "15", "--trials-per-round", "12",
                                       input_shape="1,8,8,8", filter_shape="3,3,8,1"),
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    key = dwc.DepthwiseSpec.create((1, 8, 8, 8), (3, 3, 8, 1), 1, "SAME").tuning_key
    found = measurements(lines_of(tmp_path), key)
    swept = [entry for entry in found if entry.get("space") == "dwc"]
    assert len({_tile_decisions(entry) for entry in swept}) == 12 == len(swept)
    union = [entry for entry in found if entry.get("space") == "dwc+generic"]
    assert len(union) == 15 - 12
    assert "MetaSchedule" not in done.stderr and "task_scheduler.cc" not in done.stderr  # its log stays off


def test_builder_keeps_its_workers_across_builds_and_reports_failed_builds():
    """One pool of build workers serves every build of a job (TVM's starts a pool a build); a
    build that fails (here its worker crashes: LLVM given an unknown triple) comes back as an
    error, the next build works again; close() stops the workers."""
    import tvm
    from tvm.s_tir import meta_schedule as ms

    from dwc_compiler.targets import resolve_target
    from dwc_compiler.tuning import measure, spaces

    target = resolve_target(TARGET)
    hand = ms.builder.BuilderInput(spaces.hand_point(SPEC, target).mod, target.tvm())
    unknown_triple = ms.builder.BuilderInput(spaces.module_of(SPEC), tvm.target.Target(
        {"kind": "llvm", "mtriple": "nosucharch-linux-gnu"}))
    job_builder = measure.builder(target)

    def worker_ids():
        return {worker._proc.pid for worker in job_builder.pool._worker_map.values() if worker._proc is not None}

    try:
        first = job_builder.build([hand])
        started = worker_ids()
        second = job_builder.build([hand, hand])
        assert started and worker_ids() >= started  # the first build's worker built again
        failed, = job_builder.build([unknown_triple])
        after, = job_builder.build([hand])
        assert all(result.error_msg is None and result.artifact_path for result in [*first, *second, after])
        assert failed.artifact_path is None and "build failed" in failed.error_msg
    finally:
        job_builder.close()
    assert not worker_ids()


def test_search_ends_after_the_round_in_which_it_went_stale(tmp_path):
    """The union search stops at the first round boundary where its stop rule says so; progress
    is reported through the callback after each round."""
    from dwc_compiler.targets import resolve_target
    from dwc_compiler.tuning import measure, search, spaces

    target = resolve_target(TARGET)
    store = RecordStore(tmp_path, TARGET)
    module = spaces.module_of(SPEC)
    reports = []
    persist = search.Persist(store, SPEC, module, target, "layer", 0, 16, None, reports.append)
    persist.start_phase(spaces.SPACE_UNION)
    with contextlib.closing(measure.builder(target)) as job_builder:
        setup = search.SearchSetup(module, target, tmp_path / "work", job_builder,
                                   measure.runner(target, None, 1, 1, 1), 0, 4)
        search.search(setup, persist, spaces.SPACE_UNION, 16, [],
                      stale=lambda: bool(store.measurements(SPEC.tuning_key)))  # stale once anything is measured
    measured = len(store.measurements(SPEC.tuning_key))
    assert 1 <= measured <= 4  # one round of at most 4, not 16
    assert reports[0].measured == 0 and reports[-1].measured == measured and reports[-1].total == 16


def test_gain_count_restarts_only_on_a_real_gain():
    """Trials count towards patience until one beats the best by more than 2%; failures count too."""
    from dwc_compiler.tuning.search import Persist

    persist = Persist(None, SPEC, None, None, "layer", 0, 8, 10.0, lambda progress: None)
    for seconds in (10.5e-6, None, 9.9e-6):  # slower, failed, 1% faster: no real gain
        persist.note(seconds)
    assert persist.trials_since_gain == 3 and persist.best_us == pytest.approx(9.9)
    persist.note(9.0e-6)
    assert persist.trials_since_gain == 0 and persist.best_us == pytest.approx(9.0)


def test_verdict_keeps_the_hand_schedule_when_the_best_trial_is_the_hand_tiling(tmp_path):
    """The sweep measures the hand tiling as a search trial too; when that trial is the best (here
    it claims 0.1 us), the verdict finds it is the hand schedule itself and builds keep the hand."""
    from dwc_compiler.targets import resolve_target
    from dwc_compiler.tuning.measure import builder
    from dwc_compiler.tuning.verdict import final_verdict

    target = resolve_target(TARGET)
    store = RecordStore(tmp_path, TARGET)
    hand = _fake_record(SPEC, 5.0, origin="hand", use_hand_decisions=True)
    swept = _fake_record(SPEC, 0.1, use_hand_decisions=True, postprocessed=True)  # another trace, same schedule
    assert record_id(swept["trace"]) != record_id(hand["trace"])
    store.append([hand, {**swept, "space": "dwc"}])
    with contextlib.closing(builder(target)) as job_builder:
        result = final_verdict("layer", SPEC, target, store, job_builder, None, 1)
    assert result.same_as_hand and not result.uses_record
    verdict = [entry for entry in store.read() if entry["kind"] == "verdict"][-1]
    assert verdict["use"] == "hand" and verdict["same_as_hand"] is True
    assert dwc.build(SPEC, TARGET, records=tmp_path).schedule == "hand:x86"


def test_verdict_judges_records_against_the_hand_schedule_as_it_builds_now(tmp_path):
    """The verdict measures the hand schedule dwc builds today, not the hand trace the job
    recorded when it began: a trace replays the loop structure of its day. Here the recorded
    "hand" entry is another point of the space (as an older dwc's hand schedule would be), and
    the best record is today's hand schedule: the verdict sees the two are the same."""
    import tvm
    from tvm.s_tir import meta_schedule as ms

    from dwc_compiler.ops.primfunc import prim_func
    from dwc_compiler.schedules import apply_rules
    from dwc_compiler.targets import resolve_target
    from dwc_compiler.tuning.measure import builder
    from dwc_compiler.tuning.verdict import final_verdict

    target = resolve_target(TARGET)
    module = tvm.IRModule({"main": prim_func(SPEC)})
    today = _fake_record(SPEC, 0.1, use_hand_decisions=True, postprocessed=True)
    for seed in range(1, 50):  # a point of the space other than the hand tiling: "an old hand schedule"
        schedule, _ = apply_rules(tvm.s_tir.Schedule(module, seed=seed), SPEC, target, tunable=True)
        trace = ms.database.TuningRecord(schedule.trace, ms.database.Workload(module), None, target.tvm(),
                                         None).as_json()
        old_hand = {**today, "trace": trace, "origin": "hand", "run_secs": [5e-6] * 3}
        if _tile_decisions(old_hand) != _tile_decisions(today):
            break
    else:
        pytest.fail("no seed gave a point of the space other than the hand tiling")
    store = RecordStore(tmp_path, TARGET)
    store.append([old_hand, {**today, "space": "dwc"}])
    with contextlib.closing(builder(target)) as job_builder:
        result = final_verdict("layer", SPEC, target, store, job_builder, None, 1)
    assert result.same_as_hand and not result.uses_record


def test_build_applies_a_faster_record_and_never_a_failed_one(tmp_path):
    """A record faster than the hand schedule is applied by builds; failed trials (1e10 s) never are."""
    store = RecordStore(tmp_path, TARGET)
    fast = _fake_record(SPEC, 2.0)
    failed = {**_fake_record(SPEC, 1.0), "run_secs": [1e10]}
    store.append([_fake_record(SPEC, 5.0, origin="hand", use_hand_decisions=True), fast, failed])
    kernel = dwc.build(SPEC, TARGET, records=tmp_path)
    assert kernel.schedule == record_id(fast["trace"])
    assert kernel.record["measured_us"] == pytest.approx(2.0)
    manifest_path = kernel.export(tmp_path / "k.so")
    manifest = json.loads((tmp_path / "k.so.json").read_text())
    assert manifest["schedule"] == record_id(fast["trace"]) and manifest["record"]["id"] == record_id(fast["trace"])
    assert manifest_path.is_file()


def test_records_of_another_target_or_tvm_version_are_not_applied(tmp_path):
    """Records filed under another target, or written by another TVM version, never reach a build."""
    RecordStore(tmp_path, "x86-avx512").append([_fake_record(SPEC, 0.5, target="x86-avx512")])
    RecordStore(tmp_path, TARGET, version="0.26.0").append([_fake_record(SPEC, 0.5)])
    misfiled = {**_fake_record(SPEC, 0.5), "target": TARGET, "tvm_version": "0.25.0"}
    store = RecordStore(tmp_path, TARGET)
    store.directory.mkdir(parents=True)
    store.path.write_text(json.dumps(misfiled) + "\n")
    assert dwc.build(SPEC, TARGET, records=tmp_path).schedule == "hand:x86"
    assert dwc.build(SPEC, "x86-avx512", records=tmp_path).schedule.startswith("rec-")


def test_corrupt_records_are_skipped_with_a_warning(tmp_path, caplog):
    """Garbage and a torn last line are skipped (warned), the good records still used; verify flags it."""
    store = RecordStore(tmp_path, TARGET)
    fast = _fake_record(SPEC, 2.0)
    store.append([fast])
    with open(store.path, "a") as stream:
        stream.write("this is not json\n")
        stream.write(json.dumps(_fake_record(SPEC, 1.0))[:200])  # a line torn by SIGKILL
    with caplog.at_level("WARNING"):
        kernel = dwc.build(SPEC, TARGET, records=tmp_path)
    assert kernel.schedule == record_id(fast["trace"])
    assert "corrupt record" in caplog.text
    verify = subprocess.run(["dwc", "records", "verify", "--records", str(tmp_path)], capture_output=True, text=True)
    assert verify.returncode == 1 and "CORRUPT" in verify.stdout
    prune = subprocess.run(["dwc", "records", "prune", "--records", str(tmp_path)], capture_output=True, text=True)
    assert prune.returncode == 0, prune.stderr
    assert subprocess.run(["dwc", "records", "verify", "--records", str(tmp_path)]).returncode == 0


def test_sigkill_mid_job_keeps_records_and_a_rerun_resumes(tmp_path):
    """SIGKILL after the first batch leaves a readable file with every finished trial; the same
    command then finishes the budget (not a new one) and writes the verdict."""
    command = tune_command(tmp_path, "--trials", "8", "--trials-per-round", "4")
    # The killed job cannot remove its working directory: it makes it inside tmp_path.
    job_tmp = tmp_path / "job-tmp"
    job_tmp.mkdir()
    job = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                           env={**os.environ, "TMPDIR": str(job_tmp)})
    path = RecordStore(tmp_path, TARGET).path
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and job.poll() is None:
        if path.is_file() and sum(1 for _ in open(path)) >= 5:  # the hand record and a first round of 4
            break
        time.sleep(0.5)
    assert job.poll() is None, "the job ended before it could be killed"
    os.killpg(job.pid, signal.SIGKILL)
    job.wait()
    before = RecordStore(tmp_path, TARGET).measurements(SPEC.tuning_key)  # every line must parse
    searched_before = sum(entry["origin"] == "search" for entry in before)
    assert 1 <= searched_before < 8
    resumed = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    after = measurements(lines_of(tmp_path))
    assert sum(entry["origin"] == "search" for entry in after) == 8
    assert sum(entry["origin"] == "hand" for entry in after) == 1
    assert [entry["kind"] for entry in lines_of(tmp_path)].count("verdict") == 1


def test_two_concurrent_jobs_on_one_directory_lose_nothing(tmp_path):
    """Two jobs appending to the same records file at once: every line of both is intact."""
    jobs = [subprocess.Popen(tune_command(tmp_path, "--trials", "4"), stdout=subprocess.PIPE, stderr=subprocess.PIPE),
            subprocess.Popen(tune_command(tmp_path, "--trials", "4", input_shape="1,7,7,64", filter_shape="3,3,64,1"),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)]
    for job in jobs:
        _, error = job.communicate(timeout=900)
        assert job.returncode == 0, error[-3000:]
    entries = lines_of(tmp_path)  # raises if any line was interleaved
    for spec in (SPEC, OTHER_SPEC):
        found = measurements(entries, spec.tuning_key)
        assert sum(entry["origin"] == "search" for entry in found) == 4
        assert sum(1 for entry in entries if entry["kind"] == "verdict" and entry["workload_key"] == spec.tuning_key) == 1


def test_remote_tuning_through_an_rpc_tracker(tmp_path):
    """A tracker and a server on 127.0.0.1: the job measures through them (--rpc-tracker/--rpc-key)."""
    server = [sys.executable, "-m", "tvm.exec.rpc_server", "--host", "127.0.0.1", "--key", "dwc-test", "--silent"]
    with rpc_tracker_with_server(lambda tracker: [*server, "--tracker", tracker]) as tracker:
        command = tune_command(tmp_path, "--trials", "4", "--rpc-tracker", tracker, "--rpc-key", "dwc-test")
        done = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    found = measurements(lines_of(tmp_path))
    assert sum(1 for entry in found if entry["origin"] == "search" and entry["run_secs"]) >= 1
    assert "tuned" in done.stdout


def test_remote_tuning_of_aarch64_through_a_qemu_rpc_server(tmp_path):
    """aarch64-neon tuned through a tracker and dwc's RPC server whose sessions run under qemu:
    modules are cross-built here, uploaded, loaded and timed by the aarch64 TVM runtime (the
    times are qemu's; this checks the path), and the build then applies the verdict."""
    server = [sys.executable, "-m", "dwc_compiler.rpc_qemu", "--key", "dwc-qemu"]
    with rpc_tracker_with_server(lambda tracker: [*server, "--tracker", tracker]) as tracker:
        command = ["dwc", "tune", "--target", "aarch64-neon", "--input-shape", "1,8,8,8", "--filter-shape", "3,3,8,1",
                   "--trials", "4", "--trials-per-round", "4", "--records", str(tmp_path), "--seed", "0",
                   "--rpc-tracker", tracker, "--rpc-key", "dwc-qemu"]
        done = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    spec = dwc.DepthwiseSpec.create((1, 8, 8, 8), (3, 3, 8, 1), 1, "SAME")
    found = measurements(lines_of(tmp_path, "aarch64-neon"), spec.tuning_key)
    assert [entry["origin"] for entry in found].count("hand") == 1 and found[0]["run_secs"]
    assert sum(1 for entry in found if entry["origin"] == "search" and entry["run_secs"]) >= 1
    chosen = choose(spec.tuning_key, stores_for("aarch64-neon", tmp_path))
    kernel = dwc.build(spec, "aarch64-neon", records=tmp_path)
    assert kernel.schedule == (chosen.record_id if chosen.use_record else "hand:arm")


def test_qemu_rpc_server_errors_name_the_option():
    """The qemu RPC server refuses a malformed tracker and a non-aarch64 target in one line, exit 2."""
    for arguments, expected in ((["--tracker", "nohost"], "tracker: expected HOST:PORT"),
                                (["--tracker", "127.0.0.1:1", "--target", "x86-avx2"], "target: expected an aarch64")):
        done = subprocess.run([sys.executable, "-m", "dwc_compiler.rpc_qemu", "--key", "k", *arguments],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 2 and expected in done.stderr and "Traceback" not in done.stderr


def test_tune_errors_name_the_option(tmp_path):
    """Bad tuning options exit 2 with one line naming the option."""
    done = subprocess.run(tune_command(tmp_path, "--rpc-tracker", "nowhere"), capture_output=True, text=True)
    assert done.returncode == 2 and "rpc-tracker" in done.stderr and "Traceback" not in done.stderr
    done = subprocess.run(["dwc", "tune", "--target", TARGET, "--records", str(tmp_path)], capture_output=True, text=True)
    assert done.returncode == 2 and "workload" in done.stderr
    done = subprocess.run(["dwc", "tune", "--target", "aarch64-neon", "--workload", "mbv2-7x7x960-s1", "--trials", "8",
                           "--records", str(tmp_path)], capture_output=True, text=True)
    assert done.returncode == 2 and "--rpc-tracker" in done.stderr


def test_verdict_line_of_a_job_that_only_reran_the_verdict():
    """A job asking for no more trials than are recorded re-runs only the verdict; its line says
    how many trials are recorded instead of '16 of at most 1'."""
    from dwc_compiler.tuning.verdict import TuneResult

    rerun = TuneResult("mbv2-7x7x960-s1", "dw-key", 16, 1, "rec-1", 10.0, 11.0, True).describe()
    assert "after 16 recorded trials" in rerun and "at most" not in rerun
    searched = TuneResult("mbv2-7x7x960-s1", "dw-key", 3, 64, "rec-1", 10.0, 11.0, False).describe()
    assert "after 3 of at most 64 trials; builds keep the hand schedule" in searched
