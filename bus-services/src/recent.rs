//! What a process last read or wrote of recent KV keys: each key's encoded
//! value and revision, so a compare-and-set write can go without reading
//! first. A remembered value may be stale (another process wrote since): a
//! write at its revision then fails, and the caller reads the key again.

use std::collections::HashMap;
use std::sync::Mutex;

/// The most keys remembered; past it the memory starts afresh.
const RECENT_KEYS: usize = 4096;

/// Recent keys' encoded values and revisions, shared by whoever holds it.
#[derive(Default)]
pub(crate) struct Recent {
    values: Mutex<HashMap<String, (bytes::Bytes, u64)>>,
}

impl Recent {
    /// Remembers `value` at `revision` for `key`, unless a later revision
    /// is remembered already (two changes may finish out of order).
    pub(crate) fn remember(&self, key: &str, value: bytes::Bytes, revision: u64) {
        let mut values = self.lock();
        match values.get(key) {
            Some((_, known)) if *known > revision => return,
            Some(_) => {}
            None if values.len() >= RECENT_KEYS => values.clear(),
            None => {}
        }
        values.insert(key.to_owned(), (value, revision));
    }

    /// Forgets `key` (it was deleted, or a write found it changed).
    pub(crate) fn forget(&self, key: &str) {
        self.lock().remove(key);
    }

    /// The encoded value and revision remembered for `key`.
    pub(crate) fn get(&self, key: &str) -> Option<(bytes::Bytes, u64)> {
        self.lock().get(key).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (bytes::Bytes, u64)>> {
        self.values.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_later_revision_is_never_replaced_by_an_earlier_one() {
        let recent = Recent::default();
        recent.remember("k", bytes::Bytes::from_static(b"2"), 2);
        recent.remember("k", bytes::Bytes::from_static(b"1"), 1);
        assert_eq!(recent.get("k"), Some((bytes::Bytes::from_static(b"2"), 2)));
        recent.remember("k", bytes::Bytes::from_static(b"3"), 3);
        assert_eq!(recent.get("k"), Some((bytes::Bytes::from_static(b"3"), 3)));
        recent.forget("k");
        assert_eq!(recent.get("k"), None);
    }

    #[test]
    fn past_its_size_the_memory_starts_afresh() {
        let recent = Recent::default();
        for n in 0..RECENT_KEYS {
            recent.remember(&n.to_string(), bytes::Bytes::new(), 1);
        }
        assert!(recent.get("0").is_some());
        recent.remember("one more", bytes::Bytes::new(), 1);
        assert!(recent.get("0").is_none());
        assert!(recent.get("one more").is_some());
    }
}
