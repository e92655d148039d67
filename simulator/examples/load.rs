//! Campaign-scale load on the simulator alone: creates messages as fast as a pool of
//! concurrent clients can, with a status callback each, and reports creates/s, callbacks/s,
//! memory per message and the cost of ledger queries at that size.
//!
//! ```sh
//! cargo run --release -p voice-agent-simulator --example load -- --count 100000
//! ```
//!
//! Everything runs in this process on loopback: the simulator, a callback receiver standing
//! in for the application, and the load generator. They share the machine's cores, so the
//! figures are a lower bound for the simulator on its own.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use axum::Router;
use axum::extract::State;
use axum::routing::post;
use clap::Parser;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use voice_agent_simulator::{Config, install_crypto_provider, run};

/// Upper bounds that keep a mistyped argument from running for hours or exhausting memory.
const MAX_COUNT: usize = 2_000_000;
const MAX_CONCURRENCY: usize = 1024;
/// How long to wait for the last callbacks after the last create.
const CALLBACK_WAIT: Duration = Duration::from_secs(300);

#[derive(Parser)]
struct Args {
    /// Messages to create, each to its own number.
    #[arg(long, default_value_t = 100_000)]
    count: usize,
    /// Concurrent REST clients.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// The simulator's delay before each status change.
    #[arg(long, default_value_t = 0)]
    callback_delay_ms: u64,
    /// The simulator's bound on concurrent callback requests.
    #[arg(long, default_value_t = 256)]
    callback_concurrency: usize,
    /// Create messages without a StatusCallback (measures the REST side alone).
    #[arg(long)]
    no_callbacks: bool,
    /// Send every message to one of this many numbers instead of a number each, so the ledger
    /// has duplicates to find.
    #[arg(long)]
    distinct_numbers: Option<usize>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    ensure!(
        (1..=MAX_COUNT).contains(&args.count),
        "--count must be 1..={MAX_COUNT}"
    );
    ensure!(
        (1..=MAX_CONCURRENCY).contains(&args.concurrency),
        "--concurrency must be 1..={MAX_CONCURRENCY}"
    );
    install_crypto_provider();
    let shutdown = CancellationToken::new();

    let received = Arc::new(AtomicU64::new(0));
    let receiver_url = spawn_receiver(Arc::clone(&received), shutdown.clone()).await?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let base_url = format!("http://{}", listener.local_addr()?);
    let config = Config {
        callback_delay_ms: args.callback_delay_ms,
        callback_concurrency: args.callback_concurrency,
        ..Config::default()
    };
    let account_sid = config.account_sid.clone();
    let auth_token = config.auth_token.expose().to_owned();
    let server = tokio::spawn(run(listener, config, shutdown.clone()));

    let rss_before = rss_kib();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .build()?;
    let messages_url = format!("{base_url}/2010-04-01/Accounts/{account_sid}/Messages.json");
    let callback = (!args.no_callbacks).then(|| format!("{receiver_url}/twilio/status"));
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..args.concurrency {
        let (http, url, callback, next) = (
            http.clone(),
            messages_url.clone(),
            callback.clone(),
            Arc::clone(&next),
        );
        let (account_sid, auth_token) = (account_sid.clone(), auth_token.clone());
        let (count, distinct) = (args.count, args.distinct_numbers);
        workers.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    return anyhow::Ok(());
                }
                let to = format!("+1555{:07}", distinct.map_or(i, |d| i % d.max(1)));
                let mut form = vec![
                    ("To", to.as_str()),
                    ("From", "+15005550006"),
                    ("Body", "Campaign spring sale: 20% off this week"),
                ];
                if let Some(callback) = &callback {
                    form.push(("StatusCallback", callback));
                }
                let response = http
                    .post(&url)
                    .basic_auth(&account_sid, Some(&auth_token))
                    .form(&form)
                    .send()
                    .await
                    .context("create failed")?;
                if response.status() != reqwest::StatusCode::CREATED {
                    bail!("create answered {}", response.status());
                }
                // Reading the body keeps the connection reusable.
                response.bytes().await?;
            }
        });
    }
    while let Some(result) = workers.join_next().await {
        result??;
    }
    let created_in = started.elapsed();

    let expected = if args.no_callbacks {
        0
    } else {
        2 * args.count as u64
    };
    let deadline = Instant::now() + CALLBACK_WAIT;
    while received.load(Ordering::Relaxed) < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let all_in = started.elapsed();
    let callbacks = received.load(Ordering::Relaxed);
    // Settle: in-flight tasks finish and release their memory before measuring.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_after = rss_kib();

    let admin = |path: &str| format!("{base_url}/admin/{path}");
    let timed = |path: &'static str| {
        let (http, url) = (http.clone(), admin(path));
        async move {
            let at = Instant::now();
            let body = http.get(url).send().await?.bytes().await?;
            anyhow::Ok((at.elapsed(), body.len()))
        }
    };
    let (counts_time, counts_bytes) = timed("ledger/counts").await?;
    let (one_time, _) = timed("ledger/counts?to=%2B15550000007").await?;
    let (dups_time, dups_bytes) = timed("ledger/duplicates").await?;

    let seconds = |d: Duration| d.as_secs_f64();
    println!("messages created:     {}", args.count);
    println!(
        "create phase:         {:.2} s -> {:.0} creates/s ({} clients)",
        seconds(created_in),
        args.count as f64 / seconds(created_in),
        args.concurrency
    );
    if !args.no_callbacks {
        println!(
            "callbacks received:   {callbacks} of {expected} in {:.2} s -> {:.0} callbacks/s",
            seconds(all_in),
            callbacks as f64 / seconds(all_in)
        );
    }
    if let (Some(before), Some(after)) = (rss_before, rss_after) {
        println!(
            "process RSS:          {} MiB -> {} MiB, ~{} bytes per message",
            before / 1024,
            after / 1024,
            (after.saturating_sub(before) * 1024) / args.count as u64
        );
    }
    println!(
        "admin at this size:   counts {:.1} ms ({} KiB), counts?to= {:.2} ms, duplicates {:.1} ms ({} KiB)",
        counts_time.as_secs_f64() * 1e3,
        counts_bytes / 1024,
        one_time.as_secs_f64() * 1e3,
        dups_time.as_secs_f64() * 1e3,
        dups_bytes / 1024,
    );

    shutdown.cancel();
    server.await??;
    ensure!(
        callbacks >= expected,
        "only {callbacks} of {expected} callbacks arrived"
    );
    Ok(())
}

/// A stand-in for the application's status webhook: counts requests, answers 200 at once.
async fn spawn_receiver(
    received: Arc<AtomicU64>,
    shutdown: CancellationToken,
) -> anyhow::Result<String> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let app = Router::new()
        .route("/twilio/status", post(count_callback))
        .with_state(received);
    tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await
    });
    Ok(url)
}

async fn count_callback(State(received): State<Arc<AtomicU64>>) -> &'static str {
    received.fetch_add(1, Ordering::Relaxed);
    ""
}

/// Resident set size of this process in KiB (Linux), for the memory-per-message estimate.
fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
