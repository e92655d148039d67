//! Live updates for the web app over Server-Sent Events, so pages change within a second of
//! the data without each browser polling every list.
//!
//! - `GET /api/events`: `conversations`, `calls`, `messages` and `statuses` events, each time
//!   the latest change of that kind moves (`statuses`: a message's delivery status or a call's
//!   outcome, seen through the dashboard's daily counters, which every such move updates). One
//!   poller per api process reads four index keys a second,
//!   and only while a browser is listening; every stream shares what it reads.
//! - `GET /api/campaigns/{id}/progress/stream`: the campaign's progress (the same JSON as
//!   `/progress`) whenever it changes, until the campaign has ended.
//!
//! Streams end when the api shuts down, and at most [`MAX_STREAMS`] are open at once (503
//! beyond), so they can neither hold the process open nor exhaust it.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::{Stream, StreamExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio_util::sync::CancellationToken;
use voice_agent_store::{LatestChanges, MongoStore};

use crate::AppState;
use crate::campaigns::{Campaigns, HttpError};

/// Most event streams open at once in one api process.
pub const MAX_STREAMS: usize = 256;
/// How often the shared poller and the progress streams look.
const EVERY: Duration = Duration::from_secs(1);

/// The shared state of the live streams.
#[derive(Clone)]
pub struct Live {
    latest: watch::Sender<LatestChanges>,
    permits: Arc<Semaphore>,
    closed: CancellationToken,
}

impl Default for Live {
    fn default() -> Self {
        Self {
            latest: watch::Sender::new(LatestChanges::default()),
            permits: Arc::new(Semaphore::new(MAX_STREAMS)),
            closed: CancellationToken::new(),
        }
    }
}

impl Live {
    /// Polls MongoDB while anyone listens, until `shutdown`; then ends every stream.
    pub async fn run(self, store: MongoStore, shutdown: CancellationToken) {
        // However this ends, the streams end with it.
        let _close = self.closed.clone().drop_guard();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(EVERY) => {}
            }
            if self.latest.receiver_count() == 0 {
                continue;
            }
            // A MongoDB that does not answer must not hold the shutdown.
            let read = tokio::select! {
                _ = shutdown.cancelled() => break,
                r = tokio::time::timeout(EVERY * 5, store.latest_changes()) => r,
            };
            match read {
                Ok(Ok(now)) => {
                    self.latest.send_if_modified(|old| {
                        let changed = *old != now;
                        *old = now;
                        changed
                    });
                }
                Ok(Err(e)) => tracing::debug!(error = %e, "live updates: MongoDB failed"),
                Err(_) => tracing::debug!("live updates: MongoDB did not answer in time"),
            }
        }
    }

    fn permit(&self) -> Result<OwnedSemaphorePermit, Busy> {
        self.permits.clone().try_acquire_owned().map_err(|_| Busy)
    }
}

/// Every stream slot is taken.
#[derive(Debug)]
struct Busy;

impl IntoResponse for Busy {
    fn into_response(self) -> Response {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            [("retry-after", "5")],
            "too many live streams are open; try again",
        )
            .into_response()
    }
}

/// `/api/events` and `/api/campaigns/{id}/progress/stream`.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/events", get(events))
        .route("/api/campaigns/{id}/progress/stream", get(progress_stream))
}

type EventStream = Sse<
    axum::response::sse::KeepAliveStream<
        std::pin::Pin<Box<dyn Stream<Item = Result<Event, Infallible>> + Send>>,
    >,
>;

/// The kinds whose latest change moved from `old` to `new`, with the new time.
fn moved(old: &LatestChanges, new: &LatestChanges) -> Vec<(&'static str, i64)> {
    [
        ("conversations", old.conversations, new.conversations),
        ("calls", old.calls, new.calls),
        ("messages", old.messages, new.messages),
        ("statuses", old.statuses, new.statuses),
    ]
    .into_iter()
    .filter(|(_, a, b)| a != b)
    .map(|(kind, _, b)| (kind, b))
    .collect()
}

#[utoipa::path(
    get,
    path = "/api/events",
    tag = "live",
    responses(
        (status = 200, description = "Server-Sent Events named `conversations`, `calls`, `messages` and `statuses` (a message's delivery status or a call's outcome), each sent when that kind of record changed (data: the change's time in ms)", content_type = "text/event-stream", body = String),
        (status = 503, description = "Too many streams open")
    )
)]
async fn events(State(state): State<AppState>) -> Result<EventStream, Response> {
    let live = state.live;
    let permit = live.permit().map_err(IntoResponse::into_response)?;
    let mut rx = live.latest.subscribe();
    let (tx, out) = mpsc::channel(8);
    tokio::spawn(async move {
        let _permit = permit;
        let mut seen = *rx.borrow_and_update();
        // The poller's first read after a quiet spell only sets the baseline.
        let mut primed = seen != LatestChanges::default();
        loop {
            // A client that left frees its slot at once, not at the next change.
            tokio::select! {
                _ = tx.closed() => return,
                r = rx.changed() => if r.is_err() { return },
            }
            let now = *rx.borrow_and_update();
            if primed {
                for (kind, at) in moved(&seen, &now) {
                    let event = Event::default().event(kind).data(at.to_string());
                    if tx.send(event).await.is_err() {
                        return;
                    }
                }
            }
            primed = true;
            seen = now;
        }
    });
    Ok(sse(out, live.closed))
}

#[utoipa::path(
    get,
    path = "/api/campaigns/{id}/progress/stream",
    tag = "live",
    params(("id" = String, Path, description = "The campaign id")),
    responses(
        (status = 200, description = "Server-Sent Events named `progress` (data: the same JSON as `/progress`) whenever it changes; the stream ends after the campaign has ended", content_type = "text/event-stream", body = crate::campaigns::ProgressView),
        (status = 404, description = "No such campaign", body = crate::openapi::ErrorBody),
        (status = 503, description = "Too many streams open")
    )
)]
async fn progress_stream(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<EventStream, Response> {
    // An unknown campaign is a 404 now, not an empty stream.
    Campaigns::new(state.clone())
        .get(&id)
        .await
        .map_err(|e| HttpError::from(e).into_response())?;
    let permit = state.live.permit().map_err(IntoResponse::into_response)?;
    let closed = state.live.closed.clone();
    let (tx, out) = mpsc::channel(8);
    tokio::spawn(async move {
        let _permit = permit;
        let campaigns = Campaigns::new(state);
        let mut last = String::new();
        loop {
            let read = tokio::time::timeout(EVERY * 5, campaigns.progress(&id)).await;
            match read.unwrap_or_else(|_| {
                Err(crate::grpc::ApiError::Unavailable(anyhow::anyhow!(
                    "no progress within 5 s"
                )))
            }) {
                Ok(p) => {
                    let json = serde_json::to_string(&p).unwrap_or_default();
                    if json != last {
                        let event = Event::default().event("progress").data(&json);
                        if tx.send(event).await.is_err() {
                            return;
                        }
                        last = json;
                    }
                    if p.ended() {
                        return;
                    }
                }
                Err(e) => tracing::debug!(error = %e, "progress stream: read failed"),
            }
            tokio::select! {
                _ = tx.closed() => return,
                _ = tokio::time::sleep(EVERY) => {}
            }
        }
    });
    Ok(sse(out, closed))
}

/// The events a task sends, ended by `closed` (api shutdown), with keep-alives.
fn sse(mut events: mpsc::Receiver<Event>, closed: CancellationToken) -> EventStream {
    let stream = futures::stream::poll_fn(move |cx| events.poll_recv(cx))
        .take_until(closed.cancelled_owned())
        .map(Ok::<_, Infallible>);
    let stream: std::pin::Pin<Box<dyn Stream<Item = Result<Event, Infallible>> + Send>> =
        Box::pin(stream);
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_kinds_that_moved_are_sent() {
        let a = LatestChanges {
            conversations: 1,
            calls: 2,
            messages: 3,
            statuses: 4,
        };
        let b = LatestChanges {
            calls: 5,
            messages: 4,
            statuses: 6,
            ..a
        };
        assert_eq!(
            moved(&a, &b),
            [("calls", 5), ("messages", 4), ("statuses", 6)]
        );
        assert!(moved(&a, &a).is_empty());
    }

    #[test]
    fn streams_beyond_the_limit_are_refused() {
        let live = Live::default();
        let held: Vec<_> = (0..MAX_STREAMS).map(|_| live.permit().ok()).collect();
        assert!(held.iter().all(Option::is_some));
        let refused = live.permit().expect_err("refused");
        assert_eq!(
            refused.into_response().status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
}
