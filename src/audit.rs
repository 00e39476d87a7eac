//! One audit of the selected targets: check out each source once, build each
//! target's provider, read desired and live state, and run the engine. A
//! target that fails is reported with its error while the others go on.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::{FutureExt, StreamExt};
use plumb_model::{Ctx, Provider, ProviderError, Resource};

use crate::config::{Config, SourceSpec, TargetSpec};
use crate::mask::Masker;
use crate::plan::{self, Plan, TargetPlan};
use crate::policy::{CompiledPolicy, Policy};
use crate::registry::Registry;
use crate::source::{self, Checkout, SourceInfo};

/// How many targets one audit reads at once.
pub const CONCURRENT_TARGETS: usize = 4;

/// How long one live read may take when the target does not say.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

/// What the command line may change about where desired state comes from.
#[derive(Debug, Clone, Default)]
pub struct SourceOverride {
    /// `--ref`: another branch, tag or commit of the global Git source.
    pub reference: Option<String>,
    /// `--source-dir`: a local checkout instead of the global source.
    pub dir: Option<PathBuf>,
}

/// Everything an audit needs that outlives one run.
pub struct Auditor<'a> {
    pub config: &'a Config,
    pub registry: &'a Registry,
    pub masker: Masker,
}

/// One target's audit, with what apply needs to act on it.
pub struct TargetRun {
    pub spec: TargetSpec,
    pub plan: TargetPlan,
    pub policy: CompiledPolicy,
    pub provider: Option<Box<dyn Provider>>,
    pub ctx: Ctx,
    pub documents: HashMap<String, (Option<Resource>, Option<Resource>)>,
    /// How many documents the desired state held (None when unread).
    pub desired_count: Option<usize>,
    pub timezone: chrono_tz::Tz,
    /// The tree audited, so apply can audit it again after changing things.
    pub checkout: Option<Checkout>,
}

impl<'a> Auditor<'a> {
    pub fn new(config: &'a Config, registry: &'a Registry) -> anyhow::Result<Auditor<'a>> {
        config.limits.apply();
        let masker = Masker::load_or_create(&config.state_dir).map_err(|e| {
            anyhow::anyhow!(
                "cannot read or create the installation key in {}: {e}",
                config.state_dir.display()
            )
        })?;
        Ok(Auditor {
            config,
            registry,
            masker,
        })
    }

    /// The targets `names` selects (all when empty); an unknown name is an
    /// error naming the known ones.
    pub fn select(&self, names: &[String]) -> anyhow::Result<Vec<&'a TargetSpec>> {
        if names.is_empty() {
            return Ok(self.config.targets.iter().collect());
        }
        names
            .iter()
            .map(|n| {
                self.config.target(n).ok_or_else(|| {
                    let known: Vec<_> = self.config.targets.iter().map(|t| t.name.as_str()).collect();
                    anyhow::anyhow!(
                        "no target named {n:?} in {} (targets: {})",
                        self.config.file.display(),
                        known.join(", ")
                    )
                })
            })
            .collect()
    }

    /// Audits `targets`, each on its own source checkout, and assembles the plan.
    pub async fn run(&self, targets: &[&TargetSpec], overrides: &SourceOverride) -> (Plan, Vec<TargetRun>) {
        let started_at = Utc::now();
        let mut checkouts: HashMap<String, Result<Checkout, String>> = HashMap::new();
        let global = self.global_source(overrides);
        let global_key = format!("{global:?}/{:?}", overrides.reference);
        let global_result = self.checkout(&global, overrides.reference.as_deref()).await;
        let global_info = match &global_result {
            Ok(c) => c.info.clone(),
            Err(_) => describe(&global, overrides.reference.as_deref()),
        };
        checkouts.insert(global_key.clone(), global_result);

        // Fetch each source once, then audit the targets side by side.
        let mut jobs = Vec::with_capacity(targets.len());
        for spec in targets {
            let (key, own) = match &spec.source {
                Some(own) => (format!("{own:?}/None"), Some(own)),
                None => (global_key.clone(), None),
            };
            if !checkouts.contains_key(&key) {
                if let Some(own) = own {
                    let result = self.checkout(own, None).await;
                    checkouts.insert(key.clone(), result);
                }
            }
            let checkout = checkouts.get(&key).cloned().unwrap_or_else(|| Err("no source".into()));
            jobs.push((*spec, own, checkout));
        }
        let runs: Vec<TargetRun> = futures_util::stream::iter(jobs)
            .map(|(spec, own, checkout)| async move {
                let mut run = self.run_target_isolated(spec, checkout.clone(), Utc::now()).await;
                if let Some(own) = own {
                    run.plan.source = Some(match &checkout {
                        Ok(c) => c.info.clone(),
                        Err(_) => describe(own, None),
                    });
                }
                run
            })
            .buffered(CONCURRENT_TARGETS)
            .collect()
            .await;
        let plans: Vec<TargetPlan> = runs.iter().map(|r| r.plan.clone()).collect();
        let mut plan = Plan {
            format_version: plan::FORMAT_VERSION,
            plumb_version: env!("CARGO_PKG_VERSION").to_string(),
            source: global_info,
            started_at,
            finished_at: Utc::now(),
            exit_code: Plan::compute_exit_code(&plans),
            targets: plans,
            seal: None,
        };
        plan.seal_with(&self.masker);
        (plan, runs)
    }

    fn global_source(&self, overrides: &SourceOverride) -> SourceSpec {
        match &overrides.dir {
            Some(dir) => SourceSpec {
                git: None,
                dir: Some(dir.clone()),
            },
            None => self.config.source.clone(),
        }
    }

    /// Checks out off the async threads: fetching and writing a tree block.
    pub async fn checkout(&self, spec: &SourceSpec, reference: Option<&str>) -> Result<Checkout, String> {
        let (spec, reference, state_dir) = (
            spec.clone(),
            reference.map(str::to_string),
            self.config.state_dir.clone(),
        );
        let result = tokio::task::spawn_blocking(move || source::checkout(&spec, reference.as_deref(), &state_dir))
            .await
            .map_err(|e| format!("source: checkout task failed: {e}"))?;
        result.map_err(|e| {
            tracing::error!(error = %e, "source could not be checked out");
            format!("source: {e}")
        })
    }

    /// [`Auditor::run_target`], with a panic in a provider turned into that
    /// target's error instead of the end of the whole audit.
    pub async fn run_target_isolated(
        &self,
        spec: &TargetSpec,
        checkout: Result<Checkout, String>,
        now: DateTime<Utc>,
    ) -> TargetRun {
        let attempt = std::panic::AssertUnwindSafe(self.run_target(spec, checkout.clone(), now));
        match attempt.catch_unwind().await {
            Ok(run) => run,
            Err(panic) => {
                let what = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "unknown panic".into());
                tracing::error!(target = %spec.name, panic = %what, "provider panicked");
                let mut run = self.empty_run(spec, checkout.ok());
                run.plan.error = Some(format!(
                    "internal error: the {} provider panicked: {what}",
                    spec.provider
                ));
                run
            }
        }
    }

    fn empty_run(&self, spec: &TargetSpec, checkout: Option<Checkout>) -> TargetRun {
        TargetRun {
            spec: spec.clone(),
            plan: TargetPlan::failed(&spec.name, &spec.provider, String::new()),
            policy: CompiledPolicy::audit_only(),
            provider: None,
            ctx: Ctx::new(spec.name.clone(), cache_dir(&self.config.state_dir, &spec.name)),
            documents: HashMap::new(),
            desired_count: None,
            timezone: chrono_tz::UTC,
            checkout,
        }
    }

    /// Audits one target on an already checked-out source.
    pub async fn run_target(
        &self,
        spec: &TargetSpec,
        checkout: Result<Checkout, String>,
        now: DateTime<Utc>,
    ) -> TargetRun {
        let timezone: chrono_tz::Tz = spec
            .timezone
            .as_deref()
            .and_then(|t| t.parse().ok())
            .unwrap_or(chrono_tz::UTC);
        let mut ctx = Ctx::new(spec.name.clone(), cache_dir(&self.config.state_dir, &spec.name));
        ctx.timeout = spec.timeout.unwrap_or(DEFAULT_TIMEOUT);
        let mut run = TargetRun {
            spec: spec.clone(),
            plan: TargetPlan::failed(&spec.name, &spec.provider, String::new()),
            policy: CompiledPolicy::audit_only(),
            provider: None,
            ctx: ctx.clone(),
            documents: HashMap::new(),
            desired_count: None,
            timezone,
            checkout: checkout.as_ref().ok().cloned(),
        };
        let fail = |mut run: TargetRun, message: String| {
            tracing::error!(target = %spec.name, error = %message, "target failed");
            run.plan.error = Some(message);
            run
        };

        let policy = match &spec.policy {
            Some(file) => match Policy::load(file, timezone) {
                Ok(p) => p,
                Err(e) => return fail(run, format!("policy: {e}")),
            },
            None => CompiledPolicy::audit_only(),
        };
        ctx.guards = policy.policy.guards.clone();
        run.plan.severity = policy.policy.severity;
        run.policy = policy;

        let provider = match self
            .registry
            .build(&spec.provider, &spec.connection, &self.config.base_dir())
        {
            Ok(p) => p,
            Err(e) => return fail(run, self.describe_build_error(spec, e)),
        };
        let checkout = match checkout {
            Ok(c) => c,
            Err(e) => {
                run.provider = Some(provider);
                return fail(run, e);
            }
        };
        ctx.commit = checkout.info.commit.clone();
        ctx.commit_subject = checkout.info.subject.clone();
        run.ctx = ctx.clone();
        let dir = checkout.root.join(&spec.path);
        if !dir.is_dir() {
            run.provider = Some(provider);
            return fail(
                run,
                format!(
                    "desired state: path {} does not exist in the source {}",
                    spec.path.display(),
                    checkout.info.url
                ),
            );
        }
        if let Err(e) = crate::source::confine(&checkout.root, &dir) {
            run.provider = Some(provider);
            return fail(run, e.to_string());
        }
        let desired = match provider.desired(&checkout.root, &dir, &ctx) {
            Ok(d) => d,
            Err(e) => {
                run.provider = Some(provider);
                return fail(run, format!("desired state: {e}"));
            }
        };
        run.desired_count = Some(desired.resources.len());
        let live = match tokio::time::timeout(ctx.timeout, provider.live(&desired, &ctx)).await {
            Ok(Ok(l)) => l,
            Ok(Err(e)) => {
                run.provider = Some(provider);
                return fail(run, format!("live state: {e}"));
            }
            Err(_) => {
                run.provider = Some(provider);
                return fail(
                    run,
                    format!(
                        "live state: {}",
                        ProviderError::Timeout {
                            what: "reading live state".into(),
                            after: ctx.timeout
                        }
                    ),
                );
            }
        };
        let planning = plan::Planning {
            target: &spec.name,
            provider_name: &spec.provider,
            provider: provider.as_ref(),
            policy: &run.policy,
            masker: &self.masker,
            ctx: &ctx,
            now,
        };
        let outcome = plan::plan_target(&planning, desired, live).await;
        run.provider = Some(provider);
        match outcome {
            Ok(outcome) => {
                run.plan = outcome.plan;
                run.documents = outcome.documents;
                run
            }
            Err(e) => fail(run, format!("plan: {e}")),
        }
    }

    /// A provider's complaint about `connection`, with the line of the key
    /// it names where the config shows it.
    pub fn describe_build_error(&self, spec: &TargetSpec, error: ProviderError) -> String {
        // An unknown provider is a mistake in `provider:`, not in `connection:`.
        let (message, key) = match &error {
            ProviderError::Config(m) if !self.registry.knows(&spec.provider) => {
                (m.clone(), Some("provider".to_string()))
            }
            _ => {
                let message = error.to_string();
                let key = unknown_field(&message);
                (message, key)
            }
        };
        let line = key.and_then(|key| self.config.line_in_target(spec, &key)).or(spec.line);
        match line {
            Some(line) => format!("{}:{line}: target {}: {message}", self.config.file.display(), spec.name),
            None => format!("{}: target {}: {message}", self.config.file.display(), spec.name),
        }
    }
}

/// The key serde names in "unknown field `x`".
fn unknown_field(message: &str) -> Option<String> {
    let start = message.find("unknown field `")? + "unknown field `".len();
    let end = message[start..].find('`')?;
    Some(message[start..start + end].to_string())
}

/// What a plan says about a source it could not check out.
fn describe(spec: &SourceSpec, reference: Option<&str>) -> SourceInfo {
    match (&spec.git, &spec.dir) {
        (Some(git), _) => SourceInfo {
            url: source::redact_url(&git.url),
            reference: Some(reference.unwrap_or(&git.reference).to_string()),
            ..Default::default()
        },
        (None, Some(dir)) => SourceInfo {
            url: dir.display().to_string(),
            ..Default::default()
        },
        _ => SourceInfo::default(),
    }
}

/// The state directory's cache for one target; kept apart from history.
pub fn cache_dir(state_dir: &Path, target: &str) -> PathBuf {
    state_dir.join("cache").join(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_unknown_field_serde_names() {
        assert_eq!(
            unknown_field("connection: unknown field `comand`, expected one of `command`"),
            Some("comand".into())
        );
        assert_eq!(unknown_field("other"), None);
    }
}
