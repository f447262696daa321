// D += A · B, m16n8k16, fp32 accumulators (not volatile: ptxas may interleave the mma's with
// the next pairs' dequant).
__device__ __forceinline__ void mma_16816(float* d, u32 a0, u32 a1, u32 a2, u32 a3, u32 b0, u32 b1) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32." PTX_T "." PTX_T ".f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

// The raw scale (and zero) bits of one (row, group). They are loaded with the run's weights,
// so their DRAM latency hides behind the previous run's math like the weights' does (loaded
// at their step, every step waited on a scale miss).
struct RowRaw {
    u16 s;
#if ZERO_MODE != 0
    u16 z;  // u8 zero point (ZERO_MODE 1) or minimum bits (ZERO_MODE 2)
#endif
};

// Per (row, group) constants of one weight row.
struct RowDeq {
    float s;      // scale
    float c;      // DIRECT: value = fma(base + q, s, c); FACTORED: unused
    u32 neg_zp;   // FACTORED, fma2 path: packed -(base + z), so fma2(base+q, 1, neg_zp) = q - z
    float zb;     // ZP_VIA_MMA: base + z, subtracted once per step as zb · Σx
};

__device__ __forceinline__ RowDeq row_consts(const RowRaw& r) {
    RowDeq d;
    d.s = scale_to_float(r.s);
#if ZERO_MODE == 0
    const u32 z = 8;
#elif ZERO_MODE == 1
    const u32 z = r.z;
#else
    const u32 z = 0;
#endif
#if ZERO_MODE == 2
    // q·s + m: base + q - base exactly, then one fma.
    d.c = scale_to_float(r.z);
#else
    d.c = -(MAGIC_F + (float)z) * d.s;
#endif
    d.neg_zp = (NEG_BASE | z) * 0x00010001u;
    d.zb = MAGIC_F + (float)z;
    return d;
}

// Pair p (0..3) of a word: columns 2p and 2p+1 as the packed 16-bit floats base + q.
template <int P>
__device__ __forceinline__ u32 code_pair(u32 w) {
    return nibble_pair_bits(w >> (4 * P), MAGIC);
}

// The A-operand pair for pair P of word w.
template <int P>
__device__ __forceinline__ u32 weight_pair(u32 w, const RowDeq& d) {
#if ZP_VIA_MMA
    (void)d;
    return code_pair<P>(w);  // base + q; the step's epilogue takes off (base + z) · Σx
#elif FACTORED
    return fma2(code_pair<P>(w), ONE2, d.neg_zp);  // q - z, exact
#else
    // fp32 base + q of the low (column 2P) and high (column 2P+1) halves; exact dequant in
    // fp32, then one rounding of the pair to the activation dtype.
    const u32 bits = code_pair<P>(w);
#if KL_FP16
    const float lo = __half2float(__ushort_as_half((unsigned short)(bits & 0xFFFF)));
    const float hi = __half2float(__ushort_as_half((unsigned short)(bits >> 16)));
#else
    const float lo = __uint_as_float(bits << 16), hi = __uint_as_float(bits & 0xFFFF0000u);
#endif
#if ZERO_MODE == 2
    const float vlo = fmaf(lo - MAGIC_F, d.s, d.c), vhi = fmaf(hi - MAGIC_F, d.s, d.c);
#else
    const float vlo = fmaf(lo, d.s, d.c), vhi = fmaf(hi, d.s, d.c);
#endif
    return pack_floats(vlo, vhi);
#endif
}

// One 16-row tile × one 128-k step (this lane's 32 k): 8 mma per 8-row X tile.
// wa/wb: this lane's words of rows g and g+8; xf: this lane's 32 activations per X tile.
__device__ __forceinline__ void tile_step(float (*acc)[4], const uint4& wa, const uint4& wb, const RowDeq& da,
                                          const RowDeq& db, const uint4 (*xf)[4]) {
    const u32 a_words[4] = {wa.x, wa.y, wa.z, wa.w};
    const u32 b_words[4] = {wb.x, wb.y, wb.z, wb.w};
#pragma unroll
    for (int j = 0; j < 4; j++) {
        // h = 0: pairs 0, 1 (columns 8j+0..3); h = 1: pairs 2, 3 (columns 8j+4..7).
        const u32 a00 = weight_pair<0>(a_words[j], da), a02 = weight_pair<1>(a_words[j], da);
        const u32 a01 = weight_pair<0>(b_words[j], db), a03 = weight_pair<1>(b_words[j], db);
        const u32 a10 = weight_pair<2>(a_words[j], da), a12 = weight_pair<3>(a_words[j], da);
        const u32 a11 = weight_pair<2>(b_words[j], db), a13 = weight_pair<3>(b_words[j], db);
#pragma unroll
        for (int mt = 0; mt < M_TILES; mt++) {
            mma_16816(acc[mt], a00, a01, a02, a03, xf[mt][j].x, xf[mt][j].y);
            mma_16816(acc[mt], a10, a11, a12, a13, xf[mt][j].z, xf[mt][j].w);
        }
    }
}
