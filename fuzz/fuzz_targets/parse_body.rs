//! The OAuth request-body parser (JSON sniffing, form decoding) on arbitrary
//! bytes: it must never panic, and whatever it accepts must respect its
//! limits.
#![no_main]

use kitauth::params::{parse_body, MAX_BODY, MAX_VALUE};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match parse_body(data) {
        Ok(params) => {
            assert!(data.len() <= MAX_BODY);
            for key in [
                "client_id",
                "client_secret",
                "grant_type",
                "code",
                "redirect_uri",
                "refresh_token",
                "token",
                "scope",
                "code_verifier",
            ] {
                if let Some(v) = params.get(key) {
                    assert!(!v.is_empty() && v.len() <= MAX_VALUE);
                }
            }
        }
        Err(e) => {
            // Every refusal has a description for the error body.
            assert!(!e.description().is_empty());
        }
    }
});
