//! A TURN URL as `--turn-url` and a join response's `ice_servers` give it: never a
//! panic, and a parsed URL's `Display` form parses to an equal `TurnUrl`.
#![no_main]

use confer_proto::turn_url::TurnUrl;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(url) = TurnUrl::parse(text) else { return };
    let written = url.to_string();
    let again =
        TurnUrl::parse(&written).unwrap_or_else(|e| panic!("{text:?} parsed, but its form {written:?} does not: {e}"));
    assert_eq!(url, again, "{text:?} changed on the way through {written:?}");
});
