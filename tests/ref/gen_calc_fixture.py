#!/usr/bin/env python3
"""Reference values for the calc tool (tests/test_tools.c): random expressions evaluated exactly by Python's
fractions.Fraction (an independent implementation of exact rational arithmetic), formatted by calc's documented
rules (src/tools/tools.h): an integer; an exact decimal when the denominator has only the factors 2 and 5;
else "p/q (~ D)" with D the value truncated toward zero to 20 decimals.

    python3 tests/ref/gen_calc_fixture.py > tests/fixtures/tools/calc_cases.tsv

Lines: EXPRESSION <TAB> RESULT. Seeded: the same file on every run.
"""
import random
from fractions import Fraction


def dec(num, den, k):
    t = abs(num) * 10 ** k // den
    s = str(t).rjust(k + 1, "0")
    if k:
        s = s[:-k] + "." + s[-k:]
    return ("-" if num < 0 else "") + s


def fmt(f):
    if f.denominator == 1:
        return str(f.numerator)
    d, a, b = f.denominator, 0, 0
    while d % 2 == 0:
        d //= 2; a += 1
    while d % 5 == 0:
        d //= 5; b += 1
    if d == 1:
        return dec(f.numerator, f.denominator, max(a, b))
    return "%s (~ %s)" % (f, dec(f.numerator, f.denominator, 20))


def number(r):
    k = r.random()
    if k < 0.5:
        return str(r.randrange(0, 10 ** r.randrange(1, 30)))
    if k < 0.8:
        return "%d.%s" % (r.randrange(0, 10 ** r.randrange(1, 8)), "".join(r.choice("0123456789") for _ in range(r.randrange(1, 6))))
    return str(r.randrange(1, 100))


def expr(r, depth):
    """(text, value); % only between non-negative integers (calc's remainder takes the dividend's sign,
    Python's the divisor's: they agree there)."""
    if depth == 0 or r.random() < 0.3:
        s = number(r)
        return s, Fraction(s)
    k = r.random()
    a, va = expr(r, depth - 1)
    if k < 0.1:
        return "-(%s)" % a, -va
    if k < 0.2:
        return "(%s)" % a, va
    if k < 0.3 and va.denominator == 1 and abs(va) < 10 ** 6:
        e = r.randrange(-3, 6)
        if va == 0 and e < 0:
            e = 2
        return "(%s)^%d" % (a, e), va ** e
    b, vb = expr(r, depth - 1)
    op = r.choice("+-*/%")
    if op == "/" and vb == 0:
        op = "+"
    if op == "%" and not (va.denominator == 1 and vb.denominator == 1 and va >= 0 and vb > 0):
        op = "*"
    v = {"+": va + vb, "-": va - vb, "*": va * vb, "/": va / vb if vb else None, "%": va % vb if vb else None}[op]
    return "(%s) %s (%s)" % (a, op, b), v


def main():
    r = random.Random(20261207)
    fixed = ["1+2*3", "2^10", "2**-2", "-2^2", "7 % 3", "10/4", "1/3", "-1/8", "0.1+0.2", "1e3", "2.5e-2",
             "123456789012 * 987654321098", "99999999999999999999 + 1", "(1)", "3 - 5", "-(-4)", "2^3^2",
             "1/7 + 1/7", "0.000", "5 * 0.2"]
    lines = []
    # the hand-picked cases' values, written out (Python reads ^ as xor; calc's ^ is a right-associative power)
    vals = {"1+2*3": Fraction(7), "2^10": Fraction(1024), "2**-2": Fraction(1, 4), "-2^2": Fraction(-4),
            "7 % 3": Fraction(1), "10/4": Fraction(5, 2), "1/3": Fraction(1, 3), "-1/8": Fraction(-1, 8),
            "0.1+0.2": Fraction(3, 10), "1e3": Fraction(1000), "2.5e-2": Fraction(1, 40),
            "123456789012 * 987654321098": Fraction(123456789012 * 987654321098),
            "99999999999999999999 + 1": Fraction(10 ** 20), "(1)": Fraction(1), "3 - 5": Fraction(-2),
            "-(-4)": Fraction(4), "2^3^2": Fraction(2 ** 9), "1/7 + 1/7": Fraction(2, 7), "0.000": Fraction(0),
            "5 * 0.2": Fraction(1)}
    for s in fixed:
        lines.append("%s\t%s" % (s, fmt(vals[s])))
    n = 0
    while n < 300:
        s, v = expr(r, 4)
        lines.append("%s\t%s" % (s, fmt(v)))
        n += 1
    print("\n".join(lines))


if __name__ == "__main__":
    main()
