//! Device limits that constraints and launch checks read, from the GPU or from the
//! architecture when there is none.

use anyhow::{anyhow, Result};

/// Device limits that constraints may name. Filled from the GPU, or from the architecture
/// for `--dry-run`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DeviceLimits {
    /// Opt-in dynamic shared memory per block, bytes.
    pub max_smem: i64,
    pub max_threads: i64,
    pub sm_count: i64,
    /// Compute capability as major*10+minor (90 for Hopper).
    pub cc: i64,
}

impl DeviceLimits {
    /// Typical limits of an architecture, for enumerating without a GPU.
    pub fn for_arch(arch: &str) -> Result<DeviceLimits> {
        let digits: String = arch.trim_start_matches("sm_").chars().take_while(|c| c.is_ascii_digit()).collect();
        let cc: i64 = digits.parse().map_err(|_| anyhow!("bad architecture {arch:?}"))?;
        let max_smem = match cc {
            80 | 87 => 166_912,
            86 | 89 => 101_376,
            90..=99 => 232_448,
            100..=109 => 232_448,
            120..=129 => 101_376,
            75 => 65_536,
            _ => 49_152,
        };
        let sm_count = match cc {
            80 => 108,
            86 => 84,
            89 => 128,
            90 => 132,
            _ => 100,
        };
        Ok(DeviceLimits { max_smem, max_threads: 1024, sm_count, cc })
    }
}
