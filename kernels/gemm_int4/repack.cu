// repack.cu — the plain int4 layout into the tiled one int4_gemv_bulk streams
// (docs/int4-format.md). Run once at load time (the model) or after each new random weight
// (the tuning problem); pure data movement, no arithmetic, so the tiled weight dequantizes to
// exactly the plain one.
//
//   int4_tile_codes(const uint4* Wq, uint4* Wt, int N, int K)
//     Wq u32 [N][K/8] -> Wt u32 [ceil(N/16)][K/128][2][32][4]; one thread per 16-byte piece:
//     piece (tile i, step s, half h, lane l = 4g + t) is row 16i + g + 8h, words 16s + 4t ..
//     16s + 4t + 3 (zero past N). grid (ceil(pieces / 256)), block 256.
//   int4_tile_groups16(const unsigned short* S, unsigned short* St, int N, int G)
//     S [G][N] -> St [ceil(N/16)][G][16] (zero past N): scales, or float minimums.
//   int4_tile_groups8(const unsigned char* Z, unsigned char* St, int N, int G)
//     the same for u8 zero points.
//     Both: one thread per output element, grid (ceil(ceil(N/16)·16·G / 256)), block 256.
//   Requirements: K % 128 == 0; Wq and Wt 16-byte aligned.

extern "C" __global__ void int4_tile_codes(const uint4* __restrict__ Wq, uint4* __restrict__ Wt, int N, int K) {
    const int steps = K / 128, row_pieces = K / 32;
    const long long pieces = (long long)((N + 15) / 16) * steps * 64;
    for (long long p = blockIdx.x * 256LL + threadIdx.x; p < pieces; p += (long long)gridDim.x * 256) {
        const int lane = (int)(p & 31), h = (int)((p >> 5) & 1);
        const long long ts = p >> 6;
        const int s = (int)(ts % steps);
        const long long tile = ts / steps;
        const long long row = tile * 16 + (lane >> 2) + 8 * h;
        Wt[p] = row < N ? Wq[row * row_pieces + s * 4 + (lane & 3)] : make_uint4(0, 0, 0, 0);
    }
}

template <typename E>
__device__ __forceinline__ void tile_groups(const E* __restrict__ S, E* __restrict__ St, int N, int G) {
    const long long total = (long long)((N + 15) / 16) * G * 16;
    for (long long i = blockIdx.x * 256LL + threadIdx.x; i < total; i += (long long)gridDim.x * 256) {
        const int r = (int)(i & 15);
        const long long tg = i >> 4;
        const int gi = (int)(tg % G);
        const long long row = (tg / G) * 16 + r;
        St[i] = row < N ? S[(long long)gi * N + row] : (E)0;
    }
}

extern "C" __global__ void int4_tile_groups16(const unsigned short* S, unsigned short* St, int N, int G) {
    tile_groups(S, St, N, G);
}

extern "C" __global__ void int4_tile_groups8(const unsigned char* Z, unsigned char* St, int N, int G) {
    tile_groups(Z, St, N, G);
}
