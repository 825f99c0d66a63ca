//! A map of fixed capacity that forgets its oldest entry to make room: for caches learned from
//! traffic (DNS answers, DHCP leases), where the newest knowledge is the most useful and memory
//! must not follow the traffic.

use hashbrown::HashMap;
use std::collections::VecDeque;
use std::hash::Hash;

pub struct FifoMap<K, V> {
    map: HashMap<K, V>,
    order: VecDeque<K>,
    capacity: usize,
    /// Entries forgotten to make room.
    pub evictions: u64,
}

impl<K: Eq + Hash + Clone, V: PartialEq> FifoMap<K, V> {
    pub fn new(capacity: usize) -> Self {
        FifoMap {
            map: HashMap::with_capacity(capacity),
            order: VecDeque::with_capacity(capacity),
            capacity,
            evictions: 0,
        }
    }

    pub fn insert(&mut self, key: K, value: V) {
        if let Some(existing) = self.map.get_mut(&key) {
            if *existing != value {
                *existing = value;
            }
            return;
        }
        while self.map.len() >= self.capacity.max(1) {
            let Some(old) = self.order.pop_front() else { break };
            self.map.remove(&old);
            self.evictions += 1;
        }
        self.map.insert(key.clone(), value);
        self.order.push_back(key);
    }

    pub fn get(&self, key: &K) -> Option<&V> {
        self.map.get(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oldest_goes_first_and_is_counted() {
        let mut m = FifoMap::new(2);
        m.insert(1, "a");
        m.insert(2, "b");
        m.insert(1, "a2");
        m.insert(3, "c");
        assert_eq!(m.get(&1), None);
        assert_eq!(m.get(&2), Some(&"b"));
        assert_eq!(m.get(&3), Some(&"c"));
        assert_eq!(m.evictions, 1);
    }
}
