//! The installation's Ed25519 signing keys for history digests: created on
//! first use in `state_dir` (mode 0600), rotated on demand, and the public
//! halves printed for auditors to keep elsewhere. Verification trusts only
//! keys handed to it (a public-key file, or this installation's own) plus
//! keys those keys announced, so whoever can write the store but not read
//! `state_dir` cannot sign a rewritten history.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use chrono::{DateTime, Utc};
use ring::signature::{Ed25519KeyPair, KeyPair as _, UnparsedPublicKey, ED25519};
use serde::{Deserialize, Serialize};

use super::HistoryError;

/// The file in `state_dir` that holds the private keys.
pub const KEY_FILE: &str = "history-signing-key.json";

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// A public key, as digests carry it and auditors keep it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicKey(pub [u8; 32]);

impl PublicKey {
    /// A short, stable name: `ed25519:` and the first 16 hex digits of the
    /// key's SHA-256, so messages can name a key without printing all of it.
    pub fn id(&self) -> String {
        format!("ed25519:{}", &crate::mask::sha256_hex(&self.0)[..16])
    }

    pub fn to_base64(&self) -> String {
        B64.encode(self.0)
    }

    pub fn from_base64(text: &str) -> Option<PublicKey> {
        let bytes = B64.decode(text.trim()).ok()?;
        Some(PublicKey(bytes.try_into().ok()?))
    }

    /// One line of a public-key file: `plumb-ed25519 <base64> <id>`.
    pub fn to_line(&self) -> String {
        format!("plumb-ed25519 {} {}", self.to_base64(), self.id())
    }

    /// Whether `signature` over `message` was made with this key.
    pub fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        UnparsedPublicKey::new(&ED25519, &self.0)
            .verify(message, signature)
            .is_ok()
    }
}

/// Reads a public-key file: one key per line (`plumb-ed25519 <base64> …`
/// as `plumb history public-key` prints, or the bare base64), `#` starts a
/// comment.
pub fn read_public_keys(path: &Path) -> Result<Vec<PublicKey>, HistoryError> {
    let text = std::fs::read_to_string(path).map_err(|e| HistoryError::Key {
        path: path.to_path_buf(),
        message: format!("cannot read it: {e}"),
    })?;
    let mut keys = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let mut words = line.split_whitespace();
        let first = words.next().unwrap_or("");
        let encoded = if first == "plumb-ed25519" {
            words.next().unwrap_or("")
        } else {
            first
        };
        match PublicKey::from_base64(encoded) {
            Some(key) => keys.push(key),
            None => {
                return Err(HistoryError::Key {
                    path: path.to_path_buf(),
                    message: format!("line {}: not an Ed25519 public key", n + 1),
                })
            }
        }
    }
    if keys.is_empty() {
        return Err(HistoryError::Key {
            path: path.to_path_buf(),
            message: "holds no public key".into(),
        });
    }
    Ok(keys)
}

#[derive(Serialize, Deserialize)]
struct KeyFile {
    format_version: u32,
    /// Oldest first; the last one signs.
    keys: Vec<StoredKey>,
}

#[derive(Serialize, Deserialize)]
struct StoredKey {
    created_at: DateTime<Utc>,
    /// PKCS#8 v2 document, base64.
    pkcs8: String,
}

/// The installation's keys: the current one signs, retired ones are kept so
/// `plumb history public-key` can still print them for old digests.
pub struct Keyring {
    pub current: Ed25519KeyPair,
    pub retired: Vec<PublicKey>,
}

impl Keyring {
    pub fn public(&self) -> PublicKey {
        let mut bytes = [0u8; 32];
        bytes.copy_from_slice(self.current.public_key().as_ref());
        PublicKey(bytes)
    }

    /// Every public key of the installation, oldest first.
    pub fn all_public(&self) -> Vec<PublicKey> {
        let mut all = self.retired.clone();
        all.push(self.public());
        all
    }

    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.current.sign(message).as_ref().to_vec()
    }
}

fn key_path(state_dir: &Path) -> PathBuf {
    state_dir.join(KEY_FILE)
}

fn generate() -> Result<StoredKey, HistoryError> {
    let rng = ring::rand::SystemRandom::new();
    let document = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| HistoryError::Key {
        path: PathBuf::from(KEY_FILE),
        message: "the system's random number generator failed".into(),
    })?;
    Ok(StoredKey {
        created_at: Utc::now(),
        pkcs8: B64.encode(document.as_ref()),
    })
}

fn parse(path: &Path, bytes: &[u8]) -> Result<Keyring, HistoryError> {
    let bad = |message: String| HistoryError::Key {
        path: path.to_path_buf(),
        message,
    };
    let file: KeyFile = serde_json::from_slice(bytes).map_err(|e| bad(format!("not a plumb key file: {e}")))?;
    let mut pairs = Vec::new();
    for (n, stored) in file.keys.iter().enumerate() {
        let der = B64
            .decode(&stored.pkcs8)
            .map_err(|e| bad(format!("key {}: {e}", n + 1)))?;
        let pair =
            Ed25519KeyPair::from_pkcs8(&der).map_err(|e| bad(format!("key {}: not an Ed25519 key: {e}", n + 1)))?;
        pairs.push(pair);
    }
    let current = pairs.pop().ok_or_else(|| bad("holds no key".into()))?;
    let retired = pairs
        .iter()
        .map(|p| {
            let mut bytes = [0u8; 32];
            bytes.copy_from_slice(p.public_key().as_ref());
            PublicKey(bytes)
        })
        .collect();
    Ok(Keyring { current, retired })
}

/// Writes `file` at `path` with mode 0600; `replace` says whether an
/// existing file may be replaced (rotation) or must win (first use by
/// several processes at once: the first file written is everyone's key).
fn write_key_file(path: &Path, file: &KeyFile, replace: bool) -> Result<(), HistoryError> {
    let fail = |message: String| HistoryError::Key {
        path: path.to_path_buf(),
        message,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| fail(format!("cannot create {}: {e}", dir.display())))?;
    // tempfile creates its files with mode 0600.
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| fail(e.to_string()))?;
    let text = serde_json::to_vec_pretty(file).map_err(|e| fail(e.to_string()))?;
    tmp.write_all(&text)
        .and_then(|_| tmp.as_file().sync_all())
        .map_err(|e| fail(e.to_string()))?;
    let persisted = if replace {
        tmp.persist(path).map(|_| ()).map_err(|e| e.error)
    } else {
        tmp.persist_noclobber(path).map(|_| ()).map_err(|e| e.error)
    };
    match persisted {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && !replace => Ok(()),
        Err(e) => Err(fail(e.to_string())),
    }
}

/// The installation's keyring, created on first use.
pub fn load_or_create(state_dir: &Path) -> Result<Keyring, HistoryError> {
    let path = key_path(state_dir);
    match std::fs::read(&path) {
        Ok(bytes) => return parse(&path, &bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(HistoryError::Key {
                path,
                message: format!("cannot read it: {e}"),
            })
        }
    }
    let file = KeyFile {
        format_version: 1,
        keys: vec![generate()?],
    };
    write_key_file(&path, &file, false)?;
    tracing::info!(path = %path.display(), "created the history signing key");
    // Another process may have created its key first: that one counts.
    let bytes = std::fs::read(&path).map_err(|e| HistoryError::Key {
        path: path.clone(),
        message: format!("cannot read it: {e}"),
    })?;
    parse(&path, &bytes)
}

/// The installation's keyring if it has one (verification never creates a
/// key).
pub fn load_existing(state_dir: &Path) -> Result<Option<Keyring>, HistoryError> {
    let path = key_path(state_dir);
    match std::fs::read(&path) {
        Ok(bytes) => parse(&path, &bytes).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(HistoryError::Key {
            path,
            message: format!("cannot read it: {e}"),
        }),
    }
}

/// A new key made but not yet in force: the old key first signs its
/// announcement in every target's digest chain, then [`Rotation::commit`]
/// makes it the current key.
pub struct Rotation {
    pub public: PublicKey,
    stored: StoredKey,
}

/// The current keyring and a new key to rotate to.
pub fn prepare_rotation(state_dir: &Path) -> Result<(Keyring, Rotation), HistoryError> {
    let old = load_or_create(state_dir)?;
    let stored = generate()?;
    let der = B64.decode(&stored.pkcs8).map_err(|e| HistoryError::Key {
        path: key_path(state_dir),
        message: e.to_string(),
    })?;
    let pair = Ed25519KeyPair::from_pkcs8(&der).map_err(|e| HistoryError::Key {
        path: key_path(state_dir),
        message: e.to_string(),
    })?;
    let mut bytes = [0u8; 32];
    bytes.copy_from_slice(pair.public_key().as_ref());
    Ok((
        old,
        Rotation {
            public: PublicKey(bytes),
            stored,
        },
    ))
}

impl Rotation {
    /// Adds the new key as current; the old ones stay as retired.
    pub fn commit(self, state_dir: &Path) -> Result<PublicKey, HistoryError> {
        let path = key_path(state_dir);
        let bytes = std::fs::read(&path).map_err(|e| HistoryError::Key {
            path: path.clone(),
            message: format!("cannot read it: {e}"),
        })?;
        let mut file: KeyFile = serde_json::from_slice(&bytes).map_err(|e| HistoryError::Key {
            path: path.clone(),
            message: format!("not a plumb key file: {e}"),
        })?;
        file.keys.push(self.stored);
        write_key_file(&path, &file, true)?;
        Ok(self.public)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_created_once_with_mode_0600_and_signs_what_its_public_half_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let ring = load_or_create(dir.path()).unwrap();
        let again = load_or_create(dir.path()).unwrap();
        assert_eq!(ring.public(), again.public());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let signature = ring.sign(b"digest");
        assert!(ring.public().verifies(b"digest", &signature));
        assert!(!ring.public().verifies(b"digest!", &signature));
        let other = load_or_create(tempfile::tempdir().unwrap().path()).unwrap();
        assert!(!other.public().verifies(b"digest", &signature));
    }

    #[test]
    fn rotation_keeps_the_old_public_key_and_signs_with_the_new() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create(dir.path()).unwrap().public();
        let (old, rotation) = prepare_rotation(dir.path()).unwrap();
        assert_eq!(old.public(), first);
        // Not in force until committed.
        assert_eq!(load_or_create(dir.path()).unwrap().public(), first);
        let new = rotation.commit(dir.path()).unwrap();
        assert_ne!(new, first);
        let ring = load_existing(dir.path()).unwrap().unwrap();
        assert_eq!(ring.public(), new);
        assert_eq!(ring.all_public(), vec![first, new]);
    }

    #[test]
    fn public_key_files_round_trip_and_bad_lines_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let key = load_or_create(dir.path()).unwrap().public();
        let file = dir.path().join("keys.pub");
        std::fs::write(&file, format!("# auditor's copy\n{}\n", key.to_line())).unwrap();
        assert_eq!(read_public_keys(&file).unwrap(), vec![key]);
        std::fs::write(&file, "plumb-ed25519 not-base64\n").unwrap();
        let error = read_public_keys(&file).unwrap_err().to_string();
        assert!(error.contains("line 1"), "{error}");
    }
}
