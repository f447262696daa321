//! Tuning loop: search spaces, strategies, runner, results and the tuned-config database.
pub mod db;
pub mod record;
pub mod space;
pub mod worker;
