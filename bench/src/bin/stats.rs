//! Dashboard figures at scale: fills a database with `--messages` messages and `--calls` call
//! logs spread over `--days` days (and one campaign per day with its counters), written
//! directly as data from before the daily counters would be; then times the rebuild of the
//! counters (what the api does at start), and the store's `stats` (what
//! `GET /api/stats?days=1|7|30` computes on a cache miss) for each window: wall time, the
//! MongoDB server's CPU, and how many documents the window holds, which the figures must
//! count exactly. Run by `scripts/bench-stats.sh`; see docs/benchmarks.md.

use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use mongodb::bson::{DateTime, Document, doc};
use voice_agent_store::MongoStore;
use voice_agent_store::schema::{CALL_LOGS, CAMPAIGNS, MESSAGES};

#[derive(Parser)]
struct Args {
    #[arg(long)]
    mongodb_uri: String,
    #[arg(long, default_value = "bench_stats")]
    database: String,
    /// Messages to insert (90% outbound).
    #[arg(long, default_value_t = 1_000_000)]
    messages: u64,
    /// Call logs to insert.
    #[arg(long, default_value_t = 100_000)]
    calls: u64,
    /// Days the documents are spread over, ending now.
    #[arg(long, default_value_t = 30)]
    days: u64,
    /// Times each window is computed.
    #[arg(long, default_value_t = 3)]
    reps: u32,
    /// The MongoDB server's process id, for its CPU time.
    #[arg(long)]
    mongo_pid: Option<u32>,
    /// Use the documents already in the database (of an earlier run) and rebuild the
    /// counters from scratch.
    #[arg(long)]
    reuse: bool,
}

const BATCH: u64 = 10_000;
const DAY_MS: i64 = 86_400_000;

/// A spread of `i` over `0..n` that is not in insertion order (a multiplicative hash).
fn spread(i: u64, n: u64) -> u64 {
    i.wrapping_mul(2_654_435_761) % n.max(1)
}

fn cpu_seconds(pid: Option<u32>) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid?)).ok()?;
    let fields: Vec<f64> = stat
        .rsplit_once(')')?
        .1
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|v| v.parse().ok())
        .collect();
    Some(fields.iter().sum::<f64>() / 100.0)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let store = MongoStore::connect(&args.mongodb_uri, &args.database)
        .await
        .context("connecting to MongoDB")?;
    // The product's indexes, time indexes included: inserts pay for them as in production.
    store.ensure_schema().await.context("creating the schema")?;
    let db = store.database();
    let now = DateTime::now().timestamp_millis();
    let span_ms = i64::try_from(args.days.max(1)).unwrap_or(30) * DAY_MS;
    let at = |i: u64, n: u64| {
        // Spread over the span to the millisecond, ending a minute ago.
        let offset = i64::try_from(spread(i, n) * 1_000_003 % (span_ms as u64)).unwrap_or(0);
        now - 60_000 - offset
    };

    let messages = db.collection::<Document>(MESSAGES);
    let calls = db.collection::<Document>(CALL_LOGS);
    let days = i64::try_from(args.days).unwrap_or(30);
    if args.reuse {
        db.collection::<Document>(voice_agent_store::schema::STATS_DAYS)
            .drop()
            .await
            .context("dropping the counters")?;
    } else {
        let t = Instant::now();
        let messages = db.collection::<Document>(MESSAGES);
        let statuses = [
            "delivered",
            "delivered",
            "delivered",
            "sent",
            "undelivered",
            "failed",
            "read",
        ];
        for start in (0..args.messages).step_by(BATCH as usize) {
            let docs: Vec<Document> = (start..(start + BATCH).min(args.messages))
                .map(|i| {
                    let inbound = i % 10 == 0;
                    doc! {
                        "_id": format!("msg_bench_{i:010}"),
                        "direction": if inbound { "inbound" } else { "outbound" },
                        "channel": if i % 7 == 0 { "whatsapp" } else { "sms" },
                        "from": "+15005550006",
                        "to": format!("+1415{:07}", i % 10_000_000),
                        "body": "Hi there, this is a benchmark message of a typical length.",
                        "status": if inbound { "received" } else { statuses[(i % 7) as usize] },
                        "status_rank": 3,
                        "created_at": DateTime::from_millis(at(i, args.messages)),
                        "updated_at": DateTime::from_millis(at(i, args.messages)),
                    }
                })
                .collect();
            messages.insert_many(docs).await.context("messages")?;
        }
        let messages_s = t.elapsed().as_secs_f64();

        let t = Instant::now();
        let calls = db.collection::<Document>(CALL_LOGS);
        let outcomes = [
            "completed",
            "completed",
            "no_answer",
            "busy",
            "voicemail_left",
            "failed",
        ];
        for start in (0..args.calls).step_by(BATCH as usize) {
            let docs: Vec<Document> = (start..(start + BATCH).min(args.calls))
                .map(|i| {
                    let started = DateTime::from_millis(at(i, args.calls))
                        .try_to_rfc3339_string()
                        .unwrap_or_default();
                    doc! {
                        "_id": format!("call-bench-{i:010}/1"),
                        "call_id": format!("call-bench-{i:010}"),
                        "attempt": 1,
                        "direction": if i % 3 == 0 { "inbound" } else { "outbound" },
                        "from": "+15005550006",
                        "to": format!("+1415{:07}", i % 10_000_000),
                        "outcome": outcomes[(i % 6) as usize],
                        "started_at": started,
                        "updated_at": DateTime::from_millis(at(i, args.calls)),
                    }
                })
                .collect();
            calls.insert_many(docs).await.context("call logs")?;
        }
        let calls_s = t.elapsed().as_secs_f64();

        let campaigns = db.collection::<Document>(CAMPAIGNS);
        let days = i64::try_from(args.days).unwrap_or(30);
        let docs: Vec<Document> = (0..days)
            .map(|d| {
                let created = DateTime::from_millis(now - 60_000 - d * DAY_MS);
                doc! {
                    "_id": format!("cmp_bench_{d:04}"), "name": format!("day {d}"), "channel": "sms",
                    "template": "Hi", "list_id": "l", "rate_per_second": 0.0, "max_attempts": 3,
                    "status": "completed", "indexed_items": true,
                    "status_counts": { "delivered": 9_000_i64, "failed": 500_i64, "skipped": 500_i64 },
                    "created_at": created, "updated_at": created,
                }
            })
            .collect();
        campaigns.insert_many(docs).await.context("campaigns")?;
        println!(
            "inserted {} messages in {messages_s:.1} s, {} call logs in {calls_s:.1} s, {days} campaigns",
            args.messages, args.calls
        );
    }

    let cpu = cpu_seconds(args.mongo_pid);
    let t = Instant::now();
    let today = chrono::Utc::now().date_naive();
    let rebuilt = store
        .rebuild_stats(today, u32::try_from(days).unwrap_or(30))
        .await
        .context("rebuilding the counters")?;
    let server = cpu
        .zip(cpu_seconds(args.mongo_pid))
        .map_or("?".to_owned(), |(a, b)| format!("{:.1}", b - a));
    println!(
        "rebuilt the counters of {} days ({} busy) in {:.1} s, server CPU {server} s",
        rebuilt.recounted,
        rebuilt.busy,
        t.elapsed().as_secs_f64()
    );

    println!(
        "{:>6} {:>12} {:>12} {:>10} {:>12} {:>14}",
        "window", "messages", "call logs", "rep", "wall_ms", "server_cpu_ms"
    );
    for window_days in [1_i64, 7, 30] {
        // The dashboard's window: from midnight (UTC) of its first day.
        let first = today - chrono::Days::new(u64::try_from(window_days - 1).unwrap_or(0));
        let since = DateTime::from_millis(
            first
                .and_hms_opt(0, 0, 0)
                .unwrap_or_default()
                .and_utc()
                .timestamp_millis(),
        );
        let in_messages = messages
            .count_documents(doc! { "created_at": { "$gte": since } })
            .await?;
        // Days order before every time of their day (see `stats::aggregate_days`).
        let since_text = first.to_string();
        let in_calls = calls
            .count_documents(doc! { "started_at": { "$gte": since_text } })
            .await?;
        for rep in 1..=args.reps {
            let cpu = cpu_seconds(args.mongo_pid);
            let t = Instant::now();
            let result = store.stats(since).await;
            let wall = t.elapsed();
            let server = cpu
                .zip(cpu_seconds(args.mongo_pid))
                .map_or("?".to_owned(), |(a, b)| format!("{:.0}", (b - a) * 1000.0));
            match result {
                Ok(stats) => {
                    let total: i64 = stats.outbound.total.values().sum::<i64>()
                        + stats.inbound.total.values().sum::<i64>();
                    anyhow::ensure!(
                        u64::try_from(total).unwrap_or(0) == in_messages,
                        "the {window_days}-day figures count {total} messages, the window holds {in_messages}"
                    );
                    let calls_total: i64 = stats.calls.total.values().sum();
                    anyhow::ensure!(
                        u64::try_from(calls_total).unwrap_or(0) == in_calls,
                        "the {window_days}-day figures count {calls_total} calls, the window holds {in_calls}"
                    );
                    println!(
                        "{:>5}d {:>12} {:>12} {:>10} {:>12.0} {:>14}",
                        window_days,
                        in_messages,
                        in_calls,
                        rep,
                        wall.as_secs_f64() * 1000.0,
                        server
                    );
                }
                Err(e) => println!(
                    "{window_days:>5}d {in_messages:>12} {in_calls:>12} {rep:>10} failed after {:.0} ms: {e}",
                    wall.as_secs_f64() * 1000.0
                ),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    Ok(())
}
