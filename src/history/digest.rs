//! Signed digests: per target, at most every `history.digest_every`, at
//! the end of every recording command and when `serve` stops, an object
//! that lists every record written since the previous digest (key, seq,
//! SHA-256, time), names the previous digest's signature, and is signed
//! with the installation's Ed25519 key. Stored as an envelope whose
//! `payload` is the exact signed text, so verification never depends on
//! re-serialising JSON the same way.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::signing::{Keyring, PublicKey};
use super::HistoryError;

pub const DIGEST_FORMAT: u32 = 1;

/// Why a digest was written, for readers of the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DigestReason {
    /// `history.digest_every` passed (written with or without new records).
    Interval,
    /// A recording command (`plan --record`, `apply --record`) ended.
    Run,
    /// `plumb serve` stopped.
    Stop,
    /// The installation rotated its key; this digest, signed by the old
    /// key, announces the new one.
    Rotation,
}

/// One record a digest vouches for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub seq: u64,
    pub key: String,
    pub sha256: String,
    pub recorded_at: DateTime<Utc>,
}

/// What a digest says.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Digest {
    pub format_version: u32,
    pub target: String,
    /// Position in the target's digest chain, from 1.
    pub seq: u64,
    pub written_at: DateTime<Utc>,
    pub reason: DigestReason,
    /// Every record after `previous_last_record_seq`, in order.
    pub records: Vec<Entry>,
    /// The last record seq the previous digest vouched for (0 for none):
    /// the records of consecutive digests join without a gap.
    pub previous_last_record_seq: u64,
    /// The head of the record chain this digest vouches through, and its
    /// hash, so that a digest with no new records still pins the head.
    pub last_record_seq: u64,
    pub last_record_sha256: Option<String>,
    /// The previous digest's signature (base64) and time; None for the
    /// first digest of a chain.
    pub previous_signature: Option<String>,
    pub previous_written_at: Option<DateTime<Utc>>,
    /// The public key that signs this digest (base64).
    pub signer: String,
    /// A key that signs the digests after this one (rotation), announced
    /// under the old key's signature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_signer: Option<String>,
}

/// The stored form: the signed text and its signature.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Envelope {
    pub payload: String,
    /// Ed25519 signature of `payload`'s bytes, base64.
    pub signature: String,
    /// The signer's key id, for people reading the store.
    pub key_id: String,
}

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

impl Digest {
    /// Signs the digest with `keyring`'s current key: the bytes to store
    /// and the signature (base64) the next digest must name.
    pub fn seal(&self, keyring: &Keyring) -> Result<(Vec<u8>, String), HistoryError> {
        use base64::Engine as _;
        let payload = serde_json::to_string(self).map_err(|e| HistoryError::Record {
            key: super::record::digest_key(&self.target, self.seq),
            message: e.to_string(),
        })?;
        let signature = B64.encode(keyring.sign(payload.as_bytes()));
        let envelope = Envelope {
            payload,
            signature: signature.clone(),
            key_id: keyring.public().id(),
        };
        let bytes = serde_json::to_vec(&envelope).map_err(|e| HistoryError::Record {
            key: super::record::digest_key(&self.target, self.seq),
            message: e.to_string(),
        })?;
        Ok((bytes, signature))
    }
}

/// A digest read back: the envelope and what it says, with no judgement of
/// its signature yet (that needs the keys the verifier trusts).
pub struct Opened {
    pub envelope: Envelope,
    pub digest: Digest,
    pub signer: Option<PublicKey>,
    pub signature: Vec<u8>,
}

impl Opened {
    pub fn parse(bytes: &[u8]) -> Result<Opened, String> {
        use base64::Engine as _;
        let envelope: Envelope = serde_json::from_slice(bytes).map_err(|e| format!("not a digest envelope: {e}"))?;
        let digest: Digest =
            serde_json::from_str(&envelope.payload).map_err(|e| format!("the signed payload is not a digest: {e}"))?;
        let signature = B64
            .decode(&envelope.signature)
            .map_err(|e| format!("the signature is not base64: {e}"))?;
        let signer = PublicKey::from_base64(&digest.signer);
        Ok(Opened {
            envelope,
            digest,
            signer,
            signature,
        })
    }

    /// Whether the signature is good for the key the digest names.
    pub fn signature_holds(&self) -> bool {
        self.signer
            .as_ref()
            .is_some_and(|key| key.verifies(self.envelope.payload.as_bytes(), &self.signature))
    }
}
