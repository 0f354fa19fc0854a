"""Read one named metadata entry of a .tflite file with nothing but ``struct``.

The TFLite runtime a board has (tflite_runtime) ships no flatbuffer schema, so ``verify`` and the runners cannot use
ai_edge_litert's ``flatbuffer_utils`` there. The schema fields read here (tensorflow/lite/schema/schema.fbs):
``Model.buffers`` (field 4), ``Model.metadata`` (field 6), ``Metadata{name: string, buffer: uint}``,
``Buffer{data: [ubyte], offset: ulong, size: ulong}`` (offset/size: data stored after the flatbuffer, for files > 2 GB).
"""

from __future__ import annotations

import struct
from pathlib import Path

_MODEL_BUFFERS, _MODEL_METADATA = 4, 6


class _Reader:
    def __init__(self, data: bytes):
        self.d = data

    def _u(self, fmt: str, pos: int) -> int:
        if pos < 0 or pos + struct.calcsize(fmt) > len(self.d):
            raise ValueError(f"offset {pos} outside the file")
        return struct.unpack_from("<" + fmt, self.d, pos)[0]

    def field(self, table: int, i: int) -> int | None:
        """Absolute position of field ``i`` of the table at ``table``, or None when absent."""
        vt = table - self._u("i", table)
        if 4 + 2 * i >= self._u("H", vt):
            return None
        off = self._u("H", vt + 4 + 2 * i)
        return table + off if off else None

    def deref(self, pos: int) -> int:
        return pos + self._u("I", pos)

    def vector(self, pos: int) -> tuple[int, int]:
        """(length, position of the first element) of the vector referenced at ``pos``."""
        v = self.deref(pos)
        return self._u("I", v), v + 4

    def tables(self, table: int, i: int) -> list[int]:
        pos = self.field(table, i)
        if pos is None:
            return []
        n, first = self.vector(pos)
        return [self.deref(first + 4 * k) for k in range(n)]

    def bytes_at(self, pos: int) -> bytes:
        n, first = self.vector(pos)
        if first + n > len(self.d):
            raise ValueError("vector runs past the end of the file")
        return self.d[first : first + n]


def read_metadata_bytes(data: bytes, name: str) -> bytes | None:
    """The buffer of the metadata entry ``name`` in a TFLite flatbuffer, or None; ValueError if the file is
    malformed."""
    r = _Reader(data)
    model = r.deref(0)
    buffers = r.tables(model, _MODEL_BUFFERS)
    for md in r.tables(model, _MODEL_METADATA):
        npos = r.field(md, 0)
        if npos is None or r.bytes_at(npos).decode("utf-8", "replace") != name:
            continue
        bpos = r.field(md, 1)
        idx = r._u("I", bpos) if bpos is not None else 0
        if idx >= len(buffers):
            raise ValueError(f"metadata {name!r} names buffer {idx} of {len(buffers)}")
        buf = buffers[idx]
        dpos = r.field(buf, 0)
        if dpos is not None:
            return r.bytes_at(dpos)
        opos, spos = r.field(buf, 1), r.field(buf, 2)
        off = r._u("Q", opos) if opos is not None else 0
        size = r._u("Q", spos) if spos is not None else 0
        if off > 1 and off + size <= len(data):
            return data[off : off + size]
        return b""
    return None


def read_metadata_file(path: Path, name: str) -> bytes | None:
    return read_metadata_bytes(Path(path).read_bytes(), name)
