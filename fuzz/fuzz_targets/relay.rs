//! ConversationRelay messages: any frame from "Twilio" parses or is refused without a panic;
//! a message that parses serialises and parses again to itself; our own messages read back as
//! they were sent.
#![no_main]

use libfuzzer_sys::fuzz_target;
use voice_agent_fuzz::{CappedAlloc, MIB, bounded};
use voice_agent_twilio::relay::{Outbound, parse_inbound};

#[global_allocator]
static ALLOC: CappedAlloc = CappedAlloc;

fuzz_target!(|data: &[u8]| {
    let Ok(frame) = std::str::from_utf8(data) else {
        return;
    };
    bounded(MIB + 32 * data.len(), || {
        if let Ok(message) = parse_inbound(frame) {
            let again = serde_json::to_string(&message).expect("a parsed message serialises");
            assert_eq!(parse_inbound(&again).expect("its JSON parses"), message);
        }
        if let Ok(out) = serde_json::from_str::<Outbound>(frame) {
            let again: Outbound = serde_json::from_str(&out.to_json()).expect("ours parse");
            assert_eq!(again, out);
        }
    });
});
