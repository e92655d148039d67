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

fuzz_target!(|data: &[u8]| {
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
    let result = bounded(4 * MIB + 16 * raw.len(), || normalise_phone(raw, &region));
    let Ok(phone) = result else { return };
    let e164 = phone.as_str();
    assert!(e164.starts_with('+'), "{e164}");
    assert!(e164[1..].bytes().all(|b| b.is_ascii_digit()), "{e164}");
    assert!(e164.len() <= 16, "{e164}");
    let again = PhoneNumber::parse_e164(e164).expect("E.164 output parses again");
    assert_eq!(again.as_str(), e164);
    assert!(!phone.masked().contains(&e164[1..]), "the masked form holds the number");
});
