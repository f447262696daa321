            unsigned af[MI][4];
            unsigned bf[NI][2];
#pragma unroll
            for (int i = 0; i < MI; ++i)
                ldmatrix_x4(af[i], sa + smem_off(a_row + i * 16, 2 * kk + a_half));
#pragma unroll
            for (int j = 0; j < NI / 2; ++j) {
                unsigned r[4];
                ldmatrix_x4(r, sb + smem_off(b_row + j * 16, 2 * kk + b_half));
                bf[2 * j][0] = r[0];
                bf[2 * j][1] = r[1];
                bf[2 * j + 1][0] = r[2];
                bf[2 * j + 1][1] = r[3];
            }
