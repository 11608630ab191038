/* AVX-512 in plain C, for testing nst's AVX-512 kernels on a CPU without AVX-512 (tests/avx512emu.sh).
 *
 * Included before nst.h (gcc -include tests/avx512_emu.h), it replaces every AVX-512 type and intrinsic
 * nst.h uses with a 16-lane struct and a C function of the same semantics (Intel's Intrinsics Guide:
 * masked-off lanes of a load are not read, of a store not written; FMA rounds once, as fmaf; max returns
 * the second operand unless the first is greater; a comparison with NaN is false), compiles the AVX-512
 * functions for AVX2 (so the compiler's own vectorisation of the emulation stays within this CPU), and
 * tells nst.h's CPU detection that AVX-512 is there (NST_TEST_AVX512_EMULATED), so NST_ARCH=avx512 and
 * nst_set_arch(NST_ARCH_AVX512) select it. The kernels' logic (lane indices, masks, tails, blocking) then
 * runs on any x86-64 with AVX2, checked by the same tests that compare each path against the scalar one.
 * Not a performance model: every vector operation is a 16-step loop.
 *
 * An intrinsic nst.h starts using must be added here; the build of tests/avx512emu.sh fails until it is
 * (an undefined __m512 function, or one on a struct). */
#ifndef NST_AVX512_EMU_H
#define NST_AVX512_EMU_H
#if !defined(__x86_64__) || !(defined(__GNUC__) || defined(__clang__))
#error "tests/avx512_emu.h: x86-64 with gcc or clang"
#endif
#if !defined(_POSIX_C_SOURCE)   /* what the tests that define it ask for: the system headers come first now */
#define _POSIX_C_SOURCE 200809L
#endif
#include <immintrin.h>   /* first: its own AVX-512 definitions are parsed before the names are taken over */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define NST_TEST_AVX512_EMULATED 1
#define NST__TARGET_AVX512 __attribute__((target("avx2,fma")))
#define NST__ZMM_KEEP(x) ((void)(x))   /* nst.h's register hint: a struct has no register */

typedef struct { float f[16]; } nst_emu_ps;
typedef struct { int32_t i[16]; } nst_emu_epi32;
#define __m512 nst_emu_ps
#define __m512i nst_emu_epi32
/* __mmask16 stays the compiler's: an unsigned 16-bit integer */

#define NST_EMU_LANES(expr) { int l_; for (l_ = 0; l_ < 16; l_++) { expr; } }

static inline nst_emu_ps nst_emu_setzero_ps(void) { nst_emu_ps r; memset(&r, 0, sizeof r); return r; }
static inline nst_emu_ps nst_emu_set1_ps(float x) { nst_emu_ps r; NST_EMU_LANES(r.f[l_] = x) return r; }
static inline nst_emu_epi32 nst_emu_set1_epi32(int x) { nst_emu_epi32 r; NST_EMU_LANES(r.i[l_] = x) return r; }
static inline nst_emu_epi32 nst_emu_setr_epi32(int e0, int e1, int e2, int e3, int e4, int e5, int e6, int e7, int e8,
                                               int e9, int e10, int e11, int e12, int e13, int e14, int e15) {
    nst_emu_epi32 r;
    r.i[0] = e0; r.i[1] = e1; r.i[2] = e2; r.i[3] = e3; r.i[4] = e4; r.i[5] = e5; r.i[6] = e6; r.i[7] = e7;
    r.i[8] = e8; r.i[9] = e9; r.i[10] = e10; r.i[11] = e11; r.i[12] = e12; r.i[13] = e13; r.i[14] = e14; r.i[15] = e15;
    return r;
}
static inline nst_emu_epi32 nst_emu_add_epi32(nst_emu_epi32 a, nst_emu_epi32 b) {
    nst_emu_epi32 r;
    NST_EMU_LANES(r.i[l_] = (int32_t)((uint32_t)a.i[l_] + (uint32_t)b.i[l_]))
    return r;
}
static inline nst_emu_epi32 nst_emu_mullo_epi32(nst_emu_epi32 a, nst_emu_epi32 b) {
    nst_emu_epi32 r;
    NST_EMU_LANES(r.i[l_] = (int32_t)((uint32_t)a.i[l_] * (uint32_t)b.i[l_]))
    return r;
}

static inline nst_emu_ps nst_emu_loadu_ps(const void *p) { nst_emu_ps r; memcpy(&r, p, sizeof r); return r; }
static inline void nst_emu_storeu_ps(void *p, nst_emu_ps a) { memcpy(p, &a, sizeof a); }
static inline nst_emu_ps nst_emu_maskz_loadu_ps(__mmask16 k, const void *p) {
    nst_emu_ps r = nst_emu_setzero_ps();
    NST_EMU_LANES(if (k >> l_ & 1) memcpy(&r.f[l_], (const float *)p + l_, sizeof(float)))
    return r;
}
static inline void nst_emu_mask_storeu_ps(void *p, __mmask16 k, nst_emu_ps a) {
    NST_EMU_LANES(if (k >> l_ & 1) memcpy((float *)p + l_, &a.f[l_], sizeof(float)))
}
static inline nst_emu_ps nst_emu_mask_i32gather_ps(nst_emu_ps src, __mmask16 k, nst_emu_epi32 idx, const void *base,
                                                   int scale) {
    nst_emu_ps r = src;
    NST_EMU_LANES(if (k >> l_ & 1) memcpy(&r.f[l_], (const char *)base + (ptrdiff_t)idx.i[l_] * scale, sizeof(float)))
    return r;
}

static inline nst_emu_ps nst_emu_add_ps(nst_emu_ps a, nst_emu_ps b) { NST_EMU_LANES(a.f[l_] += b.f[l_]) return a; }
static inline nst_emu_ps nst_emu_sub_ps(nst_emu_ps a, nst_emu_ps b) { NST_EMU_LANES(a.f[l_] -= b.f[l_]) return a; }
static inline nst_emu_ps nst_emu_mul_ps(nst_emu_ps a, nst_emu_ps b) { NST_EMU_LANES(a.f[l_] *= b.f[l_]) return a; }
static inline nst_emu_ps nst_emu_fmadd_ps(nst_emu_ps a, nst_emu_ps b, nst_emu_ps c) {
    NST_EMU_LANES(a.f[l_] = fmaf(a.f[l_], b.f[l_], c.f[l_])) return a;
}
static inline nst_emu_ps nst_emu_fmsub_ps(nst_emu_ps a, nst_emu_ps b, nst_emu_ps c) {
    NST_EMU_LANES(a.f[l_] = fmaf(a.f[l_], b.f[l_], -c.f[l_])) return a;
}
static inline nst_emu_ps nst_emu_fnmadd_ps(nst_emu_ps a, nst_emu_ps b, nst_emu_ps c) {
    NST_EMU_LANES(a.f[l_] = fmaf(-a.f[l_], b.f[l_], c.f[l_])) return a;
}
static inline nst_emu_ps nst_emu_max_ps(nst_emu_ps a, nst_emu_ps b) {
    NST_EMU_LANES(a.f[l_] = a.f[l_] > b.f[l_] ? a.f[l_] : b.f[l_]) return a;
}
static inline nst_emu_ps nst_emu_maskz_max_ps(__mmask16 k, nst_emu_ps a, nst_emu_ps b) {
    NST_EMU_LANES(a.f[l_] = !(k >> l_ & 1) ? 0.0f : a.f[l_] > b.f[l_] ? a.f[l_] : b.f[l_]) return a;
}
static inline nst_emu_ps nst_emu_maskz_mov_ps(__mmask16 k, nst_emu_ps a) {
    NST_EMU_LANES(if (!(k >> l_ & 1)) a.f[l_] = 0.0f) return a;
}
static inline nst_emu_ps nst_emu_mask_blend_ps(__mmask16 k, nst_emu_ps a, nst_emu_ps b) {
    NST_EMU_LANES(if (k >> l_ & 1) a.f[l_] = b.f[l_]) return a;
}
static inline nst_emu_ps nst_emu_permutex2var_ps(nst_emu_ps a, nst_emu_epi32 idx, nst_emu_ps b) {
    nst_emu_ps r;
    NST_EMU_LANES(int j_ = idx.i[l_] & 31; r.f[l_] = j_ < 16 ? a.f[j_] : b.f[j_ - 16])
    return r;
}
/* The predicates nst.h uses; any other fails loudly rather than quietly comparing wrong. */
static inline __mmask16 nst_emu_cmp_ps_mask(nst_emu_ps a, nst_emu_ps b, int pred) {
    unsigned k = 0;
    if (pred != _CMP_GT_OQ && pred != _CMP_LT_OQ && pred != _CMP_GE_OQ && pred != _CMP_LE_OQ) abort();
    NST_EMU_LANES(int t_ = pred == _CMP_GT_OQ ? a.f[l_] > b.f[l_] : pred == _CMP_LT_OQ ? a.f[l_] < b.f[l_]
                         : pred == _CMP_GE_OQ ? a.f[l_] >= b.f[l_] : a.f[l_] <= b.f[l_];
                  k |= (unsigned)t_ << l_)
    return (__mmask16)k;
}

#undef _mm512_setzero_ps
#define _mm512_setzero_ps nst_emu_setzero_ps
#undef _mm512_set1_ps
#define _mm512_set1_ps nst_emu_set1_ps
#undef _mm512_set1_epi32
#define _mm512_set1_epi32 nst_emu_set1_epi32
#undef _mm512_setr_epi32
#define _mm512_setr_epi32 nst_emu_setr_epi32
#undef _mm512_add_epi32
#define _mm512_add_epi32 nst_emu_add_epi32
#undef _mm512_mullo_epi32
#define _mm512_mullo_epi32 nst_emu_mullo_epi32
#undef _mm512_loadu_ps
#define _mm512_loadu_ps nst_emu_loadu_ps
#undef _mm512_storeu_ps
#define _mm512_storeu_ps nst_emu_storeu_ps
#undef _mm512_stream_ps   /* the same values; the cache hint does not matter here */
#define _mm512_stream_ps nst_emu_storeu_ps
#undef _mm512_maskz_loadu_ps
#define _mm512_maskz_loadu_ps nst_emu_maskz_loadu_ps
#undef _mm512_mask_storeu_ps
#define _mm512_mask_storeu_ps nst_emu_mask_storeu_ps
#undef _mm512_mask_i32gather_ps
#define _mm512_mask_i32gather_ps nst_emu_mask_i32gather_ps
#undef _mm512_add_ps
#define _mm512_add_ps nst_emu_add_ps
#undef _mm512_sub_ps
#define _mm512_sub_ps nst_emu_sub_ps
#undef _mm512_mul_ps
#define _mm512_mul_ps nst_emu_mul_ps
#undef _mm512_fmadd_ps
#define _mm512_fmadd_ps nst_emu_fmadd_ps
#undef _mm512_fmsub_ps
#define _mm512_fmsub_ps nst_emu_fmsub_ps
#undef _mm512_fnmadd_ps
#define _mm512_fnmadd_ps nst_emu_fnmadd_ps
#undef _mm512_max_ps
#define _mm512_max_ps nst_emu_max_ps
#undef _mm512_maskz_max_ps
#define _mm512_maskz_max_ps nst_emu_maskz_max_ps
#undef _mm512_maskz_mov_ps
#define _mm512_maskz_mov_ps nst_emu_maskz_mov_ps
#undef _mm512_mask_blend_ps
#define _mm512_mask_blend_ps nst_emu_mask_blend_ps
#undef _mm512_permutex2var_ps
#define _mm512_permutex2var_ps nst_emu_permutex2var_ps
#undef _mm512_cmp_ps_mask
#define _mm512_cmp_ps_mask nst_emu_cmp_ps_mask
#endif
