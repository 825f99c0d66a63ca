//! Naming what a flow reaches. A bounded cache maps server addresses from DNS answers to the
//! name the client asked for, so a flow can be named before (or without) TLS SNI or an HTTP
//! Host.

use crate::tables::fifo::FifoMap;
use std::net::IpAddr;

pub type NameCache = FifoMap<IpAddr, String>;

/// A Host header as a service name: lower case, without a port.
pub fn host_service(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split(']').next().map_or(host, |h| h.trim_start_matches('['));
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_without_port() {
        assert_eq!(host_service("portal.example:8080"), "portal.example");
        assert_eq!(host_service("[2001:db8::1]:80"), "2001:db8::1");
        assert_eq!(host_service("portal.example"), "portal.example");
    }
}
