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
