//! The phone normaliser on any text and region: no panic; what it accepts is E.164 that parses
//! again to itself; the masked form never holds the whole number.
//!
//! Input: the first byte picks a region (255: the next two bytes are the region, as given),
//! the rest is the cell's text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use voice_agent_contacts::normalise_phone;
use voice_agent_domain::PhoneNumber;
use voice_agent_fuzz::{CappedAlloc, MIB, bounded};

#[global_allocator]
static ALLOC: CappedAlloc = CappedAlloc;

const REGIONS: [&str; 8] = ["US", "GB", "FR", "DE", "IN", "BR", "JP", "AU"];

/// The phone-number metadata (about 6 MB) is a lazy global built on first use: built here,
/// outside the bound, which is for what one input allocates.
fn warm_up() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = voice_agent_contacts::normalise_phone("+14155550100", "US");
    });
}

fuzz_target!(|data: &[u8]| {
    warm_up();
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let (region, text) = if pick == 255 && rest.len() >= 2 {
        (String::from_utf8_lossy(&rest[..2]).into_owned(), &rest[2..])
    } else {
        (REGIONS[usize::from(pick) % REGIONS.len()].to_owned(), rest)
    };
    let Ok(raw) = std::str::from_utf8(text) else {
        return;
    };
    // libphonenumber compiles each metadata pattern once, on first use, into a global cache
    // (a bounded set: one per pattern in the metadata), so the first input of a kind may
    // allocate a few MB that stay; the bound allows for that and still catches growth with the
    // input, and -rss_limit_mb catches a cache that would not stop growing.
    let result = bounded(32 * MIB + 64 * raw.len(), || normalise_phone(raw, &region));
    let Ok(phone) = result else { return };
    let e164 = phone.as_str();
    assert!(e164.starts_with('+'), "{e164}");
    assert!(e164[1..].bytes().all(|b| b.is_ascii_digit()), "{e164}");
    assert!(e164.len() <= 16, "{e164}");
    let again = PhoneNumber::parse_e164(e164).expect("E.164 output parses again");
    assert_eq!(again.as_str(), e164);
    assert!(
        !phone.masked().contains(&e164[1..]),
        "the masked form holds the number"
    );
});
