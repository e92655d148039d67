//! Voice turn overhead: how long the api takes from a `<Gather>` webhook arriving to the TwiML
//! answer leaving, with the scripted agent, under N concurrent simulated inbound calls.
//!
//! Run by `scripts/bench-voice.sh`, which starts the services (Temporal dev server,
//! MongoDB-wire server, Twilio simulator, api, worker) and passes their addresses, PIDs and
//! the api's log file. Each of `--calls` slots rings in one call after another (the simulator's
//! scripted caller says `--lines` lines, the last one "bye", after `--think-ms` each) until
//! `--turns` gather turns are done, so `--calls` calls are live at any time, in random phase.
//! A warm-up wave runs first and is reported apart.
//!
//! Three views of the same turns:
//! - **at the api, per request**: tower-http's `finished processing request` lines
//!   (`RUST_LOG=…,tower_http=debug`, `LOG_FORMAT=json`), one per webhook, whole milliseconds
//!   (truncated) from the request's headers arriving to the response being produced;
//! - **at the api, the product's metric** `voice_agent_voice_turn_seconds` from `/metrics`:
//!   a summary whose count and sum are cumulative (so the mean over the measured phase is
//!   exact: after minus before) but whose quantiles cover a rolling window (the last 40-60 s);
//! - **at the simulator**, from its call events (ms timestamps): caller's line logged →
//!   next verb logged, i.e. the webhook round trip over loopback HTTP plus TwiML parsing, an
//!   upper bound. Split into agent turns (speech) and re-prompts (silence: the workflow answers
//!   without the agent's local activity) when `--silence-every` is set.
//!
//! Prints its figures; asserts nothing about time (not a test).

#[path = "../shared.rs"]
mod shared;

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use clap::Parser;
use serde::Serialize;
use serde_json::{Value, json};

use shared::{
    Simulator, Watched, cpu_snapshot, fmt_f, loadavg, now_rfc3339, parse_watched, phone_numbers,
    process_figures,
};

/// What the callers say, in order (the last line is always "bye"). None of these asks for a
/// transfer, a call-back or an opt-out, so every call runs to its "bye".
const SCRIPT: [&str; 14] = [
    "Hello",
    "tell me more",
    "my name is Grace",
    "what's my name?",
    "what is the price",
    "sounds good",
    "I have a question about my account",
    "hi",
    "interested",
    "what's my name?",
    "good morning",
    "how does the plan work",
    "tell me more",
    "yes",
];

/// The api's `<Gather timeout>` in simulated seconds: a silent caller's webhook goes out
/// after it.
const GATHER_TIMEOUT_S: u64 = 5;

#[derive(Parser)]
#[command(about = "Voice turn overhead at the api under concurrent simulated calls")]
struct Args {
    /// The api's HTTP base URL.
    #[arg(long)]
    api: String,
    /// The simulator's base URL.
    #[arg(long)]
    simulator: String,
    /// Our number (its voice webhooks are pointed at the api).
    #[arg(long, default_value = "+15005550006")]
    ours: String,
    /// Concurrent calls.
    #[arg(long, default_value_t = 20)]
    calls: usize,
    /// Lines per call, the last one "bye" (one gather turn each).
    #[arg(long, default_value_t = 15)]
    lines: usize,
    /// Gather turns to measure at least (rounded up to whole calls).
    #[arg(long, default_value_t = 2_000)]
    turns: usize,
    /// The caller's think time before each line, ms.
    #[arg(long, default_value_t = 200)]
    think_ms: u64,
    /// Calls in the warm-up wave (not measured); 0 skips it.
    #[arg(long, default_value_t = 20)]
    warmup_calls: usize,
    /// Every Nth line is silence (a re-prompt without the agent); 0 = never.
    #[arg(long, default_value_t = 0)]
    silence_every: usize,
    /// The simulator's --call-second-ms (a silent caller's webhook waits the Gather timeout).
    #[arg(long, default_value_t = 10)]
    call_second_ms: u64,
    /// The api's log file (JSON lines with tower_http at debug).
    #[arg(long)]
    api_log: Option<PathBuf>,
    /// The Temporal dev server's Prometheus endpoint (`http://host:port/metrics`).
    #[arg(long)]
    temporal_metrics: Option<String>,
    /// A process to measure, `name=pid` (repeat).
    #[arg(long = "watch", value_parser = parse_watched)]
    watch: Vec<Watched>,
    /// Milliseconds between polls of a live call.
    #[arg(long, default_value_t = 300)]
    poll_ms: u64,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 1_800)]
    timeout_s: u64,
    /// Where to write the result (JSON).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Settings to record with the result, `key=value` (repeat).
    #[arg(long = "setting")]
    settings: Vec<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    run(Args::parse()).await
}

// ---- statistics -----------------------------------------------------------------------------

/// Latency figures, milliseconds.
#[derive(Debug, Clone, Default, Serialize)]
struct Stats {
    count: u64,
    p50: f64,
    p90: f64,
    p99: f64,
    max: f64,
    mean: f64,
}

impl Stats {
    /// Nearest-rank percentiles of exact samples.
    fn of(samples: &[f64]) -> Self {
        let mut v: Vec<f64> = samples.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return Self {
                p50: f64::NAN,
                p90: f64::NAN,
                p99: f64::NAN,
                max: f64::NAN,
                mean: f64::NAN,
                ..Self::default()
            };
        }
        v.sort_by(f64::total_cmp);
        let rank = |q: f64| {
            let i = (q * v.len() as f64).ceil() as usize;
            v[i.clamp(1, v.len()) - 1]
        };
        Self {
            count: v.len() as u64,
            p50: rank(0.50),
            p90: rank(0.90),
            p99: rank(0.99),
            max: v[v.len() - 1],
            mean: v.iter().sum::<f64>() / v.len() as f64,
        }
    }
}

// ---- Prometheus text --------------------------------------------------------------------------

/// One sample line: name, labels, value.
type PromSample = (String, BTreeMap<String, String>, f64);

fn parse_prometheus(text: &str) -> Vec<PromSample> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (head, rest) = match line.find('{') {
            Some(open) => {
                let Some(close) = line.rfind('}') else {
                    continue;
                };
                (
                    (&line[..open], parse_labels(&line[open + 1..close])),
                    &line[close + 1..],
                )
            }
            None => {
                let Some((name, rest)) = line.split_once(' ') else {
                    continue;
                };
                ((name, BTreeMap::new()), rest)
            }
        };
        let Some(value) = rest
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<f64>().ok())
        else {
            continue;
        };
        out.push((head.0.to_owned(), head.1, value));
    }
    out
}

fn parse_labels(s: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut chars = s.chars().peekable();
    loop {
        let key: String = chars
            .by_ref()
            .skip_while(|c| *c == ',' || c.is_whitespace())
            .take_while(|c| *c != '=')
            .collect();
        if key.is_empty() {
            break;
        }
        if chars.next() != Some('"') {
            break;
        }
        let mut value = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => {
                    if let Some(n) = chars.next() {
                        value.push(if n == 'n' { '\n' } else { n });
                    }
                }
                '"' => break,
                c => value.push(c),
            }
        }
        labels.insert(key.trim().to_owned(), value);
    }
    labels
}

fn matches(labels: &BTreeMap<String, String>, want: &[(&str, &str)]) -> bool {
    want.iter()
        .all(|(k, v)| labels.get(*k).is_some_and(|l| l == v))
}

/// Sum of the samples called `name` whose labels match.
fn prom_sum(samples: &[PromSample], name: &str, want: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|(n, l, _)| n == name && matches(l, want))
        .map(|(_, _, v)| *v)
        .sum()
}

/// The api's voice turn metric, one `kind`: the summary's window quantiles at the end, and
/// count and mean over the phase (cumulative counters, after minus before).
fn api_metric(before: &[PromSample], after: &[PromSample], kind: &str) -> Stats {
    let name = "voice_agent_voice_turn_seconds";
    let want = [("kind", kind)];
    let count = prom_sum(after, &format!("{name}_count"), &want)
        - prom_sum(before, &format!("{name}_count"), &want);
    let sum = prom_sum(after, &format!("{name}_sum"), &want)
        - prom_sum(before, &format!("{name}_sum"), &want);
    let q = |q: &str| prom_sum(after, name, &[("kind", kind), ("quantile", q)]) * 1000.0;
    Stats {
        count: count.max(0.0) as u64,
        p50: q("0.5"),
        p90: q("0.9"),
        p99: q("0.99"),
        max: q("1"),
        mean: if count > 0.0 {
            sum / count * 1000.0
        } else {
            f64::NAN
        },
    }
}

/// A Prometheus histogram's growth over the phase, estimated quantiles by linear
/// interpolation inside buckets (the bucket bounds limit the precision).
fn histogram_delta(
    before: &[PromSample],
    after: &[PromSample],
    name: &str,
    want: &[(&str, &str)],
) -> Option<Stats> {
    let mut buckets: BTreeMap<u64, (f64, f64)> = BTreeMap::new(); // le bits -> (le, count)
    for (sign, samples) in [(-1.0, before), (1.0, after)] {
        for (n, l, v) in samples {
            if n != &format!("{name}_bucket") || !matches(l, want) {
                continue;
            }
            let Some(le) = l.get("le").and_then(|le| le.parse::<f64>().ok()) else {
                continue;
            };
            let e = buckets.entry(le.to_bits()).or_insert((le, 0.0));
            e.1 += sign * v;
        }
    }
    let mut cumulative: Vec<(f64, f64)> = buckets.into_values().collect();
    cumulative.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total = cumulative.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let count = prom_sum(after, &format!("{name}_count"), want)
        - prom_sum(before, &format!("{name}_count"), want);
    let sum = prom_sum(after, &format!("{name}_sum"), want)
        - prom_sum(before, &format!("{name}_sum"), want);
    let quantile = |q: f64| {
        let target = q * total;
        let mut prev = (0.0, 0.0);
        for &(le, c) in &cumulative {
            if c >= target {
                if !le.is_finite() {
                    return prev.0;
                }
                let span = c - prev.1;
                let f = if span > 0.0 {
                    (target - prev.1) / span
                } else {
                    1.0
                };
                return prev.0 + (le - prev.0) * f;
            }
            prev = (le, c);
        }
        prev.0
    };
    // The server records seconds.
    Some(Stats {
        count: count as u64,
        p50: quantile(0.5) * 1000.0,
        p90: quantile(0.9) * 1000.0,
        p99: quantile(0.99) * 1000.0,
        max: f64::NAN,
        mean: if count > 0.0 {
            sum / count * 1000.0
        } else {
            f64::NAN
        },
    })
}

async fn scrape(http: &reqwest::Client, url: &str) -> anyhow::Result<Vec<PromSample>> {
    let text = http
        .get(url)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .with_context(|| format!("Failed to scrape {url}"))?
        .text()
        .await?;
    Ok(parse_prometheus(&text))
}

// ---- the api's request log ----------------------------------------------------------------------

/// Request latencies (ms) the api logged after `offset`: (gather, answer, non-2xx responses).
fn api_log_latencies(path: &PathBuf, offset: u64) -> anyhow::Result<(Vec<f64>, Vec<f64>, u64)> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("Failed to open {}", path.display()))?;
    file.seek(SeekFrom::Start(offset))?;
    let mut text = String::new();
    file.read_to_string(&mut text)?;
    let (mut gather, mut answer, mut failed) = (Vec::new(), Vec::new(), 0u64);
    for line in text.lines() {
        let Some(start) = line.find('{') else {
            continue;
        };
        let Ok(v) = serde_json::from_str::<Value>(&line[start..]) else {
            continue;
        };
        if v["fields"]["message"] != json!("finished processing request") {
            continue;
        }
        let uri = v["span"]["uri"].as_str().unwrap_or_default();
        let path = uri.split('?').next().unwrap_or_default();
        let Some(ms) = v["fields"]["latency"]
            .as_str()
            .and_then(|l| l.strip_suffix(" ms"))
            .and_then(|l| l.trim().parse::<f64>().ok())
        else {
            continue;
        };
        let ok = v["fields"]["status"]
            .as_u64()
            .is_some_and(|s| (200..300).contains(&s));
        match path {
            "/twilio/voice/gather" => gather.push(ms),
            "/twilio/voice" => answer.push(ms),
            _ => continue,
        }
        if !ok {
            failed += 1;
        }
    }
    Ok((gather, answer, failed))
}

fn file_len(path: Option<&PathBuf>) -> u64 {
    path.and_then(|p| std::fs::metadata(p).ok())
        .map_or(0, |m| m.len())
}

// ---- calls ---------------------------------------------------------------------------------------

/// What the simulator saw of one call.
#[derive(Debug, Default)]
struct CallRecord {
    completed: bool,
    /// Ring-in to the greeting's TwiML back (update-with-start), ms.
    answer_ms: Option<f64>,
    /// Caller's line logged to the next verb logged, ms: agent turns.
    speech_ms: Vec<f64>,
    /// The same for silent turns (re-prompts, no agent), the Gather timeout subtracted.
    silence_ms: Vec<f64>,
    /// Lines with no verb after them (the call failed).
    unanswered: usize,
    error: Option<String>,
}

fn millis(v: &Value) -> Option<i64> {
    mongodb::bson::DateTime::parse_rfc3339_str(v.as_str()?)
        .ok()
        .map(mongodb::bson::DateTime::timestamp_millis)
}

fn analyse(call: &Value, silence_wait_ms: f64) -> CallRecord {
    let mut r = CallRecord {
        completed: call["status"] == json!("completed") && call["error_code"].is_null(),
        answer_ms: match (millis(&call["date_created"]), millis(&call["answered_at"])) {
            (Some(a), Some(b)) => Some((b - a) as f64),
            _ => None,
        },
        ..CallRecord::default()
    };
    if !call["error_code"].is_null() {
        r.error = Some(format!(
            "{} {}",
            call["error_code"],
            call["error_message"].as_str().unwrap_or_default()
        ));
    }
    let events = call["events"].as_array().cloned().unwrap_or_default();
    for (i, e) in events.iter().enumerate() {
        let kind = e["kind"].as_str().unwrap_or_default();
        if !matches!(kind, "speech" | "digits" | "silence") {
            continue;
        }
        let next = events
            .get(i + 1)
            .filter(|n| !matches!(n["kind"].as_str(), Some("error")));
        match (millis(&e["at"]), next.and_then(|n| millis(&n["at"]))) {
            (Some(a), Some(b)) if kind == "silence" => {
                r.silence_ms.push((b - a) as f64 - silence_wait_ms);
            }
            (Some(a), Some(b)) => r.speech_ms.push((b - a) as f64),
            _ => r.unanswered += 1,
        }
    }
    r
}

struct Ctx {
    sim: Simulator,
    ours: String,
    lines: Vec<Value>,
    think_ms: u64,
    poll: Duration,
    deadline: Instant,
    silence_wait_ms: f64,
}

/// Rings in one call and waits for it to end.
async fn one_call(ctx: &Ctx, from: &str) -> anyhow::Result<CallRecord> {
    let placed = ctx
        .sim
        .request(
            reqwest::Method::POST,
            "/admin/calls/inbound",
            Some(json!({
                "from": from, "to": ctx.ours, "lines": ctx.lines, "think_ms": ctx.think_ms,
            })),
        )
        .await?;
    let sid = placed["call_sid"]
        .as_str()
        .context("inbound call without call_sid")?
        .to_owned();
    loop {
        tokio::time::sleep(ctx.poll).await;
        let call = ctx
            .sim
            .request(reqwest::Method::GET, &format!("/admin/calls/{sid}"), None)
            .await?;
        let status = call["status"].as_str().unwrap_or_default();
        if !matches!(status, "queued" | "ringing" | "in-progress") {
            return Ok(analyse(&call, ctx.silence_wait_ms));
        }
        if Instant::now() > ctx.deadline {
            bail!("call {sid} still {status} at the deadline");
        }
    }
}

/// `calls` calls one after another from one number, after `delay`.
async fn slot(
    ctx: Arc<Ctx>,
    from: String,
    calls: usize,
    delay: Duration,
) -> anyhow::Result<Vec<CallRecord>> {
    tokio::time::sleep(delay).await;
    let mut out = Vec::with_capacity(calls);
    for _ in 0..calls {
        out.push(one_call(&ctx, &from).await?);
    }
    Ok(out)
}

/// Runs `total` calls over `concurrent` slots; returns every call's record.
async fn calls_phase(
    ctx: &Arc<Ctx>,
    phones: &[String],
    concurrent: usize,
    total: usize,
) -> anyhow::Result<Vec<CallRecord>> {
    let mut tasks = tokio::task::JoinSet::new();
    // Spread the slots' first calls over one think time, so turns arrive in random phase
    // rather than 20 at once.
    let step = Duration::from_millis(ctx.think_ms.max(50)) / u32::try_from(concurrent.max(1))?;
    for (i, from) in phones.iter().enumerate().take(concurrent.min(total)) {
        let calls = total / concurrent + usize::from(i < total % concurrent);
        let delay = step * u32::try_from(i)?;
        tasks.spawn(slot(Arc::clone(ctx), from.clone(), calls, delay));
    }
    let mut records = Vec::with_capacity(total);
    while let Some(done) = tasks.join_next().await {
        records.extend(done??);
    }
    Ok(records)
}

/// Simulator-side figures of a set of calls.
#[derive(Debug, Default, Serialize)]
struct SimFigures {
    calls: usize,
    completed: usize,
    unanswered_lines: usize,
    errors: Vec<String>,
    answer: Stats,
    gather_all: Stats,
    gather_speech: Stats,
    gather_silence: Stats,
}

fn sim_figures(records: &[CallRecord]) -> SimFigures {
    let answer: Vec<f64> = records.iter().filter_map(|r| r.answer_ms).collect();
    let speech: Vec<f64> = records.iter().flat_map(|r| r.speech_ms.clone()).collect();
    let silence: Vec<f64> = records.iter().flat_map(|r| r.silence_ms.clone()).collect();
    let all: Vec<f64> = speech.iter().chain(&silence).copied().collect();
    let mut errors: Vec<String> = records.iter().filter_map(|r| r.error.clone()).collect();
    errors.dedup();
    SimFigures {
        calls: records.len(),
        completed: records.iter().filter(|r| r.completed).count(),
        unanswered_lines: records.iter().map(|r| r.unanswered).sum(),
        errors,
        answer: Stats::of(&answer),
        gather_all: Stats::of(&all),
        gather_speech: Stats::of(&speech),
        gather_silence: Stats::of(&silence),
    }
}

// ---- the run ---------------------------------------------------------------------------------------

#[derive(Debug, Default, Serialize)]
struct VoiceResult {
    started_at: String,
    settings: BTreeMap<String, String>,
    cpus: usize,
    bench_profile: &'static str,
    window_s: f64,
    gather_turns_per_s: f64,
    warmup: Option<SimFigures>,
    simulator: SimFigures,
    api_log_gather: Option<Stats>,
    api_log_answer: Option<Stats>,
    api_log_failed: u64,
    api_metric_gather: Option<Stats>,
    api_metric_answer: Option<Stats>,
    temporal: BTreeMap<String, Stats>,
    processes: Vec<shared::ProcessFigures>,
    machine: shared::MachineFigures,
}

fn script_lines(n: usize, silence_every: usize) -> Vec<Value> {
    let mut lines: Vec<Value> = (0..n.saturating_sub(1))
        .map(|i| {
            if silence_every > 0 && (i + 1) % silence_every == 0 {
                json!({"silence": true})
            } else {
                json!(SCRIPT[i % SCRIPT.len()])
            }
        })
        .collect();
    lines.push(json!("bye"));
    lines
}

async fn run(args: Args) -> anyhow::Result<()> {
    ensure!(args.calls >= 1, "--calls must be at least 1");
    ensure!(args.lines >= 1, "--lines must be at least 1");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let sim = Simulator::new(&args.simulator)?;
    sim.reset().await?;
    let api = args.api.trim_end_matches('/').to_owned();
    sim.request(
        reqwest::Method::PUT,
        &format!("/admin/numbers/{}", args.ours.replace('+', "%2B")),
        Some(json!({
            "voice_url": format!("{api}/twilio/voice"),
            "voice_status_callback": format!("{api}/twilio/voice/status"),
        })),
    )
    .await?;
    let phones = phone_numbers(args.calls)?;
    let ctx = Arc::new(Ctx {
        sim,
        ours: args.ours.clone(),
        lines: script_lines(args.lines, args.silence_every),
        think_ms: args.think_ms,
        poll: Duration::from_millis(args.poll_ms.max(50)),
        deadline: Instant::now() + Duration::from_secs(args.timeout_s),
        silence_wait_ms: (GATHER_TIMEOUT_S * args.call_second_ms) as f64,
    });
    let total_calls = args.turns.div_ceil(args.lines).max(1);
    eprintln!(
        "{} concurrent calls, {} lines each, think {} ms: {total_calls} calls, {} gather turns; \
         load average {}",
        args.calls,
        args.lines,
        args.think_ms,
        total_calls * args.lines,
        loadavg()
    );

    let warmup = if args.warmup_calls > 0 {
        let t = Instant::now();
        let records = calls_phase(&ctx, &phones, args.calls, args.warmup_calls).await?;
        let f = sim_figures(&records);
        eprintln!(
            "warm-up: {} calls in {:.1} s ({} completed)",
            f.calls,
            t.elapsed().as_secs_f64(),
            f.completed
        );
        Some(f)
    } else {
        None
    };

    let metrics_url = format!("{api}/metrics");
    let api_before = scrape(&http, &metrics_url).await?;
    let temporal_before = match &args.temporal_metrics {
        Some(url) => Some(scrape(&http, url).await?),
        None => None,
    };
    let log_offset = file_len(args.api_log.as_ref());
    let load_start = loadavg();
    let cpu_start = cpu_snapshot(&args.watch);
    let started_at = now_rfc3339();
    let t0 = Instant::now();

    let records = calls_phase(&ctx, &phones, args.calls, total_calls).await?;

    let window_s = t0.elapsed().as_secs_f64();
    let cpu_end = cpu_snapshot(&args.watch);
    let (processes, machine) = process_figures(&args.watch, &cpu_start, &cpu_end, load_start);
    // The api records the metric after the response is built; give the last ones a moment.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let api_after = scrape(&http, &metrics_url).await?;
    let mut temporal = BTreeMap::new();
    if let (Some(url), Some(before)) = (&args.temporal_metrics, &temporal_before) {
        let after = scrape(&http, url).await?;
        for op in [
            "UpdateWorkflowExecution",
            "ExecuteMultiOperation",
            "RespondWorkflowTaskCompleted",
        ] {
            let want = [("operation", op), ("service_name", "frontend")];
            if let Some(s) = histogram_delta(before, &after, "service_latency", &want) {
                temporal.insert(op.to_owned(), s);
            }
        }
    }
    let (api_log_gather, api_log_answer, api_log_failed) = match &args.api_log {
        Some(path) => {
            let (g, a, failed) = api_log_latencies(path, log_offset)?;
            (Some(Stats::of(&g)), Some(Stats::of(&a)), failed)
        }
        None => (None, None, 0),
    };
    let simulator = sim_figures(&records);
    let settings: BTreeMap<String, String> = args
        .settings
        .iter()
        .filter_map(|s| s.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .chain([
            ("calls".to_owned(), args.calls.to_string()),
            ("lines".to_owned(), args.lines.to_string()),
            ("think_ms".to_owned(), args.think_ms.to_string()),
            ("silence_every".to_owned(), args.silence_every.to_string()),
            ("call_second_ms".to_owned(), args.call_second_ms.to_string()),
        ])
        .collect();
    let result = VoiceResult {
        started_at,
        settings,
        cpus: std::thread::available_parallelism().map_or(0, usize::from),
        bench_profile: if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        window_s,
        gather_turns_per_s: simulator.gather_all.count as f64 / window_s,
        warmup,
        api_log_gather,
        api_log_answer,
        api_log_failed,
        api_metric_gather: Some(api_metric(&api_before, &api_after, "gather")),
        api_metric_answer: Some(api_metric(&api_before, &api_after, "answer")),
        temporal,
        simulator,
        processes,
        machine,
    };
    if let Some(out) = &args.out {
        std::fs::write(out, serde_json::to_vec_pretty(&result)?)
            .with_context(|| format!("Failed to write {}", out.display()))?;
    }
    print_report(&result);
    let s = &result.simulator;
    if s.completed < s.calls || s.unanswered_lines > 0 || result.api_log_failed > 0 {
        bail!(
            "not every call ran to its end: {} of {} completed, {} lines unanswered, {} webhooks \
             failed at the api; errors {:?}",
            s.completed,
            s.calls,
            s.unanswered_lines,
            result.api_log_failed,
            s.errors
        );
    }
    Ok(())
}

fn row(label: &str, s: Option<&Stats>, note: &str) {
    let Some(s) = s else {
        return;
    };
    println!(
        "| {label:<52} | {:>6} | {:>7} | {:>7} | {:>7} | {:>7} | {:>7} | {note}",
        s.count,
        fmt_f(s.p50, 1),
        fmt_f(s.p90, 1),
        fmt_f(s.p99, 1),
        fmt_f(s.max, 1),
        fmt_f(s.mean, 1)
    );
}

fn print_report(r: &VoiceResult) {
    let setting = |k: &str| r.settings.get(k).map_or("?", String::as_str);
    println!();
    println!(
        "== voice turn overhead: {} concurrent calls, {} lines each, think {} ms; started {} ==",
        setting("calls"),
        setting("lines"),
        setting("think_ms"),
        r.started_at
    );
    println!(
        "machine: {} CPUs; binaries: api/worker/simulator {}, this benchmark {}",
        r.cpus,
        setting("profile"),
        r.bench_profile
    );
    let s = &r.simulator;
    println!(
        "measured: {} calls ({} completed), {} gather turns in {} s = {} turns/s (warm-up of {} \
         calls excluded)",
        s.calls,
        s.completed,
        s.gather_all.count,
        fmt_f(r.window_s, 1),
        fmt_f(r.gather_turns_per_s, 1),
        r.warmup.as_ref().map_or(0, |w| w.calls)
    );
    println!();
    println!(
        "| {:<52} | {:>6} | {:>7} | {:>7} | {:>7} | {:>7} | {:>7} |",
        "ms", "count", "p50", "p90", "p99", "max", "mean"
    );
    println!(
        "|{:-<54}|{:->8}|{:->9}|{:->9}|{:->9}|{:->9}|{:->9}|",
        "", "", "", "", "", "", ""
    );
    row(
        "gather, at the api: request log",
        r.api_log_gather.as_ref(),
        "whole ms, truncated",
    );
    row(
        "gather, at the api: metric voice_turn_seconds",
        r.api_metric_gather.as_ref(),
        "count+mean: phase; quantiles: last 40-60 s",
    );
    row(
        "gather, simulator round trip, all",
        Some(&s.gather_all),
        "upper bound",
    );
    if s.gather_silence.count > 0 {
        row(
            "  of which agent turns (speech)",
            Some(&s.gather_speech),
            "",
        );
        row(
            "  of which re-prompts (silence, no agent activity)",
            Some(&s.gather_silence),
            "Gather timeout subtracted",
        );
    }
    row(
        "answer (update-with-start), at the api: request log",
        r.api_log_answer.as_ref(),
        "",
    );
    row(
        "answer, at the api: metric voice_turn_seconds",
        r.api_metric_answer.as_ref(),
        "",
    );
    row(
        "answer, simulator round trip",
        Some(&s.answer),
        "upper bound",
    );
    for (op, st) in &r.temporal {
        row(
            &format!("Temporal frontend {op}"),
            Some(st),
            "bucket estimates",
        );
    }
    if let Some(w) = &r.warmup {
        row(
            "warm-up gather, simulator round trip",
            Some(&w.gather_all),
            "excluded",
        );
        row(
            "warm-up answer, simulator round trip",
            Some(&w.answer),
            "excluded",
        );
    }
    println!();
    let (p50, p99, source) = match &r.api_log_gather {
        Some(g) if g.count > 0 => (g.p50, g.p99, "api request log"),
        _ => (s.gather_all.p50, s.gather_all.p99, "simulator round trip"),
    };
    let verdict = |v: f64, target: f64| if v <= target { "met" } else { "MISSED" };
    println!(
        "targets ({source}): gather p50 {} ms <= 30 ms: {}; p99 {} ms <= 80 ms: {}",
        fmt_f(p50, 1),
        verdict(p50, 30.0),
        fmt_f(p99, 1),
        verdict(p99, 80.0)
    );
    println!(
        "machine: busy {} of {} CPU-s ({} cores), others {} CPU-s; load {} -> {}",
        fmt_f(r.machine.busy_cpu_s, 1),
        fmt_f(r.machine.window_s * r.machine.cores as f64, 1),
        fmt_f(r.machine.busy_cpu_s / r.machine.window_s.max(1e-9), 2),
        fmt_f(r.machine.other_cpu_s, 1),
        r.machine.loadavg_start,
        r.machine.loadavg_end
    );
    for p in &r.processes {
        println!(
            "  {:<10} pid {:>7}: CPU {:>6} s = {:>5} cores, {:>6} ms per gather turn; peak RSS {} MiB",
            p.name,
            p.pid,
            fmt_f(p.cpu_s, 1),
            fmt_f(p.cores, 2),
            fmt_f(p.cpu_s * 1000.0 / s.gather_all.count.max(1) as f64, 2),
            fmt_f(p.peak_rss_mib, 1)
        );
    }
    if !s.errors.is_empty() {
        println!("call errors: {:?}", s.errors);
    }
}
