// wgmma.cuh — the wgmma.mma_async m64nNk16 instructions every sm_90a template issues, once:
// A and B from shared memory (`KlWg<N>::ss`) or A from registers (`KlWg<N>::rs`), fp32
// accumulators d[N/2] per thread. Inline PTX numbers its operands, so each n size needs its
// own register list and operand numbers; they are spelled out below (a table, not logic).
// The includer defines KL_WG_T, the element type's PTX name ("bf16" or "f16"), first.
// Included by gemm/wgmma_tma.cu, gemm_int4/int4_mma_wgmma.cu, gemm_int4/int4_wgmma_rs.cu and
// attention/prefill_wgmma.cu; kernlab expands it into their sources, so their hashes cover it.
#pragma once
// A template uses one or two of the n sizes below; the rest are never referenced.
#pragma nv_diag_suppress 177
#ifndef KL_WG_T
#error "define KL_WG_T (\"bf16\" or \"f16\") before including wgmma.cuh"
#endif

// "+f" operands of d[i .. i+3] and d[i .. i+7].
#define KL_WG_D4(i) "+f"(d[i]), "+f"(d[i + 1]), "+f"(d[i + 2]), "+f"(d[i + 3])
#define KL_WG_D8(i) KL_WG_D4(i), KL_WG_D4(i + 4)

// "%0, ..., %R-1" for R = N/2 accumulator registers.
#define KL_WG_REGS_8 "%0, %1, %2, %3"
#define KL_WG_REGS_16 "%0, %1, %2, %3, %4, %5, %6, %7"
#define KL_WG_REGS_32 KL_WG_REGS_16 ", %8, %9, %10, %11, %12, %13, %14, %15"
#define KL_WG_REGS_64 KL_WG_REGS_32 ", %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31"
#define KL_WG_REGS_96 KL_WG_REGS_64 ", %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47"
#define KL_WG_REGS_128 KL_WG_REGS_96 ", %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63"
#define KL_WG_REGS_160 KL_WG_REGS_128 ", %64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79"
#define KL_WG_REGS_192 KL_WG_REGS_160 ", %80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95"
#define KL_WG_REGS_224 KL_WG_REGS_192 ", %96, %97, %98, %99, %100, %101, %102, %103, %104, %105, %106, %107, %108, %109, %110, %111"
#define KL_WG_REGS_256 KL_WG_REGS_224 ", %112, %113, %114, %115, %116, %117, %118, %119, %120, %121, %122, %123, %124, %125, %126, %127"

// The accumulator operands of each n size.
#define KL_WG_D_8 KL_WG_D4(0)
#define KL_WG_D_16 KL_WG_D8(0)
#define KL_WG_D_32 KL_WG_D8(0), KL_WG_D8(8)
#define KL_WG_D_64 KL_WG_D8(0), KL_WG_D8(8), KL_WG_D8(16), KL_WG_D8(24)
#define KL_WG_D_96 KL_WG_D8(0), KL_WG_D8(8), KL_WG_D8(16), KL_WG_D8(24), KL_WG_D8(32), KL_WG_D8(40)
#define KL_WG_D_128 KL_WG_D8(0), KL_WG_D8(8), KL_WG_D8(16), KL_WG_D8(24), KL_WG_D8(32), KL_WG_D8(40), KL_WG_D8(48), KL_WG_D8(56)
#define KL_WG_D_160 KL_WG_D8(0), KL_WG_D8(8), KL_WG_D8(16), KL_WG_D8(24), KL_WG_D8(32), KL_WG_D8(40), KL_WG_D8(48), KL_WG_D8(56), KL_WG_D8(64), KL_WG_D8(72)
#define KL_WG_D_192 KL_WG_D8(0), KL_WG_D8(8), KL_WG_D8(16), KL_WG_D8(24), KL_WG_D8(32), KL_WG_D8(40), KL_WG_D8(48), KL_WG_D8(56), KL_WG_D8(64), KL_WG_D8(72), KL_WG_D8(80), KL_WG_D8(88)
#define KL_WG_D_224 KL_WG_D8(0), KL_WG_D8(8), KL_WG_D8(16), KL_WG_D8(24), KL_WG_D8(32), KL_WG_D8(40), KL_WG_D8(48), KL_WG_D8(56), KL_WG_D8(64), KL_WG_D8(72), KL_WG_D8(80), KL_WG_D8(88), KL_WG_D8(96), KL_WG_D8(104)
#define KL_WG_D_256 KL_WG_D8(0), KL_WG_D8(8), KL_WG_D8(16), KL_WG_D8(24), KL_WG_D8(32), KL_WG_D8(40), KL_WG_D8(48), KL_WG_D8(56), KL_WG_D8(64), KL_WG_D8(72), KL_WG_D8(80), KL_WG_D8(88), KL_WG_D8(96), KL_WG_D8(104), KL_WG_D8(112), KL_WG_D8(120)

// Operand numbers after the R accumulators: ss takes (desc A, desc B, scale-d) = R, R+1, R+2;
// rs takes (a0..a3, desc B, scale-d, transpose-B) = R..R+3, R+4, R+5, R+6.
#define KL_WG_AT_8(k) KL_WG_AT_8_##k
#define KL_WG_AT_8_0 "%4"
#define KL_WG_AT_8_1 "%5"
#define KL_WG_AT_8_2 "%6"
#define KL_WG_AT_8_3 "%7"
#define KL_WG_AT_8_4 "%8"
#define KL_WG_AT_8_5 "%9"
#define KL_WG_AT_8_6 "%10"
#define KL_WG_AT_16(k) KL_WG_AT_16_##k
#define KL_WG_AT_16_0 "%8"
#define KL_WG_AT_16_1 "%9"
#define KL_WG_AT_16_2 "%10"
#define KL_WG_AT_16_3 "%11"
#define KL_WG_AT_16_4 "%12"
#define KL_WG_AT_16_5 "%13"
#define KL_WG_AT_16_6 "%14"
#define KL_WG_AT_32(k) KL_WG_AT_32_##k
#define KL_WG_AT_32_0 "%16"
#define KL_WG_AT_32_1 "%17"
#define KL_WG_AT_32_2 "%18"
#define KL_WG_AT_32_3 "%19"
#define KL_WG_AT_32_4 "%20"
#define KL_WG_AT_32_5 "%21"
#define KL_WG_AT_32_6 "%22"
#define KL_WG_AT_64(k) KL_WG_AT_64_##k
#define KL_WG_AT_64_0 "%32"
#define KL_WG_AT_64_1 "%33"
#define KL_WG_AT_64_2 "%34"
#define KL_WG_AT_64_3 "%35"
#define KL_WG_AT_64_4 "%36"
#define KL_WG_AT_64_5 "%37"
#define KL_WG_AT_64_6 "%38"
#define KL_WG_AT_96(k) KL_WG_AT_96_##k
#define KL_WG_AT_96_0 "%48"
#define KL_WG_AT_96_1 "%49"
#define KL_WG_AT_96_2 "%50"
#define KL_WG_AT_96_3 "%51"
#define KL_WG_AT_96_4 "%52"
#define KL_WG_AT_96_5 "%53"
#define KL_WG_AT_96_6 "%54"
#define KL_WG_AT_128(k) KL_WG_AT_128_##k
#define KL_WG_AT_128_0 "%64"
#define KL_WG_AT_128_1 "%65"
#define KL_WG_AT_128_2 "%66"
#define KL_WG_AT_128_3 "%67"
#define KL_WG_AT_128_4 "%68"
#define KL_WG_AT_128_5 "%69"
#define KL_WG_AT_128_6 "%70"
#define KL_WG_AT_160(k) KL_WG_AT_160_##k
#define KL_WG_AT_160_0 "%80"
#define KL_WG_AT_160_1 "%81"
#define KL_WG_AT_160_2 "%82"
#define KL_WG_AT_160_3 "%83"
#define KL_WG_AT_160_4 "%84"
#define KL_WG_AT_160_5 "%85"
#define KL_WG_AT_160_6 "%86"
#define KL_WG_AT_192(k) KL_WG_AT_192_##k
#define KL_WG_AT_192_0 "%96"
#define KL_WG_AT_192_1 "%97"
#define KL_WG_AT_192_2 "%98"
#define KL_WG_AT_192_3 "%99"
#define KL_WG_AT_192_4 "%100"
#define KL_WG_AT_192_5 "%101"
#define KL_WG_AT_192_6 "%102"
#define KL_WG_AT_224(k) KL_WG_AT_224_##k
#define KL_WG_AT_224_0 "%112"
#define KL_WG_AT_224_1 "%113"
#define KL_WG_AT_224_2 "%114"
#define KL_WG_AT_224_3 "%115"
#define KL_WG_AT_224_4 "%116"
#define KL_WG_AT_224_5 "%117"
#define KL_WG_AT_224_6 "%118"
#define KL_WG_AT_256(k) KL_WG_AT_256_##k
#define KL_WG_AT_256_0 "%128"
#define KL_WG_AT_256_1 "%129"
#define KL_WG_AT_256_2 "%130"
#define KL_WG_AT_256_3 "%131"
#define KL_WG_AT_256_4 "%132"
#define KL_WG_AT_256_5 "%133"
#define KL_WG_AT_256_6 "%134"

template <int N_>
struct KlWg;

// ss: d (+)= A·B with A and B K-major in shared memory; scale_d == 0 overwrites d.
// rs: d += A·B with A this thread's four registers of 16-bit pairs, B in shared memory,
//     read transposed (MN-major) when TRANS_B is 1.
#define KL_WG_DEFINE(N)                                                                                       \
    template <>                                                                                               \
    struct KlWg<N> {                                                                                          \
        static __device__ __forceinline__ void ss(float (&d)[N / 2], unsigned long long da,                   \
                                                  unsigned long long db, int scale_d) {                       \
            asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, " KL_WG_AT_##N(2) ", 0;\n"                          \
                         "wgmma.mma_async.sync.aligned.m64n" #N "k16.f32." KL_WG_T "." KL_WG_T "\n{"           \
                         KL_WG_REGS_##N "},\n" KL_WG_AT_##N(0) ", " KL_WG_AT_##N(1) ", p, 1, 1, 0, 0;\n}\n"   \
                         : KL_WG_D_##N                                                                        \
                         : "l"(da), "l"(db), "r"(scale_d));                                                   \
        }                                                                                                     \
        template <int TRANS_B>                                                                                \
        static __device__ __forceinline__ void rs(float (&d)[N / 2], const unsigned (&a)[4],                  \
                                                  unsigned long long db) {                                    \
            asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, " KL_WG_AT_##N(5) ", 0;\n"                          \
                         "wgmma.mma_async.sync.aligned.m64n" #N "k16.f32." KL_WG_T "." KL_WG_T "\n{"           \
                         KL_WG_REGS_##N "},\n{" KL_WG_AT_##N(0) ", " KL_WG_AT_##N(1) ", " KL_WG_AT_##N(2)     \
                         ", " KL_WG_AT_##N(3) "}, " KL_WG_AT_##N(4) ", p, 1, 1, " KL_WG_AT_##N(6) ";\n}\n"       \
                         : KL_WG_D_##N                                                                        \
                         : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "r"(1), "n"(TRANS_B));         \
        }                                                                                                     \
    };
KL_WG_DEFINE(8)
KL_WG_DEFINE(16)
KL_WG_DEFINE(32)
KL_WG_DEFINE(64)
KL_WG_DEFINE(96)
KL_WG_DEFINE(128)
KL_WG_DEFINE(160)
KL_WG_DEFINE(192)
KL_WG_DEFINE(224)
KL_WG_DEFINE(256)
#undef KL_WG_DEFINE
