//! Command-line interface: one subcommand per user verb.
use anyhow::Result;
use std::process::ExitCode;

pub fn run() -> Result<ExitCode> {
    Ok(ExitCode::SUCCESS)
}
