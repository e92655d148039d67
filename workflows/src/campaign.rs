//! One workflow per campaign: materialise the items, then send them in batches, one batch
//! activity at a time, with pause, resume, cancel and rate changes as signals and progress as a
//! query. History stays bounded: each batch is a handful of events, and the run continues as
//! new (carrying its cursor and counters) long before the server's limits.

use std::collections::{BTreeMap, BTreeSet};
use std::pin::pin;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use temporalio_common::search_attributes::SearchAttributeKey;
use temporalio_common::{ActivityCloseTimeouts, RetryPolicy};
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{
    ActivityOptions, CancellableFuture, ChildWorkflowOptions, ContinueAsNewOptions,
    ParentClosePolicy, SignalWorkflowOptions, SyncWorkflowContext, WorkflowContext,
    WorkflowContextView, WorkflowIdReusePolicy, WorkflowResult, workflows, workflows::select,
};
use voice_agent_activities::campaign::{
    BatchInput, BatchOutput, CAMPAIGN_GONE, CallItem, CallItemsInput, CampaignActivities,
    MIN_RATE_PER_SECOND, MaterializeInput, SettleCallsInput, call_workflow_id, send_interval,
};
use voice_agent_activities::voice::VoiceActivities;
use voice_agent_store::campaign_status;

use crate::call::{CallInput, CallWindow, CallWorkflow};

/// Search attribute with the campaign id, to find campaigns in the Temporal UI.
pub const CAMPAIGN_ID_ATTR: SearchAttributeKey<String> = SearchAttributeKey::keyword("CampaignId");
/// Search attribute with the channel (`sms`, `whatsapp`).
pub const CAMPAIGN_CHANNEL_ATTR: SearchAttributeKey<String> =
    SearchAttributeKey::keyword("CampaignChannel");
/// Search attribute with the campaign's status, kept current by the workflow.
pub const CAMPAIGN_STATUS_ATTR: SearchAttributeKey<String> =
    SearchAttributeKey::keyword("CampaignStatus");

/// Largest batch; at high rates a batch of this size takes about a second.
pub const MAX_BATCH: i64 = 1_000;
/// At a set rate, a batch holds about this many seconds of sending, so pause and rate changes
/// take effect within it.
const BATCH_SECONDS: f64 = 5.0;
/// Wait between passes that retry transiently failed items.
const RETRY_PASS_DELAY: Duration = Duration::from_secs(5);
/// Longest single wait for a sending window; the pass after it re-checks every item.
const MAX_WINDOW_WAIT_SECS: u64 = 3_600;
/// Continue-as-new after this many history events even if the server has not suggested it.
/// The worker holds a cached run's state (the SDK's per-command state machines) until the run
/// ends: at 1,000,000 contacts its memory rose about 10 MiB over a 3,000-event run and fell
/// back at each continue-as-new. A run of 1,000 events holds what a 100,000-contact campaign's
/// single run holds (about 600 events), so memory no longer depends on the campaign's size.
const MAX_HISTORY_EVENTS: u32 = 1_000;
/// The limit of runs that passed [`MAX_HISTORY_EVENTS`] before [`SHORTER_RUNS_PATCH`].
const MAX_HISTORY_EVENTS_BEFORE_PATCH: u32 = 3_000;
/// Runs continue as new after [`MAX_HISTORY_EVENTS`] instead of 3,000: a run recorded past
/// 1,000 events without it must replay as it ran.
const SHORTER_RUNS_PATCH: &str = "campaign-shorter-runs";
/// Voice: while waiting on its calls, the campaign checks this often for calls whose workflow
/// closed without telling it (terminated, timed out, its last write gave up).
const SETTLE_EVERY: Duration = Duration::from_secs(30);
/// Longest wait between two settle checks while nothing settles.
const MAX_SETTLE_EVERY: Duration = Duration::from_secs(900);
/// Patch id of voice calls tracked by item (settle checks, cancel stops the calls).
const VOICE_CALLS_PATCH: &str = "voice-calls-by-item";
/// Patch id of voice calls started in bursts of a second's worth, one timer a second: a timer
/// of less than a second fires about a second later on the Temporal server (measured: a rate of
/// 50 calls a second dialled one a second), so one timer per call capped every campaign at 1/s.
const VOICE_BURSTS_PATCH: &str = "voice-calls-in-bursts";
/// Patch id of a burst's calls started together, in one workflow task: one start at a time
/// cost a workflow-task round trip each, which held every campaign near 15 calls a second
/// whatever its rate (measured over 6,000 calls at a rate of 100).
const VOICE_STARTS_TOGETHER_PATCH: &str = "voice-calls-started-together";
/// Most calls one workflow task starts. A task of 100 starts kept the campaign's progress query
/// waiting behind it (mean 0.4 s, max 5 s, against 0.06 s one at a time, measured over 6,000
/// calls); twenty keep the task small and still cut the round trips twentyfold.
pub const MAX_STARTS_PER_TASK: usize = 20;
/// The pace of a voice campaign's bursts.
const CALL_TICK: Duration = Duration::from_secs(1);

/// Where the run is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Waiting for the start time.
    #[default]
    Scheduled,
    /// Copying the contact list into items.
    Materializing,
    /// Sending.
    Sending,
    /// Finished: completed or cancelled.
    Done,
}

/// Counters over the campaign's whole life (across continue-as-new).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CampaignCounters {
    /// Items in the campaign.
    pub total: i64,
    /// Items looked at by batches (an item retried in a later pass counts again).
    pub processed: u64,
    /// Accepted by the provider.
    pub accepted: u64,
    /// Found already accepted after a crash.
    pub reconciled: u64,
    /// Failed for good at send time.
    pub failed: u64,
    /// Skipped (opted out, invalid number).
    pub skipped: u64,
    /// Items not sent because the campaign was cancelled.
    pub cancelled: u64,
    /// Transient failures waiting for the next pass.
    pub retry_later: u64,
    /// Items outside their sending window in the current pass.
    pub deferred: u64,
    /// Batches run.
    pub batches: u64,
    /// Voice: calls started.
    #[serde(default)]
    pub calls_started: u64,
    /// Voice: finished calls by outcome (human, voicemail_left, machine, busy, no_answer,
    /// failed).
    #[serde(default)]
    pub outcomes: BTreeMap<String, u64>,
}

/// How a voice campaign calls.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoiceCampaign {
    /// Our number.
    pub from: String,
    /// Agent profile on the calls.
    pub profile: Option<String>,
    /// Dial attempts per contact (busy, no-answer, failed retry).
    pub max_attempts: u32,
    /// Seconds between attempts.
    pub retry_after_secs: u64,
    /// Most calls in flight at once.
    pub max_in_flight: u32,
    /// Calling window opening, minutes after local midnight.
    #[serde(default)]
    pub window_start_minute: Option<u32>,
    /// Calling window closing, minutes after local midnight.
    #[serde(default)]
    pub window_end_minute: Option<u32>,
    /// The campaign's end, Unix ms: no retry is dialled at or after it.
    #[serde(default)]
    pub end_at_ms: Option<i64>,
}

/// A call of a voice campaign finished (signalled by the call's workflow).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallFinished {
    /// The campaign item.
    pub item_id: String,
    /// The call's outcome.
    pub outcome: String,
}

/// The workflow's state, which is also its input: continue-as-new carries it whole.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CampaignRun {
    /// Campaign id (`cmp_…`).
    pub campaign_id: String,
    /// Earliest start, Unix milliseconds.
    pub start_at_ms: Option<i64>,
    /// Messages per second; 0 = as fast as the provider allows.
    pub rate_per_second: f64,
    /// Where the run is.
    pub phase: Phase,
    /// Materialisation cursor (last contact id copied).
    pub materialize_after: Option<String>,
    /// Sending cursor (last item id of the previous batch in this pass).
    pub cursor: Option<String>,
    /// Seconds until the earliest window opens for an item deferred in this pass.
    pub next_window_in_secs: Option<u64>,
    /// Pass over the items (1 = first); later passes retry transient failures.
    pub pass: u32,
    /// Paused by a manager.
    pub paused: bool,
    /// Cancel requested.
    pub cancel_requested: bool,
    /// Counters.
    pub counters: CampaignCounters,
    /// Runs before this one.
    pub generation: u32,
    /// When sending began (workflow time, Unix ms), for rate and finish estimates.
    pub sending_started_ms: Option<i64>,
    /// Voice campaigns: how to call (each contact's call is a child workflow).
    #[serde(default)]
    pub voice: Option<VoiceCampaign>,
    /// Voice: calls started and not finished yet, by count. Runs since calls are tracked by
    /// item ([`Self::calls`]) leave it at 0; it drains the calls of runs from before.
    #[serde(default)]
    pub in_flight: u32,
    /// Voice: items whose call was started and has not ended yet.
    #[serde(default)]
    pub calls: BTreeSet<String>,
    /// Voice: items whose call's end arrived before its start was recorded (both can reach the
    /// campaign in one workflow task, the end first).
    #[serde(default)]
    pub ended_early: BTreeSet<String>,
    /// Voice: calls are counted by item ([`Self::calls`]); runs recorded before that count with
    /// [`Self::in_flight`] alone, and replay that way.
    #[serde(default)]
    pub by_item: bool,
    /// Voice: calls the current one-second tick may still start (fractional rates carry over);
    /// `None` before the first call of runs that start calls in bursts.
    #[serde(default)]
    pub call_allowance: Option<f64>,
}

impl CampaignRun {
    /// A new run for a campaign.
    pub fn new(campaign_id: String, rate_per_second: f64, start_at_ms: Option<i64>) -> Self {
        Self {
            campaign_id,
            rate_per_second,
            start_at_ms,
            pass: 1,
            ..Default::default()
        }
    }

    /// Items per batch at the current rate.
    pub fn batch_size(&self) -> i64 {
        if self.rate_per_second > 0.0 {
            ((self.rate_per_second * BATCH_SECONDS).ceil() as i64).clamp(1, MAX_BATCH)
        } else {
            MAX_BATCH
        }
    }

    /// Voice: calls in flight.
    pub fn calls_in_flight(&self) -> usize {
        self.calls.len() + self.in_flight as usize
    }

    /// Voice: a call workflow was started for `item_id` (or was found already started).
    fn call_started(&mut self, item_id: &str) {
        if !self.ended_early.remove(item_id) {
            self.calls.insert(item_id.to_owned());
        }
    }

    /// Voice: the call of an item ended. Counted once, whichever order start and end arrive in.
    fn call_ended(&mut self, item_id: &str, outcome: &str) {
        if self.calls.remove(item_id) {
        } else if self.in_flight > 0 {
            self.in_flight -= 1;
        } else if !self.ended_early.insert(item_id.to_owned()) {
            return;
        }
        *self
            .counters
            .outcomes
            .entry(outcome.to_owned())
            .or_default() += 1;
    }

    fn absorb(&mut self, out: &BatchOutput) {
        let c = &mut self.counters;
        c.batches += 1;
        c.processed += out.processed;
        c.accepted += out.accepted;
        c.reconciled += out.reconciled;
        c.failed += out.failed;
        c.skipped += out.skipped;
        c.retry_later += out.retry_later;
        c.deferred += out.deferred;
        if let Some(secs) = out.next_window_in_secs {
            self.next_window_in_secs = Some(self.next_window_in_secs.map_or(secs, |s| s.min(secs)));
        }
    }
}

/// A campaign, from start time to its last item.
#[workflow]
pub struct CampaignWorkflow {
    run: CampaignRun,
}

#[workflow_methods]
impl CampaignWorkflow {
    #[init]
    pub fn new(_ctx: &WorkflowContextView, run: CampaignRun) -> Self {
        Self { run }
    }

    #[run]
    pub async fn run(ctx: &mut WorkflowContext<Self>) -> WorkflowResult<CampaignCounters> {
        let id = ctx.state(|s| s.run.campaign_id.clone());

        if ctx.state(|s| s.run.phase) == Phase::Scheduled {
            let start_at = ctx.state(|s| s.run.start_at_ms);
            let now_ms = now_ms(ctx);
            if let Some(start) = start_at
                && start > now_ms
            {
                let wait = Duration::from_millis((start - now_ms) as u64);
                select! {
                    _ = ctx.timer(wait) => {},
                    _ = ctx.wait_condition(|s| s.run.cancel_requested) => {},
                };
            }
            ctx.state_mut(|s| s.run.phase = Phase::Materializing);
            set_status(ctx, &id, campaign_status::STARTING).await?;
        }

        while ctx.state(|s| s.run.phase) == Phase::Materializing {
            if ctx.state(|s| s.run.cancel_requested) {
                return cancel(ctx, &id).await;
            }
            let after = ctx.state(|s| s.run.materialize_after.clone());
            let out = ctx
                .execute_activity(
                    CampaignActivities::materialize,
                    MaterializeInput {
                        campaign_id: id.clone(),
                        after,
                    },
                    activity_options(Duration::from_secs(120)),
                )
                .await?;
            ctx.state_mut(|s| {
                if out.done {
                    s.run.counters.total = out.total;
                    s.run.phase = Phase::Sending;
                } else {
                    s.run.materialize_after = out.after.clone();
                }
            });
            if out.done {
                let now = now_ms(ctx);
                ctx.state_mut(|s| s.run.sending_started_ms = Some(now));
                set_status(ctx, &id, campaign_status::RUNNING).await?;
            }
            maybe_continue_as_new(ctx)?;
        }

        while ctx.state(|s| s.run.phase) == Phase::Sending {
            if ctx.state(|s| s.run.paused && !s.run.cancel_requested) {
                set_status(ctx, &id, campaign_status::PAUSED).await?;
                ctx.wait_condition(|s| !s.run.paused || s.run.cancel_requested)
                    .await?;
                if !ctx.state(|s| s.run.cancel_requested) {
                    set_status(ctx, &id, campaign_status::RUNNING).await?;
                }
            }
            if ctx.state(|s| s.run.cancel_requested) {
                return cancel(ctx, &id).await;
            }
            let out = if let Some(voice) = ctx.state(|s| s.run.voice.clone()) {
                match call_page(ctx, &id, &voice).await? {
                    Some(out) => out,
                    None => return cancel(ctx, &id).await,
                }
            } else {
                let input = ctx.state(|s| BatchInput {
                    campaign_id: id.clone(),
                    after: s.run.cursor.clone(),
                    limit: s.run.batch_size(),
                    rate_per_second: s.run.rate_per_second,
                    batch: s.run.counters.batches + 1,
                });
                ctx.execute_activity(CampaignActivities::send_batch, input, batch_options())
                    .await?
            };
            let end_of_pass = out.after.is_none();
            let next_pass_in = ctx.state_mut(|s| {
                s.run.absorb(&out);
                if !end_of_pass {
                    s.run.cursor = out.after.clone();
                    return None;
                }
                s.run.cursor = None;
                let c = &mut s.run.counters;
                if c.retry_later == 0 && c.deferred == 0 {
                    s.run.phase = Phase::Done;
                    return None;
                }
                // Transient failures retry soon; items outside their window wait for it.
                let delay = if c.deferred > 0 {
                    let secs = s.run.next_window_in_secs.unwrap_or(60);
                    RETRY_PASS_DELAY.max(Duration::from_secs(secs.min(MAX_WINDOW_WAIT_SECS)))
                } else {
                    RETRY_PASS_DELAY
                };
                c.retry_later = 0;
                c.deferred = 0;
                s.run.next_window_in_secs = None;
                s.run.pass += 1;
                Some(delay)
            });
            if let Some(delay) = next_pass_in {
                select! {
                    _ = ctx.timer(delay) => {},
                    _ = ctx.wait_condition(|s| s.run.cancel_requested) => {},
                };
            }
            maybe_continue_as_new(ctx)?;
        }

        // Voice: the campaign is done when its last call is.
        wait_for_calls(ctx, &id, true, |s| {
            s.run.calls_in_flight() == 0 || s.run.cancel_requested
        })
        .await?;
        if ctx.state(|s| s.run.cancel_requested && s.run.voice.is_some()) {
            return cancel(ctx, &id).await;
        }
        set_status(ctx, &id, campaign_status::COMPLETED).await?;
        Ok(ctx.state(|s| s.run.counters.clone()))
    }

    /// A voice campaign's call finished.
    #[signal]
    pub fn call_finished(&mut self, _ctx: &mut SyncWorkflowContext<Self>, done: CallFinished) {
        if self.run.by_item {
            self.run.call_ended(&done.item_id, &done.outcome);
        } else {
            self.run.in_flight = self.run.in_flight.saturating_sub(1);
            *self.run.counters.outcomes.entry(done.outcome).or_default() += 1;
        }
    }

    /// Stops sending after the batch in flight.
    #[signal]
    pub fn pause(&mut self, _ctx: &mut SyncWorkflowContext<Self>) {
        self.run.paused = true;
    }

    /// Continues a paused campaign.
    #[signal]
    pub fn resume(&mut self, _ctx: &mut SyncWorkflowContext<Self>) {
        self.run.paused = false;
    }

    /// Cancels: the batch in flight finishes, every item not yet sent ends `cancelled`.
    #[signal]
    pub fn cancel(&mut self, _ctx: &mut SyncWorkflowContext<Self>) {
        self.run.cancel_requested = true;
    }

    /// Changes the rate from the next batch on.
    #[signal]
    pub fn set_rate(&mut self, _ctx: &mut SyncWorkflowContext<Self>, rate_per_second: f64) {
        // The API refuses other values; a signal sent around it changes nothing.
        if rate_per_second == 0.0
            || (rate_per_second.is_finite() && rate_per_second >= MIN_RATE_PER_SECOND)
        {
            self.run.rate_per_second = rate_per_second;
        }
    }

    /// The run's state: phase, cursor, counters, rate, pause.
    #[query]
    pub fn progress(&self, _ctx: &WorkflowContextView) -> CampaignRun {
        self.run.clone()
    }
}

/// Voice: takes the next page of contacts and starts a call workflow for each, at most
/// `max_in_flight` at a time and at the campaign's calls-per-second. Returns the page as a
/// batch's output, or `None` when the campaign was cancelled meanwhile (contacts taken but not
/// called are marked cancelled).
async fn call_page(
    ctx: &mut WorkflowContext<CampaignWorkflow>,
    id: &str,
    voice: &VoiceCampaign,
) -> WorkflowResult<Option<BatchOutput>> {
    let input = ctx.state(|s| CallItemsInput {
        campaign_id: id.to_owned(),
        after: s.run.cursor.clone(),
        limit: i64::from(voice.max_in_flight.clamp(1, 50)) * 2,
    });
    let page = ctx
        .execute_activity(
            CampaignActivities::next_call_items,
            input,
            activity_options(Duration::from_secs(60)),
        )
        .await?;
    let max_in_flight = voice.max_in_flight.max(1) as usize;
    let bursts = ctx.patched(VOICE_BURSTS_PATCH);
    let together = bursts && ctx.patched(VOICE_STARTS_TOGETHER_PATCH);
    let mut next = 0;
    while next < page.items.len() {
        if bursts {
            let (rate, left) = ctx.state(|s| (s.run.rate_per_second, s.run.call_allowance));
            let (ticks, allowance) = next_call_allowance(left, rate);
            if ticks > 0 {
                ctx.timer(CALL_TICK * ticks).await;
            }
            ctx.state_mut(|s| s.run.call_allowance = Some(allowance));
        }
        wait_for_calls(ctx, id, false, move |s| {
            s.run.cancel_requested || (!s.run.paused && s.run.calls_in_flight() < max_in_flight)
        })
        .await?;
        if ctx.state(|s| s.run.cancel_requested) {
            // Taken for calling but never called: they end cancelled, like unsent items.
            for left in &page.items[next..] {
                ctx.execute_activity(
                    VoiceActivities::finish_call_item,
                    (left.item_id.clone(), "canceled".to_owned()),
                    activity_options(Duration::from_secs(30)),
                )
                .await?;
            }
            return Ok(None);
        }
        let n = if together {
            ctx.state(|s| {
                starts_together(
                    s.run.call_allowance.unwrap_or(1.0),
                    max_in_flight.saturating_sub(s.run.calls_in_flight()),
                    page.items.len() - next,
                )
            })
        } else {
            1
        };
        let burst = &page.items[next..next + n];
        next += n;
        let starts = burst.iter().map(|item| {
            let call_id = call_workflow_id(&item.item_id);
            let options = ChildWorkflowOptions::builder()
                .workflow_id(call_id.clone())
                .parent_close_policy(ParentClosePolicy::Abandon)
                // A contact's call runs once: after a crash the page may be taken again.
                .id_reuse_policy(WorkflowIdReusePolicy::RejectDuplicate)
                .build();
            ctx.start_child_workflow(
                CallWorkflow::run,
                call_input(id, voice, item, call_id),
                options,
            )
        });
        // The SDK's join: `futures::join_all` polls more than 30 futures through wakers of its
        // own, which the workflow runtime fails as nondeterministic.
        let started = workflows::join_all(starts).await;
        // A start refused because the call exists (an item taken again by a later pass while
        // its call goes on) is still a call in flight; one that never started is settled as
        // failed by the next check.
        ctx.state_mut(|s| {
            for (item, started) in burst.iter().zip(&started) {
                if started.is_ok() {
                    s.run.counters.calls_started += 1;
                }
                if s.run.by_item {
                    s.run.call_started(&item.item_id);
                } else if started.is_ok() {
                    s.run.in_flight += 1;
                }
                if bursts && let Some(left) = s.run.call_allowance.as_mut() {
                    *left -= 1.0;
                }
            }
        });
        if !bursts {
            // Calls per second (Twilio's default account limit is 1).
            let rate = ctx.state(|s| s.run.rate_per_second);
            ctx.timer(send_interval(rate).unwrap_or(Duration::from_secs(1)))
                .await;
        }
    }
    Ok(Some(BatchOutput {
        after: page.after,
        processed: page.processed,
        accepted: page.items.len() as u64,
        skipped: page.skipped,
        deferred: page.deferred,
        next_window_in_secs: page.next_window_in_secs,
        ..BatchOutput::default()
    }))
}

/// The call workflow's input for one item of a voice campaign.
fn call_input(id: &str, voice: &VoiceCampaign, item: &CallItem, call_id: String) -> CallInput {
    CallInput {
        call_id,
        direction: "outbound".to_owned(),
        ours: voice.from.clone(),
        theirs: item.phone.clone(),
        profile: voice.profile.clone(),
        voicemail: item.voicemail.clone(),
        machine_detection: true,
        max_attempts: voice.max_attempts,
        retry_after_secs: voice.retry_after_secs,
        ring_timeout_secs: 30,
        campaign_id: Some(id.to_owned()),
        item_id: Some(item.item_id.clone()),
        window: match (voice.window_start_minute, voice.window_end_minute) {
            (Some(start_minute), Some(end_minute)) => Some(CallWindow {
                start_minute,
                end_minute,
                time_zone: item.time_zone.clone(),
            }),
            _ => None,
        },
        not_after_ms: voice.end_at_ms,
        ..CallInput::default()
    }
}

/// How many calls to start together: what the tick still allows (`allowance`, at least one
/// once the tick has been waited for), within the free call slots, the items left and
/// [`MAX_STARTS_PER_TASK`].
fn starts_together(allowance: f64, free: usize, left: usize) -> usize {
    // The same rounding slack as the tick's: 0.1 added ten times is one call.
    let by_rate = (allowance + 1e-9).floor();
    let by_rate = if by_rate >= 1.0 {
        by_rate.min(usize::MAX as f64) as usize
    } else {
        1
    };
    by_rate.min(free.max(1)).min(left).min(MAX_STARTS_PER_TASK)
}

/// Calls a one-second tick may start at `rate` calls per second: 0 (no rate set) is Twilio's
/// default account limit of one a second; a rate under one gives a call every few ticks.
fn calls_per_tick(rate: f64) -> f64 {
    if rate.is_finite() && rate > 0.0 {
        rate.min(f64::from(u16::MAX))
    } else {
        1.0
    }
}

/// Before starting a call: the ticks to wait first (one timer however slow the rate, so
/// 0.01/s waits 100 ticks in one) and the calls the tick then still allows, this one included.
/// `left` is what the last tick left (`None` before the first call).
fn next_call_allowance(left: Option<f64>, rate: f64) -> (u32, f64) {
    // Rounding (0.1 added ten times) must not cost a whole extra tick.
    const EPSILON: f64 = 1e-9;
    let per_tick = calls_per_tick(rate);
    match left {
        None => (0, per_tick.max(1.0)),
        Some(left) if left < 1.0 - EPSILON => {
            let ticks = ((1.0 - EPSILON - left) / per_tick)
                .ceil()
                .clamp(1.0, 86_400.0);
            (ticks as u32, left + per_tick * ticks)
        }
        Some(left) => (0, left),
    }
}

async fn cancel(
    ctx: &mut WorkflowContext<CampaignWorkflow>,
    id: &str,
) -> WorkflowResult<CampaignCounters> {
    let n = ctx
        .execute_activity(
            CampaignActivities::cancel_open_items,
            id.to_owned(),
            activity_options(Duration::from_secs(120)),
        )
        .await?;
    ctx.state_mut(|s| {
        s.run.counters.cancelled += n;
        s.run.phase = Phase::Done;
    });
    // Voice: calls in flight were started with an abandon policy, so nothing else stops them.
    // Each is told to dial no more: one not answered yet ends `cancelled`, one in progress goes
    // on to its natural end. The campaign then waits for them, so its counters hold every call.
    let calls = ctx.state(|s| s.run.calls.clone());
    if !calls.is_empty() && ctx.patched(VOICE_CALLS_PATCH) {
        for item_id in &calls {
            // A call that has just ended cannot be signalled; the wait below settles it.
            let _ = ctx
                .external_workflow(call_workflow_id(item_id), None)
                .signal(
                    CallWorkflow::stop_dialling,
                    (),
                    SignalWorkflowOptions::default(),
                )
                .await;
        }
        wait_for_calls(ctx, id, true, |s| s.run.calls_in_flight() == 0).await?;
    }
    Ok(ctx.state(|s| s.run.counters.clone()))
}

/// Voice: waits until `ready` holds. The calls' workflows report their end by signal; a call
/// that cannot (terminated, timed out, its last write gave up) would leave the campaign waiting
/// for ever, so every [`SETTLE_EVERY`] the campaign asks Temporal which of its calls have
/// closed and settles those. Where the run has nothing else in hand (`may_continue`: not in
/// the middle of a page), a long wait continues-as-new to keep its history bounded.
async fn wait_for_calls(
    ctx: &mut WorkflowContext<CampaignWorkflow>,
    id: &str,
    may_continue: bool,
    ready: impl Fn(&CampaignWorkflow) -> bool + Copy,
) -> WorkflowResult<()> {
    // Runs recorded before calls were tracked by item wait as they did.
    if !ctx.patched(VOICE_CALLS_PATCH) {
        ctx.wait_condition(ready).await?;
        return Ok(());
    }
    ctx.state_mut(|s| s.run.by_item = true);
    let mut every = SETTLE_EVERY;
    loop {
        // With no call counted by item only a signal can change anything: no timer, so a long
        // pause adds nothing to the history.
        if ctx.state(|s| s.run.calls.is_empty()) {
            ctx.wait_condition(ready).await?;
            return Ok(());
        }
        let ready_now = {
            let mut tick = pin!(ctx.timer(every));
            let ready_now = select! {
                _ = ctx.wait_condition(ready) => true,
                _ = tick.as_mut() => false,
            };
            if ready_now {
                // A pending timer would stay in history; cancel it before the next round.
                tick.cancel();
            }
            ready_now
        };
        if ready_now {
            return Ok(());
        }
        let item_ids: Vec<String> = ctx.state(|s| s.run.calls.iter().cloned().collect());
        let settled = ctx
            .execute_activity(
                CampaignActivities::settle_calls,
                SettleCallsInput {
                    campaign_id: id.to_owned(),
                    item_ids,
                },
                activity_options(Duration::from_secs(60)),
            )
            .await?;
        // Calls waiting hours (a retry held for its calling window) are checked less and less
        // often, so the history of a long wait grows slowly; a settled call resets the pace.
        every = if settled.is_empty() {
            (every * 2).min(MAX_SETTLE_EVERY)
        } else {
            SETTLE_EVERY
        };
        ctx.state_mut(|s| {
            for call in settled {
                // Only calls still counted: one whose signal arrived meanwhile is done already.
                if s.run.calls.contains(&call.item_id) {
                    s.run.call_ended(&call.item_id, &call.outcome);
                }
            }
        });
        if may_continue {
            maybe_continue_as_new(ctx)?;
        }
    }
}

async fn set_status(
    ctx: &mut WorkflowContext<CampaignWorkflow>,
    id: &str,
    status: &str,
) -> WorkflowResult<()> {
    // Only where the starter set the attributes, i.e. the server has them registered: upserting
    // an unknown attribute would fail every workflow task.
    if ctx.search_attributes().get(&CAMPAIGN_STATUS_ATTR).is_some() {
        ctx.upsert_search_attributes([CAMPAIGN_STATUS_ATTR.value_set(status.to_owned())]);
    }
    ctx.execute_activity(
        CampaignActivities::set_status,
        (id.to_owned(), status.to_owned()),
        activity_options(Duration::from_secs(30)),
    )
    .await?;
    Ok(())
}

fn maybe_continue_as_new(ctx: &mut WorkflowContext<CampaignWorkflow>) -> WorkflowResult<()> {
    let events = ctx.history_length();
    // Asked only past the new limit, so shorter runs record no marker.
    let past_limit = events > MAX_HISTORY_EVENTS
        && (ctx.patched(SHORTER_RUNS_PATCH) || events > MAX_HISTORY_EVENTS_BEFORE_PATCH);
    if ctx.continue_as_new_suggested() || past_limit {
        let mut next = ctx.state(|s| s.run.clone());
        next.generation += 1;
        ctx.continue_as_new(next, ContinueAsNewOptions::default())?;
    }
    Ok(())
}

fn now_ms(ctx: &WorkflowContext<CampaignWorkflow>) -> i64 {
    ctx.workflow_time()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// Retried until it works, except when the campaign no longer exists.
fn retry_forever() -> RetryPolicy {
    RetryPolicy::builder()
        .initial_interval(Duration::from_secs(1))
        .backoff_coefficient(2.0)
        .maximum_interval(Duration::from_secs(30))
        .non_retryable_error_types([CAMPAIGN_GONE])
        .build()
}

fn activity_options(start_to_close: Duration) -> ActivityOptions {
    ActivityOptions::with_start_to_close_timeout(start_to_close)
        .retry_policy(retry_forever())
        .build()
}

/// A batch heartbeats every 2 s through every phase (the worker sends them on at least that
/// often); a dead worker is noticed after the heartbeat timeout, not the whole start-to-close.
/// The timeout leaves room for ten heartbeats, so a slow store does not time a live batch out;
/// if it does, the batch lease keeps the retry from sending alongside it.
fn batch_options() -> ActivityOptions {
    ActivityOptions::with_close_timeouts(ActivityCloseTimeouts::StartToClose(Duration::from_secs(
        600,
    )))
    .heartbeat_timeout(Duration::from_secs(20))
    .retry_policy(retry_forever())
    .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_hold_a_few_seconds_of_sending() {
        let mut run = CampaignRun::new("cmp_x".to_owned(), 0.0, None);
        assert_eq!(run.batch_size(), MAX_BATCH);
        run.rate_per_second = 1.0;
        assert_eq!(run.batch_size(), 5);
        run.rate_per_second = 10_000.0;
        assert_eq!(run.batch_size(), MAX_BATCH);
        run.rate_per_second = 0.01;
        assert_eq!(run.batch_size(), 1);
    }

    /// Calls started in each tick at `rate`, over `ticks` ticks.
    fn starts_per_tick(rate: f64, calls: usize) -> Vec<u32> {
        let mut per_tick = vec![0];
        let mut left = None;
        for _ in 0..calls {
            let (ticks, allowance) = next_call_allowance(left, rate);
            per_tick.extend(std::iter::repeat_n(0, ticks as usize));
            *per_tick.last_mut().unwrap() += 1;
            left = Some(allowance - 1.0);
        }
        per_tick
    }

    #[test]
    fn voice_calls_start_in_bursts_of_a_seconds_worth() {
        // A whole second's calls at once, then one timer: not one timer per call.
        assert_eq!(starts_per_tick(50.0, 120), [50, 50, 20]);
        // A fractional rate is met on average and never exceeded within a tick.
        assert_eq!(starts_per_tick(2.5, 10), [2, 3, 2, 3]);
        // Slower than one a second: one call every five ticks, waited in one timer each.
        assert_eq!(starts_per_tick(0.2, 3), [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1]);
        assert_eq!(next_call_allowance(Some(0.0), 0.2).0, 5);
        assert_eq!(next_call_allowance(Some(0.0), 0.1).0, 10);
        // No rate: Twilio's default one call a second.
        assert_eq!(starts_per_tick(0.0, 3), [1, 1, 1]);
        assert_eq!(starts_per_tick(f64::NAN, 2), [1, 1]);
    }

    /// The groups of calls started together at `rate` with `free` call slots before each group
    /// (as if every call ended before the next group), as the campaign's loop takes them.
    fn groups_started_together(rate: f64, calls: usize, free: usize) -> Vec<usize> {
        let (mut groups, mut left, mut started) = (Vec::new(), None, 0);
        while started < calls {
            let (_, allowance) = next_call_allowance(left, rate);
            let n = starts_together(allowance, free, calls - started);
            groups.push(n);
            started += n;
            left = Some(allowance - n as f64);
        }
        groups
    }

    #[test]
    fn a_ticks_calls_start_together_within_the_rate_and_the_free_slots() {
        // What a tick allows, at most twenty to a workflow task.
        assert_eq!(groups_started_together(15.0, 40, 1_000), [15, 15, 10]);
        assert_eq!(
            groups_started_together(50.0, 120, 1_000),
            [20, 20, 10, 20, 20, 10, 20]
        );
        assert_eq!(groups_started_together(2.5, 10, 1_000), [2, 3, 2, 3]);
        assert_eq!(groups_started_together(0.2, 3, 1_000), [1, 1, 1]);
        // 0.1 ten times is one call, not a call short.
        assert_eq!(groups_started_together(0.1, 2, 1_000), [1, 1]);
        // Never more than the free slots; the rest of the tick follows as slots free.
        assert_eq!(
            groups_started_together(50.0, 60, 8),
            [8, 8, 8, 8, 8, 8, 2, 8, 2]
        );
        // Never nothing: the loop waited for a slot and a tick before asking.
        assert_eq!(starts_together(0.0, 0, 5), 1);
        assert_eq!(starts_together(f64::MAX, usize::MAX, 3), 3);
        assert_eq!(
            starts_together(f64::MAX, usize::MAX, usize::MAX),
            MAX_STARTS_PER_TASK
        );
        assert_eq!(starts_together(f64::NAN, 4, 3), 1);
    }

    #[test]
    fn a_calls_end_is_counted_once_whichever_order_start_and_end_arrive_in() {
        let mut run = CampaignRun::new("cmp_x".to_owned(), 1.0, None);
        // Start, then end.
        run.call_started("cmp_x:a");
        assert_eq!(run.calls_in_flight(), 1);
        run.call_ended("cmp_x:a", "human");
        assert_eq!(run.calls_in_flight(), 0);
        // End first (both in one workflow task: signals are applied first), then start. A count
        // would go 0 -> 0 (saturating) -> 1 and wait for ever.
        run.call_ended("cmp_x:b", "busy");
        run.call_started("cmp_x:b");
        assert_eq!(run.calls_in_flight(), 0);
        assert!(run.ended_early.is_empty());
        // A start found already running (an item taken again by a later pass) is one call.
        run.call_started("cmp_x:c");
        run.call_started("cmp_x:c");
        assert_eq!(run.calls_in_flight(), 1);
        run.call_ended("cmp_x:c", "failed");
        assert_eq!(run.calls_in_flight(), 0);
        assert_eq!(run.counters.outcomes.get("failed"), Some(&1));
        assert_eq!(run.counters.outcomes.get("human"), Some(&1));
        assert_eq!(run.counters.outcomes.get("busy"), Some(&1));
    }

    #[test]
    fn runs_from_before_calls_were_tracked_by_item_drain_their_count() {
        let mut run = CampaignRun::new("cmp_x".to_owned(), 1.0, None);
        run.in_flight = 2;
        run.call_ended("cmp_x:old1", "human");
        assert_eq!(run.calls_in_flight(), 1);
        run.call_ended("cmp_x:old2", "human");
        assert_eq!(run.calls_in_flight(), 0);
    }

    #[test]
    fn every_rate_paces_without_overflow() {
        assert_eq!(send_interval(0.0), None);
        assert_eq!(send_interval(f64::NAN), None);
        assert_eq!(send_interval(2.0), Some(Duration::from_millis(500)));
        for tiny in [1e-300, f64::MIN_POSITIVE, 1e-9] {
            assert_eq!(
                send_interval(tiny),
                Some(voice_agent_activities::campaign::MAX_SEND_INTERVAL)
            );
        }
    }
}
