//! `sender_slots`: the send slots of each sender (one number on one channel, or a Messaging
//! Service), shared by every campaign batch, single send, reply and dial that uses it, so that
//! together they stay within what the provider allows for that sender.
//!
//! One document per sender, `{_id: sender, next_at}`: the first instant nobody has reserved.
//! A reservation of `count` slots `spacing` apart starts at `max(next_at, now)` and moves
//! `next_at` past its last slot with one compare-and-set, so reservations never overlap, however
//! many processes make them. A reserver that dies before using its slots only leaves them
//! unused: the limit can be undershot by a crash, never exceeded. Reservations look ahead a
//! bounded time: when `next_at` is already further ahead than the caller allows, nothing is
//! reserved and the caller learns when to ask again.
//!
//! Slot times are wall-clock times of the reserving process, so processes sharing a sender
//! need clocks that agree to well within one slot (NTP).

use std::time::Duration;

use chrono::{DateTime, Utc};
use mongodb::bson::{self, Document, doc};

use crate::{MongoStore, Result, is_duplicate_key, schema};

/// How often a reservation is tried again after another reserver moved `next_at` between the
/// read and the write, before the store gives up (contention on one sender is a handful of
/// processes; this bound only stops a livelock from spinning for ever).
const MAX_CAS_TRIES: u32 = 64;

/// Send slots granted to one reserver: `count` instants, `spacing` apart from `first`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotGrant {
    /// The first slot.
    pub first: DateTime<Utc>,
    /// Time between two slots (the sender's limit).
    pub spacing: Duration,
    /// Number of slots.
    pub count: u32,
}

impl SlotGrant {
    /// The `i`-th slot (from 0).
    pub fn slot(&self, i: u32) -> DateTime<Utc> {
        self.first
            .checked_add_signed(scaled(self.spacing, i))
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    }

    /// The instant after the last slot: where the next reservation may start.
    pub fn end(&self) -> DateTime<Utc> {
        self.slot(self.count)
    }
}

/// The answer to a reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reservation {
    /// These slots are the caller's.
    Granted(SlotGrant),
    /// The sender is reserved up to `free_at`, further ahead than the caller would look:
    /// nothing was reserved; ask again once `free_at` is within reach.
    Backlogged {
        /// The first unreserved instant.
        free_at: DateTime<Utc>,
    },
}

fn scaled(spacing: Duration, n: u32) -> chrono::Duration {
    chrono::Duration::from_std(spacing.saturating_mul(n)).unwrap_or(chrono::Duration::MAX)
}

/// `at` rounded up to the millisecond BSON keeps, so a stored `next_at` is never before the
/// end of the slots it protects.
fn ceil_millis(at: DateTime<Utc>) -> bson::DateTime {
    let ms = at.timestamp_millis();
    let exact = DateTime::<Utc>::from_timestamp_millis(ms).is_some_and(|t| t == at);
    bson::DateTime::from_millis(if exact { ms } else { ms + 1 })
}

impl MongoStore {
    fn sender_slots(&self) -> mongodb::Collection<Document> {
        self.db.collection(schema::SENDER_SLOTS)
    }

    /// Reserves `count` send slots `spacing` apart on `sender`, starting at the first free
    /// instant from now on, unless the sender is already reserved more than `max_ahead` past
    /// now (then [`Reservation::Backlogged`]). One read and one conditional write.
    pub async fn reserve_sender_slots(
        &self,
        sender: &str,
        count: u32,
        spacing: Duration,
        max_ahead: Duration,
    ) -> Result<Reservation> {
        let count = count.max(1);
        let look_ahead = chrono::Duration::from_std(max_ahead).unwrap_or(chrono::Duration::MAX);
        for _ in 0..MAX_CAS_TRIES {
            let now = Utc::now();
            let seen = self
                .sender_slots()
                .find_one(doc! { "_id": sender })
                .await?
                .and_then(|d| d.get_datetime("next_at").ok().copied());
            let Some(next_at) = seen else {
                let grant = SlotGrant {
                    first: now,
                    spacing,
                    count,
                };
                match self
                    .sender_slots()
                    .insert_one(doc! { "_id": sender, "next_at": ceil_millis(grant.end()) })
                    .await
                {
                    Ok(_) => return Ok(Reservation::Granted(grant)),
                    // Another reserver created it first: read it and try again.
                    Err(e) if is_duplicate_key(&e) => continue,
                    Err(e) => return Err(e.into()),
                }
            };
            let free_at = DateTime::<Utc>::from(next_at.to_system_time());
            if now
                .checked_add_signed(look_ahead)
                .is_some_and(|limit| free_at > limit)
            {
                return Ok(Reservation::Backlogged { free_at });
            }
            let grant = SlotGrant {
                first: free_at.max(now),
                spacing,
                count,
            };
            let r = self
                .sender_slots()
                .update_one(
                    doc! { "_id": sender, "next_at": next_at },
                    doc! { "$set": { "next_at": ceil_millis(grant.end()) } },
                )
                .await?;
            if r.matched_count == 1 {
                return Ok(Reservation::Granted(grant));
            }
        }
        Err(crate::StoreError::Contended(format!(
            "could not reserve a send slot after {MAX_CAS_TRIES} tries: too many reservers on one sender"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_ends_round_up_to_the_millisecond() {
        let at = DateTime::<Utc>::from_timestamp_millis(1_000).unwrap();
        assert_eq!(ceil_millis(at).timestamp_millis(), 1_000);
        let later = at + chrono::Duration::microseconds(1);
        assert_eq!(ceil_millis(later).timestamp_millis(), 1_001);
    }

    #[test]
    fn a_grant_spaces_its_slots_and_ends_after_the_last() {
        let first = DateTime::<Utc>::from_timestamp_millis(0).unwrap();
        let g = SlotGrant {
            first,
            spacing: Duration::from_millis(250),
            count: 4,
        };
        assert_eq!(g.slot(3), first + chrono::Duration::milliseconds(750));
        assert_eq!(g.end(), first + chrono::Duration::seconds(1));
    }
}
