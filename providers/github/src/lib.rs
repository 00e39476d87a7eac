//! plumb's GitHub provider: organisation membership, teams, team members,
//! team repository permissions and org settings kept in peribolos-format org
//! files, compared with GitHub through octocrab (conditional, paginated
//! reads), reconciled under guards (`required_admins`, `max_removals`, never
//! the token's own user, never an empty org file), and a simulator of the
//! GitHub REST endpoints involved ([`sim`]) for tests, benchmarks and
//! `plumb demo`.
//!
//! Modules: [`connection`] parses the `connection:` block, [`desired`] reads
//! org files, [`ids`] names resources, `client` talks HTTP (auth, retries,
//! rate limits, ETags), `live` reads an org, [`normalize`] holds the
//! canonical forms (each rule citing GitHub's documentation), `apply`
//! reconciles, `import` writes live state as org files. Users' documentation:
//! `docs/github.md`.

mod apply;
mod client;
pub mod connection;
pub mod desired;
pub mod ids;
mod import;
mod live;
pub mod normalize;
pub mod sim;

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use async_trait::async_trait;
use plumb_model::{
    ApplyChange, ChangeResult, Ctx, Desired, Finding, Live, Origin, Pair, Provider, ProviderError, Severity,
};
use serde_json::Value;

pub use client::Stats;
pub use connection::Connection;

/// The name targets use in `provider:`.
pub const NAME: &str = "github";
/// Policy guard: logins that must stay org owners (a list).
pub const GUARD_REQUIRED_ADMINS: &str = "required_admins";
/// Policy guard: the most org members one apply may remove (a number, or a
/// percentage of the live members such as `"10%"`).
pub const GUARD_MAX_REMOVALS: &str = "max_removals";

/// Builds the provider from a target's `connection:` value. The token is
/// only named there and read at the first request, so `plumb validate`
/// works without it. `base` resolves a relative `private_key_file`.
pub fn build(connection: &Value, base: &Path) -> Result<GithubProvider, ProviderError> {
    Ok(GithubProvider {
        connection: Connection::parse(connection, base)?,
        state: Mutex::new(RunState::default()),
        tokens: client::TokenCache::default(),
    })
}

/// What one run learnt that apply needs: desired org sizes, live indexes.
#[derive(Debug, Default)]
struct RunState {
    /// Lower-cased org → number of admins and members its file lists.
    desired_sizes: HashMap<String, usize>,
    /// Lower-cased org → what the last live read found.
    live: HashMap<String, live::OrgIndex>,
    /// Request counts of the last live read, per org.
    stats: HashMap<String, Stats>,
}

/// The GitHub provider for one target.
#[derive(Debug)]
pub struct GithubProvider {
    connection: Connection,
    state: Mutex<RunState>,
    /// GitHub App installation tokens, reused across runs until they near
    /// their expiry (empty for token targets).
    tokens: client::TokenCache,
}

impl GithubProvider {
    pub fn connection(&self) -> &Connection {
        &self.connection
    }

    /// Requests made by the last live read, summed over orgs (benchmarks,
    /// tests).
    pub fn last_stats(&self) -> Stats {
        let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.stats.values().fold(Stats::default(), |a, s| Stats {
            requests: a.requests + s.requests,
            not_modified: a.not_modified + s.not_modified,
            retries: a.retries + s.retries,
        })
    }

    fn orgs_for(&self, desired: &Desired) -> Vec<String> {
        if !self.connection.orgs.is_empty() {
            return self.connection.orgs.clone();
        }
        let mut orgs = BTreeSet::new();
        for r in &desired.resources {
            if let Some(parts) = ids::parse(&r.id) {
                orgs.insert(parts[0].to_string());
            }
        }
        let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        orgs.extend(st.desired_sizes.keys().cloned());
        orgs.into_iter().collect()
    }
}

fn string_list(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::Array(a)) => a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect(),
        Some(Value::String(s)) => vec![s.clone()],
        _ => Vec::new(),
    }
}

#[async_trait]
impl Provider for GithubProvider {
    fn desired(&self, root: &Path, dir: &Path, ctx: &Ctx) -> Result<Desired, ProviderError> {
        let (orgs, mut findings) = desired::read(root, dir)?;
        let wanted: Vec<String> = self.connection.orgs.iter().map(|o| o.to_lowercase()).collect();
        let required = string_list(ctx.guards.get(GUARD_REQUIRED_ADMINS));
        let mut resources = Vec::new();
        let mut sizes = HashMap::new();
        for org in &orgs {
            if !wanted.is_empty() && !wanted.contains(&org.org.to_lowercase()) {
                findings.push(Finding {
                    id: ids::org(&org.org),
                    kind: "org".into(),
                    message: format!("{}: org {} is not in connection.orgs; not audited", org.origin, org.org),
                    severity: Severity::Info,
                });
                continue;
            }
            // Guard: Git must keep every required admin an admin.
            for login in &required {
                if !org.admins.iter().any(|a| a.login.eq_ignore_ascii_case(login)) {
                    return Err(ProviderError::Parse {
                        origin: org.origin.clone(),
                        message: format!(
                            "required admin {login} (policy guard {GUARD_REQUIRED_ADMINS}) is not among the admins of org {}",
                            org.org
                        ),
                    });
                }
            }
            sizes.insert(org.org.to_lowercase(), org.admins.len() + org.members.len());
            resources.extend(desired::resources(org));
        }
        for org in &wanted {
            if !sizes.contains_key(org) {
                findings.push(Finding {
                    id: ids::org(org),
                    kind: "org".into(),
                    message: format!(
                        "{}: no org file for {org}; every live member would be a removal, which plumb refuses",
                        Origin {
                            file: dir.to_path_buf(),
                            line: None
                        }
                    ),
                    severity: Severity::Warning,
                });
                sizes.insert(org.clone(), 0);
            }
        }
        tracing::debug!(dir = %dir.display(), orgs = sizes.len(), resources = resources.len(), "read github org files");
        self.state.lock().unwrap_or_else(|p| p.into_inner()).desired_sizes = sizes;
        Ok(Desired { resources, findings })
    }

    async fn live(&self, desired: &Desired, ctx: &Ctx) -> Result<Live, ProviderError> {
        let mut out = Live::default();
        for org in self.orgs_for(desired) {
            let api = client::Api::new(&self.connection, &org, ctx, &self.tokens).await?;
            let read = live::read_org(&api, &org, &desired.resources, &mut out.resources, &mut out.findings).await;
            api.save_cache();
            let stats = api.stats();
            tracing::info!(
                target_name = %ctx.target, %org, requests = stats.requests, not_modified = stats.not_modified,
                "read github org"
            );
            let index = read?;
            let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            st.live.insert(org.to_lowercase(), index);
            st.stats.insert(org.to_lowercase(), stats);
        }
        Ok(out)
    }

    fn normalize(&self, pair: Pair<'_>) {
        normalize::pair(pair);
    }

    async fn apply(&self, changes: &[ApplyChange], ctx: &Ctx) -> Result<Vec<ChangeResult>, ProviderError> {
        let (sizes, live) = {
            let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            (st.desired_sizes.clone(), st.live.clone())
        };
        apply::apply(&self.connection, &self.tokens, changes, ctx, &sizes, live).await
    }

    async fn import(&self, live: &Live, out: &Path, _ctx: &Ctx) -> Result<Vec<PathBuf>, ProviderError> {
        let written = import::write(live, out)?;
        tracing::info!(out = %out.display(), files = written.len(), "imported github orgs");
        Ok(written)
    }
}
