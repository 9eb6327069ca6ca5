//! Who is calling: the API key (`Authorization: Bearer KEY`, compared in constant time), a
//! feedback token (scoped to one run), or nobody on a server without a key (which listens on
//! loopback only; see `ServeOptions::api_key`).

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::error::ApiError;
use super::token::{looks_like_token, TokenKey};
use crate::store::{RunId, Timestamp};

/// The API key, kept as its SHA-256 so that comparing takes the same time whatever the length
/// or content of what is presented.
#[derive(Clone)]
pub struct ApiKey {
    digest: [u8; 32],
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(..)")
    }
}

/// Why a key cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadKey {
    /// Occurs when the key is shorter than 16 characters.
    #[error("the API key is too short: use at least 16 characters")]
    TooShort,
    /// Occurs when the key has spaces or control characters (it travels in a header).
    #[error("the API key has spaces or control characters")]
    Unprintable,
    /// Occurs when the key could be mistaken for a feedback token.
    #[error("the API key must not start with `lft1.` (the prefix of feedback tokens)")]
    TokenPrefix,
}

impl ApiKey {
    /// A key from its text (surrounding whitespace, e.g. a file's last newline, is dropped).
    pub fn new(key: &str) -> Result<ApiKey, BadKey> {
        let key = key.trim();
        if key.len() < 16 {
            return Err(BadKey::TooShort);
        }
        if key.chars().any(|c| c.is_whitespace() || c.is_control() || !c.is_ascii()) {
            return Err(BadKey::Unprintable);
        }
        if looks_like_token(key) {
            return Err(BadKey::TokenPrefix);
        }
        Ok(ApiKey { digest: Sha256::digest(key.as_bytes()).into() })
    }

    /// Whether `presented` is the key, in time independent of where it differs.
    pub fn matches(&self, presented: &str) -> bool {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        digest.ct_eq(&self.digest).into()
    }
}

/// Who a request comes from, once authenticated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    /// The API key holder: everything.
    Key,
    /// Anyone, on a server without a key (loopback only): everything.
    Local,
    /// A browser with a feedback token: feedback on this run, nothing else.
    Token(RunId),
}

/// Authenticates the `Authorization` header value (if any) against `key` and `tokens`.
pub fn authenticate(header: Option<&str>, key: Option<&ApiKey>, tokens: &TokenKey, now: Timestamp) -> Result<Caller, ApiError> {
    let Some(header) = header else {
        return match key {
            Some(_) => Err(ApiError::unauthorized("send the API key as `Authorization: Bearer KEY`")),
            None => Ok(Caller::Local),
        };
    };
    let credential = header
        .strip_prefix("Bearer ")
        .or_else(|| header.strip_prefix("bearer "))
        .map(str::trim)
        .ok_or_else(|| ApiError::unauthorized("the Authorization header must be `Bearer KEY` or `Bearer FEEDBACK_TOKEN`"))?;
    if looks_like_token(credential) {
        return tokens.verify(credential, now).map(Caller::Token).map_err(|e| ApiError::unauthorized(e.to_string()));
    }
    match key {
        Some(k) if k.matches(credential) => Ok(Caller::Key),
        Some(_) => Err(ApiError::unauthorized("the API key is not valid")),
        None => Err(ApiError::unauthorized("this server has no API key: send no Authorization header, or a feedback token")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_match_only_themselves() {
        let k = ApiKey::new("  s3cret-key-0123456789\n").unwrap();
        assert!(k.matches("s3cret-key-0123456789"));
        assert!(!k.matches("s3cret-key-012345678"));
        assert!(!k.matches(""));
        assert_eq!(ApiKey::new("short").unwrap_err(), BadKey::TooShort);
        assert_eq!(ApiKey::new("has a space in the middle").unwrap_err(), BadKey::Unprintable);
        assert_eq!(format!("{k:?}"), "ApiKey(..)");
    }

    #[test]
    fn callers_are_told_apart_by_their_header() {
        let tokens = TokenKey::new(&[3; 32]).unwrap();
        let key = ApiKey::new("the-api-key-0123456789").unwrap();
        let now = Timestamp::from_millis(10);
        let run = RunId::generate();
        let token = tokens.issue(&run, Timestamp::from_millis(1000));
        let auth = |h: Option<&str>, k: Option<&ApiKey>| authenticate(h, k, &tokens, now).map_err(|e| e.status.as_u16());
        assert_eq!(auth(Some("Bearer the-api-key-0123456789"), Some(&key)), Ok(Caller::Key));
        assert_eq!(auth(Some("Bearer wrong-key-000000000000"), Some(&key)), Err(401));
        assert_eq!(auth(None, Some(&key)), Err(401));
        assert_eq!(auth(Some("Basic abc"), Some(&key)), Err(401));
        assert_eq!(auth(Some(&format!("Bearer {token}")), Some(&key)), Ok(Caller::Token(run.clone())));
        assert_eq!(auth(Some(&format!("Bearer {token}")), None), Ok(Caller::Token(run)));
        assert_eq!(auth(None, None), Ok(Caller::Local));
        assert_eq!(auth(Some("Bearer anything-at-all-000000"), None), Err(401));
    }
}
