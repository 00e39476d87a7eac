//! Keeping secrets out of every output. Values a provider marks sensitive are
//! replaced by `(sensitive, hmac-sha256:…)`, keyed with a per-installation
//! key kept in `state_dir`: a changed secret still shows as changed, while
//! the value cannot be guessed from a digest or matched across
//! installations. The same key makes the digests of saved plans.

use std::io::Write as _;
use std::path::Path;

use hmac::{Hmac, Mac};
use plumb_model::{Resource, Sensitivity};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::plan::path;

const KEY_FILE: &str = "hmac.key";

#[derive(Clone)]
pub struct Masker {
    key: Vec<u8>,
}

impl std::fmt::Debug for Masker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Masker(<key>)")
    }
}

impl Masker {
    /// A masker with a fixed, public key: for fuzzing and tests, never for
    /// an installation (its digests would be guessable).
    #[doc(hidden)]
    pub fn fixed() -> Masker {
        Masker { key: vec![7u8; 32] }
    }

    /// Loads the installation's key from `state_dir`, creating it (32 random
    /// bytes, mode 0600) on first use.
    pub fn load_or_create(state_dir: &Path) -> std::io::Result<Masker> {
        let file = state_dir.join(KEY_FILE);
        match std::fs::read(&file) {
            Ok(key) if key.len() >= 32 => return Ok(Masker { key }),
            Ok(_) => {
                return Err(std::io::Error::other(format!(
                    "{} is shorter than 32 bytes; delete it to make a new key",
                    file.display()
                )))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        std::fs::create_dir_all(state_dir)?;
        let mut key = vec![0u8; 32];
        rand::Rng::fill(&mut rand::thread_rng(), key.as_mut_slice());
        let mut tmp = tempfile::NamedTempFile::new_in(state_dir)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            tmp.as_file().set_permissions(std::fs::Permissions::from_mode(0o600))?;
        }
        tmp.write_all(&key)?;
        tmp.as_file().sync_all()?;
        match tmp.persist_noclobber(&file) {
            Ok(_) => Ok(Masker { key }),
            // Another process made the key first: use theirs.
            Err(_) => Masker::load_or_create(state_dir),
        }
    }

    /// A masker with a fixed key, for tests and benchmarks.
    pub fn with_key(key: &[u8]) -> Masker {
        Masker { key: key.to_vec() }
    }

    /// Keyed digest of a JSON value in canonical form (serde_json's output
    /// of the value, which keeps the document's key order).
    pub fn digest(&self, value: &Value) -> String {
        let mut mac = match Hmac::<Sha256>::new_from_slice(&self.key) {
            Ok(mac) => mac,
            // HMAC takes keys of any length; this branch cannot be taken.
            Err(_) => return String::new(),
        };
        mac.update(value.to_string().as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// The HMAC-SHA256 of `bytes` under the installation's key, hex.
    pub fn mac(&self, bytes: &[u8]) -> String {
        let mut mac = match Hmac::<Sha256>::new_from_slice(&self.key) {
            Ok(mac) => mac,
            Err(_) => return String::new(),
        };
        mac.update(bytes);
        hex::encode(mac.finalize().into_bytes())
    }

    /// A name for the installation's key that reveals nothing of it, so a
    /// saved plan can say which installation made it.
    pub fn key_id(&self) -> String {
        format!("hmac-sha256:{}", &sha256_hex(&self.key)[..16])
    }

    pub fn placeholder(&self, value: &Value) -> Value {
        Value::String(format!("(sensitive, hmac-sha256:{}…)", &self.digest(value)[..12]))
    }

    /// The resource's body with every sensitive value replaced.
    pub fn masked_body(&self, resource: &Resource) -> Value {
        self.masked_value(&resource.body(), &resource.sensitive)
    }

    /// `body` with every value that `sensitive` names replaced.
    pub fn masked_value(&self, body: &Value, sensitive: &Sensitivity) -> Value {
        match sensitive {
            Sensitivity::None => body.clone(),
            Sensitivity::Whole => self.placeholder(body),
            Sensitivity::Paths(patterns) => {
                let mut masked = body.clone();
                for pattern in patterns {
                    match path::parse(pattern) {
                        Ok(segments) => path::replace_matching(&mut masked, &segments, &|v| self.placeholder(v)),
                        // A pattern the provider got wrong must not leak:
                        // mask everything.
                        Err(_) => return self.placeholder(body),
                    }
                }
                masked
            }
        }
    }
}

/// Whether two secrets (tokens, MACs) are equal, in time that does not
/// depend on where they differ.
pub fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    given.len() == expected.len() && given.iter().zip(expected).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn masks_values_but_shows_changes() {
        let masker = Masker::with_key(b"0123456789abcdef0123456789abcdef");
        let mut secret = Resource::new(
            "core/v1/Secret/a/b",
            "Secret",
            json!({"data": {"pw": "hunter2", "user": "bob"}, "type": "Opaque"}),
        );
        secret.sensitive = Sensitivity::Paths(vec!["/data/*".into()]);
        let masked = masker.masked_body(&secret);
        let text = masked.to_string();
        assert!(!text.contains("hunter2") && !text.contains("bob"), "{text}");
        assert!(masked["data"]["pw"]
            .as_str()
            .unwrap()
            .starts_with("(sensitive, hmac-sha256:"));
        assert_eq!(masked["type"], "Opaque");
        let mut changed = secret.clone();
        let mut body = changed.body();
        body["data"]["pw"] = json!("hunter3");
        changed.set_body(&body);
        assert_ne!(masker.masked_body(&changed)["data"]["pw"], masked["data"]["pw"]);
        assert_eq!(masker.masked_body(&changed)["data"]["user"], masked["data"]["user"]);
    }

    #[test]
    fn installations_do_not_share_digests_and_key_persists() {
        let dir = tempfile::tempdir().unwrap();
        let a = Masker::load_or_create(&dir.path().join("a")).unwrap();
        let a_again = Masker::load_or_create(&dir.path().join("a")).unwrap();
        let b = Masker::load_or_create(&dir.path().join("b")).unwrap();
        let v = json!("same secret");
        assert_eq!(a.digest(&v), a_again.digest(&v));
        assert_ne!(a.digest(&v), b.digest(&v));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("a").join(KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn whole_documents_and_bad_patterns_mask_everything() {
        let masker = Masker::with_key(b"k");
        let mut r = Resource::new("x", "token", json!({"token": "s3cr3t"}));
        r.sensitive = Sensitivity::Whole;
        assert!(!masker.masked_body(&r).to_string().contains("s3cr3t"));
        r.sensitive = Sensitivity::Paths(vec!["no-slash".into()]);
        assert!(!masker.masked_body(&r).to_string().contains("s3cr3t"));
    }
}
