//! Counters for everything the core saw but could not (or chose not to) measure, and for every
//! eviction or refusal of a bounded table. Each is a plain `u64` so a report can copy them out.

use serde::Serialize;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    /// Frames handed to the core, and their wire lengths.
    pub packets: u64,
    pub bytes: u64,
    /// Packets the kernel dropped before the agent could read them (live capture).
    pub kernel_drops: u64,
    /// Frames that carried no IP packet the core could follow; the sum of the kinds below.
    pub unparsed: u64,
    pub unknown_linktype: u64,
    pub unknown_ethertype: u64,
    /// ARP, PPPoE discovery, PPP control protocols: understood, not measured.
    pub non_ip: u64,
    pub truncated_link: u64,
    pub malformed_ip: u64,
    pub truncated_ip: u64,
    pub malformed_transport: u64,
    /// IP packets of other protocols than TCP and UDP (ICMP, GRE, ESP, ...).
    pub other_ip_protocol: u64,
    pub ip_fragments: u64,
    pub ip_reassembled: u64,
    pub ip_fragments_dropped: u64,
    pub ip_reassembly_evicted: u64,
    pub ip_reassembly_timeout: u64,
    pub flows_created: u64,
    pub flow_evictions: u64,
    pub dns_queries: u64,
    pub dns_responses: u64,
    pub dns_malformed: u64,
    /// Responses with no matching query: unsolicited, duplicate or with a question that differs.
    pub dns_unmatched_responses: u64,
    pub dns_evictions: u64,
    /// TCP connections whose application protocol was not followed: the stream table was full
    /// (`streams_refused`), or the stream lost its place to a gap or overflowed a buffer.
    pub streams_refused: u64,
    pub streams_lost: u64,
    /// TLS and HTTP segments the snap length cut: read as far as captured, the rest stepped
    /// over (TLS) or left unread (HTTP).
    pub segments_truncated: u64,
    /// Client Initial packets of a followed QUIC connection that did not open (cut by the snap
    /// length, corrupt, or keyed by an ID the probe did not see), and ClientHellos in Initials
    /// that could not be read within `tls_hello_max_bytes`.
    pub quic_unopened: u64,
    pub quic_hello_lost: u64,
    /// Entries the learned caches forgot to make room (DHCP bindings, DNS-answer names).
    pub dhcp_binding_evictions: u64,
    pub service_name_evictions: u64,
    /// Journey episodes ended unreported because the episode table was full.
    pub episode_evictions: u64,
}

impl Counters {
    /// The kinds that make up `unparsed`, with their counts, for summaries.
    pub fn unparsed_kinds(&self) -> [(&'static str, u64); 5] {
        [
            ("unknown_linktype", self.unknown_linktype),
            ("unknown_ethertype", self.unknown_ethertype),
            ("truncated_link", self.truncated_link),
            ("malformed_ip", self.malformed_ip),
            ("malformed_transport", self.malformed_transport),
        ]
    }

    pub(crate) fn unparsed(&mut self, kind: fn(&mut Counters) -> &mut u64) {
        self.unparsed += 1;
        *kind(self) += 1;
    }
}
