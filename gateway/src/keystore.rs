//! API-key secrets at rest. Keys made at run time, and the state of the configuration file's keys
//! (registered in the journal, rotated, revoked), live in `DATA/keys.json`; every secret in it is
//! sealed with ChaCha20-Poly1305 under a 32-byte master key that is never in the data folder:
//! `KINKO_MASTER_KEY` (64 hex digits) or a file readable by its owner only, by default
//! `<data folder>.master-key` beside the data folder. A copy of the data folder (a backup, a
//! stolen disk image of that folder) therefore gives no secret away. The limit: whoever can read
//! both the data folder and the master key (root on the running machine) can unseal every secret.
//! docs/API.md, "Keys and permissions", says the same to operators.

use std::io::Write;
use std::path::{Path, PathBuf};

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};
use serde::{Deserialize, Serialize};

use crate::config::{Permission, Role, ServeConfig};
use engine::audit::{KeyGrant, KeyId, KEY_ID_CREATED_FIRST};

pub const MASTER_KEY_ENV: &str = "KINKO_MASTER_KEY";
const NONCE_BYTES: usize = 12;

/// The key that seals secrets at rest.
pub struct MasterKey(chacha20poly1305::Key);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

impl MasterKey {
    /// From `KINKO_MASTER_KEY`, else from the configured file, else from the default file beside
    /// the data folder, which is created (owner-only) when it does not exist.
    pub fn load(config: &ServeConfig) -> Result<MasterKey, String> {
        if let Ok(text) = std::env::var(MASTER_KEY_ENV) {
            return MasterKey::from_hex(text.trim()).map_err(|e| format!("{MASTER_KEY_ENV}: {e}"));
        }
        let path = master_key_path(config);
        let data = &config.server.data;
        if let (Ok(file), Ok(data)) = (absolute(&path), absolute(data)) {
            if file.starts_with(&data) {
                return Err(format!(
                    "the master key file {} is inside the data folder {}: a copy of the folder would carry it",
                    path.display(),
                    data.display()
                ));
            }
        }
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                check_owner_only(&path)?;
                MasterKey::from_hex(text.trim()).map_err(|e| format!("{}: {e}", path.display()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => MasterKey::create(&path),
            Err(e) => Err(format!(
                "cannot read the master key {}: {e}",
                path.display()
            )),
        }
    }

    fn create(path: &Path) -> Result<MasterKey, String> {
        let mut bytes = [0u8; 32];
        random(&mut bytes)?;
        let hex = hex(&bytes);
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        match options.open(path) {
            Ok(mut file) => {
                file.write_all(format!("{hex}\n").as_bytes())
                    .and_then(|()| file.sync_all())
                    .map_err(|e| format!("cannot write the master key {}: {e}", path.display()))?;
                tracing::info!(
                    "created the master key that seals API-key secrets: {} (owner-only; keep it out of backups of the data folder)",
                    path.display()
                );
                MasterKey::from_hex(&hex)
            }
            // Another server starting beside this one made it first.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
                MasterKey::from_hex(text.trim())
            }
            Err(e) => Err(format!(
                "cannot create the master key {}: {e}",
                path.display()
            )),
        }
    }

    pub fn from_hex(text: &str) -> Result<MasterKey, String> {
        let bytes = unhex(text)
            .filter(|b| b.len() == 32)
            .ok_or("a master key is 64 hex digits (32 bytes)")?;
        Ok(MasterKey(*chacha20poly1305::Key::from_slice(&bytes)))
    }

    /// `hex(nonce ‖ ciphertext ‖ tag)`; `name` is bound in as associated data, so a sealed secret
    /// moved to another key's record does not open.
    pub fn seal(&self, name: &str, secret: &str) -> Result<String, String> {
        let mut nonce = [0u8; NONCE_BYTES];
        random(&mut nonce)?;
        let cipher = ChaCha20Poly1305::new(&self.0);
        let sealed = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: secret.as_bytes(),
                    aad: aad(name).as_bytes(),
                },
            )
            .map_err(|_| "sealing failed".to_string())?;
        Ok(hex(&nonce) + &hex(&sealed))
    }

    pub fn unseal(&self, name: &str, sealed: &str) -> Result<String, String> {
        let bytes = unhex(sealed)
            .filter(|b| b.len() > NONCE_BYTES)
            .ok_or_else(|| {
                format!("key {name}: the sealed secret is not hex of a nonce and a ciphertext")
            })?;
        let (nonce, ciphertext) = bytes.split_at(NONCE_BYTES);
        let cipher = ChaCha20Poly1305::new(&self.0);
        let plain = cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: aad(name).as_bytes(),
                },
            )
            .map_err(|_| {
                format!("key {name}: the secret does not unseal: wrong master key, or the file was altered")
            })?;
        String::from_utf8(plain).map_err(|_| format!("key {name}: the secret is not text"))
    }
}

fn aad(name: &str) -> String {
    format!("kinko-api-key:{name}")
}

/// `<data folder>.master-key` beside the data folder, unless configured.
pub fn master_key_path(config: &ServeConfig) -> PathBuf {
    if let Some(path) = &config.security.master_key_file {
        return path.clone();
    }
    let data = &config.server.data;
    let name = data
        .file_name()
        .map_or_else(|| "data".into(), |n| n.to_string_lossy().to_string());
    data.with_file_name(format!("{name}.master-key"))
}

fn absolute(path: &Path) -> std::io::Result<PathBuf> {
    let path = std::path::absolute(path)?;
    // Resolve what exists (symbolic links), keep the rest as written.
    let mut existing = path.clone();
    let mut rest = Vec::new();
    while !existing.exists() {
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_owned());
                existing = parent.to_path_buf();
            }
            _ => return Ok(path),
        }
    }
    let mut resolved = existing.canonicalize()?;
    for name in rest.into_iter().rev() {
        resolved.push(name);
    }
    Ok(resolved)
}

fn check_owner_only(path: &Path) -> Result<(), String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .map_err(|e| format!("{}: {e}", path.display()))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(format!(
                "the master key {} can be read by others (mode {:o}); run chmod 600 on it",
                path.display(),
                mode & 0o777
            ));
        }
    }
    Ok(())
}

pub fn random(bytes: &mut [u8]) -> Result<(), String> {
    getrandom::fill(bytes).map_err(|e| format!("no randomness from the system: {e}"))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Hex digits only (`from_str_radix` alone would take a sign: `+0` for `00`).
pub fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
        .collect()
}

/// A key made at run time, as `keys.json` holds it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredKey {
    pub id: KeyId,
    pub key: String,
    pub account: u32,
    pub role: Role,
    pub permissions: Vec<Permission>,
    #[serde(default)]
    pub allow_ips: Vec<String>,
    #[serde(default)]
    pub expires_ms: Option<u64>,
    #[serde(default)]
    pub revoked: bool,
    pub created_ms: u64,
    /// The secret, sealed ([`MasterKey::seal`]).
    pub sealed: String,
}

/// What the store remembers of a configuration file's key.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigKeyState {
    pub id: KeyId,
    /// The grant last written to the journal (`KeyChange::Registered`).
    #[serde(default)]
    pub registered: Option<KeyGrant>,
    #[serde(default)]
    pub revoked: bool,
    /// A rotated secret, sealed; it replaces the file's.
    #[serde(default)]
    pub sealed: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreFile {
    pub format: u32,
    pub next_id: KeyId,
    pub next_config_id: KeyId,
    pub keys: Vec<StoredKey>,
    pub config: std::collections::BTreeMap<String, ConfigKeyState>,
}

impl Default for StoreFile {
    fn default() -> StoreFile {
        StoreFile {
            format: 1,
            next_id: KEY_ID_CREATED_FIRST,
            next_config_id: 0,
            keys: Vec::new(),
            config: Default::default(),
        }
    }
}

pub fn store_path(data: &Path) -> PathBuf {
    data.join("keys.json")
}

pub fn read_store(path: &Path) -> Result<StoreFile, String> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(StoreFile::default()),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// Writes the store atomically: a temporary file, fsync, rename, fsync of the folder.
pub fn write_store(path: &Path, store: &StoreFile) -> Result<(), String> {
    let text = serde_json::to_string_pretty(store).map_err(|e| e.to_string())?;
    let temporary = path.with_extension("json.tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let write = || -> std::io::Result<()> {
        let mut file = options.open(&temporary)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)?;
        if let Some(folder) = path.parent() {
            std::fs::File::open(folder)?.sync_all()?;
        }
        Ok(())
    };
    write().map_err(|e| format!("cannot write {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_secrets_open_only_with_their_key_and_name() {
        let master = MasterKey::from_hex(&"11".repeat(32)).unwrap();
        let sealed = master.seal("k-1", "the-secret").unwrap();
        assert!(!sealed.contains(&hex(b"the-secret")));
        assert_eq!(master.unseal("k-1", &sealed).unwrap(), "the-secret");
        assert_ne!(
            sealed,
            master.seal("k-1", "the-secret").unwrap(),
            "a fresh nonce each time"
        );
        assert!(master.unseal("k-2", &sealed).unwrap_err().contains("k-2"));
        let other = MasterKey::from_hex(&"22".repeat(32)).unwrap();
        assert!(other.unseal("k-1", &sealed).is_err());
        let mut flipped = unhex(&sealed).unwrap();
        flipped[20] ^= 1;
        assert!(master.unseal("k-1", &hex(&flipped)).is_err());
        assert!(master.unseal("k-1", "zz").is_err());
        assert_eq!(unhex("+0ff"), None, "digits only, no sign");
        assert_eq!(unhex("00fF"), Some(vec![0, 255]));
        assert!(MasterKey::from_hex("abcd").is_err());
        assert!(MasterKey::from_hex(&"g".repeat(64)).is_err());
    }

    #[test]
    fn the_master_key_file_is_created_owner_only_beside_the_data_folder() {
        let dir = std::env::temp_dir().join(format!("kinko-master-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut config = crate::config::default_config();
        config.server.data = dir.join("data");
        let path = master_key_path(&config);
        assert_eq!(path, dir.join("data.master-key"));
        // The environment variable would win; these tests do not set it.
        if std::env::var(MASTER_KEY_ENV).is_ok() {
            return;
        }
        let first = MasterKey::load(&config).unwrap();
        let again = MasterKey::load(&config).unwrap();
        assert_eq!(first.0, again.0);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            assert!(MasterKey::load(&config).unwrap_err().contains("chmod 600"));
        }
        config.security.master_key_file = Some(dir.join("data").join("inside.key"));
        assert!(MasterKey::load(&config)
            .unwrap_err()
            .contains("inside the data folder"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
