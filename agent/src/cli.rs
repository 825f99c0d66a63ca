//! The `edgeprobe` command line.

use crate::config::AgentConfig;
use crate::replay::{ReplayOutput, replay};
use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use std::io::Write;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(name = "edgeprobe", version, about = "Measures subscribers' network experience from the traffic that passes")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the measurement core over a pcap or pcapng file, with packet time as the clock.
    Replay {
        /// The capture; its format is read from the magic number.
        file: PathBuf,
        /// Agent configuration (TOML); defaults apply without one.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Print measurement events as JSON lines on stdout.
        #[arg(long)]
        events: bool,
        /// Print window reports as JSON lines on stdout.
        #[arg(long)]
        reports: bool,
    },
    /// Validate a configuration file; print every error with its line and column.
    CheckConfig { file: PathBuf },
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Replay { file, config, events, reports } => {
            let config = match config {
                Some(path) => load_config(&path)?,
                None => AgentConfig::default(),
            };
            let agent_id = config.agent_id();
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
            let mut output = ReplayOutput { out: &mut out, events, reports };
            let summary =
                replay(&file, config.core(), agent_id, &mut output).with_context(|| file.display().to_string())?;
            out.flush().context("writing to stdout")?;
            eprintln!("{}", summary.line());
            if let Some(e) = summary.error {
                bail!("{}: {e}", file.display());
            }
            Ok(())
        }
        Command::CheckConfig { file } => {
            load_config(&file)?;
            println!("{}: ok", file.display());
            Ok(())
        }
    }
}

fn load_config(path: &std::path::Path) -> anyhow::Result<AgentConfig> {
    AgentConfig::load(path).map_err(|errors| {
        let lines: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        anyhow::anyhow!("{}", lines.join("\n"))
    })
}
