use clap::Parser;
use edgeprobe_agent::cli::{Cli, run};
use std::process::ExitCode;

fn main() -> ExitCode {
    // Release and gateway builds abort on any panic; debug builds, which the tests run, do
    // the same, so no test passes on a panic a gateway would die of.
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        report(info);
        std::process::abort();
    }));
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
