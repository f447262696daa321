    const int h = blockIdx.x;
    const int m_block = gridDim.y - 1 - blockIdx.y;  // heaviest causal tiles first
    const int b = blockIdx.z;
    const int tok0 = cu_seqlens[b];
    const int len = cu_seqlens[b + 1] - tok0;
    const int m0 = m_block * BLOCK_M;
