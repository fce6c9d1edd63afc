"""Parquet files assembled from row groups encoded elsewhere.

A Parquet file is `PAR1`, column chunks, a Thrift-compact `FileMetaData`
footer, its length and `PAR1`. Row groups point at their column chunks by
absolute file offsets, so row groups encoded into separate buffers (by
several threads, or by an earlier write) can be laid side by side in one
file with their offsets shifted and one footer listing them in the order
wanted. Nothing is re-encoded: pages are copied as bytes.

The footer is read and written by a generic Thrift compact-protocol codec
that keeps every field it does not touch exactly as it was (decoding and
re-encoding a footer gives the same bytes).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

MAGIC = b"PAR1"
# Compact-protocol type ids.
T_TRUE, T_FALSE, T_I8, T_I16, T_I32, T_I64, T_DOUBLE, T_BINARY, T_LIST, T_SET, T_MAP, T_STRUCT = range(1, 13)

# A struct is a list of [field id, type id, value]; a list is (element type, [values]).
Struct = list[list[Any]]


class SpliceError(ValueError):
    """A Parquet buffer this module cannot take apart (or put together)."""


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def byte(self) -> int:
        value = self.data[self.pos]
        self.pos += 1
        return value

    def varint(self) -> int:
        shift = result = 0
        while True:
            b = self.byte()
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                return result
            shift += 7

    def zigzag(self) -> int:
        n = self.varint()
        return (n >> 1) ^ -(n & 1)

    def value(self, ctype: int) -> Any:
        if ctype in (T_TRUE, T_FALSE):  # inside a container: one byte
            return self.byte()
        if ctype == T_I8:
            return self.byte()
        if ctype in (T_I16, T_I32, T_I64):
            return self.zigzag()
        if ctype == T_DOUBLE:
            value = self.data[self.pos:self.pos + 8]
            self.pos += 8
            return value
        if ctype == T_BINARY:
            n = self.varint()
            value = self.data[self.pos:self.pos + n]
            self.pos += n
            return value
        if ctype in (T_LIST, T_SET):
            header = self.byte()
            size, etype = header >> 4, header & 0x0F
            if size == 15:
                size = self.varint()
            return (etype, [self.value(etype) for _ in range(size)])
        if ctype == T_MAP:
            size = self.varint()
            if not size:
                return (0, 0, [])
            types = self.byte()
            kt, vt = types >> 4, types & 0x0F
            return (kt, vt, [(self.value(kt), self.value(vt)) for _ in range(size)])
        if ctype == T_STRUCT:
            return self.struct()
        raise SpliceError(f"unknown Thrift compact type {ctype} at byte {self.pos}")

    def struct(self) -> Struct:
        fields: Struct = []
        last = 0
        while True:
            header = self.byte()
            if header == 0:
                return fields
            delta, ctype = header >> 4, header & 0x0F
            fid = last + delta if delta else self.zigzag()
            last = fid
            value = ctype == T_TRUE if ctype in (T_TRUE, T_FALSE) else self.value(ctype)
            fields.append([fid, ctype, value])


class _Writer:
    def __init__(self) -> None:
        self.out = bytearray()

    def varint(self, n: int) -> None:
        while True:
            if n < 0x80:
                self.out.append(n)
                return
            self.out.append((n & 0x7F) | 0x80)
            n >>= 7

    def zigzag(self, n: int) -> None:
        self.varint((n << 1) ^ (n >> 63))

    def value(self, ctype: int, value: Any) -> None:
        if ctype in (T_TRUE, T_FALSE, T_I8):
            self.out.append(value & 0xFF)
        elif ctype in (T_I16, T_I32, T_I64):
            self.zigzag(value)
        elif ctype == T_DOUBLE:
            self.out += value
        elif ctype == T_BINARY:
            self.varint(len(value))
            self.out += value
        elif ctype in (T_LIST, T_SET):
            etype, items = value
            if len(items) < 15:
                self.out.append(len(items) << 4 | etype)
            else:
                self.out.append(0xF0 | etype)
                self.varint(len(items))
            for item in items:
                self.value(etype, item)
        elif ctype == T_MAP:
            kt, vt, items = value
            self.varint(len(items))
            if items:
                self.out.append(kt << 4 | vt)
                for k, v in items:
                    self.value(kt, k)
                    self.value(vt, v)
        elif ctype == T_STRUCT:
            self.struct(value)
        else:
            raise SpliceError(f"unknown Thrift compact type {ctype}")

    def struct(self, fields: Struct) -> None:
        last = 0
        for fid, ctype, value in fields:
            wire = (T_TRUE if value else T_FALSE) if ctype in (T_TRUE, T_FALSE) else ctype
            if 0 < fid - last <= 15:
                self.out.append((fid - last) << 4 | wire)
            else:
                self.out.append(wire)
                self.zigzag(fid)
            last = fid
            if ctype not in (T_TRUE, T_FALSE):
                self.value(ctype, value)
        self.out.append(0)


def decode_struct(data: bytes) -> Struct:
    return _Reader(data).struct()


def encode_struct(fields: Struct) -> bytes:
    writer = _Writer()
    writer.struct(fields)
    return bytes(writer.out)


def _field(fields: Struct, fid: int) -> list[Any] | None:
    return next((f for f in fields if f[0] == fid), None)


def _set(fields: Struct, fid: int, ctype: int, value: Any) -> None:
    found = _field(fields, fid)
    if found is not None:
        found[1], found[2] = ctype, value
    else:
        fields.append([fid, ctype, value])
        fields.sort(key=lambda f: f[0])


@dataclass
class ParquetParts:
    """A Parquet buffer taken apart: its data region and its footer."""

    data: bytes          # everything between the leading PAR1 and the footer
    footer: Struct       # FileMetaData

    @property
    def row_groups(self) -> list[Struct]:
        found = _field(self.footer, 4)
        return list(found[2][1]) if found else []


def split(buffer: bytes | memoryview, where: str = "buffer") -> ParquetParts:
    """The data region and decoded footer of a whole Parquet file."""
    buffer = bytes(buffer)
    if len(buffer) < 12 or buffer[:4] != MAGIC or buffer[-4:] != MAGIC:
        raise SpliceError(f"{where} is not a Parquet file (no PAR1 magic at both ends)")
    (length,) = struct.unpack("<I", buffer[-8:-4])
    start = len(buffer) - 8 - length
    if start < 4:
        raise SpliceError(f"{where}: footer length {length} does not fit the file")
    footer = decode_struct(buffer[start:len(buffer) - 8])
    if encode_struct(footer) != buffer[start:len(buffer) - 8]:
        raise SpliceError(f"{where}: its footer does not re-encode to the same bytes")
    return ParquetParts(buffer[4:start], footer)


def _shift_row_group(group: Struct, delta: int) -> Struct:
    """A copy of a RowGroup with every absolute offset moved by `delta`."""
    group = [list(f) for f in group]
    columns = _field(group, 1)
    shifted = []
    for chunk in columns[2][1]:
        chunk = [list(f) for f in chunk]
        for fid in (2, 4, 6):  # file_offset, offset_index_offset, column_index_offset
            f = _field(chunk, fid)
            if f is not None and f[2]:  # Arrow writes the deprecated file_offset as 0: left so
                f[2] += delta
        meta = _field(chunk, 3)
        if meta is not None:
            meta_fields = [list(f) for f in meta[2]]
            # data_page_offset, index_page_offset, dictionary_page_offset, bloom_filter_offset
            for fid in (9, 10, 11, 14):
                f = _field(meta_fields, fid)
                if f is not None:
                    f[2] += delta
            meta[2] = meta_fields
        shifted.append(chunk)
    columns[2] = (columns[2][0], shifted)
    offset = _field(group, 5)  # RowGroup.file_offset
    if offset is not None:
        offset[2] += delta
    return group


def _rows(group: Struct) -> int:
    return int(_field(group, 3)[2])


def assemble(parts: Sequence[ParquetParts], order: Sequence[tuple[int, int]],
             key_value: dict[str, str] | None = None) -> bytes:
    """One Parquet file from the data regions of `parts` laid end to end,
    whose footer lists row group `j` of part `i` for each `(i, j)` of
    `order`, in that order. Schema and writer fields come from `parts[0]`;
    `key_value` replaces the key-value metadata when given.

    Raises:
        SpliceError: when the parts' schemas differ.
    """
    schema = _field(parts[0].footer, 2)
    for number, part in enumerate(parts[1:], start=1):
        if _field(part.footer, 2) != schema:
            raise SpliceError(f"part {number} has another schema than part 0")
    starts, position = [], 4
    for part in parts:
        starts.append(position)
        position += len(part.data)
    groups = []
    for ordinal, (i, j) in enumerate(order):
        group = _shift_row_group(parts[i].row_groups[j], starts[i] - 4)
        if _field(group, 7) is not None:  # ordinal
            _field(group, 7)[2] = ordinal
        groups.append(group)
    footer = [list(f) for f in parts[0].footer]
    _set(footer, 3, T_I64, sum(_rows(g) for g in groups))
    _set(footer, 4, T_LIST, (T_STRUCT, groups))
    if key_value is not None:
        pairs = [[[1, T_BINARY, k.encode()], [2, T_BINARY, v.encode()]] for k, v in key_value.items()]
        _set(footer, 5, T_LIST, (T_STRUCT, pairs))
    encoded = encode_struct(footer)
    return b"".join([MAGIC, *(p.data for p in parts), encoded, struct.pack("<I", len(encoded)), MAGIC])


def key_value(parts: ParquetParts) -> dict[str, str]:
    """The footer's key-value metadata."""
    found = _field(parts.footer, 5)
    out = {}
    for pair in (found[2][1] if found else []):
        k, v = _field(pair, 1), _field(pair, 2)
        out[k[2].decode()] = v[2].decode() if v is not None else ""
    return out


class SpliceWriter:
    """`assemble` written to an open file part by part, every row group of
    each part in order: only the row groups' metadata stays in memory, so
    a file far larger than memory is spliced from parts encoded one by one.
    `close` writes the footer; the bytes equal `assemble(parts, every group
    in order, key_value)`."""

    def __init__(self, handle: Any) -> None:
        self.handle = handle
        self.position = len(MAGIC)
        self.groups: list[Struct] = []
        self.footer: Struct | None = None
        handle.write(MAGIC)

    def add(self, part: ParquetParts) -> None:
        """Append `part`'s data region and list its row groups."""
        schema = _field(part.footer, 2)
        if self.footer is None:
            self.footer = [list(f) for f in part.footer]
        elif schema != _field(self.footer, 2):
            raise SpliceError("a part has another schema than the first")
        for group in part.row_groups:
            group = _shift_row_group(group, self.position - len(MAGIC))
            if _field(group, 7) is not None:  # ordinal
                _field(group, 7)[2] = len(self.groups)
            self.groups.append(group)
        self.handle.write(part.data)
        self.position += len(part.data)

    def close(self, key_value: dict[str, str] | None = None) -> None:
        """Write the footer (`key_value` replaces the key-value metadata when given)."""
        if self.footer is None:
            raise SpliceError("no part to take the schema from")
        footer = self.footer
        _set(footer, 3, T_I64, sum(_rows(g) for g in self.groups))
        _set(footer, 4, T_LIST, (T_STRUCT, self.groups))
        if key_value is not None:
            pairs = [[[1, T_BINARY, k.encode()], [2, T_BINARY, v.encode()]] for k, v in key_value.items()]
            _set(footer, 5, T_LIST, (T_STRUCT, pairs))
        encoded = encode_struct(footer)
        self.handle.write(encoded + struct.pack("<I", len(encoded)) + MAGIC)
