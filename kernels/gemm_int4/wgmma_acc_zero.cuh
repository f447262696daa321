    float acc[MT][ACC];
#pragma unroll
    for (int i = 0; i < MT; i++)
#pragma unroll
        for (int e = 0; e < ACC; e++) acc[i][e] = 0.0f;
