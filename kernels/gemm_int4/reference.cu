// reference.cu — trusted helpers of the gemm_int4 family (not tuned, no tricks).
//
// The family's reference is "dequantize, then cuBLAS": int4_ref_dequant expands the packed
// weight into a plain bf16/fp16 W[N][K] one element per thread, reading the format exactly as
// docs/int4-format.md states it (no bit tricks shared with the kernels under test, so a
// misreading of the layout in a tuned kernel cannot hide behind the same misreading here).
// The other two entries make random scales/minimums and zero points on the device, so a fresh
// weight per verification round costs no host→device copy.
//
//   int4_ref_random_halfs(unsigned short* out, long long n, unsigned long long seed,
//                         float lo, float hi, int as_fp16)
//       out[i] = bits of uniform[lo, hi) rounded to fp16 (as_fp16) or bf16
//   int4_ref_random_zeros(unsigned char* out, long long n, unsigned long long seed, int max_zero)
//       out[i] uniform in 0..=max_zero
//   int4_ref_dequant(const unsigned* Wq, const unsigned short* scales, const void* zeros,
//                    unsigned short* W, int N, int K, int group, int zero_mode,
//                    int scale_fp16, int out_fp16)
//       W[n][k] = value of element (n, k) rounded once to the output dtype, where
//       value = (q - 8) * s (zero_mode 0), (q - z) * s (1, z u8), q * s + m (2, m 16-bit)
//       computed in fp32: exact for modes 0/1, one rounding (fma) for mode 2, like
//       Int4Weight::value on the host.
// Launch: grid-stride loops; any grid, block 256, no shared memory.
#include <cuda_fp16.h>
#include <cuda_bf16.h>

__device__ __forceinline__ unsigned long long ref_mix64(unsigned long long x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

__device__ __forceinline__ unsigned long long ref_hash(unsigned long long seed, long long i) {
    return ref_mix64(seed * 0x100000001B3ull ^ (unsigned long long)i);
}

__device__ __forceinline__ float half_bits_to_float(unsigned short b, int is_fp16) {
    return is_fp16 ? __half2float(__ushort_as_half(b)) : __bfloat162float(__ushort_as_bfloat16(b));
}

__device__ __forceinline__ unsigned short float_to_half_bits(float v, int is_fp16) {
    return is_fp16 ? __half_as_ushort(__float2half_rn(v)) : __bfloat16_as_ushort(__float2bfloat16_rn(v));
}

extern "C" __global__ void int4_ref_random_halfs(unsigned short* out, long long n, unsigned long long seed,
                                                 float lo, float hi, int as_fp16) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        float u = (float)(ref_hash(seed, i) >> 40) * (1.0f / 16777216.0f);  // [0, 1)
        out[i] = float_to_half_bits(lo + (hi - lo) * u, as_fp16);
    }
}

extern "C" __global__ void int4_ref_random_zeros(unsigned char* out, long long n, unsigned long long seed,
                                                 int max_zero) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x)
        out[i] = (unsigned char)((ref_hash(seed, i) >> 33) % (unsigned long long)(max_zero + 1));
}

extern "C" __global__ void int4_ref_dequant(const unsigned* Wq, const unsigned short* scales, const void* zeros,
                                            unsigned short* W, int N, int K, int group, int zero_mode,
                                            int scale_fp16, int out_fp16) {
    // Column c of an 8-column run sits at nibble position NIBBLE_POS[c] (docs/int4-format.md).
    const int nibble_pos[8] = {0, 4, 1, 5, 2, 6, 3, 7};
    const long long total = (long long)N * K;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
         i += (long long)gridDim.x * blockDim.x) {
        const long long n = i / K;
        const int k = (int)(i % K);
        const unsigned word = Wq[n * (K / 8) + k / 8];
        const int q = (int)((word >> (4 * nibble_pos[k % 8])) & 0xFu);
        const long long gi = (long long)(k / group) * N + n;
        const float s = half_bits_to_float(scales[gi], scale_fp16);
        float v;
        if (zero_mode == 0) {
            v = (float)(q - 8) * s;
        } else if (zero_mode == 1) {
            v = (float)(q - (int)((const unsigned char*)zeros)[gi]) * s;
        } else {
            v = fmaf((float)q, s, half_bits_to_float(((const unsigned short*)zeros)[gi], scale_fp16));
        }
        W[i] = float_to_half_bits(v, out_fp16);
    }
}
