//! The edgeprobe agent: capture shells around `edgeprobe-core`, configuration and the CLI.

pub mod capture;
pub mod cli;
pub mod config;
pub mod publish;
pub mod replay;
pub mod run;
