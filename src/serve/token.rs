//! Feedback tokens: what `POST /v1/run` hands out so a browser can send feedback on that one
//! run, and on nothing else, without the API key (LangSmith's presigned feedback tokens).
//!
//! A token is `lft1.<run id>.<expiry, ms since 1970>.<HMAC-SHA256, hex>`, the MAC taken with the
//! server's token key over everything before it. Tokens are stateless: any replica holding the
//! same key (the store's shared secret, or `--token-secret-file`) checks them.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::store::{RunId, Timestamp};

/// The version prefix of every token this loopc issues.
const PREFIX: &str = "lft1";

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Occurs when the text is not a token's shape (or names no valid run id).
    #[error("the feedback token is malformed")]
    Malformed,
    /// Occurs when the MAC does not match: forged, altered, or signed with another key.
    #[error("the feedback token's signature is not valid")]
    BadSignature,
    /// Occurs when the token's expiry has passed.
    #[error("the feedback token expired at {0}")]
    Expired(Timestamp),
}

/// The key feedback tokens are signed and checked with.
#[derive(Clone)]
pub struct TokenKey {
    key: Vec<u8>,
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key itself.
        f.write_str("TokenKey(..)")
    }
}

/// Why a key cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a token key needs at least {min} bytes, this one has {len}")]
pub struct ShortKey {
    /// The smallest length allowed.
    pub min: usize,
    /// The length given.
    pub len: usize,
}

impl TokenKey {
    /// The shortest key accepted, in bytes.
    pub const MIN_LEN: usize = 32;

    /// A key from secret bytes (at least [`TokenKey::MIN_LEN`]).
    pub fn new(secret: &[u8]) -> Result<TokenKey, ShortKey> {
        if secret.len() < Self::MIN_LEN {
            return Err(ShortKey { min: Self::MIN_LEN, len: secret.len() });
        }
        Ok(TokenKey { key: secret.to_vec() })
    }

    fn mac(&self) -> Hmac<Sha256> {
        // HMAC takes keys of any length; this cannot fail.
        <Hmac<Sha256> as Mac>::new_from_slice(&self.key).unwrap_or_else(|_| unreachable!("HMAC accepts every key length"))
    }

    /// A token for feedback on `run`, valid until `expires`.
    pub fn issue(&self, run: &RunId, expires: Timestamp) -> String {
        let body = format!("{PREFIX}.{run}.{}", expires.millis());
        let mut mac = self.mac();
        mac.update(body.as_bytes());
        let tag = mac.finalize().into_bytes();
        let mut token = body;
        token.push('.');
        for b in tag {
            token.push_str(&format!("{b:02x}"));
        }
        token
    }

    /// The run `token` allows feedback on, if it was issued with this key and has not expired
    /// at `now`. The MAC is compared in constant time.
    pub fn verify(&self, token: &str, now: Timestamp) -> Result<RunId, TokenError> {
        let (body, tag_hex) = token.rsplit_once('.').ok_or(TokenError::Malformed)?;
        let (rest, expiry) = body.rsplit_once('.').ok_or(TokenError::Malformed)?;
        let run = rest.strip_prefix(PREFIX).and_then(|r| r.strip_prefix('.')).ok_or(TokenError::Malformed)?;
        let tag = decode_hex(tag_hex).ok_or(TokenError::Malformed)?;
        let mut mac = self.mac();
        mac.update(body.as_bytes());
        mac.verify_slice(&tag).map_err(|_| TokenError::BadSignature)?;
        // Only a token this key signed gets this far, so its parts are ours.
        let expires = Timestamp::from_millis(expiry.parse().map_err(|_| TokenError::Malformed)?);
        if now > expires {
            return Err(TokenError::Expired(expires));
        }
        RunId::parse(run).map_err(|_| TokenError::Malformed)
    }
}

/// Whether `text` has a token's shape (its version prefix), as opposed to an API key.
pub fn looks_like_token(text: &str) -> bool {
    text.starts_with("lft1.")
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> TokenKey {
        TokenKey::new(&[byte; 32]).unwrap()
    }

    #[test]
    fn a_token_names_its_run_until_it_expires() {
        let run = RunId::generate();
        let t0 = Timestamp::from_millis(1_000_000);
        let token = key(1).issue(&run, t0.plus(std::time::Duration::from_secs(60)));
        assert!(looks_like_token(&token));
        assert_eq!(key(1).verify(&token, t0), Ok(run.clone()));
        assert!(matches!(key(1).verify(&token, t0.plus(std::time::Duration::from_secs(61))), Err(TokenError::Expired(_))));
    }

    #[test]
    fn altered_forged_or_foreign_tokens_are_refused() {
        let run = RunId::generate();
        let now = Timestamp::from_millis(5);
        let token = key(1).issue(&run, Timestamp::from_millis(10_000));
        assert_eq!(key(2).verify(&token, now), Err(TokenError::BadSignature), "another key");
        let other = RunId::generate();
        let swapped = token.replacen(run.as_str(), other.as_str(), 1);
        assert_eq!(key(1).verify(&swapped, now), Err(TokenError::BadSignature), "another run");
        let later = token.replacen(".10000.", ".99999999.", 1);
        assert_eq!(key(1).verify(&later, now), Err(TokenError::BadSignature), "a later expiry");
        for bad in ["", "lft1", "lft1.x.1.zz", "api-key", &token[..token.len() - 2]] {
            assert_eq!(key(1).verify(bad, now), Err(TokenError::Malformed), "{bad:?}");
        }
    }

    #[test]
    fn short_keys_are_refused() {
        assert_eq!(TokenKey::new(b"short").unwrap_err(), ShortKey { min: 32, len: 5 });
        assert_eq!(format!("{:?}", key(7)), "TokenKey(..)");
    }
}
