#!/usr/bin/python3
"""scipy oracle for mgd's assignment solver (tests/solver, bench/solver_bench.cpp).

Reads a rows x cols float64 matrix written in native byte order (numpy.fromfile), tiles it
k times vertically (MGD spec 4a: a (k*rows) x cols matrix), and solves it with
scipy.optimize.linear_sum_assignment.

One shot:   lsa_oracle.py MATRIX ROWS COLS K       prints the optimal cost (repr, 17 digits)
Server:     lsa_oracle.py --serve                  prints "ready scipy VERSION", then answers
            load MATRIX ROWS COLS K  -> "ok"       (reads and tiles; not timed)
            solve                    -> "COST SECONDS"  (SECONDS: the solver call only)
            quit
            one line per command. Errors print "error: ..." (and exit 3 for a bad command).
A missing numpy or scipy prints "error: ..." and exits 2: the callers treat that as a test
failure, never as a pass.
"""
import sys
import time


def fail(message, code):
    print("error: " + message, flush=True)
    sys.exit(code)


try:
    import numpy as np
    import scipy
    from scipy.optimize import linear_sum_assignment
except ImportError as e:  # the project's scripts/test installs python3-scipy
    fail("%s needs numpy and scipy (%s); install python3-numpy python3-scipy" %
         (sys.executable, e), 2)


def load(path, rows, cols, k):
    cost = np.fromfile(path, dtype=np.float64)
    if cost.size != rows * cols:
        raise ValueError("%s holds %d values, expected %d x %d" % (path, cost.size, rows, cols))
    cost = cost.reshape(rows, cols)
    return np.tile(cost, (k, 1)) if k > 1 else cost


def solve(tiled):
    start = time.perf_counter()
    r, c = linear_sum_assignment(tiled)
    seconds = time.perf_counter() - start
    return float(tiled[r, c].sum()), seconds


def serve():
    print("ready scipy " + scipy.__version__, flush=True)
    tiled = None
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        try:
            if words[0] == "load" and len(words) == 5:
                tiled = load(words[1], int(words[2]), int(words[3]), int(words[4]))
                print("ok", flush=True)
            elif words[0] == "solve" and tiled is not None:
                cost, seconds = solve(tiled)
                print("%r %r" % (cost, seconds), flush=True)
            elif words[0] == "quit":
                return
            else:
                fail("bad command: " + line.strip(), 3)
        except (OSError, ValueError) as e:
            print("error: %s" % e, flush=True)


def main(argv):
    if len(argv) == 2 and argv[1] == "--serve":
        serve()
    elif len(argv) == 5:
        cost, _ = solve(load(argv[1], int(argv[2]), int(argv[3]), int(argv[4])))
        print(repr(cost))
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main(sys.argv)
