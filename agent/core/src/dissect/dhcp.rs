//! DHCPv4 (RFC 2131) messages, read for what subscriber learning needs: the message type, the
//! client's hardware address, the address it was given, and the relay agent information option
//! (RFC 3046: circuit id and remote id), which access nodes insert to name the line.

use super::{Layer, Result, check_len};
use crate::dissect::Error;
use std::net::Ipv4Addr;

const MAGIC: [u8; 4] = [99, 130, 83, 99];
const OPTIONS: usize = 240;
const OPT_PAD: u8 = 0;
const OPT_END: u8 = 255;
const OPT_MESSAGE_TYPE: u8 = 53;
const OPT_RELAY_AGENT: u8 = 82;

pub const DHCPACK: u8 = 5;

/// What one DHCP message says about a client.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DhcpLease {
    pub message_type: u8,
    pub client_mac: [u8; 6],
    pub your_address: Option<Ipv4Addr>,
    pub circuit_id: Option<Vec<u8>>,
    pub remote_id: Option<Vec<u8>>,
}

pub fn parse(buf: &[u8]) -> Result<DhcpLease> {
    check_len(Layer::Dhcp, buf, OPTIONS)?;
    if buf[236..240] != MAGIC {
        return Err(Error::Malformed { layer: Layer::Dhcp, field: "magic cookie", offset: 236 });
    }
    let yiaddr = Ipv4Addr::new(buf[16], buf[17], buf[18], buf[19]);
    let mut lease = DhcpLease {
        client_mac: buf[28..34].try_into().unwrap_or_default(),
        your_address: (!yiaddr.is_unspecified()).then_some(yiaddr),
        ..DhcpLease::default()
    };
    let mut at = OPTIONS;
    while let Some(&code) = buf.get(at) {
        match code {
            OPT_PAD => at += 1,
            OPT_END => break,
            _ => {
                let Some(&len) = buf.get(at + 1) else { break };
                let Some(value) = buf.get(at + 2..at + 2 + usize::from(len)) else {
                    return Err(Error::Truncated {
                        layer: Layer::Dhcp,
                        offset: at,
                        need: usize::from(len) + 2,
                        have: buf.len() - at,
                    });
                };
                match code {
                    OPT_MESSAGE_TYPE if len == 1 => lease.message_type = value[0],
                    OPT_RELAY_AGENT => {
                        let mut sub = value;
                        while sub.len() >= 2 {
                            let (kind, n) = (sub[0], usize::from(sub[1]));
                            let Some(data) = sub.get(2..2 + n) else { break };
                            match kind {
                                1 => lease.circuit_id = Some(data.to_vec()),
                                2 => lease.remote_id = Some(data.to_vec()),
                                _ => {}
                            }
                            sub = &sub[2 + n..];
                        }
                    }
                    _ => {}
                }
                at += 2 + usize::from(len);
            }
        }
    }
    Ok(lease)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A DHCPACK giving 192.0.2.55 to 02:00:00:00:00:55, relayed with circuit id "OLT-7/1/3"
    /// and remote id "line-000123".
    pub fn ack() -> Vec<u8> {
        let mut m = vec![0u8; 240];
        m[0] = 2; // BOOTREPLY
        m[1] = 1;
        m[2] = 6;
        m[16..20].copy_from_slice(&[192, 0, 2, 55]);
        m[28..34].copy_from_slice(&[2, 0, 0, 0, 0, 0x55]);
        m[236..240].copy_from_slice(&MAGIC);
        m.extend_from_slice(&[53, 1, DHCPACK]);
        let circuit = b"OLT-7/1/3";
        let remote = b"line-000123";
        m.extend_from_slice(&[82, (4 + circuit.len() + remote.len()) as u8, 1, circuit.len() as u8]);
        m.extend_from_slice(circuit);
        m.extend_from_slice(&[2, remote.len() as u8]);
        m.extend_from_slice(remote);
        m.push(255);
        m
    }

    #[test]
    fn reads_lease_and_relay_info() {
        let lease = parse(&ack()).unwrap();
        assert_eq!(lease.message_type, DHCPACK);
        assert_eq!(lease.your_address, Some(Ipv4Addr::new(192, 0, 2, 55)));
        assert_eq!(lease.circuit_id.as_deref(), Some(&b"OLT-7/1/3"[..]));
        assert_eq!(lease.remote_id.as_deref(), Some(&b"line-000123"[..]));
    }

    #[test]
    fn every_prefix_is_safe() {
        let m = ack();
        for n in 0..m.len() {
            let _ = parse(&m[..n]);
        }
    }
}
