//! Dispatch benchmark, durable side: an SMS campaign to N contacts through the real stack
//! (api, worker, Temporal dev server, MongoDB-wire server, Twilio simulator), measured from
//! the outside. `dispatch report` prints it next to the plain-loop baseline (`baseline`).
//!
//! Run by `scripts/bench-dispatch.sh`, which starts the services and passes their addresses
//! and PIDs. Prints its figures; asserts nothing about time (not a test).

#[path = "../shared.rs"]
mod shared;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use futures::StreamExt;
use serde_json::{Value, json};
use temporalio_client::{
    Client, ClientOptions, Connection, ConnectionOptions, WorkflowExecutionInfo,
    WorkflowFetchHistoryOptions,
};
use temporalio_common::protos::temporal::api::enums::v1::EventType;
use temporalio_common::protos::temporal::api::history::v1::HistoryEvent;
use temporalio_common::protos::temporal::api::history::v1::history_event::Attributes;

use shared::{
    RssSample, RunResult, Sample, TemporalFigures, Watched, cpu_snapshot, fmt_f, insert_contacts,
    loadavg, now_rfc3339, parse_watched, phone_numbers, process_figures, rates, read_result,
    write_result,
};

#[derive(Parser)]
#[command(about = "Campaign dispatch benchmark (durable side) and the side-by-side report")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs one campaign through the API and measures it.
    Run(Box<RunArgs>),
    /// Prints a durable result next to a baseline result.
    Report {
        #[arg(long)]
        durable: PathBuf,
        #[arg(long)]
        baseline: PathBuf,
        /// Optional third column: the loop with the durable activity's writes (no Temporal).
        #[arg(long)]
        loop_durable_writes: Option<PathBuf>,
    },
}

#[derive(clap::Args)]
struct RunArgs {
    /// Contacts in the list.
    #[arg(long, default_value_t = 100_000)]
    contacts: usize,
    /// The API's HTTP base URL.
    #[arg(long)]
    api: String,
    /// The simulator's base URL.
    #[arg(long)]
    simulator: String,
    /// MongoDB URI and the database the api and worker use.
    #[arg(long)]
    mongodb_uri: String,
    #[arg(long)]
    database: String,
    /// Temporal frontend, `http://host:port`.
    #[arg(long)]
    temporal: String,
    #[arg(long, default_value = "default")]
    namespace: String,
    /// The dev server's Prometheus endpoint (`http://host:port/metrics`), for heartbeats.
    #[arg(long)]
    temporal_metrics: Option<String>,
    /// A process to measure, `name=pid` (repeat).
    #[arg(long = "watch", value_parser = parse_watched)]
    watch: Vec<Watched>,
    /// Seconds between progress polls.
    #[arg(long, default_value_t = 1.0)]
    poll_s: f64,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 3_600)]
    timeout_s: u64,
    /// After the campaign completed, how long to wait for every item to be `delivered` (the
    /// simulator's status callbacks applied).
    #[arg(long, default_value_t = 120)]
    deliver_wait_s: u64,
    /// Where to write the result (JSON).
    #[arg(long)]
    out: PathBuf,
    /// Settings to record with the result, `key=value` (repeat).
    #[arg(long = "setting")]
    settings: Vec<String>,
    /// `sms`, or `voice`: a voice campaign (one child call workflow per contact) at `rate`
    /// calls per second with `max_in_flight` calls at once.
    #[arg(long, default_value = "sms", value_parser = ["sms", "voice"])]
    channel: String,
    /// Voice: calls per second (at most 100).
    #[arg(long, default_value_t = 20.0)]
    rate: f64,
    /// Voice: calls in flight at once (at most 100).
    #[arg(long, default_value_t = 50)]
    max_in_flight: i32,
    /// Voice: the simulator's script for every callee (its `PUT /admin/callees/*` body), e.g.
    /// `{"behaviour":"hangup_mid_call","hangup_after_turns":0}`; default: the simulator's (a
    /// human who says nothing until the agent gives up).
    #[arg(long)]
    callee: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    match Cli::parse().command {
        Command::Run(args) => run(*args).await,
        Command::Report {
            durable,
            baseline,
            loop_durable_writes,
        } => {
            let middle = loop_durable_writes
                .as_deref()
                .map(read_result)
                .transpose()?;
            report(
                &read_result(&durable)?,
                &read_result(&baseline)?,
                middle.as_ref(),
            );
            Ok(())
        }
    }
}

async fn api_call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    body: Option<Value>,
) -> anyhow::Result<Value> {
    let mut req = http.request(method, &url);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.with_context(|| url.clone())?;
    let status = resp.status();
    let text = resp.text().await?;
    if !status.is_success() {
        bail!("{url}: {status} {text}");
    }
    Ok(serde_json::from_str(&text)?)
}

/// `Authorization: Bearer $VOICE_AGENT_API_KEY` for the api's REST routes
/// (scripts/bench-dispatch.sh installs the key as the api's bootstrap admin key).
fn api_key_headers() -> anyhow::Result<reqwest::header::HeaderMap> {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Ok(key) = std::env::var("VOICE_AGENT_API_KEY") {
        headers.insert(
            reqwest::header::AUTHORIZATION,
            reqwest::header::HeaderValue::from_str(&format!("Bearer {key}"))?,
        );
    }
    Ok(headers)
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let n = args.contacts;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .default_headers(api_key_headers()?)
        .build()?;
    let sim = shared::Simulator::new(&args.simulator)?;
    sim.reset().await?;
    let mongo = mongodb::Client::with_uri_str(&args.mongodb_uri).await?;
    let db = mongo.database(&args.database);
    let phones = phone_numbers(n)?;
    let list_id = insert_contacts(&db, &phones).await?;

    let temporal = connect_temporal(&args.temporal, &args.namespace).await?;
    let metrics_before = match &args.temporal_metrics {
        Some(url) => Some(frontend_requests(&http, url).await?),
        None => None,
    };

    let voice = args.channel == "voice";
    if let Some(script) = args.callee.as_deref().filter(|_| voice) {
        let script: Value = serde_json::from_str(script).context("--callee is not JSON")?;
        api_call(
            &http,
            reqwest::Method::PUT,
            format!("{}/admin/callees/*", args.simulator),
            Some(script),
        )
        .await?;
    }
    let body = if voice {
        json!({
            "name": format!("voice campaign benchmark {n}"),
            "channel": "voice",
            "list_id": list_id,
            "template": "",
            "rate_per_second": args.rate,
            "max_in_flight": args.max_in_flight,
        })
    } else {
        json!({
            "name": format!("dispatch benchmark {n}"),
            "list_id": list_id,
            "template": "Hi {{name}}",
            "rate_per_second": 0,
        })
    };
    let created = api_call(
        &http,
        reqwest::Method::POST,
        format!("{}/api/campaigns", args.api),
        Some(body),
    )
    .await?;
    let id = created["id"]
        .as_str()
        .context("campaign without id")?
        .to_owned();
    let workflow_id = created["workflow_id"]
        .as_str()
        .map_or_else(|| format!("campaign-{id}"), str::to_owned);

    eprintln!(
        "campaign {id}: {n} contacts, rate unlimited; load average {}",
        loadavg()
    );
    let load_start = loadavg();
    let cpu_start = cpu_snapshot(&args.watch);
    let started_at = now_rfc3339();
    let t0_wall = SystemTime::now();
    let t0 = Instant::now();
    api_call(
        &http,
        reqwest::Method::POST,
        format!("{}/api/campaigns/{id}/start", args.api),
        None,
    )
    .await?;

    let mut samples = vec![Sample {
        t: 0.0,
        accepted: 0,
    }];
    let mut progress_ms: Vec<f64> = Vec::new();
    let mut rss: Vec<RssSample> = Vec::new();
    let mut completed_at: Option<f64> = None;
    let mut cpu_end = None;
    let mut all_delivered: Option<f64> = None;
    let mut last_counts: BTreeMap<String, i64> = BTreeMap::new();
    let poll = Duration::from_secs_f64(args.poll_s.max(0.1));
    let deadline = t0 + Duration::from_secs(args.timeout_s);
    let mut next = t0 + poll;
    println!(
        "{:>6} {:>10} {:>9} {:>7} {:>9} {:>9} {:>9} {:>9} {:>8}",
        "t_s", "status", "accepted", "per_s", "pending", "sending", "sent", "delivered", "poll_ms"
    );
    loop {
        tokio::time::sleep_until(next.into()).await;
        next += poll;
        let q = Instant::now();
        let progress = api_call(
            &http,
            reqwest::Method::GET,
            format!("{}/api/campaigns/{id}/progress", args.api),
            None,
        )
        .await;
        let q_ms = q.elapsed().as_secs_f64() * 1000.0;
        let accepted = if voice {
            // Items with an outcome (the simulator's call list is too large to read a second).
            progress
                .as_ref()
                .ok()
                .and_then(|p| {
                    serde_json::from_value::<BTreeMap<String, i64>>(p["counts"].clone()).ok()
                })
                .map_or(samples.last().map_or(0, |s| s.accepted), |c| {
                    c.iter()
                        .filter(|(k, _)| !matches!(k.as_str(), "pending" | "sending"))
                        .map(|(_, v)| u64::try_from(*v).unwrap_or(0))
                        .sum()
                })
        } else {
            sim.ledger_total().await?
        };
        let t = t0.elapsed().as_secs_f64();
        let prev = samples.last().copied().unwrap_or(Sample {
            t: 0.0,
            accepted: 0,
        });
        samples.push(Sample { t, accepted });
        rss.push(RssSample::now(t, accepted, &args.watch));
        let (status, counts) = match &progress {
            Ok(p) => {
                progress_ms.push(q_ms);
                (
                    p["status"].as_str().unwrap_or("?").to_owned(),
                    serde_json::from_value::<BTreeMap<String, i64>>(p["counts"].clone())
                        .unwrap_or_default(),
                )
            }
            Err(e) => (format!("error: {e:#}"), BTreeMap::new()),
        };
        let c = |k: &str| counts.get(k).copied().unwrap_or_default();
        println!(
            "{:>6.1} {:>10} {:>9} {:>7.0} {:>9} {:>9} {:>9} {:>9} {:>8.0}",
            t,
            status,
            accepted,
            (accepted.saturating_sub(prev.accepted)) as f64 / (t - prev.t),
            c("pending"),
            c("sending"),
            c("sent"),
            c("delivered"),
            q_ms
        );
        if !counts.is_empty() {
            last_counts = counts.clone();
        }
        if completed_at.is_none() && status == "completed" {
            completed_at = Some(t);
            cpu_end = Some(cpu_snapshot(&args.watch));
        }
        let finished = if voice {
            accepted == n as u64
        } else {
            c("delivered") == n as i64
        };
        if completed_at.is_some() && all_delivered.is_none() && finished {
            all_delivered = Some(t);
        }
        if completed_at.is_some()
            && (all_delivered.is_some()
                || t > completed_at.unwrap_or(t) + args.deliver_wait_s as f64)
        {
            break;
        }
        if Instant::now() > deadline {
            bail!("the campaign did not complete within {} s", args.timeout_s);
        }
    }
    let cpu_end = cpu_end.unwrap_or_else(|| cpu_snapshot(&args.watch));
    let (processes, machine) = process_figures(&args.watch, &cpu_start, &cpu_end, load_start);

    let mut temporal_figures =
        history_figures(&temporal, &args.namespace, &workflow_id, n, t0_wall).await?;
    // The workflow's own completion time, from its history (the poll above has 1 s grain).
    let wall_s = match temporal_figures.1 {
        Some(done) => done
            .duration_since(t0_wall)
            .map_or(f64::NAN, |d| d.as_secs_f64()),
        None => completed_at.unwrap_or(f64::NAN),
    };
    if let (Some(url), Some(before)) = (&args.temporal_metrics, metrics_before) {
        let after = frontend_requests(&http, url).await?;
        let delta: BTreeMap<String, u64> = after
            .into_iter()
            .map(|(k, v)| {
                let d = v.saturating_sub(before.get(&k).copied().unwrap_or_default());
                (k, d)
            })
            .filter(|(_, d)| *d > 0)
            .collect();
        let hb = delta
            .get("RecordActivityTaskHeartbeat")
            .copied()
            .unwrap_or_default()
            + delta
                .get("RecordActivityTaskHeartbeatById")
                .copied()
                .unwrap_or_default();
        temporal_figures
            .0
            .actions
            .insert("heartbeats".to_owned(), hb);
        temporal_figures.0.observer_queries =
            delta.get("QueryWorkflow").copied().unwrap_or_default();
        temporal_figures.0.frontend_requests = delta;
    }
    let t = &mut temporal_figures.0;
    t.actions_total = t.actions.values().sum();
    t.actions_per_contact = t.actions_total as f64 / n as f64;

    let mut verification = if voice {
        sim.verify_calls(&phones).await?
    } else {
        sim.verify(&phones).await?
    };
    verification.items_by_status = last_counts;
    let settings: BTreeMap<String, String> = args
        .settings
        .iter()
        .filter_map(|s| s.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let result = RunResult {
        mode: "durable".to_owned(),
        contacts: n as u64,
        started_at,
        wall_s,
        all_delivered_s: all_delivered,
        rates: rates(&samples, n as u64),
        samples,
        processes,
        machine,
        temporal: Some(temporal_figures.0),
        verification,
        progress_ms_mean: mean(&progress_ms),
        progress_ms_max: progress_ms.iter().copied().fold(0.0, f64::max),
        settings,
        rss,
    };
    write_result(&args.out, &result)?;
    print_summary(&result);
    if !result.verification.exactly_once() {
        bail!("not exactly once: {:?}", result.verification);
    }
    Ok(())
}

/// Resident memory through the run: at each tenth of the messages accepted, and at the end.
fn print_rss(r: &RunResult) {
    let Some(last) = r.rss.last() else { return };
    let names: Vec<&String> = last.mib.keys().collect();
    print!("RSS (MiB) by accepted:");
    for n in &names {
        print!(" {n:>9}");
    }
    println!();
    let mut marks: Vec<&RssSample> = (1..=10)
        .filter_map(|tenth| {
            let at = r.contacts * tenth / 10;
            r.rss.iter().find(|s| s.accepted >= at)
        })
        .collect();
    marks.push(last);
    marks.dedup_by_key(|s| s.t.to_bits());
    for s in marks {
        print!("  {:>7} at {:>6.0} s", s.accepted, s.t);
        for n in &names {
            print!(
                " {:>9}",
                s.mib.get(*n).map_or("-".to_owned(), |v| fmt_f(*v, 1))
            );
        }
        println!();
    }
}

fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        f64::NAN
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

async fn connect_temporal(address: &str, namespace: &str) -> anyhow::Result<Client> {
    let url = if address.contains("://") {
        address.to_owned()
    } else {
        format!("http://{address}")
    };
    let conn = Connection::connect(
        ConnectionOptions::new(temporalio_client::Url::parse(&url)?)
            .identity("voice-agent-bench".to_owned())
            .build(),
    )
    .await
    .context("connecting to Temporal")?;
    Ok(Client::new(conn, ClientOptions::new(namespace).build())?)
}

/// Frontend request counters (`service_requests{service_name="frontend"}`) by operation.
async fn frontend_requests(
    http: &reqwest::Client,
    url: &str,
) -> anyhow::Result<BTreeMap<String, u64>> {
    let text = http.get(url).send().await?.text().await?;
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("service_requests{") else {
            continue;
        };
        let Some((labels, value)) = rest.split_once("} ") else {
            continue;
        };
        if !labels.contains("service_name=\"frontend\"") {
            continue;
        }
        let Some(op) = labels
            .split(',')
            .find_map(|l| l.strip_prefix("operation=\""))
            .and_then(|l| l.strip_suffix('"'))
        else {
            continue;
        };
        let v = value.trim().parse::<f64>().unwrap_or_default() as u64;
        *out.entry(op.to_owned()).or_default() += v;
    }
    Ok(out)
}

fn event_secs(e: &HistoryEvent) -> f64 {
    e.event_time
        .as_ref()
        .map_or(f64::NAN, |t| t.seconds as f64 + f64::from(t.nanos) / 1e9)
}

/// Walks the campaign workflow's runs from the latest back to the first (each run's start
/// event names the run it continued), counting events and actions and timing the batches.
/// Also returns the completion time of the last run.
async fn history_figures(
    client: &Client,
    namespace: &str,
    workflow_id: &str,
    contacts: usize,
    t0_wall: SystemTime,
) -> anyhow::Result<(TemporalFigures, Option<SystemTime>)> {
    let mut runs: Vec<Vec<HistoryEvent>> = Vec::new();
    let mut run_id: Option<String> = None;
    // Bounded: a 100k campaign has a handful of runs.
    for _ in 0..10_000 {
        let info = WorkflowExecutionInfo::builder()
            .namespace(namespace)
            .workflow_id(workflow_id);
        let handle = match run_id.clone() {
            Some(r) => info.run_id(r).build().bind_untyped(client.clone()),
            None => info.build().bind_untyped(client.clone()),
        };
        let mut stream = handle.fetch_history(WorkflowFetchHistoryOptions::default());
        let mut events = Vec::new();
        while let Some(e) = stream.next().await {
            events.push(e.context("fetching history")?);
        }
        let previous = events.first().and_then(|e| match &e.attributes {
            Some(Attributes::WorkflowExecutionStartedEventAttributes(a))
                if !a.continued_execution_run_id.is_empty() =>
            {
                Some(a.continued_execution_run_id.clone())
            }
            _ => None,
        });
        runs.push(events);
        match previous {
            Some(p) => run_id = Some(p),
            None => break,
        }
    }
    runs.reverse();

    let mut f = TemporalFigures {
        runs: runs.len() as u64,
        ..Default::default()
    };
    let mut actions: BTreeMap<String, u64> = BTreeMap::new();
    let mut completed_at = None;
    // Per run: scheduled event id -> activity type and times.
    let mut batch_spans: Vec<(f64, f64, f64)> = Vec::new(); // (scheduled, started, completed)
    let mut first_activity_scheduled = f64::NAN;
    let mut first_batch_scheduled = f64::NAN;
    let t0_s = t0_wall
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(f64::NAN, |d| d.as_secs_f64());
    for events in &runs {
        let started = events.first().map_or(f64::NAN, event_secs) - t0_s;
        f.run_spans.push((started, events.len() as u64));
        let mut kinds: BTreeMap<i64, (String, f64, f64)> = BTreeMap::new();
        for e in events {
            f.history_events += 1;
            let ty = EventType::try_from(e.event_type).unwrap_or(EventType::Unspecified);
            *f.events_by_type
                .entry(
                    ty.as_str_name()
                        .trim_start_matches("EVENT_TYPE_")
                        .to_owned(),
                )
                .or_default() += 1;
            let t = event_secs(e);
            match &e.attributes {
                Some(Attributes::WorkflowExecutionStartedEventAttributes(_)) => {
                    *actions.entry("workflow_starts".to_owned()).or_default() += 1;
                }
                Some(Attributes::ActivityTaskScheduledEventAttributes(a)) => {
                    let name = a
                        .activity_type
                        .as_ref()
                        .map(|t| t.name.clone())
                        .unwrap_or_default();
                    if first_activity_scheduled.is_nan() {
                        first_activity_scheduled = t;
                    }
                    if name.contains("send_batch") && first_batch_scheduled.is_nan() {
                        first_batch_scheduled = t;
                    }
                    kinds.insert(e.event_id, (name, t, f64::NAN));
                }
                Some(Attributes::ActivityTaskStartedEventAttributes(a)) => {
                    // Written once per activity with its last attempt number: each attempt is
                    // an action ("activity started or retried").
                    *actions.entry("activity_attempts".to_owned()).or_default() +=
                        u64::try_from(a.attempt.max(1)).unwrap_or(1);
                    if let Some(k) = kinds.get_mut(&a.scheduled_event_id) {
                        k.2 = t;
                    }
                }
                Some(Attributes::ActivityTaskCompletedEventAttributes(a)) => {
                    if let Some((name, scheduled, started)) = kinds.get(&a.scheduled_event_id)
                        && name.contains("send_batch")
                    {
                        batch_spans.push((*scheduled, *started, t));
                    }
                }
                Some(Attributes::TimerStartedEventAttributes(_)) => {
                    *actions.entry("timers".to_owned()).or_default() += 1;
                }
                Some(Attributes::WorkflowExecutionSignaledEventAttributes(_)) => {
                    *actions.entry("signals".to_owned()).or_default() += 1;
                }
                Some(Attributes::UpsertWorkflowSearchAttributesEventAttributes(_)) => {
                    *actions
                        .entry("search_attribute_upserts".to_owned())
                        .or_default() += 1;
                }
                Some(Attributes::MarkerRecordedEventAttributes(_)) => {
                    *actions.entry("markers".to_owned()).or_default() += 1;
                }
                Some(Attributes::WorkflowExecutionUpdateAcceptedEventAttributes(_)) => {
                    *actions.entry("updates".to_owned()).or_default() += 1;
                }
                Some(Attributes::StartChildWorkflowExecutionInitiatedEventAttributes(_)) => {
                    *actions.entry("child_starts".to_owned()).or_default() += 1;
                }
                Some(Attributes::WorkflowExecutionCompletedEventAttributes(_)) => {
                    completed_at = e.event_time.as_ref().and_then(|t| {
                        let nanos = u32::try_from(t.nanos).ok()?;
                        let secs = u64::try_from(t.seconds).ok()?;
                        Some(SystemTime::UNIX_EPOCH + Duration::new(secs, nanos))
                    });
                }
                _ => {}
            }
        }
    }
    f.actions = actions;
    f.batches = batch_spans.len() as u64;
    let mut s2s = 0.0;
    for (i, (scheduled, started, completed)) in batch_spans.iter().enumerate() {
        f.batch_exec_s += completed - started;
        s2s += started - scheduled;
        if let Some(next) = batch_spans.get(i + 1) {
            let gap = next.1 - completed;
            f.between_batches_s += gap;
            f.max_gap_s = f.max_gap_s.max(gap);
        }
    }
    f.mean_schedule_to_start_ms = s2s / batch_spans.len().max(1) as f64 * 1000.0;
    f.materialize_s = first_batch_scheduled - first_activity_scheduled;
    f.sending_s = batch_spans.last().map_or(f64::NAN, |l| l.2) - first_batch_scheduled;
    eprintln!(
        "history: {} runs, {} events, {} send_batch activities for {contacts} contacts",
        f.runs, f.history_events, f.batches
    );
    for (n, (started, events)) in f.run_spans.iter().enumerate() {
        eprintln!(
            "  run {}: started at {started:.0} s, {events} events",
            n + 1
        );
    }
    Ok((f, completed_at))
}

fn print_summary(r: &RunResult) {
    println!();
    println!(
        "== {} run: {} contacts, started {} ==",
        r.mode, r.contacts, r.started_at
    );
    println!(
        "wall time start -> completed: {} s; every item delivered after {} s",
        fmt_f(r.wall_s, 1),
        r.all_delivered_s.map_or("-".to_owned(), |v| fmt_f(v, 1))
    );
    let x = &r.rates;
    println!(
        "accepted by the simulator: first after {} s, all after {} s",
        fmt_f(x.first_accept_s, 1),
        fmt_f(x.all_accepted_s, 1)
    );
    println!(
        "msgs/s: overall {}  sending phase {}  middle 80% {}  (1 s intervals in the middle: {} .. {})",
        fmt_f(x.overall_per_s, 0),
        fmt_f(x.sending_per_s, 0),
        fmt_f(x.middle80_per_s, 0),
        fmt_f(x.worst_interval_per_s, 0),
        fmt_f(x.best_interval_per_s, 0)
    );
    if let Some(t) = &r.temporal {
        println!(
            "temporal: {} runs, {} history events, {} actions = {} per contact {:?}; \
             {} progress queries by the benchmark (not counted)",
            t.runs,
            t.history_events,
            t.actions_total,
            fmt_f(t.actions_per_contact, 4),
            t.actions,
            t.observer_queries
        );
        println!(
            "batches: {} send_batch, executing {} s in total, {} s between batches (max gap {} s, \
             mean schedule-to-start {} ms); materialise {} s, sending {} s",
            t.batches,
            fmt_f(t.batch_exec_s, 1),
            fmt_f(t.between_batches_s, 1),
            fmt_f(t.max_gap_s, 2),
            fmt_f(t.mean_schedule_to_start_ms, 1),
            fmt_f(t.materialize_s, 1),
            fmt_f(t.sending_s, 1)
        );
    }
    println!(
        "progress poll: mean {} ms, max {} ms",
        fmt_f(r.progress_ms_mean, 0),
        fmt_f(r.progress_ms_max, 0)
    );
    println!(
        "machine: {} cores, window {} s, busy {} CPU-s of which others {} CPU-s; load {} -> {}",
        r.machine.cores,
        fmt_f(r.machine.window_s, 1),
        fmt_f(r.machine.busy_cpu_s, 1),
        fmt_f(r.machine.other_cpu_s, 1),
        r.machine.loadavg_start,
        r.machine.loadavg_end
    );
    for p in &r.processes {
        println!(
            "  {:<10} pid {:>7}: peak RSS {:>7} MiB (now {:>7}), CPU {:>7} s = {:>5} cores",
            p.name,
            p.pid,
            fmt_f(p.peak_rss_mib, 1),
            fmt_f(p.rss_mib, 1),
            fmt_f(p.cpu_s, 1),
            fmt_f(p.cores, 2)
        );
    }
    print_rss(r);
    let v = &r.verification;
    println!(
        "exactly once: {} (ledger {} for {} contacts, {} missing, {} repeated, {} duplicate entries; \
         ledger by status {:?}; items {:?})",
        if v.exactly_once() { "yes" } else { "NO" },
        v.ledger_total,
        v.contacts,
        v.missing,
        v.repeated,
        v.duplicate_entries,
        v.ledger_by_status,
        v.items_by_status
    );
}

fn ratio(a: f64, b: f64) -> String {
    if a.is_finite() && b.is_finite() && b != 0.0 {
        format!("{:.2}x", a / b)
    } else {
        "-".to_owned()
    }
}

fn report(d: &RunResult, b: &RunResult, m: Option<&RunResult>) {
    print_summary(d);
    if let Some(m) = m {
        print_summary(m);
    }
    print_summary(b);
    // NaN (printed "-") when the run watched none of these processes.
    let cpu = |r: &RunResult, names: &[&str]| -> f64 {
        r.processes
            .iter()
            .filter(|p| names.contains(&p.name.as_str()))
            .map(|p| p.cpu_s)
            .fold(f64::NAN, |acc, c| if acc.is_nan() { c } else { acc + c })
    };
    let rss = |r: &RunResult, name: &str| r.peak_rss(name).unwrap_or(f64::NAN);
    let all = [
        "worker",
        "api",
        "temporal",
        "mongo",
        "simulator",
        "baseline",
    ];
    type Metric<'a> = (&'a str, Box<dyn Fn(&RunResult) -> f64 + 'a>, usize);
    let rows: Vec<Metric<'_>> = vec![
        ("contacts", Box::new(|r| r.contacts as f64), 0),
        ("wall time, start -> done (s)", Box::new(|r| r.wall_s), 1),
        (
            "every item delivered (s)",
            Box::new(|r| r.all_delivered_s.unwrap_or(f64::NAN)),
            1,
        ),
        (
            "msgs/s overall (start -> last accepted)",
            Box::new(|r| r.rates.overall_per_s),
            0,
        ),
        (
            "msgs/s sending phase",
            Box::new(|r| r.rates.sending_per_s),
            0,
        ),
        (
            "msgs/s steady middle 80%",
            Box::new(|r| r.rates.middle80_per_s),
            0,
        ),
        (
            "peak RSS worker | loop process (MiB)",
            Box::new(move |r| {
                if r.temporal.is_some() {
                    rss(r, "worker")
                } else {
                    rss(r, "baseline")
                }
            }),
            1,
        ),
        ("peak RSS api (MiB)", Box::new(move |r| rss(r, "api")), 1),
        (
            "peak RSS temporal (MiB)",
            Box::new(move |r| rss(r, "temporal")),
            1,
        ),
        (
            "peak RSS mongo (MiB)",
            Box::new(move |r| rss(r, "mongo")),
            1,
        ),
        (
            "CPU s worker | loop process",
            Box::new(move |r| cpu(r, &["worker", "baseline"])),
            1,
        ),
        (
            "CPU s temporal",
            Box::new(move |r| cpu(r, &["temporal"])),
            1,
        ),
        ("CPU s mongo", Box::new(move |r| cpu(r, &["mongo"])), 1),
        (
            "CPU s api (callbacks, progress)",
            Box::new(move |r| cpu(r, &["api"])),
            1,
        ),
        (
            "CPU s simulator",
            Box::new(move |r| cpu(r, &["simulator"])),
            1,
        ),
        ("CPU s all of the above", Box::new(move |r| cpu(r, &all)), 1),
        (
            "CPU ms per message, all of the above",
            Box::new(move |r| cpu(r, &all) * 1000.0 / r.contacts as f64),
            2,
        ),
        (
            "CPU s others on the machine",
            Box::new(|r| r.machine.other_cpu_s),
            1,
        ),
        (
            "progress poll, mean ms",
            Box::new(|r| r.progress_ms_mean),
            0,
        ),
        (
            "Temporal actions per contact",
            Box::new(|r| r.temporal.as_ref().map_or(0.0, |t| t.actions_per_contact)),
            4,
        ),
    ];
    println!();
    println!(
        "== durable (Temporal) vs baseline (plain loop), {} contacts ==",
        d.contacts
    );
    let middle_head = if m.is_some() { "loop+writes" } else { "" };
    println!(
        "| {:<40} | {:>12} | {:>12} | {:>12} | {:>16} |",
        "", "durable", middle_head, "baseline", "durable/baseline"
    );
    println!(
        "|{:-<42}|{:->14}|{:->14}|{:->14}|{:->18}|",
        "", "", "", "", ""
    );
    for (name, f, dec) in &rows {
        let (dv, bv) = (f(d), f(b));
        let mv = m.map_or(String::new(), |m| fmt_f(f(m), *dec));
        println!(
            "| {:<40} | {:>12} | {:>12} | {:>12} | {:>16} |",
            name,
            fmt_f(dv, *dec),
            mv,
            fmt_f(bv, *dec),
            ratio(dv, bv)
        );
    }
    println!();
    println!(
        "cost of durability: {} the wall time, {} the steady rate, {} the CPU per message (durable/baseline)",
        ratio(d.wall_s, b.wall_s),
        ratio(d.rates.middle80_per_s, b.rates.middle80_per_s),
        ratio(cpu(d, &all), cpu(b, &all))
    );
    let target = 1_000.0;
    println!(
        "target >= {target:.0} msgs/s sustained (middle 80%): durable {} ({}), baseline {} ({})",
        fmt_f(d.rates.middle80_per_s, 0),
        if d.rates.middle80_per_s >= target {
            "met"
        } else {
            "MISSED"
        },
        fmt_f(b.rates.middle80_per_s, 0),
        if b.rates.middle80_per_s >= target {
            "met"
        } else {
            "missed"
        },
    );
}
