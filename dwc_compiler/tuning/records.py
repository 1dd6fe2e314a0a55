"""Tuning records: the one store and lookup, for builds, ``dwc records`` and tuning alike.

Records are kept per target and per TVM version, appended durably, read forgivingly, and looked
up in two places: the user's records (``$DWC_RECORDS``, else ``~/.local/share/dwc/records``),
then those shipped with dwc (``targets/<target>/records``). A target uses the records of its
``records_target`` (``host`` those of the named target it matches). Entries are keyed by the
spec's tuning key (field ``workload_key``): the loop nest's, shared by a convolution with and
without its fused epilogue.

Layout: ``<root>/<target>/tvm-<version>/records.jsonl``, one JSON object per line:

- ``{"kind": "measurement", ...}``: one measured candidate of a tuning job (its MetaSchedule
  trace, run times or error, workload key and spec, target, TVM version);
- ``{"kind": "verdict", ...}``: the end of a job: the best record re-measured against the hand
  schedule, and which of the two builds should use.

MetaSchedule's own database ignores the target (apache/tvm #15549) and cannot read records of
another TVM version, so dwc keeps each (target, version) apart and checks both on every line.
Writes append whole lines under a file lock with fsync: a job killed at any moment loses no
finished line, two jobs on one directory never interleave, and a torn last line is skipped with
a warning when read, never fatal.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from filelock import FileLock

from ..errors import CorruptRecordError
from ..files import atomic_path
from ..targets import shipped_records_dir

logger = logging.getLogger(__name__)

RECORDS_FILE = "records.jsonl"
FAILED_RUN_SECS = 1e9  # MetaSchedule marks failed trials with run_secs 1e10


def default_records_dir() -> Path:
    """The user's records: ``$DWC_RECORDS``, else ``$XDG_DATA_HOME/dwc/records`` (``~/.local/share``)."""
    if os.environ.get("DWC_RECORDS"):
        return Path(os.environ["DWC_RECORDS"]).expanduser()
    return Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share")).expanduser() / "dwc" / "records"


def tvm_version() -> str:
    """The TVM version records are written for."""
    import tvm

    return tvm.__version__


def record_id(trace_json: Any) -> str:
    """A short stable name of a measured schedule (a hash of its trace)."""
    return "rec-" + hashlib.sha256(json.dumps(trace_json, sort_keys=True).encode()).hexdigest()[:12]


def mean_seconds(entry: dict[str, Any]) -> float | None:
    """Mean run time of a measurement, or None for failed or unmeasured ones."""
    run_secs = entry.get("run_secs")
    if entry.get("error") or not run_secs:
        return None
    mean = sum(run_secs) / len(run_secs)
    return mean if mean < FAILED_RUN_SECS else None


@dataclasses.dataclass(frozen=True)
class RecordStore:
    """The records of one target and TVM version under one root directory."""

    root: Path
    target: str
    version: str = dataclasses.field(default_factory=tvm_version)
    shipped: bool = False

    @property
    def directory(self) -> Path:
        """``<root>/<target>/tvm-<version>``; for records shipped with dwc, ``<root>/tvm-<version>``
        with `root` the target's ``records`` folder (``targets/<target>/records``)."""
        if self.shipped:
            return Path(self.root) / f"tvm-{self.version}"
        return Path(self.root) / self.target / f"tvm-{self.version}"

    @property
    def path(self) -> Path:
        """The JSON-lines file."""
        return self.directory / RECORDS_FILE

    def _lock(self) -> FileLock:
        return FileLock(str(self.directory / ".lock"))

    def append(self, entries: Iterable[dict[str, Any]]) -> None:
        """Append `entries` (whole lines, one write, fsync'd) under the directory's lock."""
        stamp = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        lines = "".join(json.dumps({**entry, "target": self.target, "tvm_version": self.version,
                                    "time": entry.get("time", stamp)}, sort_keys=True) + "\n"
                        for entry in entries)
        if not lines:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        with self._lock():
            descriptor = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            try:
                os.write(descriptor, lines.encode())
                os.fsync(descriptor)
            finally:
                os.close(descriptor)

    def read(self, strict: bool = False) -> list[dict[str, Any]]:
        """Every well-formed entry of this target and TVM version.

        A line that is not JSON (a torn write, a damaged file) is skipped with a warning, or, with
        `strict`, raises CorruptRecordError. Entries naming another target or version are skipped.
        """
        if not self.path.is_file():
            return []
        entries = []
        with open(self.path, encoding="utf-8", errors="replace") as stream:
            for number, line in enumerate(stream, start=1):
                if not line.strip():
                    continue
                try:
                    entry = json.loads(line)
                    if not isinstance(entry, dict) or "kind" not in entry or "workload_key" not in entry:
                        raise ValueError("not a dwc record")
                except ValueError as exc:
                    message = f"{self.path}:{number}: skipped a corrupt record ({exc})"
                    if strict:
                        raise CorruptRecordError(message) from exc
                    logger.warning(message)
                    continue
                if entry.get("target") != self.target or entry.get("tvm_version") != self.version:
                    logger.warning("%s:%d: skipped a record of %s / TVM %s", self.path, number,
                                   entry.get("target"), entry.get("tvm_version"))
                    continue
                entries.append(entry)
        return entries

    def measurements(self, workload_key: str) -> list[dict[str, Any]]:
        """The measurement entries of `workload_key`, failed ones included."""
        return [entry for entry in self.read() if entry["kind"] == "measurement"
                and entry["workload_key"] == workload_key]

    def line_count(self) -> int:
        """Non-blank lines in the file, corrupt and misfiled ones included."""
        if not self.path.is_file():
            return 0
        with open(self.path, encoding="utf-8", errors="replace") as stream:
            return sum(1 for line in stream if line.strip())

    def rewrite(self, keep: Any) -> tuple[int, int]:
        """Keep only entries for which ``keep(entry)`` is true, replacing the file atomically.

        Returns:
            (kept, dropped) entry counts; corrupt lines are dropped too.
        """
        with self._lock():
            if not self.path.is_file():
                return 0, 0
            total = self.line_count()
            kept = [entry for entry in self.read() if keep(entry)]
            with atomic_path(self.path) as temporary:
                temporary.write_text("".join(json.dumps(entry, sort_keys=True) + "\n" for entry in kept))
        return len(kept), total - len(kept)


@dataclasses.dataclass(frozen=True)
class Choice:
    """What a build of one workload should use: a record's trace, or the hand schedule."""

    use_record: bool
    record: dict[str, Any] | None
    record_id: str | None
    measured_us: float | None
    hand_us: float | None
    source: Path | None
    records_target: str | None = None

    def describe(self) -> str:
        """One line for people."""
        whose = f"{self.records_target} " if self.records_target else ""
        if self.use_record:
            return (f"{whose}tuning record {self.record_id} ({self.measured_us:.1f} us measured, "
                    f"from {self.source})")
        if self.record_id:
            return (f"hand schedule ({whose}record {self.record_id} was not faster: "
                    f"{self.measured_us:.1f} vs {self.hand_us:.1f} us)")
        return "hand schedule (no tuning record)"


NO_RECORD = Choice(False, None, None, None, None, None)


def user_stores(records_dir: Path | None = None) -> list[RecordStore]:
    """Every (target, TVM version) store under the user's records directory."""
    root = Path(records_dir) if records_dir is not None else default_records_dir()
    return [RecordStore(root, path.parent.parent.name, path.parent.name.removeprefix("tvm-"))
            for path in sorted(root.glob(f"*/tvm-*/{RECORDS_FILE}"))]


def shipped_stores(target: str) -> list[RecordStore]:
    """Every TVM version's store shipped with dwc for the named target `target`."""
    root = shipped_records_dir(target)
    if root is None:
        return []
    return [RecordStore(root, target, path.parent.name.removeprefix("tvm-"), shipped=True)
            for path in sorted(root.glob(f"tvm-*/{RECORDS_FILE}"))]


def stores_for(target: str, records_dir: Path | None = None) -> list[RecordStore]:
    """The stores a build for the records target `target` consults, in order: the user's
    records of this TVM version, then those shipped with dwc."""
    root = Path(records_dir) if records_dir is not None else default_records_dir()
    shipped = shipped_records_dir(target)
    return [RecordStore(root, target)] + ([RecordStore(shipped, target, shipped=True)] if shipped else [])


def lookup(spec: Any, target: Any, records_dir: Path | None = None) -> Choice:
    """The schedule a build of `spec` for `target` should use (see :func:`choose`), from the
    records of ``target.records_target``: the user's (in `records_dir` if given), then dwc's."""
    if target.records_target is None:
        return NO_RECORD
    choice = choose(spec.tuning_key, stores_for(target.records_target, records_dir))
    return dataclasses.replace(choice, records_target=target.records_target)


def choose(workload_key: str, stores: list[RecordStore]) -> Choice:
    """The schedule builds of `workload_key` should use, from the records in `stores`.

    The best measured record is used when it beat the hand schedule: by the job's final
    interleaved re-measurement (its verdict) where there is one, else by the run times measured
    in the same job. Failed trials are never used.
    """
    best: tuple[float, dict[str, Any], Path] | None = None
    hand_seconds: list[float] = []
    verdicts: list[dict[str, Any]] = []
    for store in stores:
        for entry in store.read():
            if entry["workload_key"] != workload_key:
                continue
            if entry["kind"] == "verdict":
                verdicts.append(entry)
                continue
            seconds = mean_seconds(entry)
            if seconds is None:
                continue
            if entry.get("origin") == "hand":
                hand_seconds.append(seconds)
            elif best is None or seconds < best[0]:
                best = (seconds, entry, store.path)
    if best is None:
        return NO_RECORD
    seconds, entry, source = best
    identifier = record_id(entry["trace"])
    verdict = next((v for v in reversed(verdicts) if v.get("record_id") == identifier), None)
    if verdict is not None:
        return Choice(verdict["use"] == "record", entry, identifier, verdict["tuned_us"], verdict["hand_us"], source)
    hand_us = min(hand_seconds) * 1e6 if hand_seconds else None
    use = hand_us is None or seconds * 1e6 < hand_us
    return Choice(use, entry, identifier, seconds * 1e6, hand_us, source)
