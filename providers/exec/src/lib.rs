//! plumb's exec provider: any live system, through a plugin program.
//!
//! Desired state is YAML/JSON documents with a string `id` below the target
//! directory; live state is what `connection.command` prints as a JSON array
//! of documents of the same form; changes go to `connection.apply_command`,
//! one JSON change on stdin per run. The protocol is described for plugin
//! authors in `docs/exec-plugins.md`; this crate is its reference.
//!
//! Modules: [`connection`] parses and validates the `connection:` block,
//! `documents` turns files and command output into resources, `run` runs a
//! program with a hard timeout, `import` lays live documents out as files.

pub mod connection;
pub mod documents;
mod import;
mod run;

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use plumb_model::{
    Action, ApplyChange, Authority, ChangeResult, Ctx, Desired, ListKey, Live, Outcome, Provider, ProviderError,
    Resource,
};
use serde_json::{json, Value};

pub use connection::Connection;

/// The name targets use in `provider:`.
pub const NAME: &str = "exec";

/// Builds the provider from a target's `connection:` value, rejecting
/// unknown keys and a missing `command` before anything runs.
/// `base` is the directory of the config file: a relative `workdir` is
/// taken from there, and without `workdir` the commands run there, so the
/// paths in a plugin's arguments mean what they mean in `plumb.yaml`.
pub fn build(connection: &Value, base: &Path) -> Result<ExecProvider, ProviderError> {
    let mut connection = Connection::parse(connection)?;
    connection.workdir = Some(match connection.workdir.take() {
        Some(dir) if dir.is_relative() => base.join(dir),
        Some(dir) => dir,
        None => base.to_path_buf(),
    });
    Ok(ExecProvider { connection })
}

/// The exec provider for one target.
#[derive(Debug, Clone)]
pub struct ExecProvider {
    connection: Connection,
}

impl ExecProvider {
    /// The validated connection, e.g. for `plumb validate` to show.
    pub fn connection(&self) -> &Connection {
        &self.connection
    }

    fn authority(&self) -> Authority {
        if self.connection.authoritative {
            Authority::Owned
        } else {
            Authority::Foreign
        }
    }

    fn shape(&self) -> documents::Shape<'_> {
        documents::Shape {
            sensitive: &self.connection.sensitive_paths,
            authority: self.authority(),
        }
    }

    /// The connection's timeout, capped by the core's bound for one live
    /// call so a generous plugin setting cannot outlast the run.
    fn timeout(&self, ctx: &Ctx) -> Duration {
        self.connection.timeout.min(ctx.timeout)
    }

    fn invocation<'a>(&'a self, argv: &'a [String], ctx: &Ctx) -> run::Invocation<'a> {
        let mut extra_env = vec![("PLUMB_TARGET", ctx.target.clone())];
        if let Some(commit) = &ctx.commit {
            extra_env.push(("PLUMB_COMMIT", commit.clone()));
        }
        run::Invocation {
            argv,
            env: &self.connection.env,
            extra_env,
            workdir: self.connection.workdir.as_ref(),
            timeout: self.timeout(ctx),
        }
    }

    /// Runs one change through `apply_command`.
    async fn apply_one(&self, argv: &[String], change: &ApplyChange, ctx: &Ctx) -> Outcome {
        let command = run::command_line(argv);
        let payload = json!({
            "id": change.id,
            "action": change.action,
            "desired": change.desired.as_ref().map(Resource::body),
            "live": change.live.as_ref().map(Resource::body),
            "live_version": change.live.as_ref().and_then(|r| r.version.as_deref()),
            "target": ctx.target,
            "commit": ctx.commit,
        });
        let stdin = match serde_json::to_vec(&payload) {
            Ok(bytes) => bytes,
            Err(e) => return Outcome::Failed(format!("could not encode the change: {e}")),
        };
        let inv = self.invocation(argv, ctx);
        match run::run(&inv, Some(&stdin)).await {
            Ok(done) if done.status.success() => {
                let stdout = String::from_utf8_lossy(&done.stdout);
                tracing::debug!(
                    target_name = %ctx.target,
                    id = %change.id,
                    stdout = %run::tail(&stdout),
                    stderr = %run::tail(&done.stderr),
                    "apply_command succeeded"
                );
                Outcome::Applied
            }
            Ok(done) => {
                // Plugins may report on either stream; prefer stderr.
                let mut said = run::tail(&done.stderr);
                if said.is_empty() {
                    said = run::tail(&String::from_utf8_lossy(&done.stdout));
                }
                let mut message = format!("apply_command {command} {}", exit_text(done.status));
                if !said.is_empty() {
                    message.push_str(": ");
                    message.push_str(&said);
                }
                Outcome::Failed(message)
            }
            Err(run::RunError::Timeout) => Outcome::Failed(
                ProviderError::Timeout {
                    what: format!("apply_command {command}"),
                    after: inv.timeout,
                }
                .to_string(),
            ),
            Err(run::RunError::Spawn(e)) => {
                Outcome::Failed(format!("apply_command {command} could not be started: {e}"))
            }
            Err(run::RunError::Io(e)) => Outcome::Failed(format!("apply_command {command}: {e}")),
        }
    }
}

/// "exited with status 3" or "was killed by signal 9".
fn exit_text(status: std::process::ExitStatus) -> String {
    if let Some(code) = status.code() {
        return format!("exited with status {code}");
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(signal) = status.signal() {
            return format!("was killed by signal {signal}");
        }
    }
    format!("ended abnormally ({status})")
}

/// Why a change is not even offered to the plugin: the core filters
/// unmanaged objects, and a change missing the side its action needs is a
/// bug upstream, not something to guess about.
fn refusal(change: &ApplyChange) -> Option<String> {
    match change.action {
        Action::Unmanaged => Some("unmanaged objects are only reported; the exec provider never changes them".into()),
        Action::Create | Action::Update if change.desired.is_none() => {
            Some(format!("{} without a desired document", change.action))
        }
        Action::Delete | Action::Update if change.live.is_none() => {
            Some(format!("{} without a live document", change.action))
        }
        _ => None,
    }
}

#[async_trait]
impl Provider for ExecProvider {
    fn list_keys(&self) -> Vec<ListKey> {
        self.connection.list_keys.clone()
    }

    fn desired(&self, root: &Path, dir: &Path, _ctx: &Ctx) -> Result<Desired, ProviderError> {
        let resources = documents::read_desired(root, dir, self.shape())?;
        tracing::debug!(dir = %dir.display(), count = resources.len(), "read exec desired state");
        Ok(Desired {
            resources,
            findings: Vec::new(),
        })
    }

    async fn live(&self, _desired: &Desired, ctx: &Ctx) -> Result<Live, ProviderError> {
        let argv = &self.connection.command;
        let command = run::command_line(argv);
        let inv = self.invocation(argv, ctx);
        tracing::debug!(target_name = %ctx.target, %command, "running exec live command");
        let done = match run::run(&inv, None).await {
            Ok(done) => done,
            Err(run::RunError::Timeout) => {
                return Err(ProviderError::Timeout {
                    what: format!("command {command}"),
                    after: inv.timeout,
                })
            }
            Err(run::RunError::Spawn(e)) => {
                return Err(ProviderError::Command {
                    command,
                    message: format!("could not be started: {e}"),
                    stderr: String::new(),
                })
            }
            Err(run::RunError::Io(e)) => {
                return Err(ProviderError::Command {
                    command,
                    message: format!("failed: {e}"),
                    stderr: String::new(),
                })
            }
        };
        let stderr = run::tail(&done.stderr);
        if !done.status.success() {
            return Err(ProviderError::Command {
                command,
                message: exit_text(done.status),
                stderr,
            });
        }
        if !stderr.is_empty() {
            tracing::debug!(target_name = %ctx.target, %command, %stderr, "exec live command wrote to stderr");
        }
        let resources =
            documents::parse_live(&done.stdout, self.shape()).map_err(|message| ProviderError::Command {
                command: command.clone(),
                message,
                stderr,
            })?;
        tracing::debug!(target_name = %ctx.target, count = resources.len(), "read exec live state");
        Ok(Live {
            resources,
            findings: Vec::new(),
        })
    }

    async fn apply(&self, changes: &[ApplyChange], ctx: &Ctx) -> Result<Vec<ChangeResult>, ProviderError> {
        let Some(argv) = &self.connection.apply_command else {
            return Err(ProviderError::Refused(
                "exec target has no connection.apply_command; it can only be audited".into(),
            ));
        };
        // One at a time, in the engine's order: plugins are usually simple
        // scripts against APIs that dislike concurrent writers. A failure
        // does not stop the rest; each change stands alone.
        let mut results = Vec::with_capacity(changes.len());
        for change in changes {
            let outcome = match refusal(change) {
                Some(why) => Outcome::Refused(why),
                None => self.apply_one(argv, change, ctx).await,
            };
            match &outcome {
                Outcome::Applied => {
                    tracing::info!(target_name = %ctx.target, id = %change.id, action = %change.action, "applied")
                }
                Outcome::Failed(why) | Outcome::Refused(why) => {
                    tracing::warn!(target_name = %ctx.target, id = %change.id, action = %change.action, reason = %why, "not applied")
                }
            }
            results.push(ChangeResult {
                id: change.id.clone(),
                action: change.action,
                outcome,
            });
        }
        Ok(results)
    }

    async fn import(&self, live: &Live, out: &Path, _ctx: &Ctx) -> Result<Vec<PathBuf>, ProviderError> {
        let mut layout = import::Layout::default();
        let mut written = Vec::with_capacity(live.resources.len());
        for resource in &live.resources {
            let path = out.join(layout.path_for(&resource.id));
            let text = import_text(resource)?;
            if let Some(parent) = path.parent() {
                tokio::fs::create_dir_all(parent)
                    .await
                    .map_err(|e| ProviderError::io(parent, e))?;
            }
            tokio::fs::write(&path, text)
                .await
                .map_err(|e| ProviderError::io(&path, e))?;
            written.push(path);
        }
        tracing::info!(out = %out.display(), files = written.len(), "imported exec live state");
        Ok(written)
    }
}

/// The YAML of one imported document: its body, which never holds `$meta`
/// (that was moved onto the resource when the command's output was read).
fn import_text(resource: &Resource) -> Result<String, ProviderError> {
    let mut body = resource.body();
    if let Value::Object(map) = &mut body {
        map.remove(documents::META_KEY);
    }
    serde_yaml_ng::to_string(&body)
        .map_err(|e| ProviderError::Other(format!("could not write {} as YAML: {e}", resource.id)))
}
