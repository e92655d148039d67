//! Code shared by the benchmark binaries (included with `#[path]`;
//! the crate has no library): the contact list, the once-a-second sampler, process statistics
//! from `/proc`, the simulator's admin API and ledger checks, and the result record the
//! dispatch binaries write.

// Each binary uses a different part of this module.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail, ensure};
use mongodb::bson::{DateTime, Document, doc};
use mongodb::options::InsertManyOptions;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use voice_agent_domain::PhoneNumber;

/// Largest list the benchmark builds (the phone pattern below has room for about 8 million).
pub(crate) const MAX_CONTACTS: usize = 2_000_000;
/// Contacts per `insert_many`.
const INSERT_CHUNK: usize = 10_000;

/// `n` distinct valid US numbers: +1 212 XXX XXXX, exchanges from 500 up, every candidate
/// checked with the domain's own parser so that no contact is skipped as invalid.
pub(crate) fn phone_numbers(n: usize) -> anyhow::Result<Vec<String>> {
    ensure!(
        (1..=MAX_CONTACTS).contains(&n),
        "contacts must be between 1 and {MAX_CONTACTS}"
    );
    let mut phones = Vec::with_capacity(n);
    let mut rejected = 0usize;
    'outer: for exchange in (500..1000).chain(200..500) {
        for line in 0..10_000 {
            let raw = format!("+1212{exchange:03}{line:04}");
            match PhoneNumber::parse(&raw, "US") {
                Ok(p) if p.as_str() == raw => phones.push(raw),
                _ => rejected += 1,
            }
            if phones.len() == n {
                break 'outer;
            }
        }
    }
    ensure!(
        phones.len() == n,
        "only {} valid numbers found",
        phones.len()
    );
    if rejected > 0 {
        eprintln!("phone generator: skipped {rejected} numbers the parser rejects");
    }
    Ok(phones)
}

/// Contact id of the i-th contact.
pub(crate) fn contact_id(i: usize) -> String {
    format!("ct_{i:08}")
}

/// Writes a contact list and its contacts straight into MongoDB (the upload has its own
/// benchmark). Returns the list id.
pub(crate) async fn insert_contacts(
    db: &mongodb::Database,
    phones: &[String],
) -> anyhow::Result<String> {
    let list_id = format!("cl_bench_{}", std::process::id());
    let now = DateTime::now();
    db.collection::<Document>("contact_lists")
        .insert_one(doc! {
            "_id": &list_id,
            "name": format!("dispatch benchmark, {} contacts", phones.len()),
            "contact_count": i64::try_from(phones.len())?,
            "created_at": now,
            "updated_at": now,
        })
        .await
        .context("inserting the contact list")?;
    let contacts = db.collection::<Document>("contacts");
    let started = Instant::now();
    for (chunk_no, chunk) in phones.chunks(INSERT_CHUNK).enumerate() {
        let docs: Vec<Document> = chunk
            .iter()
            .enumerate()
            .map(|(j, phone)| {
                let i = chunk_no * INSERT_CHUNK + j;
                doc! {
                    "_id": contact_id(i),
                    "list_id": &list_id,
                    "phone": phone,
                    "name": format!("Person {i}"),
                    "created_at": now,
                    "updated_at": now,
                }
            })
            .collect();
        contacts
            .insert_many(docs)
            .with_options(InsertManyOptions::builder().ordered(false).build())
            .await
            .context("inserting contacts")?;
    }
    eprintln!(
        "inserted {} contacts into list {list_id} in {:.1} s",
        phones.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(list_id)
}

// ---- the simulator -----------------------------------------------------------------------------

/// The simulator's admin API.
#[derive(Clone)]
pub(crate) struct Simulator {
    pub(crate) url: String,
    http: reqwest::Client,
}

impl Simulator {
    pub(crate) fn new(url: &str) -> anyhow::Result<Self> {
        Ok(Self {
            url: url.trim_end_matches('/').to_owned(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(120))
                .build()?,
        })
    }

    async fn admin(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let mut req = self.http.request(method, format!("{}{path}", self.url));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("simulator {path}"))?;
        let status = resp.status();
        let text = resp.text().await?;
        if !status.is_success() {
            bail!("simulator {path}: {status} {text}");
        }
        Ok(if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)?
        })
    }

    /// Any admin request (`/admin/...`): the JSON answer, `null` for an empty one.
    pub(crate) async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        self.admin(method, path, body).await
    }

    /// Clears the ledger (and everything else the simulator holds).
    pub(crate) async fn reset(&self) -> anyhow::Result<()> {
        self.admin(reqwest::Method::POST, "/admin/reset", None)
            .await
            .map(drop)
    }

    /// Outbound messages accepted so far.
    pub(crate) async fn ledger_total(&self) -> anyhow::Result<u64> {
        let v = self
            .admin(
                reqwest::Method::GET,
                "/admin/ledger/counts?by_to=false",
                None,
            )
            .await?;
        v["total"].as_u64().context("ledger counts without total")
    }

    /// Every contact was called exactly once, and nobody else was called.
    pub(crate) async fn verify_calls(&self, phones: &[String]) -> anyhow::Result<Verification> {
        let calls = self
            .admin(reqwest::Method::GET, "/admin/calls", None)
            .await?;
        let mut by_to: BTreeMap<String, u64> = BTreeMap::new();
        let mut by_status: BTreeMap<String, u64> = BTreeMap::new();
        for call in calls["calls"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            *by_to
                .entry(call["to"].as_str().unwrap_or_default().to_owned())
                .or_default() += 1;
            *by_status
                .entry(call["status"].as_str().unwrap_or_default().to_owned())
                .or_default() += 1;
        }
        let (mut missing, mut repeated) = (0, 0);
        for p in phones {
            match by_to.get(p) {
                None | Some(0) => missing += 1,
                Some(1) => {}
                Some(_) => repeated += 1,
            }
        }
        Ok(Verification {
            ledger_total: calls["total"].as_u64().unwrap_or_default(),
            contacts: phones.len() as u64,
            missing,
            repeated,
            duplicate_entries: 0,
            ledger_by_status: by_status,
            items_by_status: BTreeMap::new(),
        })
    }

    /// Every contact received exactly one message, and nobody else received any.
    pub(crate) async fn verify(&self, phones: &[String]) -> anyhow::Result<Verification> {
        let counts = self
            .admin(reqwest::Method::GET, "/admin/ledger/counts", None)
            .await?;
        let by_to: BTreeMap<String, u64> = serde_json::from_value(counts["by_to"].clone())?;
        let mut missing = 0u64;
        let mut repeated = 0u64;
        for p in phones {
            match by_to.get(p) {
                None | Some(0) => missing += 1,
                Some(1) => {}
                Some(_) => repeated += 1,
            }
        }
        let duplicates = self
            .admin(reqwest::Method::GET, "/admin/ledger/duplicates", None)
            .await?;
        let by_status: BTreeMap<String, u64> =
            serde_json::from_value(counts["by_status"].clone()).unwrap_or_default();
        Ok(Verification {
            ledger_total: counts["total"].as_u64().unwrap_or_default(),
            contacts: phones.len() as u64,
            missing,
            repeated,
            duplicate_entries: duplicates["total"].as_u64().unwrap_or_default(),
            ledger_by_status: by_status,
            items_by_status: BTreeMap::new(),
        })
    }
}

/// What the ledger says about the run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Verification {
    pub(crate) ledger_total: u64,
    pub(crate) contacts: u64,
    /// Contacts that received nothing.
    pub(crate) missing: u64,
    /// Contacts that received more than one message.
    pub(crate) repeated: u64,
    /// `/admin/ledger/duplicates` entries (same number, same body, more than once).
    pub(crate) duplicate_entries: u64,
    pub(crate) ledger_by_status: BTreeMap<String, u64>,
    /// Campaign items by status in MongoDB at the end.
    pub(crate) items_by_status: BTreeMap<String, i64>,
}

impl Verification {
    pub(crate) fn exactly_once(&self) -> bool {
        self.missing == 0
            && self.repeated == 0
            && self.duplicate_entries == 0
            && self.ledger_total == self.contacts
    }
}

// ---- throughput samples ----------------------------------------------------------------------

/// One poll: seconds since the start and messages the simulator had accepted by then.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub(crate) struct Sample {
    pub(crate) t: f64,
    pub(crate) accepted: u64,
}

/// Rates derived from the samples.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Rates {
    /// First message accepted (interpolated), seconds after the start.
    pub(crate) first_accept_s: f64,
    /// All `n` accepted, seconds after the start.
    pub(crate) all_accepted_s: f64,
    /// n / all_accepted_s: start to last message, everything included.
    pub(crate) overall_per_s: f64,
    /// n / (all accepted - first accepted): the sending phase.
    pub(crate) sending_per_s: f64,
    /// 80% of n / (time at 90% - time at 10%): the steady middle.
    pub(crate) middle80_per_s: f64,
    /// Best and worst one-second interval inside the middle 80%.
    pub(crate) best_interval_per_s: f64,
    pub(crate) worst_interval_per_s: f64,
}

/// When the accepted count crossed `level`, by linear interpolation between samples.
fn crossing(samples: &[Sample], level: f64) -> Option<f64> {
    let mut prev = Sample {
        t: 0.0,
        accepted: 0,
    };
    for s in samples {
        let a = s.accepted as f64;
        if a >= level {
            let pa = prev.accepted as f64;
            if a <= pa {
                return Some(s.t);
            }
            return Some(prev.t + (s.t - prev.t) * (level - pa) / (a - pa));
        }
        prev = *s;
    }
    None
}

pub(crate) fn rates(samples: &[Sample], n: u64) -> Rates {
    let n_f = n as f64;
    let first = crossing(samples, 0.5).unwrap_or_default();
    let all = crossing(samples, n_f).unwrap_or(f64::NAN);
    let t10 = crossing(samples, n_f * 0.1).unwrap_or(f64::NAN);
    let t90 = crossing(samples, n_f * 0.9).unwrap_or(f64::NAN);
    let mut best = 0.0f64;
    let mut worst = f64::INFINITY;
    for w in samples.windows(2) {
        let (a, b) = (w[0], w[1]);
        if a.t >= t10 && b.t <= t90 && b.t > a.t {
            let r = (b.accepted.saturating_sub(a.accepted)) as f64 / (b.t - a.t);
            best = best.max(r);
            worst = worst.min(r);
        }
    }
    if !worst.is_finite() {
        worst = 0.0;
    }
    Rates {
        first_accept_s: first,
        all_accepted_s: all,
        overall_per_s: n_f / all,
        sending_per_s: n_f / (all - first),
        middle80_per_s: 0.8 * n_f / (t90 - t10),
        best_interval_per_s: best,
        worst_interval_per_s: worst,
    }
}

// ---- /proc ------------------------------------------------------------------------------------

/// A process the benchmark watches, given as `name=pid`.
#[derive(Debug, Clone)]
pub(crate) struct Watched {
    pub(crate) name: String,
    pub(crate) pid: u32,
}

pub(crate) fn parse_watched(s: &str) -> Result<Watched, String> {
    let (name, pid) = s
        .split_once('=')
        .ok_or_else(|| format!("expected name=pid, got {s:?}"))?;
    Ok(Watched {
        name: name.to_owned(),
        pid: pid.parse().map_err(|e| format!("pid of {name}: {e}"))?,
    })
}

/// Clock ticks per second of /proc/<pid>/stat (USER_HZ: 100 on every Linux this runs on).
const TICKS_PER_S: f64 = 100.0;

/// CPU seconds (user + system) of a process, or None if it is gone.
pub(crate) fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after "pid (comm) ": state is field 3; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / TICKS_PER_S)
}

/// A `kB` field of /proc/<pid>/status (VmHWM, VmRSS), in KiB.
pub(crate) fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| {
        let v = l.strip_prefix(field)?.strip_prefix(':')?;
        v.split_whitespace().next()?.parse().ok()
    })
}

/// Busy and total CPU seconds of the whole machine (all cores), from /proc/stat.
pub(crate) fn machine_cpu() -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let v: Vec<f64> = line
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal ...
    let total: f64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or_default() + v.get(4).copied().unwrap_or_default();
    Some(((total - idle) / TICKS_PER_S, total / TICKS_PER_S))
}

pub(crate) fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// CPU counters at one instant.
#[derive(Debug, Clone)]
pub(crate) struct CpuSnapshot {
    at: Instant,
    per_process: Vec<Option<f64>>,
    machine: Option<(f64, f64)>,
}

pub(crate) fn cpu_snapshot(watched: &[Watched]) -> CpuSnapshot {
    CpuSnapshot {
        at: Instant::now(),
        per_process: watched.iter().map(|w| cpu_seconds(w.pid)).collect(),
        machine: machine_cpu(),
    }
}

/// Memory and CPU of one process over the measured window.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct ProcessFigures {
    pub(crate) name: String,
    pub(crate) pid: u32,
    /// Peak resident set (VmHWM) over the process's life, MiB.
    pub(crate) peak_rss_mib: f64,
    /// Resident set at the end, MiB.
    pub(crate) rss_mib: f64,
    /// CPU seconds (user + system) spent inside the window.
    pub(crate) cpu_s: f64,
    /// cpu_s / window: 1.0 = one core busy all the time.
    pub(crate) cores: f64,
}

/// The whole machine over the window.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct MachineFigures {
    pub(crate) cores: usize,
    pub(crate) window_s: f64,
    /// Busy CPU seconds of every process on the machine (other agents' builds included).
    pub(crate) busy_cpu_s: f64,
    /// busy_cpu_s minus the watched processes: what else ran meanwhile.
    pub(crate) other_cpu_s: f64,
    pub(crate) loadavg_start: String,
    pub(crate) loadavg_end: String,
}

pub(crate) fn process_figures(
    watched: &[Watched],
    start: &CpuSnapshot,
    end: &CpuSnapshot,
    loadavg_start: String,
) -> (Vec<ProcessFigures>, MachineFigures) {
    let window = end.at.duration_since(start.at).as_secs_f64().max(1e-9);
    let mut out = Vec::new();
    let mut watched_cpu = 0.0;
    for (i, w) in watched.iter().enumerate() {
        let cpu = match (start.per_process[i], end.per_process[i]) {
            (Some(a), Some(b)) => b - a,
            _ => f64::NAN,
        };
        if cpu.is_finite() {
            watched_cpu += cpu;
        }
        out.push(ProcessFigures {
            name: w.name.clone(),
            pid: w.pid,
            peak_rss_mib: status_kib(w.pid, "VmHWM").map_or(f64::NAN, |k| k as f64 / 1024.0),
            rss_mib: status_kib(w.pid, "VmRSS").map_or(f64::NAN, |k| k as f64 / 1024.0),
            cpu_s: cpu,
            cores: cpu / window,
        });
    }
    let busy = match (start.machine, end.machine) {
        (Some(a), Some(b)) => b.0 - a.0,
        _ => f64::NAN,
    };
    let machine = MachineFigures {
        cores: std::thread::available_parallelism().map_or(0, usize::from),
        window_s: window,
        busy_cpu_s: busy,
        other_cpu_s: busy - watched_cpu,
        loadavg_start,
        loadavg_end: loadavg(),
    };
    (out, machine)
}

// ---- results -----------------------------------------------------------------------------------

/// Temporal's share of a durable run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct TemporalFigures {
    /// Runs of the campaign workflow (1 + continue-as-new).
    pub(crate) runs: u64,
    /// Each run's start, seconds after the benchmark's start, and its history events: where
    /// continue-as-new fell on the memory timeline.
    #[serde(default)]
    pub(crate) run_spans: Vec<(f64, u64)>,
    /// History events over all runs.
    pub(crate) history_events: u64,
    /// Events by type, over all runs.
    pub(crate) events_by_type: BTreeMap<String, u64>,
    /// Billable-style actions by kind (see docs/benchmarks.md for the definition).
    pub(crate) actions: BTreeMap<String, u64>,
    pub(crate) actions_total: u64,
    pub(crate) actions_per_contact: f64,
    /// Queries made by the benchmark's own progress polling (not counted in actions_total).
    pub(crate) observer_queries: u64,
    /// Frontend gRPC requests during the run, by operation (from the server's metrics).
    pub(crate) frontend_requests: BTreeMap<String, u64>,
    /// send_batch activities and their timing.
    pub(crate) batches: u64,
    /// Sum of send_batch execution times (started -> completed), seconds.
    pub(crate) batch_exec_s: f64,
    /// Sum of the gaps between one batch's completion and the next one's start, seconds:
    /// the workflow task round trip, Temporal's share of the sending phase.
    pub(crate) between_batches_s: f64,
    /// Largest such gap (continue-as-new shows here), seconds.
    pub(crate) max_gap_s: f64,
    /// Mean schedule-to-start latency of send_batch, ms.
    pub(crate) mean_schedule_to_start_ms: f64,
    /// Materialisation phase (first activity scheduled to first send_batch scheduled), s.
    pub(crate) materialize_s: f64,
    /// First send_batch scheduled to last send_batch completed, s.
    pub(crate) sending_s: f64,
}

/// What one run measured; written as JSON and compared by `dispatch report`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct RunResult {
    /// `durable` or `baseline`.
    pub(crate) mode: String,
    pub(crate) contacts: u64,
    pub(crate) started_at: String,
    /// Start request to completion (workflow completed / loop finished), seconds.
    pub(crate) wall_s: f64,
    /// Start to every item `delivered` in MongoDB (callbacks applied), seconds.
    pub(crate) all_delivered_s: Option<f64>,
    pub(crate) rates: Rates,
    pub(crate) samples: Vec<Sample>,
    pub(crate) processes: Vec<ProcessFigures>,
    pub(crate) machine: MachineFigures,
    pub(crate) temporal: Option<TemporalFigures>,
    pub(crate) verification: Verification,
    /// Latency of the once-a-second progress read (API progress or the same aggregation), ms.
    pub(crate) progress_ms_mean: f64,
    pub(crate) progress_ms_max: f64,
    pub(crate) settings: BTreeMap<String, String>,
    /// Each watched process's resident memory at every poll: flat, or growing with the run?
    #[serde(default)]
    pub(crate) rss: Vec<RssSample>,
}

/// Resident memory of the watched processes at one poll.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct RssSample {
    pub(crate) t: f64,
    pub(crate) accepted: u64,
    /// MiB by process name.
    pub(crate) mib: BTreeMap<String, f64>,
}

impl RssSample {
    pub(crate) fn now(t: f64, accepted: u64, watched: &[Watched]) -> Self {
        let mib = watched
            .iter()
            .filter_map(|w| Some((w.name.clone(), status_kib(w.pid, "VmRSS")? as f64 / 1024.0)))
            .collect();
        Self { t, accepted, mib }
    }
}

impl RunResult {
    pub(crate) fn peak_rss(&self, name: &str) -> Option<f64> {
        self.processes
            .iter()
            .find(|p| p.name == name)
            .map(|p| p.peak_rss_mib)
    }
}

pub(crate) fn write_result(path: &std::path::Path, r: &RunResult) -> anyhow::Result<()> {
    std::fs::write(path, serde_json::to_vec_pretty(r)?)
        .with_context(|| format!("writing {}", path.display()))
}

pub(crate) fn read_result(path: &std::path::Path) -> anyhow::Result<RunResult> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(serde_json::from_slice(&bytes)?)
}

pub(crate) fn now_rfc3339() -> String {
    let secs = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default();
    DateTime::from_millis(secs)
        .try_to_rfc3339_string()
        .unwrap_or_default()
}

/// Item counts by status of one campaign, by the same aggregation the API's progress uses.
pub(crate) async fn item_counts(
    db: &mongodb::Database,
    campaign_id: &str,
) -> anyhow::Result<BTreeMap<String, i64>> {
    use futures::TryStreamExt;
    let mut cursor = db
        .collection::<Document>("campaign_items")
        .aggregate(vec![
            doc! { "$match": { "campaign_id": campaign_id } },
            doc! { "$group": { "_id": "$status", "n": { "$sum": 1 } } },
        ])
        .await?;
    let mut counts = BTreeMap::new();
    while let Some(d) = cursor.try_next().await? {
        let status = d.get_str("_id").unwrap_or("unknown").to_owned();
        let n = match d.get("n") {
            Some(mongodb::bson::Bson::Int32(n)) => i64::from(*n),
            Some(mongodb::bson::Bson::Int64(n)) => *n,
            _ => 0,
        };
        counts.insert(status, n);
    }
    Ok(counts)
}

/// "12.3" with a fixed number of decimals, "-" for NaN.
pub(crate) fn fmt_f(v: f64, decimals: usize) -> String {
    if v.is_finite() {
        format!("{v:.decimals$}")
    } else {
        "-".to_owned()
    }
}

/// Percentiles of a sample, in milliseconds (nearest rank).
pub(crate) struct Percentiles {
    pub(crate) n: usize,
    pub(crate) p50: f64,
    pub(crate) p90: f64,
    pub(crate) p99: f64,
    pub(crate) max: f64,
}

impl Percentiles {
    /// `None` for an empty sample.
    pub(crate) fn of(mut d: Vec<Duration>) -> Option<Self> {
        if d.is_empty() {
            return None;
        }
        d.sort();
        let at = |q: f64| {
            let i = ((d.len() as f64 * q).ceil() as usize).clamp(1, d.len()) - 1;
            d[i].as_secs_f64() * 1000.0
        };
        Some(Self {
            n: d.len(),
            p50: at(0.5),
            p90: at(0.9),
            p99: at(0.99),
            max: at(1.0),
        })
    }
}
