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
    /// A symbolic link in the desired state leads out of the source (or
    /// nowhere): following it would show a file the source does not hold.
    #[error(
        "desired state: {} is a symbolic link to {}, which {}; plumb reads desired state only inside the source",
        link.display(),
        points_to.display(),
        why
    )]
    Escape {
        link: PathBuf,
        points_to: PathBuf,
        why: String,
    },
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

/// Checks that nothing below `dir` leads out of `root`: every symbolic link
/// must resolve to something inside `root` (links inside are followed, as
/// a Git checkout has them), and `dir` itself must be inside it. Hidden
/// entries are skipped, as providers never read them. Run on every audit,
/// whatever the source, because a plain directory (a pull request's
/// checkout in CI) is not confined the way plumb's own Git checkouts are.
pub fn confine(root: &Path, dir: &Path) -> Result<(), SourceError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| SourceError::Io { path, source }
    };
    let canonical_root = std::fs::canonicalize(root).map_err(io(root))?;
    let shown = |path: &Path| path.strip_prefix(root).unwrap_or(path).to_path_buf();
    let start = std::fs::canonicalize(dir).map_err(io(dir))?;
    if !start.starts_with(&canonical_root) {
        return Err(SourceError::Escape {
            link: shown(dir),
            points_to: start,
            why: "is outside the source".into(),
        });
    }
    let mut visited = std::collections::HashSet::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        let canonical = std::fs::canonicalize(&current).map_err(io(&current))?;
        if !visited.insert(canonical) {
            continue;
        }
        for entry in std::fs::read_dir(&current).map_err(io(&current))? {
            let entry = entry.map_err(io(&current))?;
            if entry.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            let path = entry.path();
            let file_type = entry.file_type().map_err(io(&path))?;
            if file_type.is_dir() {
                pending.push(path);
            } else if file_type.is_symlink() {
                let points_to = std::fs::read_link(&path).map_err(io(&path))?;
                match std::fs::canonicalize(&path) {
                    Ok(target) if target.starts_with(&canonical_root) => {
                        if target.is_dir() {
                            pending.push(path);
                        }
                    }
                    Ok(_) => {
                        return Err(SourceError::Escape {
                            link: shown(&path),
                            points_to,
                            why: "is outside the source".into(),
                        })
                    }
                    Err(e) => {
                        return Err(SourceError::Escape {
                            link: shown(&path),
                            points_to,
                            why: format!("leads nowhere ({e})"),
                        })
                    }
                }
            }
        }
    }
    Ok(())
}

pub use git::redact_url;

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn confine_allows_links_inside_and_names_links_out() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret.yaml"), "token: x\n").unwrap();
        let root = tempfile::tempdir().unwrap();
        let app = root.path().join("app");
        std::fs::create_dir_all(app.join("sub")).unwrap();
        std::fs::write(root.path().join("shared.yaml"), "id: a\n").unwrap();
        std::os::unix::fs::symlink("../shared.yaml", app.join("shared.yaml")).unwrap();
        std::os::unix::fs::symlink("..", app.join("sub/up")).unwrap();
        confine(root.path(), &app).unwrap();

        let secret = outside.path().join("secret.yaml");
        std::os::unix::fs::symlink(&secret, app.join("sub/cm.yaml")).unwrap();
        let error = confine(root.path(), &app).unwrap_err().to_string();
        assert!(error.contains("app/sub/cm.yaml is a symbolic link to"), "{error}");
        assert!(error.contains("outside the source"), "{error}");
        std::fs::remove_file(app.join("sub/cm.yaml")).unwrap();

        // A linked directory out of the root is refused too, and a path
        // that resolves outside.
        std::os::unix::fs::symlink(outside.path(), app.join("elsewhere")).unwrap();
        assert!(confine(root.path(), &app).is_err());
        assert!(confine(root.path(), &app.join("elsewhere")).is_err());
        std::fs::remove_file(app.join("elsewhere")).unwrap();
        std::os::unix::fs::symlink("nowhere", app.join("dangling")).unwrap();
        let error = confine(root.path(), &app).unwrap_err().to_string();
        assert!(error.contains("leads nowhere"), "{error}");
    }

    #[test]
    fn redacts_query_string_secrets() {
        assert_eq!(
            redact_url("https://gitlab.example.com/ops/config.git?private_token=glpat-XYZ&ref=main#frag"),
            "https://gitlab.example.com/ops/config.git?private_token=REDACTED&ref=REDACTED#frag"
        );
        assert_eq!(redact_url("https://u:p@h/x?flag"), "https://h/x?flag");
    }

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
