//! `config`: the server's TOML configuration (`ServeConfig::from_toml`), which an operator edits by
//! hand and `kinko serve --config` reads before anything else.
//!
//! Properties: nothing panics; a configuration that is accepted prints back to TOML (the `Serialize`
//! side of the same structure) and reads back equal, so what the operator sees in a dump is what
//! runs.

use gateway::config::{default_config, ServeConfig};

use super::class;

pub const DICTIONARY: &[&[u8]] = &[
    b"[server]\n",
    b"[limits]\n",
    b"[fix]\n",
    b"[custody]\n",
    b"[exchange]\n",
    b"[[accounts]]\n",
    b"[[keys]]\n",
    b"[fix.sessions.alice-key]\n",
    b" = ",
    b"\"",
    b"'''",
    b"\"\"\"",
    b"\n",
    b"#",
    b"{ ",
    b" }",
    b"[",
    b"]",
    b"true",
    b"1979-05-27T07:32:00Z",
    b"inf",
    b"nan",
    b"0x7fffffffffffffff",
    b"\"127.0.0.1:0\"",
    b"\"[::1]:8080\"",
];

pub fn seeds() -> Vec<Vec<u8>> {
    let example = include_str!("../../../../kinko.example.toml");
    let default = toml::to_string(&default_config()).expect("the default configuration prints");
    let small = r#"
[server]
http = "127.0.0.1:0"
fix = "127.0.0.1:0"
data = "data"
durability = "fsync"

[fix.sessions.k]
cancel_on_disconnect = true

[[accounts]]
name = "a"
pool = "house"
deposits = { JPY = "1.5" }

[[keys]]
key = "k"
secret = "s"
account = "a"
role = "trader"
"#;
    vec![
        example.as_bytes().to_vec(),
        default.into_bytes(),
        small.as_bytes().to_vec(),
    ]
}

pub fn run(bytes: &[u8]) -> u64 {
    let Ok(text) = std::str::from_utf8(bytes) else {
        // `kinko serve` reads the file with read_to_string, which refuses other bytes first.
        return 0;
    };
    match ServeConfig::from_toml(text) {
        Ok(config) => {
            let printed = toml::to_string(&config)
                .unwrap_or_else(|e| panic!("an accepted configuration does not print: {e}"));
            let again = ServeConfig::from_toml(&printed).unwrap_or_else(|e| {
                panic!("an accepted configuration does not read back: {e}\n{printed}")
            });
            assert!(
                again == config,
                "the configuration read back differs:\n{printed}"
            );
            1 + class(config.accounts.len() as u64 * 8 + config.keys.len() as u64) % 64
        }
        // The first words of a TOML error say where it is, the rest what: classes by the last line.
        Err(e) => 100 + class(super::fnv(e.lines().last().unwrap_or("").as_bytes())) % 256,
    }
}
