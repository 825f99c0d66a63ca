//! Strings shared by many flows (subscriber keys, service names, device addresses), stored once
//! and referred to by a 4-byte handle, so a flow carries no string of its own. Each handle counts
//! its flows; a string no flow uses any more is dropped. The table therefore never holds more
//! strings than there are live flows, which the flow capacity bounds.

use hashbrown::HashMap;
use std::sync::Arc;

/// No string.
pub const NONE: u32 = u32::MAX;

#[derive(Default)]
pub struct Interner {
    strings: Vec<Option<(Arc<str>, u32)>>,
    index: HashMap<Arc<str>, u32>,
    free: Vec<u32>,
}

impl Interner {
    /// A handle for `s`, counting one more user.
    pub fn acquire(&mut self, s: &str) -> u32 {
        if let Some(&i) = self.index.get(s) {
            if let Some((_, users)) = &mut self.strings[i as usize] {
                *users += 1;
            }
            return i;
        }
        let arc: Arc<str> = Arc::from(s);
        let entry = Some((arc.clone(), 1));
        let i = match self.free.pop() {
            Some(i) => {
                self.strings[i as usize] = entry;
                i
            }
            None => {
                self.strings.push(entry);
                (self.strings.len() - 1) as u32
            }
        };
        self.index.insert(arc, i);
        i
    }

    /// One user fewer; the string goes when none is left.
    pub fn release(&mut self, handle: u32) {
        let Some(Some((s, users))) = self.strings.get_mut(handle as usize) else { return };
        *users -= 1;
        if *users == 0 {
            let s = s.clone();
            self.index.remove(&s);
            self.strings[handle as usize] = None;
            self.free.push(handle);
        }
    }

    pub fn get(&self, handle: u32) -> Option<&Arc<str>> {
        self.strings.get(handle as usize)?.as_ref().map(|(s, _)| s)
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_release_drops_and_reuses() {
        let mut i = Interner::default();
        let a = i.acquire("line-1");
        assert_eq!(i.acquire("line-1"), a);
        i.release(a);
        assert_eq!(i.get(a).map(|s| &**s), Some("line-1"));
        i.release(a);
        assert!(i.get(a).is_none() && i.is_empty());
        let b = i.acquire("line-2");
        assert_eq!(b, a, "slot reused");
    }
}
