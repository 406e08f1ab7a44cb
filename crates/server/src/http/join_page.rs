//! The join page, `GET /j/{room}?invite=...` (or `?token=...`): what an invite link
//! opens in a browser. It names the meeting and offers to open it in the Confer app
//! (the `confer://` form of the same link) or to join in the browser (the web client at
//! `/web/`, given the link after `#`), or says plainly why the link cannot be
//! used: the meeting was deleted, the invite expired or was used up, the meeting is
//! full or takes no guests.
//!
//! The page is plain HTML with no script. The invite is a secret in the page's
//! address, so the page sends no referrer, and it is never cached.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use confer_proto::{ErrorCode, RoomId};
use serde::Deserialize;

use super::ApiPath;
use crate::auth::hash_secret;
use crate::hub::Now;
use crate::store::{InviteState, Storage};
use crate::ServerState;

#[derive(Debug, Deserialize)]
pub struct LinkQuery {
    invite: Option<String>,
    token: Option<String>,
}

/// What the page says: the meeting and how to open it, or why it cannot be joined.
#[derive(Debug, PartialEq)]
enum Page {
    /// `web_link` when the server carries the web client.
    Join {
        meeting: String,
        app_link: String,
        web_link: Option<String>,
    },
    Refused {
        status: StatusCode,
        title: &'static str,
        detail: String,
    },
}

pub async fn show(
    State(state): State<Arc<ServerState>>,
    ApiPath(room): ApiPath<RoomId>,
    Query(query): Query<LinkQuery>,
) -> Response {
    let page = match decide(&state, &room, query).await {
        Ok(page) => page,
        Err(code) => {
            tracing::error!(%room, ?code, "join page failed");
            refused(
                StatusCode::SERVICE_UNAVAILABLE,
                "Something went wrong",
                "The server could not look up this meeting. Try again in a moment.",
            )
        }
    };
    if let Page::Refused { title, .. } = &page {
        tracing::info!(%room, title, "join page refused a link");
    }
    render(&page)
}

fn refused(status: StatusCode, title: &'static str, detail: impl Into<String>) -> Page {
    Page::Refused { status, title, detail: detail.into() }
}

async fn decide(state: &ServerState, room: &RoomId, query: LinkQuery) -> Result<Page, ErrorCode> {
    let now = Now::system();
    let Some(stored) = state.store.room(room).await.map_err(|e| crate::error::ApiError::from(e).code)? else {
        return Ok(refused(
            StatusCode::NOT_FOUND,
            "This meeting no longer exists",
            "It was deleted, or the link is mistyped. Ask whoever invited you for a new link.",
        ));
    };
    let meeting = if stored.name.trim().is_empty() { stored.id.0.clone() } else { stored.name.clone() };
    let credential = match (query.invite.filter(|i| !i.is_empty()), query.token.filter(|t| !t.is_empty())) {
        (Some(invite), _) => {
            let known = state
                .store
                .invite_state(hash_secret(&invite), now.unix_ms)
                .await
                .map_err(|e| crate::error::ApiError::from(e).code)?;
            match known {
                Some((of, _)) if of != *room => return Ok(not_valid()),
                None => return Ok(not_valid()),
                Some((_, InviteState::Expired)) => {
                    return Ok(refused(
                        StatusCode::GONE,
                        "This invite has expired",
                        format!("The invite to {meeting} is no longer valid. Ask whoever invited you for a new link."),
                    ))
                }
                Some((_, InviteState::UsedUp)) => {
                    return Ok(refused(
                        StatusCode::GONE,
                        "This invite has been used up",
                        format!("The invite to {meeting} was for a limited number of people, and they have all joined. Ask whoever invited you for a new link."),
                    ))
                }
                Some((_, InviteState::Good)) if !stored.policy.allow_guests => {
                    return Ok(refused(
                        StatusCode::FORBIDDEN,
                        "This meeting does not admit guests",
                        format!("{meeting} is open to its members only. Ask its host to let guests in."),
                    ))
                }
                Some((_, InviteState::Good)) => ("invite", invite),
            }
        }
        (None, Some(token)) => match state.credentials.verify(&token, now.unix_secs()) {
            Ok(t) if t.room == *room => ("token", token),
            Err(e) if e.code == ErrorCode::TokenExpired => {
                return Ok(refused(
                    StatusCode::GONE,
                    "This link has expired",
                    format!("The link to {meeting} is no longer valid. Ask whoever invited you for a new one."),
                ))
            }
            _ => return Ok(not_valid()),
        },
        (None, None) => return Ok(not_valid()),
    };
    // In a cluster, the meeting may be on another node.
    let session = match stored.policy.max_participants {
        Some(_) => crate::nodes::find_session(state, room).await,
        None => None,
    };
    if let (Some(max), Some(session)) = (stored.policy.max_participants, session) {
        if session.participants.len() >= max as usize {
            return Ok(refused(
                StatusCode::SERVICE_UNAVAILABLE,
                "This meeting is full",
                format!("{meeting} has room for {max} people, and all {max} places are taken. Try again when someone leaves."),
            ));
        }
    }
    let app_link = super::tokens::app_link(&state.public_url, room, credential.0, &credential.1);
    // Relative, so that it holds below a proxy's path prefix; after `#`, so that the
    // secret stays out of the web client's request.
    let web_link = super::web_client::available().then(|| {
        format!(
            "../web/#/j/{}?{}={}",
            super::tokens::url_encode(&room.0),
            credential.0,
            super::tokens::url_encode(&credential.1)
        )
    });
    Ok(Page::Join { meeting, app_link, web_link })
}

fn not_valid() -> Page {
    refused(
        StatusCode::NOT_FOUND,
        "This link is not valid",
        "It may be incomplete: copy the whole link, or ask whoever invited you for a new one.",
    )
}

fn render(page: &Page) -> Response {
    let (status, title, body) = match page {
        Page::Join { meeting, app_link, web_link } => (
            StatusCode::OK,
            meeting.as_str(),
            format!(
                r#"<p class="lead">You are invited to join</p>
<h1 id="meeting">{meeting}</h1>
<a class="button" id="open-app" href="{link}">Open in Confer</a>
{web}<p class="small">Don't have Confer? It runs on Windows, macOS and Linux: ask whoever invited you where to get it, then open this link again{or_browser}.</p>"#,
                meeting = esc(meeting),
                link = esc(app_link),
                web = web_link
                    .as_ref()
                    .map(|l| format!(
                        r#"<a class="button secondary" id="join-web" href="{}">Join in this browser</a>"#,
                        esc(l)
                    ))
                    .unwrap_or_default(),
                or_browser =
                    if web_link.is_some() { ", or join in this browser without installing anything" } else { "" },
            ),
        ),
        Page::Refused { status, title, detail } => {
            (*status, *title, format!(r#"<h1 id="refused">{}</h1><p id="detail">{}</p>"#, esc(title), esc(detail)))
        }
    };
    let html = format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · Confer</title>
<style>
body {{ margin: 0; min-height: 100vh; display: grid; place-items: center; background: #111418; color: #e8eaed;
  font: 16px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; }}
main {{ max-width: 28rem; padding: 2.5rem; background: #1c2026; border-radius: 16px; text-align: center; }}
.brand {{ margin: 0 0 1.5rem; font-weight: 700; letter-spacing: .04em; color: #8ab4f8; }}
h1 {{ margin: .25rem 0 1.5rem; font-size: 1.6rem; overflow-wrap: anywhere; }}
.lead {{ margin: 0; color: #9aa0a6; }}
.button {{ display: inline-block; padding: .75rem 1.5rem; border-radius: 999px; background: #8ab4f8; color: #111418;
  font-weight: 600; text-decoration: none; }}
.button.secondary {{ margin-left: .5rem; background: transparent; color: #8ab4f8; box-shadow: inset 0 0 0 1px #8ab4f8; }}
.button:focus-visible {{ outline: 3px solid #e8eaed; outline-offset: 2px; }}
.small {{ margin: 1.5rem 0 0; font-size: .875rem; color: #9aa0a6; }}
</style></head>
<body><main><p class="brand">Confer</p>
{body}
</main></body></html>
"#,
        title = esc(title),
    );
    let mut response = (status, html).into_response();
    let headers = response.headers_mut();
    let set = |v: &'static str| HeaderValue::from_static(v);
    headers.insert(header::CONTENT_TYPE, set("text/html; charset=utf-8"));
    headers.insert(header::CACHE_CONTROL, set("no-store"));
    headers.insert(header::REFERRER_POLICY, set("no-referrer"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, set("nosniff"));
    headers.insert(header::X_FRAME_OPTIONS, set("DENY"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        set("default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"),
    );
    response
}

/// Escapes text for HTML content and attribute values.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn names_are_escaped_everywhere() {
        let page = Page::Join {
            meeting: "<script>alert(1)</script> & \"friends\"".into(),
            app_link: "confer://join?room=a&invite=b".into(),
            web_link: Some("../web/#/j/a?invite=b&c".into()),
        };
        let response = render(&page);
        let csp = response.headers()[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(csp.starts_with("default-src 'none'"), "{csp}");
        let body = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
        let body = String::from_utf8(body.to_vec()).unwrap();
        assert!(!body.contains("<script>"), "{body}");
        assert!(body.contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;friends&quot;"));
        assert!(body.contains(r#"href="confer://join?room=a&amp;invite=b""#));
        assert!(body.contains(r#"href="../web/#/j/a?invite=b&amp;c""#));
    }
}
