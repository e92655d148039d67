//! Twilio webhook signatures: validation never panics on any URL, parameters or signature; a
//! signature computed for a request validates; the same signature does not validate a request
//! with a changed token or body.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use voice_agent_fuzz::{CappedAlloc, MIB, bounded};
use voice_agent_twilio::signature::{compute_signature, validate, validate_json_body};

#[global_allocator]
static ALLOC: CappedAlloc = CappedAlloc;

#[derive(Debug, Arbitrary)]
struct Input {
    token: String,
    url: String,
    params: Vec<(String, String)>,
    signature: String,
    body: Vec<u8>,
}

fuzz_target!(|input: Input| {
    let size = input.token.len()
        + input.url.len()
        + input.signature.len()
        + input.body.len()
        + input
            .params
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum::<usize>();
    bounded(MIB + 16 * size, || {
        // Anything at all: no panic.
        validate(&input.token, &input.url, &input.params, &input.signature);
        validate_json_body(&input.token, &input.url, &input.body, &input.signature);

        let good = compute_signature(&input.token, &input.url, &input.params);
        assert!(validate(&input.token, &input.url, &input.params, &good));
        let other_token = format!("{}x", input.token);
        assert!(!validate(&other_token, &input.url, &input.params, &good));
        let mut more = input.params.clone();
        more.push(("Body".to_owned(), "\u{0}changed".to_owned()));
        if !input.params.contains(&more[more.len() - 1]) {
            assert!(!validate(&input.token, &input.url, &more, &good));
        }
    });
});
