//! Send slots on one sender, reserved by many processes at once.

use std::time::Duration;

use chrono::{DateTime, Utc};
use voice_agent_store::{Reservation, SlotGrant};

use super::store;

const SPACING: Duration = Duration::from_millis(5);

fn granted(r: Reservation) -> SlotGrant {
    match r {
        Reservation::Granted(g) => g,
        Reservation::Backlogged { free_at } => panic!("backlogged until {free_at}"),
    }
}

#[tokio::test]
async fn concurrent_reservers_never_share_a_slot_and_together_keep_the_senders_rate() {
    let store = store().await;
    let before = Utc::now();
    // Eight reservers (as eight batch attempts or single sends would be), each taking twenty
    // chunks of up to seven slots on the same sender as fast as it can.
    let tasks: Vec<_> = (0..8_u32)
        .map(|r| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut slots = Vec::new();
                for chunk in 0..20_u32 {
                    let count = 1 + (r + chunk) % 7;
                    let g = granted(
                        store
                            .reserve_sender_slots("+15005550006", count, SPACING, Duration::MAX)
                            .await
                            .expect("reserve"),
                    );
                    assert_eq!(g.count, count);
                    slots.extend((0..g.count).map(|i| g.slot(i)));
                }
                slots
            })
        })
        .collect();
    let mut slots: Vec<DateTime<Utc>> = Vec::new();
    for t in tasks {
        slots.extend(t.await.unwrap());
    }
    let expected: u32 = (0..8_u32)
        .flat_map(|r| (0..20_u32).map(move |c| 1 + (r + c) % 7))
        .sum();
    assert_eq!(slots.len(), expected as usize);

    slots.sort();
    assert!(slots[0] >= before - chrono::Duration::milliseconds(1));
    let spacing = chrono::Duration::from_std(SPACING).unwrap();
    for pair in slots.windows(2) {
        assert!(
            pair[1] - pair[0] >= spacing,
            "two slots {} apart: {} and {}",
            pair[1] - pair[0],
            pair[0],
            pair[1]
        );
    }
    // So any 100 ms holds at most 100 / 5 + 1 of them.
    let window = chrono::Duration::milliseconds(100);
    let most = slots
        .iter()
        .enumerate()
        .map(|(i, start)| {
            slots[i..]
                .iter()
                .take_while(|s| **s < *start + window)
                .count()
        })
        .max()
        .unwrap();
    assert!(most <= 21, "{most} slots in 100 ms");
}

#[tokio::test]
async fn a_sender_reserved_far_ahead_answers_when_to_ask_again_and_reserves_nothing() {
    let store = store().await;
    let sender = "whatsapp:+15005550006";
    // Ten seconds of slots at one a second.
    let first = granted(
        store
            .reserve_sender_slots(sender, 10, Duration::from_secs(1), Duration::from_secs(5))
            .await
            .unwrap(),
    );
    let free_at = match store
        .reserve_sender_slots(sender, 1, Duration::from_secs(1), Duration::from_secs(5))
        .await
        .unwrap()
    {
        Reservation::Backlogged { free_at } => free_at,
        other => panic!("expected a backlog, got {other:?}"),
    };
    assert!(free_at >= first.end(), "{free_at} < {}", first.end());
    assert!(free_at - first.end() < chrono::Duration::milliseconds(2));
    // Looking further ahead, the next slot is the first after the backlog: nothing was taken
    // by the refused reservation.
    let next = granted(
        store
            .reserve_sender_slots(sender, 1, Duration::from_secs(1), Duration::from_secs(60))
            .await
            .unwrap(),
    );
    assert_eq!(next.first, free_at);
    // Another sender is not held up by this one.
    let other = granted(
        store
            .reserve_sender_slots("+15005550007", 1, Duration::from_secs(1), Duration::ZERO)
            .await
            .unwrap(),
    );
    assert!(other.first < first.end());
}
