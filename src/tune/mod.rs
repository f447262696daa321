//! Tuning loop: search spaces, strategies, runner, results and the tuned-config database.
pub mod bound;
pub mod compile;
pub mod db;
pub mod export;
pub mod export_header;
pub mod fuzzing;
pub mod gpus;
pub mod lanes;
pub mod merge;
pub mod merge_cmd;
pub mod pool;
pub mod preflight;
pub mod record;
pub mod replay;
pub mod replay_table;
pub mod runner;
pub mod search;
pub mod session;
pub mod settle;
pub mod shape_search;
pub mod shard;
pub mod space;
pub mod strategy;
pub mod summary;
pub mod sweep_plan;
pub mod sweep_run;
pub mod sweep_setup;
pub mod torch_peers;
pub mod user;
pub mod winner;
pub mod worker;

/// A built-in family, or a kernel described in a sweep file ([`user::lookup`]).
pub fn family(name: &str) -> anyhow::Result<&'static dyn crate::kernels::Family> {
    if let Some(f) = crate::kernels::builtin(name) {
        return Ok(f);
    }
    if let Some(f) = user::lookup(name)? {
        return Ok(f);
    }
    let known: Vec<&str> = crate::kernels::families().iter().map(|f| f.name()).collect();
    let users: Vec<String> = user::discover().into_iter().map(|(_, n)| n).collect();
    let users = if users.is_empty() { String::new() } else { format!("; user kernels: {}", users.join(", ")) };
    anyhow::bail!("unknown kernel family {name:?}; known families: {}{users}", known.join(", "))
}
