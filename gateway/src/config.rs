//! The server's configuration: addresses, data folder, durability, the exchange (instruments and
//! assets), demo accounts with their opening deposits, and API keys. `kinko serve` runs on the
//! embedded default when no file is given; `--config FILE` reads the same structure from TOML
//! (see `kinko.example.toml`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use engine::journal::{ChainHashing, Durability};
use engine::ExchangeConfig;
use ledger::Pool;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Trades its own account (customer or house, by the account's pool).
    Trader,
    /// Halts and resumes; cannot trade.
    Operator,
    /// Reads; cannot change anything.
    Auditor,
}

impl Role {
    /// A key's permissions when its configuration names none.
    pub fn permissions_default(self) -> u8 {
        use engine::audit::permission;
        match self {
            Role::Trader => permission::ALL,
            Role::Operator | Role::Auditor => permission::READ,
        }
    }

    pub fn key_role(self) -> engine::audit::KeyRole {
        match self {
            Role::Trader => engine::audit::KeyRole::Trader,
            Role::Operator => engine::audit::KeyRole::Operator,
            Role::Auditor => engine::audit::KeyRole::Auditor,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Role::Trader => "trader",
            Role::Operator => "operator",
            Role::Auditor => "auditor",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountConfig {
    pub name: String,
    pub pool: PoolName,
    /// Opening deposits, by asset code, as decimal strings (credited once, on first start).
    #[serde(default)]
    pub deposits: BTreeMap<String, String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PoolName {
    Customer,
    House,
}

impl PoolName {
    pub fn pool(self) -> Pool {
        match self {
            PoolName::Customer => Pool::Customer,
            PoolName::House => Pool::House,
        }
    }
}

/// A key of the configuration file. Its secret lives in this file, outside the data folder;
/// keys made at run time (`kinko admin keys create`) live sealed in `DATA/keys.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyConfig {
    pub key: String,
    pub secret: String,
    pub account: String,
    pub role: Role,
    /// `read`, `trade`, `withdraw`. Absent: a trader key gets all three, an operator's or an
    /// auditor's `read` (their own actions are allowed by the role).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permissions: Option<Vec<Permission>>,
    /// Addresses or CIDR ranges the key may connect from (`"10.0.0.0/8"`, `"::1"`). Empty: any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_ips: Vec<String>,
    /// When the key stops working, RFC 3339 (`"2027-01-01T00:00:00Z"`). Absent: never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
}

impl KeyConfig {
    /// The permission bits of [`engine::audit::permission`].
    pub fn permission_bits(&self) -> u8 {
        match &self.permissions {
            Some(list) => list.iter().fold(0, |bits, p| bits | p.bit()),
            None => self.role.permissions_default(),
        }
    }

    /// The expiry in milliseconds since the Unix epoch, if any.
    pub fn expires_ms(&self) -> Result<Option<u64>, String> {
        self.expires
            .as_deref()
            .map(|text| parse_time_ms(text).map_err(|e| format!("key {}: expires: {e}", self.key)))
            .transpose()
    }
}

/// Parses an RFC 3339 time or a whole number of milliseconds since the Unix epoch.
pub fn parse_time_ms(text: &str) -> Result<u64, String> {
    if let Ok(ms) = text.parse::<u64>() {
        return Ok(ms);
    }
    let time = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|e| format!("{text:?} is neither RFC 3339 nor milliseconds: {e}"))?;
    u64::try_from(time.unix_timestamp_nanos() / 1_000_000)
        .map_err(|_| format!("{text:?} is before 1970"))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    Read,
    Trade,
    Withdraw,
}

impl Permission {
    pub const ALL: [Permission; 3] = [Permission::Read, Permission::Trade, Permission::Withdraw];

    pub fn bit(self) -> u8 {
        use engine::audit::permission;
        match self {
            Permission::Read => permission::READ,
            Permission::Trade => permission::TRADE,
            Permission::Withdraw => permission::WITHDRAW,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Permission::Read => "read",
            Permission::Trade => "trade",
            Permission::Withdraw => "withdraw",
        }
    }

    pub fn parse(text: &str) -> Option<Permission> {
        Permission::ALL.into_iter().find(|p| p.name() == text)
    }

    /// The names of the bits set in `bits`, in the order read, trade, withdraw.
    pub fn names(bits: u8) -> Vec<&'static str> {
        Permission::ALL
            .into_iter()
            .filter(|p| bits & p.bit() != 0)
            .map(Permission::name)
            .collect()
    }
}

/// Keys at rest and failed logins: see docs/API.md, "Keys and permissions".
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SecuritySettings {
    /// The 32-byte key that seals the secrets of keys made at run time. `KINKO_MASTER_KEY` (64
    /// hex digits) wins when set; otherwise this file, created owner-only at first start.
    /// Absent: `<data folder>.master-key` beside the data folder, never inside it, so that a
    /// copy of the data folder does not carry it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub master_key_file: Option<PathBuf>,
    /// Failed logins from one address, or for one key, within the window, after which further
    /// attempts are refused without being checked for `auth_block_secs` (and an alert raised).
    pub auth_failures_max: u32,
    pub auth_failure_window_secs: u64,
    pub auth_block_secs: u64,
}

impl Default for SecuritySettings {
    fn default() -> SecuritySettings {
        SecuritySettings {
            master_key_file: None,
            auth_failures_max: 5,
            auth_failure_window_secs: 60,
            auth_block_secs: 60,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerSection {
    pub http: SocketAddr,
    pub fix: SocketAddr,
    pub data: PathBuf,
    pub durability: DurabilityName,
    /// How long the engine thread spins (rounds of a spin-loop hint) before it parks when idle.
    /// Short by default: on a small machine a spinning engine takes the core the gateway's
    /// threads need (measured on 2 cores: FIX round trip ~320 µs spinning, ~240 µs parking).
    #[serde(default = "engine_idle_spins_default")]
    pub engine_idle_spins: u32,
    /// How the engine thread and the gateway wait for work: `park` (the default) or `spin`.
    #[serde(default)]
    pub idle: IdleMode,
    /// Who hashes the journal's chain: `inline` (the engine thread, the default) or `thread`
    /// (a thread of its own for batches of 16 KiB or more: more throughput under heavy load
    /// where a core is free, docs/PERFORMANCE.md).
    #[serde(default)]
    pub chain_hashing: ChainHashing,
    /// The size of each journal segment file, in MiB (docs/JOURNAL.md). Segments already written
    /// keep their size; a new value applies to the segments made after the next start.
    #[serde(default = "journal_segment_mib_default")]
    pub journal_segment_mib: u32,
    /// A snapshot of the state every this many commands (and at every clean stop); 0: only at a
    /// clean stop. A restart loads the newest snapshot and replays the journal after it, so this
    /// bounds a restart's replay. A snapshot that cannot be written does not stop trading
    /// (`/health` says so); the next try comes this many commands later.
    #[serde(default = "snapshot_every_commands_default")]
    pub snapshot_every_commands: u64,
    /// TLS on both ports unless the file says `transport = "plaintext"` (issue #11).
    #[serde(default)]
    pub transport: Transport,
}

/// How the server's threads wait for work.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdleMode {
    /// The engine thread spins `engine_idle_spins` rounds, then parks; the hub and the gateway's
    /// runtime sleep until woken. An idle exchange takes no CPU, and every order pays the wake-ups
    /// of the threads it crosses (10–40 µs each on a virtual machine).
    #[default]
    Park,
    /// Nothing sleeps: the engine thread spins on its queue and the gateway runs on one runtime
    /// thread fewer than the machine has cores, polling its sockets and the engine's output
    /// without pause (the hub is a task on it). Two cores busy at all times on a machine of two,
    /// even idle; the lowest latency (docs/PERFORMANCE.md). Needs at least two cores.
    Spin,
}

/// The cores this process may run on.
pub fn machine_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

impl IdleMode {
    /// The gateway runtime's worker threads on a machine of `cores`: all of them when parking,
    /// all but the engine's when spinning.
    pub fn gateway_workers(self, cores: usize) -> usize {
        match self {
            IdleMode::Park => cores.max(1),
            IdleMode::Spin => cores.saturating_sub(1).max(1),
        }
    }
}

/// How the HTTP/WebSocket and FIX ports carry their bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transport {
    /// TLS 1.2 or 1.3 with the certificate of `[tls]`, or one generated at first start.
    #[default]
    Tls,
    /// Plain TCP, NOT ENCRYPTED: API keys and orders cross the network readable by anyone on the
    /// path. For benchmarks and local tests only; the server warns loudly at start.
    Plaintext,
}

/// The server's certificate: both PEM files or neither. With neither, `kinko serve` generates a
/// self-signed certificate for localhost at first start and keeps it in `DATA/tls/`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsSettings {
    /// The certificate chain, leaf first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert: Option<PathBuf>,
    /// The leaf's private key (PKCS#8, PKCS#1 or SEC1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<PathBuf>,
}

fn engine_idle_spins_default() -> u32 {
    100
}

fn snapshot_every_commands_default() -> u64 {
    engine::runtime::EngineOptions::SNAPSHOT_EVERY_COMMANDS_DEFAULT
}

fn journal_segment_mib_default() -> u32 {
    (engine::journal::format::SEGMENT_BYTES_DEFAULT >> 20) as u32
}

/// The largest journal segment the configuration may ask for: each segment is allocated and
/// faulted in whole when it is made, so a segment is that much disk and page cache at once.
pub const JOURNAL_SEGMENT_MIB_MAX: u32 = 1024;

impl ServerSection {
    /// The journal segment size in bytes.
    pub fn journal_segment_bytes(&self) -> usize {
        (self.journal_segment_mib as usize) << 20
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DurabilityName {
    Process,
    Fsync,
}

impl DurabilityName {
    pub fn durability(self) -> Durability {
        match self {
            DurabilityName::Process => Durability::Process,
            DurabilityName::Fsync => Durability::Fsync,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Largest WebSocket message accepted; a larger one closes the connection with 1009.
    pub frame_bytes_max: usize,
    /// Requests per second per connection (token bucket rate) and the bucket's size.
    pub connection_rate_per_sec: u32,
    pub connection_burst: u32,
    /// Requests per second per account, across its connections.
    pub account_rate_per_sec: u32,
    pub account_burst: u32,
    /// Consecutive rate-limit errors after which the connection is closed.
    pub rate_violations_max: u32,
    /// Close a connection that sent nothing (not even a pong) for this long.
    pub idle_timeout_secs: u64,
    /// Messages queued for one connection before it counts as a slow consumer and is closed.
    pub outbound_messages_max: usize,
    /// Login timestamps further than this from the server's clock are refused.
    pub login_window_secs: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            frame_bytes_max: 64 * 1024,
            connection_rate_per_sec: 200,
            connection_burst: 400,
            account_rate_per_sec: 400,
            account_burst: 800,
            rate_violations_max: 100,
            idle_timeout_secs: 60,
            outbound_messages_max: 8_192,
            login_window_secs: 30,
        }
    }
}

/// The FIX acceptor's session settings (docs/API.md, section "FIX 4.4").
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FixSettings {
    /// The acceptor's CompID: clients send it as TargetCompID(56) and receive it as SenderCompID.
    pub comp_id: String,
    /// The HeartBtInt(108) a Logon may ask for.
    pub heartbeat_secs_min: u64,
    pub heartbeat_secs_max: u64,
    /// A SendingTime(52) further than this from the server's clock is a SendingTime accuracy
    /// problem (QuickFIX's MaxLatency).
    pub sending_time_tolerance_secs: u64,
    /// A connection must log on within this, and a Logout be answered within `logout_timeout_secs`.
    pub logon_timeout_secs: u64,
    pub logout_timeout_secs: u64,
    /// Per-session defaults, by SenderCompID (an API key): `[fix.sessions.demo-alice]`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub sessions: BTreeMap<String, FixSessionSettings>,
}

/// What a session gets when its Logon does not say otherwise.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FixSessionSettings {
    /// Cancel the account's open orders whenever a logged-on connection of this session ends,
    /// unless its Logon says CancelOrdersOnDisconnect(8013)=N.
    pub cancel_on_disconnect: bool,
}

impl FixSettings {
    /// The cancel-on-disconnect of `comp_id`'s session when its Logon carries no 8013.
    pub fn cancel_on_disconnect(&self, comp_id: &str) -> bool {
        self.sessions
            .get(comp_id)
            .is_some_and(|s| s.cancel_on_disconnect)
    }
}

impl Default for FixSettings {
    fn default() -> FixSettings {
        FixSettings {
            comp_id: "KINKO".into(),
            heartbeat_secs_min: 1,
            heartbeat_secs_max: 300,
            sending_time_tolerance_secs: 120,
            logon_timeout_secs: 10,
            logout_timeout_secs: 2,
            sessions: BTreeMap::new(),
        }
    }
}

/// The custody driver: how often it polls the chain adapter, pays withdrawals and reconciles
/// every wallet. The adapter is always the simulated chain in this build (gateway::custody::chain).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CustodySettings {
    pub reconcile_interval_ms: u64,
}

impl Default for CustodySettings {
    fn default() -> CustodySettings {
        CustodySettings {
            reconcile_interval_ms: 2_000,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServeConfig {
    pub server: ServerSection,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub fix: FixSettings,
    #[serde(default)]
    pub custody: CustodySettings,
    #[serde(default)]
    pub security: SecuritySettings,
    pub tls: TlsSettings,
    /// When absent, the embedded default exchange (engine::defaults).
    #[serde(default)]
    pub exchange: Option<ExchangeConfig>,
    pub accounts: Vec<AccountConfig>,
    pub keys: Vec<KeyConfig>,
}

impl ServeConfig {
    pub fn exchange(&self) -> ExchangeConfig {
        self.exchange
            .clone()
            .unwrap_or_else(engine::defaults::config)
    }

    pub fn from_toml(text: &str) -> Result<ServeConfig, String> {
        let config: ServeConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), String> {
        let min_mib = (engine::journal::format::SEGMENT_BYTES_MIN >> 20) as u32;
        let mib = self.server.journal_segment_mib;
        if !(min_mib..=JOURNAL_SEGMENT_MIB_MAX).contains(&mib) {
            return Err(format!(
                "server: journal_segment_mib = {mib}: a journal segment is {min_mib} to \
                 {JOURNAL_SEGMENT_MIB_MAX} MiB"
            ));
        }
        for key in &self.keys {
            if !self.accounts.iter().any(|a| a.name == key.account) {
                return Err(format!(
                    "key {} names unknown account {}",
                    key.key, key.account
                ));
            }
            if engine::audit::KeyLabel::new(&key.key).is_none() {
                return Err(format!(
                    "key {:?}: a key name is 1 to 32 printable ASCII characters without spaces",
                    key.key
                ));
            }
            for rule in &key.allow_ips {
                crate::auth::IpRule::parse(rule)
                    .map_err(|e| format!("key {}: allow_ips: {e}", key.key))?;
            }
            key.expires_ms()?;
        }
        let mut key_names: Vec<&str> = self.keys.iter().map(|k| k.key.as_str()).collect();
        key_names.sort_unstable();
        if key_names.windows(2).any(|w| w[0] == w[1]) {
            return Err("key names must be unique".into());
        }
        let security = &self.security;
        if security.auth_failures_max == 0
            || security.auth_failure_window_secs == 0
            || security.auth_block_secs == 0
        {
            return Err("security: auth_failures_max, auth_failure_window_secs and auth_block_secs must be positive".into());
        }
        let mut names: Vec<&str> = self.accounts.iter().map(|a| a.name.as_str()).collect();
        names.sort_unstable();
        if names.windows(2).any(|w| w[0] == w[1]) {
            return Err("account names must be unique".into());
        }
        let fix = &self.fix;
        if fix.comp_id.is_empty() || fix.comp_id.contains('\u{1}') {
            return Err("fix.comp_id must be a non-empty text without SOH".into());
        }
        if fix.heartbeat_secs_min == 0 || fix.heartbeat_secs_min > fix.heartbeat_secs_max {
            return Err(
                "fix heartbeat bounds: 1 <= heartbeat_secs_min <= heartbeat_secs_max".into(),
            );
        }
        if self.tls.cert.is_some() != self.tls.key.is_some() {
            return Err("tls: give both cert and key, or neither (a generated certificate)".into());
        }
        if self.custody.reconcile_interval_ms == 0 {
            return Err("custody.reconcile_interval_ms must be positive".into());
        }
        for (comp_id, session) in &fix.sessions {
            let Some(key) = self.keys.iter().find(|k| &k.key == comp_id) else {
                return Err(format!("fix.sessions.{comp_id} names no API key"));
            };
            if session.cancel_on_disconnect && key.role != Role::Trader {
                return Err(format!(
                    "fix.sessions.{comp_id}: cancel_on_disconnect needs a trader key"
                ));
            }
        }
        let exchange = self.exchange();
        exchange
            .check_limits()
            .map_err(|e| format!("exchange.engine: {e}"))?;
        for account in &self.accounts {
            for code in account.deposits.keys() {
                if !exchange.assets.iter().any(|a| &a.code == code) {
                    return Err(format!(
                        "account {} deposits unknown asset {code}",
                        account.name
                    ));
                }
            }
        }
        Ok(())
    }

    /// The account id of `name`: accounts are created in configuration order on first start.
    pub fn account_id(&self, name: &str) -> Option<u32> {
        self.accounts
            .iter()
            .position(|a| a.name == name)
            .map(|i| i as u32)
    }
}

impl KeyConfig {
    /// Whether the secret is one of the embedded configuration's published demo secrets
    /// (`demo-NAME` / `demo-NAME-secret`): those, and only those, the start banner shows.
    pub fn is_demo(&self) -> bool {
        let published = format!("{}-secret", self.key);
        self.key.starts_with("demo-") && crate::auth::secrets_equal(&self.secret, &published)
    }
}

/// The embedded default: three funded demo customers, one house account, an operator and an
/// auditor, on 127.0.0.1:8080 (HTTPS/WebSocket) and 127.0.0.1:9878 (FIX), both over TLS with a
/// certificate generated at first start, data in ./data.
pub fn default_config() -> ServeConfig {
    let deposits = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(a, v)| (a.to_string(), v.to_string()))
            .collect()
    };
    let customer = |name: &str| AccountConfig {
        name: name.into(),
        pool: PoolName::Customer,
        deposits: deposits(&[
            ("JPY", "100000000"),
            ("BTC", "10"),
            ("ETH", "100"),
            ("XEM", "1000000"),
            ("MONA", "100000"),
            ("BCH", "100"),
        ]),
    };
    let key = |name: &str, account: &str, role: Role| KeyConfig {
        key: format!("demo-{name}"),
        secret: format!("demo-{name}-secret"),
        account: account.into(),
        role,
        permissions: None,
        allow_ips: Vec::new(),
        expires: None,
    };
    ServeConfig {
        server: ServerSection {
            http: "127.0.0.1:8080".parse().unwrap(),
            fix: "127.0.0.1:9878".parse().unwrap(),
            data: PathBuf::from("data"),
            durability: DurabilityName::Process,
            engine_idle_spins: engine_idle_spins_default(),
            idle: IdleMode::Park,
            chain_hashing: ChainHashing::Inline,
            journal_segment_mib: journal_segment_mib_default(),
            snapshot_every_commands: snapshot_every_commands_default(),
            transport: Transport::Tls,
        },
        limits: Limits::default(),
        fix: FixSettings::default(),
        custody: CustodySettings::default(),
        security: SecuritySettings::default(),
        tls: TlsSettings::default(),
        exchange: None,
        accounts: vec![
            customer("alice"),
            customer("bob"),
            customer("carol"),
            AccountConfig {
                name: "house".into(),
                pool: PoolName::House,
                // Some of every coin, so that the house can top up a customer loss in the demo.
                deposits: deposits(&[
                    ("JPY", "1000000000"),
                    ("BTC", "100"),
                    ("ETH", "1000"),
                    ("XEM", "10000000"),
                    ("MONA", "1000000"),
                    ("BCH", "1000"),
                ]),
            },
        ],
        keys: vec![
            key("alice", "alice", Role::Trader),
            key("bob", "bob", Role::Trader),
            key("carol", "carol", Role::Trader),
            key("house", "house", Role::Trader),
            key("operator", "house", Role::Operator),
            key("auditor", "house", Role::Auditor),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_engine_capacity_past_its_ceiling_is_refused_when_read() {
        // Accepted before, then `kinko serve` aborted allocating it (kinko-fuzz).
        let mut config = default_config();
        let mut exchange = config.exchange();
        exchange.engine.orders_open_per_account_max = u32::MAX;
        config.exchange = Some(exchange);
        let text = toml::to_string(&config).unwrap();
        let error = ServeConfig::from_toml(&text).unwrap_err();
        assert!(error.contains("orders_open_per_account_max"), "{error}");
    }

    #[test]
    fn default_config_is_valid_and_round_trips_through_toml() {
        let config = default_config();
        config.validate().unwrap();
        let text = toml::to_string(&config).unwrap();
        assert_eq!(ServeConfig::from_toml(&text).unwrap(), config);
    }

    #[test]
    fn example_file_parses() {
        let text = include_str!("../../kinko.example.toml");
        let config = ServeConfig::from_toml(text).expect("kinko.example.toml is valid");
        assert_eq!(config.account_id("alice"), Some(0));
    }

    #[test]
    fn fix_session_defaults_name_known_keys() {
        let mut config = default_config();
        let text = toml::to_string(&config).unwrap()
            + "\n[fix.sessions.demo-alice]\ncancel_on_disconnect = true\n";
        let parsed = ServeConfig::from_toml(&text).unwrap();
        assert!(parsed.fix.cancel_on_disconnect("demo-alice"));
        assert!(!parsed.fix.cancel_on_disconnect("demo-bob"));
        assert_eq!(
            parsed.fix.comp_id, "KINKO",
            "the other settings keep their defaults"
        );
        let typo = text.replace("cancel_on_disconnect = true", "cancel_on_disconect = true");
        assert!(
            ServeConfig::from_toml(&typo).is_err(),
            "a misspelt setting is an error"
        );
        config.fix.sessions.insert(
            "demo-mallory".into(),
            FixSessionSettings {
                cancel_on_disconnect: true,
            },
        );
        assert!(config.validate().unwrap_err().contains("demo-mallory"));
        config.fix.sessions.clear();
        config.fix.sessions.insert(
            "demo-operator".into(),
            FixSessionSettings {
                cancel_on_disconnect: true,
            },
        );
        assert!(config.validate().unwrap_err().contains("trader key"));
    }

    #[test]
    fn tls_is_the_default_and_plaintext_must_be_asked_for() {
        let config = default_config();
        assert_eq!(config.server.transport, Transport::Tls);
        let text = toml::to_string(&config).unwrap();
        let without = text.replace("transport = \"tls\"\n", "");
        assert_ne!(without, text, "the default names its transport");
        let parsed = ServeConfig::from_toml(&without).unwrap();
        assert_eq!(parsed.server.transport, Transport::Tls, "absent: TLS");
        let plain = text.replace("transport = \"tls\"", "transport = \"plaintext\"");
        let parsed = ServeConfig::from_toml(&plain).unwrap();
        assert_eq!(parsed.server.transport, Transport::Plaintext);
        let typo = text.replace("transport = \"tls\"", "transport = \"plain\"");
        assert!(ServeConfig::from_toml(&typo).is_err());
    }

    #[test]
    fn the_idle_mode_parks_unless_spin_is_asked_for() {
        let config = default_config();
        assert_eq!(config.server.idle, IdleMode::Park);
        let text = toml::to_string(&config).unwrap();
        let without = text.replace("idle = \"park\"\n", "");
        assert_ne!(without, text, "the default names its idle mode");
        let parsed = ServeConfig::from_toml(&without).unwrap();
        assert_eq!(parsed.server.idle, IdleMode::Park, "absent: park");
        let spin = text.replace("idle = \"park\"", "idle = \"spin\"");
        let parsed = ServeConfig::from_toml(&spin).unwrap();
        assert_eq!(parsed.server.idle, IdleMode::Spin);
        let unknown = text.replace("idle = \"park\"", "idle = \"nap\"");
        let error = ServeConfig::from_toml(&unknown).unwrap_err();
        assert!(
            error.contains("nap") && error.contains("park") && error.contains("spin"),
            "the error names the value and the choices: {error}"
        );
    }

    #[test]
    fn the_chain_is_hashed_inline_unless_thread_is_asked_for() {
        let text = toml::to_string(&default_config()).unwrap();
        assert!(text.contains("chain_hashing = \"inline\"\n"), "{text}");
        let without = ServeConfig::from_toml(&text.replace("chain_hashing = \"inline\"\n", ""));
        assert_eq!(without.unwrap().server.chain_hashing, ChainHashing::Inline);
        let thread = text.replace("chain_hashing = \"inline\"", "chain_hashing = \"thread\"");
        let thread = ServeConfig::from_toml(&thread).unwrap();
        assert_eq!(thread.server.chain_hashing, ChainHashing::Thread);
        let error = ServeConfig::from_toml(&text.replace("\"inline\"", "\"gpu\"")).unwrap_err();
        assert!(error.contains("gpu") && error.contains("thread"), "{error}");
    }

    #[test]
    fn the_journal_segment_size_is_64_mib_unless_the_file_says_otherwise() {
        let text = toml::to_string(&default_config()).unwrap();
        assert!(text.contains("journal_segment_mib = 64\n"), "{text}");
        let without = text.replace("journal_segment_mib = 64\n", "");
        let parsed = ServeConfig::from_toml(&without).unwrap();
        assert_eq!(
            parsed.server.journal_segment_bytes(),
            64 << 20,
            "absent: 64 MiB"
        );
        let small = text.replace("journal_segment_mib = 64", "journal_segment_mib = 1");
        let parsed = ServeConfig::from_toml(&small).unwrap();
        assert_eq!(parsed.server.journal_segment_bytes(), 1 << 20);
        let refused = |value: &str| {
            let line = format!("journal_segment_mib = {value}");
            ServeConfig::from_toml(&text.replace("journal_segment_mib = 64", &line)).unwrap_err()
        };
        for bad in ["0", "1025", "4294967295"] {
            let error = refused(bad);
            assert!(
                error.contains(&format!("journal_segment_mib = {bad}"))
                    && error.contains("1 to 1024 MiB"),
                "the error names the value and the range: {error}"
            );
        }
        for bad in ["-1", "\"64MiB\"", "1.5"] {
            let error = refused(bad);
            assert!(
                error.contains("journal_segment_mib"),
                "the error names the key: {error}"
            );
        }
    }

    #[test]
    fn snapshots_come_every_million_commands_unless_the_file_says_otherwise() {
        let text = toml::to_string(&default_config()).unwrap();
        let line = "snapshot_every_commands = 1000000\n";
        assert!(text.contains(line), "{text}");
        let parsed = ServeConfig::from_toml(&text.replace(line, "")).unwrap();
        assert_eq!(parsed.server.snapshot_every_commands, 1_000_000, "absent");
        let every = |value: &str| {
            let line = format!("snapshot_every_commands = {value}\n");
            ServeConfig::from_toml(&text.replace("snapshot_every_commands = 1000000\n", &line))
        };
        assert_eq!(every("5000").unwrap().server.snapshot_every_commands, 5_000);
        assert_eq!(every("0").unwrap().server.snapshot_every_commands, 0);
        for bad in ["-1", "\"often\""] {
            let error = every(bad).unwrap_err();
            assert!(error.contains("snapshot_every_commands"), "{error}");
        }
    }

    #[test]
    fn tls_files_come_in_pairs() {
        let mut config = default_config();
        config.tls.cert = Some("cert.pem".into());
        assert!(config.validate().unwrap_err().contains("both cert and key"));
        config.tls.key = Some("key.pem".into());
        config.validate().unwrap();
        let text = toml::to_string(&config).unwrap();
        assert_eq!(ServeConfig::from_toml(&text).unwrap(), config);
        let typo = text.replace("[tls]\ncert", "[tls]\ncertificate");
        assert!(ServeConfig::from_toml(&typo).is_err(), "{typo}");
    }

    #[test]
    fn a_key_for_an_unknown_account_is_refused() {
        let mut config = default_config();
        config.keys[0].account = "mallory".into();
        assert!(config.validate().unwrap_err().contains("mallory"));
    }
}
