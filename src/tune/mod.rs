//! Tuning loop: search spaces, strategies, runner, results and the tuned-config database.
pub mod compile;
pub mod db;
pub mod export;
pub mod export_header;
pub mod pool;
pub mod preflight;
pub mod record;
pub mod replay;
pub mod replay_cli;
pub mod replay_table;
pub mod runner;
pub mod search;
pub mod space;
pub mod strategy;
pub mod torch_peers;
pub mod winner;
pub mod worker;
