    // one 64-bit base per call, then a running pointer (keeps the compiler from holding a
    // 64-bit address per chunk across the k loop: registers matter at 64x64 warp tiles)
    const T* src = G + (size_t)(row0 + r0) * K + gk;
    const size_t pass_stride = (size_t)ROWS_PER_PASS * K;
#pragma unroll
    for (int i = 0; i < (ROWS + ROWS_PER_PASS - 1) / ROWS_PER_PASS; ++i) {
        const int r = r0 + i * ROWS_PER_PASS;
        if (ROWS % ROWS_PER_PASS == 0 || r < ROWS) {
            const bool ok = kok && row0 + r < rows_total;
            cp_async16(sdst + smem_off(r, c), ok ? src : G, ok);
        }
        src += pass_stride;
    }
