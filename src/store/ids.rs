//! Ids of stored rows: checked when a caller supplies them, generated otherwise.
//!
//! A generated id is a prefix (`run_`, `fb_`, `ev_`) and 26 Crockford base-32 characters: 48
//! bits of milliseconds, then 80 random bits (ULID layout), so ids made later sort later.

use std::fmt;

use super::error::StoreError;

/// The id of a stored run.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RunId(String);

/// The id the store gave a piece of feedback.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FeedbackId(String);

macro_rules! id_type {
    ($ty:ident, $what:literal, $prefix:literal) => {
        impl $ty {
            /// Checks an id given from outside (1 to 128 characters from `A-Z a-z 0-9 _ - . :`).
            pub fn parse(id: &str) -> Result<Self, StoreError> {
                check_id($what, id).map(|()| $ty(id.to_string()))
            }

            /// A fresh id.
            pub fn generate() -> Self {
                $ty(generate($prefix))
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// Wraps text read back from the store, which was checked when it was written.
            pub(crate) fn from_stored(id: String) -> Self {
                $ty(id)
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $ty {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

id_type!(RunId, "run id", "run_");
id_type!(FeedbackId, "feedback id", "fb_");

/// Checks a caller-supplied id or name used as a key (run ids, client ids, feedback keys, programs).
pub(crate) fn check_id(what: &'static str, id: &str) -> Result<(), StoreError> {
    let ok = !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'));
    if ok {
        Ok(())
    } else {
        Err(StoreError::InvalidId { what, value: id.chars().take(160).collect() })
    }
}

const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
const RANDOM_BITS: u32 = 80;
const RANDOM_MASK: u128 = (1 << RANDOM_BITS) - 1;

fn now_ms() -> u128 {
    u128::try_from(super::time::Timestamp::now().millis()).unwrap_or(0) & ((1 << 48) - 1)
}

/// `prefix` followed by a time-ordered random id.
pub(crate) fn generate(prefix: &str) -> String {
    encode(prefix, now_ms(), rand::random::<u128>() & RANDOM_MASK)
}

/// Ids that also sort in the order they were made within one millisecond (the store's own
/// rows: feedback and audit events listed by time keep the order they were written in), as
/// ULID's monotonic generator does. One per store handle, shared by its clones.
#[derive(Debug, Default)]
pub(crate) struct IdGenerator {
    last: std::sync::Mutex<(u128, u128)>,
}

impl IdGenerator {
    pub(crate) fn next(&self, prefix: &str) -> String {
        let now = now_ms();
        // A poisoned lock only means another thread panicked mid-update of two integers; the
        // values are still usable.
        let mut last = self.last.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if now > last.0 {
            *last = (now, rand::random::<u128>() & RANDOM_MASK);
        } else if last.1 == RANDOM_MASK {
            *last = (last.0 + 1, 0);
        } else {
            last.1 += 1;
        }
        encode(prefix, last.0, last.1)
    }
}

fn encode(prefix: &str, ms: u128, random: u128) -> String {
    let mut value = (ms << RANDOM_BITS) | random;
    let mut chars = [0u8; 26];
    for c in chars.iter_mut().rev() {
        *c = CROCKFORD[(value & 31) as usize];
        value >>= 5;
    }
    let mut id = String::with_capacity(prefix.len() + 26);
    id.push_str(prefix);
    id.extend(chars.iter().map(|&b| b as char));
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_valid_distinct_and_sort_by_time() {
        let a = RunId::generate();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = RunId::generate();
        assert!(a.as_str().starts_with("run_") && a.as_str().len() == 30, "{a}");
        assert!(a < b, "{a} !< {b}");
        assert!(RunId::parse(a.as_str()).is_ok());
        let many: std::collections::HashSet<String> = (0..1000).map(|_| generate("fb_")).collect();
        assert_eq!(many.len(), 1000);
    }

    #[test]
    fn the_store_generator_makes_increasing_ids_within_a_millisecond() {
        let ids = IdGenerator::default();
        let made: Vec<String> = (0..500).map(|_| ids.next("ev_")).collect();
        assert!(made.windows(2).all(|w| w[0] < w[1]), "not increasing");
    }

    #[test]
    fn ids_with_spaces_slashes_or_wrong_lengths_are_refused() {
        for bad in ["", "a b", "a/b", "é", "x'; DROP TABLE runs; --", &"x".repeat(129)] {
            assert!(matches!(RunId::parse(bad), Err(StoreError::InvalidId { what: "run id", .. })), "{bad:?}");
        }
        assert!(FeedbackId::parse("client-42:retry.1_A").is_ok());
    }
}
