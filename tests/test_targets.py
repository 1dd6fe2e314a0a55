"""Every golden case on each named CPU target: AVX2, AVX-512 (where this CPU has them), NEON under qemu."""

import platform

import pytest

from dwc_compiler.targets import missing_cpu_flags, resolve_target

from helpers import check_against_reference, check_golden, golden_count


def runnable_here(target_name):
    target = resolve_target(target_name)
    if target.arch == "aarch64" and platform.machine() == "x86_64":
        return True  # under qemu-user
    return not missing_cpu_flags(target.required_cpu_flags, target.arch)


def require(target_name):
    if not runnable_here(target_name):
        missing = missing_cpu_flags(resolve_target(target_name).required_cpu_flags, resolve_target(target_name).arch)
        pytest.skip(f"this CPU lacks {', '.join(missing)} for {target_name}")


@pytest.mark.parametrize("target_name", ["x86-avx2", "x86-avx512"])
@pytest.mark.parametrize("index", range(golden_count()))
def test_golden_on_x86_targets(target_name, index):
    """TF's golden outputs on the AVX2 and AVX-512 builds (run natively)."""
    require(target_name)
    check_golden(index, target_name)


@pytest.mark.parametrize("index", range(golden_count()))
def test_golden_on_aarch64_under_qemu(index):
    """TF's golden outputs on the aarch64 NEON build, run under qemu-user."""
    check_golden(index, "aarch64-neon")


@pytest.mark.parametrize("target_name", ["cortex-a72", "neoverse-n1"])
def test_named_arm_cores_under_qemu(target_name):
    """Builds for named ARM cores run under qemu emulating that core (-cpu refuses what it lacks)."""
    check_against_reference((1, 9, 9, 32), (3, 3, 32, 1), 1, "SAME", target=target_name)
    check_against_reference((1, 16, 8, 8), (3, 3, 16, 2), 2, "SAME", "NCHW", dtype="float16", target=target_name)
