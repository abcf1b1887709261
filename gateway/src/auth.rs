//! API keys and login. A login carries the key, a timestamp (ms since the Unix epoch), a nonce and
//! `sig = hex(HMAC-SHA256(secret, "{key}{ts}{nonce}"))`. Refused: an unknown key, a timestamp
//! outside the window, a nonce not greater than the last one accepted for that key, a wrong
//! signature. The comparison is constant-time; secrets are never logged or echoed.
//!
//! A FIX Logon signs with the same HMAC: `hex(HMAC-SHA256(secret, prehash))` in RawData(96), the
//! prehash being the Logon's own header fields ([`fix_logon_prehash`]); the FIX session checks its
//! SendingTime against the same window ([`Keys::window_ms`]).

use std::collections::HashMap;

use hmac::{Hmac, Mac};
use parking_lot::Mutex;
use sha2::{Digest, Sha256};

use crate::config::{KeyConfig, Role, ServeConfig};

type HmacSha256 = Hmac<Sha256>;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    pub key: String,
    pub account: u32,
    pub role: Role,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoginError {
    UnknownKey,
    StaleTimestamp,
    ReusedNonce,
    BadSignature,
}

impl LoginError {
    pub fn code(self) -> &'static str {
        match self {
            LoginError::UnknownKey => "unknown_key",
            LoginError::StaleTimestamp => "stale_timestamp",
            LoginError::ReusedNonce => "reused_nonce",
            LoginError::BadSignature => "bad_signature",
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            LoginError::UnknownKey => "no such API key",
            LoginError::StaleTimestamp => "timestamp outside the accepted window; check the clock",
            LoginError::ReusedNonce => "nonce must be greater than the last one used with this key",
            LoginError::BadSignature => "signature does not match",
        }
    }
}

struct Key {
    config: KeyConfig,
    account: u32,
    nonce_last: Option<u64>,
}

pub struct Keys {
    keys: Mutex<HashMap<String, Key>>,
    window_ms: u64,
}

impl Keys {
    pub fn new(config: &ServeConfig) -> Keys {
        let keys = config
            .keys
            .iter()
            .map(|k| {
                let account = config.account_id(&k.account).expect("validated");
                (
                    k.key.clone(),
                    Key {
                        config: k.clone(),
                        account,
                        nonce_last: None,
                    },
                )
            })
            .collect();
        Keys {
            keys: Mutex::new(keys),
            window_ms: config.limits.login_window_secs * 1_000,
        }
    }

    /// Checks a login at `now_ms`; on success the nonce is consumed.
    pub fn login(
        &self,
        key: &str,
        ts_ms: u64,
        nonce: u64,
        sig_hex: &str,
        now_ms: u64,
    ) -> Result<Principal, LoginError> {
        let mut keys = self.keys.lock();
        let entry = keys.get_mut(key).ok_or(LoginError::UnknownKey)?;
        if ts_ms.abs_diff(now_ms) > self.window_ms {
            return Err(LoginError::StaleTimestamp);
        }
        verify(
            &entry.config.secret,
            login_message(key, ts_ms, nonce).as_bytes(),
            sig_hex,
        )?;
        if entry.nonce_last.is_some_and(|last| nonce <= last) {
            return Err(LoginError::ReusedNonce);
        }
        entry.nonce_last = Some(nonce);
        Ok(Principal {
            key: key.to_string(),
            account: entry.account,
            role: entry.config.role,
        })
    }
}

impl Keys {
    /// How far a login's timestamp may be from the server's clock.
    pub fn window_ms(&self) -> u64 {
        self.window_ms
    }

    /// A FIX signature logon: `sig_hex` must be `hex(HMAC-SHA256(secret, message))` with `key`'s
    /// secret. The caller checks the timestamp inside `message` and that it is not a replay.
    pub fn check_signature(
        &self,
        key: &str,
        message: &[u8],
        sig_hex: &str,
    ) -> Result<Principal, LoginError> {
        let keys = self.keys.lock();
        let entry = keys.get(key).ok_or(LoginError::UnknownKey)?;
        verify(&entry.config.secret, message, sig_hex)?;
        Ok(Principal {
            key: key.to_string(),
            account: entry.account,
            role: entry.config.role,
        })
    }

    /// The account and role a key is bound to, without checking anything.
    pub fn principal(&self, key: &str) -> Option<Principal> {
        let keys = self.keys.lock();
        keys.get(key).map(|entry| Principal {
            key: key.to_string(),
            account: entry.account,
            role: entry.config.role,
        })
    }

    /// FIX Logon: the key's secret sent as Password(554). Compared in constant time (digests of
    /// equal length, every byte looked at) so that the timing tells nothing about the secret.
    pub fn check_password(&self, key: &str, password: &str) -> Result<Principal, LoginError> {
        let keys = self.keys.lock();
        let entry = keys.get(key).ok_or(LoginError::UnknownKey)?;
        if !constant_time_eq(
            &Sha256::digest(entry.config.secret.as_bytes()),
            &Sha256::digest(password.as_bytes()),
        ) {
            return Err(LoginError::BadSignature);
        }
        Ok(Principal {
            key: key.to_string(),
            account: entry.account,
            role: entry.config.role,
        })
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    assert_eq!(a.len(), b.len(), "compare digests of one length");
    a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

pub fn login_message(key: &str, ts_ms: u64, nonce: u64) -> String {
    format!("{key}{ts_ms}{nonce}")
}

/// What a FIX signature logon signs: SendingTime(52), MsgType(35), MsgSeqNum(34),
/// SenderCompID(49) and TargetCompID(56), exactly as the Logon carries them, joined with SOH.
pub fn fix_logon_prehash(
    sending_time: &str,
    msg_type: &str,
    msg_seq_num: &str,
    sender_comp_id: &str,
    target_comp_id: &str,
) -> String {
    [
        sending_time,
        msg_type,
        msg_seq_num,
        sender_comp_id,
        target_comp_id,
    ]
    .join("\u{1}")
}

/// Checks `sig_hex` against `hex(HMAC-SHA256(secret, message))`, in constant time.
fn verify(secret: &str, message: &[u8], sig_hex: &str) -> Result<(), LoginError> {
    let signature = decode_hex(sig_hex).ok_or(LoginError::BadSignature)?;
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(message);
    mac.verify_slice(&signature)
        .map_err(|_| LoginError::BadSignature)
}

/// The signature a client computes (used by tests and the example clients).
pub fn sign(secret: &str, key: &str, ts_ms: u64, nonce: u64) -> String {
    sign_message(secret, login_message(key, ts_ms, nonce).as_bytes())
}

/// `hex(HMAC-SHA256(secret, message))`: a WebSocket login's `sig`, a FIX Logon's RawData(96).
pub fn sign_message(secret: &str, message: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(message);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || text.len() > 128 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::default_config;

    #[test]
    fn fix_password_is_the_secret() {
        let keys = Keys::new(&default_config());
        let p = keys.check_password("demo-bob", "demo-bob-secret").unwrap();
        assert_eq!((p.account, p.role), (1, Role::Trader));
        assert_eq!(
            keys.check_password("demo-bob", "demo-bob-secreT"),
            Err(LoginError::BadSignature)
        );
        assert_eq!(
            keys.check_password("demo-bob", ""),
            Err(LoginError::BadSignature)
        );
        assert_eq!(
            keys.check_password("nobody", "x"),
            Err(LoginError::UnknownKey)
        );
        assert_eq!(
            keys.principal("demo-operator").unwrap().role,
            Role::Operator
        );
    }

    #[test]
    fn fix_signature_is_the_hmac_of_the_prehash() {
        let keys = Keys::new(&default_config());
        let prehash = fix_logon_prehash("20261123-13:00:34.409", "A", "1", "demo-alice", "KINKO");
        assert_eq!(
            prehash,
            "20261123-13:00:34.409\u{1}A\u{1}1\u{1}demo-alice\u{1}KINKO"
        );
        let sig = sign_message("demo-alice-secret", prehash.as_bytes());
        assert_eq!(sig.len(), 64);
        let p = keys
            .check_signature("demo-alice", prehash.as_bytes(), &sig)
            .unwrap();
        assert_eq!((p.account, p.role), (0, Role::Trader));
        let upper = sig.to_uppercase();
        assert!(keys
            .check_signature("demo-alice", prehash.as_bytes(), &upper)
            .is_ok());
        let other = fix_logon_prehash("20261123-13:00:34.409", "A", "2", "demo-alice", "KINKO");
        assert_eq!(
            keys.check_signature("demo-alice", other.as_bytes(), &sig),
            Err(LoginError::BadSignature)
        );
        assert_eq!(
            keys.check_signature("demo-bob", prehash.as_bytes(), &sig),
            Err(LoginError::BadSignature)
        );
        assert_eq!(
            keys.check_signature("demo-alice", prehash.as_bytes(), &sig[..62]),
            Err(LoginError::BadSignature)
        );
        assert_eq!(
            keys.check_signature("demo-alice", prehash.as_bytes(), "é"),
            Err(LoginError::BadSignature)
        );
        assert_eq!(
            keys.check_signature("nobody", prehash.as_bytes(), &sig),
            Err(LoginError::UnknownKey)
        );
    }

    #[test]
    fn login_checks_window_nonce_and_signature() {
        let keys = Keys::new(&default_config());
        let now = 1_800_000_000_000;
        let sig = sign("demo-alice-secret", "demo-alice", now, 1);
        let p = keys.login("demo-alice", now, 1, &sig, now).unwrap();
        assert_eq!((p.account, p.role), (0, Role::Trader));
        assert_eq!(
            keys.login("demo-alice", now, 1, &sig, now),
            Err(LoginError::ReusedNonce)
        );
        let sig2 = sign("demo-alice-secret", "demo-alice", now, 2);
        assert_eq!(
            keys.login("demo-alice", now, 2, &sig2, now + 31_000),
            Err(LoginError::StaleTimestamp)
        );
        let wrong = sign("not-the-secret", "demo-alice", now, 3);
        assert_eq!(
            keys.login("demo-alice", now, 3, &wrong, now),
            Err(LoginError::BadSignature)
        );
        assert_eq!(
            keys.login("demo-alice", now, 3, "zz", now),
            Err(LoginError::BadSignature)
        );
        assert_eq!(
            keys.login("nobody", now, 3, &wrong, now),
            Err(LoginError::UnknownKey)
        );
    }
}
