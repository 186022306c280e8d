/* Bit-packed binary/ternary-weight GEMM for CPUs without vector MAC instructions, and the
 * plain int32 loop nest it is compared with (wrapkit.kernels; semantics: wrapkit.ref.bitpack).
 *
 *   out[m][n] = sum_k a[n][k] * w[m][k]      a: unsigned activations, w in {-1, 0, +1}
 *
 * Packed: lanes along K. a word of activations holds L consecutive a[n][k]; the weights of row
 * m are stored as masks (neg: data field all ones where w = -1; nz: all ones where w != 0,
 * ternary only). A term is (a & nz) ^ neg, i.e. a, 0 or ~a = -a-1 per lane, one or two bitwise
 * ops for L multiplications; the "+1" of every negation is added once per output as offset[m].
 * The word accumulator is added with the scalar adder in one of three modes (PackSpec.mode):
 *   0 carry:    acc += t                                   (carries cross lanes)
 *   1 isolated: acc = ((acc & ~H) + (t & ~H)) ^ ((acc ^ t) & H)   (SWAR, lanes independent)
 *   2 buffer:   acc = (acc + t) & ~H                        (guard bit cleared every add)
 * H is the top bit of every lane. At the end the L lanes are added into one scalar register
 * with the offset and wrapped to the data width d (b, or b-1 with a buffer bit).
 *
 * Built without auto-vectorization (see build.py) so that both loops use scalar instructions
 * only, as on a CPU without vector units. The mode/kind switch sits outside the n loop so
 * every inner loop is branch-free. Both kernels keep two independent accumulators (even and
 * odd k) so neither is limited by the latency of one dependent chain of adds; merging them
 * with the same addition gives exactly the single-accumulator result (modular sums).
 */
#include <stdint.h>

#define WK_API __attribute__((visibility("default")))

WK_API int wk_abi_version(void) { return 1; }

WK_API void wk_gemm_int32(const uint8_t *a, const int8_t *w, int32_t *out,
                          int64_t M, int64_t N, int64_t K)
{
    for (int64_t m = 0; m < M; ++m) {
        const int8_t *wr = w + m * K;
        for (int64_t n = 0; n < N; ++n) {
            const uint8_t *ar = a + n * K;
            int32_t acc0 = 0, acc1 = 0;
            int64_t k = 0;
            for (; k + 1 < K; k += 2) {
                acc0 += (int32_t)ar[k] * (int32_t)wr[k];
                acc1 += (int32_t)ar[k + 1] * (int32_t)wr[k + 1];
            }
            if (k < K)
                acc0 += (int32_t)ar[k] * (int32_t)wr[k];
            out[m * N + n] = acc0 + acc1;
        }
    }
}

static inline int32_t wk_wrap(int64_t x, int bits)
{
    uint64_t mask = (1ull << bits) - 1, half = 1ull << (bits - 1);
    uint64_t u = (uint64_t)x & mask;
    return (int32_t)((int64_t)(u ^ half) - (int64_t)half);
}

/* The three word additions (PackSpec.mode). */
#define WK_ADD_CARRY(A, T) ((A) + (T))
#define WK_ADD_ISOLATED(A, T) ((((A) & low) + ((T) & low)) ^ (((A) ^ (T)) & H))
#define WK_ADD_BUFFER(A, T) (((A) + (T)) & ~H)

/* One inner loop per (mode, kind): ADD is the accumulator update, TERM(i) the lane-wise
 * product of word i. */
#define WK_LOOP(WT, TERM, ADD)                                                         \
    for (int64_t n = 0; n < N; ++n) {                                                  \
        const WT *ar = a + n * KW;                                                     \
        WT acc0 = 0, acc1 = 0;                                                         \
        int64_t i = 0;                                                                 \
        for (; i + 1 < KW; i += 2) {                                                   \
            WT t0 = TERM(i), t1 = TERM(i + 1);                                         \
            acc0 = (WT)ADD(acc0, t0);                                                  \
            acc1 = (WT)ADD(acc1, t1);                                                  \
        }                                                                              \
        if (i < KW) {                                                                  \
            WT t0 = TERM(i);                                                           \
            acc0 = (WT)ADD(acc0, t0);                                                  \
        }                                                                              \
        WT acc = (WT)ADD(acc0, acc1) & used;                                           \
        int64_t s = offset[m];                                                         \
        for (int j = 0; j < lanes; ++j)                                                \
            s += (int64_t)((acc >> (j * lane_bits)) & dmask);                          \
        out[m * N + n] = wk_wrap(s, dbits);                                            \
    }

#define WK_TERM_BIN(i) (ar[i] ^ ng[i])
#define WK_TERM_TER(i) ((ar[i] & z[i]) ^ ng[i])

#define WK_DEFINE_PACKED(WT, SUFFIX)                                                   \
WK_API int wk_packed_##SUFFIX(const WT *a, const WT *neg, const WT *nz,                \
                              const int32_t *offset, int32_t *out,                     \
                              int64_t M, int64_t N, int64_t KW,                        \
                              int mode, int lane_bits, int lanes)                      \
{                                                                                      \
    const int wbits = (int)(8 * sizeof(WT));                                           \
    if (lane_bits < 2 || lane_bits > 32 || lanes < 1 || lane_bits * lanes > wbits     \
        || mode < 0 || mode > 2)                                                       \
        return -1;                                                                     \
    WT H = 0;                                                                          \
    for (int j = 0; j < lanes; ++j) H |= (WT)1 << (j * lane_bits + lane_bits - 1);     \
    const WT used = lane_bits * lanes == wbits ? (WT)~(WT)0                            \
                                               : (WT)(((WT)1 << (lane_bits * lanes)) - 1); \
    const WT low = (WT)(~H & used);                                                    \
    const int dbits = mode == 2 ? lane_bits - 1 : lane_bits;                           \
    const uint64_t dmask = (1ull << dbits) - 1;                                        \
    for (int64_t m = 0; m < M; ++m) {                                                  \
        const WT *ng = neg + m * KW;                                                   \
        const WT *z = nz ? nz + m * KW : ng;                                           \
        if (!nz) {                                                                     \
            if (mode == 0)      { WK_LOOP(WT, WK_TERM_BIN, WK_ADD_CARRY) }             \
            else if (mode == 1) { WK_LOOP(WT, WK_TERM_BIN, WK_ADD_ISOLATED) }          \
            else                { WK_LOOP(WT, WK_TERM_BIN, WK_ADD_BUFFER) }            \
        } else {                                                                       \
            if (mode == 0)      { WK_LOOP(WT, WK_TERM_TER, WK_ADD_CARRY) }             \
            else if (mode == 1) { WK_LOOP(WT, WK_TERM_TER, WK_ADD_ISOLATED) }          \
            else                { WK_LOOP(WT, WK_TERM_TER, WK_ADD_BUFFER) }            \
        }                                                                              \
    }                                                                                  \
    return 0;                                                                          \
}

WK_DEFINE_PACKED(uint32_t, u32)
WK_DEFINE_PACKED(uint64_t, u64)
