//! Where desired state comes from: a Git repository fetched into a cache
//! under `state_dir` and checked out at one commit, or a plain directory.
//! Every plan records what was audited (URL, ref, commit, author, subject).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::SourceSpec;

pub mod git;

/// What was audited, as recorded in every plan and history record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceInfo {
    pub url: String,
    #[serde(rename = "ref")]
    pub reference: Option<String>,
    pub commit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
}

/// A tree on disk holding the desired state at one commit.
#[derive(Debug, Clone)]
pub struct Checkout {
    pub root: PathBuf,
    pub info: SourceInfo,
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The repository could not be reached or read (network, auth, not a
    /// repository). `url` never carries credentials.
    #[error("fetching {url} (ref {reference}): {message}")]
    Fetch {
        url: String,
        reference: String,
        message: String,
    },
    #[error("ref {reference:?} not found in {url} (no branch, tag or commit of that name)")]
    UnknownRef { url: String, reference: String },
    #[error("{message}")]
    Auth { message: String },
    #[error("source directory {}: {message}", path.display())]
    Dir { path: PathBuf, message: String },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Makes the desired state of `spec` available on disk. `reference`
/// overrides the configured Git ref (`plan --ref`); it is ignored for a
/// plain directory.
pub fn checkout(spec: &SourceSpec, reference: Option<&str>, state_dir: &Path) -> Result<Checkout, SourceError> {
    match (&spec.git, &spec.dir) {
        (Some(git), _) => git::checkout(git, reference.unwrap_or(&git.reference), state_dir),
        (None, Some(dir)) => checkout_dir(dir),
        (None, None) => Err(SourceError::Dir {
            path: PathBuf::new(),
            message: "no source configured".into(),
        }),
    }
}

/// A plain directory: audited as it is, with no commit.
pub fn checkout_dir(dir: &Path) -> Result<Checkout, SourceError> {
    if !dir.is_dir() {
        return Err(SourceError::Dir {
            path: dir.to_path_buf(),
            message: "does not exist or is not a directory".into(),
        });
    }
    Ok(Checkout {
        root: dir.to_path_buf(),
        info: SourceInfo {
            url: dir.display().to_string(),
            reference: None,
            commit: None,
            author: None,
            subject: None,
        },
    })
}

pub use git::redact_url;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_credentials_only() {
        assert_eq!(
            redact_url("https://bob:s3cret@git.example.com/a.git"),
            "https://git.example.com/a.git"
        );
        assert_eq!(
            redact_url("https://git.example.com/a@b.git"),
            "https://git.example.com/a@b.git"
        );
        assert_eq!(redact_url("git@github.com:acme/ops.git"), "git@github.com:acme/ops.git");
    }

    #[test]
    fn missing_directory_is_a_clear_error() {
        let err = checkout_dir(Path::new("/definitely/not/here")).unwrap_err();
        assert!(err.to_string().contains("/definitely/not/here"), "{err}");
    }
}
