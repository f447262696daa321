#!/usr/bin/env python3
"""Writes a cut-down sweep file for a GPU probe: the header of a family's sweep file (family,
dtypes, tolerance, ...) plus the named variant blocks, optionally with their params replaced
and their templates read from another tree (an older commit's kernels, for an A/B in one call:
pass that tree's own sweep file, whose constraints name only its tunables).

  scripts/sweep_probe.py sweeps/gemm_int4.toml OUT.toml --variant int4_gemv_tc \
      [--params '{ GROUP = [128], ... }'] [--templates DIR]

--templates DIR reads `kernels/<path>` from DIR/<path>.
"""
import argparse
import re


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("sweep")
    ap.add_argument("out")
    ap.add_argument("--variant", action="append", required=True)
    ap.add_argument("--params", help="replacement params table (one variant only)")
    ap.add_argument("--templates", help="directory standing in for kernels/")
    a = ap.parse_args()
    if a.params and len(a.variant) != 1:
        ap.error("--params takes exactly one --variant")

    head, *blocks = open(a.sweep).read().split("[[variant]]")
    out = [head]
    for name in a.variant:
        found = [b for b in blocks if re.search(r'^name = "%s"$' % re.escape(name), b, re.M)]
        if not found:
            ap.error(f"{a.sweep} has no variant {name!r}")
        # A block runs up to the comment that introduces the next variant.
        block = found[0].split("\n\n#")[0].rstrip("\n") + "\n"
        if a.params:
            block = re.sub(r"^params = .*$", lambda _: "params = " + a.params, block, flags=re.M)
        if a.templates:
            block = re.sub(r'^file = "kernels/(.*)"$', lambda m: 'file = "%s/%s"' % (a.templates, m.group(1)),
                           block, flags=re.M)
        out.append("[[variant]]" + block + "\n")
    open(a.out, "w").write("".join(out))


if __name__ == "__main__":
    main()
