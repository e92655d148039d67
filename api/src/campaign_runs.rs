//! What progress views show from a running campaign's workflow (pause, pass, rate, when sending
//! began), read with a query and shared by every read of the campaign on this api.
//!
//! A query waits for the workflow task in flight. A voice campaign is in one almost all the
//! time (it starts calls and hears every call's end), so a query there answers in 0.1-1 s, and
//! in several seconds around a continue-as-new. Progress views ask every second, one per open
//! page. So a read answers at once from the last answer and, when that was asked more than a
//! second ago, starts the next query in the background (one at a time per campaign). A read
//! waits for a query only when there is no answer it may serve:
//!
//! - none yet (the campaign's first reads, or after [`RunCache::forget`]);
//! - one asked before the campaign was last signalled through any api (pause, resume, cancel,
//!   rate: the campaign document's `signalled_at`), so a pause shows on every replica at once
//!   (replicas' clocks are taken to agree within milliseconds);
//! - one asked more than [`MAX_AGE_MS`] ago (its queries keep failing: the run is then shown
//!   without the workflow's part, as when a query fails).
//!
//! Every query gives up after [`QUERY_WAIT`]; an answer that lands after a newer query began,
//! or after the campaign was forgotten, is dropped.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// An answer asked this recently is served without asking again (milliseconds).
const FRESH_MS: i64 = 1_000;
/// How long one query may take.
pub const QUERY_WAIT: Duration = Duration::from_secs(5);
/// An answer asked longer ago than this is not served (milliseconds).
pub const MAX_AGE_MS: i64 = 30_000;
/// Campaigns remembered at once (each entry is a few hundred bytes); past it, entries not read
/// for a minute go, and if none has, reads query directly.
const MAX_CAMPAIGNS: usize = 10_000;
/// Entries not read for this long are dropped when room is needed (milliseconds).
const IDLE_MS: i64 = 60_000;

/// The last answer of each running campaign's query.
#[derive(Clone)]
pub struct RunCache<T> {
    runs: Arc<Mutex<Runs<T>>>,
}

struct Runs<T> {
    entries: HashMap<String, Entry<T>>,
    /// Numbers the queries, so an entry knows which one it waits for.
    asks: u64,
}

struct Entry<T> {
    /// The last answer and when it was asked (Unix ms).
    value: Option<(i64, T)>,
    /// When the last query that ended was asked, answered or not.
    asked_at: i64,
    /// The query under way: its number and when it was asked.
    asking: Option<(u64, i64)>,
    /// When a read last used this entry.
    read_at: i64,
}

impl<T> Default for RunCache<T> {
    fn default() -> Self {
        Self {
            runs: Arc::new(Mutex::new(Runs {
                entries: HashMap::new(),
                asks: 0,
            })),
        }
    }
}

impl<T: Clone + Send + 'static> RunCache<T> {
    /// The workflow state of campaign `id`, signalled last at `signalled_at` (Unix ms): see the
    /// module doc. `query` answers `None` when it failed.
    pub async fn read<F, Fut>(&self, id: &str, signalled_at: Option<i64>, query: F) -> Option<T>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Option<T>> + Send + 'static,
    {
        let now = chrono::Utc::now().timestamp_millis();
        self.read_at(now, id, signalled_at.unwrap_or(i64::MIN), query)
            .await
    }

    async fn read_at<F, Fut>(&self, now: i64, id: &str, since: i64, query: F) -> Option<T>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Option<T>> + Send + 'static,
    {
        let ask = {
            let mut runs = self.lock();
            runs.asks += 1;
            let n = runs.asks;
            match runs.entries.get_mut(id) {
                Some(e) => {
                    e.read_at = now;
                    let served = e
                        .value
                        .as_ref()
                        .filter(|(at, _)| *at >= since && now.saturating_sub(*at) < MAX_AGE_MS)
                        .map(|(_, v)| v.clone());
                    let asking = e.asking.is_some_and(|(_, began)| {
                        now.saturating_sub(began) < QUERY_WAIT.as_millis() as i64
                    });
                    if served.is_some() {
                        if !asking && now.saturating_sub(e.asked_at) >= FRESH_MS {
                            e.asking = Some((n, now));
                            let (cache, id, asked) = (self.clone(), id.to_owned(), query());
                            tokio::spawn(async move {
                                let answer = within_wait(asked).await;
                                cache.store(&id, n, now, answer);
                            });
                        }
                        return served;
                    }
                    e.asking = Some((n, now));
                    Some(n)
                }
                None => {
                    let room = runs.entries.len() < MAX_CAMPAIGNS || {
                        runs.entries
                            .retain(|_, e| now.saturating_sub(e.read_at) < IDLE_MS);
                        runs.entries.len() < MAX_CAMPAIGNS
                    };
                    room.then(|| {
                        let entry = Entry {
                            value: None,
                            asked_at: i64::MIN,
                            asking: Some((n, now)),
                            read_at: now,
                        };
                        runs.entries.insert(id.to_owned(), entry);
                        n
                    })
                }
            }
        };
        let answer = within_wait(query()).await;
        if let Some(n) = ask {
            self.store(id, n, now, answer.clone());
        }
        answer
    }

    /// Drops what is known of campaign `id` (it was signalled, or it ended); answers to
    /// queries under way are dropped too.
    pub fn forget(&self, id: &str) {
        self.lock().entries.remove(id);
    }

    /// Records the answer of query `n`, asked at `asked_at`, if its entry still waits for it.
    fn store(&self, id: &str, n: u64, asked_at: i64, answer: Option<T>) {
        let mut runs = self.lock();
        let Some(e) = runs.entries.get_mut(id) else {
            return;
        };
        if e.asking.map(|(k, _)| k) != Some(n) {
            return;
        }
        e.asking = None;
        e.asked_at = asked_at;
        if let Some(v) = answer {
            e.value = Some((asked_at, v));
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Runs<T>> {
        // Every change under the lock is a few plain assignments: a panic elsewhere while it
        // was held leaves the map consistent, so a poisoned lock is still usable.
        self.runs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().entries.len()
    }
}

/// A query's answer, `None` if it failed or took longer than [`QUERY_WAIT`].
async fn within_wait<T>(query: impl Future<Output = Option<T>>) -> Option<T> {
    tokio::time::timeout(QUERY_WAIT, query).await.ok().flatten()
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use tokio::sync::oneshot;

    use super::*;

    const NEVER: i64 = i64::MIN;

    /// Lets spawned refreshes that can finish, finish (the test runtime has one thread).
    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    /// A query answering `n`, counting its calls in `calls`.
    fn counted(
        calls: &Arc<AtomicU32>,
        n: Option<u32>,
    ) -> impl FnOnce() -> std::future::Ready<Option<u32>> + use<> {
        let calls = calls.clone();
        move || {
            calls.fetch_add(1, Ordering::SeqCst);
            std::future::ready(n)
        }
    }

    #[tokio::test]
    async fn the_first_read_waits_then_reads_within_a_second_do_not_query() {
        let cache = RunCache::default();
        let calls = Arc::new(AtomicU32::new(0));
        assert_eq!(
            cache.read_at(0, "c", NEVER, counted(&calls, Some(1))).await,
            Some(1)
        );
        for ms in [0, 10, 500, 999] {
            let read = cache.read_at(ms, "c", NEVER, counted(&calls, Some(2)));
            assert_eq!(read.await, Some(1));
        }
        settle().await;
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        // Campaigns are apart.
        assert_eq!(
            cache.read_at(0, "d", NEVER, counted(&calls, Some(3))).await,
            Some(3)
        );
    }

    #[tokio::test]
    async fn a_stale_answer_is_served_at_once_while_one_query_refreshes_it() {
        let cache = RunCache::default();
        assert_eq!(
            cache.read_at(0, "c", NEVER, || async { Some(1) }).await,
            Some(1)
        );
        let (answer, asked) = oneshot::channel::<u32>();
        let calls = Arc::new(AtomicU32::new(0));
        // The refresh does not answer until told: every read meanwhile gets the old value.
        let counted_ask = {
            let calls = calls.clone();
            move || {
                calls.fetch_add(1, Ordering::SeqCst);
                async move { asked.await.ok() }
            }
        };
        assert_eq!(
            cache.read_at(FRESH_MS, "c", NEVER, counted_ask).await,
            Some(1)
        );
        for ms in 0..10 {
            let read = cache.read_at(FRESH_MS + ms, "c", NEVER, counted(&calls, Some(99)));
            assert_eq!(read.await, Some(1));
        }
        assert_eq!(
            calls.load(Ordering::SeqCst),
            1,
            "one refresh, not one per read"
        );
        answer.send(2).unwrap();
        settle().await;
        let read = cache.read_at(FRESH_MS + 10, "c", NEVER, counted(&calls, Some(99)));
        assert_eq!(read.await, Some(2));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_failed_refresh_keeps_the_last_answer_for_a_while_and_is_not_retried_at_once() {
        let cache = RunCache::default();
        let calls = Arc::new(AtomicU32::new(0));
        assert_eq!(
            cache.read_at(0, "c", NEVER, || async { Some(7) }).await,
            Some(7)
        );
        let read = cache.read_at(FRESH_MS, "c", NEVER, counted(&calls, None));
        assert_eq!(read.await, Some(7));
        settle().await;
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        // The failure counts as asked: no new query within the second after it.
        let read = cache.read_at(FRESH_MS + 10, "c", NEVER, counted(&calls, None));
        assert_eq!(read.await, Some(7));
        settle().await;
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        // Too old to serve: the read waits for its own query, which fails too.
        let read = cache.read_at(MAX_AGE_MS, "c", NEVER, counted(&calls, None));
        assert_eq!(read.await, None);
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        // A campaign whose first query fails: the next read asks again.
        assert_eq!(
            cache.read_at(0, "d", NEVER, || async { None }).await,
            None::<u32>
        );
        assert_eq!(
            cache.read_at(1, "d", NEVER, || async { Some(1) }).await,
            Some(1)
        );
    }

    #[tokio::test]
    async fn an_answer_asked_before_the_last_signal_is_never_served() {
        let cache = RunCache::default();
        assert_eq!(
            cache.read_at(0, "c", NEVER, || async { Some(1) }).await,
            Some(1)
        );
        // Signalled at 100 (through any api): the next read waits for a new answer.
        assert_eq!(
            cache.read_at(200, "c", 100, || async { Some(2) }).await,
            Some(2)
        );
        assert_eq!(
            cache.read_at(300, "c", 100, || async { Some(3) }).await,
            Some(2)
        );
        // A refresh asked before a signal lands after a newer read asked again: dropped.
        let (answer, asked) = oneshot::channel::<u32>();
        let stale = cache.read_at(1_300, "c", 100, move || async move { asked.await.ok() });
        assert_eq!(stale.await, Some(2));
        assert_eq!(
            cache.read_at(1_400, "c", 1_350, || async { Some(4) }).await,
            Some(4)
        );
        answer.send(5).unwrap();
        settle().await;
        assert_eq!(
            cache.read_at(1_500, "c", 1_350, || async { Some(6) }).await,
            Some(4)
        );
    }

    #[tokio::test]
    async fn an_answer_under_way_when_the_campaign_is_forgotten_is_dropped() {
        let cache = RunCache::default();
        // A background refresh.
        assert_eq!(
            cache.read_at(0, "c", NEVER, || async { Some(1) }).await,
            Some(1)
        );
        let (answer, asked) = oneshot::channel::<u32>();
        let stale = cache.read_at(
            FRESH_MS,
            "c",
            NEVER,
            move || async move { asked.await.ok() },
        );
        assert_eq!(stale.await, Some(1));
        cache.forget("c");
        answer.send(2).unwrap();
        settle().await;
        assert_eq!(
            cache
                .read_at(FRESH_MS, "c", NEVER, || async { Some(3) })
                .await,
            Some(3)
        );
        // A first read.
        let (answer, asked) = oneshot::channel::<u32>();
        let first = tokio::spawn({
            let cache = cache.clone();
            async move {
                let ask = move || async move { asked.await.ok() };
                cache.read_at(0, "d", NEVER, ask).await
            }
        });
        settle().await;
        cache.forget("d");
        answer.send(4).unwrap();
        assert_eq!(
            first.await.unwrap(),
            Some(4),
            "the reader gets what it asked for"
        );
        assert_eq!(
            cache.read_at(0, "d", NEVER, || async { Some(5) }).await,
            Some(5)
        );
        // Another campaign's forget changes nothing here.
        assert_eq!(
            cache.read_at(10, "c", NEVER, || async { Some(6) }).await,
            Some(3)
        );
    }

    #[tokio::test]
    async fn a_refresh_that_never_answers_does_not_hold_up_the_next_one() {
        let cache = RunCache::default();
        let calls = Arc::new(AtomicU32::new(0));
        assert_eq!(
            cache.read_at(0, "c", NEVER, || async { Some(1) }).await,
            Some(1)
        );
        let hung = || std::future::pending::<Option<u32>>();
        assert_eq!(cache.read_at(FRESH_MS, "c", NEVER, hung).await, Some(1));
        // While it may still answer, no other refresh starts.
        let wait = QUERY_WAIT.as_millis() as i64;
        let read = cache.read_at(FRESH_MS + wait - 1, "c", NEVER, counted(&calls, Some(2)));
        assert_eq!(read.await, Some(1));
        assert_eq!(calls.load(Ordering::SeqCst), 0);
        // Once it has given up, the next read starts one.
        let read = cache.read_at(FRESH_MS + wait, "c", NEVER, counted(&calls, Some(2)));
        assert_eq!(read.await, Some(1));
        settle().await;
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        let read = cache.read_at(FRESH_MS + wait + 1, "c", NEVER, counted(&calls, Some(3)));
        assert_eq!(read.await, Some(2));
    }

    #[tokio::test]
    async fn it_holds_at_most_max_campaigns_and_makes_room_from_idle_ones() {
        let cache = RunCache::default();
        for i in 0..MAX_CAMPAIGNS {
            cache
                .read_at(0, &format!("c{i}"), NEVER, || async move { Some(i) })
                .await;
        }
        assert_eq!(cache.len(), MAX_CAMPAIGNS);
        // Full and nothing idle: the answer is served but not kept.
        assert_eq!(
            cache.read_at(0, "new", NEVER, || async { Some(1) }).await,
            Some(1)
        );
        assert_eq!(cache.len(), MAX_CAMPAIGNS);
        cache
            .read_at(IDLE_MS, "c0", NEVER, || async { Some(0) })
            .await;
        cache
            .read_at(IDLE_MS, "new", NEVER, || async { Some(1) })
            .await;
        assert_eq!(cache.len(), 2, "the idle entries made room");
    }
}
