//! What progress views show from a running campaign's workflow (pause, pass, rate, when sending
//! began): read with a query at most once a second per campaign, however many pages watch it.
//!
//! A query waits for the workflow task in flight. A voice campaign is in one almost all the
//! time (it starts calls and hears every call's end), so a query there answers in 0.1-1 s, and
//! in several seconds around a continue-as-new. Progress views ask every second, one per open
//! page. So a read answers at once from the last query's answer and, when that is more than a
//! second old, starts the next query in the background; only the first read of a campaign
//! waits for one. The api forgets a campaign's answer when it signals it (pause, resume, rate),
//! so the next read there sees the signal; an answer to a query asked before that is dropped.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long an answer is served without starting the next query.
const FRESH: Duration = Duration::from_secs(1);
/// Campaigns remembered at once (each entry is a few hundred bytes); past it, entries not read
/// for a minute go, and if none has, reads query directly.
const MAX_CAMPAIGNS: usize = 10_000;
/// Entries not read for this long are dropped when room is needed.
const IDLE: Duration = Duration::from_secs(60);

/// The last answer of each running campaign's query.
#[derive(Clone)]
pub struct RunCache<T> {
    runs: Arc<Mutex<Runs<T>>>,
}

struct Runs<T> {
    entries: HashMap<String, Entry<T>>,
    /// How many times a campaign was forgotten. An answer is kept only if nothing was
    /// forgotten since it was asked: one asked before a signal must not be taken for after.
    forgets: u64,
}

struct Entry<T> {
    /// [`Runs::forgets`] when the entry was made; its refreshes store only into it.
    epoch: u64,
    /// The last successful answer (`None` before the first).
    value: Option<T>,
    /// When the last query ended (successfully or not).
    asked_at: Instant,
    /// When a read last used this entry.
    read_at: Instant,
    /// A background query is under way.
    refreshing: bool,
}

impl<T> Default for RunCache<T> {
    fn default() -> Self {
        Self {
            runs: Arc::new(Mutex::new(Runs {
                entries: HashMap::new(),
                forgets: 0,
            })),
        }
    }
}

impl<T: Clone + Send + 'static> RunCache<T> {
    /// The workflow state of campaign `id`: the last answer, refreshed in the background by
    /// `query` when it was asked more than a second ago; `query` is awaited only when there is
    /// none. `query` answers `None` when it failed; the previous answer is kept then.
    pub async fn read<F, Fut>(&self, id: &str, query: F) -> Option<T>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Option<T>> + Send + 'static,
    {
        self.read_at(Instant::now(), id, query).await
    }

    async fn read_at<F, Fut>(&self, now: Instant, id: &str, query: F) -> Option<T>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Option<T>> + Send + 'static,
    {
        let (stale, epoch) = {
            let mut runs = self.lock();
            let forgets = runs.forgets;
            match runs.entries.get_mut(id) {
                Some(e) if e.value.is_some() => {
                    e.read_at = now;
                    if e.refreshing || now.saturating_duration_since(e.asked_at) < FRESH {
                        return e.value.clone();
                    }
                    e.refreshing = true;
                    (e.value.clone(), e.epoch)
                }
                _ => (None, forgets),
            }
        };
        if stale.is_some() {
            let (cache, id, asked) = (self.clone(), id.to_owned(), query());
            tokio::spawn(async move {
                let answer = asked.await;
                cache.store(now, epoch, &id, answer);
            });
            return stale;
        }
        let answer = query().await;
        self.store(now, epoch, id, answer.clone());
        answer
    }

    /// Drops what is known of campaign `id` (it was signalled, or it ended).
    pub fn forget(&self, id: &str) {
        let mut runs = self.lock();
        runs.entries.remove(id);
        runs.forgets += 1;
    }

    /// Records the answer of a query asked at `asked_at`, when [`Runs::forgets`] was `epoch`
    /// (for a refresh: its entry's epoch).
    fn store(&self, asked_at: Instant, epoch: u64, id: &str, answer: Option<T>) {
        let mut runs = self.lock();
        let forgets = runs.forgets;
        let entries = &mut runs.entries;
        if let Some(e) = entries.get_mut(id) {
            if e.epoch != epoch {
                // The entry was forgotten and made again since: this answer is older.
                return;
            }
            e.refreshing = false;
            e.asked_at = asked_at;
            if answer.is_some() {
                e.value = answer;
            }
            return;
        }
        if answer.is_none() || forgets != epoch {
            return;
        }
        if entries.len() >= MAX_CAMPAIGNS {
            entries.retain(|_, e| {
                e.refreshing || asked_at.saturating_duration_since(e.read_at) < IDLE
            });
            if entries.len() >= MAX_CAMPAIGNS {
                return;
            }
        }
        entries.insert(
            id.to_owned(),
            Entry {
                epoch,
                value: answer,
                asked_at,
                read_at: asked_at,
                refreshing: false,
            },
        );
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Runs<T>> {
        // A panic while holding the lock leaves the map consistent (every change is one
        // statement), so a poisoned lock is still usable.
        self.runs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().entries.len()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use tokio::sync::oneshot;

    use super::*;

    /// Lets spawned refreshes that can finish, finish (the test runtime has one thread).
    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn the_first_read_waits_then_reads_within_a_second_do_not_query() {
        let cache = RunCache::default();
        let calls = Arc::new(AtomicU32::new(0));
        let t0 = Instant::now();
        let ask = |n: u32| {
            let calls = calls.clone();
            move || async move {
                calls.fetch_add(1, Ordering::SeqCst);
                Some(n)
            }
        };
        assert_eq!(cache.read_at(t0, "c", ask(1)).await, Some(1));
        for ms in [0, 10, 500, 999] {
            let at = t0 + Duration::from_millis(ms);
            assert_eq!(cache.read_at(at, "c", ask(2)).await, Some(1));
        }
        settle().await;
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        // Campaigns are apart.
        assert_eq!(cache.read_at(t0, "d", ask(3)).await, Some(3));
    }

    #[tokio::test]
    async fn a_stale_answer_is_served_at_once_while_one_query_refreshes_it() {
        let cache = RunCache::default();
        let t0 = Instant::now();
        assert_eq!(cache.read_at(t0, "c", || async { Some(1) }).await, Some(1));
        let later = t0 + FRESH;
        let (answer, asked) = oneshot::channel::<u32>();
        let calls = Arc::new(AtomicU32::new(0));
        // The refresh does not answer until told: every read meanwhile gets the old value.
        let counted = calls.clone();
        let first = cache.read_at(later, "c", move || {
            counted.fetch_add(1, Ordering::SeqCst);
            async move { asked.await.ok() }
        });
        assert_eq!(first.await, Some(1));
        for _ in 0..10 {
            let counted = calls.clone();
            let read = cache.read_at(later, "c", move || {
                counted.fetch_add(1, Ordering::SeqCst);
                async { Some(99) }
            });
            assert_eq!(read.await, Some(1));
        }
        assert_eq!(
            calls.load(Ordering::SeqCst),
            1,
            "one refresh, not one per read"
        );
        answer.send(2).unwrap();
        settle().await;
        assert_eq!(
            cache.read_at(later, "c", || async { Some(99) }).await,
            Some(2)
        );
    }

    #[tokio::test]
    async fn a_failed_refresh_keeps_the_last_answer_and_a_forgotten_campaign_is_asked_again() {
        let cache = RunCache::default();
        let t0 = Instant::now();
        assert_eq!(cache.read_at(t0, "c", || async { Some(7) }).await, Some(7));
        let t1 = t0 + FRESH;
        assert_eq!(cache.read_at(t1, "c", || async { None }).await, Some(7));
        settle().await;
        // The failure counts as asked: no new query within the second after it.
        assert_eq!(cache.read_at(t1, "c", || async { Some(8) }).await, Some(7));
        cache.forget("c");
        assert_eq!(cache.read_at(t1, "c", || async { Some(9) }).await, Some(9));
        // A campaign whose first query fails is not remembered: the next read asks again.
        assert_eq!(cache.read_at(t0, "d", || async { None }).await, None::<u32>);
        assert_eq!(cache.read_at(t0, "d", || async { Some(1) }).await, Some(1));
    }

    #[tokio::test]
    async fn an_answer_asked_before_a_signal_is_not_kept_after_it() {
        let cache = RunCache::default();
        let t0 = Instant::now();
        // A background refresh under way when the campaign is signalled.
        assert_eq!(cache.read_at(t0, "c", || async { Some(1) }).await, Some(1));
        let (answer, asked) = oneshot::channel::<u32>();
        let t1 = t0 + FRESH;
        let stale = cache.read_at(t1, "c", move || async move { asked.await.ok() });
        assert_eq!(stale.await, Some(1));
        cache.forget("c");
        answer.send(2).unwrap();
        settle().await;
        assert_eq!(cache.read_at(t1, "c", || async { Some(3) }).await, Some(3));
        // A first read under way when the campaign is signalled.
        let (answer, asked) = oneshot::channel::<u32>();
        let first = tokio::spawn({
            let cache = cache.clone();
            async move {
                cache
                    .read_at(t1, "d", move || async move { asked.await.ok() })
                    .await
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
        assert_eq!(cache.read_at(t1, "d", || async { Some(5) }).await, Some(5));
        // The answer that was kept before the second forget is still served.
        assert_eq!(cache.read_at(t1, "c", || async { Some(6) }).await, Some(3));
    }

    #[tokio::test]
    async fn it_holds_at_most_max_campaigns_and_makes_room_from_idle_ones() {
        let cache = RunCache::default();
        let t0 = Instant::now();
        for i in 0..MAX_CAMPAIGNS {
            cache
                .read_at(t0, &format!("c{i}"), || async move { Some(i) })
                .await;
        }
        assert_eq!(cache.len(), MAX_CAMPAIGNS);
        // Full and nothing idle: the answer is served but not kept.
        assert_eq!(
            cache.read_at(t0, "new", || async { Some(1) }).await,
            Some(1)
        );
        assert_eq!(cache.len(), MAX_CAMPAIGNS);
        let later = t0 + IDLE;
        cache.read_at(later, "c0", || async { Some(0) }).await;
        cache.read_at(later, "new", || async { Some(1) }).await;
        assert_eq!(cache.len(), 2, "the idle entries made room");
    }
}
