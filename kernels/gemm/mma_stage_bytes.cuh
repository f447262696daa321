constexpr int CPR = BK / 8;                 // 16-byte chunks per smem row (4 or 8)
constexpr int ROW_BYTES = BK * 2;           // bytes per smem row
constexpr int A_BYTES = BM * BK * 2;        // one stage of the X tile
constexpr int B_BYTES = BN * BK * 2;        // one stage of the W tile
constexpr int STAGE_BYTES = A_BYTES + B_BYTES;
