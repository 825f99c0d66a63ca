//! Naming what a flow reaches. A bounded cache maps server addresses from DNS answers to the
//! name the client asked for, so a flow can be named before (or without) TLS SNI or an HTTP
//! Host. The oldest entries go first when the cache is full.

use hashbrown::HashMap;
use std::collections::VecDeque;
use std::net::IpAddr;

pub struct NameCache {
    names: HashMap<IpAddr, String>,
    order: VecDeque<IpAddr>,
    capacity: usize,
}

impl NameCache {
    pub fn new(capacity: usize) -> Self {
        NameCache { names: HashMap::with_capacity(capacity), order: VecDeque::with_capacity(capacity), capacity }
    }

    pub fn insert(&mut self, addr: IpAddr, name: &str) {
        if let Some(existing) = self.names.get_mut(&addr) {
            if existing != name {
                name.clone_into(existing);
            }
            return;
        }
        while self.names.len() >= self.capacity {
            let Some(old) = self.order.pop_front() else { break };
            self.names.remove(&old);
        }
        self.names.insert(addr, name.to_string());
        self.order.push_back(addr);
    }

    pub fn get(&self, addr: &IpAddr) -> Option<&str> {
        self.names.get(addr).map(String::as_str)
    }
}

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
    fn oldest_name_goes_first() {
        let mut c = NameCache::new(2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let d: IpAddr = "2001:db8::1".parse().unwrap();
        c.insert(a, "a.example");
        c.insert(b, "b.example");
        c.insert(d, "d.example");
        assert_eq!(c.get(&a), None);
        assert_eq!(c.get(&d), Some("d.example"));
    }

    #[test]
    fn host_without_port() {
        assert_eq!(host_service("portal.example:8080"), "portal.example");
        assert_eq!(host_service("[2001:db8::1]:80"), "2001:db8::1");
        assert_eq!(host_service("portal.example"), "portal.example");
    }
}
