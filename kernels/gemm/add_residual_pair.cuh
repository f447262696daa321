#if KL_FP16
                        const float2 r2 = __half22float2(*reinterpret_cast<const __half2*>(R + o));
#else
                        const float2 r2 = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(R + o));
#endif
                        v0 += r2.x;
                        v1 += r2.y;
