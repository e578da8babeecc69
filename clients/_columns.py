"""Columns: numpy arrays <-> the contract's ``DoubleColumn``/``Int32Column``, and chunk plans.

Arrays travel as raw little-endian bytes (``raw``), built with one ``tobytes`` of a
contiguous ``<f8``/``<i4`` array and read back with ``np.frombuffer``: no per-row Python.
A column of length 1 is broadcast by the server to every row.
"""

from __future__ import annotations

import datetime as _dt
import functools
import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from pricegrid.v1 import common_pb2, wire

from ._models import OPTION_TYPES, _OPTION_TYPE_KEYS

F8 = np.dtype("<f8")
I4 = np.dtype("<i4")
_EPOCH = np.datetime64("1970-01-01", "D")


# --------------------------------------------------------------------------- arrays in
def as_float_column(name: str, values: Any) -> np.ndarray:
    """A 1-d contiguous little-endian float64 array (a scalar becomes length 1)."""
    try:
        array = np.asarray(values, dtype=F8)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name}: cannot be read as float64 ({e})") from None
    return _one_d(name, array)


def _one_d(name: str, array: np.ndarray) -> np.ndarray:
    if array.ndim == 0:
        array = array.reshape(1)
    elif array.ndim != 1:
        raise ValueError(f"{name}: expected a 1-d array or a scalar, got shape {array.shape}")
    return np.ascontiguousarray(array)  # (0 rows is a batch the server answers: rows 0)


def as_option_type_column(values: Any) -> np.ndarray:
    """Option types as int32 (1 call, 2 put) from ints or strings ``'call'``/``'put'``/``'C'``/``'P'``.

    Strings are mapped once per distinct value (``np.unique``), never once per row.
    """
    array = np.asarray(values)
    if array.dtype.kind in "iu":
        # checked before the int32 cast, which would wrap 2**32 + 1 into a call
        bad = (array != 1) & (array != 2)  # (np.isin sorts: ten times slower on a million rows)
        if bad.any():
            raise ValueError(f"option_type: unknown code {array[bad][0]} (1 call, 2 put)")
        return _one_d("option_type", array.astype(I4, copy=False))
    if array.dtype.kind == "f":
        if not np.all((array == 1.0) | (array == 2.0)):
            raise ValueError("option_type: float codes must be 1.0 (call) or 2.0 (put)")
        return _one_d("option_type", array.astype(I4))
    if array.dtype.kind in "USO":
        flat = array.reshape(-1) if array.ndim else array.reshape(1)
        uniques, inverse = np.unique(flat.astype(str), return_inverse=True)
        codes = np.empty(len(uniques), dtype=I4)
        for i, u in enumerate(uniques):  # one per distinct string, not per row
            key = _OPTION_TYPE_KEYS.get(u.strip().lower())
            if key is None:
                raise ValueError(f"option_type: unknown value {u!r}; expected 'call'/'put'/'C'/'P' or 1/2")
            codes[i] = OPTION_TYPES[key]
        return _one_d("option_type", codes[inverse.reshape(-1)])
    raise ValueError(f"option_type: cannot read dtype {array.dtype}")


def as_enum_column(name: str, values: Any, enum: str) -> np.ndarray:
    """A contract enum column as int32 from codes or value names (``"down_out"``,
    ``"DOWN-OUT"``), mapped once per distinct string."""
    from ._models import enum_code, enum_names

    names = enum_names(enum)
    array = np.asarray(values)
    if array.dtype.kind in "iu":
        bad = ~np.isin(array, list(names.values()))  # before the int32 cast, which would wrap
        if bad.any():
            raise ValueError(f"{name}: unknown {enum} code {array[bad][0]}")
        return _one_d(name, array.astype(I4, copy=False))
    if array.dtype.kind in "USO":
        flat = array.reshape(-1) if array.ndim else array.reshape(1)
        uniques, inverse = np.unique(flat.astype(str), return_inverse=True)
        codes = np.array([enum_code(enum, u, name) for u in uniques], dtype=I4)
        return _one_d(name, codes[inverse.reshape(-1)])
    raise ValueError(f"{name}: cannot read dtype {array.dtype}")


def as_date_column(name: str, values: Any) -> np.ndarray:
    """Dates as int32 days since 1970-01-01, from numpy ``datetime64`` (any unit, truncated
    to the day), ``datetime.date`` objects, ISO strings, or ints already in days."""
    if isinstance(values, (_dt.date, np.datetime64, str)):
        values = [values]
    array = np.asarray(values)
    if array.dtype.kind in "iu":
        days = array.astype(np.int64)
    else:
        try:
            if array.dtype.kind != "M":
                # date/datetime objects, pandas Timestamps and ISO strings, via microseconds
                array = array.astype("datetime64[us]")
            if np.isnat(array).any():
                raise ValueError("missing date (NaT)")
            days = array.astype("datetime64[D]").astype(np.int64)
        except (TypeError, ValueError) as e:
            raise ValueError(f"{name}: cannot be read as dates ({e})") from None
    if days.size and (days.min() < np.iinfo(I4).min or days.max() > np.iinfo(I4).max):
        raise ValueError(f"{name}: date out of range")
    return _one_d(name, days.astype(I4))


def as_date(name: str, value: Any) -> _dt.date:
    """One date (``datetime.date``, ``datetime64``, ISO string, pandas Timestamp) -> date."""
    if isinstance(value, _dt.datetime):
        return value.date()
    if isinstance(value, _dt.date):
        return value
    try:
        day = np.datetime64(value, "D")
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name}: cannot be read as a date ({e})") from None
    if np.isnat(day):
        raise ValueError(f"{name}: missing date (NaT)")
    return day.astype(_dt.date)


def days_to_datetime64(days: np.ndarray) -> np.ndarray:
    """int32 days since 1970-01-01 -> datetime64[D] (the inverse of :func:`as_date_column`)."""
    return _EPOCH + np.asarray(days, dtype=np.int64).astype("timedelta64[D]")


def date_message(value: _dt.date) -> common_pb2.Date:
    return common_pb2.Date(year=value.year, month=value.month, day=value.day)


def broadcast_length(columns: dict[str, np.ndarray]) -> int:
    """The batch's row count: every column has it or length 1. Raises naming the culprit."""
    lengths = {name: len(a) for name, a in columns.items()}
    others = [length for length in lengths.values() if length != 1]  # (0 rows with scalars: 0)
    n = max(others) if others else (1 if lengths else 0)
    for name, length in lengths.items():
        if length not in (1, n):
            raise ValueError(f"{name}: has {length} rows; expected {n} (or 1 to broadcast)")
    return n


# --------------------------------------------------------------------------- to/from proto
def double_column(array: np.ndarray, start: int = 0, stop: int | None = None) -> common_pb2.DoubleColumn:
    """``array[start:stop]`` as raw little-endian float64 (a length-1 array is sent whole)."""
    if len(array) != 1:
        array = array[start:stop]
    return common_pb2.DoubleColumn(raw=np.ascontiguousarray(array, dtype=F8).tobytes())


def int32_column(array: np.ndarray, start: int = 0, stop: int | None = None) -> common_pb2.Int32Column:
    if len(array) != 1:
        array = array[start:stop]
    return common_pb2.Int32Column(raw=np.ascontiguousarray(array, dtype=I4).tobytes())


def decode_double(column: common_pb2.DoubleColumn, rows: int | None = None) -> np.ndarray:
    """A DoubleColumn (raw or packed) -> float64 array; a length-1 column is broadcast to
    ``rows`` when given. Raw bytes are viewed, not copied (the array is then read-only)."""
    if column.raw:
        if len(column.raw) % 8:
            raise ValueError(f"raw float64 column of {len(column.raw)} bytes (not a multiple of 8)")
        array = np.frombuffer(column.raw, dtype=F8)
    else:
        array = np.array(column.values, dtype=np.float64)
    return _broadcast(array, rows)


def decode_int32(column: common_pb2.Int32Column, rows: int | None = None) -> np.ndarray:
    if column.raw:
        if len(column.raw) % 4:
            raise ValueError(f"raw int32 column of {len(column.raw)} bytes (not a multiple of 4)")
        array = np.frombuffer(column.raw, dtype=I4)
    else:
        array = np.array(column.values, dtype=np.int32)
    return _broadcast(array, rows)


def _broadcast(array: np.ndarray, rows: int | None) -> np.ndarray:
    if rows is None or len(array) == rows:
        return array
    if len(array) == 1:
        return np.full(rows, array[0], dtype=array.dtype)
    if len(array) == 0:
        raise ValueError(f"empty column; expected {rows} rows")
    raise ValueError(f"column of {len(array)} rows; expected {rows}")


# --------------------------------------------------------------------------- chunks
@dataclass(frozen=True, slots=True)
class ChunkPlan:
    """How a batch is cut: ``rows_per_chunk`` rows each, ``ranges`` ``[(start, stop), ...]``."""

    rows: int
    rows_per_chunk: int
    ranges: tuple[tuple[int, int], ...]

    def __len__(self) -> int:
        return len(self.ranges)


#: bytes held back in every message for framing, field tags, the capped row errors, ...
MESSAGE_OVERHEAD = 64 * 1024


def plan_chunks(
    rows: int,
    *,
    request_bytes_per_row: int,
    response_bytes_per_row: int,
    max_message_bytes: int = 0,
    max_rows: int = 0,
    chunk_rows: int | None = None,
    fill: float = 0.5,
    target_bytes: int = 0,
) -> ChunkPlan:
    """Cut ``rows`` into chunks whose request and response both stay well under
    ``max_message_bytes`` (at most ``fill`` of it, less a fixed overhead) and under
    ``max_rows``; ``target_bytes`` (the larger of a row's request and response bytes times
    the chunk's rows) and ``chunk_rows`` cap the chunk size further. 0 means "no limit".

        >>> plan_chunks(10, request_bytes_per_row=52, response_bytes_per_row=84, chunk_rows=4).ranges
        ((0, 4), (4, 8), (8, 10))
    """
    if rows < 0:
        raise ValueError("rows must be >= 0")
    limit = math.inf
    if max_message_bytes and max_message_bytes > 0:
        budget = max_message_bytes * fill - MESSAGE_OVERHEAD
        if budget <= 0:
            budget = max_message_bytes * fill
        per_row = max(request_bytes_per_row, response_bytes_per_row, 1)
        limit = min(limit, max(1, int(budget // per_row)))
    if max_rows and max_rows > 0:
        limit = min(limit, max_rows)
    if target_bytes and target_bytes > 0:
        limit = min(limit, max(1, target_bytes // max(request_bytes_per_row, response_bytes_per_row, 1)))
    if chunk_rows is not None:
        if chunk_rows < 1:
            raise ValueError("chunk_rows must be >= 1")
        limit = min(limit, chunk_rows)
    size = rows if limit is math.inf else int(limit)
    size = max(1, min(size, rows)) if rows else 1
    # no rows: one empty chunk, so that the server checks the request and answers rows 0
    ranges = tuple((start, min(start + size, rows)) for start in range(0, rows, size)) or ((0, 0),)
    return ChunkPlan(rows=rows, rows_per_chunk=size, ranges=ranges)


def row_bytes(columns: Sequence[np.ndarray]) -> int:
    """Bytes per row the non-broadcast columns take on the wire."""
    return sum(a.dtype.itemsize for a in columns if len(a) != 1)


# --------------------------------------------------------------------------- wire format
# A batch request is mostly a few big ``raw`` byte fields. Setting them on a message costs
# three copies of every column (tobytes, the assignment, the serialization); protobuf will
# not take a memoryview. Instead the request is written in the wire format directly: the
# scalar fields serialized by protobuf, then, for each column, the length-delimited headers
# of its path followed by the column's own memory, joined in ONE copy. Parsers merge repeated
# occurrences of an embedded message field (protobuf encoding spec, "Last One Wins" /
# merging of embedded messages), so each column may travel as its own fragment.
def field_path_headers(descriptor, path: Sequence[str], length: int) -> bytes:
    """The wire bytes that put a ``length``-byte payload at the bytes field ``path`` (e.g.
    ``("european", "strike", "raw")``) of a message of type ``descriptor``; the payload
    follows them."""
    return _field_path_headers(descriptor, tuple(path), length)


@functools.lru_cache(maxsize=4096)  # every chunk of a batch but the last has the same sizes
def _field_path_headers(descriptor, path: tuple, length: int) -> bytes:
    numbers = []
    for name in path:
        field = descriptor.fields_by_name[name]
        numbers.append(field.number)
        descriptor = field.message_type
    if descriptor is not None:
        raise ValueError(f"{'.'.join(path)} is a message, not a bytes field")
    # innermost first: key + length of the payload; each enclosing level wraps what is inside
    headers: list[bytes] = []
    size = length
    for number in reversed(numbers):
        header = wire.tag(number, 2) + wire.varint(size)
        headers.append(header)
        size += len(header)
    return b"".join(reversed(headers))


_PADDING_FIELD = 15  # PriceBatchRequest/ImpliedVolatilityBatchRequest.alignment_padding


def alignment_padding(payload_offset: int) -> bytes:
    """An ``alignment_padding`` field that moves a payload about to start at
    ``payload_offset`` onto a multiple of 8 (b"" when it already is).

        >>> len(alignment_padding(13)) % 8, alignment_padding(16)
        (3, b'')
    """
    return wire.padding(_PADDING_FIELD, payload_offset)


def column_buffer(array: np.ndarray, start: int, stop: int) -> memoryview:
    """The bytes of ``array[start:stop]`` (contiguous, little-endian) without copying."""
    return memoryview(array[start:stop]).cast("B")
