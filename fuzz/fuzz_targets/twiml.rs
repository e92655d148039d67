//! The simulator's voice TwiML parser (what it reads from an app's webhook answer): no panic,
//! bounded memory, and a document it accepts has a `<Response>` root.
#![no_main]

use libfuzzer_sys::fuzz_target;
use voice_agent_fuzz::{CappedAlloc, MIB, bounded};
use voice_agent_simulator::fuzzing::parse_twiml;

#[global_allocator]
static ALLOC: CappedAlloc = CappedAlloc;

fuzz_target!(|data: &[u8]| {
    let Ok(document) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = bounded(MIB + 64 * data.len(), || parse_twiml(document));
    if let Ok(root) = parsed {
        assert_eq!(root, "Response");
    }
});
