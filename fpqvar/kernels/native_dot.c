/* Exact integer dot products per segment, and the whole exact linear on them (fpqvar.kernels.native: int_dot,
   int_linear; the GEMM "native" of fpqvar.kernels.int_gemm).

   d[g][r][o] = sum_{k < S} a[r * lda + g * S + k] * W[g * S + k][o], int8 codes, int32 sums: exact in any order
   and with any instruction set (|a|, |w| <= 128, S <= 2**17: every partial sum below 2**31).

   Weight layout (native.pack_weight): w[g][ob][k4][i][kk] = W[g * S + 4 * k4 + kk][8 * ob + i] for ob < Ob =
   ceil(O / 8), k4 < S4 = ceil(S / 4), zero past O and S; colsum[g][o] = sum_k W[g * S + k][o] (Ob * 8 per
   segment). One 32-byte vector holds four consecutive codes of eight outputs: four activation codes broadcast
   against it give 32 products whose sums run along the lanes, so no horizontal sums are needed (the layout of
   stop 24, one output's codes per vector, spent about a third of its instructions reducing them).

   AVX2 (chosen at run time, fq_isa): vpmaddubsw, 32 products per instruction, on u = a + off >= 0 with off =
   max(0, -min a) per row and segment; then d = sum(u w) - off * colsum (int32 arithmetic modulo 2**32, exact as
   the true d fits). Its pairs are summed in int16, so it runs where 2 * umax * wmax < 2**15 (every FP4 and FP6
   code); int16 sums of n4 steps stay below 2**15 (n4 * 2 * umax * wmax <= 32767) before they are widened. Larger
   codes (int8 magnitudes) take vpmaddwd on codes widened to int16. Elsewhere: portable C.

   fq_int_linear runs the datapath's accumulation on each tile as it is made: y[t][o] = sum over (g, p) in that
   order of fl32(fl32(sx * sw) * fl32(D)), the first assigned (fq_accumulate_block in native_lean.c, the same
   operations per element). The AVX2 tiles do it with vmulps / vaddps / vcvtdq2ps: each lane is the one IEEE
   float32 operation the scalar code does (no FMA is enabled: the target is "avx2" only). Tested bit for bit in
   tests/kernels/test_native_dot.py. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define FQ_OCB 16 /* output blocks of 8 per chunk: 128 outputs, a 16 KiB weight slice per 128-segment (in L1) */

/* One call's operands. Rows are (p, t) for p < P, t < T at a + (p * T + t) * lda; int32 sink: d (G, P * T, O);
   float sink: y (T, O), sx (P, T, G), sw (G, P, O). */
typedef struct {
    const int8_t *a;
    int64_t lda;
    const int8_t *w;
    const int32_t *colsum;
    int64_t G, O, S, T, P;
    int64_t ob0, ob1; /* the output blocks of 8 this call makes (threads split them) */
    int wmax;
    int32_t *d;
    const float *sx, *sw;
    float *y;
} dot_job;

/* Where one tile (nr <= 4 rows of one part, 8 * nob outputs from o0) goes. */
typedef struct {
    int32_t *d[4];     /* int32 sink: each row's outputs from o0 */
    float *y[4];       /* float sink: each row's outputs from o0 */
    float sx[4];       /* float sink: each row's activation scale */
    const float *sw;   /* float sink: from o0 */
    const int32_t *cs; /* colsum from o0 */
    int32_t off[4];
    int any_off, first;
} tile_sink;

/* A tile of int32 sums (rows of 16) into its sink: d - off * colsum, then stored, or scaled and summed. */
static void sink_tile(const int32_t *tile, int nr, int n, const tile_sink *s) {
    for (int j = 0; j < nr; j++) {
        const uint32_t off = (uint32_t)s->off[j];
        for (int i = 0; i < n; i++) {
            const int32_t v = (int32_t)((uint32_t)tile[j * 16 + i] - off * (uint32_t)s->cs[i]);
            if (s->d[0]) {
                s->d[j][i] = v;
            } else {
                const float p = (s->sx[j] * s->sw[i]) * (float)v;
                s->y[j][i] = s->first ? p : s->y[j][i] + p;
            }
        }
    }
}

/* Portable: nr rows of signed codes (stride lda) against nob output blocks, into tile (rows of 16). */
static void tile_c(const int8_t *a, int64_t lda, int nr, const int8_t *wb, int64_t S, int64_t S4, int nob,
                   int32_t *tile) {
    for (int j = 0; j < nr; j++)
        for (int b = 0; b < nob; b++) {
            const int8_t *wo = wb + b * S4 * 32;
            int32_t s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
            for (int64_t k = 0; k < S; k++) {
                const int32_t x = a[j * lda + k];
                const int8_t *wk = wo + (k >> 2) * 32 + (k & 3);
                for (int i = 0; i < 8; i++) s[i] += x * wk[4 * i];
            }
            memcpy(tile + j * 16 + b * 8, s, sizeof s);
        }
}

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define FQ_X86 1
#include <immintrin.h>
#define FQ_AVX2 __attribute__((target("avx2")))
#define FQ_INL __attribute__((always_inline)) inline

/* Row j, block b of a tile: v (8 int32 sums) into the sink, vectorised (all 8 outputs valid). */
FQ_AVX2 static FQ_INL void sink8_avx2(__m256i v, int j, int b, const tile_sink *s) {
    if (s->any_off)
        v = _mm256_sub_epi32(v, _mm256_mullo_epi32(_mm256_set1_epi32(s->off[j]),
                                                   _mm256_loadu_si256((const __m256i *)(s->cs + 8 * b))));
    if (s->d[0]) {
        _mm256_storeu_si256((__m256i *)(s->d[j] + 8 * b), v);
        return;
    }
    const __m256 p = _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(s->sx[j]), _mm256_loadu_ps(s->sw + 8 * b)),
                                   _mm256_cvtepi32_ps(v));
    float *y = s->y[j] + 8 * b;
    _mm256_storeu_ps(y, s->first ? p : _mm256_add_ps(_mm256_loadu_ps(y), p));
}

/* NR rows of u (stride ldu, padded with zeros to 4 * S4) against NB output blocks with vpmaddubsw, int16 sums
   over chunks of n4 steps; full: every output valid (else through tile and sink_tile). */
FQ_AVX2 static FQ_INL void tile_u8_body(const uint8_t *u, int64_t ldu, const int NR, const int8_t *wb, int64_t S4,
                                        const int NB, int64_t n4, int32_t *tile, int full, const tile_sink *s) {
    const __m256i ones = _mm256_set1_epi16(1), z = _mm256_setzero_si256();
    const int8_t *w1 = wb + S4 * 32;
    __m256i c00 = z, c01 = z, c10 = z, c11 = z, c20 = z, c21 = z, c30 = z, c31 = z;
    for (int64_t k0 = 0; k0 < S4; k0 += n4) {
        const int64_t k1 = k0 + n4 < S4 ? k0 + n4 : S4;
        __m256i h00 = z, h01 = z, h10 = z, h11 = z, h20 = z, h21 = z, h30 = z, h31 = z;
        for (int64_t k = k0; k < k1; k++) {
            const __m256i x0 = _mm256_loadu_si256((const __m256i *)(wb + k * 32));
            const __m256i x1 = NB > 1 ? _mm256_loadu_si256((const __m256i *)(w1 + k * 32)) : z;
#define FQ_ROW(J, H0, H1)                                                                                            \
    if (NR > J) {                                                                                                    \
        int32_t q;                                                                                                   \
        memcpy(&q, u + J * ldu + 4 * k, 4);                                                                          \
        const __m256i bj = _mm256_set1_epi32(q);                                                                     \
        H0 = _mm256_add_epi16(H0, _mm256_maddubs_epi16(bj, x0));                                                     \
        if (NB > 1) H1 = _mm256_add_epi16(H1, _mm256_maddubs_epi16(bj, x1));                                         \
    }
            FQ_ROW(0, h00, h01)
            FQ_ROW(1, h10, h11)
            FQ_ROW(2, h20, h21)
            FQ_ROW(3, h30, h31)
#undef FQ_ROW
        }
#define FQ_WIDEN(J, B, H, C) \
    if (NR > J && NB > B) C = _mm256_add_epi32(C, _mm256_madd_epi16(H, ones));
        FQ_WIDEN(0, 0, h00, c00) FQ_WIDEN(0, 1, h01, c01) FQ_WIDEN(1, 0, h10, c10) FQ_WIDEN(1, 1, h11, c11)
        FQ_WIDEN(2, 0, h20, c20) FQ_WIDEN(2, 1, h21, c21) FQ_WIDEN(3, 0, h30, c30) FQ_WIDEN(3, 1, h31, c31)
#undef FQ_WIDEN
    }
#define FQ_OUT(J, B, C)                                                                                              \
    if (NR > J && NB > B) {                                                                                          \
        if (full)                                                                                                    \
            sink8_avx2(C, J, B, s);                                                                                  \
        else                                                                                                         \
            _mm256_storeu_si256((__m256i *)(tile + J * 16 + B * 8), C);                                             \
    }
    FQ_OUT(0, 0, c00) FQ_OUT(0, 1, c01) FQ_OUT(1, 0, c10) FQ_OUT(1, 1, c11)
    FQ_OUT(2, 0, c20) FQ_OUT(2, 1, c21) FQ_OUT(3, 0, c30) FQ_OUT(3, 1, c31)
#undef FQ_OUT
}

/* NR rows of int16 codes b (stride ldb, zero padded) against NB output blocks with vpmaddwd: the 4 codes of a row
   broadcast against 8 outputs x 4 codes widened to int16 (two vectors), two int32 sums per output, added
   pairwise at the end (hadd, then the 64-bit lanes put back in output order). */
FQ_AVX2 static FQ_INL void tile_i16_body(const int16_t *b, int64_t ldb, const int NR, const int8_t *wb, int64_t S4,
                                         const int NB, int32_t *tile, int full, const tile_sink *s) {
    for (int ob = 0; ob < NB; ob++) {
        const int8_t *wo = wb + ob * S4 * 32;
        const __m256i z = _mm256_setzero_si256();
        __m256i l0 = z, u0 = z, l1 = z, u1 = z, l2 = z, u2 = z, l3 = z, u3 = z;
        for (int64_t k = 0; k < S4; k++) {
            const __m256i xl = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(wo + k * 32)));
            const __m256i xh = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(wo + k * 32 + 16)));
#define FQ_ROW(J, L, U)                                                                                              \
    if (NR > J) {                                                                                                    \
        int64_t q;                                                                                                   \
        memcpy(&q, b + J * ldb + 4 * k, 8);                                                                          \
        const __m256i bj = _mm256_set1_epi64x(q);                                                                    \
        L = _mm256_add_epi32(L, _mm256_madd_epi16(xl, bj));                                                          \
        U = _mm256_add_epi32(U, _mm256_madd_epi16(xh, bj));                                                          \
    }
            FQ_ROW(0, l0, u0)
            FQ_ROW(1, l1, u1)
            FQ_ROW(2, l2, u2)
            FQ_ROW(3, l3, u3)
#undef FQ_ROW
        }
#define FQ_OUT(J, L, U)                                                                                              \
    if (NR > J) {                                                                                                    \
        const __m256i v = _mm256_permute4x64_epi64(_mm256_hadd_epi32(L, U), 0xD8);                                   \
        if (full)                                                                                                    \
            sink8_avx2(v, J, ob, s);                                                                                 \
        else                                                                                                         \
            _mm256_storeu_si256((__m256i *)(tile + J * 16 + ob * 8), v);                                            \
    }
        FQ_OUT(0, l0, u0) FQ_OUT(1, l1, u1) FQ_OUT(2, l2, u2) FQ_OUT(3, l3, u3)
#undef FQ_OUT
    }
}

/* The tile kernels with their row and block counts as constants (one body each). */
FQ_AVX2 static void tile_u8_avx2(const uint8_t *u, int64_t ldu, int nr, const int8_t *wb, int64_t S4, int nob,
                                 int64_t n4, int32_t *tile, int full, const tile_sink *s) {
#define FQ_CASE(R, B) \
    if (nr == R && nob == B) {                                                                    \
        tile_u8_body(u, ldu, R, wb, S4, B, n4, tile, full, s);                                   \
        return;                                                                                  \
    }
    FQ_CASE(4, 2) FQ_CASE(4, 1) FQ_CASE(3, 2) FQ_CASE(3, 1) FQ_CASE(2, 2) FQ_CASE(2, 1) FQ_CASE(1, 2) FQ_CASE(1, 1)
#undef FQ_CASE
}

FQ_AVX2 static void tile_i16_avx2(const int16_t *b, int64_t ldb, int nr, const int8_t *wb, int64_t S4, int nob,
                                  int32_t *tile, int full, const tile_sink *s) {
#define FQ_CASE(R, B) \
    if (nr == R && nob == B) {                                                                    \
        tile_i16_body(b, ldb, R, wb, S4, B, tile, full, s);                                      \
        return;                                                                                  \
    }
    FQ_CASE(4, 2) FQ_CASE(4, 1) FQ_CASE(3, 2) FQ_CASE(3, 1) FQ_CASE(2, 2) FQ_CASE(2, 1) FQ_CASE(1, 2) FQ_CASE(1, 1)
#undef FQ_CASE
}
#endif

/* The instruction sets the dot products can use here: bit 0 AVX2. */
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

/* Every tile of a job: token chunks of RT (their u rows prepared once), then segment, 128-output chunk, part,
   blocks of 4 rows, pairs of output blocks; the (g, p) order of the float sums holds per element. Returns 1 when
   scratch memory cannot be allocated (nothing written). */
static int run_job(const dot_job *jb, int isa) {
    const int64_t G = jb->G, O = jb->O, S = jb->S, T = jb->T, P = jb->P;
    if (T <= 0 || G <= 0 || O <= 0 || P <= 0 || jb->ob0 >= jb->ob1) return 0;
    const int64_t S4 = (S + 3) / 4, Sp = 4 * S4, Ob = (O + 7) / 8, Op = 8 * Ob, ldu = G * Sp;
    int64_t RT = ((int64_t)1 << 20) / (P * ldu > 0 ? P * ldu : 1);
    RT = RT < 4 ? 4 : (RT > T ? T : RT);
    const int x86 = isa == 1 && (fq_isa() & 1);
    uint8_t *u = x86 ? (uint8_t *)malloc((size_t)(P * RT * ldu)) : NULL;
    int32_t *meta = x86 ? (int32_t *)malloc((size_t)(2 * P * RT * G) * sizeof(int32_t)) : NULL; /* off, umax */
    int16_t *b16 = x86 ? (int16_t *)malloc((size_t)(4 * Sp) * sizeof(int16_t)) : NULL; /* vpmaddwd's rows */
    if (x86 && (!u || !meta || !b16)) {
        free(u), free(meta), free(b16);
        return 1;
    }
    int32_t tile[64];
    for (int64_t t0 = 0; t0 < T; t0 += RT) {
        const int64_t nt = T - t0 < RT ? T - t0 : RT;
        for (int64_t p = 0; p < P && x86; p++) /* u = a + off per row and segment, zero padded; off, umax */
            for (int64_t i = 0; i < nt; i++) {
                const int8_t *ar = jb->a + (p * T + t0 + i) * jb->lda;
                uint8_t *ur = u + (p * RT + i) * ldu;
                int32_t *m = meta + 2 * (p * RT + i) * G;
                for (int64_t g = 0; g < G; g++) {
                    const int8_t *ag = ar + g * S;
                    int lo = 0, hi = 0;
                    for (int64_t k = 0; k < S; k++) {
                        lo = ag[k] < lo ? ag[k] : lo;
                        hi = ag[k] > hi ? ag[k] : hi;
                    }
                    for (int64_t k = 0; k < S; k++) ur[g * Sp + k] = (uint8_t)(ag[k] - lo);
                    for (int64_t k = S; k < Sp; k++) ur[g * Sp + k] = 0;
                    m[2 * g] = -lo;
                    m[2 * g + 1] = hi - lo;
                }
            }
        for (int64_t g = 0; g < G; g++)
            for (int64_t oc = jb->ob0; oc < jb->ob1; oc += FQ_OCB)
                for (int64_t p = 0; p < P; p++)
                    for (int64_t rb = 0; rb < nt; rb += 4) {
                        const int nr = nt - rb < 4 ? (int)(nt - rb) : 4;
                        tile_sink s;
                        memset(&s, 0, sizeof s);
                        int u8 = 0;
                        int64_t n4 = S4;
                        if (x86) {
                            int umax = 0;
                            for (int j = 0; j < nr; j++) {
                                const int32_t *m = meta + 2 * ((p * RT + rb + j) * G + g);
                                umax = m[1] > umax ? m[1] : umax;
                            }
                            const int32_t p2 = 2 * umax * jb->wmax; /* the largest |pair| of products */
                            n4 = p2 ? 32767 / p2 : S4;              /* 0: a pair could saturate */
                            /* (even at one step per int16 chunk this takes fewer instructions than vpmaddwd's two
                               widened halves: FP6 codes of both signs, n4 = 2, measured 10% faster, stop 25) */
                            u8 = n4 >= 1;
                            for (int j = 0; j < nr && u8; j++) {
                                s.off[j] = meta[2 * ((p * RT + rb + j) * G + g)];
                                s.any_off |= s.off[j] != 0;
                            }
                            if (!u8)
                                for (int j = 0; j < nr; j++) {
                                    const int8_t *ag = jb->a + (p * T + t0 + rb + j) * jb->lda + g * S;
                                    for (int64_t k = 0; k < Sp; k++) b16[j * Sp + k] = k < S ? ag[k] : 0;
                                }
                        }
                        const int64_t row0 = p * T + t0 + rb, t = t0 + rb;
                        s.first = g == 0 && p == 0;
                        for (int64_t ob = oc; ob < jb->ob1 && ob < oc + FQ_OCB; ob += 2) {
                            const int nob = jb->ob1 - ob >= 2 ? 2 : 1;
                            const int64_t o0 = 8 * ob;
                            const int n = O - o0 < 8 * nob ? (int)(O - o0) : 8 * nob;
                            const int8_t *wb = jb->w + (g * Ob + ob) * S4 * 32;
                            s.cs = jb->colsum + g * Op + o0;
                            for (int j = 0; j < nr; j++) {
                                if (jb->d) {
                                    s.d[j] = jb->d + (g * P * T + row0 + j) * O + o0;
                                } else {
                                    s.y[j] = jb->y + (t + j) * O + o0;
                                    s.sx[j] = jb->sx[(row0 + j) * G + g];
                                }
                            }
                            if (!jb->d) s.sw = jb->sw + (g * P + p) * O + o0;
                            const int full = n == 8 * nob;
#ifdef FQ_X86
                            if (u8)
                                tile_u8_avx2(u + (p * RT + rb) * ldu + g * Sp, ldu, nr, wb, S4, nob, n4, tile, full,
                                             &s);
                            else if (x86)
                                tile_i16_avx2(b16, Sp, nr, wb, S4, nob, tile, full, &s);
                            else
#endif
                                tile_c(jb->a + row0 * jb->lda + g * S, jb->lda, nr, wb, S, S4, nob, tile);
                            if (!full || !x86) sink_tile(tile, nr, n, &s);
                        }
                    }
    }
    free(u), free(meta), free(b16);
    return 0;
}

/* d: (gn, R, O) int32; a: rows of lda codes starting at the first segment; w, colsum: the packed weight from its
   first segment (gn of them), every |w| <= wmax (128 always holds); only the outputs of the blocks ob0 .. ob1 (of 8)
   are made, so that threads can share a call. isa: 1 AVX2 (where fq_isa has it), else portable. Returns 1 when
   scratch memory cannot be allocated (nothing written). */
int fq_int_dot(const int8_t *a, int64_t R, int64_t lda, const int8_t *w, const int32_t *colsum, int64_t gn,
               int64_t O, int64_t S, int64_t ob0, int64_t ob1, int32_t *d, int isa, int wmax) {
    const dot_job jb = {a, lda, w, colsum, gn, O, S, R, 1, ob0, ob1, wmax, d, NULL, NULL, NULL};
    return run_job(&jb, isa);
}

/* y (T, O) float32: the datapath's exact linear without bias (fq_accumulate's sums of the products that
   fq_int_dot would make), rows a (P * T, G * S), part-major; sx (P, T, G); sw (G, P, O). Returns 1 when scratch
   memory cannot be allocated; ob0 .. ob1 as in fq_int_dot. */
int fq_int_linear(const int8_t *a, int64_t T, int64_t P, int64_t lda, const int8_t *w, const int32_t *colsum,
                  int64_t G, int64_t O, int64_t S, int64_t ob0, int64_t ob1, const float *sx, const float *sw,
                  float *y, int isa, int wmax) {
    const dot_job jb = {a, lda, w, colsum, G, O, S, T, P, ob0, ob1, wmax, NULL, sx, sw, y};
    return run_job(&jb, isa);
}
