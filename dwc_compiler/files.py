"""Where dwc keeps files, and writing files a user owns so that they are never left half-written."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(destination: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside `destination` that replaces it atomically when the block succeeds.

    The caller writes the file at the yielded path; on success it is flushed to disk and renamed
    over `destination` (an atomic step on POSIX), on failure it is removed and `destination` is
    left as it was.
    """
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{destination.name}.", suffix=".partial" + destination.suffix,
                                         dir=destination.parent)
    os.close(handle)
    temporary_path = Path(temporary)
    try:
        yield temporary_path
        with open(temporary_path, "rb+") as written:
            os.fsync(written.fileno())
        os.chmod(temporary_path, 0o666 & ~_current_umask())
        os.replace(temporary_path, destination)
    finally:
        temporary_path.unlink(missing_ok=True)


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_json_atomic(destination: str | os.PathLike, data: Any) -> None:
    """Write `data` as indented JSON to `destination`, atomically."""
    with atomic_path(destination) as temporary:
        temporary.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def sha256_of(path: str | os.PathLike) -> str:
    """The hex SHA-256 of the file at `path`."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def cache_dir() -> Path:
    """dwc's cache directory: ``$DWC_CACHE``, else ``$XDG_CACHE_HOME/dwc``, else ``~/.cache/dwc``."""
    if os.environ.get("DWC_CACHE"):
        return Path(os.environ["DWC_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "dwc"
