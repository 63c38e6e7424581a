//! "Newest version wins" for objects named after a record.
//!
//! An object named after a record (`<type>/<user>-<start_time>.json`, FIT and FHIR files) is
//! overwritten by every version of that record. The engine may hand two versions of one record
//! to concurrent `deliver` calls (several workers and batches), or an old version after a newer
//! one (a retry), and an object store keeps whatever was written last — so without care an
//! older version can replace a newer one (seen in the issue #7 proof: a `daily` object held
//! version 2 of 3). Writers of one object therefore
//! 1. take that object's lock in this process ([`KeyLocks`]),
//! 2. read the version stored in the object's metadata (`version`),
//! 3. skip the write when the stored version is newer, else write conditionally on what they
//!    read (ETag / generation; a changed object means another writer won: read again).
//!
//! Shared by the object-store destinations (s3, gcs, azure-blob), like [`crate::object_layout`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::destination::{Delivery, Outcome, Response};
use tokio::sync::OwnedMutexGuard;

/// Metadata name holding the record version an object was written from.
pub const VERSION_META: &str = "version";

/// How often a conditional write that lost a race is tried again before the delivery is
/// retried later by the engine.
pub const CONFLICT_ATTEMPTS: usize = 4;

/// The outcome of a delivery whose record objects in `superseded` were not written because a
/// newer version is stored: delivered, saying which were skipped (visible in the attempt log).
pub fn delivered_unless_superseded(superseded: &[&str]) -> Outcome {
    if superseded.is_empty() {
        Outcome::delivered()
    } else {
        Outcome::Delivered {
            response: Response::default().with_body(format!(
                "not written: a newer version of the record is stored at {}",
                superseded.join(", ")
            )),
        }
    }
}

/// Whether `key` (an object planned for `d`) is named after the record, so versions of the record
/// overwrite it. Objects of informational events and tombstones are named after the payload
/// (`…-<trace id>.json`) and are never overwritten by another payload.
pub fn is_record_object(d: &Delivery, key: &str) -> bool {
    let key = key.strip_suffix(".gz").unwrap_or(key);
    let tail = format!("-{}.json", crate::object_layout::sanitize(d.trace_id()));
    !key.ends_with(&tail)
}

/// What a read of the object's metadata found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    /// No object under the key.
    Absent,
    /// An object: the version in its metadata (none for objects written before versions were
    /// recorded) and its ETag / generation for the conditional write.
    Present { version: Option<i64>, tag: String },
    /// The credentials may write but not read: write unconditionally (ordered in this process
    /// only).
    Unreadable,
}

impl Stored {
    /// A write of `version` would replace a newer stored version.
    pub fn is_newer_than(&self, version: i64) -> bool {
        matches!(self, Stored::Present { version: Some(v), .. } if *v > version)
    }
}

/// Per-key async locks; an entry lives only while someone holds or waits for it.
#[derive(Default)]
pub struct KeyLocks {
    map: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// Holds one key's lock; dropping it releases the lock (and the entry when nobody waits).
pub struct KeyGuard<'a> {
    locks: &'a KeyLocks,
    key: String,
    guard: Option<OwnedMutexGuard<()>>,
}

impl KeyLocks {
    pub async fn lock(&self, key: &str) -> KeyGuard<'_> {
        let m = {
            let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
            map.entry(key.to_string()).or_default().clone()
        };
        let guard = m.lock_owned().await;
        KeyGuard {
            locks: self,
            key: key.to_string(),
            guard: Some(guard),
        }
    }

    /// Keys with a live entry (for tests).
    pub fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for KeyGuard<'_> {
    fn drop(&mut self) {
        let mut map = self.locks.map.lock().unwrap_or_else(|e| e.into_inner());
        drop(self.guard.take());
        // Waiters clone the entry under the map's lock before they wait, so a count of one (the
        // map's own) means nobody else wants this key.
        if map
            .get(&self.key)
            .is_some_and(|m| Arc::strong_count(m) == 1)
        {
            map.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn one_writer_per_key_and_entries_are_dropped() {
        let locks = Arc::new(KeyLocks::default());
        let order = Arc::new(Mutex::new(Vec::new()));
        let first = locks.lock("a").await;
        let (l2, o2) = (locks.clone(), order.clone());
        let waiter = tokio::spawn(async move {
            let _g = l2.lock("a").await;
            o2.lock().unwrap().push("second");
        });
        // Another key is not blocked.
        drop(locks.lock("b").await);
        tokio::time::sleep(Duration::from_millis(50)).await;
        order.lock().unwrap().push("first");
        drop(first);
        waiter.await.unwrap();
        assert_eq!(*order.lock().unwrap(), ["first", "second"]);
        assert!(locks.is_empty(), "entries are removed once unused");
    }

    #[test]
    fn newer_stored_versions_win() {
        let present = |v| Stored::Present {
            version: v,
            tag: "t".into(),
        };
        assert!(present(Some(3)).is_newer_than(2));
        assert!(!present(Some(2)).is_newer_than(2));
        assert!(!present(Some(1)).is_newer_than(2));
        assert!(!present(None).is_newer_than(2));
        assert!(!Stored::Absent.is_newer_than(1));
        assert!(!Stored::Unreadable.is_newer_than(1));
    }

    #[cfg(feature = "testkit")]
    #[test]
    fn record_objects_are_the_ones_not_named_after_the_payload() {
        let mut d = crate::testkit::sample_delivery("sleep", "u1", 1);
        d.payload_id = "01a2-trace".into();
        assert!(is_record_object(
            &d,
            "p/2022-03-16/sleep/u1-2026-07-01T23:00:00+01:00.json"
        ));
        assert!(is_record_object(&d, "p/2022-03-16/activity/u1-sum-1.fit"));
        assert!(!is_record_object(
            &d,
            "p/2022-03-16/auth/u1-2026-03-12T14:30:00.000Z-01a2-trace.json"
        ));
        assert!(!is_record_object(
            &d,
            "2022-03-16/sleep/deleted/u1-2026-03-12T14:30:00.000Z-01a2-trace.json.gz"
        ));
    }
}
