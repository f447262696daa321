                    if (R != nullptr) {
#include "add_residual_pair.cuh"  // v0, v1 += R[o], R[o+1]
                    }
#if KL_FP16
                    *reinterpret_cast<__half2*>(Y + o) = __floats2half2_rn(v0, v1);
#else
                    *reinterpret_cast<__nv_bfloat162*>(Y + o) = __floats2bfloat162_rn(v0, v1);
#endif
