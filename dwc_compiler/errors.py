"""The error family dwc raises: every failure a user can cause is one of these.

Each message names the parameter (or file) at fault and what would have been accepted,
so that the CLI can print it as one line and the API caller can act on it.
"""

from __future__ import annotations


class DwcError(Exception):
    """Base class of every error dwc raises on purpose."""


class InvalidSpecError(DwcError, ValueError):
    """A convolution parameter (shape, stride, padding, dtype, ...) is not accepted."""


class UnknownTargetError(DwcError, ValueError):
    """A target name is not one of the named targets."""


class IncompatibleModuleError(DwcError):
    """An exported module cannot be loaded here: missing or unreadable manifest, other
    TVM version, a CPU that lacks the instructions it was built for, or a changed library."""


class InvalidArgumentError(DwcError, ValueError):
    """An array passed to a compiled kernel does not match its spec (shape or dtype)."""


class BuildError(DwcError):
    """TVM could not compile or export a kernel; the message carries TVM's reason."""


class CorruptRecordError(DwcError):
    """A tuning record cannot be read or does not belong to the workload it claims."""


class MissingToolError(DwcError):
    """A system tool dwc needs for this target (a cross compiler, qemu, nvcc) is not installed."""
