//! `plumb report` and `report --verify` over a large history: records of 10
//! targets audited every five minutes (mostly heartbeats, a drift incident a
//! day) with a signed digest every hour, written the way `serve` writes
//! them; then one report over the whole window — first reading every record,
//! then with the per-day summaries written when a day closes — and one
//! verification. Prints the store requests per recorded audit, wall time,
//! objects read and peak RSS.
//!
//! `cargo bench --bench report -- local 100000`
//! `cargo bench --bench report -- s3 http://127.0.0.1:PORT 10000` (a running
//! S3-compatible server with bucket `bench`, e.g. `moto_server -p PORT`).
//! See BENCHMARKS.md.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use async_trait::async_trait;
use chrono::{Duration, TimeZone, Utc};
use plumb::history::digest::DigestReason;
use plumb::history::record::{Extras, Record};
use plumb::history::{report, verify, History, HistoryError, Store};
use plumb::plan::{Change, Plan, Summary, TargetPlan};
use plumb_model::Action;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Counts the requests a store answers.
#[derive(Default)]
struct Counts {
    gets: AtomicUsize,
    puts: AtomicUsize,
    lists: AtomicUsize,
}

struct Counting {
    inner: Box<dyn Store>,
    counts: std::sync::Arc<Counts>,
}

#[async_trait]
impl Store for Counting {
    async fn put_new(&self, key: &str, bytes: &[u8]) -> Result<(), HistoryError> {
        self.counts.puts.fetch_add(1, Ordering::Relaxed);
        self.inner.put_new(key, bytes).await
    }
    async fn get(&self, key: &str) -> Result<Vec<u8>, HistoryError> {
        self.counts.gets.fetch_add(1, Ordering::Relaxed);
        self.inner.get(key).await
    }
    async fn get_opt(&self, key: &str) -> Result<Option<Vec<u8>>, HistoryError> {
        self.counts.gets.fetch_add(1, Ordering::Relaxed);
        self.inner.get_opt(key).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<String>, HistoryError> {
        self.counts.lists.fetch_add(1, Ordering::Relaxed);
        self.inner.list(prefix).await
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .unwrap_or(0.0)
        / 1024.0
}

fn target_plan(name: &str, drift: bool) -> TargetPlan {
    let mut t = TargetPlan::failed(name, "exec", String::new());
    t.error = None;
    t.exit_code = if drift { 2 } else { 0 };
    if drift {
        t.summary = Summary {
            update: 1,
            in_sync: 199,
            ..Default::default()
        };
        t.changes = vec![Change {
            id: "apps/v1/Deployment/shop/cart".into(),
            kind: "Deployment".into(),
            action: Action::Update,
            diff: "@@ -1 +1 @@\n-image: cart:1\n+image: cart:2\n".into(),
            paths: vec!["/spec/template/spec/containers[name=cart]/image".into()],
            changed_by: Some(plumb_model::ChangedBy {
                who: "kubectl-set".into(),
                when: None,
            }),
            confirmed_by: None,
            origin: None,
            desired_digest: None,
            live_digest: None,
            live_version: None,
        }];
    } else {
        t.summary = Summary {
            in_sync: 200,
            ..Default::default()
        };
    }
    t
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let mode = args.first().map(String::as_str).unwrap_or("local");
    let (endpoint, total) = match mode {
        "s3" => (
            args.get(1).cloned(),
            args.get(2).and_then(|n| n.parse().ok()).unwrap_or(10_000),
        ),
        _ => (None, args.get(1).and_then(|n| n.parse().ok()).unwrap_or(100_000usize)),
    };
    plumb::install_crypto_provider();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    let dir = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
    std::fs::create_dir_all(dir.path().join("desired")).map_err(|e| format!("desired dir: {e}"))?;
    let history = match &endpoint {
        Some(e) => format!("history:\n  s3: {{ bucket: bench, region: eu-west-1, endpoint: \"{e}\" }}\n"),
        None => "history: { dir: ./history }\n".to_string(),
    };
    let text = format!(
        "source: {{ dir: ./desired }}\nstate_dir: ./state\n{history}targets:\n  - name: t0\n    provider: exec\n"
    );
    std::fs::write(dir.path().join("plumb.yaml"), text).map_err(|e| format!("write config: {e}"))?;
    let config = plumb::config::Config::load(&dir.path().join("plumb.yaml"))?;

    runtime.block_on(async {
        let counts = std::sync::Arc::new(Counts::default());
        let store = Counting {
            inner: plumb::history::open(&config)
                .await
                .map_err(|e| format!("open store: {e}"))?,
            counts: counts.clone(),
        };
        let recorder = History::with_store(Box::new(store), &config).map_err(|e| format!("history: {e}"))?;
        let store = recorder.store();
        let targets: Vec<String> = (0..10).map(|i| format!("t{i}")).collect();
        let per_target = total / targets.len();
        let start = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).single().ok_or("start date")?;
        let written = Instant::now();
        let mut record_requests = 0;
        let mut bytes_total = 0usize;
        // Write as the recorder does (chain, heartbeats, day summaries), but
        // all targets of one audit at once.
        for i in 0..per_target {
            let when = start + Duration::minutes(5 * i as i64);
            let drift = (i % 288) >= 100 && (i % 288) < 112; // one hour of drift a day
            let plan = Plan {
                format_version: 1,
                plumb_version: "bench".into(),
                source: plumb::source::SourceInfo {
                    url: "repo".into(),
                    reference: Some("main".into()),
                    commit: Some(format!("{:040x}", i / 50)),
                    ..Default::default()
                },
                started_at: when,
                finished_at: when,
                exit_code: if drift { 2 } else { 0 },
                targets: targets.iter().map(|t| target_plan(t, drift)).collect(),
                seal: None,
            };
            let before = counts.gets.load(Ordering::Relaxed)
                + counts.puts.load(Ordering::Relaxed)
                + counts.lists.load(Ordering::Relaxed);
            let outcome = recorder.record(&plan, &BTreeMap::<String, Extras>::new()).await;
            if !outcome.failed.is_empty() {
                return Err(format!("recording failed: {:?}", outcome.failed).into());
            }
            record_requests += counts.gets.load(Ordering::Relaxed)
                + counts.puts.load(Ordering::Relaxed)
                + counts.lists.load(Ordering::Relaxed)
                - before;
            if i % 12 == 11 {
                let failed = recorder.write_digests(&targets, DigestReason::Interval).await;
                if !failed.is_empty() {
                    return Err(format!("digest failed: {failed:?}").into());
                }
            }
            if i == 0 {
                for key in &outcome.written {
                    bytes_total += store.get(key).await.map(|b| b.len()).unwrap_or(0);
                }
            }
        }
        let end = start + Duration::minutes(5 * per_target as i64);
        println!(
            "records:             {} ({} targets x {per_target}, every 5 min over {} days)",
            per_target * targets.len(),
            targets.len(),
            (end - start).num_days()
        );
        println!(
            "written in:          {:.1} s (first full records ~{} bytes each)",
            written.elapsed().as_secs_f64(),
            bytes_total / targets.len()
        );
        println!(
            "recording:           {:.2} store requests per target audit (digests and day summaries aside)",
            record_requests as f64 / (per_target * targets.len()) as f64
        );
        let _ = Record::build; // the record format written above

        counts.gets.store(0, Ordering::Relaxed);
        let timer = Instant::now();
        let r = report::build(store, &targets, start, end, Duration::hours(1))
            .await
            .map_err(|e| format!("report: {e}"))?;
        let with_summaries = timer.elapsed();
        let gets_with = counts.gets.load(Ordering::Relaxed);
        if r.targets[0].audits != per_target {
            return Err(format!("report counted {} audits of {per_target}", r.targets[0].audits).into());
        }

        // The same report reading every record (summaries ignored).
        counts.gets.store(0, Ordering::Relaxed);
        let timer = Instant::now();
        let mut audits = 0;
        for t in &targets {
            let keys = store
                .list(&format!("{t}/records/"))
                .await
                .map_err(|e| format!("list {t}: {e}"))?;
            let mut obs = Vec::with_capacity(keys.len());
            for key in keys {
                let bytes = store.get(&key).await.map_err(|e| format!("get {key}: {e}"))?;
                let record: Record = serde_json::from_slice(&bytes).map_err(|e| format!("record {key}: {e}"))?;
                obs.push((&record).into());
            }
            audits += report::target_report(t, &obs, start, end, Duration::hours(1)).audits;
        }
        let without = timer.elapsed();
        let gets_without = counts.gets.load(Ordering::Relaxed);
        if audits != per_target * targets.len() {
            return Err(format!("{audits} audits read of {}", per_target * targets.len()).into());
        }
        println!(
            "report, day summaries: {:.2} s, {gets_with} objects read",
            with_summaries.as_secs_f64()
        );
        println!(
            "report, every record:  {:.2} s, {gets_without} objects read",
            without.as_secs_f64()
        );
        println!("incidents per target:  {}", r.targets[0].incidents.len());
        println!("peak RSS so far:       {:.1} MiB", peak_rss_mib());

        counts.gets.store(0, Ordering::Relaxed);
        counts.lists.store(0, Ordering::Relaxed);
        let timer = Instant::now();
        let options = verify::Options {
            trusted: plumb::history::signing::load_existing(&config.state_dir)
                .map_err(|e| format!("key: {e}"))?
                .map(|k| k.all_public())
                .unwrap_or_default(),
            trust: "the bench's key".into(),
            keep: None,
            hints: None,
            now: Utc::now(),
        };
        let verdict = verify::verify(store, &targets, &options)
            .await
            .map_err(|e| format!("verify: {e}"))?;
        if !verdict.intact {
            return Err(format!("verify found problems:\n{}", verify::text(&verdict)).into());
        }
        println!(
            "verify:                {:.2} s, {} records + {} digests read ({} GETs, {} LISTs)",
            timer.elapsed().as_secs_f64(),
            verdict.records_read,
            verdict.digests_read,
            counts.gets.load(Ordering::Relaxed),
            counts.lists.load(Ordering::Relaxed)
        );
        println!("peak RSS:              {:.1} MiB", peak_rss_mib());
        Ok::<(), Box<dyn std::error::Error>>(())
    })
}
