//! The room API's request bodies as the server reads them (`ApiJson`, strict): the
//! same bytes as every body type, never a panic, and whatever reads writes back.
#![no_main]

use confer_fuzz::read_and_round_trip;
use confer_proto::room::{CreateRoom, UpdateRoom};
use confer_proto::token::{CreateInvite, CreateToken, ExchangeInvite, RefreshToken};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    read_and_round_trip::<CreateRoom>(data);
    read_and_round_trip::<UpdateRoom>(data);
    read_and_round_trip::<CreateToken>(data);
    read_and_round_trip::<RefreshToken>(data);
    read_and_round_trip::<CreateInvite>(data);
    read_and_round_trip::<ExchangeInvite>(data);
});
