//! `kernlab selftest`: every family against its reference on a GPU.
use anyhow::Result;
use std::process::ExitCode;
pub fn run(_gpu: usize) -> Result<ExitCode> { Ok(ExitCode::FAILURE) }
