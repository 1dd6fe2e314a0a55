"""The installed `dwc` console script, end to end, as a user runs it."""

import re
import shutil
import subprocess

import pytest



def dwc(*args, cwd=None):
    """Run the installed console script (the README's test command installs it)."""
    executable = shutil.which("dwc")
    assert executable, "the dwc console script is not on PATH: install the project (pip install -e .)"
    return subprocess.run([executable, *args], capture_output=True, text=True, timeout=600, cwd=cwd)


@pytest.mark.parametrize("layout_args", [
    ["--input-shape", "1,20,20,32", "--filter-shape", "3,3,32,1"],
    ["--data-format", "NCHW", "--input-shape", "1,16,15,15", "--filter-shape", "3,3,16,2",
     "--strides", "2,2", "--padding", "1,1,1,1"],
], ids=["NHWC", "NCHW"])
def test_build_then_run(tmp_path, layout_args):
    """`dwc build --target host ... -o k.so && dwc run k.so` builds, checks and times the module."""
    built = dwc("build", "--target", "host", *layout_args, "-o", "k.so", cwd=tmp_path)
    assert built.returncode == 0, built.stderr
    assert "schedule hand:" in built.stdout and (tmp_path / "k.so.json").is_file()
    ran = dwc("run", "k.so", "--repeats", "20", cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert "check    OK" in ran.stdout and "median" in ran.stdout


def test_run_with_given_inputs(tmp_path):
    """`dwc run --input --filter --save-output` uses the user's arrays and saves the output."""
    import numpy as np

    from dwc_compiler import DepthwiseSpec

    assert dwc("build", "--workload", "mbv2-7x7x960-s1", "-o", "w.so", cwd=tmp_path).returncode == 0
    spec = DepthwiseSpec.create((1, 7, 7, 960), (3, 3, 960, 1), 1, "SAME")
    x = np.random.default_rng(3).standard_normal(spec.input_shape).astype(np.float32)
    w = np.random.default_rng(4).standard_normal(spec.filter_shape).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "w.npy", w)
    ran = dwc("run", "w.so", "--input", "x.npy", "--filter", "w.npy", "--save-output", "y.npy",
              "--repeats", "5", cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), spec.reference(x, w), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("args, parameter", [
    (["build", "--input-shape", "1,8,8,4", "--filter-shape", "3,3,5,1", "-o", "x.so"], "filter shape"),
    (["build", "--input-shape", "1,8,8,4", "--filter-shape", "3,3,4,1", "--strides", "2,2",
      "--dilations", "2,2", "-o", "x.so"], "dilations"),
    (["build", "--input-shape", "1,8,8,4", "--filter-shape", "3,3,4,1", "--target", "vax", "-o", "x.so"], "target"),
    (["build", "--workload", "nope", "-o", "x.so"], "workload"),
    (["build", "--input-shape", "1,8,8,4", "-o", "x.so"], "input shape"),
    (["run", "missing.so"], "MODULE"),
])
def test_errors_are_one_line_with_exit_code_2(tmp_path, args, parameter):
    """Bad input exits with code 2 and one line naming the parameter: no stack trace."""
    done = dwc(*args, cwd=tmp_path)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr and parameter in done.stderr


def test_run_refuses_a_module_without_manifest(tmp_path):
    """`dwc run` on a library without its manifest says so (exit code 2)."""
    (tmp_path / "bare.so").write_bytes(b"\x7fELF")
    done = dwc("run", "bare.so", cwd=tmp_path)
    assert done.returncode == 2 and "no manifest" in done.stderr and len(done.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("command", [[], ["build"], ["run"], ["targets"]])
def test_help_explains_with_examples(command):
    """`--help` on every command shows an example."""
    done = dwc(*command, "--help")
    assert done.returncode == 0 and "Example" in done.stdout


def test_targets_lists_host_resolution():
    """`dwc targets` names every target and what host resolves to."""
    done = dwc("targets")
    assert done.returncode == 0
    for name in ("host", "x86-avx2", "x86-avx512", "aarch64-neon"):
        assert name in done.stdout


def _host_records_target():
    from dwc_compiler.targets import resolve_target

    return resolve_target("host").records_target


# A layer whose shipped record beats the hand schedule, by the named target a host matches.
RECORD_WINS = {"x86-avx512": "mbv2-28x28x192-s2", "x86-avx2": "mbv2-14x14x576-s2-pw160"}


def test_host_build_names_the_shipped_record_it_applies(tmp_path):
    """`dwc build --target host` of a layer whose shipped record wins (28x28x192-s2 on an AVX-512
    machine) applies the record of the named target this CPU matches and says so, as does the
    manifest; a layer whose record lost to the hand schedule (14x14x576-s1 there) names the
    record and why it is not used."""
    import json

    records_target = _host_records_target()
    if records_target not in RECORD_WINS:
        pytest.skip(f"no shipped records for this CPU's named target ({records_target})")
    built = dwc("build", "--target", "host", "--workload", RECORD_WINS[records_target], "-o", "k.so", cwd=tmp_path)
    assert built.returncode == 0, built.stderr
    assert f"schedule rec-" in built.stdout and f"{records_target} tuning record rec-" in built.stdout
    manifest = json.loads((tmp_path / "k.so.json").read_text())
    assert manifest["record"]["records_target"] == records_target and manifest["schedule"].startswith("rec-")
    if records_target == "x86-avx512":  # ... and its kernels for NumPy's inputs off a vector boundary
        assert "inputs   16" in built.stdout and manifest["aligned_entries"]["names"]["16"] == "main_at16"
        lost = dwc("build", "--target", "host", "--workload", "mbv2-14x14x576-s1", "-o", "h.so", cwd=tmp_path)
        assert lost.returncode == 0, lost.stderr
        assert re.search(r"schedule hand:x86: hand schedule \(x86-avx512 record rec-\w+ was not faster", lost.stdout)
    ran = dwc("run", "k.so", "--repeats", "5", cwd=tmp_path)
    assert ran.returncode == 0 and "check    OK" in ran.stdout, ran.stderr


@pytest.mark.parametrize("extra", [
    ["--input-shape", "1,12,12,16", "--filter-shape", "3,3,16,1"],
    ["--data-format", "NCHW", "--input-shape", "1,16,12,12", "--filter-shape", "32,1,3,3", "--filter-format", "OIHW"],
    ["--input-shape", "1,12,12,16", "--filter-shape", "16,2,1,3,3", "--filter-format", "GOIHW", "--strides", "2,2"],
], ids=["HWCM", "OIHW-NCHW", "GOIHW"])
def test_build_and_run_a_fused_kernel(tmp_path, extra):
    """`dwc build --bias --activation relu6 [--filter-format ...]`, then `dwc run` feeds a random bias
    and checks the fused kernel against the reference."""
    built = dwc("build", "--bias", "--activation", "relu6", *extra, "-o", "f.so", cwd=tmp_path)
    assert built.returncode == 0, built.stderr
    assert "+ bias + relu6" in built.stdout
    ran = dwc("run", "f.so", "--repeats", "5", cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert "check    OK" in ran.stdout and "+ bias + relu6" in ran.stdout


def test_run_with_a_given_bias_and_a_bias_refused_where_none_is_built(tmp_path):
    """`dwc run --bias b.npy` uses the user's bias; a module built without one refuses it (exit 2)."""
    import numpy as np

    assert dwc("build", "--workload", "mbv2-7x7x960-s1", "--bias", "--activation", "relu", "-o", "b.so",
               cwd=tmp_path).returncode == 0
    np.save(tmp_path / "b.npy", np.full(960, -1e6, np.float32))  # drives every output below 0: ReLU gives 0
    ran = dwc("run", "b.so", "--bias", "b.npy", "--save-output", "y.npy", "--repeats", "2", cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert not np.load(tmp_path / "y.npy").any()
    assert dwc("build", "--workload", "mbv2-7x7x960-s1", "-o", "plain.so", cwd=tmp_path).returncode == 0
    refused = dwc("run", "plain.so", "--bias", "b.npy", cwd=tmp_path)
    assert refused.returncode == 2 and refused.stderr.startswith("dwc: error: bias:")


def test_bad_activation_and_filter_format_name_the_option(tmp_path):
    """Unknown --activation / --filter-format values exit 2 naming the option."""
    for option, value in (("--activation", "gelu"), ("--filter-format", "HWIO")):
        done = dwc("build", "--workload", "mbv2-7x7x960-s1", option, value, "-o", "x.so", cwd=tmp_path)
        assert done.returncode == 2 and option in done.stderr and "Traceback" not in done.stderr


def test_records_list_shows_shipped_records_and_the_builds_choice(tmp_path):
    """`dwc records list` with no user records lists the records shipped with dwc and, per workload,
    the choice a build makes; it names the target whose records host builds use."""
    done = dwc("records", "list", "--records", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "host builds use the records of:" in done.stdout
    assert "x86-avx512 (TVM" in done.stdout and "shipped with dwc" in done.stdout
    assert "dw-63b50a35bd0463c6" in done.stdout and "builds use" in done.stdout


@pytest.mark.parametrize("extra", [
    ["--op", "separable", "--input-shape", "1,12,12,16", "--filter-shape", "3,3,16,1",
     "--pointwise-filter-shape", "1,1,16,24", "--bias", "--activation", "relu6", "--pointwise-bias"],
    ["--op", "separable", "--data-format", "NCHW", "--input-shape", "1,16,11,11", "--filter-shape", "3,3,16,2",
     "--pointwise-filter-shape", "1,1,32,8", "--strides", "2,2", "--pointwise-activation", "relu"],
    ["--workload", "mbv2-7x7x960-s1-pw160", "--pointwise-bias"],
], ids=["NHWC-epilogues", "NCHW-stride2", "workload"])
def test_build_and_run_a_separable_kernel(tmp_path, extra):
    """`dwc build --op separable --pointwise-filter-shape ...` (or a separable workload) builds the
    fused kernel; `dwc run` feeds every array it declares and checks it against the reference."""
    built = dwc("build", *extra, "-o", "s.so", cwd=tmp_path)
    assert built.returncode == 0, built.stderr
    assert built.stdout.startswith("built separable") and "-> pointwise" in built.stdout
    ran = dwc("run", "s.so", "--repeats", "5", cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert "check    OK" in ran.stdout


def test_run_a_separable_kernel_on_given_arrays(tmp_path):
    """`dwc run --filter --pointwise-filter --pointwise-bias` reads the user's arrays for a
    separable module; a depthwise module refuses --pointwise-filter (exit 2, named)."""
    import numpy as np

    from dwc_compiler import SeparableSpec

    assert dwc("build", "--op", "separable", "--input-shape", "1,8,8,16", "--filter-shape", "3,3,16,1",
               "--pointwise-filter-shape", "1,1,16,8", "--pointwise-bias", "-o", "s.so", cwd=tmp_path).returncode == 0
    spec = SeparableSpec.create((1, 8, 8, 16), (3, 3, 16, 1), (1, 1, 16, 8), 1, "SAME", with_pointwise_bias=True)
    rng = np.random.default_rng(2)
    arrays = {name: rng.standard_normal(shape).astype(np.float32) for name, shape in
              (("x", (1, 8, 8, 16)), ("dw", (3, 3, 16, 1)), ("pw", (1, 1, 16, 8)), ("pb", (8,)))}
    for name, array in arrays.items():
        np.save(tmp_path / f"{name}.npy", array)
    ran = dwc("run", "s.so", "--input", "x.npy", "--filter", "dw.npy", "--pointwise-filter", "pw.npy",
              "--pointwise-bias", "pb.npy", "--save-output", "y.npy", "--repeats", "2", cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    expected = spec.reference(arrays["x"], arrays["dw"], arrays["pw"], arrays["pb"])
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), expected, rtol=1e-4, atol=1e-4)
    assert dwc("build", "--workload", "mbv2-7x7x960-s1", "-o", "d.so", cwd=tmp_path).returncode == 0
    refused = dwc("run", "d.so", "--pointwise-filter", "pw.npy", cwd=tmp_path)
    assert refused.returncode == 2 and refused.stderr.startswith("dwc: error: pointwise_filter:")


@pytest.mark.parametrize("args, parameter", [
    (["--input-shape", "1,8,8,16", "--filter-shape", "3,3,16,1", "--pointwise-bias"], "op"),
    (["--op", "separable", "--input-shape", "1,8,8,16", "--filter-shape", "3,3,16,1"], "pointwise_filter shape"),
    (["--op", "separable", "--input-shape", "1,8,8,16", "--filter-shape", "3,3,16,1",
      "--pointwise-filter-shape", "1,1,15,8"], "pointwise_filter shape"),
])
def test_separable_options_errors_name_the_parameter(tmp_path, args, parameter):
    """Pointwise options without --op separable, or a missing or mismatched pointwise shape: exit 2,
    one line naming the parameter."""
    done = dwc("build", *args, "-o", "x.so", cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.startswith(f"dwc: error: {parameter}:"), done.stderr
    assert "Traceback" not in done.stderr


def test_bench_times_dwc_plain_aligned_and_nchw_beside_pytorch(tmp_path):
    """`dwc bench` checks, then times dwc on plain NumPy input, on an aligned copy, in NCHW and
    with the x86-avx2 kernels (where this CPU runs them), beside PyTorch's NCHW depthwise conv,
    and reports their ratios."""
    import json

    from dwc_compiler.targets import missing_cpu_flags, resolve_target

    pytest.importorskip("torch")
    avx2 = resolve_target("x86-avx2")
    runs_avx2 = not missing_cpu_flags(avx2.required_cpu_flags, avx2.arch)
    done = dwc("bench", "--workloads", "mbv2-7x7x960-s1", "--threads", "1", "--peers",
               "dwc,dwc-nchw,dwc-aligned,dwc-avx2,pytorch-nchw", "--passes", "1", "--rounds", "2", "--calls", "3",
               "--output-dir", str(tmp_path))
    assert done.returncode == 0, done.stderr
    (report_path,) = tmp_path.glob("cpu-*.json")
    implementations = json.loads(report_path.read_text())["runs"][0]["workloads"]["mbv2-7x7x960-s1"]["implementations"]
    for name in ("dwc", "dwc-nchw", "dwc-aligned", "pytorch-nchw") + (("dwc-avx2",) if runs_avx2 else ()):
        assert implementations[name]["median_us"] > 0, (name, implementations[name])
    table = next(tmp_path.glob("cpu-*.md")).read_text()
    assert "dwc NCHW / dwc NHWC" in table and "PyTorch NCHW / dwc NCHW" in table and "64-byte-aligned" in table
    assert ("The x86-avx2 kernels on this CPU" in table) == runs_avx2
