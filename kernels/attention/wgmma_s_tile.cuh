        kl_mbar_wait(full0 + 8 * s, phase);
        turn_begin();
        kl_wg_fence();
        issue_s(sacc, sQw, stage_k(s));
        kl_wg_commit();
        turn_end();
        kl_wg_wait<0>();
        fence_all(sacc);
