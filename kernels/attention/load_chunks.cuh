#pragma unroll
    for (int i = 0; i < (CHUNKS + THREADS - 1) / THREADS; ++i) {
        const int idx = tid + i * THREADS;
        if (CHUNKS % THREADS == 0 || idx < CHUNKS) {
            const int r = idx / CPR, c = idx % CPR;
            const bool ok = r < valid;
            cp_async16(sdst + swz(r, c), ok ? (const void*)(G + (size_t)r * stride + c * 8) : (const void*)safe, ok);
        }
    }
