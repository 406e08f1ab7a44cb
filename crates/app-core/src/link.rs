//! Join links, as the server writes them (docs/protocol.md, 2.5): the invite's join
//! page, `https://server/j/ROOM?invite=SECRET`, which people click in mail and chat,
//! and the app's own `confer://join?server=URL&room=ID&invite=SECRET` (either may
//! carry `token=JWT` instead of the invite).
//!
//! The home screen's one field takes either link or a bare room id;
//! [`JoinTarget::parse`] tells them apart and explains what is wrong with a link that
//! cannot be used.

use serde::{Deserialize, Serialize};
use url::Url;

use crate::CallError;

/// What lets the app into a room.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, specta::Type)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Access {
    /// A room-scoped secret, traded with a display name for a join token.
    Invite { invite: String },
    /// A join token minted for this user.
    Token { token: String },
    /// Nothing but the room: only the app's own hosted server can let it in.
    RoomOnly,
}

/// Where to join, from a link or from the home screen's fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, specta::Type)]
pub struct JoinTarget {
    /// The server's base URL (`http(s)://host[:port]`), when the link names one.
    pub server: Option<String>,
    pub room: String,
    pub access: Access,
}

impl JoinTarget {
    /// A `confer://join?...` link, or a bare room id.
    pub fn parse(input: &str) -> Result<Self, CallError> {
        let input = input.trim();
        if input.is_empty() {
            return Err(CallError::new("invalid_link", "Enter a join link or a room name."));
        }
        if !input.contains("://") {
            if input.len() > 200 || input.chars().any(|c| c.is_control() || c.is_whitespace()) {
                return Err(CallError::new("invalid_link", "A room name has no spaces and at most 200 characters."));
            }
            return Ok(Self { server: None, room: input.to_owned(), access: Access::RoomOnly });
        }
        let bad = |why: &str| CallError::new("invalid_link", format!("This join link cannot be used: {why}."));
        let url = Url::parse(input).map_err(|_| bad("it is not a link"))?;
        let (mut server, mut room, mut invite, mut token) = (None, None, None, None);
        match url.scheme() {
            "confer" if url.host_str() == Some("join") => {}
            "http" | "https" => {
                // `<server>/j/<room>`: the server may sit under a path of its own.
                let path = url.path();
                let at = path.rfind("/j/").ok_or_else(|| bad("it is not a Confer meeting link"))?;
                let name = &path[at + 3..];
                if name.is_empty() || name.contains('/') {
                    return Err(bad("it names no room"));
                }
                let decoded = percent_encoding::percent_decode_str(name).decode_utf8();
                room = Some(decoded.map_err(|_| bad("its room name is not valid"))?.into_owned());
                server = Some(format!("{}{}", url.origin().ascii_serialization(), &path[..at]));
            }
            _ => return Err(bad("Confer links start with https:// or confer://join")),
        }
        for (k, v) in url.query_pairs() {
            let v = v.trim().to_owned();
            match k.as_ref() {
                "server" if url.scheme() == "confer" => server = Some(v),
                "room" if url.scheme() == "confer" => room = Some(v),
                "invite" => invite = Some(v),
                "token" => token = Some(v),
                _ => {}
            }
        }
        let room = room.filter(|r| !r.is_empty()).ok_or_else(|| bad("it names no room"))?;
        if let Some(s) = &server {
            confer_client::endpoint::server_base(s).map_err(|_| bad("its server address is not valid"))?;
        }
        let access = match (invite.filter(|i| !i.is_empty()), token.filter(|t| !t.is_empty())) {
            (_, Some(token)) => Access::Token { token },
            (Some(invite), None) => Access::Invite { invite },
            (None, None) => return Err(bad("it carries no invite")),
        };
        Ok(Self { server, room, access })
    }

    /// The link form of this target (for "copy invite link"): the join page when the
    /// server is known, else the app's own form.
    pub fn to_link(&self) -> String {
        if let (Some(server), Access::Invite { invite }) = (&self.server, &self.access) {
            let mut url = match Url::parse(&format!("{}/j/", server.trim_end_matches('/'))) {
                Ok(url) => url,
                Err(_) => return self.to_app_link(),
            };
            url.path_segments_mut().expect("an http(s) URL has a path").pop_if_empty().push(&self.room);
            url.query_pairs_mut().append_pair("invite", invite);
            return url.to_string();
        }
        self.to_app_link()
    }

    /// The `confer://join?...` form of this target.
    pub fn to_app_link(&self) -> String {
        let mut url = Url::parse("confer://join").expect("a constant URL");
        {
            let mut q = url.query_pairs_mut();
            if let Some(s) = &self.server {
                q.append_pair("server", s);
            }
            q.append_pair("room", &self.room);
            match &self.access {
                Access::Invite { invite } => {
                    q.append_pair("invite", invite);
                }
                Access::Token { token } => {
                    q.append_pair("token", token);
                }
                Access::RoomOnly => {}
            }
        }
        url.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_servers_links() {
        let t = JoinTarget::parse(
            "confer://join?server=http%3A%2F%2F127.0.0.1%3A7880&room=standup&invite=nYwhRL8LO-FpbWkObr2jzDwJ",
        )
        .unwrap();
        assert_eq!(t.server.as_deref(), Some("http://127.0.0.1:7880"));
        assert_eq!(t.room, "standup");
        assert_eq!(t.access, Access::Invite { invite: "nYwhRL8LO-FpbWkObr2jzDwJ".into() });
        assert_eq!(JoinTarget::parse(&t.to_link()).unwrap(), t);

        let t = JoinTarget::parse("confer://join?room=r&token=abc.def.ghi").unwrap();
        assert_eq!(t.access, Access::Token { token: "abc.def.ghi".into() });
    }

    #[test]
    fn reads_join_page_links() {
        let t = JoinTarget::parse("https://meet.example.org/j/stand%20up?invite=nYwh-RL8").unwrap();
        assert_eq!(t.server.as_deref(), Some("https://meet.example.org"));
        assert_eq!(t.room, "stand up");
        assert_eq!(t.access, Access::Invite { invite: "nYwh-RL8".into() });
        assert_eq!(t.to_link(), "https://meet.example.org/j/stand%20up?invite=nYwh-RL8");
        assert_eq!(JoinTarget::parse(&t.to_app_link()).unwrap(), t);

        // Behind a proxy under a path, on a port, with a token.
        let t = JoinTarget::parse("http://10.0.0.5:7880/confer/j/RM_x?token=a.b.c").unwrap();
        assert_eq!(t.server.as_deref(), Some("http://10.0.0.5:7880/confer"));
        assert_eq!((t.room.as_str(), t.access), ("RM_x", Access::Token { token: "a.b.c".into() }));
    }

    #[test]
    fn a_bare_room_is_a_room() {
        let t = JoinTarget::parse("  weekly-sync ").unwrap();
        assert_eq!((t.room.as_str(), t.access, t.server), ("weekly-sync", Access::RoomOnly, None));
    }

    #[test]
    fn unusable_links_say_why() {
        for (link, why) in [
            ("", "Enter"),
            ("https://example.org/join?room=r&invite=x", "not a Confer meeting link"),
            ("https://example.org/j/?invite=x", "no room"),
            ("https://example.org/j/r", "no invite"),
            ("ftp://example.org/j/r?invite=x", "https://"),
            ("confer://join?invite=x", "no room"),
            ("confer://join?room=r", "no invite"),
            ("confer://join?room=r&invite=x&server=ftp%3A%2F%2Fh", "server address"),
            ("two words", "no spaces"),
        ] {
            let e = JoinTarget::parse(link).unwrap_err();
            assert_eq!(e.code, "invalid_link");
            assert!(e.message.contains(why), "{link:?}: {}", e.message);
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { failure_persistence: None, ..Default::default() })]

        /// Whatever is pasted or clicked, the answer is a target or `invalid_link`.
        #[test]
        fn any_input_is_read_or_refused_with_a_reason(
            input in proptest::prop_oneof![
                "\\PC{0,80}",
                "confer://join\\?[a-z]{0,8}=[^&]{0,40}(&[a-z]{0,8}=[^&]{0,40}){0,4}",
                "confer://[a-z]{0,6}[/?#%&=:@a-zA-Z0-9.-]{0,60}",
                "https?://[a-z.]{1,12}(:[0-9]{1,5})?(/[a-zA-Z0-9%]{0,6}){0,2}/j/[^?]{0,12}\\?[a-z]{0,7}=[^&]{0,20}",
            ]
        ) {
            match JoinTarget::parse(&input) {
                Ok(t) => proptest::prop_assert!(!t.room.is_empty()),
                Err(e) => proptest::prop_assert_eq!(e.code.as_str(), "invalid_link"),
            }
        }
    }
}
