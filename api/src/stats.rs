//! `GET /api/stats?days=1|7|30`: the dashboard's figures for today (UTC) or the last 7 or 30
//! days, from [`MongoStore::stats`](voice_agent_store::MongoStore::stats) (the daily counters:
//! at most 30 small documents), kept for [`FRESH_FOR`]; and [`keep_counters`], which keeps
//! those counters exact (see `voice_agent_store::stats`).

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use mongodb::bson::DateTime;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use voice_agent_store::MongoStore;
use voice_agent_store::stats::{Stats, Tally};

use crate::AppState;
use crate::campaigns::HttpError;
use crate::grpc::ApiError;

/// How long an answer is served again before it is computed anew.
pub const FRESH_FOR: Duration = Duration::from_secs(15);

/// `GET /api/stats` query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct StatsQuery {
    /// 1 (today, UTC), 7 or 30 (default 7): the window ends now and starts at midnight UTC.
    #[param(minimum = 1, maximum = 30)]
    days: Option<u32>,
}

/// Counts on one day.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DayCounts {
    /// `YYYY-MM-DD`, UTC.
    day: String,
    counts: BTreeMap<String, i64>,
}

/// Counts over the window and per day (every day of the window, empty days included).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TallyView {
    total: BTreeMap<String, i64>,
    by_day: Vec<DayCounts>,
}

/// The dashboard's figures.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct StatsView {
    days: u32,
    /// Start of the window, RFC 3339.
    since: String,
    /// Outbound messages (single sends, agent and person replies) by status.
    outbound: TallyView,
    /// Inbound messages by channel.
    inbound: TallyView,
    /// Items of the campaigns created in the window, by status.
    campaign_items: BTreeMap<String, i64>,
    /// Call attempts by outcome.
    calls: TallyView,
    /// Delivered among outbound messages and campaign items that reached a final delivery
    /// status (delivered, read, undelivered, failed); `null` when none did.
    delivery_rate: Option<f64>,
    /// Calls answered by a person among finished call attempts; `null` when none finished.
    answer_rate: Option<f64>,
    /// When this answer was computed, RFC 3339.
    computed_at: String,
}

/// Days whose counters are kept exact: the longest window.
const KEPT_DAYS: u32 = 30;
/// A day with counted writes since its last recount is recounted once it has had none for
/// this long (a crash between a write and its count left it short meanwhile).
const RECOUNT_QUIET: Duration = Duration::from_secs(600);
/// How often the quiet days are looked for.
const CHECK_EVERY: Duration = Duration::from_secs(60);

/// Keeps the dashboard's daily counters exact, until `shutdown`: first recounts the window's
/// days never recounted (data from before the counters), then, every [`CHECK_EVERY`], the
/// days quiet for [`RECOUNT_QUIET`] since counted writes. Every api process runs it; a recount
/// is idempotent, so two at once only cost twice.
pub async fn keep_counters(store: MongoStore, shutdown: CancellationToken) {
    let mut rebuilt = false;
    loop {
        let today = chrono::Utc::now().date_naive();
        let (store, rebuild) = (&store, !rebuilt);
        let work = async move {
            if rebuild {
                let r = store.rebuild_stats(today, KEPT_DAYS).await?;
                if r.recounted + r.busy > 0 {
                    tracing::info!(
                        recounted = r.recounted,
                        busy = r.busy,
                        "dashboard counters rebuilt for the days never recounted"
                    );
                }
            }
            store
                .recount_quiet_stats_days(today, KEPT_DAYS, RECOUNT_QUIET)
                .await
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            r = work => match r {
                Ok(n) => {
                    rebuilt = true;
                    if n > 0 {
                        tracing::debug!(days = n, "dashboard counters recounted");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot recount the dashboard counters; retrying"),
            },
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(CHECK_EVERY) => {}
        }
    }
}

/// `/api/stats`.
pub fn routes() -> Router<AppState> {
    Router::new().route("/api/stats", get(http_stats))
}

type Cache = Mutex<BTreeMap<u32, (Instant, StatsView)>>;

fn cache() -> &'static Cache {
    static CACHE: OnceLock<Cache> = OnceLock::new();
    CACHE.get_or_init(Cache::default)
}

#[utoipa::path(
    get,
    path = "/api/stats",
    tag = "dashboard",
    params(StatsQuery),
    responses(
        (status = 200, description = "Messages, campaign items and calls by outcome and by day", body = StatsView),
        (status = 400, description = "days is not 1, 7 or 30", body = crate::openapi::ErrorBody),
        (status = 409, description = "The read took too long", body = crate::openapi::ErrorBody)
    )
)]
async fn http_stats(
    State(state): State<AppState>,
    Query(q): Query<StatsQuery>,
) -> Result<Json<StatsView>, HttpError> {
    let days = q.days.unwrap_or(7);
    if ![1, 7, 30].contains(&days) {
        return Err(ApiError::InvalidArgument {
            field: "days",
            reason: "1, 7 or 30".to_owned(),
        }
        .into());
    }
    if let Some((at, view)) = cache().lock().expect("not poisoned").get(&days)
        && at.elapsed() < FRESH_FOR
    {
        return Ok(Json(view.clone()));
    }
    let now = chrono::Utc::now();
    let first_day = now.date_naive() - chrono::Days::new(u64::from(days - 1));
    let since = first_day.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc();
    let stats = state
        .store
        .stats(DateTime::from_millis(since.timestamp_millis()))
        .await
        .map_err(|e| match e {
            voice_agent_store::StoreError::SearchTimedOut => ApiError::FailedPrecondition(
                "the figures took too long to compute; try a shorter window".to_owned(),
            ),
            e => ApiError::Unavailable(e.into()),
        })?;
    let day_names: Vec<String> = (0..days)
        .map(|i| (first_day + chrono::Days::new(u64::from(i))).to_string())
        .collect();
    let view = view(
        days,
        since.to_rfc3339(),
        now.to_rfc3339(),
        &day_names,
        stats,
    );
    cache()
        .lock()
        .expect("not poisoned")
        .insert(days, (Instant::now(), view.clone()));
    Ok(Json(view))
}

fn tally(t: Tally, days: &[String]) -> TallyView {
    let mut by_day = t.by_day;
    TallyView {
        total: t.total,
        by_day: days
            .iter()
            .map(|d| DayCounts {
                day: d.clone(),
                counts: by_day.remove(d).unwrap_or_default(),
            })
            .collect(),
    }
}

fn rate(hits: i64, all: i64) -> Option<f64> {
    (all > 0).then(|| hits as f64 / all as f64)
}

fn view(days: u32, since: String, now: String, day_names: &[String], s: Stats) -> StatsView {
    let get = |m: &BTreeMap<String, i64>, k: &str| m.get(k).copied().unwrap_or(0);
    let delivered = get(&s.outbound.total, "delivered")
        + get(&s.outbound.total, "read")
        + get(&s.campaign_items, "delivered")
        + get(&s.campaign_items, "read");
    let not = get(&s.outbound.total, "undelivered")
        + get(&s.outbound.total, "failed")
        + get(&s.campaign_items, "undelivered")
        + get(&s.campaign_items, "failed");
    let answered = get(&s.calls.total, "human") + get(&s.calls.total, "completed");
    let finished: i64 = s
        .calls
        .total
        .iter()
        .filter(|(k, _)| k.as_str() != "in_progress")
        .map(|(_, n)| n)
        .sum();
    StatsView {
        days,
        since,
        delivery_rate: rate(delivered, delivered + not),
        answer_rate: rate(answered, finished),
        outbound: tally(s.outbound, day_names),
        inbound: tally(s.inbound, day_names),
        campaign_items: s.campaign_items,
        calls: tally(s.calls, day_names),
        computed_at: now,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_count_only_final_outcomes_and_every_day_is_listed() {
        let mut s = Stats::default();
        s.outbound.total = [("delivered", 6), ("failed", 1), ("sent", 5)]
            .map(|(k, n)| (k.to_owned(), n))
            .into();
        s.campaign_items = [("delivered", 2), ("undelivered", 1)]
            .map(|(k, n)| (k.to_owned(), n))
            .into();
        s.calls.total = [("human", 3), ("busy", 1), ("in_progress", 4)]
            .map(|(k, n)| (k.to_owned(), n))
            .into();
        s.calls
            .by_day
            .insert("2026-12-02".to_owned(), [("human".to_owned(), 3)].into());
        let days = ["2026-12-01".to_owned(), "2026-12-02".to_owned()];
        let v = view(2, String::new(), String::new(), &days, s);
        assert_eq!(v.delivery_rate, Some(0.8));
        assert_eq!(v.answer_rate, Some(0.75));
        assert_eq!(v.calls.by_day.len(), 2);
        assert!(v.calls.by_day[0].counts.is_empty());
        assert_eq!(v.calls.by_day[1].counts["human"], 3);
        assert_eq!(
            view(1, String::new(), String::new(), &[], Stats::default()).delivery_rate,
            None
        );
    }
}
