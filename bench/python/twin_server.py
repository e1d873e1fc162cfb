"""The Python side of bench/python_twin.h's PythonTwin: a process that answers one command per
line of stdin with one line of stdout, so that a C++ benchmark can time PyTorch's side of each
comparison in a warm, persistent interpreter.

  ready BANNER             once, first
  ok ANSWER | error: ...   one line per command; an error keeps the server serving
  quit                     ends it

serve(banner, answer): answer(words) returns the text after "ok", or raises.
"""
import sys


def serve(banner, answer):
    print("ready " + banner, flush=True)
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        if words[0] == "quit":
            return
        try:
            print("ok " + answer(words), flush=True)
        except Exception as e:  # report, keep serving
            print("error: %s: %s" % (type(e).__name__, str(e).replace("\n", " ")), flush=True)
