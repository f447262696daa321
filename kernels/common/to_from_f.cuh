__device__ __forceinline__ float to_f(T v) {
#if KL_FP16
    return __half2float(v);
#else
    return __bfloat162float(v);
#endif
}
#include "from_f.cuh"
