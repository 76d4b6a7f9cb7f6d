/* The few-row fast path's quantizer and accumulation in one pass each (fpqvar.kernels.native).

   The same arithmetic, operation for operation, as the PyTorch reference in fpqvar/quant/kernels.py
   (quantize_act_ranged, quantize_act_dfq_ranged, _round_scaled, _fix_ties) and fpqvar/quant/kernels_gemm.py
   (accumulate_products); tests/kernels/test_native.py checks them bit for bit. Why C: at a few rows a quantized
   linear costs its ~25 small PyTorch ops, not its arithmetic (fast_lean's docstring).

   Build: plain C99, no platform flags, with -ffp-contract=off: every float operation is one IEEE float32
   operation in the written order (no fused multiply-add, no reassociation); single precision throughout except
   the exact float64 comparisons of _fix_ties. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static inline int32_t f2i(float f) { int32_t i; memcpy(&i, &f, 4); return i; }
static inline float i2f(int32_t i) { float f; memcpy(&f, &i, 4); return f; }

/* _round_scaled: t onto the grid (scaled units); *tie: t exactly halfway between two grid points; *half: half
   the step. dfq: a negative t gets the grid's smallest step (sign bit read with the exponent). */
static inline float round_scaled(float t, int emin, int mbits, int ties_up, int dfq, int *tie, float *half) {
    int32_t eb = f2i(t) & (dfq ? (int32_t)0xFF800000u : (int32_t)0x7F800000);
    const int32_t lo = (emin + 127) << 23;
    eb = eb < lo ? lo : eb;
    if (!ties_up) { /* fl32(t + M) - M, M = 1.5 * step * 2**23: t rounded to a multiple of step, ties to even */
        const float big = i2f(eb + ((23 - mbits) << 23) + 0x400000);
        const float r = (t + big) - big;
        const float h = i2f(eb - ((mbits + 1) << 23));
        *tie = (fabsf(t - r) - h) == 0.0f;
        *half = h;
        return r;
    }
    const float step = i2f(eb - (mbits << 23));
    const float u = t / step; /* exact: a power of two */
    float r = floorf(u);
    const float frac = u - r;
    *tie = frac == 0.5f;
    r = (r + (frac >= 0.5f ? 1.0f : 0.0f)) * step;
    *half = step * 0.5f;
    return r;
}

/* _fix_ties for one element at a tie of t = fl32(x / sk): the exact quotient decides. */
static float fix_tie(float x, float sk, float r, float half) {
    const float t = x / sk;
    const double m = fabs((double)t);
    const double diff = fabs((double)x) - m * (double)sk; /* exact product; Sterbenz-exact difference */
    if (diff == 0.0) return r;
    const double cmp = diff > 0.0 ? 1.0 : -1.0;
    /* truncated toward zero, as the reference's float64 -> int8 store: it matters for the one false tie, ties_up
       at t = -(0.5 - 2**-25), where frac = fl32(t - floor(t)) rounds to 0.5 and m +- half is not an integer
       (both round toward 0, the nearest code) */
    return (float)(int)copysign(m + cmp * (double)half, (double)x);
}

/* The codes of one group's n elements into r: t = fl32(x / sk) rounded (sk = skn where x <= 0 under DFQ, else
   skp), then the rare ties decided on the exact quotient. Two passes, so that the first is branch-free and
   vectorises; the constant flags fold when inlined. */
static inline void group_codes(const float *restrict x, int64_t n, float skn, float skp, int emin, int mbits,
                               int ties_up, int dfq, float *restrict r) {
    int any = 0;
    for (int64_t i = 0; i < n; i++) {
        const float v = x[i];
        const float tn = v / skn, tp = v / skp;
        const float t = (dfq && f2i(v) <= 0) ? tn : tp; /* v <= 0 (its sign bit: a quiet, selectable test) */
        int tie;
        float half;
        r[i] = round_scaled(t, emin, mbits, ties_up, dfq, &tie, &half);
        any |= tie;
    }
    if (!any) return;
    for (int64_t i = 0; i < n; i++) {
        const float v = x[i];
        const float sk = (dfq && f2i(v) <= 0) ? skn : skp;
        int tie;
        float half;
        const float rr = round_scaled(v / sk, emin, mbits, ties_up, dfq, &tie, &half);
        if (tie) r[i] = fix_tie(v, sk, rr, half);
    }
}

/* group_codes with the rounding mode and DFQ as constants: each combination is its own vectorised loop. */
static void chunk_codes(const float *x, int64_t n, float skn, float skp, int emin, int mbits, int ties_up, int dfq,
                        float *r) {
    if (dfq) {
        if (ties_up)
            group_codes(x, n, skn, skp, emin, mbits, 1, 1, r);
        else
            group_codes(x, n, skn, skp, emin, mbits, 0, 1, r);
    } else if (ties_up) {
        group_codes(x, n, skn, skp, emin, mbits, 1, 0, r);
    } else {
        group_codes(x, n, skn, skp, emin, mbits, 0, 0, r);
    }
}

/* 0: in range; 1: a non-finite input or a scale whose divisor s * 2**-k is not normal (OutOfExactRange). */
static int check_range(int nan, float lo, float hi, int k) {
    if (nan) return 1;
    if (!((double)lo * ldexp(1.0, -k) >= ldexp(1.0, -126) && (double)hi < INFINITY)) return 1;
    return 0;
}

#define CHUNK 256 /* elements of a group rounded at a time (a stack buffer) */

/* Dynamic absmax scales per group of S along the input dim, then the codes: quantize_act_ranged with
   group_size = S. x: (T, G, S) float32; codes: (T, G * S) as int8 (c8) and / or float32 (c32); s: (T, G);
   range: (lo, hi) of the scales. Returns 1 (nothing else written but s and range) when out of range. */
int fq_quantize(const float *x, int64_t T, int64_t G, int64_t S, int k, int emin, int mbits, float max_value,
                int ties_up, int8_t *c8, float *c32, float *s, float *range) {
    int nan = 0;
    float lo = INFINITY, hi = -INFINITY;
    for (int64_t tg = 0; tg < T * G; tg++) {
        const float *xr = x + tg * S;
        float a = 0.0f;
        for (int64_t i = 0; i < S; i++) {
            const float v = fabsf(xr[i]);
            nan |= v != v;
            a = v > a ? v : a;
        }
        float sc = a / max_value;
        sc = sc == 0.0f ? 1.0f : sc; /* an all-zero group */
        s[tg] = sc;
        lo = sc < lo ? sc : lo;
        hi = sc > hi ? sc : hi;
    }
    range[0] = lo;
    range[1] = hi;
    if (check_range(nan, lo, hi, k)) return 1;
    const float pk = (float)ldexp(1.0, -k);
    float r[CHUNK];
    for (int64_t tg = 0; tg < T * G; tg++) {
        const float sk = s[tg] * pk;
        for (int64_t i0 = 0; i0 < S; i0 += CHUNK) {
            const int64_t n = S - i0 < CHUNK ? S - i0 : CHUNK, j = tg * S + i0;
            chunk_codes(x + j, n, sk, sk, emin, mbits, ties_up, 0, r);
            if (c8)
                for (int64_t i = 0; i < n; i++) c8[j + i] = (int8_t)r[i];
            if (c32)
                for (int64_t i = 0; i < n; i++) c32[j + i] = r[i];
        }
    }
    return 0;
}

/* DFQ (quantize_act_dfq_ranged): x <= 0 on the negative grid with s_neg = fl32(max|x<=0| / neg_max), x > 0 on the
   positive grid with s_pos = fl32(max x>0 / pos_max) (1 for an empty half). Codes (2T, G * S): the negative-half
   codes (<= 0) of every row, then the positive-half codes (>= 0); s: (2, T, G), negative first. */
int fq_quantize_dfq(const float *x, int64_t T, int64_t G, int64_t S, int neg_k, float neg_max, int pos_k,
                    int pos_emin, int pos_mbits, float pos_max, int ties_up, int8_t *c8, float *c32, float *s,
                    float *range) {
    int nan = 0;
    float lo = INFINITY, hi = -INFINITY;
    float *s_neg = s, *s_pos = s + T * G;
    for (int64_t tg = 0; tg < T * G; tg++) {
        const float *xr = x + tg * S;
        float mn = INFINITY, mx = -INFINITY;
        for (int64_t i = 0; i < S; i++) {
            const float v = xr[i];
            nan |= v != v;
            mn = v < mn ? v : mn;
            mx = v > mx ? v : mx;
        }
        float n = -mn, p = mx;
        n = (n > 0.0f ? n : 0.0f) / neg_max;
        p = (p > 0.0f ? p : 0.0f) / pos_max;
        n = n == 0.0f ? 1.0f : n;
        p = p == 0.0f ? 1.0f : p;
        s_neg[tg] = n;
        s_pos[tg] = p;
        lo = n < lo ? n : lo;
        lo = p < lo ? p : lo;
        hi = n > hi ? n : hi;
        hi = p > hi ? p : hi;
    }
    range[0] = lo;
    range[1] = hi;
    if (check_range(nan, lo, hi, neg_k > pos_k ? neg_k : pos_k)) return 1;
    const float pn = (float)ldexp(1.0, -neg_k), pp = (float)ldexp(1.0, -pos_k);
    const int64_t half_rows = T * G * S;
    float r[CHUNK];
    for (int64_t tg = 0; tg < T * G; tg++) {
        const float skn = s_neg[tg] * pn, skp = s_pos[tg] * pp;
        for (int64_t i0 = 0; i0 < S; i0 += CHUNK) {
            const int64_t n = S - i0 < CHUNK ? S - i0 : CHUNK, j = tg * S + i0;
            chunk_codes(x + j, n, skn, skp, pos_emin, pos_mbits, ties_up, 1, r);
            if (c8)
                for (int64_t i = 0; i < n; i++) {
                    c8[j + i] = (int8_t)(r[i] < 0.0f ? r[i] : 0.0f);
                    c8[half_rows + j + i] = (int8_t)(r[i] > 0.0f ? r[i] : 0.0f);
                }
            if (c32)
                for (int64_t i = 0; i < n; i++) {
                    c32[j + i] = r[i] < 0.0f ? r[i] : 0.0f;
                    c32[half_rows + j + i] = r[i] > 0.0f ? r[i] : 0.0f;
                }
        }
    }
    return 0;
}

/* One (segment, part) term of a row: y = p (first) or fl32(y + p), p = fl32(fl32(sx * sw) * D). Split by D's type
   and by first / not, so that each loop is branch-free and vectorises (elementwise, order kept per element). */
static void term_i32(float *restrict y, float sxv, const float *restrict sw, const int32_t *restrict d, int64_t O,
                     int first) {
    if (first)
        for (int64_t o = 0; o < O; o++) y[o] = (sxv * sw[o]) * (float)d[o];
    else
        for (int64_t o = 0; o < O; o++) y[o] = y[o] + (sxv * sw[o]) * (float)d[o];
}

static void term_f32(float *restrict y, float sxv, const float *restrict sw, const float *restrict d, int64_t O,
                     int first) {
    if (first)
        for (int64_t o = 0; o < O; o++) y[o] = (sxv * sw[o]) * d[o];
    else
        for (int64_t o = 0; o < O; o++) y[o] = y[o] + (sxv * sw[o]) * d[o];
}

/* accumulate_products over a block: for the r rows t0 .. t0 + r and the segments g0 .. g0 + gn,
   y[t, o] (+)= sum over (g, p) in that order of fl32(fl32(sx * sw) * D), each sum rounded to float32.
   sx: (P, T_all, G_all) scales; sw: (G_all, P, O); D: (gn, P * r, O), int32 (d32, converted once, round to nearest
   even beyond 2**24) or float32 (df); y: (r, O). add: y holds the earlier segments' sum (every term is added to it);
   else the first term is assigned. */
void fq_accumulate_block(const float *sx, int64_t T_all, int64_t G_all, int64_t t0, int64_t r, int64_t g0,
                         int64_t gn, const float *sw, int64_t P, int64_t O, const int32_t *d32, const float *df,
                         int add, float *y) {
    for (int64_t t = 0; t < r; t++) {
        float *yr = y + t * O;
        for (int64_t g = 0; g < gn; g++) {
            for (int64_t p = 0; p < P; p++) {
                const float sxv = sx[(p * T_all + t0 + t) * G_all + g0 + g];
                const float *swr = sw + ((g0 + g) * P + p) * O;
                const int64_t off = (g * P * r + p * r + t) * O;
                const int first = !add && g == 0 && p == 0;
                if (d32)
                    term_i32(yr, sxv, swr, d32 + off, O, first);
                else
                    term_f32(yr, sxv, swr, df + off, O, first);
            }
        }
    }
}

/* The few-row path's whole accumulation (+ the bias): fq_accumulate_block over all rows and segments, then
   fl32(y + b). sx: (P, T, G); b: (O) or NULL; y: (T, O). */
void fq_accumulate(const float *sx, const float *sw, const int32_t *d32, const float *df, const float *b, int64_t G,
                   int64_t P, int64_t T, int64_t O, float *y) {
    fq_accumulate_block(sx, T, G, 0, T, 0, G, sw, P, O, d32, df, 0, y);
    if (b)
        for (int64_t t = 0; t < T; t++)
            for (int64_t o = 0; o < O; o++) y[t * O + o] = y[t * O + o] + b[o];
}

/* ---- Exact integer dot products per segment (the GEMM "native", fpqvar.kernels.int_gemm) --------------------

   d[g][r][o] = sum_{k < S} a[r * lda + g * S + k] * w[(g * O + o) * S + k] for the segments g < gn: int8 codes,
   int32 sums. Exact in any order and with any instruction set (|a|, |w| <= 127: every partial sum below
   127 * 127 * S < 2**31 for S <= 2**17, checked by the caller). Why: at a few rows a GEMM library's per-call cost
   (one call per segment: G calls of 30 to 70 us) exceeds the work, and the float layer streams 4 bytes per weight
   where this streams 1. isa 1: AVX2 (vpmaddwd on codes widened to int16), chosen at run time where the CPU has it;
   0: portable C. AVX2 takes vpmaddubsw (32 products per instruction) on |a| for sign-definite rows (DFQ's halves)
   where the products' bound allows, which every FP4 and FP6 code does. Both are checked against an int64 reference in tests/kernels/test_native.py. */

/* Portable: nr rows (<= 4, a constant when inlined) against every output of one segment. */
static inline void dot_rows_c(const int8_t *a, int64_t lda, int nr, const int8_t *w, int64_t O, int64_t S,
                              int32_t *d, int64_t ldd) {
    for (int64_t o = 0; o < O; o++) {
        const int8_t *wr = w + o * S;
        int32_t s[4] = {0, 0, 0, 0};
        for (int64_t k = 0; k < S; k++) {
            const int32_t x = wr[k];
            for (int j = 0; j < nr; j++) s[j] += (int32_t)a[j * lda + k] * x;
        }
        for (int j = 0; j < nr; j++) d[j * ldd + o] = s[j];
    }
}

static void dot_segment_c(const int8_t *a, int64_t R, int64_t lda, const int8_t *w, int64_t O, int64_t S,
                          int32_t *d) {
    int64_t r = 0;
    for (; r + 4 <= R; r += 4) dot_rows_c(a + r * lda, lda, 4, w, O, S, d + r * O, O);
    for (; r + 2 <= R; r += 2) dot_rows_c(a + r * lda, lda, 2, w, O, S, d + r * O, O);
    for (; r < R; r++) dot_rows_c(a + r * lda, lda, 1, w, O, S, d + r * O, O);
}

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define FQ_X86 1
#include <immintrin.h>

/* nr rows (1, 2 or 4; their codes widened to int16 in b, rows of S) against every output of one segment:
   16 products per vpmaddwd, one horizontal reduction per output for all rows. */
__attribute__((target("avx2"))) static inline void dot_rows_avx2(const int16_t *b, int nr, const int8_t *w,
                                                                  int64_t O, int64_t S, int32_t *d, int64_t ldd) {
    const int64_t S16 = S & ~(int64_t)15;
    for (int64_t o = 0; o < O; o++) {
        const int8_t *wr = w + o * S;
        __m256i c0 = _mm256_setzero_si256(), c1 = c0, c2 = c0, c3 = c0;
        for (int64_t k = 0; k < S16; k += 16) {
            const __m256i x = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(wr + k)));
            c0 = _mm256_add_epi32(c0, _mm256_madd_epi16(x, _mm256_loadu_si256((const __m256i *)(b + k))));
            if (nr > 1)
                c1 = _mm256_add_epi32(c1, _mm256_madd_epi16(x, _mm256_loadu_si256((const __m256i *)(b + S + k))));
            if (nr > 2) {
                c2 = _mm256_add_epi32(c2, _mm256_madd_epi16(x, _mm256_loadu_si256((const __m256i *)(b + 2 * S + k))));
                c3 = _mm256_add_epi32(c3, _mm256_madd_epi16(x, _mm256_loadu_si256((const __m256i *)(b + 3 * S + k))));
            }
        }
        const __m256i h = _mm256_hadd_epi32(_mm256_hadd_epi32(c0, c1), _mm256_hadd_epi32(c2, c3));
        int32_t s[4];
        _mm_storeu_si128((__m128i *)s, _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1)));
        for (int64_t k = S16; k < S; k++) {
            const int32_t x = wr[k];
            for (int j = 0; j < nr; j++) s[j] += (int32_t)b[j * S + k] * x;
        }
        for (int j = 0; j < nr; j++) d[j * ldd + o] = s[j];
    }
}

/* nr rows (1, 2 or 4), each sign-definite (DFQ's halves), by their magnitudes u (uint8, rows of S) against every
   output of one segment, with vpmaddubsw: 32 products per instruction, pairs summed in int16 and chunks of n32 * 32
   products summed in int16 before they are widened to int32 (the caller's bound keeps every int16 sum below 2**15:
   exact); neg[j] negates row j's sum (-|a| w), and the tail past the last 32 takes the signed codes a. (Rows of both
   signs would need vpsignb per row and output: measured slower than vpmaddwd.) */
__attribute__((target("avx2"))) static inline void dot_rows_u8_avx2(const uint8_t *u, const int8_t *a, int64_t lda,
                                                                     int nr, const int *neg,
                                                                     const int8_t *w, int64_t O, int64_t S,
                                                                     int64_t n32, int32_t *d, int64_t ldd) {
    const int64_t S32 = S & ~(int64_t)31;
    const __m256i ones = _mm256_set1_epi16(1);
    for (int64_t o = 0; o < O; o++) {
        const int8_t *wr = w + o * S;
        __m256i c0 = _mm256_setzero_si256(), c1 = c0, c2 = c0, c3 = c0;
        for (int64_t k0 = 0; k0 < S32; k0 += 32 * n32) {
            const int64_t k1 = k0 + 32 * n32 < S32 ? k0 + 32 * n32 : S32;
            __m256i h0 = _mm256_setzero_si256(), h1 = h0, h2 = h0, h3 = h0;
            for (int64_t k = k0; k < k1; k += 32) {
                const __m256i x = _mm256_loadu_si256((const __m256i *)(wr + k));
#define FQ_TERM(J, H) \
    H = _mm256_add_epi16(H, _mm256_maddubs_epi16(_mm256_loadu_si256((const __m256i *)(u + J * S + k)), x))
                FQ_TERM(0, h0);
                if (nr > 1) FQ_TERM(1, h1);
                if (nr > 2) {
                    FQ_TERM(2, h2);
                    FQ_TERM(3, h3);
                }
#undef FQ_TERM
            }
            c0 = _mm256_add_epi32(c0, _mm256_madd_epi16(h0, ones));
            if (nr > 1) c1 = _mm256_add_epi32(c1, _mm256_madd_epi16(h1, ones));
            if (nr > 2) {
                c2 = _mm256_add_epi32(c2, _mm256_madd_epi16(h2, ones));
                c3 = _mm256_add_epi32(c3, _mm256_madd_epi16(h3, ones));
            }
        }
        const __m256i h = _mm256_hadd_epi32(_mm256_hadd_epi32(c0, c1), _mm256_hadd_epi32(c2, c3));
        int32_t s[4];
        _mm_storeu_si128((__m128i *)s, _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1)));
        for (int j = 0; j < nr; j++) {
            int32_t t = 0;
            for (int64_t k = S32; k < S; k++) t += (int32_t)a[j * lda + k] * wr[k]; /* the signed codes */
            d[j * ldd + o] = (neg[j] ? -s[j] : s[j]) + t;
        }
    }
}

/* dot_rows_u8_avx2 for 4 rows and two outputs at a time: each row's magnitudes are loaded once for both outputs
   (8 int16 accumulators), and a chunk's sums are reduced to int32 once per pair of outputs. An odd last output
   takes dot_rows_u8_avx2. */
__attribute__((target("avx2"))) static inline void dot_rows4x2_u8_avx2(const uint8_t *u, const int8_t *a,
                                                                        int64_t lda, const int *neg,
                                                                        const int8_t *w, int64_t O, int64_t S,
                                                                        int64_t n32, int32_t *d, int64_t ldd) {
    const int64_t S32 = S & ~(int64_t)31;
    const __m256i ones = _mm256_set1_epi16(1);
    int64_t o = 0;
    for (; o + 2 <= O; o += 2) {
        const int8_t *w0 = w + o * S, *w1 = w0 + S;
        int32_t s0[4] = {0, 0, 0, 0}, s1[4] = {0, 0, 0, 0};
        for (int64_t k0 = 0; k0 < S32; k0 += 32 * n32) {
            const int64_t k1 = k0 + 32 * n32 < S32 ? k0 + 32 * n32 : S32;
            __m256i h00 = _mm256_setzero_si256(), h10 = h00, h20 = h00, h30 = h00;
            __m256i h01 = h00, h11 = h00, h21 = h00, h31 = h00;
            for (int64_t k = k0; k < k1; k += 32) {
                const __m256i x0 = _mm256_loadu_si256((const __m256i *)(w0 + k));
                const __m256i x1 = _mm256_loadu_si256((const __m256i *)(w1 + k));
#define FQ_TERM2(J, H0, H1)                                                                                          \
    do {                                                                                                             \
        const __m256i uj = _mm256_loadu_si256((const __m256i *)(u + J * S + k));                                     \
        H0 = _mm256_add_epi16(H0, _mm256_maddubs_epi16(uj, x0));                                                     \
        H1 = _mm256_add_epi16(H1, _mm256_maddubs_epi16(uj, x1));                                                     \
    } while (0)
                FQ_TERM2(0, h00, h01);
                FQ_TERM2(1, h10, h11);
                FQ_TERM2(2, h20, h21);
                FQ_TERM2(3, h30, h31);
#undef FQ_TERM2
            }
            /* rows 0..3 of output 0 in the low lanes of each half, then output 1 */
            const __m256i t0 = _mm256_hadd_epi32(_mm256_madd_epi16(h00, ones), _mm256_madd_epi16(h10, ones));
            const __m256i t1 = _mm256_hadd_epi32(_mm256_madd_epi16(h20, ones), _mm256_madd_epi16(h30, ones));
            const __m256i t2 = _mm256_hadd_epi32(_mm256_madd_epi16(h01, ones), _mm256_madd_epi16(h11, ones));
            const __m256i t3 = _mm256_hadd_epi32(_mm256_madd_epi16(h21, ones), _mm256_madd_epi16(h31, ones));
            const __m256i v0 = _mm256_hadd_epi32(t0, t1), v1 = _mm256_hadd_epi32(t2, t3);
            int32_t q0[4], q1[4];
            _mm_storeu_si128((__m128i *)q0, _mm_add_epi32(_mm256_castsi256_si128(v0), _mm256_extracti128_si256(v0, 1)));
            _mm_storeu_si128((__m128i *)q1, _mm_add_epi32(_mm256_castsi256_si128(v1), _mm256_extracti128_si256(v1, 1)));
            for (int j = 0; j < 4; j++) {
                s0[j] += q0[j];
                s1[j] += q1[j];
            }
        }
        for (int j = 0; j < 4; j++) {
            int32_t t0 = 0, t1 = 0;
            for (int64_t k = S32; k < S; k++) { /* the signed codes */
                t0 += (int32_t)a[j * lda + k] * w0[k];
                t1 += (int32_t)a[j * lda + k] * w1[k];
            }
            d[j * ldd + o] = (neg[j] ? -s0[j] : s0[j]) + t0;
            d[j * ldd + o + 1] = (neg[j] ? -s1[j] : s1[j]) + t1;
        }
    }
    if (o < O) dot_rows_u8_avx2(u, a, lda, 4, neg, w + o * S, 1, S, n32, d + o, ldd);
}

/* One segment: rows in blocks of 4 (then 2, 1). A block whose rows are each sign-definite (DFQ's halves) takes
   the vpmaddubsw kernel where its products' bound allows (2 * amax * wmax < 2**15: no pair saturates), else the
   vpmaddwd one on codes widened to int16. b: scratch for 4 rows of S int16 (or 8 S bytes). */
__attribute__((target("avx2"))) static void dot_segment_avx2(const int8_t *a, int64_t R, int64_t lda,
                                                             const int8_t *w, int64_t O, int64_t S, int32_t *d,
                                                             int16_t *b, int wmax) {
    int64_t r = 0;
    while (r < R) {
        const int nr = R - r >= 4 ? 4 : (R - r >= 2 ? 2 : 1);
        const int8_t *ar = a + r * lda;
        int amax = 0, mixed = 0, neg[4] = {0, 0, 0, 0};
        uint8_t *u = (uint8_t *)b;
        for (int j = 0; j < nr; j++) {
            int lo = 0, hi = 0;
            for (int64_t k = 0; k < S; k++) {
                const int v = ar[j * lda + k];
                lo = v < lo ? v : lo;
                hi = v > hi ? v : hi;
                u[j * S + k] = (uint8_t)(v < 0 ? -v : v);
            }
            amax = -lo > amax ? -lo : amax;
            amax = hi > amax ? hi : amax;
            mixed |= lo < 0 && hi > 0;
            neg[j] = lo < 0;
        }
        const int32_t p2 = 2 * amax * wmax;
        /* (at least 128 products per int16 chunk, or the whole segment: else the reductions cost more than
           vpmaddubsw saves, e.g. int8 codes of 127, one chunk per 32 products) */
        if (!mixed && p2 <= 32767 && (p2 == 0 || 32767 / p2 >= 4 || 32 * (32767 / p2) >= S)) {
            const int64_t n32 = p2 ? 32767 / p2 : S; /* 32-product steps whose int16 lane sums stay below 2**15 */
            if (nr == 4)
                dot_rows4x2_u8_avx2(u, ar, lda, neg, w, O, S, n32, d + r * O, O);
            else if (nr == 2)
                dot_rows_u8_avx2(u, ar, lda, 2, neg, w, O, S, n32, d + r * O, O);
            else
                dot_rows_u8_avx2(u, ar, lda, 1, neg, w, O, S, n32, d + r * O, O);
        } else {
            for (int j = 0; j < nr; j++)
                for (int64_t k = 0; k < S; k++) b[j * S + k] = ar[j * lda + k];
            if (nr == 4)
                dot_rows_avx2(b, 4, w, O, S, d + r * O, O);
            else if (nr == 2)
                dot_rows_avx2(b, 2, w, O, S, d + r * O, O);
            else
                dot_rows_avx2(b, 1, w, O, S, d + r * O, O);
        }
        r += nr;
    }
}
#endif

/* The instruction sets fq_int_dot can use here: bit 0 AVX2. */
int fq_isa(void) {
#ifdef FQ_X86
    static int isa = -1; /* (a benign race: every thread stores the same value) */
    if (isa < 0) {
        __builtin_cpu_init();
        isa = __builtin_cpu_supports("avx2") ? 1 : 0;
    }
    return isa;
#else
    return 0;
#endif
}

/* d: (gn, R, O) int32; a: rows of lda codes starting at the first segment; w: (gn, O, S), every |w| <= wmax
   (a bound the caller knows: 128 is always safe). isa: 1 AVX2 (where fq_isa has it), else portable. Returns 1 when a scratch buffer cannot be allocated (nothing written). */
int fq_int_dot(const int8_t *a, int64_t R, int64_t lda, const int8_t *w, int64_t gn, int64_t O, int64_t S,
               int32_t *d, int isa, int wmax) {
#ifdef FQ_X86
    if (isa == 1 && (fq_isa() & 1)) {
        int16_t *b = (int16_t *)malloc((size_t)(4 * S) * sizeof(int16_t));
        if (!b) return 1;
        for (int64_t g = 0; g < gn; g++)
            dot_segment_avx2(a + g * S, R, lda, w + g * O * S, O, S, d + g * R * O, b, wmax);
        free(b);
        return 0;
    }
#endif
    (void)isa;
    (void)wmax;
    for (int64_t g = 0; g < gn; g++) dot_segment_c(a + g * S, R, lda, w + g * O * S, O, S, d + g * R * O);
    return 0;
}
