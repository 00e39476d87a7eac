//! Git sources: a bare cache repository per URL under `state_dir`, fetched
//! incrementally on every run, and a materialised tree per commit.
//!
//! Layout below `state_dir`:
//!
//! ```text
//! git/<first 16 hex of sha256(url without credentials)>.git   bare cache
//! git/<same>.lock                                              held while fetching
//! checkouts/<commit hex>/                                      one tree per commit
//! ```
//!
//! Every fetch asks for `+refs/heads/*:refs/remotes/origin/*` and
//! `+refs/tags/*:refs/tags/*` with pruning, so the cache mirrors the origin's
//! branches and tags. Nothing about the remote (in particular no URL with
//! credentials) is written to the cache's configuration: the fetch uses an
//! anonymous remote.
//!
//! All functions here block (network and disk); call them from a blocking
//! context (`tokio::task::spawn_blocking`).

use std::cell::{Cell, RefCell};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Once;
use std::time::{Duration, Instant, SystemTime};

use git2::{
    AutotagOption, CertificateCheckStatus, Cred, CredentialType, ErrorClass, ErrorCode, FetchOptions, FetchPrune,
    ObjectType, Oid, ProxyOptions, RemoteCallbacks, Repository,
};
use sha2::{Digest, Sha256};
use tracing::{debug, info, warn};

use super::{Checkout, SourceError, SourceInfo};
use crate::config::GitSpec;

/// How many materialised checkouts are kept below `state_dir/checkouts`
/// (the most recently used ones).
pub const KEEP_CHECKOUTS: usize = 5;

/// User name sent with a token when `auth.username` is not given.
pub const DEFAULT_TOKEN_USERNAME: &str = "x-access-token";

const HEADS: &str = "+refs/heads/*:refs/remotes/origin/*";
const TAGS: &str = "+refs/tags/*:refs/tags/*";

/// Connecting to a Git server gives up after this long.
const CONNECT_TIMEOUT_MS: i32 = 10_000;
/// A single read from a Git server gives up after this long.
const SERVER_TIMEOUT_MS: i32 = 300_000;
/// How long to wait for another process that is fetching into the same cache.
const LOCK_WAIT: Duration = Duration::from_secs(600);
/// A lock file older than this is taken to be left over from a crash.
const LOCK_STALE: Duration = Duration::from_secs(1800);
/// Temporary checkout directories older than this are left over from a crash.
const TMP_STALE: Duration = Duration::from_secs(3600);

/// Fetches `spec.url` into the cache below `state_dir` and checks out
/// `reference` (a branch, a tag or a commit id, full or abbreviated) at
/// `<state_dir>/checkouts/<commit>/`.
pub fn checkout(spec: &GitSpec, reference: &str, state_dir: &Path) -> Result<Checkout, SourceError> {
    let src = Source::new(spec, reference);
    let (repo, oid) = prepare(&src, state_dir, false)?;
    let info = source_info(&src, &repo, oid)?;
    let root = materialise(&src, &repo, oid, state_dir)?;
    Ok(Checkout { root, info })
}

/// Fetches and resolves `reference` without writing a tree: what
/// [`checkout`] would audit.
pub fn resolve(spec: &GitSpec, reference: &str, state_dir: &Path) -> Result<SourceInfo, SourceError> {
    let src = Source::new(spec, reference);
    let (repo, oid) = prepare(&src, state_dir, false)?;
    source_info(&src, &repo, oid)
}

/// Checks out exactly `commit` (full or abbreviated hex), fetching only if
/// the cache does not hold it yet. Used by `apply --plan` to apply the
/// commit a saved plan was made at. `info.reference` is the commit as given.
pub fn checkout_commit(spec: &GitSpec, commit: &str, state_dir: &Path) -> Result<Checkout, SourceError> {
    let src = Source::new(spec, commit);
    if !is_hex(commit) {
        return Err(src.unknown_ref());
    }
    let (repo, oid) = prepare(&src, state_dir, true)?;
    let info = source_info(&src, &repo, oid)?;
    let root = materialise(&src, &repo, oid, state_dir)?;
    Ok(Checkout { root, info })
}

/// The bare cache repository for `url` below `state_dir`.
pub fn cache_path(url: &str, state_dir: &Path) -> PathBuf {
    let digest = Sha256::digest(redact_url(url).as_bytes());
    let key = hex::encode(digest);
    state_dir.join("git").join(format!("{}.git", &key[..16]))
}

/// `url` without any user information (`https://user:token@host/x` →
/// `https://host/x`), for messages, logs and plans. scp-like
/// (`git@host:path`) and local paths carry no secret and are returned as
/// they are.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let host = match authority.rfind('@') {
        Some(at) => &authority[at + 1..],
        None => authority,
    };
    format!(
        "{}{host}{}",
        &url[..scheme_end + 3],
        redact_query(&rest[authority_end..])
    )
}

/// Every query parameter's value replaced: Git hosts take tokens there too
/// (`?private_token=`, `?access_token=`), and any parameter may be one.
fn redact_query(path_and_more: &str) -> String {
    let Some(q) = path_and_more.find('?') else {
        return path_and_more.to_string();
    };
    let (path, rest) = path_and_more.split_at(q + 1);
    let (query, fragment) = match rest.find('#') {
        Some(h) => rest.split_at(h),
        None => (rest, ""),
    };
    let redacted: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, value)) if !value.is_empty() => format!("{name}=REDACTED"),
            _ => pair.to_string(),
        })
        .collect();
    format!("{path}{}{fragment}", redacted.join("&"))
}

/// The password or token embedded in a URL's user information, if any.
fn url_password(url: &str) -> Option<&str> {
    let rest = &url[url.find("://")? + 3..];
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let userinfo = &authority[..authority.rfind('@')?];
    let (_, password) = userinfo.split_once(':')?;
    (!password.is_empty()).then_some(password)
}

/// One request: the configured source and the reference asked for, with
/// the credential-free URL used in every message.
struct Source<'a> {
    spec: &'a GitSpec,
    url: String,
    reference: String,
}

impl<'a> Source<'a> {
    fn new(spec: &'a GitSpec, reference: &str) -> Self {
        Source {
            spec,
            url: redact_url(&spec.url),
            reference: reference.to_string(),
        }
    }

    /// `message` with the raw URL and any embedded password removed.
    fn scrub(&self, message: &str) -> String {
        let mut out = message.replace(&self.spec.url, &self.url);
        if let Some(password) = url_password(&self.spec.url) {
            out = out.replace(password, "***");
        }
        // Query parameter values, which may be tokens, wherever they show.
        if let Some((_, query)) = self.spec.url.split_once('?') {
            let query = query.split('#').next().unwrap_or(query);
            for value in query.split('&').filter_map(|p| p.split_once('=').map(|(_, v)| v)) {
                if value.len() >= 4 {
                    out = out.replace(value, "REDACTED");
                }
            }
        }
        out
    }

    fn fetch_error(&self, message: &str) -> SourceError {
        SourceError::Fetch {
            url: self.url.clone(),
            reference: self.reference.clone(),
            message: self.scrub(message),
        }
    }

    fn git_error(&self, error: &git2::Error) -> SourceError {
        self.fetch_error(error.message())
    }

    fn unknown_ref(&self) -> SourceError {
        SourceError::UnknownRef {
            url: self.url.clone(),
            reference: self.reference.clone(),
        }
    }
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> SourceError + '_ {
    move |source| SourceError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Opens (creating and fetching as needed) the cache and finds the commit
/// for `src.reference`. With `commit_only` the reference must be a commit id.
fn prepare(src: &Source, state_dir: &Path, commit_only: bool) -> Result<(Repository, Oid), SourceError> {
    let reference = src.reference.as_str();
    if reference.trim().is_empty() {
        return Err(src.unknown_ref());
    }
    let path = cache_path(&src.spec.url, state_dir);
    let is_commit_id = is_hex(reference) && (commit_only || is_full_hex(reference));

    // A commit never changes: if the cache has it, there is nothing to fetch.
    if is_commit_id {
        if let Ok(repo) = Repository::open_bare(&path) {
            if let Ok(Some(oid)) = find_commit_by_id(&repo, reference) {
                debug!(url = %src.url, commit = %oid, "commit already in the Git cache; not fetching");
                return Ok((repo, oid));
            }
        }
    }

    let repo = {
        let _lock = FetchLock::acquire(&lock_path(&path))?;
        let repo = open_or_init(src, &path)?;
        fetch(src, &repo, &[HEADS, TAGS], true)?;
        repo
    };

    let lookup = |repo: &Repository| {
        if commit_only {
            find_commit_by_id(repo, reference)
        } else {
            resolve_in(repo, reference)
        }
    };
    if let Some(oid) = lookup(&repo).map_err(|e| src.fetch_error(&e))? {
        info!(url = %src.url, reference, commit = %oid, "fetched Git source");
        return Ok((repo, oid));
    }
    // A full commit id that no branch or tag reaches: ask for it by id
    // (servers that allow it, such as GitHub, send it).
    if is_full_hex(reference) {
        let _lock = FetchLock::acquire(&lock_path(&path))?;
        match fetch(src, &repo, &[reference], false) {
            Ok(()) => {
                if let Some(oid) = find_commit_by_id(&repo, reference).map_err(|e| src.fetch_error(&e))? {
                    info!(url = %src.url, reference, commit = %oid, "fetched Git source");
                    return Ok((repo, oid));
                }
            }
            Err(e) => {
                debug!(url = %src.url, reference, error = %e, "fetching a commit by id failed")
            }
        }
    }
    Err(src.unknown_ref())
}

fn lock_path(cache: &Path) -> PathBuf {
    cache.with_extension("lock")
}

fn open_or_init(src: &Source, path: &Path) -> Result<Repository, SourceError> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(io_error(parent))?;
    }
    if path.exists() {
        match Repository::open_bare(path) {
            Ok(repo) => return Ok(repo),
            Err(e) => {
                warn!(path = %path.display(), error = e.message(), "Git cache is damaged; recreating it");
                fs::remove_dir_all(path).map_err(io_error(path))?;
            }
        }
    }
    debug!(path = %path.display(), url = %src.url, "creating Git cache");
    Repository::init_bare(path).map_err(|e| src.git_error(&e))
}

/// What credentials a fetch offers. Holds the token itself, so it has no
/// `Debug`.
enum Auth {
    None,
    Token {
        username: String,
        token: String,
        var: String,
    },
    SshKey {
        key: PathBuf,
    },
}

fn prepare_auth(spec: &GitSpec) -> Result<Auth, SourceError> {
    let Some(auth) = &spec.auth else {
        return Ok(Auth::None);
    };
    if let Some(var) = &auth.token_env {
        let token = match std::env::var(var) {
            Ok(token) if !token.is_empty() => token,
            Ok(_) => {
                return Err(SourceError::Auth {
                    message: format!("source.git.auth.token_env: environment variable {var} is empty"),
                })
            }
            Err(std::env::VarError::NotPresent) => {
                return Err(SourceError::Auth {
                    message: format!(
                    "source.git.auth.token_env: environment variable {var} is not set (it should hold the Git token)"
                ),
                })
            }
            Err(std::env::VarError::NotUnicode(_)) => {
                return Err(SourceError::Auth {
                    message: format!("source.git.auth.token_env: environment variable {var} is not valid UTF-8"),
                })
            }
        };
        let username = auth
            .username
            .clone()
            .unwrap_or_else(|| DEFAULT_TOKEN_USERNAME.to_string());
        return Ok(Auth::Token {
            username,
            token,
            var: var.clone(),
        });
    }
    if let Some(key) = &auth.ssh_key_file {
        if let Err(e) = fs::File::open(key) {
            return Err(SourceError::Auth {
                message: format!("source.git.auth.ssh_key_file {}: cannot be read: {e}", key.display()),
            });
        }
        return Ok(Auth::SshKey { key: key.clone() });
    }
    Ok(Auth::None)
}

fn set_timeouts() {
    static TIMEOUTS: Once = Once::new();
    TIMEOUTS.call_once(|| {
        // SAFETY: these set two integers in libgit2's global options. The
        // `Once` makes this the only write plumb ever does to them; libgit2
        // reads them only when it opens a connection.
        unsafe {
            if let Err(e) = git2::opts::set_server_connect_timeout_in_milliseconds(CONNECT_TIMEOUT_MS) {
                debug!(error = e.message(), "cannot set the Git connect timeout");
            }
            if let Err(e) = git2::opts::set_server_timeout_in_milliseconds(SERVER_TIMEOUT_MS) {
                debug!(error = e.message(), "cannot set the Git server timeout");
            }
        }
    });
}

/// Fetches `refspecs` from the origin into `repo`.
fn fetch(src: &Source, repo: &Repository, refspecs: &[&str], prune: bool) -> Result<(), SourceError> {
    set_timeouts();
    let auth = prepare_auth(src.spec)?;
    let known_hosts = known_hosts_file(src.spec);
    let port = ssh_port(&src.spec.url);

    // Set by the callbacks, to turn libgit2's terse errors into ours.
    let host_key_error: RefCell<Option<String>> = RefCell::new(None);
    let auth_error: RefCell<Option<String>> = RefCell::new(None);
    let secret_offers = Cell::new(0u32);

    let mut callbacks = RemoteCallbacks::new();
    callbacks.credentials(|_url, username_from_url, allowed| {
        let user = username_from_url.unwrap_or("git");
        let refuse = |message: String| {
            *auth_error.borrow_mut() = Some(message.clone());
            Err(git2::Error::from_str(&message))
        };
        match &auth {
            Auth::Token { username, token, var } if allowed.contains(CredentialType::USER_PASS_PLAINTEXT) => {
                if secret_offers.replace(secret_offers.get() + 1) > 0 {
                    return refuse(format!(
                        "{} refused the token from ${var} (user {username})",
                        src.url
                    ));
                }
                Cred::userpass_plaintext(username, token)
            }
            _ if allowed.contains(CredentialType::USERNAME) => Cred::username(user),
            Auth::SshKey { key } if allowed.contains(CredentialType::SSH_KEY) => {
                if secret_offers.replace(secret_offers.get() + 1) > 0 {
                    return refuse(format!("{} refused the ssh key {} (user {user})", src.url, key.display()));
                }
                Cred::ssh_key(user, None, key, None)
            }
            Auth::None if allowed.contains(CredentialType::SSH_KEY) => {
                if secret_offers.replace(secret_offers.get() + 1) > 0 {
                    return refuse(format!(
                        "{} refused the keys of the ssh agent (user {user}); set source.git.auth.ssh_key_file",
                        src.url
                    ));
                }
                Cred::ssh_key_from_agent(user)
            }
            _ => refuse(format!(
                "{} asks for credentials that are not configured: set source.git.auth.token_env (https) or ssh_key_file (ssh)",
                src.url
            )),
        }
    });
    callbacks.certificate_check(|cert, host| {
        let Some(hostkey) = cert.as_hostkey() else {
            // TLS: libgit2's own verification against the system's CAs decides.
            return Ok(CertificateCheckStatus::CertificatePassthrough);
        };
        let presented = PresentedKey {
            raw: hostkey.hostkey(),
            sha256: hostkey.hash_sha256(),
        };
        match verify_host_key(known_hosts.as_deref(), host, port, &presented) {
            Ok(()) => Ok(CertificateCheckStatus::CertificateOk),
            Err(message) => {
                *host_key_error.borrow_mut() = Some(message.clone());
                Err(git2::Error::from_str(&message))
            }
        }
    });

    let mut proxy = ProxyOptions::new();
    proxy.auto();
    let mut options = FetchOptions::new();
    options
        .remote_callbacks(callbacks)
        .proxy_options(proxy)
        .prune(if prune { FetchPrune::On } else { FetchPrune::Off })
        .update_fetchhead(false)
        .download_tags(AutotagOption::None);

    if let Some(path) = local_path(&src.spec.url) {
        if !path.exists() {
            return Err(src.fetch_error("no such repository: the path does not exist"));
        }
    }
    let mut remote = repo.remote_anonymous(&src.spec.url).map_err(|e| src.git_error(&e))?;
    let started = Instant::now();
    let result = remote.fetch(refspecs, Some(&mut options), None);
    drop(options);
    if let Err(e) = result {
        if let Some(message) = host_key_error.borrow_mut().take() {
            return Err(SourceError::Auth {
                message: src.scrub(&message),
            });
        }
        if let Some(message) = auth_error.borrow_mut().take() {
            return Err(SourceError::Auth {
                message: src.scrub(&message),
            });
        }
        if e.code() == ErrorCode::Auth || (e.class() == ErrorClass::Http && e.message().contains("401")) {
            return Err(SourceError::Auth {
                message: src.scrub(&format!("authentication to {} failed: {}", src.url, e.message())),
            });
        }
        return Err(src.git_error(&e));
    }
    let stats = remote.stats();
    debug!(
        url = %src.url,
        elapsed_ms = started.elapsed().as_millis() as u64,
        received_objects = stats.received_objects(),
        received_bytes = stats.received_bytes(),
        "fetched"
    );
    Ok(())
}

/// The path of a `file://` URL or a local path; `None` for network URLs.
fn local_path(url: &str) -> Option<&Path> {
    if let Some(path) = url.strip_prefix("file://") {
        return Some(Path::new(path));
    }
    crate::config::is_local_path(url).then(|| Path::new(url))
}

/// The commit `reference` names: a branch of the origin, then a tag, then
/// a commit id. `Ok(None)` when nothing matches.
fn resolve_in(repo: &Repository, reference: &str) -> Result<Option<Oid>, String> {
    let candidates = if let Some(branch) = reference.strip_prefix("refs/heads/") {
        vec![format!("refs/remotes/origin/{branch}")]
    } else if reference.starts_with("refs/tags/") {
        vec![reference.to_string()]
    } else {
        vec![
            format!("refs/remotes/origin/{reference}"),
            format!("refs/tags/{reference}"),
        ]
    };
    for name in candidates {
        match repo.find_reference(&name) {
            Ok(found) => {
                let commit = found
                    .peel_to_commit()
                    .map_err(|e| format!("{name} does not point to a commit: {}", e.message()))?;
                return Ok(Some(commit.id()));
            }
            Err(e) if matches!(e.code(), ErrorCode::NotFound | ErrorCode::InvalidSpec) => continue,
            Err(e) => return Err(e.message().to_string()),
        }
    }
    if is_hex(reference) {
        return find_commit_by_id(repo, reference);
    }
    Ok(None)
}

/// The commit whose id is or starts with `hex`.
fn find_commit_by_id(repo: &Repository, hex: &str) -> Result<Option<Oid>, String> {
    match repo.find_object_by_prefix(hex, None) {
        Ok(object) => match object.peel_to_commit() {
            Ok(commit) => Ok(Some(commit.id())),
            Err(_) => Ok(None),
        },
        Err(e) if e.code() == ErrorCode::Ambiguous => {
            Err(format!("abbreviated commit id {hex} is ambiguous; give more digits"))
        }
        Err(_) => Ok(None),
    }
}

fn is_hex(text: &str) -> bool {
    (4..=64).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_hexdigit())
}

fn is_full_hex(text: &str) -> bool {
    (text.len() == 40 || text.len() == 64) && is_hex(text)
}

fn source_info(src: &Source, repo: &Repository, oid: Oid) -> Result<SourceInfo, SourceError> {
    let commit = repo.find_commit(oid).map_err(|e| src.git_error(&e))?;
    let author = commit.author();
    let message = String::from_utf8_lossy(commit.message_bytes()).into_owned();
    let subject = message
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("")
        .to_string();
    Ok(SourceInfo {
        url: src.url.clone(),
        reference: Some(src.reference.clone()),
        commit: Some(oid.to_string()),
        author: Some(format!(
            "{} <{}>",
            String::from_utf8_lossy(author.name_bytes()),
            String::from_utf8_lossy(author.email_bytes())
        )),
        subject: Some(subject),
    })
}

/// Writes the tree of `oid` to `<state_dir>/checkouts/<oid>/` unless it is
/// there already, and drops the least recently used checkouts beyond
/// [`KEEP_CHECKOUTS`].
fn materialise(src: &Source, repo: &Repository, oid: Oid, state_dir: &Path) -> Result<PathBuf, SourceError> {
    let dir = state_dir.join("checkouts");
    fs::create_dir_all(&dir).map_err(io_error(&dir))?;
    let hex = oid.to_string();
    let target = dir.join(&hex);
    if target.is_dir() {
        debug!(commit = %hex, path = %target.display(), "reusing checkout");
        touch(&target);
        prune_checkouts(&dir, &hex);
        return Ok(target);
    }

    let started = Instant::now();
    let tree = repo
        .find_commit(oid)
        .and_then(|c| c.tree())
        .map_err(|e| src.git_error(&e))?;
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".tmp-{hex}-"))
        .tempdir_in(&dir)
        .map_err(io_error(&dir))?;
    let mut symlinks = Vec::new();
    write_tree(src, repo, &tree, tmp.path(), &mut symlinks)?;
    confine_symlinks(tmp.path(), &symlinks)?;

    match fs::rename(tmp.path(), &target) {
        Ok(()) => {
            let _ = tmp.keep();
            touch(&target);
            debug!(
                commit = %hex,
                path = %target.display(),
                elapsed_ms = started.elapsed().as_millis() as u64,
                "checked out"
            );
        }
        // Another process wrote the same commit first: use theirs.
        Err(_) if target.is_dir() => {
            debug!(commit = %hex, "checkout written concurrently by another process; using it");
            drop(tmp);
            touch(&target);
        }
        Err(e) => {
            return Err(SourceError::Io {
                path: target,
                source: e,
            })
        }
    }
    prune_checkouts(&dir, &hex);
    Ok(target)
}

/// Writes `tree` into the existing, empty directory `dir`. Every file and
/// directory is created new (`create_new`, `create_dir`), so a write never
/// follows a symbolic link.
fn write_tree(
    src: &Source,
    repo: &Repository,
    tree: &git2::Tree,
    dir: &Path,
    symlinks: &mut Vec<PathBuf>,
) -> Result<(), SourceError> {
    for entry in tree.iter() {
        let name = entry.name_bytes();
        if name.is_empty() || name == b"." || name == b".." || name.contains(&b'/') || name.contains(&0) {
            return Err(src.fetch_error(&format!(
                "the tree holds an invalid file name {:?}",
                String::from_utf8_lossy(name)
            )));
        }
        if name.eq_ignore_ascii_case(b".git") {
            warn!(path = %dir.display(), "skipping a .git entry in the source tree");
            continue;
        }
        let path = dir.join(file_name(src, name)?);
        match entry.kind() {
            Some(ObjectType::Tree) => {
                fs::create_dir(&path).map_err(io_error(&path))?;
                let subtree = repo.find_tree(entry.id()).map_err(|e| src.git_error(&e))?;
                write_tree(src, repo, &subtree, &path, symlinks)?;
            }
            Some(ObjectType::Blob) => {
                let blob = repo.find_blob(entry.id()).map_err(|e| src.git_error(&e))?;
                let mode = entry.filemode();
                if mode == 0o120000 && write_symlink(blob.content(), &path)? {
                    symlinks.push(path);
                } else {
                    write_file(&path, blob.content(), mode == 0o100755)?;
                }
            }
            Some(ObjectType::Commit) => {
                // A submodule: git leaves an empty directory; so do we.
                warn!(path = %path.display(), "submodules are not fetched; leaving an empty directory");
                fs::create_dir(&path).map_err(io_error(&path))?;
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(unix)]
fn file_name<'n>(_src: &Source, name: &'n [u8]) -> Result<&'n std::ffi::OsStr, SourceError> {
    use std::os::unix::ffi::OsStrExt;
    Ok(std::ffi::OsStr::from_bytes(name))
}

#[cfg(not(unix))]
fn file_name<'n>(src: &Source, name: &'n [u8]) -> Result<&'n std::ffi::OsStr, SourceError> {
    std::str::from_utf8(name)
        .map(std::ffi::OsStr::new)
        .map_err(|_| src.fetch_error(&format!("file name {:?} is not UTF-8", String::from_utf8_lossy(name))))
}

fn write_file(path: &Path, content: &[u8], executable: bool) -> Result<(), SourceError> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if executable { 0o755 } else { 0o644 });
    }
    #[cfg(not(unix))]
    let _ = executable;
    let mut file = options.open(path).map_err(io_error(path))?;
    file.write_all(content).map_err(io_error(path))
}

/// Creates a symbolic link; `false` where the platform has none (the caller
/// then writes the target as a plain file, as git does).
#[cfg(unix)]
fn write_symlink(target: &[u8], path: &Path) -> Result<bool, SourceError> {
    use std::os::unix::ffi::OsStrExt;
    std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(target), path).map_err(io_error(path))?;
    Ok(true)
}

#[cfg(not(unix))]
fn write_symlink(_target: &[u8], _path: &Path) -> Result<bool, SourceError> {
    Ok(false)
}

/// Replaces every symbolic link below `root` that does not resolve to
/// something inside `root` (it points outside, dangles or loops) by a plain
/// file holding the link's text, so that nothing reading the checkout is led
/// out of it.
fn confine_symlinks(root: &Path, symlinks: &[PathBuf]) -> Result<(), SourceError> {
    let root = fs::canonicalize(root).map_err(io_error(root))?;
    loop {
        let mut replaced = false;
        for link in symlinks {
            let is_link = fs::symlink_metadata(link)
                .map(|m| m.file_type().is_symlink())
                .unwrap_or(false);
            if !is_link {
                continue;
            }
            match fs::canonicalize(link) {
                Ok(resolved) if resolved.starts_with(&root) => {}
                _ => {
                    let text = fs::read_link(link).map_err(io_error(link))?;
                    warn!(
                        link = %link.strip_prefix(&root).unwrap_or(link).display(),
                        target = %text.display(),
                        "symbolic link leads outside the checkout or nowhere; written as a plain file"
                    );
                    fs::remove_file(link).map_err(io_error(link))?;
                    write_file(link, text.as_os_str().as_encoded_bytes(), false)?;
                    replaced = true;
                }
            }
        }
        if !replaced {
            return Ok(());
        }
    }
}

/// Marks a checkout as just used (its directory's modification time).
fn touch(dir: &Path) {
    let result = fs::File::open(dir).and_then(|f| f.set_modified(SystemTime::now()));
    if let Err(e) = result {
        debug!(path = %dir.display(), error = %e, "cannot mark checkout as used");
    }
}

/// Deletes checkouts beyond the [`KEEP_CHECKOUTS`] most recently used
/// (never `current`) and temporary directories left by crashes.
fn prune_checkouts(dir: &Path, current: &str) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let now = SystemTime::now();
    let mut checkouts = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Ok(meta) = entry.metadata() else { continue };
        if !meta.is_dir() {
            continue;
        }
        let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
        if name.starts_with(".tmp-") {
            if now.duration_since(modified).unwrap_or_default() > TMP_STALE {
                remove_checkout(&entry.path());
            }
        } else if is_full_hex(&name) && name != current {
            checkouts.push((modified, name, entry.path()));
        }
    }
    checkouts.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    for (_, _, path) in checkouts.into_iter().skip(KEEP_CHECKOUTS.saturating_sub(1)) {
        remove_checkout(&path);
    }
}

fn remove_checkout(path: &Path) {
    match fs::remove_dir_all(path) {
        Ok(()) => debug!(path = %path.display(), "removed old checkout"),
        Err(e) => warn!(path = %path.display(), error = %e, "cannot remove old checkout"),
    }
}

/// An exclusive lock on a cache, held while fetching: a file created with
/// `create_new`, holding `pid@host`, removed on drop. A lock whose process
/// is gone (same host) or that is older than [`LOCK_STALE`] is broken.
struct FetchLock {
    path: PathBuf,
}

impl FetchLock {
    fn acquire(path: &Path) -> Result<FetchLock, SourceError> {
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(io_error(parent))?;
        }
        let started = Instant::now();
        let mut waited = false;
        loop {
            match fs::OpenOptions::new().write(true).create_new(true).open(path) {
                Ok(mut file) => {
                    let _ = write!(file, "{}@{}", std::process::id(), host_name());
                    return Ok(FetchLock {
                        path: path.to_path_buf(),
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    if let Some(owner) = stale_lock(path) {
                        warn!(path = %path.display(), owner, "breaking a stale Git cache lock");
                        // Only remove what was judged stale, not a fresh lock
                        // another process took meanwhile.
                        if fs::read_to_string(path).ok().as_deref() == Some(owner.as_str()) {
                            let _ = fs::remove_file(path);
                        }
                        continue;
                    }
                    if started.elapsed() > LOCK_WAIT {
                        return Err(SourceError::Io {
                            path: path.to_path_buf(),
                            source: std::io::Error::new(
                                std::io::ErrorKind::TimedOut,
                                "another plumb process has been fetching into this cache for too long \
                                 (delete the lock file if no plumb is running)",
                            ),
                        });
                    }
                    if !waited {
                        debug!(path = %path.display(), "waiting for another process fetching into the Git cache");
                        waited = true;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => {
                    return Err(SourceError::Io {
                        path: path.to_path_buf(),
                        source: e,
                    })
                }
            }
        }
    }
}

impl Drop for FetchLock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// The lock's content if the lock is stale.
fn stale_lock(path: &Path) -> Option<String> {
    let owner = fs::read_to_string(path).ok()?;
    if let Some((pid, host)) = owner.split_once('@') {
        if host == host_name() && Path::new("/proc/self").exists() {
            if let Ok(pid) = pid.parse::<u32>() {
                if !Path::new(&format!("/proc/{pid}")).exists() {
                    return Some(owner);
                }
            }
        }
    }
    let modified = fs::metadata(path).and_then(|m| m.modified()).ok()?;
    let age = SystemTime::now().duration_since(modified).unwrap_or_default();
    (age > LOCK_STALE).then_some(owner)
}

fn host_name() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------
// ssh host keys

/// The configured known_hosts file, else `~/.ssh/known_hosts` if it exists.
fn known_hosts_file(spec: &GitSpec) -> Option<PathBuf> {
    if let Some(file) = spec.auth.as_ref().and_then(|a| a.known_hosts_file.clone()) {
        return Some(file);
    }
    let home = std::env::var_os("HOME")?;
    let file = Path::new(&home).join(".ssh").join("known_hosts");
    file.is_file().then_some(file)
}

/// The ssh port of an `ssh://` URL; 22 for everything else.
fn ssh_port(url: &str) -> u16 {
    let Some(scheme_end) = url.find("://") else {
        return 22;
    };
    let rest = &url[scheme_end + 3..];
    let authority = &rest[..rest.find('/').unwrap_or(rest.len())];
    let host_port = authority.rsplit_once('@').map(|(_, h)| h).unwrap_or(authority);
    let port = if let Some(end) = host_port.find(']') {
        host_port[end + 1..].strip_prefix(':')
    } else {
        host_port.rsplit_once(':').map(|(_, p)| p)
    };
    port.and_then(|p| p.parse().ok()).unwrap_or(22)
}

/// The host key a server presented.
struct PresentedKey<'a> {
    /// The key blob, as in a known_hosts line once base64-decoded.
    raw: Option<&'a [u8]>,
    sha256: Option<&'a [u8; 32]>,
}

impl PresentedKey<'_> {
    fn matches(&self, blob: &[u8]) -> bool {
        match (self.raw, self.sha256) {
            (Some(raw), _) => raw == blob,
            (None, Some(sha)) => Sha256::digest(blob).as_slice() == sha.as_slice(),
            (None, None) => false,
        }
    }
}

fn verify_host_key(file: Option<&Path>, host: &str, port: u16, key: &PresentedKey) -> Result<(), String> {
    let Some(file) = file else {
        return Err(format!(
            "host key for {host} cannot be verified: set auth.known_hosts_file (there is no ~/.ssh/known_hosts either)"
        ));
    };
    let text = fs::read_to_string(file).map_err(|e| {
        format!(
            "host key for {host} cannot be verified: cannot read {}: {e}",
            file.display()
        )
    })?;
    match check_known_hosts(&text, host, port, key) {
        HostKeyCheck::Match => Ok(()),
        HostKeyCheck::Revoked => Err(format!("host key for {host} is marked @revoked in {}", file.display())),
        HostKeyCheck::Mismatch => Err(format!(
            "host key for {host} does not match the one in {} (has the host key changed, or is someone in between?)",
            file.display()
        )),
        HostKeyCheck::NotFound { hashed } => Err(format!(
            "host key for {host} cannot be verified: {} has no entry for {}{}",
            file.display(),
            host_pattern_name(host, port),
            if hashed {
                " (it has hashed |1| entries, which plumb does not read: add a plain line, e.g. from `ssh-keyscan`)"
            } else {
                ""
            }
        )),
    }
}

#[derive(Debug, PartialEq)]
enum HostKeyCheck {
    Match,
    Mismatch,
    Revoked,
    NotFound { hashed: bool },
}

fn host_pattern_name(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_string()
    } else {
        format!("[{host}]:{port}")
    }
}

/// Checks a presented key against OpenSSH known_hosts text: lines of
/// `[@marker] host[,host2…] keytype base64key [comment]`, host patterns
/// with `*`/`?` wildcards, `!` negation and `[host]:port`.
fn check_known_hosts(text: &str, host: &str, port: u16, key: &PresentedKey) -> HostKeyCheck {
    let name = host_pattern_name(host, port).to_ascii_lowercase();
    let mut hashed = false;
    let mut found_host = false;
    let mut matched = false;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.split_whitespace();
        let (marker, hosts) = match fields.next() {
            Some(m) if m.starts_with('@') => (Some(m), fields.next()),
            first => (None, first),
        };
        let (Some(hosts), Some(_keytype), Some(b64)) = (hosts, fields.next(), fields.next()) else {
            continue;
        };
        if hosts.starts_with("|1|") {
            hashed = true;
            continue;
        }
        if !hosts_match(hosts, &name) {
            continue;
        }
        let Some(blob) = base64_decode(b64) else {
            continue;
        };
        match marker {
            Some("@revoked") => {
                if key.matches(&blob) {
                    return HostKeyCheck::Revoked;
                }
            }
            Some(_) => {} // @cert-authority: certificates are not supported
            None => {
                found_host = true;
                matched |= key.matches(&blob);
            }
        }
    }
    if matched {
        HostKeyCheck::Match
    } else if found_host {
        HostKeyCheck::Mismatch
    } else {
        HostKeyCheck::NotFound { hashed }
    }
}

/// Whether a comma-separated host pattern list matches `name` (lowercase):
/// some positive pattern matches and no negated one does.
fn hosts_match(patterns: &str, name: &str) -> bool {
    let mut positive = false;
    for pattern in patterns.split(',') {
        let pattern = pattern.to_ascii_lowercase();
        if let Some(negated) = pattern.strip_prefix('!') {
            if glob_match(negated.as_bytes(), name.as_bytes()) {
                return false;
            }
        } else if glob_match(pattern.as_bytes(), name.as_bytes()) {
            positive = true;
        }
    }
    positive
}

fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some((b'*', rest)) => (0..=text.len()).any(|i| glob_match(rest, &text[i..])),
        Some((b'?', rest)) => !text.is_empty() && glob_match(rest, &text[1..]),
        Some((c, rest)) => text.first() == Some(c) && glob_match(rest, &text[1..]),
    }
}

/// Standard base64 (with or without padding); `None` if malformed.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    fn value(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    }
    let bytes = text.trim_end_matches('=').as_bytes();
    if bytes.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut acc = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            acc |= value(c)? << (18 - 6 * i);
        }
        let n = chunk.len() * 6 / 8;
        out.extend_from_slice(&acc.to_be_bytes()[1..1 + n]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    use crate::config::GitAuth;

    fn git(dir: &Path, args: &[&str]) -> String {
        let out = Command::new("git")
            .args(args)
            .current_dir(dir)
            .env("GIT_AUTHOR_NAME", "Ada Lovelace")
            .env("GIT_AUTHOR_EMAIL", "ada@example.com")
            .env("GIT_COMMITTER_NAME", "Ada Lovelace")
            .env("GIT_COMMITTER_EMAIL", "ada@example.com")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    fn commit_file(repo: &Path, file: &str, content: &str, message: &str) -> String {
        let path = repo.join(file);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, content).unwrap();
        git(repo, &["add", "-A"]);
        git(repo, &["commit", "-q", "-m", message]);
        git(repo, &["rev-parse", "HEAD"])
    }

    /// An origin with: main (two commits), branch `feature`, annotated tag
    /// `v1` and lightweight tag `light` on the first commit.
    struct Origin {
        _dir: tempfile::TempDir,
        path: PathBuf,
        first: String,
        second: String,
        feature: String,
    }

    fn origin() -> Origin {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("origin");
        fs::create_dir(&path).unwrap();
        git(&path, &["init", "-q", "-b", "main"]);
        let first = commit_file(&path, "apps/app.yaml", "version: 1\n", "First commit\n\nWith a body.");
        git(&path, &["tag", "-a", "v1", "-m", "release 1"]);
        git(&path, &["tag", "light"]);
        git(&path, &["checkout", "-q", "-b", "feature"]);
        let feature = commit_file(&path, "apps/feature.yaml", "f: 1\n", "Feature work");
        git(&path, &["checkout", "-q", "main"]);
        let second = commit_file(&path, "apps/app.yaml", "version: 2\n", "Second commit");
        Origin {
            _dir: dir,
            path,
            first,
            second,
            feature,
        }
    }

    fn spec(url: &str) -> GitSpec {
        GitSpec {
            url: url.to_string(),
            reference: "main".into(),
            auth: None,
            poll: None,
        }
    }

    #[test]
    fn checks_out_branch_with_author_and_subject() {
        let origin = origin();
        let state = tempfile::tempdir().unwrap();
        let spec = spec(origin.path.to_str().unwrap());
        let co = checkout(&spec, "main", state.path()).unwrap();
        assert_eq!(co.root, state.path().join("checkouts").join(&origin.second));
        assert_eq!(
            fs::read_to_string(co.root.join("apps/app.yaml")).unwrap(),
            "version: 2\n"
        );
        assert!(!co.root.join("apps/feature.yaml").exists());
        assert_eq!(co.info.commit.as_deref(), Some(origin.second.as_str()));
        assert_eq!(co.info.reference.as_deref(), Some("main"));
        assert_eq!(co.info.author.as_deref(), Some("Ada Lovelace <ada@example.com>"));
        assert_eq!(co.info.subject.as_deref(), Some("Second commit"));
        assert_eq!(co.info.url, spec.url);

        let co = checkout(&spec, "feature", state.path()).unwrap();
        assert_eq!(co.info.commit.as_deref(), Some(origin.feature.as_str()));
        assert!(co.root.join("apps/feature.yaml").is_file());
        let co = checkout(&spec, "refs/heads/feature", state.path()).unwrap();
        assert_eq!(co.info.commit.as_deref(), Some(origin.feature.as_str()));
    }

    #[test]
    fn checks_out_tags_and_commit_ids() {
        let origin = origin();
        let state = tempfile::tempdir().unwrap();
        let spec = spec(origin.path.to_str().unwrap());
        for reference in ["v1", "light", "refs/tags/v1", origin.first.as_str(), &origin.first[..7]] {
            let co = checkout(&spec, reference, state.path()).unwrap();
            assert_eq!(co.info.commit.as_deref(), Some(origin.first.as_str()), "{reference}");
            assert_eq!(co.info.reference.as_deref(), Some(reference));
            assert_eq!(co.info.subject.as_deref(), Some("First commit"), "{reference}");
            assert_eq!(
                fs::read_to_string(co.root.join("apps/app.yaml")).unwrap(),
                "version: 1\n"
            );
        }
        let info = resolve(&spec, &origin.second[..10], state.path()).unwrap();
        assert_eq!(info.commit.as_deref(), Some(origin.second.as_str()));
    }

    #[test]
    fn cache_is_reused_and_fetch_is_incremental() {
        let origin = origin();
        let state = tempfile::tempdir().unwrap();
        let spec = spec(origin.path.to_str().unwrap());
        let first = checkout(&spec, "main", state.path()).unwrap();
        let cache = cache_path(&spec.url, state.path());
        assert!(cache.join("HEAD").is_file(), "bare cache at {}", cache.display());
        assert!(cache.file_name().unwrap().to_str().unwrap().len() == 16 + 4);

        // Warm run: same commit, same tree, nothing rewritten.
        let marker = first.root.join("marker");
        fs::write(&marker, "x").unwrap();
        let again = checkout(&spec, "main", state.path()).unwrap();
        assert_eq!(again.root, first.root);
        assert!(marker.exists(), "an existing checkout is reused, not rewritten");

        let third = commit_file(&origin.path, "apps/app.yaml", "version: 3\n", "Third");
        let co = checkout(&spec, "main", state.path()).unwrap();
        assert_eq!(co.info.commit.as_deref(), Some(third.as_str()));
        assert_eq!(
            fs::read_to_string(co.root.join("apps/app.yaml")).unwrap(),
            "version: 3\n"
        );
        assert_eq!(cache_path(&spec.url, state.path()), cache);

        // Deleted branches are pruned from the cache.
        git(&origin.path, &["branch", "-D", "feature"]);
        checkout(&spec, "main", state.path()).unwrap();
        let err = checkout(&spec, "feature", state.path()).unwrap_err();
        assert!(matches!(err, SourceError::UnknownRef { .. }), "{err}");
    }

    #[test]
    fn checkout_commit_uses_the_cache_and_fetches_when_needed() {
        let origin = origin();
        let state = tempfile::tempdir().unwrap();
        let spec = spec(origin.path.to_str().unwrap());
        // Not cached yet: fetches.
        let co = checkout_commit(&spec, &origin.first, state.path()).unwrap();
        assert_eq!(co.info.commit.as_deref(), Some(origin.first.as_str()));
        assert_eq!(co.info.reference.as_deref(), Some(origin.first.as_str()));
        // Cached: works even with the origin gone.
        let moved = origin.path.with_file_name("gone");
        fs::rename(&origin.path, &moved).unwrap();
        let co = checkout_commit(&spec, &origin.second[..8], state.path()).unwrap();
        assert_eq!(co.info.commit.as_deref(), Some(origin.second.as_str()));
        assert!(checkout(&spec, "main", state.path()).is_err(), "a branch needs a fetch");
        let err = checkout_commit(&spec, "main", state.path()).unwrap_err();
        assert!(matches!(err, SourceError::UnknownRef { .. }), "{err}");
    }

    #[test]
    fn unknown_ref_names_url_and_ref() {
        let origin = origin();
        let state = tempfile::tempdir().unwrap();
        let spec = spec(origin.path.to_str().unwrap());
        for reference in ["no-such-branch", "deadbeef", "a..b"] {
            let err = checkout(&spec, reference, state.path()).unwrap_err();
            assert!(matches!(err, SourceError::UnknownRef { .. }), "{err}");
            let text = err.to_string();
            assert!(text.contains(&spec.url) && text.contains(reference), "{text}");
        }
    }

    #[test]
    fn unreachable_urls_are_fetch_errors_naming_the_url() {
        let state = tempfile::tempdir().unwrap();
        let missing = state.path().join("does-not-exist");
        for url in [missing.to_str().unwrap(), "http://127.0.0.1:9/x.git"] {
            let started = Instant::now();
            let err = checkout(&spec(url), "main", state.path()).unwrap_err();
            assert!(matches!(err, SourceError::Fetch { .. }), "{err}");
            assert!(err.to_string().contains(url), "{err}");
            assert!(!err.to_string().contains("unsupported URL"), "{err}");
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "{url} took {:?}",
                started.elapsed()
            );
        }
        // A directory that is not a repository.
        let plain = tempfile::tempdir().unwrap();
        let err = checkout(&spec(plain.path().to_str().unwrap()), "main", state.path()).unwrap_err();
        assert!(matches!(err, SourceError::Fetch { .. }), "{err}");
    }

    #[test]
    fn file_urls_work() {
        let origin = origin();
        let state = tempfile::tempdir().unwrap();
        let url = format!("file://{}", origin.path.display());
        let co = checkout(&spec(&url), "main", state.path()).unwrap();
        assert_eq!(co.info.commit.as_deref(), Some(origin.second.as_str()));
        assert_eq!(co.info.url, url);
    }

    #[test]
    fn missing_token_variable_is_an_auth_error_naming_it() {
        let origin = origin();
        let state = tempfile::tempdir().unwrap();
        let mut spec = spec(origin.path.to_str().unwrap());
        spec.auth = Some(GitAuth {
            token_env: Some("PLUMB_TEST_TOKEN_THAT_IS_NOT_SET".into()),
            ..GitAuth::default()
        });
        let err = checkout(&spec, "main", state.path()).unwrap_err();
        assert!(matches!(err, SourceError::Auth { .. }), "{err}");
        assert!(err.to_string().contains("PLUMB_TEST_TOKEN_THAT_IS_NOT_SET"), "{err}");

        spec.auth = Some(GitAuth {
            ssh_key_file: Some(state.path().join("no-key")),
            ..GitAuth::default()
        });
        let err = checkout(&spec, "main", state.path()).unwrap_err();
        assert!(matches!(err, SourceError::Auth { .. }), "{err}");
        assert!(err.to_string().contains("no-key"), "{err}");
    }

    #[test]
    fn passwords_in_urls_never_show() {
        assert_eq!(redact_url("https://u:s3cret@host/x.git"), "https://host/x.git");
        assert_eq!(redact_url("https://tok@host:8443/a@b"), "https://host:8443/a@b");
        assert_eq!(redact_url("ssh://git@host:2222/x"), "ssh://host:2222/x");
        assert_eq!(redact_url("git@github.com:acme/x.git"), "git@github.com:acme/x.git");
        assert_eq!(redact_url("/srv/git/x"), "/srv/git/x");
        assert_eq!(url_password("https://u:s3cret@host/x"), Some("s3cret"));

        let state = tempfile::tempdir().unwrap();
        for url in [
            "http://user:hunter2secret@127.0.0.1:9/x.git",
            "https://user:hunter2secret@127.0.0.1:9/x.git",
        ] {
            let err = checkout(&spec(url), "main", state.path()).unwrap_err();
            let text = format!("{err} {err:?}");
            assert!(!text.contains("hunter2secret"), "{text}");
            assert!(text.contains("127.0.0.1:9/x.git"), "{text}");
        }
        let dirs: Vec<_> = fs::read_dir(state.path().join("git")).unwrap().flatten().collect();
        for dir in dirs {
            assert!(!dir.file_name().to_string_lossy().contains("hunter2"));
        }
    }

    #[test]
    fn keeps_only_the_most_recent_checkouts() {
        let dir = tempfile::tempdir().unwrap();
        let repo_path = dir.path().join("origin");
        fs::create_dir(&repo_path).unwrap();
        git(&repo_path, &["init", "-q", "-b", "main"]);
        let mut commits = Vec::new();
        for i in 0..7 {
            commits.push(commit_file(&repo_path, "f", &i.to_string(), &format!("c{i}")));
        }
        let state = tempfile::tempdir().unwrap();
        let spec = spec(repo_path.to_str().unwrap());
        for c in &commits {
            checkout(&spec, c, state.path()).unwrap();
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut left: Vec<String> = fs::read_dir(state.path().join("checkouts"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        let mut expected: Vec<String> = commits[2..].to_vec();
        expected.sort();
        assert_eq!(left, expected);
    }

    #[cfg(unix)]
    #[test]
    fn modes_and_symlinks() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("origin");
        fs::create_dir_all(repo.join("bin")).unwrap();
        git(&repo, &["init", "-q", "-b", "main"]);
        fs::write(repo.join("bin/run.sh"), "#!/bin/sh\n").unwrap();
        fs::set_permissions(repo.join("bin/run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
        fs::write(repo.join("data.yaml"), "a: 1\n").unwrap();
        std::os::unix::fs::symlink("data.yaml", repo.join("inside")).unwrap();
        std::os::unix::fs::symlink("../data.yaml", repo.join("bin/up")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", repo.join("outside")).unwrap();
        std::os::unix::fs::symlink("../../../../etc/passwd", repo.join("bin/climb")).unwrap();
        std::os::unix::fs::symlink("nowhere", repo.join("dangling")).unwrap();
        git(&repo, &["add", "-A"]);
        git(&repo, &["commit", "-q", "-m", "modes"]);

        let state = tempfile::tempdir().unwrap();
        let co = checkout(&spec(repo.to_str().unwrap()), "main", state.path()).unwrap();
        let mode = |p: &str| fs::metadata(co.root.join(p)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode("bin/run.sh") & 0o111, 0o111);
        assert_eq!(mode("data.yaml") & 0o111, 0);
        let is_link = |p: &str| fs::symlink_metadata(co.root.join(p)).unwrap().file_type().is_symlink();
        assert!(is_link("inside") && is_link("bin/up"));
        assert_eq!(fs::read_to_string(co.root.join("bin/up")).unwrap(), "a: 1\n");
        for escaping in ["outside", "bin/climb", "dangling"] {
            assert!(!is_link(escaping), "{escaping}");
        }
        assert_eq!(fs::read_to_string(co.root.join("outside")).unwrap(), "/etc/passwd");
        // No temporary directories are left behind.
        let names: Vec<_> = fs::read_dir(state.path().join("checkouts"))
            .unwrap()
            .flatten()
            .collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn concurrent_checkouts_share_the_cache() {
        let origin = origin();
        let state = tempfile::tempdir().unwrap();
        let spec = spec(origin.path.to_str().unwrap());
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let spec = spec.clone();
                let state = state.path().to_path_buf();
                std::thread::spawn(move || checkout(&spec, "main", &state).map(|c| c.root))
            })
            .collect();
        let roots: Vec<PathBuf> = handles.into_iter().map(|h| h.join().unwrap().unwrap()).collect();
        assert!(roots.windows(2).all(|w| w[0] == w[1]));
        assert!(!lock_path(&cache_path(&spec.url, state.path())).exists());
    }

    #[test]
    fn stale_lock_is_broken() {
        let state = tempfile::tempdir().unwrap();
        let lock = state.path().join("x.lock");
        // A pid that does not exist on this host.
        fs::write(&lock, format!("4000000000@{}", host_name())).unwrap();
        let held = FetchLock::acquire(&lock).unwrap();
        assert!(lock.exists());
        drop(held);
        assert!(!lock.exists());
    }

    // -- known_hosts -------------------------------------------------------

    const KEY_A: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";
    const KEY_B: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIHzVgQ1kLl0IdYVz8mSb3ziYtGkBcBBBm27J0z1yX0ab";

    fn presented(b64: &str) -> Vec<u8> {
        base64_decode(b64).unwrap()
    }

    #[test]
    fn base64_decodes() {
        assert_eq!(base64_decode("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(base64_decode("aGVsbG8h").unwrap(), b"hello!");
        assert_eq!(base64_decode("aGk").unwrap(), b"hi");
        assert!(base64_decode("a$==").is_none());
        assert_eq!(presented(KEY_A).len(), 51);
    }

    #[test]
    fn known_hosts_lines_are_matched() {
        let text = format!(
            "# comment\n\
             github.com,140.82.112.3 ssh-ed25519 {KEY_A}\n\
             [git.example.com]:2222 ssh-ed25519 {KEY_B} laptop\n\
             *.corp.example,!bad.corp.example ssh-ed25519 {KEY_A}\n\
             |1|c2FsdA==|aGFzaA== ssh-ed25519 {KEY_B}\n"
        );
        let a = presented(KEY_A);
        let b = presented(KEY_B);
        let key = |raw: &[u8]| {
            PresentedKey {
                raw: Some(raw),
                sha256: None,
            }
            .matches(raw)
        };
        assert!(key(&a));
        let check = |host: &str, port: u16, raw: &[u8]| {
            check_known_hosts(
                &text,
                host,
                port,
                &PresentedKey {
                    raw: Some(raw),
                    sha256: None,
                },
            )
        };
        assert_eq!(check("github.com", 22, &a), HostKeyCheck::Match);
        assert_eq!(check("GitHub.com", 22, &a), HostKeyCheck::Match);
        assert_eq!(check("github.com", 22, &b), HostKeyCheck::Mismatch);
        assert_eq!(check("git.example.com", 2222, &b), HostKeyCheck::Match);
        assert_eq!(
            check("git.example.com", 22, &b),
            HostKeyCheck::NotFound { hashed: true }
        );
        assert_eq!(check("x.corp.example", 22, &a), HostKeyCheck::Match);
        assert_eq!(
            check("bad.corp.example", 22, &a),
            HostKeyCheck::NotFound { hashed: true }
        );

        let sha = Sha256::digest(&a);
        let mut sha32 = [0u8; 32];
        sha32.copy_from_slice(&sha);
        let by_hash = PresentedKey {
            raw: None,
            sha256: Some(&sha32),
        };
        assert_eq!(
            check_known_hosts(&text, "github.com", 22, &by_hash),
            HostKeyCheck::Match
        );

        let revoked = format!("{text}@revoked * ssh-ed25519 {KEY_A}\n");
        let r = check_known_hosts(
            &revoked,
            "github.com",
            22,
            &PresentedKey {
                raw: Some(&a),
                sha256: None,
            },
        );
        assert_eq!(r, HostKeyCheck::Revoked);
    }

    #[test]
    fn host_key_errors_are_clear() {
        let a = presented(KEY_A);
        let key = PresentedKey {
            raw: Some(&a),
            sha256: None,
        };
        let err = verify_host_key(None, "git.example.com", 22, &key).unwrap_err();
        assert!(
            err.contains("cannot be verified") && err.contains("known_hosts_file"),
            "{err}"
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("known_hosts");
        fs::write(&file, format!("|1|c2FsdA==|aGFzaA== ssh-ed25519 {KEY_A}\n")).unwrap();
        let err = verify_host_key(Some(&file), "git.example.com", 22, &key).unwrap_err();
        assert!(err.contains("hashed"), "{err}");
        fs::write(&file, format!("git.example.com ssh-ed25519 {KEY_B}\n")).unwrap();
        let err = verify_host_key(Some(&file), "git.example.com", 22, &key).unwrap_err();
        assert!(err.contains("does not match"), "{err}");
        fs::write(&file, format!("git.example.com ssh-ed25519 {KEY_A}\n")).unwrap();
        verify_host_key(Some(&file), "git.example.com", 22, &key).unwrap();
    }

    #[test]
    fn ssh_ports_are_parsed() {
        assert_eq!(ssh_port("ssh://git@host:2222/x.git"), 2222);
        assert_eq!(ssh_port("ssh://host/x.git"), 22);
        assert_eq!(ssh_port("ssh://git@[::1]:2200/x"), 2200);
        assert_eq!(ssh_port("git@host:x.git"), 22);
    }
}
