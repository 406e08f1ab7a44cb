//! The room-API commands: turn arguments into a [`Call`], print the answer.
//!
//! Output contract: the server's JSON answer, compact, on one stdout line; nothing for
//! answers without a body; `token create` without `--json` prints the bare token so that
//! `TOKEN=$(confer-cli token create ...)` works.

use std::io::Write;

use confer_proto::room::{CreateRoom, ListRooms, Room, RoomPolicy, UpdateRoom};
use confer_proto::token::{CreateInvite, CreateToken, ExchangeInvite, Grants, RefreshToken, TokenPair};
use confer_proto::{Bytes, Identity};

use crate::api::{ApiClient, ApiError, Call};
use crate::args::{
    CreateRoomArgs, CreateTokenArgs, InviteCommand, RoomCommand, RoomFields, SessionCommand, TokenCommand,
    UpdateRoomArgs,
};
use crate::output::JsonLines;
use crate::CliError;

pub async fn room(api: &ApiClient, command: RoomCommand, out: &mut JsonLines<impl Write>) -> Result<(), CliError> {
    let call = match command {
        RoomCommand::Create(args) => Call::CreateRoom(create_room(args)),
        RoomCommand::List(args) => {
            Call::ListRooms(ListRooms { skip: args.skip, limit: args.limit, sort: args.sort.into() })
        }
        RoomCommand::Get { id } => Call::GetRoom(id.into()),
        RoomCommand::Update(args) => {
            let current: Room = api.send_as(&Call::GetRoom(args.id.as_str().into())).await?;
            let id = args.id.as_str().into();
            Call::UpdateRoom(id, update_room(current, args))
        }
        RoomCommand::Delete { id } => Call::DeleteRoom(id.into()),
    };
    print_answer(api, &call, out).await
}

pub async fn token(api: &ApiClient, command: TokenCommand, out: &mut JsonLines<impl Write>) -> Result<(), CliError> {
    match command {
        TokenCommand::Create(args) => {
            let json = args.json;
            let call = Call::CreateToken(create_token(args));
            if json {
                return print_answer(api, &call, out).await;
            }
            let pair: TokenPair = api.send_as(&call).await?;
            out.line(&pair.token)?;
            Ok(())
        }
        TokenCommand::Refresh { refresh_token } => {
            print_answer(api, &Call::RefreshToken(RefreshToken { refresh_token }), out).await
        }
    }
}

pub async fn invite(api: &ApiClient, command: InviteCommand, out: &mut JsonLines<impl Write>) -> Result<(), CliError> {
    let call = match command {
        InviteCommand::Create { room, ttl, max_uses } => {
            Call::CreateInvite(room.into(), CreateInvite { ttl, max_uses })
        }
        InviteCommand::Exchange { invite, name } => Call::ExchangeInvite(ExchangeInvite { invite, name }),
    };
    print_answer(api, &call, out).await
}

pub async fn session(
    api: &ApiClient,
    command: SessionCommand,
    out: &mut JsonLines<impl Write>,
) -> Result<(), CliError> {
    let call = match command {
        SessionCommand::List => Call::ListSessions,
        SessionCommand::Get { room } => Call::GetSession(room.into()),
        SessionCommand::End { room } => Call::EndSession(room.into()),
        SessionCommand::Kick { room, participant_id } => Call::Kick(room.into(), participant_id.into()),
    };
    print_answer(api, &call, out).await
}

async fn print_answer(api: &ApiClient, call: &Call, out: &mut JsonLines<impl Write>) -> Result<(), CliError> {
    if let Some(body) = api.send(call).await? {
        out.emit(&body)?;
    }
    Ok(())
}

fn identities(list: Vec<String>) -> Vec<Identity> {
    list.into_iter().map(Identity).collect()
}

fn create_room(args: CreateRoomArgs) -> CreateRoom {
    let CreateRoomArgs { name, id, fields } = args;
    let RoomFields { members, managers, max_participants, public_meta, private_meta, no_guests, audio_only, lobby } =
        fields;
    CreateRoom {
        id: id.map(Into::into),
        name,
        members: identities(members),
        managers: identities(managers),
        public_meta: public_meta.as_deref().map(Bytes::from).unwrap_or_default(),
        private_meta: private_meta.as_deref().map(Bytes::from).unwrap_or_default(),
        policy: RoomPolicy { max_participants, allow_guests: !no_guests, audio_only, lobby, ..RoomPolicy::default() },
    }
}

/// The full replacement for `current`: every field the user did not mention keeps its
/// current value.
fn update_room(current: Room, args: UpdateRoomArgs) -> UpdateRoom {
    let UpdateRoomArgs {
        id: _,
        version,
        name,
        fields,
        clear_members,
        clear_managers,
        guests,
        no_audio_only,
        no_lobby,
        unlimited,
        force,
    } = args;
    let RoomFields { members, managers, max_participants, public_meta, private_meta, no_guests, audio_only, lobby } =
        fields;
    let list = |given: Vec<String>, clear: bool, current: Vec<Identity>| {
        if clear {
            Vec::new()
        } else if given.is_empty() {
            current
        } else {
            identities(given)
        }
    };
    // A flag pair (`--no-guests`/`--guests`) sets the value; neither keeps it.
    let toggle = |on: bool, off: bool, current: bool| {
        if on {
            true
        } else if off {
            false
        } else {
            current
        }
    };
    let mut policy = current.policy;
    policy.allow_guests = toggle(guests, no_guests, policy.allow_guests);
    policy.audio_only = toggle(audio_only, no_audio_only, policy.audio_only);
    policy.lobby = toggle(lobby, no_lobby, policy.lobby);
    if unlimited {
        policy.max_participants = None;
    } else if max_participants.is_some() {
        policy.max_participants = max_participants;
    }
    UpdateRoom {
        name: name.unwrap_or(current.name),
        members: list(members, clear_members, current.members),
        managers: list(managers, clear_managers, current.managers),
        public_meta: public_meta.as_deref().map(Bytes::from).unwrap_or(current.public_meta),
        private_meta: private_meta.as_deref().map(Bytes::from).unwrap_or(current.private_meta),
        policy,
        version,
        force,
    }
}

fn create_token(args: CreateTokenArgs) -> CreateToken {
    let grants = Grants {
        publish: !args.no_publish,
        subscribe: !args.no_subscribe,
        data: !args.no_data,
        moderator: args.moderator,
        ..Grants::default()
    };
    CreateToken { room: args.room.into(), identity: args.identity.into(), name: args.name, ttl: args.ttl, grants }
}

impl From<ApiError> for CliError {
    fn from(e: ApiError) -> Self {
        CliError::Api(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::{Cli, Command};
    use clap::Parser;

    fn room(version: u64) -> Room {
        Room {
            id: "r".into(),
            name: "Old".into(),
            members: vec!["alice".into()],
            managers: vec!["alice".into()],
            public_meta: Bytes::from("pub"),
            private_meta: Bytes::from("priv"),
            policy: RoomPolicy { max_participants: Some(4), audio_only: true, ..RoomPolicy::default() },
            version,
            created_at: 1,
            updated_at: 2,
        }
    }

    fn update_args(extra: &[&str]) -> UpdateRoomArgs {
        let mut argv = vec!["confer-cli", "room", "update", "r", "--version", "7"];
        argv.extend_from_slice(extra);
        match Cli::parse_from(argv).command {
            Command::Room(RoomCommand::Update(args)) => args,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn update_keeps_what_is_not_given() {
        let u = update_room(room(7), update_args(&["--name", "New"]));
        assert_eq!(u.name, "New");
        assert_eq!(u.members, vec![Identity::from("alice")]);
        assert_eq!(u.public_meta, Bytes::from("pub"));
        assert_eq!(u.policy.max_participants, Some(4));
        assert!(u.policy.audio_only);
        assert_eq!((u.version, u.force), (7, false));
    }

    #[test]
    fn update_replaces_and_clears_what_is_given() {
        let u = update_room(
            room(7),
            update_args(&[
                "--member",
                "bob",
                "--clear-managers",
                "--no-audio-only",
                "--unlimited",
                "--no-guests",
                "--private-meta",
                "x",
                "--force",
            ]),
        );
        assert_eq!(u.members, vec![Identity::from("bob")]);
        assert!(u.managers.is_empty());
        assert!(!u.policy.audio_only && !u.policy.allow_guests);
        assert_eq!(u.policy.max_participants, None);
        assert_eq!(u.private_meta, Bytes::from("x"));
        assert!(u.force);
    }

    #[test]
    fn create_maps_flags_to_policy_and_grants() {
        let Command::Room(RoomCommand::Create(args)) =
            Cli::parse_from(["confer-cli", "room", "create", "--name", "N", "--no-guests", "--public-meta", "m"])
                .command
        else {
            panic!()
        };
        let c = create_room(args);
        assert!(!c.policy.allow_guests && !c.policy.audio_only);
        assert_eq!(c.public_meta, Bytes::from("m"));

        let Command::Token(TokenCommand::Create(args)) =
            Cli::parse_from(["confer-cli", "token", "create", "--room", "r", "--identity", "i", "--no-subscribe"])
                .command
        else {
            panic!()
        };
        let t = create_token(args);
        assert!(t.grants.publish && !t.grants.subscribe && t.grants.data && !t.grants.moderator);
    }
}
