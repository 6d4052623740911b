"""TensorBoard event files, read and written without TensorBoard installed: scalars only.

An event file (``events.out.tfevents.*``) is a TFRecord stream: each record is its length
(uint64, little-endian), a masked CRC-32C of the length, the bytes of one ``Event``
protocol buffer, and a masked CRC-32C of those bytes. An ``Event`` holds a wall time
(field 1, double), a step (2, varint) and a ``Summary`` (5) of ``Value`` s (1): a tag (1)
and a ``simple_value`` (2, float32, what ``SummaryWriter.add_scalar`` writes) or a scalar
``tensor`` (8, what TensorBoard 2 and ``new_style=True`` write). Images, histograms and
text are skipped. We write scalars as float64 tensors with the ``scalars`` plugin's
metadata, which TensorBoard shows like any scalar and which keeps every digit.
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from danlu.errors import DanluError

__all__ = ["read_scalars", "write_scalars", "is_event_file", "EventFileError"]


class EventFileError(DanluError):
    """An event file that cannot be read; the message names the file and the byte offset."""


def is_event_file(path: Path) -> bool:
    return path.is_file() and "tfevents" in path.name


# ------------------------------------------------------------------ CRC-32C (Castagnoli)
def _crc_table() -> list[int]:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_TABLE = _crc_table()


def _crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _masked(data: bytes) -> int:
    crc = _crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


# ---------------------------------------------------------------- protocol buffers
def _bytes(value: object) -> bytes:
    assert isinstance(value, bytes)
    return value


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def _fields(data: bytes) -> Iterator[tuple[int, int, object]]:
    """(field number, wire type, value) of one message: ints for varints, bytes otherwise."""
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
            yield number, wire, value
        elif wire == 1:
            yield number, wire, data[pos:pos + 8]
            pos += 8
        elif wire == 2:
            size, pos = _varint(data, pos)
            yield number, wire, data[pos:pos + size]
            pos += size
        elif wire == 5:
            yield number, wire, data[pos:pos + 4]
            pos += 4
        else:
            raise ValueError(f"wire type {wire}")


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, wire: int, payload: bytes | int) -> bytes:
    key = _encode_varint(number << 3 | wire)
    if wire == 0:
        assert isinstance(payload, int)
        return key + _encode_varint(payload)
    assert isinstance(payload, bytes)
    if wire == 2:
        return key + _encode_varint(len(payload)) + payload
    return key + payload


# ---------------------------------------------------------------------------- read
_DT_FLOAT, _DT_DOUBLE = 1, 2


def _tensor_scalar(data: bytes) -> float | None:
    """The single value of a float or double TensorProto, or None for anything else."""
    dtype, content, floats, doubles = None, b"", [], []
    for number, wire, value in _fields(data):
        if number == 1 and wire == 0:
            dtype = value
        elif number == 4 and wire == 2:
            content = _bytes(value)
        elif number == 5:  # float_val: packed (wire 2) or one at a time (wire 5)
            floats += [v for (v,) in struct.iter_unpack("<f", _bytes(value))]
        elif number == 6:  # double_val: packed (wire 2) or one at a time (wire 1)
            doubles += [v for (v,) in struct.iter_unpack("<d", _bytes(value))]
    if dtype == _DT_FLOAT:
        values = floats or ([v for (v,) in struct.iter_unpack("<f", content)] if len(content) == 4 else [])
    elif dtype == _DT_DOUBLE:
        values = doubles or ([v for (v,) in struct.iter_unpack("<d", content)] if len(content) == 8 else [])
    else:
        return None
    return float(values[0]) if len(values) == 1 else None


def _records(path: Path) -> Iterator[tuple[int, bytes]]:
    data = path.read_bytes()
    pos = 0
    while pos < len(data):
        if pos + 12 > len(data):
            return  # a record still being written (the writer is alive, or was killed): stop there
        (length,) = struct.unpack_from("<Q", data, pos)
        if struct.unpack_from("<I", data, pos + 8)[0] != _masked(data[pos:pos + 8]):
            raise EventFileError(f"{path}: the record at byte {pos} fails its length checksum: the file is "
                                 "damaged or not a TensorBoard event file")
        end = pos + 12 + length + 4
        if end > len(data):
            return
        yield pos, data[pos + 12: pos + 12 + length]
        pos = end


def read_scalars(path: str | Path) -> dict[str, list[tuple[int, float, float]]]:
    """Every scalar in one event file: {tag: [(step, value, wall time), ...]} in file order.

    A truncated last record (a writer killed mid-write) is ignored; a record that is not
    an Event raises EventFileError with the file and offset."""
    path = Path(path)
    out: dict[str, list[tuple[int, float, float]]] = {}
    for offset, record in _records(path):
        try:
            wall, step, summary = 0.0, 0, None
            for number, wire, value in _fields(record):
                if number == 1 and wire == 1:
                    (wall,) = struct.unpack("<d", _bytes(value))
                elif number == 2 and wire == 0 and isinstance(value, int):
                    step = value - (1 << 64) if value >= 1 << 63 else value  # int64, two's complement
                elif number == 5 and wire == 2:
                    summary = value
            if summary is None:
                continue
            for number, wire, value in _fields(_bytes(summary)):
                if number != 1 or wire != 2:
                    continue
                tag, scalar = None, None
                for n, w, v in _fields(_bytes(value)):
                    if n == 1 and w == 2:
                        tag = _bytes(v).decode("utf-8", "replace")
                    elif n == 2 and w == 5:
                        (scalar,) = struct.unpack("<f", _bytes(v))
                    elif n == 8 and w == 2:
                        scalar = _tensor_scalar(_bytes(v))
                if tag is not None and scalar is not None:
                    out.setdefault(tag, []).append((step, float(scalar), float(wall)))
        except (ValueError, IndexError, struct.error) as exc:
            raise EventFileError(f"{path}: the record at byte {offset} is not a TensorBoard event ({exc}); "
                                 "is it an event file (events.out.tfevents.*)?") from exc
    return out


# --------------------------------------------------------------------------- write
def _record(event: bytes) -> bytes:
    length = struct.pack("<Q", len(event))
    return length + struct.pack("<I", _masked(length)) + event + struct.pack("<I", _masked(event))


def _event(wall: float, step: int, summary: bytes | None = None, version: str | None = None) -> bytes:
    out = _field(1, 1, struct.pack("<d", wall)) + _field(2, 0, step)
    if version is not None:
        out += _field(3, 2, version.encode())
    if summary is not None:
        out += _field(5, 2, summary)
    return out


_SCALARS_METADATA = _field(1, 2, _field(1, 2, b"scalars") + _field(2, 2, b""))  # plugin_data {plugin_name}
_SCALAR_SHAPE = b""  # TensorShapeProto with no dims: a scalar


def _scalar_value(tag: str, value: float) -> bytes:
    tensor = _field(1, 0, _DT_DOUBLE) + _field(2, 2, _SCALAR_SHAPE) + _field(6, 2, struct.pack("<d", value))
    return _field(1, 2, tag.encode()) + _field(9, 2, _SCALARS_METADATA) + _field(8, 2, tensor)


def write_scalars(folder: str | Path, series: Mapping[str, Sequence[tuple[int, float, float]]]) -> Path:
    """Write {tag: [(step, value, wall), ...]} as one new event file in `folder`; returns its path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}.danlu"
    points = sorted(((wall, step, tag, value) for tag, pts in series.items() for step, value, wall in pts),
                    key=lambda p: (p[1], p[0]))
    first_wall = points[0][0] if points else time.time()
    with open(path, "wb") as fh:
        fh.write(_record(_event(first_wall, 0, version="brain.Event:2")))
        for wall, step, tag, value in points:
            fh.write(_record(_event(wall, step, _field(1, 2, _scalar_value(tag, value)))))
    return path
