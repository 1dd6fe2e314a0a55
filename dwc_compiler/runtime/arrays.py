"""The arrays kernels are called with: NumPy arrays and DLPack tensors, checked and made usable."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InvalidArgumentError
from ..ops.signature import Argument

ALIGNMENT_BYTES = 64


def empty_aligned(shape: tuple[int, ...], dtype: str | np.dtype, offset: int = 0) -> np.ndarray:
    """An uninitialized C-contiguous array whose data starts on a 64-byte boundary (or `offset`
    bytes past one, a multiple of the itemsize below 64).

    dwc's kernels accept any alignment, but vector loads that straddle cache lines cost up to a
    third of a layer's time. x86 kernels of NHWC layers where that matters most (stride 2, and
    small planes at stride 1) carry variants for inputs 16, 32 or 48 bytes past a vector
    boundary and place their outputs at the input's offset; the others (NCHW, large planes,
    channels that are no whole number of vectors, and small planes on more threads than their
    variants serve: 8 for 14x14x384) run fastest on aligned inputs. NumPy aligns arrays to 16
    bytes only; allocate inputs with this to be sure of full speed.
    """
    dtype = np.dtype(dtype)
    if offset % dtype.itemsize or not 0 <= offset < ALIGNMENT_BYTES:
        raise InvalidArgumentError(f"offset: expected a multiple of {dtype.itemsize} below {ALIGNMENT_BYTES}, "
                                   f"got {offset}")
    count = int(np.prod(shape, dtype=np.int64))
    backing = np.empty(count * dtype.itemsize + 2 * ALIGNMENT_BYTES, np.uint8)
    start = (-backing.ctypes.data) % ALIGNMENT_BYTES + offset
    return backing[start:start + count * dtype.itemsize].view(dtype).reshape(shape)


def as_numpy(value: Any, parameter: str) -> np.ndarray:
    """`value` as a NumPy array (DLPack tensors on the CPU without a copy), or an
    InvalidArgumentError naming `parameter`."""
    if isinstance(value, np.ndarray):
        return value
    if hasattr(value, "__dlpack__"):
        try:
            return np.from_dlpack(value)
        except (BufferError, RuntimeError, TypeError, ValueError) as exc:
            raise InvalidArgumentError(
                f"{parameter}: cannot read this {type(value).__name__} through DLPack on the CPU "
                f"({exc}); pass a CPU tensor or a NumPy array") from exc
    try:
        return np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise InvalidArgumentError(f"{parameter}: expected an array, got {type(value).__name__}") from exc


def prepare_array(value: Any, argument: Argument) -> np.ndarray:
    """`value` as a C-contiguous, writable, element-aligned NumPy array of `argument`'s shape and dtype.

    No copy is made when `value` already is one (the common case); misaligned, non-contiguous,
    read-only or byte-swapped arrays are copied, since the generated code needs none of those.

    Raises:
        InvalidArgumentError: on a shape or dtype other than the kernel's, naming the argument.
    """
    array = as_numpy(value, argument.name)
    if array.shape != argument.shape:
        layout = f" {argument.layout}" if argument.layout else ""
        raise InvalidArgumentError(
            f"{argument.name}: expected shape {list(argument.shape)}{layout}, got {list(array.shape)}")
    dtype = np.dtype(argument.dtype)
    if array.dtype != dtype:
        if array.dtype.kind == "f" and array.dtype.newbyteorder("=") == dtype:
            return array.astype(dtype)
        raise InvalidArgumentError(f"{argument.name}: expected dtype {dtype.name}, got {array.dtype}")
    flags = array.flags
    if flags.c_contiguous and flags.writeable and flags.aligned:  # aligned: to the element size
        return array
    return np.array(array, dtype=dtype, order="C", copy=True)


def check_out(out: Any, argument: Argument) -> np.ndarray:
    """`out` if it can receive the output `argument` in place, else an InvalidArgumentError."""
    dtype = np.dtype(argument.dtype)
    if not isinstance(out, np.ndarray) or out.shape != argument.shape or out.dtype != dtype:
        raise InvalidArgumentError(
            f"out: expected a NumPy array of shape {list(argument.shape)} and dtype {dtype.name}, "
            f"got {getattr(out, 'shape', type(out).__name__)} {getattr(out, 'dtype', '')}")
    if not out.flags.carray:  # C-contiguous, writable and aligned to the element size
        raise InvalidArgumentError("out: must be C-contiguous, writable and element-aligned")
    return out


def random_arguments(arguments: tuple[Argument, ...], seed: int, aligned: bool = True) -> list[np.ndarray]:
    """Random normal arrays for every argument but the output (64-byte aligned when `aligned`)."""
    rng = np.random.default_rng(seed)
    arrays = []
    for argument in arguments[:-1]:
        array = empty_aligned(argument.shape, argument.dtype) if aligned else np.empty(argument.shape, argument.dtype)
        array[...] = rng.standard_normal(argument.shape)
        arrays.append(array)
    return arrays
