"""Export and load: round trip in a fresh process, and every refusal with its reason."""

import json
import subprocess
import sys

import numpy as np
import pytest

import dwc_compiler as dwc
from dwc_compiler.runtime.manifest import manifest_path

SPEC = dwc.DepthwiseSpec.create((1, 10, 10, 16), (3, 3, 16, 2), 2, "SAME", dtype="float32")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    library = tmp_path_factory.mktemp("export") / "k.so"
    dwc.build(SPEC, "host").export(library)
    return library


def _copy_module(exported, tmp_path):
    library = tmp_path / "copy.so"
    library.write_bytes(exported.read_bytes())
    manifest_path(library).write_text(manifest_path(exported).read_text())
    return library


def test_round_trip_in_a_fresh_process(exported):
    """A module exported here loads and computes correctly in a new Python process."""
    program = (
        "import sys, numpy as np, dwc_compiler as dwc\n"
        "from dwc_compiler.ops.compare import max_relative_error\n"
        "k = dwc.load(sys.argv[1])\n"
        "rng = np.random.default_rng(1)\n"
        "x = rng.standard_normal(k.spec.input_shape).astype('float32')\n"
        "w = rng.standard_normal(k.spec.filter_shape).astype('float32')\n"
        "print(k.spec.workload_key, k.schedule, max_relative_error(k(x, w), k.spec.reference(x, w)))\n")
    done = subprocess.run([sys.executable, "-c", program, str(exported)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    key, schedule, error = done.stdout.split()
    assert key == SPEC.workload_key and schedule.startswith("hand:") and float(error) < 1e-5


def test_manifest_records_what_was_built(exported):
    """The manifest holds spec, target, workload key, dwc and TVM versions, schedule, checksum."""
    import tvm

    manifest = json.loads(manifest_path(exported).read_text())
    assert dwc.DepthwiseSpec.from_dict(manifest["spec"]) == SPEC
    assert manifest["workload_key"] == SPEC.workload_key
    assert manifest["tvm_version"] == tvm.__version__ and manifest["dwc_version"] == dwc.__version__
    assert manifest["target"]["name"] == "host" and manifest["schedule"].startswith("hand:")
    assert len(manifest["library_sha256"]) == 64


@pytest.mark.parametrize("damage, message", [
    (lambda m: None, "has no manifest"),
    (lambda m: "{not json", "unreadable"),
    (lambda m: {**m, "tvm_version": "0.25.0"}, "built with TVM 0.25.0"),
    (lambda m: {**m, "target": {**m["target"], "required_cpu_flags": ["avx512_imaginary"]}}, "lacks: avx512_imaginary"),
    (lambda m: {**m, "library_sha256": "0" * 64}, "does not match its manifest"),
    (lambda m: {**m, "format": "something-else"}, "not a dwc manifest"),
    (lambda m: {**m, "spec": {"input_shape": [1, 2]}}, "damaged"),
])
def test_load_refuses_with_a_reason(exported, tmp_path, damage, message):
    """Missing/unreadable manifests, other TVM versions, missing CPU features and changed libraries are refused."""
    library = _copy_module(exported, tmp_path)
    manifest = json.loads(manifest_path(library).read_text())
    damaged = damage(manifest)
    if damaged is None:
        manifest_path(library).unlink()
    else:
        manifest_path(library).write_text(damaged if isinstance(damaged, str) else json.dumps(damaged))
    with pytest.raises(dwc.IncompatibleModuleError, match=message):
        dwc.load(library)


def test_load_refuses_another_spec(exported):
    """load(path, expected_spec) refuses a module built for a different convolution."""
    other = dwc.DepthwiseSpec.create((1, 10, 10, 16), (3, 3, 16, 2), 1, "SAME")
    with pytest.raises(dwc.IncompatibleModuleError, match="not the requested"):
        dwc.load(exported, expected_spec=other)


def test_failed_export_leaves_the_old_file_intact(exported, tmp_path, monkeypatch):
    """An export that fails midway leaves the existing module and no partial file behind."""
    library = _copy_module(exported, tmp_path)
    before = library.read_bytes()
    kernel = dwc.build(SPEC, "host")

    def broken_write(loaded, target, destination):
        destination.write_bytes(b"half a library")
        raise dwc.BuildError("link failed")

    monkeypatch.setattr(kernel.runtime, "write_library", broken_write)
    with pytest.raises(dwc.BuildError):
        kernel.export(library)
    assert library.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy.so", "copy.so.json"]
