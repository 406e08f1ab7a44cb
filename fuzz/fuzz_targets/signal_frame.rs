//! A signaling frame as the server reads it (`strict::from_slice::<ClientMessage>`):
//! never a panic, and whatever reads writes back to an equal message.
#![no_main]

use confer_proto::signal::ClientMessage;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    confer_fuzz::read_and_round_trip::<ClientMessage>(data);
});
