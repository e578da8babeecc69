"""Zero-copy reading and fast writing of the columnar messages, beside the generated code.

The generated classes (upb) copy every ``bytes`` field out of the message on each access,
and parse the whole message up front: for a batch of a million rows that is several copies
of 50+ MB. ``parse(cls, data)`` returns a :class:`View` instead: a read-only object with the
same attribute names, ``HasField`` and ``WhichOneof`` as the generated message, whose
``bytes`` fields are memoryviews into ``data`` and whose packed ``repeated double`` fields
are numpy arrays over ``data`` (no copy), so that ``numpy.frombuffer`` hands the caller's
bytes straight to the kernels. Scalars, strings and small messages decode as usual.

Semantics follow the protobuf encoding spec: unknown fields are skipped, the last value of
a scalar wins, a message field seen twice is merged, repeated scalars are accepted packed or
not. Malformed input (truncated varints or lengths, wrong wire types) raises DecodeError.

Writing: :func:`field_bytes`, :func:`field_varint`, :func:`field_message` build a message
as a list of chunks (numpy arrays contribute their memory directly) that ``b"".join``
turns into the wire bytes in one copy. Tests check every reader and writer against the
generated code (tests/contract/test_wire.py).
"""

from __future__ import annotations

import struct

import numpy as np
from google.protobuf import descriptor as _d
from google.protobuf.message import DecodeError

__all__ = ["DecodeError", "View", "parse", "field_bytes", "field_varint", "field_message", "padding", "tag", "varint"]

_T = _d.FieldDescriptor
_VARINT_TYPES = {_T.TYPE_INT32, _T.TYPE_INT64, _T.TYPE_UINT32, _T.TYPE_UINT64, _T.TYPE_ENUM, _T.TYPE_BOOL}
_DOUBLE = struct.Struct("<d")
_LEN = 2


def _read_varint(buf, pos: int, end: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        if pos >= end or shift > 63:
            raise DecodeError("truncated or overlong varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7


def _signed32(value: int) -> int:
    value &= 0xFFFFFFFFFFFFFFFF
    if value >= 1 << 63:
        value -= 1 << 64
    return ((value + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


def _varints(buf, pos: int, end: int) -> list[int]:
    out = []
    while pos < end:
        v, pos = _read_varint(buf, pos, end)
        out.append(v)
    return out


class View:
    """A read-only, lazily decoded protobuf message over a buffer."""

    __slots__ = ("_desc", "_values", "_present")

    def __init__(self, desc: _d.Descriptor, buf, start: int, end: int):
        self._desc = desc
        self._values: dict[str, object] = {}
        self._present: set[str] = set()
        by_number = desc.fields_by_number
        pos = start
        while pos < end:
            key, pos = _read_varint(buf, pos, end)
            number, wire = key >> 3, key & 7
            if number == 0:
                raise DecodeError("field number 0")
            field = by_number.get(number)
            if wire == 0:
                value, pos = _read_varint(buf, pos, end)
            elif wire == 1:
                if pos + 8 > end:
                    raise DecodeError("truncated fixed64")
                value = (pos, 8)
                pos += 8
            elif wire == _LEN:
                n, pos = _read_varint(buf, pos, end)
                if pos + n > end:
                    raise DecodeError("truncated length-delimited field")
                value = (pos, n)
                pos += n
            elif wire == 5:
                if pos + 4 > end:
                    raise DecodeError("truncated fixed32")
                value = (pos, 4)
                pos += 4
            else:
                raise DecodeError(f"unsupported wire type {wire}")
            if field is None:
                continue  # unknown field: skipped, as the generated code keeps it aside
            self._store(field, wire, value, buf)

    @classmethod
    def of(cls, desc: _d.Descriptor, values: dict, present: set) -> "View":
        """A View of values another reader decoded (the server's compiled batch reader,
        pricegrid.server.rpc._codec.read_view): ``values`` by field name, ``present`` the
        names of the fields the message had."""
        view = cls.__new__(cls)
        view._desc = desc
        view._values = values
        view._present = present
        return view

    def _store(self, field, wire: int, value, buf) -> None:
        name = field.name
        ftype = field.type
        repeated = field.is_repeated
        if field.containing_oneof is not None:
            for other in field.containing_oneof.fields:
                if other.name != name:
                    self._present.discard(other.name)
                    self._values.pop(other.name, None)
        self._present.add(name)
        if ftype == _T.TYPE_MESSAGE:
            if wire != _LEN:
                raise DecodeError(f"{name}: wrong wire type {wire}")
            pos, n = value
            sub = View(field.message_type, buf, pos, pos + n)
            if repeated:
                self._values.setdefault(name, []).append(sub)
            elif name in self._values:
                self._values[name] = _merge(self._values[name], sub)
            else:
                self._values[name] = sub
            return
        if ftype == _T.TYPE_DOUBLE:
            if wire == _LEN and repeated:
                pos, n = value
                if n % 8:
                    raise DecodeError(f"{name}: packed doubles of {n} bytes")
                arr = np.frombuffer(buf, dtype="<f8", count=n // 8, offset=pos)
            elif wire == 1:
                arr = np.frombuffer(buf, dtype="<f8", count=1, offset=value[0])
            else:
                raise DecodeError(f"{name}: wrong wire type {wire}")
            if repeated:
                prev = self._values.get(name)
                self._values[name] = arr if prev is None else np.concatenate([prev, arr])
            else:
                self._values[name] = float(arr[0])
            return
        if ftype in _VARINT_TYPES:
            if wire == 0:
                items = [value]
            elif wire == _LEN and repeated:
                pos, n = value
                items = _varints(buf, pos, pos + n)
            else:
                raise DecodeError(f"{name}: wrong wire type {wire}")
            if ftype in (_T.TYPE_INT32, _T.TYPE_ENUM):
                items = [_signed32(v) for v in items]
            elif ftype == _T.TYPE_INT64:  # two's complement, as the generated code reads it
                items = [v - (1 << 64) if v >= 1 << 63 else v for v in items]
            elif ftype == _T.TYPE_BOOL:
                items = [bool(v) for v in items]
            if repeated:
                self._values.setdefault(name, []).extend(items)
            else:
                self._values[name] = items[-1]
            return
        if ftype in (_T.TYPE_BYTES, _T.TYPE_STRING):
            if wire != _LEN:
                raise DecodeError(f"{name}: wrong wire type {wire}")
            pos, n = value
            data = memoryview(buf)[pos : pos + n]
            if ftype == _T.TYPE_STRING:
                try:
                    data = bytes(data).decode("utf-8")
                except UnicodeDecodeError:
                    raise DecodeError(f"{name}: invalid UTF-8") from None
            if repeated:
                self._values.setdefault(name, []).append(data)
            else:
                self._values[name] = data
            return
        raise DecodeError(f"{name}: field type {ftype} is not supported by pricegrid.v1.wire")

    # -- the generated message's reading API -------------------------------------------
    def __getattr__(self, name: str):
        try:
            return self._values[name]
        except KeyError:
            pass
        field = self._desc.fields_by_name.get(name)
        if field is None:
            raise AttributeError(name)
        return _default(field)

    def HasField(self, name: str) -> bool:
        field = self._desc.fields_by_name.get(name)
        if field is None:
            raise ValueError(f"{self._desc.full_name} has no field {name!r}")
        return name in self._present

    def WhichOneof(self, oneof: str):
        for field in self._desc.oneofs_by_name[oneof].fields:
            if field.name in self._present:
                return field.name
        return None

    @property
    def DESCRIPTOR(self):
        return self._desc


class _Empty:
    """The default value of an unset message field: every field at its default."""

    __slots__ = ("_desc",)

    def __init__(self, desc):
        self._desc = desc

    def __getattr__(self, name):
        field = self._desc.fields_by_name.get(name)
        if field is None:
            raise AttributeError(name)
        return _default(field)

    def HasField(self, name):
        return False

    def WhichOneof(self, oneof):
        return None


_EMPTY_BYTES = memoryview(b"")
_EMPTY_DOUBLES = np.empty(0, dtype="<f8")


def _default(field):
    if field.is_repeated:
        return _EMPTY_DOUBLES if field.type == _T.TYPE_DOUBLE else []
    if field.type == _T.TYPE_MESSAGE:
        return _Empty(field.message_type)
    if field.type == _T.TYPE_BYTES:
        return _EMPTY_BYTES
    if field.type == _T.TYPE_STRING:
        return ""
    if field.type == _T.TYPE_DOUBLE or field.type == _T.TYPE_FLOAT:
        return 0.0
    if field.type == _T.TYPE_BOOL:
        return False
    return 0


def _merge(a: View, b: View) -> View:
    """Protobuf merge of two occurrences of a singular message field: b's fields win."""
    for name in b._present:
        field = a._desc.fields_by_name[name]
        if field.containing_oneof is not None:
            for other in field.containing_oneof.fields:
                a._present.discard(other.name)
                a._values.pop(other.name, None)
        value = b._values[name]
        if field.is_repeated and name in a._values:
            old = a._values[name]
            a._values[name] = np.concatenate([old, value]) if isinstance(old, np.ndarray) else old + value
        elif field.type == _T.TYPE_MESSAGE and name in a._values:
            a._values[name] = _merge(a._values[name], value)
        else:
            a._values[name] = value
        a._present.add(name)
    return a


def parse(message_cls, data) -> View:
    """A :class:`View` of ``data`` (bytes-like) as ``message_cls``; raises DecodeError."""
    return View(message_cls.DESCRIPTOR, data, 0, len(data))


# ---------------------------------------------------------------------------------- writing
def varint(value: int) -> bytes:
    value &= 0xFFFFFFFFFFFFFFFF
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def tag(number: int, wire: int) -> bytes:
    return varint((number << 3) | wire)


def _nbytes(chunk) -> int:
    return chunk.nbytes if isinstance(chunk, (np.ndarray, memoryview)) else len(chunk)


def field_bytes(number: int, data) -> list:
    """A length-delimited field whose payload is ``data`` (bytes, or a contiguous array:
    little-endian raw bytes or a packed repeated double are both just its memory)."""
    if isinstance(data, np.ndarray):
        data = np.ascontiguousarray(data)
        if data.dtype.byteorder == ">":
            data = data.astype(data.dtype.newbyteorder("<"))
        data = memoryview(data).cast("B")
    return [tag(number, _LEN), varint(_nbytes(data)), data]


def field_varint(number: int, value: int) -> list:
    return [tag(number, 0), varint(value)] if value else []


def field_message(number: int, chunks: list) -> list:
    """A nested message from its own chunks (always written, even when empty)."""
    return [tag(number, _LEN), varint(sum(_nbytes(c) for c in chunks)), *chunks]


def padding(number: int, payload_offset: int) -> bytes:
    """A bytes field ``number`` (one the reader ignores) that moves a payload about to start
    at ``payload_offset`` onto a multiple of 8 (b"" when it already is on one)."""
    shift = -payload_offset % 8
    if not shift:
        return b""
    filler = (shift - 2) % 8  # key (1 byte, numbers < 16) + length (1 byte) + filler
    return tag(number, _LEN) + varint(filler) + b"\0" * filler
