                    if (R != nullptr) v0 += to_f(R[o]);
                    Y[o] = from_f(v0);
                    if (col + 1 < N) {
                        if (R != nullptr) v1 += to_f(R[o + 1]);
                        Y[o + 1] = from_f(v1);
                    }
