#!/usr/bin/python3
"""Strictly parses a JSON Lines file and re-prints each line with json.dumps (ASCII escapes).

Strict: the file must be UTF-8 and end with a newline, every line must be one JSON object,
and the non-standard NaN / Infinity tokens Python accepts by default are rejected. Any
failure prints "error: ..." and exits with 1. Ends with "lines <count>".

Usage: /usr/bin/python3 tests/oracle/read_jsonl.py FILE
"""
import json
import sys


def reject(token):
    raise ValueError("non-standard JSON constant %s" % token)


def main():
    try:
        with open(sys.argv[1], "rb") as f:
            text = f.read().decode("utf-8")
        if text and not text.endswith("\n"):
            raise ValueError("file does not end with a newline")
        lines = text.split("\n")[:-1] if text else []
        for number, line in enumerate(lines, 1):
            obj = json.loads(line, parse_constant=reject)
            if not isinstance(obj, dict):
                raise ValueError("line %d is not an object" % number)
            print(json.dumps(obj))
        print("lines", len(lines))
    except Exception as e:  # decoding and parsing errors alike
        print("error: %s: %s" % (type(e).__name__, e))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
