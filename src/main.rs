use std::process::ExitCode;

fn main() -> ExitCode {
    match kernlab::cli::run() {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
