//! Inbound burst benchmark (run by `scripts/bench-inbound.sh`): signed inbound SMS webhooks at
//! a fixed offered rate, each from a new number (a new conversation), then waits until every
//! accepted message is in its workflow. Prints webhook latency percentiles, errors, the drain
//! rate, and the Temporal server's own workflow-start rate measured right after in the same
//! run. Asserts nothing.

use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use futures::StreamExt;
use mongodb::bson::{Document, doc};
use temporalio_client::{Client, ClientOptions, Connection, ConnectionOptions};
use temporalio_common::protos::temporal::api::common::v1::WorkflowType;
use temporalio_common::protos::temporal::api::taskqueue::v1::TaskQueue;
use temporalio_common::protos::temporal::api::workflowservice::v1::StartWorkflowExecutionRequest;

#[derive(Parser)]
struct Args {
    /// The api's base URL (also the URL webhooks are signed for).
    #[arg(long)]
    api: String,
    #[arg(long)]
    auth_token: String,
    #[arg(long)]
    account_sid: String,
    /// Our number (the messages' To).
    #[arg(long)]
    ours: String,
    /// Offered webhooks per second.
    #[arg(long, default_value_t = 200)]
    rate: u32,
    /// Seconds of offered load.
    #[arg(long, default_value_t = 60)]
    seconds: u32,
    #[arg(long)]
    mongo_uri: String,
    #[arg(long)]
    database: String,
    /// Temporal frontend (host:port), for its own start rate.
    #[arg(long)]
    temporal: String,
    /// Workflows started to measure Temporal's start rate (0: skip).
    #[arg(long, default_value_t = 2000)]
    start_probe: u32,
    /// Concurrency of that probe.
    #[arg(long, default_value_t = 64)]
    probe_concurrency: usize,
    /// Longest wait for the drain.
    #[arg(long, default_value_t = 1800)]
    drain_timeout_s: u64,
}

struct Outcome {
    latency: Duration,
    /// The HTTP status, 0 when the request failed (connect error, timeout).
    status: u16,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args = Args::parse();
    anyhow::ensure!(
        (1..=20_000).contains(&args.rate) && (1..=3_600).contains(&args.seconds),
        "--rate must be 1..=20000 and --seconds 1..=3600"
    );
    let total = u64::from(args.rate) * u64::from(args.seconds);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .pool_max_idle_per_host(4096)
        .build()?;
    let mongo = mongodb::Client::with_uri_str(&args.mongo_uri)
        .await?
        .database(&args.database);
    let salt = u64::from(std::process::id()) << 40;

    // Offered load: one webhook per tick, each on its own task, whatever the api's pace.
    let url = format!("{}/twilio/sms", args.api);
    let started = Instant::now();
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(args.rate)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = Vec::with_capacity(total as usize);
    for i in 0..total {
        ticker.tick().await;
        let params: Vec<(String, String)> = vec![
            ("AccountSid".into(), args.account_sid.clone()),
            ("Body".into(), format!("burst {i}")),
            // Valid NANP numbers: exchanges 200-999, 10,000 lines each (8 million in all).
            (
                "From".into(),
                format!("+1650{:03}{:04}", 200 + (i / 10_000) % 800, i % 10_000),
            ),
            ("MessageSid".into(), format!("SM{:032x}", salt + i)),
            ("To".into(), args.ours.clone()),
        ];
        let signature =
            voice_agent_twilio::signature::compute_signature(&args.auth_token, &url, &params);
        let request = http
            .post(&url)
            .header("X-Twilio-Signature", signature)
            .form(&params);
        tasks.push(tokio::spawn(async move {
            let t0 = Instant::now();
            let status = request.send().await.map_or(0, |r| r.status().as_u16());
            Outcome {
                latency: t0.elapsed(),
                status,
            }
        }));
    }
    let offered_s = started.elapsed().as_secs_f64();
    let mut latencies = Vec::with_capacity(tasks.len());
    let mut errors = 0_u64;
    let mut by_status = std::collections::BTreeMap::<u16, u64>::new();
    for task in tasks {
        let o = task.await?;
        if o.status == 200 {
            latencies.push(o.latency);
        } else {
            errors += 1;
            *by_status.entry(o.status).or_default() += 1;
        }
    }
    let answered_s = started.elapsed().as_secs_f64();
    let accepted = latencies.len() as u64;
    latencies.sort();
    let pct = |p: f64| -> f64 {
        if latencies.is_empty() {
            return f64::NAN;
        }
        let i = ((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1;
        latencies[i].as_secs_f64() * 1000.0
    };

    // The drain: every accepted message in its workflow (handed over, inbox empty).
    let messages = mongo.collection::<Document>("messages");
    let inbox = mongo.collection::<Document>("inbox");
    let deadline = Instant::now() + Duration::from_secs(args.drain_timeout_s);
    let mut peak_backlog = 0_u64;
    let (drained_s, handed_over) = loop {
        let handed_over = messages
            .count_documents(doc! { "direction": "inbound", "handed_over_at": { "$exists": true } })
            .await?;
        let backlog = inbox.count_documents(doc! {}).await?;
        peak_backlog = peak_backlog.max(backlog);
        if handed_over >= accepted && backlog == 0 {
            break (started.elapsed().as_secs_f64(), handed_over);
        }
        if Instant::now() > deadline {
            break (f64::NAN, handed_over);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    let stored = messages
        .count_documents(doc! { "direction": "inbound" })
        .await?;

    // Temporal's own start rate, right after, on the same server: plain starts of workflows on
    // a task queue no worker polls (nothing runs them).
    let probe = if args.start_probe > 0 {
        Some(start_rate(&args).await?)
    } else {
        None
    };

    println!(
        "inbound burst: {} webhooks offered at {}/s for {} s (offered in {offered_s:.1} s)",
        total, args.rate, args.seconds
    );
    println!(
        "  answered 200     {accepted} ({errors} errors), all answered after {answered_s:.1} s"
    );
    println!(
        "  webhook latency  p50 {:.1} ms  p90 {:.1} ms  p99 {:.1} ms  max {:.1} ms",
        pct(0.50),
        pct(0.90),
        pct(0.99),
        pct(1.0)
    );
    println!("  stored           {stored} inbound messages");
    println!(
        "  in its workflow  {handed_over} after {drained_s:.1} s from the first webhook (peak backlog {peak_backlog})"
    );
    let drain_rate = handed_over as f64 / drained_s;
    println!(
        "  drain rate       {drain_rate:.0} messages/s (each a signal-with-start of a new conversation)"
    );
    if let Some(rate) = probe {
        println!(
            "  Temporal starts  {rate:.0} workflows/s ({} plain starts, {} at once, same server, no worker)",
            args.start_probe, args.probe_concurrency
        );
    }
    Ok(())
}

async fn start_rate(args: &Args) -> anyhow::Result<f64> {
    let address = if args.temporal.contains("://") {
        args.temporal.clone()
    } else {
        format!("http://{}", args.temporal)
    };
    let conn = Connection::connect(
        ConnectionOptions::new(temporalio_client::Url::parse(&address)?)
            .identity("voice-agent-bench".to_owned())
            .build(),
    )
    .await
    .context("connecting to Temporal")?;
    let client = Client::new(conn, ClientOptions::new("default").build())?;
    let t0 = Instant::now();
    let failures = futures::stream::iter(0..args.start_probe)
        .map(|i| {
            let mut service = client.connection().workflow_service();
            async move {
                let request = StartWorkflowExecutionRequest {
                    namespace: "default".to_owned(),
                    workflow_id: format!("bench-start-probe-{i}"),
                    workflow_type: Some(WorkflowType {
                        name: "BenchStartProbe".to_owned(),
                    }),
                    task_queue: Some(TaskQueue {
                        name: "bench-start-probe-unpolled".to_owned(),
                        ..Default::default()
                    }),
                    request_id: uuid_like(i),
                    ..Default::default()
                };
                service
                    .start_workflow_execution(temporalio_client::tonic::Request::new(request))
                    .await
                    .is_err()
            }
        })
        .buffer_unordered(args.probe_concurrency)
        .filter(|failed| std::future::ready(*failed))
        .count()
        .await;
    let elapsed = t0.elapsed().as_secs_f64();
    anyhow::ensure!(failures == 0, "{failures} probe starts failed");
    Ok(f64::from(args.start_probe) / elapsed)
}

fn uuid_like(i: u32) -> String {
    format!(
        "00000000-0000-4000-8000-{:012x}",
        u64::from(i) + (u64::from(std::process::id()) << 24)
    )
}
