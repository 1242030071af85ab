//! The in-memory cache: at most `max_items` entries, the oldest stored going first when full;
//! an expired entry is dropped when next looked up or pushed out.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::Entry;

struct Slot {
    entry: Entry,
    expires: Option<Instant>,
    /// Which push of this key the order queue's entry is for.
    seq: u64,
}

#[derive(Default)]
struct Inner {
    map: HashMap<String, Slot>,
    /// Keys in the order stored; an entry whose `seq` no longer matches its slot is stale.
    order: VecDeque<(u64, String)>,
    seq: u64,
}

pub(super) struct Local {
    max_items: usize,
    inner: Mutex<Inner>,
}

impl Local {
    pub fn new(max_items: usize) -> Local {
        Local {
            max_items: max_items.max(1),
            inner: Mutex::new(Inner::default()),
        }
    }

    pub fn get(&self, key: &str) -> Option<Entry> {
        let mut inner = self.inner.lock();
        let slot = inner.map.get(key)?;
        if slot.expires.is_some_and(|t| t <= Instant::now()) {
            inner.map.remove(key);
            return None;
        }
        Some(slot.entry.clone())
    }

    pub fn put(&self, key: String, entry: Entry, ttl: Option<Duration>) {
        let expires = ttl.and_then(|t| Instant::now().checked_add(t));
        let mut inner = self.inner.lock();
        inner.seq += 1;
        let seq = inner.seq;
        inner.order.push_back((seq, key.clone()));
        inner.map.insert(
            key,
            Slot {
                entry,
                expires,
                seq,
            },
        );
        while inner.map.len() > self.max_items {
            let Some((seq, oldest)) = inner.order.pop_front() else {
                break;
            };
            if inner.map.get(&oldest).is_some_and(|s| s.seq == seq) {
                inner.map.remove(&oldest);
            }
        }
        // Keys stored again leave stale queue entries behind; keep the queue near the map.
        if inner.order.len() > 2 * self.max_items + 16 {
            let Inner { map, order, .. } = &mut *inner;
            order.retain(|(seq, k)| map.get(k).is_some_and(|s| s.seq == *seq));
        }
    }

    pub fn delete(&self, keys: &[String]) -> u64 {
        let mut inner = self.inner.lock();
        keys.iter()
            .filter(|k| inner.map.remove(k.as_str()).is_some())
            .count() as u64
    }

    pub fn clear(&self) -> u64 {
        let mut inner = self.inner.lock();
        let n = inner.map.len() as u64;
        inner.map.clear();
        inner.order.clear();
        n
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::super::Kind;
    use super::*;

    fn entry(s: &'static str) -> Entry {
        Entry {
            kind: Kind::Full,
            body: Bytes::from_static(s.as_bytes()),
            stored_at_ms: 0,
        }
    }

    #[test]
    fn full_pushes_out_the_oldest_stored_and_ttl_expires() {
        let l = Local::new(2);
        l.put("a".into(), entry("1"), None);
        l.put("b".into(), entry("2"), None);
        // Stored again: now the newest, so `b` goes first.
        l.put("a".into(), entry("3"), None);
        l.put("c".into(), entry("4"), None);
        assert!(l.get("b").is_none());
        assert_eq!(l.get("a").unwrap().body, "3");
        assert_eq!(l.get("c").unwrap().body, "4");
        l.put("d".into(), entry("5"), Some(Duration::from_millis(1)));
        std::thread::sleep(Duration::from_millis(5));
        assert!(l.get("d").is_none());
        // `d` pushed out `a`, the oldest stored.
        assert_eq!(l.delete(&["a".into(), "c".into(), "zz".into()]), 1);
        for i in 0..100 {
            l.put(format!("k{}", i % 3), entry("x"), None);
        }
        assert!(l.inner.lock().order.len() <= 2 * 2 + 16);
        assert_eq!(l.clear(), 2);
    }
}
