#!/usr/bin/python3
"""Writes tests/golden/margins.csv: MGD margins (spec 2) computed with scipy.stats.norm.

Run with Debian's interpreter: /usr/bin/python3 tests/oracle/make_margins_golden.py
Columns: gamma (BN weight), beta (BN bias), margin.
"""
import itertools
import os

from scipy.stats import norm

gammas = [-2.0, -0.3, 1e-4, 0.05, 0.5, 1.0, 1.7, 4.0]
betas = [-5.0, -1.0, -0.2, 0.0, 0.1, 0.8, 1.5, 2.9, 3.2, 6.0]


def margin(gamma, beta):
    s, m = abs(gamma), beta
    if norm.cdf(-m / s) > 0.001:
        return m - s * norm.pdf(m / s) / norm.cdf(-m / s)
    return -3.0 * s


out = os.path.join(os.path.dirname(__file__), "..", "golden", "margins.csv")
with open(out, "w") as f:
    f.write("gamma,beta,margin\n")
    for g, b in itertools.product(gammas, betas):
        f.write(f"{g!r},{b!r},{margin(g, b)!r}\n")
