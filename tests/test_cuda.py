"""CUDA builds, checked without a GPU: machine code for sm_90, thread binding, no spills.

Tests that run kernels need an NVIDIA GPU and run only where one is present.
"""

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import dwc_compiler as dwc
from dwc_compiler.cuda_inspect import cuda_elf_architectures, ptxas_report
from dwc_compiler.workloads import MOBILENET_V2

from helpers import golden_case, golden_count

pytestmark = pytest.mark.skipif(shutil.which("nvcc") is None, reason="CUDA builds need nvcc (the CUDA toolkit)")


def _gpu_present():
    from dwc_compiler.cuda_driver import gpu_present

    return gpu_present()


def _golden_spec(index):
    case = golden_case(index)
    return dwc.DepthwiseSpec.create(case["input"].shape, case["filter"].shape, case["strides"], case["padding"],
                                    case["data_format"], case["dilations"], case["dtype"])


@pytest.mark.parametrize("index", range(golden_count()))
def test_every_golden_case_builds_for_sm90(index):
    """Each TF golden case compiles for cuda-sm90 with the hand CUDA schedule."""
    spec = _golden_spec(index)
    kernel = dwc.build(spec, "cuda-sm90")
    assert kernel.schedule == "hand:cuda"
    assert "__global__" in kernel.inspect_source("cuda")


@pytest.mark.parametrize("data_format", ["NHWC", "NCHW"])
def test_loops_bound_to_threads_and_blocks(data_format):
    """The generated kernel binds blockIdx.x, threadIdx.x and threadIdx.y, and stages input in shared memory."""
    shape = (1, 28, 28, 192) if data_format == "NHWC" else (1, 192, 28, 28)
    spec = dwc.DepthwiseSpec.create(shape, (3, 3, 192, 1), 1, "SAME", data_format)
    source = dwc.build(spec, "cuda-sm90").inspect_source("cuda")
    for axis in ("blockIdx.x", "threadIdx.x", "threadIdx.y"):
        assert axis in source
    assert "__shared__" in source


def test_nhwc_uses_16_byte_vector_accesses():
    """NHWC float32 with channels divisible by 4 loads and stores float4 (16 bytes)."""
    source = dwc.build(MOBILENET_V2["mbv2-56x56x144-s1"], "cuda-sm90").inspect_source("cuda")
    assert "float4" in source


@pytest.mark.parametrize("name", list(MOBILENET_V2))
@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_no_spills_in_ptxas_report(name, dtype):
    """ptxas reports no spills and no local memory for the MobileNetV2 layers (batch 1 and 32)."""
    base = MOBILENET_V2[name]
    for batch in (1, 32):
        spec = dwc.DepthwiseSpec.create((batch, *base.input_shape[1:]), base.filter_shape, base.strides, "SAME",
                                        dtype=dtype)
        passed, report = ptxas_report(dwc.build(spec, "cuda-sm90").inspect_source("cuda"), 90)
        assert passed, report
        assert "0 bytes spill stores" in report


def test_exported_module_holds_sm90_machine_code(tmp_path):
    """`dwc build --target cuda-sm90` writes a module whose fatbin has sm_90 machine code, not only source."""
    done = subprocess.run(["dwc", "build", "--target", "cuda-sm90", "--workload", "mbv2-28x28x192-s2",
                           "-o", str(tmp_path / "k.so")], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert 90 in cuda_elf_architectures(tmp_path / "k.so")
    assert (tmp_path / "k.so.json").is_file()


def test_runtime_only_load(tmp_path):
    """An exported CUDA module loads with TVM's runtime alone (TVM_USE_RUNTIME_LIB=1):
    it runs where a GPU is, and is refused with a clear message where none is."""
    spec = dwc.DepthwiseSpec.create((1, 14, 14, 64), (3, 3, 64, 1), 1, "SAME")
    library = dwc.build(spec, "cuda-sm90").export(tmp_path / "k.so")
    program = (
        "import sys, numpy as np, dwc_compiler as dwc\n"
        "import tvm.base\n"
        "assert tvm.base._RUNTIME_ONLY, 'the compiler library was loaded'\n"
        "try:\n"
        "    k = dwc.load(sys.argv[1])\n"
        "except dwc.IncompatibleModuleError as error:\n"
        "    print('refused:', error); sys.exit(0)\n"
        "from dwc_compiler.ops.compare import max_relative_error\n"
        "x = np.random.rand(*k.spec.input_shape).astype('float32')\n"
        "w = np.random.rand(*k.spec.filter_shape).astype('float32')\n"
        "print('ran:', max_relative_error(k(x, w), k.spec.reference(x, w)))\n")
    done = subprocess.run([sys.executable, "-c", program, str(library)], capture_output=True, text=True,
                          timeout=300, env=dict(os.environ, TVM_USE_RUNTIME_LIB="1"))
    assert done.returncode == 0, done.stderr
    if _gpu_present():
        assert done.stdout.startswith("ran:") and float(done.stdout.split()[1]) < 1e-5
    else:
        assert "needs an NVIDIA GPU" in done.stdout


@pytest.mark.skipif(not _gpu_present(), reason="needs an NVIDIA GPU")
@pytest.mark.parametrize("index", range(golden_count()))
def test_golden_on_gpu(index):
    """On a GPU: each golden case matches TF."""
    from helpers import check_golden

    check_golden(index, "cuda-sm90")
