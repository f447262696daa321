// mma.cuh — the sm_80 building blocks of the mma.sync templates, once: 16-byte cp.async with
// zero fill, its commit and wait, ldmatrix (plain and transposed) and mma.m16n8k16 with fp32
// accumulators. The includer defines KL_MMA_TYPE, the element type's PTX name ("bf16" or
// "f16"), first. Included by gemm/mma_multistage.cu, gemm/mma_skinny.cu and
// attention/attention_common.cuh; kernlab expands it into their sources, so their hashes
// cover it. (The int4 kernels keep their own cp.async, which takes a byte count.)
#pragma once
#ifndef KL_MMA_TYPE
#error "define KL_MMA_TYPE (\"bf16\" or \"f16\") before including mma.cuh"
#endif

// 16 bytes global → shared; pred false: src-size 0, 16 zero bytes written, nothing read.
__device__ __forceinline__ void cp_async16(unsigned dst, const void* src, bool pred) {
    const int n = pred ? 16 : 0;
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(n));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N_>
__device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N_)); }

__device__ __forceinline__ void ldmatrix_x4(unsigned (&r)[4], unsigned addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}
__device__ __forceinline__ void ldmatrix_x4_trans(unsigned (&r)[4], unsigned addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}

// D += A·B, m16n8k16, fp32 accumulators.
__device__ __forceinline__ void mma16816(float (&d)[4], const unsigned (&a)[4], unsigned b0, unsigned b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32." KL_MMA_TYPE "." KL_MMA_TYPE ".f32 "
                 "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
