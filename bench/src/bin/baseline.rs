//! Dispatch benchmark, baseline side: the earlier system's design, without Temporal. One
//! process reads the campaign's items from MongoDB and, 64 at a time, renders the text, sends
//! it with the project's Twilio client (to the same simulator, with the same status callback to
//! the api) and records the result with one item update. No intent record, no execution log,
//! no retries, no recovery after a crash: the plain loop durability is measured against.
//!
//! Items are copied from the contact list first with the store's own `materialize_items` (as
//! the durable campaign does), so the status callbacks the api applies find the same
//! documents. Run by `scripts/bench-dispatch.sh` after the durable run; prints its figures.
//!
//! `--writes durable` is a diagnostic in between: the same loop without Temporal, but with the
//! batch activity's MongoDB bookkeeping, through the same store calls, in batches of 1,000
//! (suppression lookup and `sending` intent per batch; the accepted records and
//! `campaign_executions` entries through the store's grouping `OutcomeWriter`, as the activity
//! writes them). Durable minus this is what Temporal and the workflow cost;
//! this minus the plain loop is what the bookkeeping writes cost.

#[path = "../shared.rs"]
mod shared;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use futures::{StreamExt, TryStreamExt};
use mongodb::bson::{DateTime, doc};
use secrecy::SecretString;
use voice_agent_activities::template::render;
use voice_agent_store::{CampaignItemDoc, ExecutionDoc, MongoStore, OutcomeWriter, item_status};
use voice_agent_twilio::client::{Auth, CreateMessage, TwilioClient, TwilioConfig};

use shared::{
    RunResult, Sample, Watched, cpu_snapshot, insert_contacts, item_counts, loadavg, now_rfc3339,
    parse_watched, phone_numbers, process_figures, rates, write_result,
};

const TEMPLATE: &str = "Hi {{name}}";
/// Items per batch in `--writes durable` (the workflow's MAX_BATCH at an unlimited rate).
const BATCH: usize = 1_000;

/// What the loop writes per item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Writes {
    /// One item update (the earlier system).
    Plain,
    /// The durable batch activity's writes, without Temporal.
    Durable,
}

#[derive(Parser)]
#[command(about = "Campaign dispatch benchmark: the plain-loop baseline")]
struct Args {
    #[arg(long, default_value_t = 100_000)]
    contacts: usize,
    /// Sends in flight at once (the durable batch activity uses 64).
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// What is written per item.
    #[arg(long, value_enum, default_value_t = Writes::Plain)]
    writes: Writes,
    #[arg(long)]
    simulator: String,
    #[arg(long)]
    mongodb_uri: String,
    /// A fresh database (the api serving the callbacks uses the same one).
    #[arg(long)]
    database: String,
    /// The api's public URL: status callbacks go to `<url>/twilio/status?item=<id>`.
    #[arg(long)]
    public_base_url: url::Url,
    #[arg(long)]
    account_sid: String,
    #[arg(long)]
    auth_token: String,
    #[arg(long)]
    from: String,
    /// Twilio request timeout, ms.
    #[arg(long, default_value_t = 10_000)]
    twilio_timeout_ms: u64,
    /// A process to measure, `name=pid` (repeat); this process is added as `baseline`.
    #[arg(long = "watch", value_parser = parse_watched)]
    watch: Vec<Watched>,
    #[arg(long, default_value_t = 1.0)]
    poll_s: f64,
    #[arg(long, default_value_t = 3_600)]
    timeout_s: u64,
    #[arg(long)]
    out: PathBuf,
    #[arg(long = "setting")]
    settings: Vec<String>,
}

/// Sends one item's message; the SID, or why it failed.
struct Sender {
    twilio: TwilioClient,
    from: String,
    callback_base: url::Url,
    outcomes: Arc<Outcomes>,
}

impl Sender {
    async fn send(&self, item: &CampaignItemDoc) -> Result<String, String> {
        let mut callback = self.callback_base.clone();
        callback
            .query_pairs_mut()
            .clear()
            .append_pair("item", &item.id);
        let sent = self
            .twilio
            .create_message(&CreateMessage {
                to: item.phone.clone(),
                from: Some(self.from.clone()),
                body: Some(render(TEMPLATE, &item.variables)),
                status_callback: Some(callback.to_string()),
                ..Default::default()
            })
            .await;
        match sent {
            Ok(m) => {
                self.outcomes.accepted.fetch_add(1, Ordering::Relaxed);
                Ok(m.sid)
            }
            Err(e) => {
                let counter = if e.is_retryable() {
                    &self.outcomes.transient
                } else {
                    &self.outcomes.rejected
                };
                counter.fetch_add(1, Ordering::Relaxed);
                Err(e.to_string())
            }
        }
    }
}

#[derive(Default)]
struct Outcomes {
    accepted: AtomicU64,
    rejected: AtomicU64,
    transient: AtomicU64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut args = Args::parse();
    args.watch.push(Watched {
        name: "baseline".to_owned(),
        pid: std::process::id(),
    });
    let n = args.contacts;

    let sim = shared::Simulator::new(&args.simulator)?;
    sim.reset().await?;
    let store = MongoStore::connect(&args.mongodb_uri, &args.database).await?;
    store.ensure_schema().await?;
    let mongo = mongodb::Client::with_uri_str(&args.mongodb_uri).await?;
    let db = mongo.database(&args.database);
    let phones = phone_numbers(n)?;
    let list_id = insert_contacts(&db, &phones).await?;
    let mut base_url = args.public_base_url.clone();
    base_url.set_path("/twilio/status");
    let twilio = TwilioClient::new(TwilioConfig {
        base_url: url::Url::parse(&args.simulator)?,
        account_sid: args.account_sid.clone(),
        auth: Auth::AuthToken(SecretString::from(args.auth_token.clone())),
        timeout: Duration::from_millis(args.twilio_timeout_ms),
    })?;
    let campaign_id = format!("cmp_baseline{:08}", std::process::id());

    eprintln!(
        "baseline {campaign_id}: {n} contacts, {} in flight; load average {}",
        args.concurrency,
        loadavg()
    );
    // The loop's own peak RSS should not include building and inserting the contact list:
    // reset this process's high-water mark (Linux >= 4.0: "5" resets VmHWM).
    if let Err(e) = std::fs::write("/proc/self/clear_refs", "5") {
        eprintln!("could not reset the peak RSS ({e}); it includes the contact insertion");
    }
    let load_start = loadavg();
    let cpu_start = cpu_snapshot(&args.watch);
    let started_at = now_rfc3339();
    let t0 = Instant::now();

    // The observer: the same once-a-second reads as the durable run (ledger total, and the
    // item-count aggregation behind the api's progress endpoint).
    let done = Arc::new(tokio::sync::Notify::new());
    let observer = {
        let sim = sim.clone();
        let db = db.clone();
        let campaign_id = campaign_id.clone();
        let done = done.clone();
        let poll = Duration::from_secs_f64(args.poll_s.max(0.1));
        let timeout = Duration::from_secs(args.timeout_s);
        tokio::spawn(async move {
            let mut samples = vec![Sample {
                t: 0.0,
                accepted: 0,
            }];
            let mut progress_ms = Vec::new();
            let mut next = t0 + poll;
            let mut finished = false;
            let mut all_delivered = None;
            let mut last_counts = BTreeMap::new();
            println!(
                "{:>6} {:>9} {:>7} {:>9} {:>9} {:>9} {:>8}",
                "t_s", "accepted", "per_s", "pending", "sent", "delivered", "poll_ms"
            );
            loop {
                tokio::select! {
                    _ = tokio::time::sleep_until(next.into()) => {}
                    _ = done.notified(), if !finished => { finished = true; }
                }
                if finished && all_delivered.is_some() {
                    break;
                }
                if Instant::now() < next {
                    continue;
                }
                next += poll;
                let q = Instant::now();
                let counts = item_counts(&db, &campaign_id).await.unwrap_or_default();
                let q_ms = q.elapsed().as_secs_f64() * 1000.0;
                progress_ms.push(q_ms);
                let accepted = sim.ledger_total().await.unwrap_or_default();
                let t = t0.elapsed().as_secs_f64();
                let prev = samples.last().copied().unwrap_or(Sample {
                    t: 0.0,
                    accepted: 0,
                });
                samples.push(Sample { t, accepted });
                let c = |k: &str| counts.get(k).copied().unwrap_or_default();
                println!(
                    "{:>6.1} {:>9} {:>7.0} {:>9} {:>9} {:>9} {:>8.0}",
                    t,
                    accepted,
                    (accepted.saturating_sub(prev.accepted)) as f64 / (t - prev.t),
                    c("pending"),
                    c("sent"),
                    c("delivered"),
                    q_ms
                );
                if c("delivered") == n as i64 && all_delivered.is_none() {
                    all_delivered = Some(t);
                }
                last_counts = counts;
                if (finished && all_delivered.is_some()) || t0.elapsed() > timeout {
                    break;
                }
            }
            (samples, progress_ms, all_delivered, last_counts)
        })
    };

    // 1. Items from the contact list, in one streaming call.
    let deadline = Instant::now() + Duration::from_secs(24 * 3600);
    let (_, _, listed) = store
        .materialize_items(&campaign_id, &list_id, None, deadline)
        .await?;
    if !listed {
        bail!("materialisation does not end");
    }
    let materialize_s = t0.elapsed().as_secs_f64();

    // 2. The loop: every item, `concurrency` at a time, send then record.
    let outcomes = Arc::new(Outcomes::default());
    let items = db
        .collection::<CampaignItemDoc>("campaign_items")
        .find(doc! { "campaign_id": &campaign_id, "status": item_status::PENDING })
        .sort(doc! { "_id": 1 })
        // Pages of the size of a durable batch, not whatever the server sends at once.
        .batch_size(u32::try_from(BATCH)?)
        .await?
        .map_err(anyhow::Error::from);
    let sender = Sender {
        twilio,
        from: args.from.clone(),
        callback_base: base_url.clone(),
        outcomes: outcomes.clone(),
    };
    let concurrency = args.concurrency.max(1);
    match args.writes {
        Writes::Plain => {
            let items_coll = db.collection::<CampaignItemDoc>("campaign_items");
            items
                .map_ok(|item| {
                    let sender = &sender;
                    let items_coll = &items_coll;
                    async move {
                        let update = match sender.send(&item).await {
                            Ok(sid) => doc! { "$set": {
                                "status": item_status::SENT,
                                "status_rank": item_status::rank(item_status::SENT),
                                "message_sid": sid,
                                "attempts": 1,
                                "updated_at": DateTime::now(),
                            } },
                            Err(reason) => doc! { "$set": {
                                "status": item_status::FAILED,
                                "status_rank": item_status::rank(item_status::FAILED),
                                "reason": reason,
                                "attempts": 1,
                                "updated_at": DateTime::now(),
                            } },
                        };
                        // A callback may already have moved the item further: never backwards.
                        items_coll
                            .update_one(
                                doc! { "_id": &item.id, "status_rank": { "$lt": item_status::rank(item_status::SENT) } },
                                update,
                            )
                            .await?;
                        Ok::<_, anyhow::Error>(())
                    }
                })
                .try_buffer_unordered(concurrency)
                .try_collect::<()>()
                .await
                .context("the send loop")?;
        }
        Writes::Durable => {
            let mut batches = std::pin::pin!(items.try_chunks(BATCH));
            while let Some(batch) = batches.try_next().await.map_err(|e| e.1)? {
                // Per batch, as send_batch does: suppressions, then the intent in one write.
                let phones: Vec<String> = batch.iter().map(|i| i.phone.clone()).collect();
                let suppressed = store.suppressed_among(&phones).await?;
                let batch: Vec<CampaignItemDoc> = batch
                    .into_iter()
                    .filter(|i| !suppressed.contains(&i.phone))
                    .collect();
                let ids: Vec<String> = batch.iter().map(|i| i.id.clone()).collect();
                store.begin_item_sends(&ids, None).await?;
                // Outcomes recorded as send_batch records them: accepted sends grouped by the
                // store's writer, failures one by one.
                let writer = OutcomeWriter::start(&store);
                let sent = futures::stream::iter(batch.into_iter().map(|item| {
                    let sender = &sender;
                    let store = &store;
                    let writer = &writer;
                    let campaign_id = &campaign_id;
                    async move {
                        let execution = |outcome: &str| ExecutionDoc {
                            campaign_id: campaign_id.clone(),
                            item_id: item.id.clone(),
                            attempt: 1,
                            at: DateTime::now(),
                            outcome: outcome.to_owned(),
                            error_code: None,
                        };
                        match sender.send(&item).await {
                            Ok(sid) => {
                                writer
                                    .push(execution("accepted"), Some((item.id.clone(), sid)))
                                    .await?;
                            }
                            Err(reason) => {
                                store
                                    .finish_item(&item.id, item_status::FAILED, None, &reason)
                                    .await?;
                                writer.push(execution("rejected"), None).await?;
                            }
                        }
                        Ok::<_, anyhow::Error>(())
                    }
                }))
                .buffer_unordered(concurrency)
                .try_collect::<()>()
                .await
                .context("the send loop");
                writer.finish().await?;
                sent?;
            }
        }
    }
    let wall_s = t0.elapsed().as_secs_f64();
    let cpu_end = cpu_snapshot(&args.watch);
    done.notify_one();
    let (samples, progress_ms, all_delivered, last_counts) = observer.await?;
    let (processes, machine) = process_figures(&args.watch, &cpu_start, &cpu_end, load_start);

    let mut verification = sim.verify(&phones).await?;
    verification.items_by_status = last_counts;
    let mut settings: BTreeMap<String, String> = args
        .settings
        .iter()
        .filter_map(|s| s.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    settings.insert("concurrency".to_owned(), args.concurrency.to_string());
    settings.insert(
        "writes".to_owned(),
        format!("{:?}", args.writes).to_lowercase(),
    );
    settings.insert(
        "baseline_materialize_s".to_owned(),
        format!("{materialize_s:.1}"),
    );
    settings.insert(
        "baseline_outcomes".to_owned(),
        format!(
            "accepted {}, rejected {}, transient {}",
            outcomes.accepted.load(Ordering::Relaxed),
            outcomes.rejected.load(Ordering::Relaxed),
            outcomes.transient.load(Ordering::Relaxed)
        ),
    );
    let mean = if progress_ms.is_empty() {
        f64::NAN
    } else {
        progress_ms.iter().sum::<f64>() / progress_ms.len() as f64
    };
    let result = RunResult {
        mode: match args.writes {
            Writes::Plain => "baseline".to_owned(),
            Writes::Durable => "loop+durable-writes".to_owned(),
        },
        contacts: n as u64,
        started_at,
        wall_s,
        all_delivered_s: all_delivered,
        rates: rates(&samples, n as u64),
        samples,
        processes,
        machine,
        temporal: None,
        verification,
        progress_ms_mean: mean,
        progress_ms_max: progress_ms.iter().copied().fold(0.0, f64::max),
        settings,
        rss: Vec::new(),
    };
    write_result(&args.out, &result)?;
    println!(
        "baseline: {n} contacts in {wall_s:.1} s (materialise {materialize_s:.1} s), \
         {:.0} msgs/s in the middle 80%; exactly once: {}",
        result.rates.middle80_per_s,
        if result.verification.exactly_once() {
            "yes"
        } else {
            "NO"
        }
    );
    if !result.verification.exactly_once() {
        bail!("not exactly once: {:?}", result.verification);
    }
    Ok(())
}
