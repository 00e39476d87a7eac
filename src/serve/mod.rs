//! `plumb serve`: the daemon. Each target is audited once at start-up and
//! then on its schedule, never twice at once (a tick that finds it still
//! running is skipped and counted), within a global limit of concurrent
//! audits. Sources are fetched every `poll`; each audit pins the last good
//! commit, so a Git outage never marks targets failed while a good commit
//! exists. Every audit is recorded in the history; targets whose policy
//! says `reconcile` are applied after a clean plan. The HTTP side (metrics,
//! API, status page) lives in `http`.

pub mod http;
mod listener;
mod live_metrics;
mod page;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::{watch, Semaphore};

use crate::audit::Auditor;
use crate::config::{Config, SourceSpec, TargetSpec};
use crate::plan::{Plan, TargetPlan};
use crate::policy::{Mode, Suspension};
use crate::registry::Registry;
use crate::schedule::Schedule;
use crate::source::{Checkout, SourceInfo};
use crate::state::State;

pub use live_metrics::LiveMetrics;

/// Audits of different targets that may run at once (`server.max_concurrent_audits`).
pub const CONCURRENT_AUDITS: usize = 4;
/// A target without `schedule` is audited this often.
pub const DEFAULT_SCHEDULE: &str = "*/5 * * * *";
/// How often a source is fetched without `poll`.
pub const DEFAULT_POLL: Duration = Duration::from_secs(60);
/// How long SIGTERM waits for running audits.
pub const GRACE: Duration = Duration::from_secs(30);

/// What the daemon knows about one target, for the API and the page.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TargetStatus {
    pub name: String,
    pub provider: String,
    pub running: bool,
    pub last_run: Option<DateTime<Utc>>,
    pub last_success: Option<DateTime<Utc>>,
    pub skipped_runs: u64,
    pub suspended: Option<Suspension>,
    #[serde(skip)]
    pub plan: Option<TargetPlan>,
    pub source: Option<SourceInfo>,
}

/// The last good checkout of one source and how fetching goes.
#[derive(Debug, Clone, Default)]
struct SourceStatus {
    good: Option<Checkout>,
    last_success: Option<DateTime<Utc>>,
    last_error: Option<String>,
}

/// The configuration in force and what was derived from it.
pub struct Loaded {
    pub config: Config,
    schedules: BTreeMap<String, Schedule>,
}

impl Loaded {
    fn new(config: Config) -> anyhow::Result<Loaded> {
        let mut schedules = BTreeMap::new();
        for t in &config.targets {
            let tz = t
                .timezone
                .as_deref()
                .and_then(|z| z.parse().ok())
                .unwrap_or(chrono_tz::UTC);
            let text = t.schedule.as_deref().unwrap_or(DEFAULT_SCHEDULE);
            schedules.insert(
                t.name.clone(),
                Schedule::parse(text, tz).map_err(|e| anyhow::anyhow!("target {}: {e}", t.name))?,
            );
        }
        // Fail closed: a token that is configured but not there must not
        // open the API to everyone.
        if let Some(var) = &config.server.token_env {
            if std::env::var(var).map_or(true, |t| t.is_empty()) {
                anyhow::bail!(
                    "server.token_env names {var}, which is not set or empty; set it to the API token (or remove token_env to serve the status page and metrics only, with no API reads)"
                );
            }
        }
        Ok(Loaded { config, schedules })
    }
}

pub struct Daemon {
    config_path: PathBuf,
    registry: Registry,
    loaded: RwLock<Arc<Loaded>>,
    targets: Mutex<BTreeMap<String, TargetStatus>>,
    sources: Mutex<HashMap<String, SourceStatus>>,
    suspensions: Mutex<BTreeMap<String, Suspension>>,
    state: Mutex<State>,
    pub metrics: LiveMetrics,
    limit: Semaphore,
    ready: AtomicBool,
    shutdown: watch::Sender<bool>,
    /// Tells the schedulers of the configuration in force to stop (SIGHUP).
    generation: watch::Sender<u64>,
    /// Direct pushes to Alertmanager (`alerting.alertmanager.urls`).
    pub alerter: crate::alert::Alerter,
    /// The audit history, opened at the first recording and again when a
    /// reload changes `history:`; keyed by that section.
    history: tokio::sync::Mutex<Option<(String, Arc<crate::history::History>)>>,
    /// Webhook delivery ids already acted on, oldest first (bounded).
    deliveries: Mutex<(std::collections::VecDeque<String>, std::collections::HashSet<String>)>,
    /// Whether a push is being handled, and whether another came meanwhile.
    pushing: Mutex<(bool, bool)>,
}

/// How often serve applies local history retention.
const RETENTION_EVERY: Duration = Duration::from_secs(3600);

/// How many webhook delivery ids are remembered against replays.
const REMEMBERED_DELIVERIES: usize = 4096;

fn source_key(spec: &SourceSpec) -> String {
    format!("{spec:?}")
}

fn suspensions_file(state_dir: &Path) -> PathBuf {
    state_dir.join("suspensions.json")
}

impl Daemon {
    pub fn new(config_path: &Path, registry: Registry) -> anyhow::Result<Arc<Daemon>> {
        let config = Config::load(config_path)?;
        let loaded = Loaded::new(config)?;
        let state = State::load(&loaded.config.state_dir);
        let suspensions: BTreeMap<String, Suspension> = std::fs::read(suspensions_file(&loaded.config.state_dir))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let metrics = LiveMetrics::new(&loaded.config)?;
        let loaded_concurrency = loaded
            .config
            .server
            .max_concurrent_audits
            .unwrap_or(CONCURRENT_AUDITS)
            .max(1);
        let alerter = crate::alert::Alerter::new(&alertmanager_urls(&loaded.config))?;
        let daemon = Arc::new(Daemon {
            config_path: config_path.to_path_buf(),
            registry,
            loaded: RwLock::new(Arc::new(loaded)),
            targets: Mutex::new(BTreeMap::new()),
            sources: Mutex::new(HashMap::new()),
            suspensions: Mutex::new(suspensions),
            state: Mutex::new(state),
            metrics,
            limit: Semaphore::new(loaded_concurrency),
            ready: AtomicBool::new(false),
            shutdown: watch::channel(false).0,
            generation: watch::channel(0).0,
            alerter,
            history: tokio::sync::Mutex::new(None),
            deliveries: Mutex::new(Default::default()),
            pushing: Mutex::new((false, false)),
        });
        daemon.sync_targets();
        Ok(daemon)
    }

    pub fn loaded(&self) -> Arc<Loaded> {
        match self.loaded.read() {
            Ok(l) => l.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn lock<'a, T>(m: &'a Mutex<T>) -> std::sync::MutexGuard<'a, T> {
        m.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes the status table match the configured targets.
    fn sync_targets(&self) {
        let loaded = self.loaded();
        let mut targets = Self::lock(&self.targets);
        targets.retain(|name, _| loaded.config.target(name).is_some());
        let suspensions = Self::lock(&self.suspensions);
        for t in &loaded.config.targets {
            let entry = targets.entry(t.name.clone()).or_default();
            entry.name = t.name.clone();
            entry.provider = t.provider.clone();
            entry.suspended = suspensions.get(&t.name).cloned();
        }
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    pub fn statuses(&self) -> Vec<TargetStatus> {
        Self::lock(&self.targets).values().cloned().collect()
    }

    pub fn status(&self, name: &str) -> Option<TargetStatus> {
        Self::lock(&self.targets).get(name).cloned()
    }

    /// Starts schedulers and source pollers, serves HTTP until SIGTERM.
    pub async fn run(self: Arc<Self>) -> anyhow::Result<i32> {
        let listen = self
            .loaded()
            .config
            .server
            .listen
            .clone()
            .unwrap_or_else(|| "127.0.0.1:9469".into());
        let listener = tokio::net::TcpListener::bind(&listen)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))?;
        tracing::info!(address = %listen, "plumb serve listening");
        self.clone().start_loops();
        tokio::spawn(self.clone().resend_alerts());
        tokio::spawn(self.clone().digest_loop());
        self.ready.store(true, Ordering::SeqCst);

        let signals = tokio::spawn(self.clone().watch_signals());
        let server = &self.loaded().config.server;
        let defaults = listener::Limits::default();
        let limits = listener::Limits {
            header_timeout: server.header_timeout.unwrap_or(defaults.header_timeout),
            idle_timeout: server.idle_timeout.unwrap_or(defaults.idle_timeout),
            max_connections: server.max_connections.unwrap_or(defaults.max_connections),
        };
        let app = http::router(self.clone());
        listener::serve(listener, app, limits, self.shutdown.subscribe(), GRACE).await;
        signals.abort();
        self.drain().await;
        // Every target's history ends vouched for: a stopped daemon shows as
        // stopped, not as a gap.
        let config = self.loaded().config.clone();
        if let Some(history) = self.history(&config).await {
            let names: Vec<String> = config.targets.iter().map(|t| t.name.clone()).collect();
            for _ in history
                .write_digests(&names, crate::history::digest::DigestReason::Stop)
                .await
            {
                self.metrics.history_failed();
            }
        }
        Ok(0)
    }

    /// The history store of `config`, opened once per `history:` section.
    async fn history(&self, config: &Config) -> Option<Arc<crate::history::History>> {
        let identity = format!("{:?}|{}", config.history, config.state_dir.display());
        let mut slot = self.history.lock().await;
        if let Some((id, history)) = slot.as_ref() {
            if *id == identity {
                return Some(history.clone());
            }
        }
        match crate::history::History::open(config).await {
            Ok(history) => {
                let history = Arc::new(history);
                *slot = Some((identity, history.clone()));
                Some(history)
            }
            Err(e) => {
                tracing::error!(error = %e, "history store not available; this audit is not recorded");
                None
            }
        }
    }

    /// Writes a signed digest for every target whose newest one is older
    /// than `history.digest_every`, with or without new records, and runs
    /// local retention (at most hourly); looks every `digest_every`, between
    /// one second and one minute.
    async fn digest_loop(self: Arc<Self>) {
        let mut shutdown = self.shutdown.subscribe();
        let mut last_retention: Option<Instant> = None;
        loop {
            let config = self.loaded().config.clone();
            let every = config
                .history
                .digest_every
                .unwrap_or(crate::history::chain::DEFAULT_DIGEST_EVERY);
            let tick = every.clamp(Duration::from_secs(1), Duration::from_secs(60));
            tokio::select! {
                _ = tokio::time::sleep(tick) => {}
                _ = shutdown.wait_for(|stop| *stop) => return,
            }
            let Some(history) = self.history(&config).await else {
                continue;
            };
            for t in &config.targets {
                match history.digest_due(&t.name).await {
                    Ok(false) => {}
                    Ok(true) => {
                        if let Err(e) = history
                            .write_digest(&t.name, crate::history::digest::DigestReason::Interval)
                            .await
                        {
                            tracing::error!(target = %t.name, error = %e, "history digest not written");
                            self.metrics.history_failed();
                        }
                    }
                    Err(e) => {
                        tracing::error!(target = %t.name, error = %e, "history digest not written");
                        self.metrics.history_failed();
                    }
                }
            }
            // Retention walks the store: once an hour is enough.
            if last_retention.is_none_or(|at: Instant| at.elapsed() >= RETENTION_EVERY) {
                last_retention = Some(Instant::now());
                let retention_config = config.clone();
                let _ = tokio::task::spawn_blocking(move || crate::history::apply_retention(&retention_config)).await;
            }
        }
    }

    /// Waits for running audits to finish, up to the grace period.
    async fn drain(&self) {
        let deadline = Instant::now() + GRACE;
        while Self::lock(&self.targets).values().any(|t| t.running) {
            if Instant::now() > deadline {
                tracing::warn!("grace period over; abandoning running audits");
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn watch_signals(self: Arc<Self>) {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::hangup()),
        ) else {
            tracing::error!("cannot install signal handlers");
            return;
        };
        loop {
            tokio::select! {
                _ = term.recv() => break,
                _ = int.recv() => break,
                _ = hup.recv() => self.reload(),
            }
        }
        tracing::info!("shutting down: no new audits; waiting for running ones");
        let _ = self.shutdown.send(true);
    }

    /// SIGHUP: a bad config is rejected and the old one kept.
    pub fn reload(self: &Arc<Self>) {
        match Config::load(&self.config_path)
            .map_err(anyhow::Error::from)
            .and_then(Loaded::new)
        {
            Ok(loaded) => {
                if let Err(e) = self.metrics.relabel(&loaded.config) {
                    tracing::error!(error = %e, "config reload rejected: metrics");
                    return;
                }
                match self.loaded.write() {
                    Ok(mut l) => *l = Arc::new(loaded),
                    Err(p) => *p.into_inner() = Arc::new(loaded),
                }
                self.alerter.set_urls(&alertmanager_urls(&self.loaded().config));
                self.sync_targets();
                self.generation.send_modify(|g| *g += 1);
                self.clone().start_loops();
                tracing::info!("configuration reloaded");
            }
            Err(e) => tracing::error!(error = %e, "configuration reload rejected; keeping the old one"),
        }
    }

    fn start_loops(self: Arc<Self>) {
        let loaded = self.loaded();
        let generation = *self.generation.borrow();
        let mut seen = std::collections::HashSet::new();
        let mut specs = vec![(
            loaded.config.source.clone(),
            loaded.config.source.git.as_ref().and_then(|g| g.poll),
        )];
        for t in &loaded.config.targets {
            if let Some(own) = &t.source {
                specs.push((own.clone(), own.git.as_ref().and_then(|g| g.poll)));
            }
        }
        for (spec, poll) in specs {
            if seen.insert(source_key(&spec)) {
                tokio::spawn(self.clone().poll_source(spec, poll.unwrap_or(DEFAULT_POLL), generation));
            }
        }
        for t in &loaded.config.targets {
            tokio::spawn(self.clone().schedule_target(t.name.clone(), generation));
        }
    }

    fn stopped(&self, generation: u64) -> bool {
        *self.shutdown.borrow() || *self.generation.borrow() != generation
    }

    async fn poll_source(self: Arc<Self>, spec: SourceSpec, every: Duration, generation: u64) {
        let mut stop = self.shutdown.subscribe();
        let mut reload = self.generation.subscribe();
        loop {
            self.fetch(&spec).await;
            if spec.git.is_none() {
                return; // a directory is read afresh by every audit
            }
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = stop.changed() => {}
                _ = reload.changed() => {}
            }
            if self.stopped(generation) {
                return;
            }
        }
    }

    /// Fetches a source; on failure the last good checkout stays in use.
    async fn fetch(&self, spec: &SourceSpec) -> Option<Checkout> {
        let loaded = self.loaded();
        let auditor = match Auditor::new(&loaded.config, &self.registry) {
            Ok(a) => a,
            Err(e) => {
                tracing::error!(error = %e, "cannot prepare audits");
                return None;
            }
        };
        let result = auditor.checkout(spec, None).await;
        let mut sources = Self::lock(&self.sources);
        let status = sources.entry(source_key(spec)).or_default();
        match result {
            Ok(c) => {
                status.last_success = Some(Utc::now());
                status.last_error = None;
                if spec == &loaded.config.source {
                    self.metrics.source_fetched(&c.info);
                }
                status.good = Some(c.clone());
                Some(c)
            }
            Err(e) => {
                match &status.good {
                    Some(good) => {
                        tracing::warn!(error = %e, commit = ?good.info.commit, "source fetch failed; auditing the last good commit")
                    }
                    None => tracing::error!(error = %e, "source fetch failed and no good commit is known yet"),
                }
                status.last_error = Some(e);
                status.good.clone()
            }
        }
    }

    /// The checkout an audit pins: the last good one, else a fetch now.
    async fn checkout_for(&self, spec: &SourceSpec) -> Result<Checkout, String> {
        let known = Self::lock(&self.sources).get(&source_key(spec)).cloned();
        match known {
            Some(SourceStatus { good: Some(c), .. }) if spec.git.is_some() => Ok(c),
            Some(SourceStatus {
                good: None,
                last_error: Some(e),
                ..
            }) if spec.git.is_some() => Err(format!("no good commit of the source yet: {e}")),
            _ => self.fetch(spec).await.ok_or_else(|| {
                Self::lock(&self.sources)
                    .get(&source_key(spec))
                    .and_then(|s| s.last_error.clone())
                    .unwrap_or_else(|| "source unavailable".into())
            }),
        }
    }

    async fn schedule_target(self: Arc<Self>, name: String, generation: u64) {
        let mut stop = self.shutdown.subscribe();
        let mut reload = self.generation.subscribe();
        // Once at start-up (or reload), then on the schedule.
        self.clone().trigger(&name);
        loop {
            let Some(schedule) = self.loaded().schedules.get(&name).cloned() else {
                return;
            };
            let Some(next) = schedule.next_after(Utc::now()) else {
                tracing::warn!(target = %name, "schedule has no next time");
                return;
            };
            let jitter = self.loaded().config.target(&name).and_then(|t| t.jitter);
            let wait = (next - Utc::now()).to_std().unwrap_or_default() + jittered(jitter);
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.changed() => {}
                _ = reload.changed() => {}
            }
            if self.stopped(generation) {
                return;
            }
            self.clone().trigger(&name);
        }
    }

    /// A push arrived: fetch every Git source now, then audit every target.
    /// Returns how many audits started.
    /// Whether the webhook delivery `id` is new (and remembers it): a
    /// replayed delivery must not audit every target again.
    pub fn first_delivery(&self, id: &str) -> bool {
        let mut guard = Self::lock(&self.deliveries);
        let (order, seen) = &mut *guard;
        if seen.contains(id) {
            return false;
        }
        if order.len() >= REMEMBERED_DELIVERIES {
            if let Some(oldest) = order.pop_front() {
                seen.remove(&oldest);
            }
        }
        order.push_back(id.to_string());
        seen.insert(id.to_string());
        true
    }

    /// A push: fetch and audit, unless a push is being handled already,
    /// in which case that one runs once more when it ends (a burst of
    /// pushes costs two fetches at most). Returns None when coalesced,
    /// else how many audits started.
    pub async fn on_push_coalesced(self: Arc<Self>) -> Option<usize> {
        {
            let mut state = Self::lock(&self.pushing);
            if state.0 {
                state.1 = true;
                return None;
            }
            *state = (true, false);
        }
        let mut started = 0;
        loop {
            started += self.clone().on_push().await;
            let mut state = Self::lock(&self.pushing);
            if state.1 {
                state.1 = false;
                continue;
            }
            state.0 = false;
            return Some(started);
        }
    }

    pub async fn on_push(self: Arc<Self>) -> usize {
        let loaded = self.loaded();
        let mut seen = std::collections::HashSet::new();
        let mut specs = vec![loaded.config.source.clone()];
        specs.extend(loaded.config.targets.iter().filter_map(|t| t.source.clone()));
        for spec in specs {
            if spec.git.is_some() && seen.insert(source_key(&spec)) {
                self.fetch(&spec).await;
            }
        }
        let names: Vec<String> = loaded.config.targets.iter().map(|t| t.name.clone()).collect();
        names.iter().filter(|n| self.clone().trigger(n)).count()
    }

    /// Starts an audit of `name` unless one is running; returns whether it
    /// started.
    pub fn trigger(self: Arc<Self>, name: &str) -> bool {
        {
            let mut targets = Self::lock(&self.targets);
            let Some(status) = targets.get_mut(name) else {
                return false;
            };
            if status.running {
                status.skipped_runs += 1;
                self.metrics.skipped(name);
                tracing::warn!(target = %name, "previous audit still running; this run is skipped");
                return false;
            }
            status.running = true;
        }
        let name = name.to_string();
        tokio::spawn(async move {
            self.audit(&name).await;
            if let Some(status) = Self::lock(&self.targets).get_mut(&name) {
                status.running = false;
            }
        });
        true
    }

    /// One audit of one target: plan, reconcile if policy says so, record.
    async fn audit(self: &Arc<Self>, name: &str) {
        let Ok(_permit) = self.limit.acquire().await else {
            return;
        };
        if *self.shutdown.borrow() {
            return;
        }
        let loaded = self.loaded();
        let Some(spec) = loaded.config.target(name).cloned() else {
            return;
        };
        let src = spec.source.clone().unwrap_or_else(|| loaded.config.source.clone());
        let checkout = self.checkout_for(&src).await;
        let auditor = match Auditor::new(&loaded.config, &self.registry) {
            Ok(a) => a,
            Err(e) => {
                tracing::error!(error = %e, "cannot prepare audits");
                return;
            }
        };
        let started_at = Utc::now();
        let clock = Instant::now();
        let mut run = auditor.run_target_isolated(&spec, checkout.clone(), started_at).await;
        if let Some(s) = self.api_suspension(name, run.timezone) {
            run.policy.policy.suspend = Some(s);
        }

        let mut reconciled = Vec::new();
        if run.policy.policy.mode == Mode::Reconcile && run.plan.error.is_none() && !run.plan.changes.is_empty() {
            let decisions = crate::apply::decide(&run);
            if decisions.refused.is_none() && decisions.allowed().next().is_some() {
                reconciled = crate::apply::execute(&run, &decisions).await;
                for r in &reconciled {
                    self.metrics.reconciled(name, r);
                }
                // Report what is true after the change.
                if reconciled
                    .iter()
                    .any(|r| matches!(r.outcome, plumb_model::Outcome::Applied))
                {
                    let again = auditor.run_target_isolated(&spec, checkout.clone(), Utc::now()).await;
                    run.plan = again.plan;
                }
            } else if let Some(why) = &decisions.refused {
                tracing::warn!(target = %name, why, "reconcile refused");
            }
        }
        self.metrics.observe_duration(name, clock.elapsed());
        if let Ok(c) = &checkout {
            if spec.source.is_some() {
                run.plan.source = Some(c.info.clone());
            }
        }

        let plan = Plan {
            format_version: crate::plan::FORMAT_VERSION,
            plumb_version: env!("CARGO_PKG_VERSION").to_string(),
            source: checkout.as_ref().map(|c| c.info.clone()).unwrap_or_default(),
            started_at,
            finished_at: Utc::now(),
            exit_code: run.plan.exit_code,
            targets: vec![run.plan.clone()],
            seal: None,
        };
        {
            let mut state = Self::lock(&self.state);
            state.record(&plan);
            if let Err(e) = state.save(&loaded.config.state_dir) {
                tracing::warn!(error = %e, "could not save state");
            }
        }
        // History: evidence of every audit; a failure is counted, never fatal.
        let mut by_target = BTreeMap::new();
        by_target.insert(name.to_string(), reconciled);
        match self.history(&loaded.config).await {
            Some(history) => {
                let outcome =
                    crate::history::record_runs(&history, &plan, std::slice::from_ref(&run), &by_target).await;
                if !outcome.failed.is_empty() {
                    self.metrics.history_failed();
                }
            }
            None => self.metrics.history_failed(),
        }
        self.push_alerts(&spec, &run.plan).await;
        // A suspension the API took while this audit ran is newer than the
        // one the audit saw: read it again, so the page never drops it.
        let suspended = self
            .api_suspension(name, run.timezone)
            .or_else(|| run.policy.suspended(Utc::now(), run.timezone).cloned());
        let mut targets = Self::lock(&self.targets);
        if let Some(status) = targets.get_mut(name) {
            status.last_run = Some(plan.finished_at);
            if run.plan.exit_code != 1 {
                status.last_success = Some(plan.finished_at);
            }
            status.source = Some(plan.source.clone());
            status.plan = Some(run.plan);
            status.suspended = suspended;
        }
    }

    /// The break-glass suspension the API set for `name`, while in force.
    fn api_suspension(&self, name: &str, tz: chrono_tz::Tz) -> Option<Suspension> {
        Self::lock(&self.suspensions)
            .get(name)
            .filter(|s| crate::policy::parse_until(&s.until, tz).is_ok_and(|until| Utc::now() < until))
            .cloned()
    }

    /// Break-glass from the API: reconcile stops until `until`, audits go on.
    pub fn suspend(&self, name: &str, suspension: Suspension) -> Result<(), String> {
        let tz = self
            .loaded()
            .config
            .target(name)
            .and_then(|t| t.timezone.as_deref())
            .and_then(|z| z.parse().ok())
            .unwrap_or(chrono_tz::UTC);
        let until = crate::policy::parse_until(&suspension.until, tz)?;
        if until <= Utc::now() {
            return Err(format!(
                "until {} is in the past ({}); a suspension must end in the future, and the one in force (if any) is kept",
                suspension.until,
                until.to_rfc3339()
            ));
        }
        if suspension.reason.trim().is_empty() {
            return Err("a suspension needs a reason".into());
        }
        let mut all = Self::lock(&self.suspensions);
        all.insert(name.to_string(), suspension.clone());
        let text = serde_json::to_string_pretty(&*all).unwrap_or_default();
        let state_dir = self.loaded().config.state_dir.clone();
        if let Err(e) = std::fs::create_dir_all(&state_dir)
            .and_then(|_| crate::metrics::write_atomically(&suspensions_file(&state_dir), &text))
        {
            tracing::warn!(error = %e, "suspension not persisted");
        }
        if let Some(t) = Self::lock(&self.targets).get_mut(name) {
            t.suspended = Some(suspension);
        }
        tracing::warn!(target = %name, "reconcile suspended through the API");
        Ok(())
    }

    /// The plan made of every target's latest audit, for metrics.
    pub fn latest_plan(&self) -> Plan {
        let statuses = self.statuses();
        let targets: Vec<TargetPlan> = statuses.iter().filter_map(|s| s.plan.clone()).collect();
        let source = Self::lock(&self.sources)
            .get(&source_key(&self.loaded().config.source))
            .and_then(|s| s.good.as_ref().map(|c| c.info.clone()))
            .unwrap_or_default();
        Plan {
            format_version: crate::plan::FORMAT_VERSION,
            plumb_version: env!("CARGO_PKG_VERSION").to_string(),
            source,
            started_at: Utc::now(),
            finished_at: Utc::now(),
            exit_code: Plan::compute_exit_code(&targets),
            targets,
            seal: None,
        }
    }

    /// The state for metrics. With a Git source, its last success is when
    /// a fetch last worked, not when an audit last ran: audits go on with
    /// the last good commit during an outage, and
    /// `plumb_source_last_success_timestamp_seconds` must show the outage.
    pub fn state(&self) -> State {
        let mut state = Self::lock(&self.state).clone();
        let loaded = self.loaded();
        if loaded.config.source.git.is_some() {
            state.source_last_success = Self::lock(&self.sources)
                .get(&source_key(&loaded.config.source))
                .and_then(|s| s.last_success)
                .map(|t| t.timestamp());
        }
        state
    }

    /// The status page's address, for links in alerts: `PLUMB_EXTERNAL_URL`
    /// when set (behind a proxy or a Service), else the listen address with
    /// an unspecified host replaced by this host's name.
    pub fn page_url(&self) -> String {
        if let Ok(u) = std::env::var("PLUMB_EXTERNAL_URL") {
            if !u.trim().is_empty() {
                return u.trim().trim_end_matches('/').to_string();
            }
        }
        let listen = self
            .loaded()
            .config
            .server
            .listen
            .clone()
            .unwrap_or_else(|| "127.0.0.1:9469".into());
        let host_name = || {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_string())
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "localhost".into())
        };
        let address = match listen.rsplit_once(':') {
            Some(("0.0.0.0" | "[::]" | "", port)) => format!("{}:{port}", host_name()),
            _ => listen,
        };
        format!("http://{address}")
    }

    /// After an audit: the target's alerts to every Alertmanager peer.
    async fn push_alerts(&self, spec: &TargetSpec, plan: &TargetPlan) {
        if !self.alerter.has_peers() {
            return;
        }
        let now = Utc::now();
        let firing = crate::alert::firing(spec, plan, &self.page_url(), now);
        let batch = self.alerter.update(&spec.name, firing, now);
        for e in self.alerter.send(&batch).await {
            self.metrics.alert_failed();
            tracing::warn!(target = %spec.name, error = %e, "could not push alerts to an Alertmanager peer");
        }
    }

    /// Re-sends active alerts between audits, so that a slow schedule does
    /// not let them lapse, and resolves those of removed targets.
    async fn resend_alerts(self: Arc<Self>) {
        let mut stop = self.shutdown.subscribe();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(crate::alert::RESEND_EVERY) => {}
                _ = stop.changed() => return,
            }
            if !self.alerter.has_peers() {
                continue;
            }
            let loaded = self.loaded();
            let names: Vec<&str> = loaded.config.targets.iter().map(|t| t.name.as_str()).collect();
            let batch = self.alerter.refresh(&names, Utc::now());
            for e in self.alerter.send(&batch).await {
                self.metrics.alert_failed();
                tracing::warn!(error = %e, "could not re-send alerts to an Alertmanager peer");
            }
        }
    }

    pub fn target_spec(&self, name: &str) -> Option<TargetSpec> {
        self.loaded().config.target(name).cloned()
    }
}

fn alertmanager_urls(config: &Config) -> Vec<String> {
    config
        .alerting
        .alertmanager
        .as_ref()
        .map(|a| a.urls.clone())
        .unwrap_or_default()
}

/// A random delay in `[0, jitter]`.
pub fn jittered(jitter: Option<Duration>) -> Duration {
    match jitter {
        Some(j) if !j.is_zero() => {
            let millis = rand::Rng::gen_range(&mut rand::thread_rng(), 0..=j.as_millis().min(u64::MAX as u128) as u64);
            Duration::from_millis(millis)
        }
        _ => Duration::ZERO,
    }
}

/// `plumb serve`.
pub async fn serve(config_path: &Path, registry: Registry) -> anyhow::Result<i32> {
    let daemon = Daemon::new(config_path, registry)?;
    daemon.run().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_its_bound_and_varies() {
        assert_eq!(jittered(None), Duration::ZERO);
        assert_eq!(jittered(Some(Duration::ZERO)), Duration::ZERO);
        let bound = Duration::from_secs(2);
        let delays: Vec<Duration> = (0..200).map(|_| jittered(Some(bound))).collect();
        assert!(delays.iter().all(|d| *d <= bound));
        let distinct: std::collections::BTreeSet<_> = delays.iter().collect();
        assert!(
            distinct.len() > 50,
            "jitter hardly varies: {} distinct values",
            distinct.len()
        );
    }
}
