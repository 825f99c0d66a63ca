//! The `edgeprobe` command line.

use crate::config::AgentConfig;
use crate::publish::mqtt::{Identity, Publisher};
use crate::replay::{ReplayOutput, random_boot_id, replay};
use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use edgeprobe_core::Timestamp;
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
    /// Capture live on the configured interfaces and publish reports to the broker.
    Run {
        #[arg(long)]
        config: PathBuf,
        /// Also print measurement events as JSON lines on stdout, for field debugging.
        #[arg(long)]
        events: bool,
    },
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
        /// Print every round-trip sample as a JSON line with `"kind": "rtt_sample"`: the ACK's
        /// time and flow, `side`, `rtt_us` and `loaded`. For checking against tshark's
        /// `tcp.analysis.ack_rtt`; there is one per ACK that times a segment.
        #[arg(long)]
        rtt_samples: bool,
        /// Send the reports to the configured broker; wait up to `--publish-wait` seconds for
        /// the broker to acknowledge them (the rest stay in the spool).
        #[arg(long)]
        publish: bool,
        #[arg(long, default_value_t = 10)]
        publish_wait: u64,
        /// Move the capture in time so that its first packet falls at this moment: `now`, or
        /// Unix seconds. Latencies are unchanged; windows and event times move. For demos and
        /// tests that need current data.
        #[arg(long, value_parser = parse_start_at)]
        start_at: Option<Timestamp>,
    },
    /// Validate a configuration file; print every error with its line and column.
    CheckConfig { file: PathBuf },
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Run { config, events } => crate::run::run(load_config(&config)?, events, capabilities()),
        Command::Replay { file, config, events, reports, rtt_samples, publish, publish_wait, start_at } => {
            let config = match config {
                Some(path) => load_config(&path)?,
                None => AgentConfig::default(),
            };
            let agent_id = config.agent_id();
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let boot_id = random_boot_id();
            let publisher = if publish {
                let identity =
                    Identity { agent_id: agent_id.clone(), boot_id: boot_id.clone(), capabilities: capabilities() };
                Some(runtime.block_on(Publisher::start(config.mqtt.clone(), identity, None))?)
            } else {
                None
            };
            let mut send = |report| {
                if let Some(p) = &publisher {
                    let _ = runtime.block_on(p.publish(report));
                }
            };
            let sink = publish.then_some((&mut send as &mut dyn FnMut(edgeprobe_wire::Report), boot_id));
            let mut output = ReplayOutput { out: &mut out, events, reports, rtt_samples, sink, start_at };
            let summary =
                replay(&file, config.core(), agent_id, &mut output).with_context(|| file.display().to_string())?;
            out.flush().context("writing to stdout")?;
            eprintln!("{}", summary.line());
            if let Some(p) = publisher {
                let left = runtime.block_on(p.shutdown(std::time::Duration::from_secs(publish_wait)));
                if left > 0 {
                    bail!("{left} reports not acknowledged by {}; they wait in the spool", config.mqtt.url);
                }
            }
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

/// What this build can measure, for the birth message.
fn capabilities() -> Vec<String> {
    ["dns", "tcp_connect", "tls", "http", "flow_end", "reports"].iter().map(|s| s.to_string()).collect()
}

fn parse_start_at(s: &str) -> Result<Timestamp, String> {
    if s == "now" {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_err(|e| e.to_string())?;
        return Ok(Timestamp(now.as_nanos() as u64));
    }
    let secs: f64 = s.parse().map_err(|_| format!("{s:?} is neither `now` nor Unix seconds"))?;
    if !(0.0..1e11).contains(&secs) {
        return Err(format!("{s:?} is out of range"));
    }
    Ok(Timestamp((secs * 1e9) as u64))
}
