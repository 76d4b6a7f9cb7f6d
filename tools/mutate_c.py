"""Mutation check of the C kernels (``fpqvar/kernels/native_lean.c``, ``native_dot.c``), which mutmut does not
reach: each mutant is one small edit of an arithmetic step (an operator, a constant, a comparison, the order of an
addition); the tests of the C kernels must fail on every one. Runs in a scratch clone (never in the working tree),
each mutant with its own library cache, and prints which survive.

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
LEAN, DOT = "fpqvar/kernels/native_lean.c", "fpqvar/kernels/native_dot.c"
# (source, what, the exact text, its replacement): each text occurs once in its source
MUTANTS = [
    (LEAN, "rne: drop the 1.5 factor of the rounding constant",
     "+ ((23 - mbits) << 23) + 0x400000", "+ ((23 - mbits) << 23)"),
    (LEAN, "rne: one more mantissa bit", "(23 - mbits) << 23", "(24 - mbits) << 23"),
    (LEAN, "tie: half a step too small", "eb - ((mbits + 1) << 23)", "eb - ((mbits + 2) << 23)"),
    (LEAN, "smallest step: emin off by one",
     "const int32_t lo = (emin + 127) << 23;", "const int32_t lo = (emin + 126) << 23;"),
    (LEAN, "dfq: the sign bit left out of the exponent mask", "(int32_t)0xFF800000u", "(int32_t)0x7F800000"),
    (LEAN, "ties_up: ties down",
     "*tie = frac == 0.5f;\n    r = (r + (frac >= 0.5f", "*tie = frac == 0.5f;\n    r = (r + (frac > 0.5f"),
    (LEAN, "fix_tie: the other neighbour",
     "const double cmp = diff > 0.0 ? 1.0 : -1.0;", "const double cmp = diff > 0.0 ? -1.0 : 1.0;"),
    (LEAN, "fix_tie: the tie rule skipped", "if (diff == 0.0) return r;", "if (diff == 0.0) return r + 1.0f;"),
    (LEAN, "ties never repaired", "    if (!any) return;", "    return;"),
    (LEAN, "absmax: zero groups keep scale 0", "sc = sc == 0.0f ? 1.0f : sc;", "sc = sc;"),
    (LEAN, "range check: the divisor's exponent ignored", "(double)lo * ldexp(1.0, -k)", "(double)lo"),
    (LEAN, "NaN not refused", "    if (nan) return 1;", "    (void)nan;"),
    # (not a mutant: "+0 to the positive side", f2i(v) < 0, is equivalent: 0's code is 0 on both grids)
    (LEAN, "dfq: the halves' divisors swapped", "(dfq && f2i(v) <= 0) ? tn : tp;", "(dfq && f2i(v) <= 0) ? tp : tn;"),
    (LEAN, "dfq: the negative scale's max by the positive grid", "n = (n > 0.0f ? n : 0.0f) / neg_max;",
     "n = (n > 0.0f ? n : 0.0f) / pos_max;"),
    (LEAN, "sums: the scale product rounded after the dot product", "y[o] = y[o] + (sxv * sw[o]) * (float)d[o];",
     "y[o] = y[o] + sxv * (sw[o] * (float)d[o]);"),
    (LEAN, "sums: the float path's sum perturbed", "y[o] = y[o] + (sxv * sw[o]) * d[o];",
     "y[o] = (sxv * sw[o]) * d[o] + y[o] * 1.0000001f;"),
    (LEAN, "sums: the first term added to garbage", "const int first = !add && g == 0 && p == 0;",
     "const int first = 0;"),
    (LEAN, "bias left out", "y[t * O + o] = y[t * O + o] + b[o];", "y[t * O + o] = y[t * O + o];"),
    # native_dot.c: the dot products and the fused linear
    (DOT, "dot, C: the row stride ignored", "const int32_t x = a[j * lda + k];", "const int32_t x = a[k];"),
    (DOT, "dot, C: the codes' order in a block of 4", "wk = wo + (k >> 2) * 32 + (k & 3);",
     "wk = wo + (k >> 2) * 32 + ((k + 1) & 3);"),
    (DOT, "dot, C: the segment offset of the codes lost", "tile_c(jb->a + row0 * jb->lda + g * S,",
     "tile_c(jb->a + row0 * jb->lda,"),
    (DOT, "dot: the segment offset of the weight lost", "*wb = jb->w + (g * Ob + ob) * S4 * 32;",
     "*wb = jb->w + ob * S4 * 32;"),
    (DOT, "dot: the column sums of segment 0 for every segment", "s.cs = jb->colsum + g * Op + o0;",
     "s.cs = jb->colsum + o0;"),
    (DOT, "dot, AVX2: the offset added back, not subtracted (vector sink)",
     "v = _mm256_sub_epi32(v, _mm256_mullo_epi32(", "v = _mm256_add_epi32(v, _mm256_mullo_epi32("),
    (DOT, "dot: the offset added back, not subtracted (tail sink)",
     "(uint32_t)tile[j * 16 + i] - off * (uint32_t)s->cs[i]", "(uint32_t)tile[j * 16 + i] + off * (uint32_t)s->cs[i]"),
    (DOT, "dot, prepass: the codes not offset", "ur[g * Sp + k] = (uint8_t)(ag[k] - lo);",
     "ur[g * Sp + k] = (uint8_t)(ag[k]);"),
    (DOT, "dot, prepass: the offset's sign", "m[2 * g] = -lo;", "m[2 * g] = lo;"),
    # (not a mutant: the codes' padding past S set to 1, not 0, is equivalent: the weight is zero there)
    (DOT, "dot, vpmaddubsw: the int16 bound doubled", "n4 = p2 ? 32767 / p2 : S4;", "n4 = p2 ? 65535 / p2 : S4;"),
    (DOT, "dot, vpmaddubsw: the bound from the first row of a block", "umax = m[1] > umax ? m[1] : umax;",
     "umax = j ? umax : m[1];"),
    (DOT, "dot, vpmaddubsw: only the last chunk widened", "C = _mm256_add_epi32(C, _mm256_madd_epi16(H, ones));",
     "C = _mm256_madd_epi16(H, ones);"),
    (DOT, "dot, vpmaddubsw: the second output block from the first's weights",
     "NB > 1 ? _mm256_loadu_si256((const __m256i *)(w1 + k * 32)) : z;",
     "NB > 1 ? _mm256_loadu_si256((const __m256i *)(wb + k * 32)) : z;"),
    (DOT, "dot, vpmaddubsw: the fourth row from the third", "FQ_ROW(3, h30, h31)", "FQ_ROW(2, h30, h31)"),
    (DOT, "dot, vpmaddwd: the fourth row from the third", "FQ_ROW(3, l3, u3)", "FQ_ROW(2, l3, u3)"),
    (DOT, "dot, vpmaddwd: the weight codes widened as unsigned",
     "xl = _mm256_cvtepi8_epi16(_mm_loadu_si128", "xl = _mm256_cvtepu8_epi16(_mm_loadu_si128"),
    (DOT, "dot, vpmaddwd: the outputs left in hadd's order", "_mm256_hadd_epi32(L, U), 0xD8)",
     "_mm256_hadd_epi32(L, U), 0xE4)"),
    (DOT, "dot: the token chunk's start lost", "const int64_t row0 = p * T + t0 + rb, t = t0 + rb;",
     "const int64_t row0 = p * T + rb, t = t0 + rb;"),
    (DOT, "dot: a partial output block never stored", "if (!full || !x86) sink_tile(tile, nr, n, &s);",
     "if (!x86) sink_tile(tile, nr, n, &s);"),
    (DOT, "linear: the first term added to garbage", "s.first = g == 0 && p == 0;", "s.first = 0;"),
    (DOT, "linear: the scale of part 0 for every part", "s.sx[j] = jb->sx[(row0 + j) * G + g];",
     "s.sx[j] = jb->sx[(t + j) * G + g];"),
    (DOT, "linear: the weight scales of part 0 for every part", "s.sw = jb->sw + (g * P + p) * O + o0;",
     "s.sw = jb->sw + g * P * O + o0;"),
    (DOT, "linear, AVX2: the scale product rounded after the dot product",
     "_mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(s->sx[j]), _mm256_loadu_ps(s->sw + 8 * b)),\n"
     "                                   _mm256_cvtepi32_ps(v));",
     "_mm256_mul_ps(_mm256_set1_ps(s->sx[j]), _mm256_mul_ps(_mm256_loadu_ps(s->sw + 8 * b),\n"
     "                                   _mm256_cvtepi32_ps(v)));"),
    (DOT, "linear: the scale product rounded after the dot product (tail sink)",
     "const float p = (s->sx[j] * s->sw[i]) * (float)v;", "const float p = s->sx[j] * (s->sw[i] * (float)v);"),
]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tests", nargs="+", default=["tests/kernels/test_native.py", "tests/kernels/test_native_dot.py",
                                                    "tests/quant/test_fast_lean.py"])
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="fpqvar-mutate-c-")) / "repo"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(work)], check=True)
    originals = {src: (ROOT / src).read_text() for src in (LEAN, DOT)}  # the working tree (maybe ahead of HEAD)
    survivors = []
    for i, (src, what, old, new) in enumerate(MUTANTS):
        original = originals[src]
        if original.count(old) != 1:
            raise SystemExit(f"mutant {what!r}: its text occurs {original.count(old)} times in {src}")
        for other, text in originals.items():
            (work / other).write_text(original.replace(old, new) if other == src else text)
        env = {**os.environ, "FPQVAR_CACHE_DIR": str(work / f".cache-{i}"), "PYTHONPATH": str(work)}
        build = subprocess.run([sys.executable, "-c", "from fpqvar.kernels import native; "
                                "import sys; sys.exit(native.unavailable() is not None)"], cwd=work, env=env)
        if build.returncode != 0:  # the tests would skip: a mutant that does not build says nothing
            raise SystemExit(f"mutant {what!r} does not build; fix the mutant")
        r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *args.tests],
                           cwd=work, env=env, capture_output=True, text=True, timeout=1800)
        killed = r.returncode != 0
        print(f"{'killed  ' if killed else 'SURVIVED'} {what}", flush=True)
        if not killed:
            survivors.append(what)
    print(f"{len(MUTANTS) - len(survivors)}/{len(MUTANTS)} mutants killed" + (f"; survivors: {survivors}"
                                                                              if survivors else ""))
    sys.exit(1 if survivors else 0)


if __name__ == "__main__":
    main()
