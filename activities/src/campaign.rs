//! Campaign activities: materialise a campaign's items, and send them in batches.
//!
//! A batch is the unit of Temporal work (the brief's "work per contact far below one action"):
//! one activity pages up to a few thousand open items from MongoDB, records the intent of every
//! send (`sending`) before calling the provider, sends them concurrently at the campaign's rate,
//! and records each outcome. Accepted sends, the hot path, are recorded in groups by a writer
//! task ([`voice_agent_store::OutcomeWriter`]). A retried batch (after a crash) skips items
//! already accepted and reconciles items left `sending` with the provider before sending them
//! again.
//!
//! Only one batch of a campaign runs at a time (the workflow awaits each), so the rate limit,
//! enforced inside the batch, holds however many workers there are.

// `#[activities]` generates an undocumented public constant per activity.
#![allow(missing_docs)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use futures::StreamExt;
use mongodb::bson::DateTime;
use serde::{Deserialize, Serialize};
use temporalio_macros::activities;
use temporalio_sdk::ApplicationFailure;
use temporalio_sdk::activities::{ActivityContext, ActivityError};
use tokio::time::Instant;
use tracing::{debug, info, warn};
use voice_agent_domain::{Channel, PhoneNumber};
use voice_agent_store::{
    CampaignDoc, CampaignItemDoc, ExecutionDoc, MongoStore, OutcomeWriter, campaign_status,
    item_status,
};

use crate::channel::{ChannelError, ChannelRegistry, MessageChannel, OutboundSend, SentProbe};
use crate::sender::{SenderLimits, SlotError, SlotPacer};
use crate::template::render;
use crate::window;

/// Sends in flight at once within a batch.
const SEND_CONCURRENCY: usize = 64;
/// How long one materialisation call copies contacts before it returns its cursor: one query
/// per call (see `MongoStore::materialize_items`), well inside the call's 120 s timeout.
const MATERIALIZE_FOR: Duration = Duration::from_secs(45);
/// Twilio's "too many requests" code: the request was refused, nothing was sent.
const TOO_MANY_REQUESTS: u32 = 20429;
/// How far back before the first attempt a reconciliation looks, for clock skew.
const RECONCILE_SKEW: chrono::Duration = chrono::Duration::seconds(120);
/// A batch renews its lease on the campaign (and heartbeats) this often.
const LEASE_RENEW_EVERY: Duration = Duration::from_secs(2);
/// How long a send may start after the lease was last renewed, on top of the provider's
/// request timeout: the lease lasts this plus the timeout, so every send a holder starts is over
/// (answered or timed out) before another attempt can take the lease.
const LEASE_SEND_WINDOW: Duration = Duration::from_secs(10);
/// How long a batch may spend sending when its sender's limit, not the campaign's rate, sets
/// the pace: well inside the batch's 600 s start-to-close timeout.
const BATCH_SENDING_BUDGET: Duration = Duration::from_secs(120);
/// Slowest pace a rate may set: one message (or call) in this long.
pub const MAX_SEND_INTERVAL: Duration = Duration::from_secs(1_000);
/// Lowest positive rate, per second: [`MAX_SEND_INTERVAL`]'s.
pub const MIN_RATE_PER_SECOND: f64 = 0.001;
/// Failure type of a campaign that no longer exists: retrying cannot help.
pub const CAMPAIGN_GONE: &str = "CampaignGone";

/// The failure of an activity whose campaign no longer exists: not retried.
fn campaign_gone(id: &str) -> ActivityError {
    ActivityError::application(
        ApplicationFailure::builder(anyhow::anyhow!("campaign {id} does not exist"))
            .type_name(CAMPAIGN_GONE.to_owned())
            .non_retryable(true)
            .build(),
    )
}

/// The time between two sends at `rate_per_second` (`None`: as fast as the provider allows).
/// Rates below [`MIN_RATE_PER_SECOND`] (the API refuses them) pace at [`MAX_SEND_INTERVAL`]
/// instead of overflowing.
pub fn send_interval(rate_per_second: f64) -> Option<Duration> {
    if !rate_per_second.is_finite() || rate_per_second <= 0.0 {
        return None;
    }
    Some(
        Duration::try_from_secs_f64(1.0 / rate_per_second)
            .map_or(MAX_SEND_INTERVAL, |d| d.min(MAX_SEND_INTERVAL)),
    )
}

/// Input of [`CampaignActivities::materialize`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaterializeInput {
    /// Campaign.
    pub campaign_id: String,
    /// Last contact id copied by the previous call.
    pub after: Option<String>,
}

/// Output of [`CampaignActivities::materialize`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaterializeOutput {
    /// Cursor for the next call.
    pub after: Option<String>,
    /// Contacts read by this call.
    pub read: u64,
    /// No contacts left; `total` is set.
    pub done: bool,
    /// Items of the campaign, once done.
    pub total: i64,
}

/// Input of [`CampaignActivities::send_batch`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchInput {
    /// Campaign.
    pub campaign_id: String,
    /// Last item id of the previous batch in this pass.
    pub after: Option<String>,
    /// Items to take.
    pub limit: i64,
    /// Messages per second (0 = unlimited).
    pub rate_per_second: f64,
    /// The batch's number over the campaign's life, from 1 (0: not numbered, from a workflow
    /// older than the field). Items it sends or skips carry it, so that a retry of the batch
    /// can count what its earlier attempts finished.
    #[serde(default)]
    pub batch: u64,
}

/// What a batch did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchOutput {
    /// Cursor for the next batch; `None` when this pass has reached the end.
    pub after: Option<String>,
    /// Items looked at.
    pub processed: u64,
    /// Accepted by the provider in this batch.
    pub accepted: u64,
    /// Found already accepted (a retry after a crash).
    pub reconciled: u64,
    /// Failed for good.
    pub failed: u64,
    /// Skipped (opted out, invalid number).
    pub skipped: u64,
    /// Transient failures put back for a later pass.
    pub retry_later: u64,
    /// Outside their sending window now; left for a later pass.
    pub deferred: u64,
    /// Seconds until the earliest deferred item's window opens.
    pub next_window_in_secs: Option<u64>,
}

/// Input of [`CampaignActivities::next_call_items`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallItemsInput {
    /// Campaign.
    pub campaign_id: String,
    /// Last item id of the previous page in this pass.
    pub after: Option<String>,
    /// Items to take.
    pub limit: i64,
}

/// A contact to call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallItem {
    /// The campaign item.
    pub item_id: String,
    /// E.164 number.
    pub phone: String,
    /// The campaign's template rendered for this contact, said to answering machines.
    pub voicemail: Option<String>,
    /// The contact's IANA time zone, when known (for the calling window of retries).
    #[serde(default)]
    pub time_zone: Option<String>,
}

/// A page of contacts to call, screened like a messaging batch.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallItemsOutput {
    /// To call now (marked `sending`).
    pub items: Vec<CallItem>,
    /// Cursor for the next page; `None` at the end of the pass.
    pub after: Option<String>,
    /// Items looked at.
    pub processed: u64,
    /// Skipped (opted out, invalid number, past the window before the end).
    pub skipped: u64,
    /// Outside their calling window now; left for a later pass.
    pub deferred: u64,
    /// Seconds until the earliest deferred item's window opens.
    pub next_window_in_secs: Option<u64>,
}

/// Input of [`CampaignActivities::settle_calls`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettleCallsInput {
    /// Campaign.
    pub campaign_id: String,
    /// Items whose calls the campaign counts in flight.
    pub item_ids: Vec<String>,
}

/// A voice campaign item's call that has ended, and its outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettledCall {
    /// The campaign item.
    pub item_id: String,
    /// The call's outcome (`human`, `busy`, `failed`, …).
    pub outcome: String,
}

/// The workflow id of a voice campaign item's call.
pub fn call_workflow_id(item_id: &str) -> String {
    format!("call-{}", item_id.replace(':', "-"))
}

/// The call outcome an item's final status stands for (the inverse of
/// `VoiceActivities::finish_call_item`).
fn call_outcome_of(status: &str) -> &'static str {
    match status {
        item_status::ANSWERED => "human",
        item_status::VOICEMAIL_LEFT => "voicemail_left",
        item_status::MACHINE => "machine",
        item_status::BUSY => "busy",
        item_status::NO_ANSWER => "no_answer",
        item_status::CANCELLED => "canceled",
        item_status::SKIPPED => "opted_out",
        _ => "failed",
    }
}

/// Campaign activities with their dependencies.
pub struct CampaignActivities {
    store: MongoStore,
    channels: ChannelRegistry,
    public_base_url: url::Url,
    default_region: String,
    limits: SenderLimits,
}

impl CampaignActivities {
    /// Builds the activities.
    pub fn new(
        store: MongoStore,
        channels: ChannelRegistry,
        public_base_url: url::Url,
        default_region: String,
    ) -> Self {
        Self {
            store,
            channels,
            public_base_url,
            default_region,
            limits: SenderLimits::unlimited(),
        }
    }

    /// Sends batches within each sender's limit, shared with other campaigns and single sends.
    pub fn with_sender_limits(mut self, limits: SenderLimits) -> Self {
        self.limits = limits;
        self
    }

    fn callback_url(&self, item_id: &str) -> String {
        let mut url = self.public_base_url.clone();
        url.set_path("/twilio/status");
        url.query_pairs_mut().clear().append_pair("item", item_id);
        url.to_string()
    }

    async fn campaign(&self, id: &str) -> Result<CampaignDoc, ActivityError> {
        self.store
            .get_campaign(id)
            .await?
            .ok_or_else(|| campaign_gone(id))
    }
}

/// Why an item was not sent at all because of the sending window.
const OUTSIDE_WINDOW: &str = "outside the sending window until the campaign's end";

/// Why an item was not sent at all because the campaign's end had passed.
const PAST_END: &str = "the campaign's end had passed";

/// Why a WhatsApp item outside its window was not sent.
const NO_WHATSAPP_TEMPLATE: &str =
    "outside the WhatsApp 24-hour session window, and the campaign has no template (content_sid)";

/// What an item sends.
enum Content {
    /// The campaign's text template, rendered.
    Text,
    /// A WhatsApp content template with its variables as Twilio's JSON object string.
    Template { sid: String, variables: String },
}

/// Renders the content template's variables for one contact, as the JSON string Twilio takes.
fn template_variables<'a>(
    vars: impl Iterator<Item = (&'a String, &'a String)>,
    item: &CampaignItemDoc,
) -> String {
    let rendered: serde_json::Map<String, serde_json::Value> = vars
        .map(|(k, v)| {
            (
                k.clone(),
                serde_json::Value::String(render(v, &item.variables)),
            )
        })
        .collect();
    serde_json::Value::Object(rendered).to_string()
}

/// The `campaign_executions` record of one attempt.
fn execution(
    campaign: &CampaignDoc,
    item: &CampaignItemDoc,
    outcome: &ItemOutcome,
    label: &str,
) -> ExecutionDoc {
    let error_code = match outcome {
        ItemOutcome::Rejected(e) | ItemOutcome::Transient(e) => e.code.map(i64::from),
        _ => None,
    };
    ExecutionDoc {
        campaign_id: campaign.id.clone(),
        item_id: item.id.clone(),
        attempt: item.attempts + 1,
        at: DateTime::now(),
        outcome: label.to_owned(),
        error_code,
    }
}

/// The outcome label of an attempt whose record was lost, read from the item it finished: a
/// stored SID means the provider accepted it (learned afterwards, hence `reconciled`).
fn lost_outcome(item: &CampaignItemDoc) -> &'static str {
    if item.message_sid.is_some() {
        "reconciled"
    } else if item.status == item_status::SKIPPED {
        "skipped"
    } else if item
        .reason
        .as_deref()
        .is_some_and(|r| r.starts_with("gave up"))
    {
        "gave_up"
    } else {
        "rejected"
    }
}

/// The result of one item's send.
enum ItemOutcome {
    Accepted {
        sid: String,
        reconciled: bool,
    },
    Rejected(ChannelError),
    Transient(ChannelError),
    Skipped(&'static str),
    /// Not sent: this attempt lost its lease on the campaign (or was cancelled) before the
    /// send would have started. The item stays `sending` for the attempt that holds the lease.
    NotSent,
}

#[activities]
impl CampaignActivities {
    /// Copies one page of the campaign's contact list into `campaign_items` (idempotent).
    #[activity]
    pub async fn materialize(
        self: Arc<Self>,
        _ctx: ActivityContext,
        input: MaterializeInput,
    ) -> Result<MaterializeOutput, ActivityError> {
        let campaign = self.campaign(&input.campaign_id).await?;
        let (read, last, done) = self
            .store
            .materialize_items(
                &campaign.id,
                &campaign.list_id,
                input.after.as_deref(),
                std::time::Instant::now() + MATERIALIZE_FOR,
            )
            .await?;
        if done {
            let total = self.store.set_campaign_total(&campaign.id).await?;
            return Ok(MaterializeOutput {
                after: last,
                read: read as u64,
                done: true,
                total,
            });
        }
        Ok(MaterializeOutput {
            after: last,
            read: read as u64,
            done: false,
            total: 0,
        })
    }

    /// Sets the campaign's status in MongoDB (the read model of the dashboard and API).
    #[activity]
    pub async fn set_status(
        self: Arc<Self>,
        _ctx: ActivityContext,
        input: (String, String),
    ) -> Result<(), ActivityError> {
        let (id, status) = input;
        self.store.set_campaign_status(&id, &status, &[]).await?;
        Ok(())
    }

    /// Marks every item not yet sent `cancelled`.
    #[activity]
    pub async fn cancel_open_items(
        self: Arc<Self>,
        _ctx: ActivityContext,
        campaign_id: String,
    ) -> Result<u64, ActivityError> {
        let n = self.store.cancel_open_items(&campaign_id).await?;
        self.store
            .set_campaign_status(&campaign_id, campaign_status::CANCELLED, &[])
            .await?;
        Ok(n)
    }

    /// The next page of contacts of a voice campaign to call: opted-out and invalid numbers
    /// are skipped, contacts outside their calling window are deferred (or skipped when the
    /// window will not open before the campaign ends), the rest are marked `sending` and
    /// returned with their voicemail text. The calls themselves are child workflows.
    #[activity]
    pub async fn next_call_items(
        self: Arc<Self>,
        _ctx: ActivityContext,
        input: CallItemsInput,
    ) -> Result<CallItemsOutput, ActivityError> {
        let campaign = self.campaign(&input.campaign_id).await?;
        let (items, after) = self
            .store
            .next_open_items(&campaign, input.after.as_deref(), input.limit)
            .await?;
        let mut out = CallItemsOutput {
            after,
            processed: items.len() as u64,
            ..Default::default()
        };
        if items.is_empty() {
            return Ok(out);
        }
        let screen = Screen::new(&self.store, &campaign, &items, &self.default_region).await?;
        let mut skipped = Vec::new();
        for item in items {
            let phone = match screen.check(&item) {
                Screened::Go(phone) => phone,
                Screened::Skip(reason) => {
                    skipped.push((item, reason));
                    continue;
                }
                Screened::Defer(secs) => {
                    out.deferred += 1;
                    out.next_window_in_secs = earliest(out.next_window_in_secs, secs);
                    continue;
                }
            };
            let voicemail = render(&campaign.template, &item.variables);
            out.items.push(CallItem {
                item_id: item.id.clone(),
                phone: phone.as_str().to_owned(),
                voicemail: (!voicemail.trim().is_empty()).then_some(voicemail),
                time_zone: item.time_zone.clone(),
            });
        }
        for (item, reason) in &skipped {
            self.store
                .finish_item(&item.id, item_status::SKIPPED, None, reason)
                .await?;
        }
        out.skipped = skipped.len() as u64;
        let ids: Vec<String> = out.items.iter().map(|i| i.item_id.clone()).collect();
        self.store.begin_item_sends(&ids, None).await?;
        Ok(out)
    }

    /// A voice campaign's check on the calls it counts in flight: each call whose workflow
    /// has closed (or never started) is returned with its outcome, so the campaign stops
    /// waiting for it. A call that closed without finishing its item (its last write gave up,
    /// it was terminated or timed out) has its item marked `failed` here. Calls still running
    /// are left alone.
    #[activity]
    pub async fn settle_calls(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: SettleCallsInput,
    ) -> Result<Vec<SettledCall>, ActivityError> {
        use temporalio_client::{
            UntypedWorkflow, WorkflowDescribeOptions, WorkflowExecutionStatus,
            errors::WorkflowInteractionError,
        };
        let client = ctx.client();
        let mut settled = Vec::new();
        for item_id in input.item_ids {
            let handle = client.get_workflow_handle::<UntypedWorkflow>(call_workflow_id(&item_id));
            let ended_as = match handle.describe(WorkflowDescribeOptions::default()).await {
                Ok(d) => match d.status() {
                    WorkflowExecutionStatus::Running
                    | WorkflowExecutionStatus::ContinuedAsNew
                    | WorkflowExecutionStatus::Unspecified => continue,
                    WorkflowExecutionStatus::Completed => "completed",
                    WorkflowExecutionStatus::Failed => "failed",
                    WorkflowExecutionStatus::Canceled => "canceled",
                    WorkflowExecutionStatus::Terminated => "terminated",
                    WorkflowExecutionStatus::TimedOut => "timed out",
                    _ => "closed",
                },
                Err(WorkflowInteractionError::NotFound(_)) => "never started",
                // One call that cannot be looked at now must not hold up the others (or the
                // campaign, which waits for this check): the next check tries it again.
                Err(e) => {
                    warn!(campaign_id = %input.campaign_id, item = %item_id, error = %e, "could not look up a call; trying again at the next check");
                    continue;
                }
            };
            let Some(item) = self.store.get_item(&item_id).await? else {
                // Nothing to finish; the campaign must still stop waiting for it.
                settled.push(SettledCall {
                    item_id,
                    outcome: "failed".to_owned(),
                });
                continue;
            };
            let outcome = if item.status_rank >= item_status::rank(item_status::FAILED) {
                call_outcome_of(&item.status)
            } else {
                let reason = format!("the call's workflow ended without an outcome ({ended_as})");
                self.store
                    .finish_item(&item_id, item_status::FAILED, None, &reason)
                    .await?;
                warn!(campaign_id = %input.campaign_id, item = %item_id, ended_as, "call settled by the campaign");
                "failed"
            };
            settled.push(SettledCall {
                item_id,
                outcome: outcome.to_owned(),
            });
        }
        Ok(settled)
    }

    /// Sends one batch of open items. See the module docs.
    #[activity]
    pub async fn send_batch(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: BatchInput,
    ) -> Result<BatchOutput, ActivityError> {
        let campaign = self.campaign(&input.campaign_id).await?;
        // Everything below, the page read included, happens under the campaign's lease, so an
        // earlier attempt that Temporal gave up on cannot be sending the same items.
        let provider = self
            .channels
            .get(None)
            .ok_or_else(|| anyhow::anyhow!("no message provider is configured"))?
            .clone();
        let lease = BatchLeaseHold::acquire(
            &self.store,
            &ctx,
            &campaign.id,
            provider.request_timeout() + LEASE_SEND_WINDOW,
        )
        .await?;
        let result = self
            .send_batch_held(&ctx, &campaign, input, provider, &lease)
            .await;
        lease.release(&self.store).await;
        result
    }
}

impl CampaignActivities {
    async fn send_batch_held(
        &self,
        ctx: &ActivityContext,
        campaign: &CampaignDoc,
        input: BatchInput,
        provider: Arc<dyn MessageChannel>,
        lease: &BatchLeaseHold,
    ) -> Result<BatchOutput, ActivityError> {
        let channel = match campaign.channel.as_str() {
            "whatsapp" => Channel::Whatsapp,
            _ => Channel::Sms,
        };
        let pacer = self
            .limits
            .message_sender(
                channel,
                campaign.from.as_deref(),
                campaign.messaging_service_sid.as_deref(),
            )
            .map(|sender| SlotPacer::new(self.store.clone(), sender, input.rate_per_second));
        // The workflow sizes a batch by the campaign's rate; a slower sender would stretch it
        // past its timeout, so the page is cut to what the sender lets out in that time.
        let limit = match &pacer {
            Some(p) => input.limit.min(p.sends_within(BATCH_SENDING_BUDGET)),
            None => input.limit,
        };
        let (items, after) = self
            .store
            .next_open_items(campaign, input.after.as_deref(), limit)
            .await?;
        let batch = i64::try_from(input.batch).ok().filter(|n| *n > 0);
        let mut out = BatchOutput::default();
        if ctx.info().attempt > 1 {
            // Where this attempt's page ends: the next cursor for campaigns paged by `seq`
            // (exclusive), the last item for older ones (inclusive).
            let up_to = if campaign.indexed_items {
                after.as_deref()
            } else {
                items.last().map(|i| i.id.as_str())
            };
            self.restore_lost_executions(campaign, input.after.as_deref(), up_to, limit)
                .await?;
            if let Some(batch) = batch {
                let range = (input.after.as_deref(), up_to);
                out = self
                    .count_earlier_attempts(campaign, range, &items, batch, limit)
                    .await?;
            }
        }
        out.after = after;
        out.processed += items.len() as u64;
        if items.is_empty() {
            return Ok(out);
        }

        let screen = Screen::new(&self.store, campaign, &items, &self.default_region).await?;
        let phones: Vec<String> = items.iter().map(|i| i.phone.clone()).collect();

        // WhatsApp: free text only inside the person's 24-hour session window.
        let open_sessions = match (channel, campaign.from.as_deref()) {
            (Channel::Whatsapp, Some(from)) => {
                self.store.open_whatsapp_sessions(from, &phones).await?
            }
            _ => Default::default(),
        };

        let mut to_send: Vec<(CampaignItemDoc, PhoneNumber, Content)> =
            Vec::with_capacity(items.len());
        let mut outcomes: Vec<(CampaignItemDoc, ItemOutcome)> = Vec::new();
        for item in items {
            let phone = match screen.check(&item) {
                Screened::Go(phone) => phone,
                Screened::Skip(reason) => {
                    outcomes.push((item, ItemOutcome::Skipped(reason)));
                    continue;
                }
                Screened::Defer(secs) => {
                    out.deferred += 1;
                    out.next_window_in_secs = earliest(out.next_window_in_secs, secs);
                    continue;
                }
            };
            let content = match channel {
                Channel::Sms => Content::Text,
                Channel::Whatsapp if open_sessions.contains(&item.phone) => Content::Text,
                Channel::Whatsapp => match &campaign.content_sid {
                    Some(sid) => Content::Template {
                        sid: sid.clone(),
                        variables: template_variables(campaign.content_variables.iter(), &item),
                    },
                    None => {
                        outcomes.push((item, ItemOutcome::Skipped(NO_WHATSAPP_TEMPLATE)));
                        continue;
                    }
                },
            };
            to_send.push((item, phone, content));
        }
        // The intent, for the whole page in one write, before any provider call.
        let ids: Vec<String> = to_send.iter().map(|(i, _, _)| i.id.clone()).collect();
        self.store.begin_item_sends(&ids, batch).await?;

        let started = Instant::now();
        let interval = send_interval(input.rate_per_second);
        let writer = OutcomeWriter::start(&self.store);
        let mut sends = Box::pin(
            futures::stream::iter(to_send.into_iter().enumerate().map(
                |(n, (item, phone, content))| {
                    let provider = provider.clone();
                    let this = &self;
                    let writer = &writer;
                    let pacer = pacer.as_ref();
                    async move {
                        if let Some(step) = interval {
                            let offset = step
                                .checked_mul(u32::try_from(n).unwrap_or(u32::MAX))
                                .unwrap_or(Duration::MAX);
                            if let Some(at) = started.checked_add(offset) {
                                tokio::time::sleep_until(at).await;
                            }
                        }
                        let outcome = this
                            .send_item(
                                provider.as_ref(),
                                campaign,
                                channel,
                                &item,
                                &phone,
                                content,
                                lease,
                                pacer,
                            )
                            .await;
                        lease.progress();
                        let label = match &outcome {
                            ItemOutcome::NotSent => "not_sent",
                            // The hot path: grouped with other acceptances by the writer.
                            ItemOutcome::Accepted { sid, reconciled } => {
                                let label = if *reconciled {
                                    "reconciled"
                                } else {
                                    "accepted"
                                };
                                writer
                                    .push(
                                        execution(campaign, &item, &outcome, label),
                                        Some((item.id.clone(), sid.clone())),
                                    )
                                    .await?;
                                label
                            }
                            _ => {
                                let label = this
                                    .record_outcome(campaign, &item, &outcome, batch)
                                    .await?;
                                writer
                                    .push(execution(campaign, &item, &outcome, label), None)
                                    .await?;
                                label
                            }
                        };
                        Ok::<_, voice_agent_store::StoreError>((item, outcome, label))
                    }
                },
            ))
            .buffer_unordered(SEND_CONCURRENCY),
        );
        let mut done = Vec::with_capacity(outcomes.len() + ids.len());
        let mut skipped_executions = Vec::with_capacity(outcomes.len());
        for (item, outcome) in outcomes {
            let label = self
                .record_outcome(campaign, &item, &outcome, batch)
                .await?;
            skipped_executions.push(execution(campaign, &item, &outcome, label));
            done.push((item, outcome, label));
            lease.progress();
        }
        self.store.record_executions(&skipped_executions).await?;
        let mut failure = None;
        while let Some(next) = sends.next().await {
            match next {
                Ok(result) => done.push(result),
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        drop(sends);
        // Everything accepted is stored before the batch reports it; the writer's own error
        // (the cause) wins over the "writer stopped" a send saw.
        writer.finish().await?;
        if let Some(e) = failure {
            return Err(e.into());
        }

        let not_sent = done
            .iter()
            .filter(|(_, o, _)| matches!(o, ItemOutcome::NotSent))
            .count();
        if not_sent > 0 {
            // The lease or the activity is gone: whoever holds the lease now owns these items
            // (they stay `sending`, so it reconciles them first). This attempt's result is not
            // used by anyone.
            return Err(anyhow::anyhow!(
                "batch stopped: {not_sent} items left unsent for the attempt that holds the campaign now"
            )
            .into());
        }
        for (_, outcome, label) in &done {
            match outcome {
                ItemOutcome::Accepted {
                    reconciled: true, ..
                } => out.reconciled += 1,
                ItemOutcome::Accepted { .. } => out.accepted += 1,
                ItemOutcome::Rejected(_) => out.failed += 1,
                ItemOutcome::Transient(_) if *label == "gave_up" => out.failed += 1,
                ItemOutcome::Transient(_) => out.retry_later += 1,
                ItemOutcome::Skipped(_) => out.skipped += 1,
                ItemOutcome::NotSent => {}
            }
        }
        info!(
            campaign_id = %campaign.id,
            processed = out.processed,
            accepted = out.accepted,
            reconciled = out.reconciled,
            failed = out.failed,
            skipped = out.skipped,
            retry_later = out.retry_later,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "campaign batch"
        );
        Ok(out)
    }
}

/// One batch attempt's hold on its campaign: the store's batch lease, renewed by a task that
/// also heartbeats the activity through every phase of the batch.
///
/// Temporal may start a batch's retry while the attempt it gave up on is still running (a
/// heartbeat that did not arrive in time, a worker cut off from the server). Both would read
/// the same page and send it. So a batch first takes the campaign's lease: free, it takes it at
/// once; held by another attempt, it waits until the holder has not renewed it for a whole lease
/// period, then takes it over. A holder starts a send only while its last renewal is younger
/// than [`LEASE_SEND_WINDOW`], and the lease lasts that plus the provider's request timeout,
/// so every send the old holder started is over before the new holder reads the page (and
/// reconciles what it finds `sending`). The wait is measured on the waiter's own monotonic
/// clock, so clocks on different machines need not agree.
struct BatchLeaseHold {
    campaign_id: String,
    holder: String,
    /// Until when a send may start (moved on by each renewal; in the past once lost).
    sends_until: tokio::sync::watch::Receiver<Instant>,
    /// Items done, reported in heartbeats.
    done: Arc<AtomicU64>,
    /// Raised by the keeper when the activity is cancelled.
    cancelled: Arc<AtomicBool>,
    keeper: tokio::task::JoinHandle<()>,
}

impl BatchLeaseHold {
    /// Takes the campaign's lease for this activity attempt (waiting out an earlier holder)
    /// and starts renewing it.
    async fn acquire(
        store: &MongoStore,
        ctx: &ActivityContext,
        campaign_id: &str,
        lease: Duration,
    ) -> Result<Self, ActivityError> {
        let info = ctx.info();
        let holder = format!(
            "{}/{}/{}",
            info.workflow_run_id.as_deref().unwrap_or_default(),
            info.activity_id,
            info.attempt
        );
        // A send may start this long after a renewal began; the rest of the lease is the time
        // the request may take.
        let window = LEASE_SEND_WINDOW.min(lease);
        let taken_at = loop {
            if ctx.is_cancelled() {
                return Err(ActivityError::cancelled());
            }
            let t0 = Instant::now();
            if store.claim_batch_lease(campaign_id, &holder).await? {
                break t0;
            }
            let Some(seen) = store.batch_lease(campaign_id).await? else {
                return Err(campaign_gone(campaign_id));
            };
            if seen.holder.is_none() {
                // Released between the two reads: claim it again.
                continue;
            }
            warn!(
                campaign_id,
                "another attempt holds the campaign's batch lease; waiting for it to lapse"
            );
            let until = Instant::now() + lease;
            while Instant::now() < until {
                if ctx.is_cancelled() {
                    return Err(ActivityError::cancelled());
                }
                let _ = ctx.record_heartbeat(0_u64).await;
                tokio::time::sleep(LEASE_RENEW_EVERY.min(until - Instant::now())).await;
            }
            let t0 = Instant::now();
            if store
                .take_over_batch_lease(campaign_id, &holder, &seen)
                .await?
            {
                info!(
                    campaign_id,
                    "took over the batch lease of an attempt that stopped"
                );
                break t0;
            }
        };
        let (tx, sends_until) = tokio::sync::watch::channel(taken_at + window);
        let done = Arc::new(AtomicU64::new(0));
        let cancelled = Arc::new(AtomicBool::new(false));
        let keeper = tokio::spawn({
            let store = store.clone();
            let ctx = ctx.clone();
            let campaign_id = campaign_id.to_owned();
            let holder = holder.clone();
            let done = done.clone();
            let cancelled = cancelled.clone();
            async move {
                loop {
                    tokio::select! {
                        () = tokio::time::sleep(LEASE_RENEW_EVERY) => {}
                        () = ctx.cancelled() => {
                            cancelled.store(true, Ordering::Relaxed);
                            return;
                        }
                    }
                    let _ = ctx.record_heartbeat(done.load(Ordering::Relaxed)).await;
                    let t0 = Instant::now();
                    match store.renew_batch_lease(&campaign_id, &holder).await {
                        Ok(true) => {
                            let _ = tx.send(t0 + window);
                        }
                        Ok(false) => {
                            warn!(%campaign_id, "batch lease taken over; this attempt stops sending");
                            let _ = tx.send(Instant::now());
                            return;
                        }
                        // Not renewed: the lease lapses by itself unless a later renewal works.
                        Err(e) => debug!(%campaign_id, error = %e, "batch lease renewal failed"),
                    }
                }
            }
        });
        Ok(Self {
            campaign_id: campaign_id.to_owned(),
            holder,
            sends_until,
            done,
            cancelled,
            keeper,
        })
    }

    /// Whether a send may start now.
    fn may_send(&self) -> bool {
        !self.cancelled.load(Ordering::Relaxed) && Instant::now() < *self.sends_until.borrow()
    }

    /// One more item done (for the heartbeat's progress).
    fn progress(&self) {
        self.done.fetch_add(1, Ordering::Relaxed);
    }

    /// Stops renewing and gives the lease up; a lease not given up lapses by itself.
    async fn release(self, store: &MongoStore) {
        if let Err(e) = store
            .release_batch_lease(&self.campaign_id, &self.holder)
            .await
        {
            debug!(campaign_id = %self.campaign_id, error = %e, "batch lease release failed");
        }
    }
}

impl Drop for BatchLeaseHold {
    /// However the batch ends (a panic included), the lease is no longer renewed: an abandoned
    /// lease lapses by itself, one renewed for ever would stop the campaign.
    fn drop(&mut self) {
        self.keeper.abort();
    }
}

/// What may happen to an item now, by the campaign's rules.
enum Screened {
    /// Send or call it.
    Go(PhoneNumber),
    /// Not now and not later, for this reason.
    Skip(&'static str),
    /// Outside its window; it opens in this many seconds (if known).
    Defer(Option<u64>),
}

/// The checks made at the moment of sending or calling, not when the campaign was made:
/// opt-outs, a valid number, the campaign's end (nothing goes out at or after it, e.g. after a
/// pause that outlasted it), the sending window in the recipient's local time (skipped when it
/// will not open before the campaign's end).
struct Screen {
    suppressed: std::collections::HashSet<String>,
    window: Option<window::Window>,
    end_at: Option<chrono::DateTime<chrono::Utc>>,
    now: chrono::DateTime<chrono::Utc>,
    region: String,
}

impl Screen {
    async fn new(
        store: &MongoStore,
        campaign: &CampaignDoc,
        items: &[CampaignItemDoc],
        region: &str,
    ) -> Result<Self, voice_agent_store::StoreError> {
        let phones: Vec<String> = items.iter().map(|i| i.phone.clone()).collect();
        Ok(Self {
            suppressed: store.suppressed_among(&phones).await?,
            window: match (campaign.window_start_minute, campaign.window_end_minute) {
                (Some(start), Some(end)) => Some(window::Window {
                    start: u32::try_from(start).unwrap_or(0),
                    end: u32::try_from(end).unwrap_or(0),
                }),
                _ => None,
            },
            end_at: campaign
                .end_at
                .map(|d| chrono::DateTime::<chrono::Utc>::from(d.to_system_time())),
            now: chrono::Utc::now(),
            region: region.to_owned(),
        })
    }

    fn check(&self, item: &CampaignItemDoc) -> Screened {
        if self.suppressed.contains(&item.phone) {
            return Screened::Skip("opted out");
        }
        let Ok(phone) = PhoneNumber::parse(&item.phone, &self.region) else {
            return Screened::Skip("invalid number");
        };
        if self.end_at.is_some_and(|end| self.now >= end) {
            return Screened::Skip(PAST_END);
        }
        let Some(window) = self.window else {
            return Screened::Go(phone);
        };
        let zones = window::zones(item.time_zone.as_deref(), phone.region().as_deref());
        if window::is_open(window, &zones, self.now) {
            return Screened::Go(phone);
        }
        let next = window::next_open(window, &zones, self.now);
        match (next, self.end_at) {
            (None, _) => Screened::Skip(OUTSIDE_WINDOW),
            (Some(next), Some(end)) if next >= end => Screened::Skip(OUTSIDE_WINDOW),
            (Some(next), _) => Screened::Defer(Some((next - self.now).num_seconds().max(0) as u64)),
        }
    }
}

/// The sooner of two optional waits.
fn earliest(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

impl CampaignActivities {
    /// A retried batch's first attempt may have died after the provider accepted some sends and
    /// before their records were written (they wait in the [`OutcomeWriter`]'s queue). Items
    /// still `sending` are reconciled by this attempt; those a status callback has moved on
    /// since are not open any more, so their attempt records are written here, from the item.
    /// The first attempt's page lies between the cursor and the end of this attempt's page.
    async fn restore_lost_executions(
        &self,
        campaign: &CampaignDoc,
        after: Option<&str>,
        up_to: Option<&str>,
        limit: i64,
    ) -> Result<(), voice_agent_store::StoreError> {
        let lost = self
            .store
            .items_missing_executions(campaign, after, up_to, limit.saturating_mul(10))
            .await?;
        if lost.is_empty() {
            return Ok(());
        }
        let now = DateTime::now();
        let records: Vec<ExecutionDoc> = lost
            .iter()
            .map(|item| ExecutionDoc {
                campaign_id: campaign.id.clone(),
                item_id: item.id.clone(),
                attempt: item.attempts,
                at: now,
                outcome: lost_outcome(item).to_owned(),
                error_code: item.error_code,
            })
            .collect();
        self.store.record_executions(&records).await?;
        info!(
            campaign_id = %campaign.id,
            restored = records.len(),
            "attempt records restored after a retried batch"
        );
        Ok(())
    }

    /// What the earlier attempts of a retried batch finished in its range: they sent, failed or
    /// skipped those items, and their result never reached the workflow (the retry's page no
    /// longer holds them). Items they left `sending` are not here: the retry reconciles them.
    /// Neither is any item of the retry's `page`: one that a paused attempt finished just after
    /// the page was read is counted by the retry's own outcome, once.
    async fn count_earlier_attempts(
        &self,
        campaign: &CampaignDoc,
        (after, up_to): (Option<&str>, Option<&str>),
        page: &[CampaignItemDoc],
        batch: i64,
        limit: i64,
    ) -> Result<BatchOutput, voice_agent_store::StoreError> {
        let in_page: std::collections::HashSet<&str> = page.iter().map(|i| i.id.as_str()).collect();
        let mut earlier = self
            .store
            .items_finished_by_batch(campaign, after, up_to, batch, limit.saturating_mul(10))
            .await?;
        earlier.retain(|i| !in_page.contains(i.id.as_str()));
        let mut out = BatchOutput {
            processed: earlier.len() as u64,
            ..BatchOutput::default()
        };
        for item in &earlier {
            if item.message_sid.is_some() {
                out.reconciled += 1;
            } else if item.status == item_status::SKIPPED {
                out.skipped += 1;
            } else {
                out.failed += 1;
            }
        }
        if !earlier.is_empty() {
            info!(
                campaign_id = %campaign.id,
                batch,
                reconciled = out.reconciled,
                failed = out.failed,
                skipped = out.skipped,
                "counted what earlier attempts of a retried batch finished"
            );
        }
        Ok(out)
    }

    /// Writes one item's outcome to MongoDB and names it for `campaign_executions`.
    async fn record_outcome(
        &self,
        campaign: &CampaignDoc,
        item: &CampaignItemDoc,
        outcome: &ItemOutcome,
        batch: Option<i64>,
    ) -> Result<&'static str, voice_agent_store::StoreError> {
        let attempt = item.attempts + 1;
        Ok(match outcome {
            ItemOutcome::Accepted { sid, reconciled } => {
                self.store.record_item_accepted(&item.id, sid).await?;
                if *reconciled {
                    "reconciled"
                } else {
                    "accepted"
                }
            }
            // Outcomes of this attempt's send are fenced by its send count: a paused attempt
            // that wakes after another took the lease over changes nothing.
            ItemOutcome::Rejected(e) => {
                self.store
                    .finish_item_of_attempt(
                        &item.id,
                        attempt,
                        item_status::FAILED,
                        e.code.map(i64::from),
                        &e.message,
                    )
                    .await?;
                "rejected"
            }
            ItemOutcome::Transient(e) if attempt >= campaign.max_attempts => {
                let reason = format!("gave up after {attempt} attempts: {}", e.message);
                self.store
                    .finish_item_of_attempt(
                        &item.id,
                        attempt,
                        item_status::FAILED,
                        e.code.map(i64::from),
                        &reason,
                    )
                    .await?;
                "gave_up"
            }
            ItemOutcome::Transient(e) => {
                // A 429 was refused for sure: the item can go back to `pending`. Anything else
                // (5xx, timeout, lost connection) may have been accepted, so the item stays
                // `sending` and its next attempt reconciles first.
                if e.code == Some(TOO_MANY_REQUESTS) {
                    self.store.release_item(&item.id, attempt).await?;
                }
                "transient_error"
            }
            ItemOutcome::Skipped(reason) => {
                self.store.skip_item(&item.id, reason, batch).await?;
                "skipped"
            }
            ItemOutcome::NotSent => "not_sent",
        })
    }

    #[allow(clippy::too_many_arguments)]
    async fn send_item(
        &self,
        provider: &dyn MessageChannel,
        campaign: &CampaignDoc,
        channel: Channel,
        item: &CampaignItemDoc,
        phone: &PhoneNumber,
        content: Content,
        lease: &BatchLeaseHold,
        pacer: Option<&SlotPacer>,
    ) -> ItemOutcome {
        let body = render(&campaign.template, &item.variables);
        let (content_sid, content_variables) = match content {
            Content::Text => (None, None),
            Content::Template { sid, variables } => (Some(sid), Some(variables)),
        };
        // An item left `sending` by an earlier attempt may already be at the provider.
        if item.status == item_status::SENDING
            && let Some(first) = item.send_started_at
        {
            if let Some(sid) = &item.message_sid {
                return ItemOutcome::Accepted {
                    sid: sid.clone(),
                    reconciled: true,
                };
            }
            let probe = SentProbe {
                to: phone.as_str().to_owned(),
                from: campaign.from.clone(),
                body: body.clone(),
                channel,
                not_before: chrono::DateTime::<chrono::Utc>::from(first.to_system_time())
                    - RECONCILE_SKEW,
            };
            match provider.find_sent(&probe).await {
                Ok(Some(found)) => {
                    return ItemOutcome::Accepted {
                        sid: found.provider_id,
                        reconciled: true,
                    };
                }
                Ok(None) => {}
                // Never send without knowing: try this item again later.
                Err(e) => {
                    return ItemOutcome::Transient(ChannelError {
                        retryable: true,
                        ..e
                    });
                }
            }
        }
        let send = OutboundSend {
            message_id: item.id.clone(),
            channel,
            to: phone.as_str().to_owned(),
            from: campaign.from.clone(),
            messaging_service_sid: campaign.messaging_service_sid.clone(),
            body,
            status_callback: Some(self.callback_url(&item.id)),
            content_sid,
            content_variables,
        };
        // The sender's slot, shared with everything else sending from it; nothing was sent yet,
        // so a failed reservation puts the item back like a 429.
        if let Some(pacer) = pacer {
            match pacer.next(&|| lease.may_send()).await {
                Ok(()) => {}
                Err(SlotError::Stopped) => return ItemOutcome::NotSent,
                Err(e) => {
                    return ItemOutcome::Transient(ChannelError {
                        code: Some(TOO_MANY_REQUESTS),
                        message: format!("no send slot: {e}"),
                        retryable: true,
                    });
                }
            }
        }
        // Checked last, right before the request: a send starts only while this attempt's lease
        // has long enough to run that the request is over before anyone else may take it.
        if !lease.may_send() {
            return ItemOutcome::NotSent;
        }
        match provider.send(&send).await {
            Ok(accept) => ItemOutcome::Accepted {
                sid: accept.provider_id,
                reconciled: false,
            },
            Err(e) if e.retryable => {
                debug!(item = %item.id, code = ?e.code, "transient send failure");
                ItemOutcome::Transient(e)
            }
            Err(e) => ItemOutcome::Rejected(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(phone: &str) -> CampaignItemDoc {
        CampaignItemDoc {
            id: "cmp:ct".to_owned(),
            campaign_id: "cmp".to_owned(),
            contact_id: "ct".to_owned(),
            seq: None,
            seq_key: None,
            phone: phone.to_owned(),
            variables: Default::default(),
            time_zone: Some("America/New_York".to_owned()),
            status: item_status::PENDING.to_owned(),
            status_rank: 0,
            message_sid: None,
            error_code: None,
            reason: None,
            attempts: 0,
            send_started_at: None,
            batch: None,
            updated_at: DateTime::now(),
        }
    }

    fn screen(window: Option<(u32, u32)>, now: &str, end_at: Option<&str>) -> Screen {
        let at = |t: &str| t.parse::<chrono::DateTime<chrono::Utc>>().unwrap();
        Screen {
            suppressed: ["+14155550199".to_owned()].into(),
            window: window.map(|(start, end)| window::Window { start, end }),
            end_at: end_at.map(at),
            now: at(now),
            region: "US".to_owned(),
        }
    }

    #[test]
    fn nothing_goes_out_at_or_after_the_campaigns_end() {
        // 15:00 in New York, inside a 09:00-17:00 window.
        let now = "2026-11-25T20:00:00Z";
        let open = Some((9 * 60, 17 * 60));
        let go = |s: &Screen| matches!(s.check(&item("+14155550100")), Screened::Go(_));
        let past_end =
            |s: &Screen| matches!(s.check(&item("+14155550100")), Screened::Skip(PAST_END));
        assert!(go(&screen(open, now, Some("2026-11-25T21:00:00Z"))));
        assert!(go(&screen(None, now, None)));
        assert!(past_end(&screen(open, now, Some("2026-11-25T20:00:00Z"))));
        assert!(past_end(&screen(None, now, Some("2026-11-25T19:59:59Z"))));
        // Opt-outs and bad numbers keep their own reasons.
        let s = screen(None, now, Some("2026-11-25T19:00:00Z"));
        assert!(matches!(
            s.check(&item("+14155550199")),
            Screened::Skip("opted out")
        ));
        assert!(matches!(
            s.check(&item("12")),
            Screened::Skip("invalid number")
        ));
    }

    #[test]
    fn a_window_that_opens_only_after_the_end_skips_and_one_before_defers() {
        // 20:00 in New York, after a 09:00-17:00 window; it opens again at 14:00 UTC tomorrow.
        let now = "2026-11-26T01:00:00Z";
        let closed = Some((9 * 60, 17 * 60));
        let s = screen(closed, now, Some("2026-11-26T12:00:00Z"));
        assert!(matches!(
            s.check(&item("+14155550100")),
            Screened::Skip(OUTSIDE_WINDOW)
        ));
        let s = screen(closed, now, Some("2026-11-26T18:00:00Z"));
        assert!(matches!(
            s.check(&item("+14155550100")),
            Screened::Defer(Some(secs)) if secs == 13 * 3600
        ));
    }
}
