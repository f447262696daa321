__device__ __forceinline__ T from_f(float v) {
#if KL_FP16
    return __float2half_rn(v);
#else
    return __float2bfloat16_rn(v);
#endif
}
