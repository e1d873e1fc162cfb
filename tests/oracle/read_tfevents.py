#!/usr/bin/python3
"""Reads TensorBoard event files independently of mgd and prints what they hold.

Parses the TFRecord framing, verifies both masked CRC-32C checksums of every record with its
own CRC-32C, decodes the Event / Summary protobufs from the wire format by hand (no
tensorflow, no protobuf package) and decodes images with PIL. Prints one line per item:

  version brain.Event:2
  scalar <tag> <step> <value, %.9g>
  image <tag> <step> <width> <height> <colorspace> <PIL mode> <PIL width>x<PIL height> <pixels>
  records <count>

where <pixels> is the hex of PIL's raw pixel bytes for images of at most 256 bytes, else
"sum=<sum of bytes>". Any corruption (bad CRC, truncated record, malformed protobuf, PNG that
does not decode, first record not a file version) prints "error: ..." and exits with 1.

Usage: /usr/bin/python3 tests/oracle/read_tfevents.py FILE...
"""
import io
import struct
import sys

from PIL import Image

# CRC-32C (Castagnoli), reflected polynomial 0x82F63B78, computed bit by bit for the table.
_TABLE = []
for _i in range(256):
    _c = _i
    for _ in range(8):
        _c = (_c >> 1) ^ 0x82F63B78 if _c & 1 else _c >> 1
    _TABLE.append(_c)


def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc = _TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked(crc):
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


class Corrupt(Exception):
    pass


def records(data):
    pos = 0
    while pos < len(data):
        if pos + 12 > len(data):
            raise Corrupt("truncated record header at byte %d" % pos)
        header = data[pos:pos + 8]
        (length,) = struct.unpack("<Q", header)
        (length_crc,) = struct.unpack("<I", data[pos + 8:pos + 12])
        if masked(crc32c(header)) != length_crc:
            raise Corrupt("length CRC mismatch at byte %d" % pos)
        start = pos + 12
        end = start + length
        if end + 4 > len(data):
            raise Corrupt("truncated record data at byte %d" % pos)
        body = data[start:end]
        (data_crc,) = struct.unpack("<I", data[end:end + 4])
        if masked(crc32c(body)) != data_crc:
            raise Corrupt("data CRC mismatch at byte %d" % pos)
        yield body
        pos = end + 4


def varint(buf, pos):
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise Corrupt("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise Corrupt("varint too long")


def fields(buf):
    """{field number: [values]}; varints as int, fixed32/64 as bytes, length-delimited as bytes."""
    out = {}
    pos = 0
    while pos < len(buf):
        key, pos = varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = varint(buf, pos)
        elif wire == 1:
            value, pos = buf[pos:pos + 8], pos + 8
        elif wire == 2:
            n, pos = varint(buf, pos)
            value, pos = buf[pos:pos + n], pos + n
        elif wire == 5:
            value, pos = buf[pos:pos + 4], pos + 4
        else:
            raise Corrupt("unsupported wire type %d" % wire)
        if pos > len(buf):
            raise Corrupt("field %d runs past its message" % number)
        out.setdefault(number, []).append(value)
    return out


def signed64(v):
    return v - (1 << 64) if v >= 1 << 63 else v


def read(path):
    with open(path, "rb") as f:
        data = f.read()
    count = 0
    for body in records(data):
        event = fields(body)
        (wall_time,) = struct.unpack("<d", event[1][0]) if 1 in event else (0.0,)
        if not 1e9 < wall_time < 1e11:
            raise Corrupt("implausible wall_time %r" % wall_time)
        step = signed64(event[2][0]) if 2 in event else 0
        if count == 0:
            if 3 not in event:
                raise Corrupt("first record is not a file_version event")
            print("version", event[3][0].decode())
        for summary in event.get(5, []):
            for value in fields(summary).get(1, []):
                v = fields(value)
                tag = v[1][0].decode()
                if 2 in v:
                    (x,) = struct.unpack("<f", v[2][0])
                    print("scalar %s %d %.9g" % (tag, step, x))
                elif 4 in v:
                    img = fields(v[4][0])
                    height, width, colorspace = img[1][0], img[2][0], img[3][0]
                    pil = Image.open(io.BytesIO(img[4][0]))
                    pil.load()
                    raw = pil.tobytes()
                    pixels = raw.hex() if len(raw) <= 256 else "sum=%d" % sum(raw)
                    print("image %s %d %d %d %d %s %dx%d %s" % (tag, step, width, height, colorspace,
                                                               pil.mode, pil.width, pil.height,
                                                               pixels))
                else:
                    raise Corrupt("summary value %r holds neither a scalar nor an image" % tag)
        count += 1
    print("records", count)


def main():
    try:
        for path in sys.argv[1:]:
            read(path)
    except Exception as e:  # Corrupt, and whatever a damaged file makes struct or PIL raise
        print("error: %s: %s" % (type(e).__name__, e))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
