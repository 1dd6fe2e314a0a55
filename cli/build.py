"""``dwc build``: compile one convolution for a target and export the module."""

from __future__ import annotations

import time
from pathlib import Path

import click

from ..build import build as build_kernel
from ..runtime.manifest import manifest_path
from .options import spec_options


@click.command("build")
@click.option("--target", "target_name", default="host", show_default=True, metavar="NAME",
              help="A named target (see `dwc targets`), e.g. host, x86-avx512, aarch64-neon.")
@spec_options
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Where to write the shared library, e.g. k.so; its manifest goes to k.so.json.")
@click.option("--records", "records_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Tuning records to use (default: $DWC_RECORDS, else ~/.local/share/dwc/records; "
                   "records shipped with dwc are always consulted).")
@click.option("--no-records", is_flag=True, help="Ignore tuning records: build with the hand schedule.")
def command(target_name: str, spec, output: Path, records_dir: Path | None, no_records: bool) -> None:
    """Compile a depthwise convolution for a target and export it.

    \b
    Examples:
      dwc build --target host --input-shape 1,112,112,32 --filter-shape 3,3,32,1 -o k.so
      dwc build --target x86-avx512 --workload mbv2-56x56x144-s2 -o s2.so
      dwc build --target host --data-format NCHW --input-shape 1,32,56,56 \\
                --filter-shape 3,3,32,2 --strides 2,2 --padding 1,1,1,1 -o nchw.so
      dwc build --target aarch64-neon --input-shape 1,28,28,192 --filter-shape 3,3,192,1 -o arm.so
    """
    started = time.perf_counter()
    kernel = build_kernel(spec, target_name, records=records_dir, use_records=not no_records)
    library = kernel.export(output)
    seconds = time.perf_counter() - started
    click.echo(f"built {spec.describe()}")
    click.echo(f"  target   {kernel.target.name} ({kernel.target.description})")
    click.echo(f"  schedule {kernel.schedule}: {kernel.record['choice'] if kernel.record else 'hand schedule (no tuning record)'}")
    aligned = kernel.loaded.aligned_entries
    if aligned is not None:
        offsets = ", ".join(str(offset) for offset in sorted(aligned.names))
        threads = "" if aligned.max_threads is None else f" on up to {aligned.max_threads} threads"
        click.echo(f"  inputs   {offsets} bytes past a {aligned.vector_bytes}-byte boundary run kernels of their own"
                   f"{threads}")
    click.echo(f"  workload {spec.workload_key}, {spec.flops / 1e6:.1f} MFLOP, {spec.min_bytes_moved / 1e6:.2f} MB moved")
    click.echo(f"  wrote    {library} and {manifest_path(library).name} in {seconds:.1f} s")
