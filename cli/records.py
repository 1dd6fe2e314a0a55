"""``dwc records``: list, show, verify and prune tuning records."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..errors import CorruptRecordError, InvalidArgumentError, InvalidSpecError, UnknownTargetError
from ..ops import spec_from_dict
from ..ops.separable import SeparableSpec
from ..targets import named_target_names, resolve_target
from ..tuning.records import (RecordStore, choose, default_records_dir, mean_seconds, record_id, shipped_stores,
                              stores_for, tvm_version, user_stores)

RECORDS_OPTION = click.option(
    "--records", "records_dir", type=click.Path(file_okay=False, path_type=Path),
    help="Records directory (default: $DWC_RECORDS, else ~/.local/share/dwc/records).")


def _stores(records_dir: Path | None, target: str | None, shipped: bool = True) -> list[RecordStore]:
    """The user's stores and (with `shipped`) dwc's, of `target` if given."""
    stores = user_stores(records_dir)
    if shipped:
        stores += [store for name in named_target_names() for store in shipped_stores(name)]
    return [store for store in stores if target is None or store.target == target]


def _origin(store: RecordStore) -> str:
    return "shipped with dwc" if store.shipped else "yours"


@click.group("records")
def group() -> None:
    """List, show, verify and prune tuning records (kept per target and TVM version).

    \b
    Examples:
      dwc records list
      dwc records show dw-f14642a7c5c8d654 --target x86-avx512
      dwc records verify --records ./records
      dwc records prune --keep 16
    """


@group.command("list")
@RECORDS_OPTION
@click.option("--target", help="Only this target's records, e.g. x86-avx512.")
def list_records(records_dir: Path | None, target: str | None) -> None:
    """One line per (target, TVM version, workload): trials, best time, and what builds use.

    Lists your records and those shipped with dwc; "builds use" is the choice a build for that
    target makes from both (`host` builds use the records of the named target it matches).

    \b
    Example:
      dwc records list --target x86-avx512
    """
    try:
        host = resolve_target("host")
        click.echo(f"host builds use the records of: {host.records_target or 'none (no named target matches)'}")
    except UnknownTargetError:
        pass
    stores = _stores(records_dir, target)
    if not stores:
        click.echo(f"no records under {records_dir or default_records_dir()}, and none shipped with dwc"
                   + (f" for {target}" if target else ""))
        return
    for store in stores:
        entries = store.read()
        keys = sorted({entry["workload_key"] for entry in entries})
        click.echo(f"{store.target} (TVM {store.version}, {_origin(store)}): {store.path}")
        for key in keys:
            measured = [entry for entry in entries if entry["kind"] == "measurement" and entry["workload_key"] == key]
            ok = [seconds for seconds in map(mean_seconds, measured) if seconds is not None]
            spec = next((entry.get("spec") for entry in measured if entry.get("spec")), None)
            shape = _shape_label(spec)
            best = f"best {min(ok) * 1e6:.1f} us" if ok else "no successful trial"
            uses = ""
            if store.version == tvm_version():
                uses = f"; builds use {choose(key, stores_for(store.target, records_dir)).describe()}"
            click.echo(f"  {key}  {shape:16s} {len(measured):4d} trials ({len(measured) - len(ok)} failed), {best}{uses}")


def _shape_label(spec: dict | None) -> str:
    """The input shape a record's spec names (``1x56x56x144``; a separable one adds ``->O``)."""
    try:
        described = spec_from_dict(spec) if spec else None
    except InvalidSpecError:
        return "?"
    if described is None:
        return "?"
    if isinstance(described, SeparableSpec):
        return "x".join(str(v) for v in described.depthwise.input_shape) + f"->{described.out_channels}"
    return "x".join(str(v) for v in described.input_shape)


@group.command("show")
@click.argument("workload_key")
@RECORDS_OPTION
@click.option("--target", help="Only this target's records, e.g. x86-avx512.")
@click.option("--top", type=click.IntRange(min=1), default=5, show_default=True, help="How many best records to show.")
def show(workload_key: str, records_dir: Path | None, target: str | None, top: int) -> None:
    """The best records of one workload (by its key, as `dwc records list` prints it).

    \b
    Example:
      dwc records show dw-f14642a7c5c8d654 --top 3
    """
    found = False
    for store in _stores(records_dir, target):
        entries = [entry for entry in store.read() if entry["workload_key"] == workload_key]
        if not entries:
            continue
        found = True
        click.echo(f"{store.target} (TVM {store.version})")
        scored = sorted((mean_seconds(entry), entry) for entry in entries
                        if entry["kind"] == "measurement" and mean_seconds(entry) is not None)
        for seconds, entry in scored[:top]:
            click.echo(f"  {record_id(entry['trace'])}  {seconds * 1e6:8.1f} us  {entry.get('origin', '?'):6s} {entry['time']}")
        for entry in entries:
            if entry["kind"] == "verdict":
                click.echo(f"  verdict {entry['time']}: {entry['record_id']} {entry['tuned_us']:.1f} us vs hand "
                           f"{entry['hand_us']:.1f} us -> builds use the {entry['use']}")
    if not found:
        raise InvalidArgumentError(f"workload_key: no records of {workload_key} (see `dwc records list`)")


@group.command("verify")
@RECORDS_OPTION
def verify(records_dir: Path | None) -> None:
    """Read every records file (yours and dwc's) strictly; exit 1 if any line is corrupt or misfiled.

    \b
    Example:
      dwc records verify
    """
    problems = 0
    for store in _stores(records_dir, None):
        try:
            entries = store.read(strict=True)
        except CorruptRecordError as error:
            click.echo(f"CORRUPT {error}")
            problems += 1
            continue
        misfiled = store.line_count() - len(entries)
        if misfiled:
            click.echo(f"MISFILED {store.path}: {misfiled} line(s) of another target or TVM version")
            problems += 1
        else:
            click.echo(f"ok {store.path}: {len(entries)} records")
    if problems:
        raise SystemExit(1)


@group.command("prune")
@RECORDS_OPTION
@click.option("--target", help="Only this target's records, e.g. x86-avx512.")
@click.option("--keep", type=click.IntRange(min=1), default=16, show_default=True,
              help="Successful measurements kept per workload (the fastest), besides hand records and verdicts.")
def prune(records_dir: Path | None, target: str | None, keep: int) -> None:
    """Drop failed trials, corrupt lines and all but the fastest measurements of each workload
    (in your records; those shipped with dwc are left as they are).

    \b
    Example:
      dwc records prune --keep 8
    """
    for store in _stores(records_dir, target, shipped=False):
        entries = store.read()
        kept = {json.dumps(entry, sort_keys=True) for entry in entries
                if entry["kind"] == "verdict" or entry.get("origin") == "hand"}
        for key in {entry["workload_key"] for entry in entries}:
            successful = [entry for entry in entries if entry["workload_key"] == key and entry["kind"] == "measurement"
                          and entry.get("origin") != "hand" and mean_seconds(entry) is not None]
            kept.update(json.dumps(entry, sort_keys=True) for entry in sorted(successful, key=mean_seconds)[:keep])
        kept_count, dropped = store.rewrite(lambda entry: json.dumps(entry, sort_keys=True) in kept)
        click.echo(f"{store.path}: kept {kept_count}, dropped {dropped}")


command = group
