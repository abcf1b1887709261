//! API keys and login. A login carries the key, a timestamp (ms since the Unix epoch), a nonce and
//! `sig = hex(HMAC-SHA256(secret, "{key}{ts}{nonce}"))`. Refused: an unknown, revoked or expired
//! key, an address outside the key's allowlist, a timestamp outside the window, a nonce not
//! greater than the last one accepted for that key, a wrong signature — and, after too many of
//! those from one address or for one key, every attempt for a while, unchecked (throttling, with
//! an alert). Comparisons of secrets are constant-time; secrets are never logged or echoed.
//!
//! A FIX Logon signs with the same HMAC: `hex(HMAC-SHA256(secret, prehash))` in RawData(96), the
//! prehash being the Logon's own header fields ([`fix_logon_prehash`]); the FIX session checks its
//! SendingTime against the same window ([`Keys::window_ms`]).
//!
//! Keys come from the configuration file and from operators at run time (`create_key`); both can
//! be rotated and revoked. Every change is journaled (`engine::audit`) and kept, secrets sealed,
//! in `DATA/keys.json` ([`crate::keystore`]).

use std::collections::{BTreeMap, VecDeque};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use engine::audit::{permission, KeyChange, KeyGrant, KeyId, KeyLabel};
use hmac::{Hmac, Mac};
use parking_lot::Mutex;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::{KeyConfig, Permission, Role, SecuritySettings, ServeConfig};
use crate::keystore::{self, ConfigKeyState, MasterKey, StoreFile, StoredKey};

type HmacSha256 = Hmac<Sha256>;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    pub key: String,
    /// The key's number: the operator id in journaled operator actions.
    pub id: KeyId,
    pub account: u32,
    pub role: Role,
    /// Bits of [`engine::audit::permission`].
    pub permissions: u8,
    /// How many times the key's secret had been rotated when this principal logged in: a
    /// session of an older secret is refused (see [`Keys::refusal`]).
    pub rotations: u32,
}

impl Principal {
    pub fn may(&self, permission: Permission) -> bool {
        self.permissions & permission.bit() != 0
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoginError {
    UnknownKey,
    StaleTimestamp,
    ReusedNonce,
    BadSignature,
    KeyRevoked,
    KeyExpired,
    AddressNotAllowed,
    /// Too many failures from this address or for this key; retry after this many ms.
    Throttled(u64),
}

impl LoginError {
    pub fn code(self) -> &'static str {
        match self {
            LoginError::UnknownKey => "unknown_key",
            LoginError::StaleTimestamp => "stale_timestamp",
            LoginError::ReusedNonce => "reused_nonce",
            LoginError::BadSignature => "bad_signature",
            LoginError::KeyRevoked => "key_revoked",
            LoginError::KeyExpired => "key_expired",
            LoginError::AddressNotAllowed => "address_not_allowed",
            LoginError::Throttled(_) => "too_many_failures",
        }
    }

    pub fn message(self) -> String {
        match self {
            LoginError::UnknownKey => "no such API key".into(),
            LoginError::StaleTimestamp => {
                "timestamp outside the accepted window (or before the server started); check the clock and sign again".into()
            }
            LoginError::ReusedNonce => {
                "nonce must be greater than the last one used with this key".into()
            }
            LoginError::BadSignature => "signature does not match".into(),
            LoginError::KeyRevoked => "this API key was revoked".into(),
            LoginError::KeyExpired => "this API key has expired".into(),
            LoginError::AddressNotAllowed => {
                "this API key may not be used from this address (IP allowlist)".into()
            }
            LoginError::Throttled(ms) => format!(
                "too many failed logins from this address or for this key; retry in {} s",
                ms.div_ceil(1_000)
            ),
        }
    }
}

/// One entry of a key's IP allowlist: an address, or a CIDR range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpRule {
    network: IpAddr,
    prefix: u8,
}

impl IpRule {
    pub fn parse(text: &str) -> Result<IpRule, String> {
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let network: IpAddr = address
            .trim()
            .parse()
            .map_err(|_| format!("{text:?} is not an IP address or CIDR range"))?;
        let bits = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= bits)
                .ok_or_else(|| format!("{text:?}: the prefix must be 0 to {bits}"))?,
            None => bits,
        };
        Ok(IpRule { network, prefix })
    }

    pub fn contains(&self, address: IpAddr) -> bool {
        let address = match address {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
            v4 => v4,
        };
        match (self.network, address) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Origin {
    Config,
    Created,
}

struct Entry {
    id: KeyId,
    account: u32,
    role: Role,
    permissions: u8,
    allow: Vec<IpRule>,
    allow_text: Vec<String>,
    expires_ms: Option<u64>,
    revoked: bool,
    secret: String,
    nonce_last: Option<u64>,
    origin: Origin,
    created_ms: u64,
    /// Its sessions were cut when it expired (done once).
    expiry_cut: bool,
    /// Rotations of its secret since the server started (see [`Principal::rotations`]).
    rotations: u32,
}

impl Entry {
    fn principal(&self, key: &str) -> Principal {
        Principal {
            key: key.to_string(),
            id: self.id,
            account: self.account,
            role: self.role,
            permissions: self.permissions,
            rotations: self.rotations,
        }
    }

    fn grant(&self) -> KeyGrant {
        KeyGrant {
            account: self.account,
            role: self.role.key_role(),
            permissions: self.permissions,
            expires_ms: self.expires_ms.unwrap_or(0),
            ip_rules: self.allow.len().min(255) as u8,
        }
    }

    fn status(&self, now_ms: u64) -> &'static str {
        if self.revoked {
            "revoked"
        } else if self.expires_ms.is_some_and(|at| now_ms >= at) {
            "expired"
        } else {
            "active"
        }
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct Failures {
    since_ms: u64,
    count: u32,
    blocked_until_ms: u64,
}

/// A security alert an operator can see (`security_status`) and the log shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecurityAlert {
    pub at_ms: u64,
    /// `address 203.0.113.9` or `key demo-alice`.
    pub subject: String,
    pub failures: u32,
    pub blocked_until_ms: u64,
}

const ALERTS_KEPT: usize = 256;
/// Addresses tracked for failures; past this, the oldest quiet ones are forgotten.
const ADDRESSES_TRACKED_MAX: usize = 65_536;

#[derive(Default)]
struct Inner {
    keys: BTreeMap<String, Entry>,
    by_address: BTreeMap<IpAddr, Failures>,
    by_key: BTreeMap<String, Failures>,
    alerts: VecDeque<SecurityAlert>,
    store: StoreFile,
}

/// Where keys are kept between runs: the store file and the master key that seals it.
struct Persistence {
    path: PathBuf,
    master: MasterKey,
}

pub struct Keys {
    inner: Mutex<Inner>,
    window_ms: u64,
    /// When this process started (ms): nonces are remembered in memory only, so a signature
    /// made before the start is refused — a request overheard before a restart cannot be played
    /// again after it, within its window.
    started_ms: u64,
    security: SecuritySettings,
    persistence: Option<Persistence>,
    pub failures_total: AtomicU64,
    pub throttled_total: AtomicU64,
}

/// What an operator asks for when creating a key.
#[derive(Clone, Debug)]
pub struct NewKey {
    pub name: Option<String>,
    pub account: u32,
    pub role: Role,
    pub permissions: u8,
    pub allow_ips: Vec<String>,
    pub expires_ms: Option<u64>,
}

/// A key change made but not yet journaled: [`Keys::commit`] applies it once it is. Its
/// `Debug` leaves the secret out: a change may end up in a log line.
#[derive(Clone)]
pub struct Pending {
    pub name: String,
    pub change: KeyChange,
    /// The new secret (creation and rotation), to be shown once.
    pub secret: Option<String>,
    stored: Option<StoredKey>,
    sealed: Option<String>,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending")
            .field("name", &self.name)
            .field("change", &self.change)
            .field("secret", &self.secret.as_ref().map(|_| "***"))
            .finish_non_exhaustive()
    }
}

impl Keys {
    /// The configuration's keys only, in memory (no store, nothing persisted): unit tests.
    pub fn new(config: &ServeConfig) -> Keys {
        let mut inner = Inner::default();
        for (i, key) in config.keys.iter().enumerate() {
            let entry = config_entry(config, key, i as KeyId, key.secret.clone());
            inner.keys.insert(key.key.clone(), entry);
        }
        Keys::with(config, inner, None)
    }

    /// The configuration's keys and those of `DATA/keys.json`, secrets unsealed with the master
    /// key. Returns the configuration keys whose grant the journal does not hold yet: the caller
    /// journals a [`KeyChange::Registered`] for each and then calls [`Keys::commit`].
    pub fn open(config: &ServeConfig) -> Result<(Keys, Vec<Pending>), String> {
        let master = MasterKey::load(config)?;
        let path = keystore::store_path(&config.server.data);
        let mut store = keystore::read_store(&path)?;
        let mut inner = Inner::default();
        let mut registrations = Vec::new();
        for key in &config.keys {
            let state = match store.config.get(&key.key) {
                Some(state) => state.clone(),
                None => {
                    let state = ConfigKeyState {
                        id: store.next_config_id,
                        ..ConfigKeyState::default()
                    };
                    store.next_config_id += 1;
                    store.config.insert(key.key.clone(), state.clone());
                    state
                }
            };
            let secret = match &state.sealed {
                Some(sealed) => master.unseal(&key.key, sealed)?,
                None => key.secret.clone(),
            };
            let mut entry = config_entry(config, key, state.id, secret);
            entry.revoked = state.revoked;
            let grant = entry.grant();
            if state.registered != Some(grant) {
                registrations.push(Pending {
                    name: key.key.clone(),
                    change: KeyChange::Registered {
                        key: state.id,
                        label: KeyLabel::new(&key.key).expect("validated"),
                        grant,
                    },
                    secret: None,
                    stored: None,
                    sealed: None,
                });
            }
            inner.keys.insert(key.key.clone(), entry);
        }
        for stored in &store.keys {
            if inner.keys.contains_key(&stored.key) {
                return Err(format!(
                    "key {} is both in the configuration and in {}",
                    stored.key,
                    path.display()
                ));
            }
            let secret = master.unseal(&stored.key, &stored.sealed)?;
            inner
                .keys
                .insert(stored.key.clone(), stored_entry(stored, secret)?);
        }
        inner.store = store;
        let keys = Keys::with(config, inner, Some(Persistence { path, master }));
        keys.save()?;
        Ok((keys, registrations))
    }

    fn with(config: &ServeConfig, inner: Inner, persistence: Option<Persistence>) -> Keys {
        Keys {
            inner: Mutex::new(inner),
            window_ms: config.limits.login_window_secs * 1_000,
            started_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            security: config.security.clone(),
            persistence,
            failures_total: AtomicU64::new(0),
            throttled_total: AtomicU64::new(0),
        }
    }

    fn save(&self) -> Result<(), String> {
        let Some(persistence) = &self.persistence else {
            return Ok(());
        };
        let store = self.inner.lock().store.clone();
        keystore::write_store(&persistence.path, &store)
    }

    /// How far a login's timestamp may be from the server's clock.
    pub fn window_ms(&self) -> u64 {
        self.window_ms
    }

    /// Signatures made before this moment (ms) are refused (see the field).
    pub fn started_ms(&self) -> u64 {
        self.started_ms
    }

    /// Checks a login at `now_ms` from `peer`; on success the nonce is consumed.
    pub fn login(
        &self,
        key: &str,
        ts_ms: u64,
        nonce: u64,
        sig_hex: &str,
        now_ms: u64,
        peer: IpAddr,
    ) -> Result<Principal, LoginError> {
        let (window_ms, started_ms) = (self.window_ms, self.started_ms);
        self.authenticate(key, peer, now_ms, |entry| {
            if ts_ms.abs_diff(now_ms) > window_ms || ts_ms < started_ms {
                return Err(LoginError::StaleTimestamp);
            }
            verify(
                &entry.secret,
                login_message(key, ts_ms, nonce).as_bytes(),
                sig_hex,
            )?;
            if entry.nonce_last.is_some_and(|last| nonce <= last) {
                return Err(LoginError::ReusedNonce);
            }
            entry.nonce_last = Some(nonce);
            Ok(())
        })
    }

    /// A FIX signature logon: `sig_hex` must be `hex(HMAC-SHA256(secret, message))` with `key`'s
    /// secret. The caller checks the timestamp inside `message` and that it is not a replay.
    pub fn check_signature(
        &self,
        key: &str,
        message: &[u8],
        sig_hex: &str,
        now_ms: u64,
        peer: IpAddr,
    ) -> Result<Principal, LoginError> {
        self.authenticate(key, peer, now_ms, |entry| {
            verify(&entry.secret, message, sig_hex)
        })
    }

    /// FIX Logon: the key's secret sent as Password(554). Compared in constant time (digests of
    /// equal length, every byte looked at) so that the timing tells nothing about the secret.
    pub fn check_password(
        &self,
        key: &str,
        password: &str,
        now_ms: u64,
        peer: IpAddr,
    ) -> Result<Principal, LoginError> {
        self.authenticate(key, peer, now_ms, |entry| {
            if secrets_equal(&entry.secret, password) {
                Ok(())
            } else {
                Err(LoginError::BadSignature)
            }
        })
    }

    /// The checks every login shares, around the credential check `check`.
    fn authenticate(
        &self,
        key: &str,
        peer: IpAddr,
        now_ms: u64,
        check: impl FnOnce(&mut Entry) -> Result<(), LoginError>,
    ) -> Result<Principal, LoginError> {
        let mut inner = self.inner.lock();
        let blocked = [
            inner.by_address.get(&peer).copied(),
            inner.by_key.get(key).copied(),
        ]
        .into_iter()
        .flatten()
        .map(|f| f.blocked_until_ms)
        .max()
        .filter(|until| *until > now_ms);
        if let Some(until) = blocked {
            self.throttled_total.fetch_add(1, Ordering::Relaxed);
            return Err(LoginError::Throttled(until - now_ms));
        }
        let outcome = match inner.keys.get_mut(key) {
            None => Err(LoginError::UnknownKey),
            Some(entry) if entry.revoked => Err(LoginError::KeyRevoked),
            Some(entry) if entry.expires_ms.is_some_and(|at| now_ms >= at) => {
                Err(LoginError::KeyExpired)
            }
            Some(entry)
                if !entry.allow.is_empty() && !entry.allow.iter().any(|r| r.contains(peer)) =>
            {
                Err(LoginError::AddressNotAllowed)
            }
            Some(entry) => check(entry).map(|()| entry.principal(key)),
        };
        match &outcome {
            Ok(_) => {
                inner.by_address.remove(&peer);
                inner.by_key.remove(key);
            }
            Err(error) => {
                self.failures_total.fetch_add(1, Ordering::Relaxed);
                tracing::info!(
                    "login refused for key {key:?} from {peer}: {}",
                    error.code()
                );
                let known = inner.keys.contains_key(key);
                self.fail(&mut inner, Subject::Address(peer), now_ms);
                if known {
                    self.fail(&mut inner, Subject::Key(key.to_string()), now_ms);
                }
            }
        }
        outcome
    }

    fn fail(&self, inner: &mut Inner, subject: Subject, now_ms: u64) {
        let settings = &self.security;
        let window_ms = settings.auth_failure_window_secs * 1_000;
        if inner.by_address.len() >= ADDRESSES_TRACKED_MAX {
            inner
                .by_address
                .retain(|_, f| f.blocked_until_ms > now_ms || now_ms - f.since_ms < window_ms);
        }
        let failures = match &subject {
            Subject::Address(address) => inner.by_address.entry(*address).or_default(),
            Subject::Key(key) => inner.by_key.entry(key.clone()).or_default(),
        };
        if now_ms.saturating_sub(failures.since_ms) > window_ms {
            *failures = Failures {
                since_ms: now_ms,
                ..Failures::default()
            };
        }
        failures.count += 1;
        if failures.count >= settings.auth_failures_max {
            failures.blocked_until_ms = now_ms + settings.auth_block_secs * 1_000;
            let alert = SecurityAlert {
                at_ms: now_ms,
                subject: subject.to_string(),
                failures: failures.count,
                blocked_until_ms: failures.blocked_until_ms,
            };
            *failures = Failures {
                since_ms: now_ms,
                count: 0,
                blocked_until_ms: alert.blocked_until_ms,
            };
            tracing::warn!(
                "ALERT: {} failed logins for {} within {} s; further attempts refused for {} s",
                alert.failures,
                alert.subject,
                settings.auth_failure_window_secs,
                settings.auth_block_secs
            );
            if inner.alerts.len() == ALERTS_KEPT {
                inner.alerts.pop_front();
            }
            inner.alerts.push_back(alert);
        }
    }

    /// The account, role and permissions of a key, whatever its state.
    pub fn principal(&self, key: &str) -> Option<Principal> {
        let inner = self.inner.lock();
        inner.keys.get(key).map(|entry| entry.principal(key))
    }

    /// Whether `key` may be used now (exists, not revoked, not expired).
    pub fn is_live(&self, key: &str, now_ms: u64) -> bool {
        let inner = self.inner.lock();
        inner
            .keys
            .get(key)
            .is_some_and(|e| e.status(now_ms) == "active")
    }

    /// Whether `secret` is the secret in force for `key` (compared in constant time): false once
    /// the key was rotated or revoked.
    pub fn secret_in_force(&self, key: &str, secret: &str) -> bool {
        let inner = self.inner.lock();
        inner
            .keys
            .get(key)
            .is_some_and(|e| !e.revoked && secrets_equal(&e.secret, secret))
    }

    /// Why a session logged in as `principal` may no longer act, checked on every request: the
    /// key was revoked, expired or rotated since the login. The hub closes such sessions too,
    /// but a request already on its way must not slip in before the close arrives.
    pub fn refusal(&self, principal: &Principal, now_ms: u64) -> Option<&'static str> {
        let inner = self.inner.lock();
        let Some(entry) = inner.keys.get(&principal.key) else {
            return Some("key_revoked");
        };
        match entry.status(now_ms) {
            "revoked" => Some("key_revoked"),
            "expired" => Some("key_expired"),
            _ if entry.rotations != principal.rotations => Some("key_rotated"),
            _ => None,
        }
    }

    /// Keys that expired since the last call: their open sessions are to be closed.
    pub fn newly_expired(&self, now_ms: u64) -> Vec<String> {
        let mut inner = self.inner.lock();
        inner
            .keys
            .iter_mut()
            .filter(|(_, e)| !e.expiry_cut && e.expires_ms.is_some_and(|at| now_ms >= at))
            .map(|(name, e)| {
                e.expiry_cut = true;
                name.clone()
            })
            .collect()
    }

    /// A new key, its number allocated and its secret made and sealed; nothing is usable until
    /// [`Keys::commit`], after the journal holds the change.
    pub fn create(&self, new: NewKey, now_ms: u64) -> Result<Pending, String> {
        let persistence = self
            .persistence
            .as_ref()
            .ok_or("this server keeps no key store")?;
        let mut rules = Vec::new();
        for rule in &new.allow_ips {
            rules.push(IpRule::parse(rule)?);
        }
        if rules.len() > 64 {
            return Err("at most 64 allow_ips entries".into());
        }
        if new.permissions & !permission::ALL != 0 || new.permissions == 0 {
            return Err("a key needs at least one of read, trade, withdraw".into());
        }
        if new.expires_ms.is_some_and(|at| at <= now_ms) {
            return Err("expires_at is in the past".into());
        }
        let mut inner = self.inner.lock();
        let name = match new.name {
            Some(name) => name,
            None => {
                let mut bytes = [0u8; 8];
                keystore::random(&mut bytes)?;
                format!("k-{}", keystore::hex(&bytes))
            }
        };
        let label = KeyLabel::new(&name)
            .ok_or("a key name is 1 to 32 printable ASCII characters without spaces".to_string())?;
        if inner.keys.contains_key(&name) {
            return Err(format!("a key named {name} exists"));
        }
        let secret = new_secret()?;
        let id = inner.store.next_id;
        inner.store.next_id += 1;
        let stored = StoredKey {
            id,
            key: name.clone(),
            account: new.account,
            role: new.role,
            permissions: Permission::ALL
                .into_iter()
                .filter(|p| new.permissions & p.bit() != 0)
                .collect(),
            allow_ips: new.allow_ips,
            expires_ms: new.expires_ms,
            revoked: false,
            created_ms: now_ms,
            sealed: persistence.master.seal(&name, &secret)?,
        };
        let grant = stored_entry(&stored, String::new())?.grant();
        Ok(Pending {
            name,
            change: KeyChange::Created {
                key: id,
                label,
                grant,
            },
            secret: Some(secret),
            stored: Some(stored),
            sealed: None,
        })
    }

    /// A new secret for `name`, applied by [`Keys::commit`].
    pub fn rotate(&self, name: &str) -> Result<Pending, String> {
        let persistence = self
            .persistence
            .as_ref()
            .ok_or("this server keeps no key store")?;
        let inner = self.inner.lock();
        let entry = inner
            .keys
            .get(name)
            .ok_or_else(|| format!("no key named {name}"))?;
        if entry.revoked {
            return Err(format!("key {name} is revoked"));
        }
        let secret = new_secret()?;
        Ok(Pending {
            name: name.to_string(),
            change: KeyChange::Rotated { key: entry.id },
            sealed: Some(persistence.master.seal(name, &secret)?),
            secret: Some(secret),
            stored: None,
        })
    }

    /// Revokes `name` at once (before its journal record: the safe order) and keeps it revoked
    /// across restarts. The caller closes the key's open sessions and journals the change.
    pub fn revoke(&self, name: &str) -> Result<Pending, String> {
        let mut inner = self.inner.lock();
        let entry = inner
            .keys
            .get_mut(name)
            .ok_or_else(|| format!("no key named {name}"))?;
        if entry.revoked {
            return Err(format!("key {name} is already revoked"));
        }
        entry.revoked = true;
        let (id, origin) = (entry.id, entry.origin);
        match origin {
            Origin::Config => {
                if let Some(state) = inner.store.config.get_mut(name) {
                    state.revoked = true;
                }
            }
            Origin::Created => {
                if let Some(stored) = inner.store.keys.iter_mut().find(|k| k.key == name) {
                    stored.revoked = true;
                }
            }
        }
        drop(inner);
        self.save()?;
        Ok(Pending {
            name: name.to_string(),
            change: KeyChange::Revoked { key: id },
            secret: None,
            stored: None,
            sealed: None,
        })
    }

    /// Applies a change the journal now holds, and writes the store.
    pub fn commit(&self, pending: &Pending, now_ms: u64) -> Result<(), String> {
        let mut inner = self.inner.lock();
        match pending.change {
            KeyChange::Registered { grant, .. } => {
                if let Some(state) = inner.store.config.get_mut(&pending.name) {
                    state.registered = Some(grant);
                }
            }
            KeyChange::Created { .. } => {
                let stored = pending.stored.clone().expect("a creation carries its key");
                let secret = pending.secret.clone().expect("and its secret");
                let mut entry = stored_entry(&stored, secret)?;
                entry.created_ms = now_ms;
                inner.keys.insert(stored.key.clone(), entry);
                inner.store.keys.push(stored);
            }
            KeyChange::Rotated { .. } => {
                let sealed = pending.sealed.clone().expect("a rotation carries its seal");
                let secret = pending.secret.clone().expect("and its secret");
                let name = &pending.name;
                let Some(entry) = inner.keys.get_mut(name) else {
                    return Err(format!("no key named {name}"));
                };
                entry.secret = secret;
                entry.nonce_last = None;
                entry.rotations += 1;
                match entry.origin {
                    Origin::Config => {
                        if let Some(state) = inner.store.config.get_mut(name) {
                            state.sealed = Some(sealed);
                        }
                    }
                    Origin::Created => {
                        if let Some(stored) = inner.store.keys.iter_mut().find(|k| &k.key == name) {
                            stored.sealed = sealed;
                        }
                    }
                }
            }
            KeyChange::Revoked { .. } => {}
        }
        drop(inner);
        self.save()
    }

    /// Every key, without secrets, by name.
    pub fn list(&self, now_ms: u64) -> Vec<Value> {
        let inner = self.inner.lock();
        inner
            .keys
            .iter()
            .map(|(name, e)| {
                json!({
                    "key": name, "id": e.id, "account": e.account, "role": e.role.name(),
                    "permissions": Permission::names(e.permissions), "allow_ips": e.allow_text,
                    "expires_ms": e.expires_ms, "status": e.status(now_ms),
                    "origin": match e.origin { Origin::Config => "config", Origin::Created => "created" },
                    "created_ms": (e.origin == Origin::Created).then_some(e.created_ms),
                })
            })
            .collect()
    }

    /// Failed logins being counted, who is throttled, and the alerts raised.
    pub fn security_status(&self, now_ms: u64) -> Value {
        let inner = self.inner.lock();
        let failing = |subject: String, f: &Failures| {
            json!({
                "subject": subject, "failures": f.count,
                "blocked_for_ms": f.blocked_until_ms.saturating_sub(now_ms),
            })
        };
        let mut entries: Vec<Value> = inner
            .by_address
            .iter()
            .map(|(a, f)| failing(Subject::Address(*a).to_string(), f))
            .collect();
        entries.extend(
            inner
                .by_key
                .iter()
                .map(|(k, f)| failing(Subject::Key(k.clone()).to_string(), f)),
        );
        let alerts: Vec<Value> = inner
            .alerts
            .iter()
            .map(|a| {
                json!({
                    "at_ms": a.at_ms, "subject": a.subject, "failures": a.failures,
                    "blocked_until_ms": a.blocked_until_ms,
                })
            })
            .collect();
        json!({
            "failures_total": self.failures_total.load(Ordering::Relaxed),
            "throttled_total": self.throttled_total.load(Ordering::Relaxed),
            "failing": entries,
            "alerts": alerts,
            "policy": {
                "failures_max": self.security.auth_failures_max,
                "window_secs": self.security.auth_failure_window_secs,
                "block_secs": self.security.auth_block_secs,
            },
        })
    }
}

enum Subject {
    Address(IpAddr),
    Key(String),
}

impl std::fmt::Display for Subject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Subject::Address(a) => write!(f, "address {a}"),
            Subject::Key(k) => write!(f, "key {k}"),
        }
    }
}

fn config_entry(config: &ServeConfig, key: &KeyConfig, id: KeyId, secret: String) -> Entry {
    Entry {
        id,
        account: config.account_id(&key.account).expect("validated"),
        role: key.role,
        permissions: key.permission_bits(),
        allow: key
            .allow_ips
            .iter()
            .map(|r| IpRule::parse(r).expect("validated"))
            .collect(),
        allow_text: key.allow_ips.clone(),
        expires_ms: key.expires_ms().expect("validated"),
        revoked: false,
        secret,
        nonce_last: None,
        origin: Origin::Config,
        created_ms: 0,
        expiry_cut: false,
        rotations: 0,
    }
}

fn stored_entry(stored: &StoredKey, secret: String) -> Result<Entry, String> {
    let allow = stored
        .allow_ips
        .iter()
        .map(|r| IpRule::parse(r))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("key {}: {e}", stored.key))?;
    Ok(Entry {
        id: stored.id,
        account: stored.account,
        role: stored.role,
        permissions: stored.permissions.iter().fold(0, |b, p| b | p.bit()),
        allow,
        allow_text: stored.allow_ips.clone(),
        expires_ms: stored.expires_ms,
        revoked: stored.revoked,
        secret,
        nonce_last: None,
        origin: Origin::Created,
        created_ms: stored.created_ms,
        expiry_cut: false,
        rotations: 0,
    })
}

/// 32 random bytes in hex.
fn new_secret() -> Result<String, String> {
    let mut bytes = [0u8; 32];
    keystore::random(&mut bytes)?;
    Ok(keystore::hex(&bytes))
}

/// Compares two secrets in constant time: their SHA-256 digests (equal length whatever the
/// inputs) with `subtle`, so neither a common prefix nor the length shows in the timing.
pub fn secrets_equal(a: &str, b: &str) -> bool {
    let (a, b) = (Sha256::digest(a.as_bytes()), Sha256::digest(b.as_bytes()));
    bool::from(a.as_slice().ct_eq(b.as_slice()))
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

/// Checks `sig_hex` against `hex(HMAC-SHA256(secret, message))`, in constant time
/// (`Mac::verify_slice`).
fn verify(secret: &str, message: &[u8], sig_hex: &str) -> Result<(), LoginError> {
    if sig_hex.len() > 128 {
        return Err(LoginError::BadSignature);
    }
    let signature = keystore::unhex(sig_hex).ok_or(LoginError::BadSignature)?;
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
    keystore::hex(&mac.finalize().into_bytes())
}

/// What a private HTTP request signs: `{ts}{nonce}{METHOD}{path}{body}`.
pub fn http_message(ts_ms: u64, nonce: u64, method: &str, path: &str, body: &str) -> String {
    format!("{ts_ms}{nonce}{method}{path}{body}")
}

impl Keys {
    /// A private HTTP request: the same checks as a WebSocket login, over
    /// [`http_message`] (nonces shared with the key's logins).
    #[allow(clippy::too_many_arguments)]
    pub fn check_http(
        &self,
        key: &str,
        ts_ms: u64,
        nonce: u64,
        signed: &str,
        sig_hex: &str,
        now_ms: u64,
        peer: IpAddr,
    ) -> Result<Principal, LoginError> {
        let (window_ms, started_ms) = (self.window_ms, self.started_ms);
        self.authenticate(key, peer, now_ms, |entry| {
            if ts_ms.abs_diff(now_ms) > window_ms || ts_ms < started_ms {
                return Err(LoginError::StaleTimestamp);
            }
            verify(&entry.secret, signed.as_bytes(), sig_hex)?;
            if entry.nonce_last.is_some_and(|last| nonce <= last) {
                return Err(LoginError::ReusedNonce);
            }
            entry.nonce_last = Some(nonce);
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::default_config;

    const HERE: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[test]
    fn fix_password_is_the_secret() {
        let keys = Keys::new(&default_config());
        let now = 1_800_000_000_000;
        let p = keys
            .check_password("demo-bob", "demo-bob-secret", now, HERE)
            .unwrap();
        assert_eq!((p.account, p.role), (1, Role::Trader));
        assert_eq!(
            keys.check_password("demo-bob", "demo-bob-secreT", now, HERE),
            Err(LoginError::BadSignature)
        );
        assert_eq!(
            keys.check_password("demo-bob", "", now, HERE),
            Err(LoginError::BadSignature)
        );
        assert_eq!(
            keys.check_password("nobody", "x", now, HERE),
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
        let now = 1_800_000_000_000;
        let prehash = fix_logon_prehash("20261123-13:00:34.409", "A", "1", "demo-alice", "KINKO");
        assert_eq!(
            prehash,
            "20261123-13:00:34.409\u{1}A\u{1}1\u{1}demo-alice\u{1}KINKO"
        );
        let sig = sign_message("demo-alice-secret", prehash.as_bytes());
        assert_eq!(sig.len(), 64);
        let check = |key: &str, message: &str, sig: &str| {
            keys.check_signature(key, message.as_bytes(), sig, now, HERE)
        };
        let p = check("demo-alice", &prehash, &sig).unwrap();
        assert_eq!((p.account, p.role), (0, Role::Trader));
        assert!(check("demo-alice", &prehash, &sig.to_uppercase()).is_ok());
        let other = fix_logon_prehash("20261123-13:00:34.409", "A", "2", "demo-alice", "KINKO");
        assert_eq!(
            check("demo-alice", &other, &sig),
            Err(LoginError::BadSignature)
        );
        assert_eq!(
            check("demo-bob", &prehash, &sig),
            Err(LoginError::BadSignature)
        );
        assert_eq!(
            check("demo-alice", &prehash, &sig[..62]),
            Err(LoginError::BadSignature)
        );
        assert_eq!(
            check("demo-alice", &prehash, "é"),
            Err(LoginError::BadSignature)
        );
        assert_eq!(check("nobody", &prehash, &sig), Err(LoginError::UnknownKey));
    }

    #[test]
    fn login_checks_window_nonce_and_signature() {
        let keys = Keys::new(&default_config());
        let now = 1_800_000_000_000;
        let sig = sign("demo-alice-secret", "demo-alice", now, 1);
        let p = keys.login("demo-alice", now, 1, &sig, now, HERE).unwrap();
        assert_eq!((p.account, p.role), (0, Role::Trader));
        assert_eq!(p.permissions, permission::ALL);
        assert_eq!(
            keys.login("demo-alice", now, 1, &sig, now, HERE),
            Err(LoginError::ReusedNonce)
        );
        let sig2 = sign("demo-alice-secret", "demo-alice", now, 2);
        assert_eq!(
            keys.login("demo-alice", now, 2, &sig2, now + 31_000, HERE),
            Err(LoginError::StaleTimestamp)
        );
        let wrong = sign("not-the-secret", "demo-alice", now, 3);
        assert_eq!(
            keys.login("demo-alice", now, 3, &wrong, now, HERE),
            Err(LoginError::BadSignature)
        );
        assert_eq!(
            keys.login("demo-alice", now, 3, "zz", now, HERE),
            Err(LoginError::BadSignature)
        );
        assert_eq!(
            keys.login("nobody", now, 3, &wrong, now, HERE),
            Err(LoginError::UnknownKey)
        );
    }

    #[test]
    fn a_signature_made_before_the_server_started_is_refused() {
        // Nonces live in memory: after a restart, a login overheard just before it would
        // otherwise be accepted again within its window.
        let keys = Keys::new(&default_config());
        let started = keys.started_ms();
        let before = started - 1_000;
        let sig = sign("demo-alice-secret", "demo-alice", before, 1);
        assert_eq!(
            keys.login("demo-alice", before, 1, &sig, started + 10, HERE),
            Err(LoginError::StaleTimestamp)
        );
        let signed = http_message(before, 2, "GET", "/api/v1/account", "");
        let sig = sign_message("demo-alice-secret", signed.as_bytes());
        assert_eq!(
            keys.check_http("demo-alice", before, 2, &signed, &sig, started + 10, HERE),
            Err(LoginError::StaleTimestamp)
        );
        let now = started + 10;
        let sig = sign("demo-alice-secret", "demo-alice", now, 3);
        assert!(keys.login("demo-alice", now, 3, &sig, now, HERE).is_ok());
    }

    #[test]
    fn secrets_are_compared_in_constant_time_over_digests() {
        assert!(secrets_equal("demo-bob-secret", "demo-bob-secret"));
        // A difference in the first byte, the last byte, a prefix, a longer text: all unequal,
        // and all compared as two 32-byte digests with `subtle` (no early exit on a prefix).
        for other in [
            "Xemo-bob-secret",
            "demo-bob-secreX",
            "demo-bob",
            "demo-bob-secret-and-more",
            "",
        ] {
            assert!(!secrets_equal("demo-bob-secret", other), "{other}");
        }
    }

    /// The test above shows that `secrets_equal` answers right; this one that nothing compares a
    /// secret any other way. A source check: `==` or `!=` on a line that names a secret, a
    /// password, a signature, a MAC or a digest, in any file of the gateway that handles them,
    /// fails it (a length compared is no secret, and the file-system error kind no credential).
    #[test]
    fn no_secret_is_compared_with_an_ordinary_equality() {
        let sources = [
            ("auth.rs", include_str!("auth.rs")),
            ("keystore.rs", include_str!("keystore.rs")),
            ("config.rs", include_str!("config.rs")),
            ("session.rs", include_str!("session.rs")),
            ("server.rs", include_str!("server.rs")),
            ("operator.rs", include_str!("operator.rs")),
            ("admin.rs", include_str!("admin.rs")),
            ("fix/session.rs", include_str!("fix/session.rs")),
            ("fix/acceptor.rs", include_str!("fix/acceptor.rs")),
        ];
        let words = [
            "secret",
            "password",
            "signature",
            "sig",
            "mac",
            "digest",
            "sealed",
        ];
        let mut found = Vec::new();
        for (file, text) in sources {
            // The tests of a file compare known values on purpose.
            let code = text.split("#[cfg(test)]").next().unwrap_or(text);
            for (number, line) in code.lines().enumerate() {
                let line = line.split("//").next().unwrap_or("").to_lowercase();
                let compares = line.contains("==") || line.contains("!=");
                let benign = line.contains(".len()") || line.contains("errorkind");
                let names_one = words.iter().any(|w| {
                    line.split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
                        .any(|token| token.split('_').any(|part| part == *w))
                });
                if compares && names_one && !benign {
                    found.push(format!("{file}:{}: {}", number + 1, line.trim()));
                }
            }
        }
        assert!(
            found.is_empty(),
            "secrets compared with == or !=: {found:#?}"
        );
    }

    #[test]
    fn ip_rules_match_addresses_and_ranges() {
        let ip = |t: &str| t.parse::<IpAddr>().unwrap();
        let rule = IpRule::parse("10.1.0.0/16").unwrap();
        assert!(rule.contains(ip("10.1.200.3")));
        assert!(!rule.contains(ip("10.2.0.1")));
        assert!(rule.contains(ip("::ffff:10.1.0.9")), "v4-mapped v6");
        let one = IpRule::parse("127.0.0.1").unwrap();
        assert!(one.contains(ip("127.0.0.1")) && !one.contains(ip("127.0.0.2")));
        assert!(IpRule::parse("0.0.0.0/0")
            .unwrap()
            .contains(ip("203.0.113.9")));
        let v6 = IpRule::parse("2001:db8::/32").unwrap();
        assert!(v6.contains(ip("2001:db8:1::5")) && !v6.contains(ip("2001:db9::1")));
        assert!(!v6.contains(ip("10.1.0.1")));
        for bad in [
            "10.0.0.0/33",
            "nope",
            "10.0.0/8",
            "::1/129",
            "1.2.3.4/x",
            "",
        ] {
            assert!(IpRule::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn allowlist_expiry_and_revocation_refuse_a_correct_signature() {
        let mut config = default_config();
        config.keys[0].allow_ips = vec!["192.0.2.0/24".into()];
        config.keys[1].expires = Some("2027-01-01T00:00:00Z".into());
        let keys = Keys::new(&config);
        let jan_2027 = 1_798_761_600_000;
        let now = jan_2027 - 1_000;
        let login = |key: &str, nonce, now, peer| {
            let sig = sign(&format!("{key}-secret"), key, now, nonce);
            keys.login(key, now, nonce, &sig, now, peer)
        };
        let inside: IpAddr = "192.0.2.7".parse().unwrap();
        assert_eq!(
            login("demo-alice", 1, now, HERE),
            Err(LoginError::AddressNotAllowed)
        );
        assert!(login("demo-alice", 2, now, inside).is_ok());
        assert!(login("demo-bob", 1, now, HERE).is_ok());
        assert_eq!(
            login("demo-bob", 2, jan_2027, HERE),
            Err(LoginError::KeyExpired)
        );
        assert_eq!(keys.newly_expired(jan_2027), vec!["demo-bob".to_string()]);
        assert!(keys.newly_expired(jan_2027 + 1).is_empty(), "once");
        assert!(login("demo-carol", 1, now, HERE).is_ok());
        let pending = keys.revoke("demo-carol").unwrap();
        assert!(matches!(pending.change, KeyChange::Revoked { key: 2 }));
        assert_eq!(
            login("demo-carol", 2, now, HERE),
            Err(LoginError::KeyRevoked)
        );
        assert!(keys.revoke("demo-carol").is_err(), "once");
        assert!(
            keys.rotate("demo-alice").is_err(),
            "no store, no new secret to keep"
        );
    }

    #[test]
    fn repeated_failures_throttle_the_address_and_the_key_and_raise_an_alert() {
        let config = default_config();
        let keys = Keys::new(&config);
        let max = config.security.auth_failures_max;
        let now = 1_800_000_000_000;
        let attacker: IpAddr = "203.0.113.9".parse().unwrap();
        for i in 0..max {
            assert_eq!(
                keys.login("demo-alice", now, u64::from(i), "00", now, attacker),
                Err(LoginError::BadSignature)
            );
        }
        // Now even the right signature is refused, unchecked, from that address and for that key.
        let sig = sign("demo-alice-secret", "demo-alice", now, 100);
        let refused = keys.login("demo-alice", now, 100, &sig, now + 1, attacker);
        assert_eq!(refused, Err(LoginError::Throttled(59_999)));
        assert_eq!(refused.unwrap_err().code(), "too_many_failures");
        let sig = sign("demo-alice-secret", "demo-alice", now, 101);
        assert!(matches!(
            keys.login("demo-alice", now, 101, &sig, now + 1, HERE),
            Err(LoginError::Throttled(_))
        ));
        // Another key from another address is unaffected.
        let sig = sign("demo-bob-secret", "demo-bob", now, 1);
        assert!(keys.login("demo-bob", now, 1, &sig, now, HERE).is_ok());
        let status = keys.security_status(now + 1);
        let subjects: Vec<&str> = status["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["subject"].as_str().unwrap())
            .collect();
        assert_eq!(subjects, ["address 203.0.113.9", "key demo-alice"]);
        assert_eq!(status["failures_total"], json!(max));
        // After the block, the right signature works again.
        let later = now + 61_000;
        let sig = sign("demo-alice-secret", "demo-alice", later, 102);
        assert!(keys
            .login("demo-alice", later, 102, &sig, later, attacker)
            .is_ok());
        // Unknown keys count against the address only (no table of made-up key names).
        for i in 0..max {
            let _ = keys.login(&format!("made-up-{i}"), later, 1, "00", later, attacker);
        }
        assert!(keys.security_status(later)["failing"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| !f["subject"].as_str().unwrap().contains("made-up")));
    }
}
