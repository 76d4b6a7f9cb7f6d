"""Mutation check of the C kernels (``fpqvar/kernels/native_lean.c``), which mutmut does not reach: each mutant is
one small edit of an arithmetic step (an operator, a constant, a comparison, the order of an addition); the tests
of the C kernels must fail on every one. Runs in a scratch clone (never in the working tree), each mutant with its
own library cache, and prints which survive.

    python tools/mutate_c.py [--tests tests/kernels/test_native.py ...]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = "fpqvar/kernels/native_lean.c"
_TAIL = ("for (int64_t k = {k0}; k < S; k++) {{\n            const int32_t x = wr[k];\n"
         "            for (int j = 0; j < nr; j++) s[j] += (int32_t)b[j * S + k] * x;")
# (what, the exact text, its replacement): each text occurs once in the source
MUTANTS = [
    ("rne: drop the 1.5 factor of the rounding constant",
     "+ ((23 - mbits) << 23) + 0x400000", "+ ((23 - mbits) << 23)"),
    ("rne: one more mantissa bit", "(23 - mbits) << 23", "(24 - mbits) << 23"),
    ("tie: half a step too small", "eb - ((mbits + 1) << 23)", "eb - ((mbits + 2) << 23)"),
    ("smallest step: emin off by one",
     "const int32_t lo = (emin + 127) << 23;", "const int32_t lo = (emin + 126) << 23;"),
    ("dfq: the sign bit left out of the exponent mask", "(int32_t)0xFF800000u", "(int32_t)0x7F800000"),
    ("ties_up: ties down",
     "*tie = frac == 0.5f;\n    r = (r + (frac >= 0.5f", "*tie = frac == 0.5f;\n    r = (r + (frac > 0.5f"),
    ("fix_tie: the other neighbour",
     "const double cmp = diff > 0.0 ? 1.0 : -1.0;", "const double cmp = diff > 0.0 ? -1.0 : 1.0;"),
    ("fix_tie: the tie rule skipped", "if (diff == 0.0) return r;", "if (diff == 0.0) return r + 1.0f;"),
    ("ties never repaired", "    if (!any) return;", "    return;"),
    ("absmax: zero groups keep scale 0", "sc = sc == 0.0f ? 1.0f : sc;", "sc = sc;"),
    ("range check: the divisor's exponent ignored", "(double)lo * ldexp(1.0, -k)", "(double)lo"),
    ("NaN not refused", "    if (nan) return 1;", "    (void)nan;"),
    # (not a mutant: "+0 to the positive side", f2i(v) < 0, is equivalent: 0's code is 0 on both grids)
    ("dfq: the halves' divisors swapped", "(dfq && f2i(v) <= 0) ? tn : tp;", "(dfq && f2i(v) <= 0) ? tp : tn;"),
    ("dfq: the negative scale's max by the positive grid", "n = (n > 0.0f ? n : 0.0f) / neg_max;",
     "n = (n > 0.0f ? n : 0.0f) / pos_max;"),
    ("sums: the scale product rounded after the dot product", "y[o] = y[o] + (sxv * sw[o]) * (float)d[o];",
     "y[o] = y[o] + sxv * (sw[o] * (float)d[o]);"),
    ("sums: the float path's sum perturbed", "y[o] = y[o] + (sxv * sw[o]) * d[o];",
     "y[o] = (sxv * sw[o]) * d[o] + y[o] * 1.0000001f;"),
    ("sums: the first term added to garbage", "const int first = !add && g == 0 && p == 0;", "const int first = 0;"),
    ("bias left out", "y[t * O + o] = y[t * O + o] + b[o];", "y[t * O + o] = y[t * O + o];"),
    ("dot, C: the last row of a block of 4 skipped", "for (; r + 4 <= R; r += 4) dot_rows_c(a + r * lda, lda, 4,",
     "for (; r + 4 <= R; r += 4) dot_rows_c(a + r * lda, lda, 3,"),
    ("dot, C: the row stride ignored", "s[j] += (int32_t)a[j * lda + k] * x;", "s[j] += (int32_t)a[j * 0 + k] * x;"),
    ("dot, AVX2: the fourth row's products from the third", "(const __m256i *)(b + 3 * S + k)",
     "(const __m256i *)(b + 2 * S + k)"),
    ("dot, AVX2: the tail past the last 16 dropped", _TAIL.format(k0="S16"), _TAIL.format(k0="S")),
    ("dot, AVX2: the codes widened as unsigned", "_mm256_cvtepi8_epi16(_mm_loadu_si128",
     "_mm256_cvtepu8_epi16(_mm_loadu_si128"),
    ("dot: the segment offset of the codes lost", "dot_segment_avx2(a + g * S, R,", "dot_segment_avx2(a, R,"),
    ("dot, vpmaddubsw: a negative row's sum not negated", "d[j * ldd + o] = (neg[j] ? -s0[j] : s0[j]) + t0;",
     "d[j * ldd + o] = s0[j] + t0;"),
    ("dot, vpmaddubsw: int16 chunks twice too long", "const int64_t n32 = p2 ? 32767 / p2 : S;",
     "const int64_t n32 = p2 ? 2 * (32767 / p2) : S;"),
    ("dot, vpmaddubsw: a block of mixed signs taken as definite", "mixed |= lo < 0 && hi > 0;", "mixed |= 0;"),
    ("dot, C: the segment offset of the weight lost", "dot_segment_c(a + g * S, R, lda, w + g * O * S,",
     "dot_segment_c(a + g * S, R, lda, w,"),
]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tests", nargs="+", default=["tests/kernels/test_native.py", "tests/kernels/test_native_dot.py",
                                                    "tests/quant/test_fast_lean.py"])
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="fpqvar-mutate-c-")) / "repo"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(work)], check=True)
    original = (ROOT / SRC).read_text()  # the working tree's source (it may be ahead of the last commit)
    survivors = []
    for i, (what, old, new) in enumerate(MUTANTS):
        if original.count(old) != 1:
            raise SystemExit(f"mutant {what!r}: its text occurs {original.count(old)} times in {SRC}")
        (work / SRC).write_text(original.replace(old, new))
        env = {**os.environ, "FPQVAR_CACHE_DIR": str(work / f".cache-{i}"), "PYTHONPATH": str(work)}
        build = subprocess.run([sys.executable, "-c", "from fpqvar.kernels import native; "
                                "import sys; sys.exit(native.unavailable() is not None)"], cwd=work, env=env)
        if build.returncode != 0:  # the tests would skip: a mutant that does not build says nothing
            raise SystemExit(f"mutant {what!r} does not build; fix the mutant")
        r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *args.tests],
                           cwd=work, env=env, capture_output=True, text=True)
        killed = r.returncode != 0
        print(f"{'killed  ' if killed else 'SURVIVED'} {what}", flush=True)
        if not killed:
            survivors.append(what)
    (work / SRC).write_text(original)
    print(f"{len(MUTANTS) - len(survivors)}/{len(MUTANTS)} mutants killed" + (f"; survivors: {survivors}"
                                                                              if survivors else ""))
    sys.exit(1 if survivors else 0)


if __name__ == "__main__":
    main()
