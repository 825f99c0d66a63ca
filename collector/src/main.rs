//! `edgeprobe-collector`: parses arguments and calls the library.

use anyhow::Context;
use clap::{Parser, Subcommand};
use edgeprobe_collector::config::CollectorConfig;
use edgeprobe_collector::{customers, serve, store};
use std::path::PathBuf;
use std::process::ExitCode;

// glibc's per-thread arenas grow and trim around every large write batch (some 18,000 mprotect
// calls a second in the ingest benchmark); mimalloc keeps the pages.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "edgeprobe-collector",
    version,
    about = "Ingests edgeprobe reports, correlates incidents, serves the NOC API"
)]
struct Cli {
    /// Collector config (TOML); without it, the embedded defaults.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run ingest, correlation and the HTTP API (the default).
    Serve,
    /// Load or update customer records from a CSV file.
    ImportCustomers { file: PathBuf },
    /// Record outcomes (contacts, tickets closed, churn, satisfaction) from a CSV file.
    ImportOutcomes { file: PathBuf },
    /// Validate a config file.
    CheckConfig { file: PathBuf },
    /// Read a password from standard input (one line) and print its bcrypt hash, for
    /// `password_hash` in `[http.auth] users`.
    HashPassword,
    /// The embedded MQTT broker, run by `serve` in a process of its own (settings on standard
    /// input; it exits when standard input closes).
    #[command(hide = true)]
    EmbeddedBroker,
}

fn load(path: Option<&PathBuf>) -> anyhow::Result<CollectorConfig> {
    match path {
        Some(p) => CollectorConfig::load(p),
        None => Ok(CollectorConfig::default()),
    }
}

fn import(config: &CollectorConfig, file: &PathBuf) -> anyhow::Result<bool> {
    let input = std::fs::File::open(file).with_context(|| format!("{}", file.display()))?;
    let parsed = customers::parse_csv(input).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    for e in &parsed.errors {
        eprintln!("{}:{}: {}", file.display(), e.line, e.reason);
    }
    let mut store =
        store::Store::open(&config.storage.url).with_context(|| format!("storage {}", config.storage.url))?;
    let new = store.upsert_customers(&parsed.customers, edgeprobe_collector::clock::now_ms())?;
    eprintln!(
        "imported {} customers ({new} new, {} updated), {} rows rejected",
        parsed.customers.len(),
        parsed.customers.len() - new,
        parsed.errors.len()
    );
    Ok(parsed.errors.is_empty())
}

fn import_outcomes(config: &CollectorConfig, file: &PathBuf) -> anyhow::Result<bool> {
    let input = std::fs::File::open(file).with_context(|| format!("{}", file.display()))?;
    let rows =
        edgeprobe_collector::outcomes::from_csv(input).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    let mut store =
        store::Store::open(&config.storage.url).with_context(|| format!("storage {}", config.storage.url))?;
    let source = format!("import:{}", file.file_name().map_or("".into(), |n| n.to_string_lossy()));
    let recorded =
        edgeprobe_collector::outcomes::record(&mut store, config, rows, &source, edgeprobe_collector::clock::now_ms())?;
    for r in &recorded.rejected {
        eprintln!("{}:{}: {}", file.display(), r.item, r.reason);
    }
    eprintln!(
        "recorded {} outcomes ({} already known), {} rows rejected",
        recorded.accepted,
        recorded.duplicates,
        recorded.rejected.len()
    );
    Ok(recorded.rejected.is_empty())
}

fn main() -> ExitCode {
    // Release builds abort on any panic (`panic = "abort"`). Debug builds, which the tests
    // run, do the same, so a panic anywhere (a task's included, which tokio would otherwise
    // catch) fails the tests as it would take a production collector down.
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        report(info);
        std::process::abort();
    }));
    let cli = Cli::parse();
    let result = (|| -> anyhow::Result<bool> {
        match cli.command.unwrap_or(Command::Serve) {
            Command::CheckConfig { file } => {
                let config = CollectorConfig::load(&file)?;
                if let Some(push) = &config.agent_config.file {
                    let pushed = edgeprobe_collector::agent_config::load(push)?;
                    println!("{}: ok, version {}", push.display(), pushed.version);
                }
                if let Some((cert, key)) = config.http.tls_files() {
                    edgeprobe_collector::http::https::server_config(cert, key)?;
                    println!("{}: ok", cert.display());
                }
                println!("{}: ok", file.display());
                Ok(true)
            }
            Command::ImportCustomers { file } => import(&load(cli.config.as_ref())?, &file),
            Command::ImportOutcomes { file } => import_outcomes(&load(cli.config.as_ref())?, &file),
            Command::EmbeddedBroker => edgeprobe_collector::broker::run_child().map(|()| true),
            Command::HashPassword => {
                let mut password = String::new();
                std::io::stdin().read_line(&mut password)?;
                let password = password.strip_suffix('\n').unwrap_or(&password);
                let password = password.strip_suffix('\r').unwrap_or(password);
                println!("{}", edgeprobe_collector::http::auth::hash_password(password)?);
                Ok(true)
            }
            Command::Serve => {
                let config = load(cli.config.as_ref())?;
                let rt = tokio::runtime::Runtime::new()?;
                rt.block_on(async {
                    let listener = tokio::net::TcpListener::bind(config.http.listen)
                        .await
                        .with_context(|| format!("http listen {}", config.http.listen))?;
                    let https = config.http.tls_files().is_some();
                    let scheme = if https { "https" } else { "http" };
                    eprintln!("edgeprobe-collector: API on {scheme}://{}", listener.local_addr()?);
                    let auth = &config.http.auth;
                    if auth.enabled() && !https && !config.http.listen.ip().is_loopback() {
                        eprintln!(
                            "edgeprobe-collector: warning: logins and tokens cross the network in the clear; \
                             set http.tls_cert_file and http.tls_key_file"
                        );
                    }
                    for u in auth.users.iter().filter(|u| u.password.is_some()) {
                        eprintln!(
                            "edgeprobe-collector: warning: user {} has a plain-text password; \
                             `edgeprobe-collector hash-password` gives a password_hash",
                            u.name
                        );
                    }
                    for t in auth.tokens.iter().filter(|t| t.token.is_some()) {
                        eprintln!(
                            "edgeprobe-collector: warning: token {} is in plain text; \
                             `printf %s TOKEN | sha256sum` gives a token_sha256",
                            t.name
                        );
                    }
                    serve(config, listener, shutdown_signal()).await
                })?;
                Ok(true)
            }
        }
    })();
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(2),
        Err(e) => {
            // One line per problem (a config's are `FILE:LINE:COLUMN: ...`), each marked.
            for line in format!("{e:#}").lines() {
                eprintln!("edgeprobe-collector: {line}");
            }
            ExitCode::FAILURE
        }
    }
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
