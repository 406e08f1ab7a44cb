//! A join token's claims after the signature checks out: the JWT payload as JSON,
//! read strictly as `JoinClaims` (the server parses it to a `Value` first, then
//! `strict::from_value`, which is what `strict::from_slice` does).
#![no_main]

use confer_proto::token::JoinClaims;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    confer_fuzz::read_and_round_trip::<JoinClaims>(data);
});
