// hopper.cuh — sm_90a building blocks for templates that stream tiles with TMA and multiply
// with wgmma: mbarriers, 2-D TMA loads, the wgmma group fences, and the shared-memory matrix
// descriptor of a K-major tile in the 128-byte swizzle. Included by quoted path; kernlab
// expands it into the template's source before NVRTC, so the source hash covers it.
// Included by gemm/wgmma_tma.cu, gemm_int4/int4_wgmma_rs.cu, gemm_int4/int4_mma_wgmma.cu and
// attention/prefill_wgmma.cu; what only one kernel needs (cluster multicast, TMA stores)
// stays in that kernel.
#pragma once

// Opaque 128-byte TMA descriptor, built on the host by cuTensorMapEncodeTiled and passed as
// a __grid_constant__ kernel parameter.
struct __align__(64) KlTensorMap {
    unsigned long long v[16];
};

__device__ __forceinline__ unsigned kl_smem_u32(const void* p) { return (unsigned)__cvta_generic_to_shared(p); }

// ---- mbarrier (CTA scope) ----
__device__ __forceinline__ void kl_mbar_init(unsigned bar, unsigned count) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count) : "memory");
}
// Makes the initialised barriers visible to the other threads and to the TMA unit.
__device__ __forceinline__ void kl_mbar_init_fence() {
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
}
__device__ __forceinline__ void kl_mbar_expect_tx(unsigned bar, unsigned bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(bytes) : "memory");
}
__device__ __forceinline__ void kl_mbar_arrive(unsigned bar) {
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory");
}
// Waits until the phase with the given parity has completed.
__device__ __forceinline__ void kl_mbar_wait(unsigned bar, unsigned parity) {
    unsigned done;
    do {
        asm volatile(
            "{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\nselp.u32 %0, 1, 0, p;\n}\n"
            : "=r"(done)
            : "r"(bar), "r"(parity)
            : "memory");
    } while (!done);
}

// ---- TMA: box at coordinates (c0 innermost, c1) of the map into shared memory at dst,
// completing `bytes` of the barrier's transaction count. Boxes reaching past the tensor are
// zero-filled (and still count in full).
__device__ __forceinline__ void kl_tma_load_2d(unsigned dst, const KlTensorMap* map, unsigned bar, int c0, int c1) {
    asm volatile(
        "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%3, %4}], [%2];\n" ::"r"(
            dst),
        "l"(reinterpret_cast<unsigned long long>(map)), "r"(bar), "r"(c0), "r"(c1)
        : "memory");
}

// The same for a 3-D map (c0 innermost): e.g. {dims, head, token} of a packed [T, H, D] tensor.
__device__ __forceinline__ void kl_tma_load_3d(unsigned dst, const KlTensorMap* map, unsigned bar, int c0, int c1,
                                               int c2) {
    asm volatile(
        "cp.async.bulk.tensor.3d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%3, %4, %5}], [%2];\n" ::
            "r"(dst),
        "l"(reinterpret_cast<unsigned long long>(map)), "r"(bar), "r"(c0), "r"(c1), "r"(c2)
        : "memory");
}

// ---- wgmma groups ----
// Orders this warp's register writes (A fragments, accumulators) before the next wgmma.
__device__ __forceinline__ void kl_wg_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void kl_wg_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
// Waits until at most N_ committed groups of this warp are still running.
template <int N_>
__device__ __forceinline__ void kl_wg_wait() {
    asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N_) : "memory");
}
// Keeps the compiler from moving accumulator reads/writes across wgmma issue/wait.
__device__ __forceinline__ void kl_reg_fence(float& r) { asm volatile("" : "+f"(r)::"memory"); }
// The same for a register operand of wgmma (an A fragment defined by ordinary instructions).
__device__ __forceinline__ void kl_reg_fence_u32(unsigned& r) { asm volatile("" : "+r"(r)::"memory"); }

// Matrix descriptor of a K-major tile of 128-byte rows in the 128-byte swizzle (TMA's
// CU_TENSOR_MAP_SWIZZLE_128B layout): start >> 4 in bits 0-13, LBO 1 (unused here), SBO =
// 1024 B (8 rows) in bits 32-45, swizzle mode 1 in bits 62-63. The tile must be 1024-byte
// aligned; a k16 step inside the 64-element row advances the start by 32 bytes.
__device__ __forceinline__ unsigned long long kl_desc_sw128(unsigned addr) {
    return (1ull << 62) | ((unsigned long long)(1024 >> 4) << 32) | (1ull << 16) |
           (unsigned long long)((addr >> 4) & 0x3FFF);
}
