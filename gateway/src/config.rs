//! The server's configuration: addresses, data folder, durability, the exchange (instruments and
//! assets), demo accounts with their opening deposits, and API keys. `kinko serve` runs on the
//! embedded default when no file is given; `--config FILE` reads the same structure from TOML
//! (see `kinko.example.toml`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use engine::journal::Durability;
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

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyConfig {
    pub key: String,
    pub secret: String,
    pub account: String,
    pub role: Role,
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
}

fn engine_idle_spins_default() -> u32 {
    100
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
        for key in &self.keys {
            if !self.accounts.iter().any(|a| a.name == key.account) {
                return Err(format!(
                    "key {} names unknown account {}",
                    key.key, key.account
                ));
            }
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

/// The embedded default: three funded demo customers, one house account, an operator and an
/// auditor, on 127.0.0.1:8080 (HTTP/WebSocket) and 127.0.0.1:9878 (FIX), data in ./data.
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
    };
    ServeConfig {
        server: ServerSection {
            http: "127.0.0.1:8080".parse().unwrap(),
            fix: "127.0.0.1:9878".parse().unwrap(),
            data: PathBuf::from("data"),
            durability: DurabilityName::Process,
            engine_idle_spins: engine_idle_spins_default(),
        },
        limits: Limits::default(),
        fix: FixSettings::default(),
        custody: CustodySettings::default(),
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
    fn a_key_for_an_unknown_account_is_refused() {
        let mut config = default_config();
        config.keys[0].account = "mallory".into();
        assert!(config.validate().unwrap_err().contains("mallory"));
    }
}
