#!/usr/bin/env python3
"""Copy documents for bench/strategies/copy_pretrain.sh: one-line records of 1-5 items (numbers of 1-12 digits,
70%, and invented words) written twice, sometimes reversed ("Record: 42 * 73383683. Again: 42 * 73383683."),
about --copy-bytes of them; with --kjv, spread evenly between the lines of that corpus."""
import argparse
import random

SYL = ["bri", "wyn", "qua", "ri", "ta", "vor", "om", "wick", "sa", "rho", "tel", "an", "mar", "dun", "los", "ke", "fa",
       "ru", "zel", "mo", "ny", "thar", "pel", "is", "gor", "la"]
INTRO = ["The list reads", "Written down", "Noted", "Record", "Copy", "Entry", "The tally", "Keep these"]
AGAIN = ["again", "once more", "repeated", "copied", "the same", "that is"]


def records(r, target):
    def item():
        if r.random() < 0.7:
            d = r.randint(1, 12)
            return str(r.randint(10 ** (d - 1), 10 ** d - 1))
        return "".join(r.choice(SYL) for _ in range(r.randint(2, 4))).capitalize()
    out, n = [], 0
    while n < target:
        xs = [item() for _ in range(r.randint(1, 5))]
        sep = r.choice([", ", " ", " and ", " + ", " - ", " * "])
        ys = xs[::-1] if r.random() < 0.3 else xs
        line = f"{r.choice(INTRO)}: {sep.join(xs)}. {r.choice(AGAIN).capitalize()}: {sep.join(ys)}."
        out.append(line)
        n += len(line) + 1
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--kjv", help="corpus to mix the records into (one document per line)")
    ap.add_argument("--copy-bytes", type=int, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args()
    cp = records(random.Random(a.seed), a.copy_bytes)
    if not a.kjv:
        open(a.out, "w").write("\n".join(cp) + "\n")
        return
    kjv = open(a.kjv).read().split("\n")
    ratio, out, j = len(cp) / len(kjv), [], 0
    for i, line in enumerate(kjv):
        out.append(line)
        while j < len(cp) and j < (i + 1) * ratio:
            out.append(cp[j])
            j += 1
    open(a.out, "w").write("\n".join(out))


if __name__ == "__main__":
    main()
