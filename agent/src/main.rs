use clap::Parser;
use edgeprobe_agent::cli::{Cli, run};
use std::process::ExitCode;

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("edgeprobe: {e:#}");
            ExitCode::FAILURE
        }
    }
}
