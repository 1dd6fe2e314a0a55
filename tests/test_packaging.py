"""Packaging: a regular (non-editable) install carries every module and data file dwc needs."""

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_wheel_contains_the_namespaced_packages_and_data(tmp_path):
    """schedules/, targets/ and cli/ install inside dwc_compiler, with target files and native sources."""
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
                           "-w", str(tmp_path), str(ROOT)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    (wheel,) = tmp_path.glob("dwc-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in ("dwc_compiler/__init__.py", "dwc_compiler/schedules/x86.py", "dwc_compiler/schedules/cuda.py",
                     "dwc_compiler/targets/__init__.py", "dwc_compiler/targets/x86-avx512/target.json",
                     "dwc_compiler/targets/cuda-sm90/target.json", "dwc_compiler/cli/main.py",
                     "dwc_compiler/benchmarking/harness.py", "dwc_compiler/native/aarch64_runner.cc",
                     "dwc_compiler/native/libcuda_stub.c", "dwc_compiler/native/roofline.c"):
        assert required in names, f"{required} missing from {wheel.name}"
    assert not any(name.startswith(("schedules/", "targets/", "cli/")) for name in names), "generic top-level names"
    entry_points = next(name for name in names if name.endswith("entry_points.txt"))
    assert "dwc = dwc_compiler.cli.main:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
