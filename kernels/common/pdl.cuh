// common/pdl.cuh — programmatic dependent launch (PDL) for the kernels of a decode step.
//
// A decode step is ~300 launches of a few µs each; between two of them the GPU drains the
// first grid, then ramps the next one up from nothing (block launch, argument fetch, the
// first DRAM round trips). With PDL (sm_90) a kernel launched with the programmatic
// stream-serialization attribute may start while its predecessor still runs: its blocks do
// what depends on no earlier kernel (fetching their weights, which no kernel of the step
// writes), then wait in pdl_wait() until the predecessor has finished and its writes are
// visible. kernlab launches with the attribute only the entry points marked
// KL_PDL_AWARE(name) in their module (Gpu::launch looks the marker up at load), and only
// where the caller asked for PDL (the model's decode step, not the sweeps' timing).
//
// Rules for a marked entry point:
//  - every block calls pdl_wait() before it reads anything an earlier kernel of the stream
//    writes and before it writes anything at all (a write could race a predecessor still
//    reading), and before any early return: a grid whose blocks all left without waiting
//    could count as finished before its predecessor did, and its successor would then not
//    wait for that predecessor;
//  - only reads of data no kernel of the step writes (weights, scales, norm weights, RoPE
//    frequencies) may come before it: a GEMV issues its first weight loads there, so the
//    first DRAM round trip overlaps the kernel before it;
//  - pdl_launch_dependents() lets the next kernel's blocks be scheduled early (its wait
//    still holds until this grid has finished and flushed): right after the wait in the
//    small kernels, after the main loop in the GEMVs, whose blocks fill the SMs until then.
// Without the attribute (the sweeps, the selftest, a GPU before sm_90) both calls are no-ops.
// tests/pdl_kernels.rs checks that each marked entry calls pdl_wait().
#ifndef KL_PDL_CUH
#define KL_PDL_CUH

// A module global the loader finds with cuModuleGetGlobal: "this entry obeys the rules".
#define KL_PDL_AWARE(entry) extern "C" __device__ int kl_pdl_##entry = 1;

__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

__device__ __forceinline__ void pdl_launch_dependents() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

// Asks L2 for the 128-byte line at p, to be read after pdl_wait(). Only for the lines a
// thread reads first: an L2 prefetch of a whole grid's weights (16 MiB a grid, tried on an
// H200) made the decode step slower without PDL and gained less than that with it.
__device__ __forceinline__ void pdl_prefetch_l2(const void* p) { asm volatile("prefetch.global.L2 [%0];" ::"l"(p)); }

#endif  // KL_PDL_CUH
