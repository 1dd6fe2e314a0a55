"""Checks on CUDA builds that need no GPU: nvcc's resource report and the embedded machine code."""

from __future__ import annotations

import re
import struct
import subprocess
import tempfile
from pathlib import Path

from .toolchain import require_tool

EM_CUDA = 190


def cuda_elf_architectures(library: Path) -> list[int]:
    """The sm versions of the CUDA machine code (cubin ELF images) embedded in `library`."""
    data = Path(library).read_bytes()
    found = []
    for match in re.finditer(b"\x7fELF", data):
        start = match.start()
        if len(data) < start + 52 or data[start + 4] != 2:  # 64-bit ELF only
            continue
        if struct.unpack_from("<H", data, start + 18)[0] != EM_CUDA:
            continue
        flags = struct.unpack_from("<I", data, start + 48)[0]
        # CUDA 12+ puts the sm number in bits 8-15 of e_flags; older toolkits in bits 0-7.
        found.append((flags >> 8) & 0xFF if (flags >> 8) & 0xFF else flags & 0xFF)
    return found


def ptxas_report(cuda_source: str, sm: int) -> tuple[bool, str]:
    """Compile `cuda_source` to a cubin with ptxas's resource report, spills and local memory as errors.

    Returns:
        (passed, report): passed is False when ptxas found spills or local memory use.
    """
    nvcc = require_tool("nvcc")
    with tempfile.TemporaryDirectory(prefix="dwc-ptxas-") as work:
        source = Path(work) / "kernel.cu"
        source.write_text(cuda_source)
        done = subprocess.run(
            [nvcc, "--cubin", "-O3", f"-arch=sm_{sm}", "-Xptxas",
             "-v,--warn-on-local-memory-usage,--warn-on-spills,-Werror", str(source), "-o",
             str(Path(work) / "kernel.cubin")], capture_output=True, text=True)
    report = "\n".join(line for line in done.stderr.splitlines() if "ptxas" in line or "spill" in line)
    return done.returncode == 0, report
