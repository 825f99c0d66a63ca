//! The `[capture]` section: which interfaces to watch and how.

use serde::Deserialize;

/// How frames are read from the kernel.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// A memory-mapped AF_PACKET ring with kernel timestamps (Linux).
    #[default]
    Ring,
    /// pnet's datalink channel: portable, but timestamps are taken when the agent reads the
    /// frame, so they carry scheduling jitter; no BPF filter, no kernel drop counts.
    Pnet,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct CaptureConfig {
    pub backend: Backend,
    /// Interfaces to capture on, e.g. the LAN bridge of a home gateway.
    pub interfaces: Vec<String>,
    /// Bytes of each frame handed to the analyzers; the rest is counted, not read.
    pub snaplen: u32,
    /// A classic BPF program in `tcpdump -ddd` form (count line, then "code jt jf k" lines),
    /// run in the kernel so unwanted packets never reach the agent.
    pub bpf: Option<String>,
    /// The ring: `ring_blocks` blocks of `ring_block_kib` KiB per interface.
    pub ring_block_kib: usize,
    pub ring_blocks: usize,
}

impl Default for CaptureConfig {
    fn default() -> Self {
        CaptureConfig {
            backend: Backend::Ring,
            interfaces: Vec::new(),
            snaplen: 65_535,
            bpf: None,
            ring_block_kib: 1024,
            ring_blocks: 8,
        }
    }
}

impl CaptureConfig {
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        self.problems().into_iter().next().map_or(Ok(()), Err)
    }

    /// Every problem found, as (field, reason).
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if self.backend == Backend::Pnet && !cfg!(feature = "pnet") {
            out.push(("backend", "this build leaves out the pnet backend; use \"ring\"".into()));
        }
        if self.snaplen < 64 {
            out.push(("snaplen", "must be at least 64".into()));
        }
        if !self.ring_block_kib.is_power_of_two() || !(64..=65_536).contains(&self.ring_block_kib) {
            out.push(("ring_block_kib", "must be a power of two from 64 to 65536".into()));
        }
        if !(2..=1024).contains(&self.ring_blocks) {
            out.push(("ring_blocks", "must be from 2 to 1024".into()));
        }
        if let Some(bpf) = &self.bpf {
            if let Err(e) = super::ring::parse_bpf(bpf) {
                out.push(("bpf", e));
            }
        }
        if self.interfaces.iter().any(|i| i.is_empty() || i.len() > 15) {
            out.push(("interfaces", "interface names are 1 to 15 characters".into()));
        }
        out
    }
}
