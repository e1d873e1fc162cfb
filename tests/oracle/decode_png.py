#!/usr/bin/python3
"""Decodes PNG files and prints, per file, '<mode> <width>x<height> <pixels hex>'.

Walks the chunks itself first (signature; IHDR first, IEND last; every chunk's CRC-32 checked
with binascii), then decodes with PIL. Any failure prints "error: ..." and exits with 1.

Usage: /usr/bin/python3 tests/oracle/decode_png.py FILE...
"""
import binascii
import struct
import sys

from PIL import Image


def check_chunks(data):
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("bad signature")
    pos, types = 8, []
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind = data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        if binascii.crc32(kind + body) != crc:
            raise ValueError("CRC mismatch in chunk %r" % kind)
        types.append(kind)
        pos += 12 + length
    if pos != len(data) or not types or types[0] != b"IHDR" or types[-1] != b"IEND":
        raise ValueError("bad chunk sequence %r" % types)


def main():
    for path in sys.argv[1:]:
        try:
            with open(path, "rb") as f:
                check_chunks(f.read())
            with Image.open(path) as img:
                img.load()
                print("%s %dx%d %s" % (img.mode, img.width, img.height, img.tobytes().hex()))
        except Exception as e:  # PIL raises many unrelated types for broken files
            print("error: %s: %s: %s" % (path, type(e).__name__, e))
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
