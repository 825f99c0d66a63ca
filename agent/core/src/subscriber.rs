//! Who a flow belongs to. On a CPE the agent serves one line: every flow is its configured
//! subscriber, and devices are told apart by MAC address. On an edge node, rules map a client's
//! CIDR, VLAN or PPPoE session to a subscriber, and DHCP acknowledgements teach the agent which
//! address belongs to which line (by option 82 remote id or circuit id, or by client MAC).
//! Without a rule or lease, the client's address is the key.
//!
//! Keys can be pseudonymized with a keyed hash (HMAC-SHA256, first 16 bytes in hex), so reports
//! carry stable identifiers that only the holder of the key can link to a line. Opted-out
//! subscribers (listed by their real key) are not measured at all.

use crate::tables::fifo::FifoMap;
// The settings live with the rest of the configuration; re-exported where they are used.
pub use crate::config::{DhcpKey, Mode, Rule, SubscriberConfig};
use crate::dissect::dhcp::{DHCPACK, DhcpLease};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::Arc;

/// What a flow's first packet says about its client.
#[derive(Clone, Copy, Debug, Default)]
pub struct ClientContext {
    pub ip: Option<IpAddr>,
    pub mac: Option<[u8; 6]>,
    pub vlan: Option<u16>,
    pub pppoe_session: Option<u16>,
}

/// The subscriber of a flow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Owner {
    Subscriber(Arc<str>),
    OptedOut,
}

pub struct Resolver {
    config: SubscriberConfig,
    leases: FifoMap<IpAddr, Arc<str>>,
    cpe_key: Option<Owner>,
}

impl Resolver {
    pub fn new(config: SubscriberConfig) -> Self {
        let capacity = if config.dhcp_capacity == 0 { 4096 } else { config.dhcp_capacity };
        let mut r = Resolver { leases: FifoMap::new(capacity), cpe_key: None, config };
        if r.config.mode == Mode::Cpe {
            r.cpe_key = r.config.subscriber_id.clone().map(|id| r.owner(&id));
        }
        r
    }

    pub fn resolve(&self, client: &ClientContext) -> Owner {
        if let Some(owner) = &self.cpe_key {
            return owner.clone();
        }
        if self.config.mode == Mode::Edge {
            if let Some(rule) = self.config.rules.iter().find(|r| matches(r, client)) {
                return self.owner(&rule.subscriber);
            }
            if let Some(owner) = client.ip.and_then(|ip| self.leases.get(&ip)) {
                return self.owner(owner);
            }
        }
        match client.ip {
            Some(ip) => self.owner(&ip.to_string()),
            None => self.owner("unknown"),
        }
    }

    /// Learns from a DHCP message seen on the wire (edge mode with `learn_dhcp`).
    pub fn learn(&mut self, lease: &DhcpLease) {
        if self.config.mode != Mode::Edge || !self.config.learn_dhcp || lease.message_type != DHCPACK {
            return;
        }
        let Some(addr) = lease.your_address else { return };
        let key = match self.config.dhcp_key {
            DhcpKey::RemoteId => lease.remote_id.as_deref().map(printable),
            DhcpKey::CircuitId => lease.circuit_id.as_deref().map(printable),
            DhcpKey::Mac => Some(mac_string(&lease.client_mac)),
        };
        if let Some(key) = key {
            self.leases.insert(IpAddr::V4(addr), Arc::from(key));
        }
    }

    /// Replaces the opt-out list; the line a CPE serves is judged again.
    pub fn set_opt_out(&mut self, opt_out: Vec<String>) {
        self.config.opt_out = opt_out;
        if self.config.mode == Mode::Cpe {
            self.cpe_key = self.config.subscriber_id.clone().map(|id| self.owner(&id));
        }
    }

    pub fn learned_evictions(&self) -> u64 {
        self.leases.evictions
    }

    /// The owner for a real key: opted out, or the (pseudonymized) key.
    fn owner(&self, real: &str) -> Owner {
        if self.config.opt_out.iter().any(|o| o == real) {
            return Owner::OptedOut;
        }
        Owner::Subscriber(self.reported_key(real))
    }

    /// The key a subscriber is measured and reported under: its own, or its pseudonym.
    pub fn reported_key(&self, real: &str) -> Arc<str> {
        match &self.config.pseudonymize_secret {
            Some(secret) => Arc::from(pseudonym(secret, real)),
            None => Arc::from(real),
        }
    }
}

fn matches(rule: &Rule, c: &ClientContext) -> bool {
    rule.cidr.is_none_or(|net| c.ip.is_some_and(|ip| net.contains(&ip)))
        && rule.vlan.is_none_or(|v| c.vlan == Some(v))
        && rule.pppoe_session.is_none_or(|s| c.pppoe_session == Some(s))
        && (rule.cidr.is_some() || rule.vlan.is_some() || rule.pppoe_session.is_some())
}

/// HMAC-SHA256 of the key, first 16 bytes as hex.
pub fn pseudonym(secret: &str, key: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(key.as_bytes());
    let digest = mac.finalize().into_bytes();
    let mut out = String::with_capacity(32);
    for b in &digest[..16] {
        let _ = write!(out, "{b:02x}");
    }
    out
}

pub fn mac_string(mac: &[u8; 6]) -> String {
    let mut s = String::with_capacity(17);
    for (i, b) in mac.iter().enumerate() {
        if i > 0 {
            s.push(':');
        }
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Option 82 values are usually text; anything else is shown as hex.
fn printable(bytes: &[u8]) -> String {
    if bytes.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
        String::from_utf8_lossy(bytes).into_owned()
    } else {
        bytes.iter().fold(String::new(), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dissect::dhcp;

    fn ctx(ip: &str, vlan: Option<u16>, pppoe: Option<u16>) -> ClientContext {
        ClientContext { ip: Some(ip.parse().unwrap()), mac: None, vlan, pppoe_session: pppoe }
    }

    fn key(o: Owner) -> String {
        match o {
            Owner::Subscriber(k) => k.to_string(),
            Owner::OptedOut => "opted-out".into(),
        }
    }

    #[test]
    fn edge_rules_first_match_wins() {
        let config: SubscriberConfig = toml_like(
            r#"mode = "edge"
               rules = [
                 { cidr = "198.51.100.0/26", subscriber = "line-a" },
                 { vlan = 101, subscriber = "line-b" },
                 { pppoe_session = 7, vlan = 200, subscriber = "line-c" },
               ]"#,
        );
        let r = Resolver::new(config);
        assert_eq!(key(r.resolve(&ctx("198.51.100.9", Some(101), None))), "line-a");
        assert_eq!(key(r.resolve(&ctx("192.0.2.1", Some(101), None))), "line-b");
        assert_eq!(key(r.resolve(&ctx("192.0.2.1", Some(200), Some(7)))), "line-c");
        assert_eq!(key(r.resolve(&ctx("192.0.2.1", None, Some(7)))), "192.0.2.1");
    }

    #[test]
    fn dhcp_teaches_the_line_and_opt_out_wins() {
        let mut r = Resolver::new(toml_like(
            r#"mode = "edge"
            learn_dhcp = true
            opt_out = ["line-000123"]"#,
        ));
        let lease = dhcp::parse(&dhcp::tests::ack()).unwrap();
        r.learn(&lease);
        assert_eq!(r.resolve(&ctx("192.0.2.55", None, None)), Owner::OptedOut);
        let mut r = Resolver::new(toml_like(
            r#"mode = "edge"
            learn_dhcp = true
            dhcp_key = "circuit_id""#,
        ));
        r.learn(&lease);
        assert_eq!(key(r.resolve(&ctx("192.0.2.55", None, None))), "OLT-7/1/3");
    }

    #[test]
    fn cpe_key_is_pseudonymized_stably() {
        let r = Resolver::new(toml_like(
            r#"subscriber_id = "line-000123"
            pseudonymize_secret = "a-long-enough-s3cret""#,
        ));
        let a = key(r.resolve(&ctx("192.0.2.10", None, None)));
        let b = key(r.resolve(&ctx("192.0.2.11", None, None)));
        assert_eq!(a, b);
        assert_eq!(a.len(), 32);
        assert_ne!(a, pseudonym("other", "line-000123"));
    }

    fn toml_like(text: &str) -> SubscriberConfig {
        toml::from_str(text).unwrap()
    }
}
