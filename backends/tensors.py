"""Tensors in the KServe v2 raw layout, to and from NumPy.

KServe v2 (and Triton) send tensor data as raw bytes: little-endian,
row-major; a BYTES tensor is a sequence of elements, each a 4-byte
little-endian length followed by that many bytes. This module converts both
ways and checks that the byte count matches the shape, so that a malformed
request fails with a message naming the tensor and both sizes. Pure: NumPy
only, no I/O.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

import numpy as np

# KServe v2 datatype names and their NumPy dtypes (little-endian, explicitly).
DATATYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype("?"),
    "UINT8": np.dtype("u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
    "BYTES": np.dtype(object),
}

# dtype -> KServe name, both byte orders (looked up per tensor on the hot path).
_NAMES: dict[np.dtype, str] = {}
for _name, _dtype in DATATYPES.items():
    if _name != "BYTES":
        _NAMES[_dtype] = _NAMES[_dtype.newbyteorder(">")] = _name


class TensorError(ValueError):
    """A tensor whose bytes, shape or datatype do not agree; the message says how."""


def element_count(shape: Sequence[int]) -> int:
    count = 1
    for dim in shape:
        if dim < 0:
            raise TensorError(f"dimension {dim} is negative")
        count *= dim
    return count


def from_raw(name: str, datatype: str, shape: Sequence[int], raw: bytes) -> np.ndarray:
    """Decode one tensor; raises TensorError naming `name` on any mismatch."""
    if datatype not in DATATYPES:
        raise TensorError(f"tensor `{name}`: unknown datatype {datatype!r}")
    count = element_count(shape)
    if datatype == "BYTES":
        return _bytes_from_raw(name, shape, count, raw)
    dtype = DATATYPES[datatype]
    expected = count * dtype.itemsize
    if len(raw) != expected:
        raise TensorError(
            f"tensor `{name}`: {datatype}{list(shape)} needs {expected} bytes, got {len(raw)}"
        )
    return np.frombuffer(raw, dtype=dtype).reshape(shape)


def _bytes_from_raw(name: str, shape: Sequence[int], count: int, raw: bytes) -> np.ndarray:
    items, offset = [], 0
    view = memoryview(raw)
    while offset < len(raw):
        if offset + 4 > len(raw):
            raise TensorError(f"tensor `{name}`: truncated length prefix at byte {offset}")
        (length,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        if offset + length > len(raw):
            raise TensorError(
                f"tensor `{name}`: element {len(items)} claims {length} bytes, "
                f"only {len(raw) - offset} remain"
            )
        items.append(bytes(view[offset : offset + length]))
        offset += length
    if len(items) != count:
        raise TensorError(
            f"tensor `{name}`: BYTES{list(shape)} needs {count} elements, got {len(items)}"
        )
    array = np.empty(count, dtype=object)
    array[:] = items
    return array.reshape(shape)


def to_raw(array: np.ndarray) -> tuple[str, list[int], bytes]:
    """Encode one array: its KServe datatype, shape and raw bytes."""
    if array.dtype.kind in ("O", "U", "S"):
        return "BYTES", list(array.shape), _bytes_to_raw(array)
    datatype = datatype_of(array.dtype)
    data = np.ascontiguousarray(array, dtype=DATATYPES[datatype])
    return datatype, list(array.shape), data.tobytes()


def _bytes_to_raw(array: np.ndarray) -> bytes:
    parts = []
    for item in array.reshape(-1):
        data = item.encode("utf-8") if isinstance(item, str) else bytes(item)
        parts.append(struct.pack("<I", len(data)))
        parts.append(data)
    return b"".join(parts)


def datatype_of(dtype: np.dtype) -> str:
    """The KServe datatype name of a NumPy dtype."""
    if dtype.kind in ("O", "U", "S"):
        return "BYTES"
    name = _NAMES.get(dtype)
    if name is not None:
        return name
    raise TensorError(f"no KServe datatype for NumPy dtype {dtype}")
