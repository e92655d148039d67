//! The contact import (xlsx and CSV) on any bytes, with the request's size limit set to the
//! input's size: no panic, and no more memory live at once than a fixed multiple of that limit
//! (the same budget the api's memory test holds an upload to).
#![no_main]

use libfuzzer_sys::fuzz_target;
use voice_agent_contacts::{ImportOptions, parse_file};
use voice_agent_fuzz::{CappedAlloc, MIB, bounded};

#[global_allocator]
static ALLOC: CappedAlloc = CappedAlloc;

/// Bytes live per byte of the upload limit: a workbook may inflate to 32 times its size
/// (`UNCOMPRESSED_RATIO`), and cells and text have their own limits below that.
const BYTES_PER_LIMIT_BYTE: usize = 64;

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
    let mut options = ImportOptions::new("US");
    options.max_bytes = data.len().max(1) as u64;
    options.max_reported_rejections = 50;
    // The fixed part also covers the phone library's pattern cache (see the phone target).
    let bound = data.len().saturating_mul(BYTES_PER_LIMIT_BYTE) + 48 * MIB;
    // No extension: the content decides between workbook and text, as for an unnamed upload.
    let parsed = bounded(bound, || parse_file("upload", data, &options));
    if let Ok(parsed) = parsed {
        assert!(parsed.rejected_rows.len() <= options.max_reported_rejections);
        assert!(parsed.rejected_rows.len() <= parsed.rejected);
        assert!(parsed.contacts.len() + parsed.merged + parsed.rejected <= parsed.rows);
        for contact in &parsed.contacts {
            assert!(contact.phone.as_str().starts_with('+'));
        }
    }
});
