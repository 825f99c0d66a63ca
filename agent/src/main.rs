use clap::Parser;
use edgeprobe_agent::cli::{Cli, run};
use std::process::ExitCode;

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line per problem (a config's are `FILE:LINE:COLUMN: ...`), each marked.
            for line in format!("{e:#}").lines() {
                eprintln!("edgeprobe: {line}");
            }
            ExitCode::FAILURE
        }
    }
}
