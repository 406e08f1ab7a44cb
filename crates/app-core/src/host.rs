//! "Host a meeting on this machine": the room server, started inside the app.
//!
//! The server listens on every interface and advertises this machine's LAN address,
//! so the invite link it writes works for another Confer on the same network as well
//! as on this machine. Its rooms live in a SQLite file in the app's data directory.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, UdpSocket};

use confer_client::api::{ApiClient, Call as ApiCall};
use confer_client::proto::room::CreateRoom;
use confer_client::proto::token::{CreateInvite, Invite};
use confer_server::{Server, ServerConfig};

use crate::call::HostAccess;
use crate::publish::unix_ms;
use crate::CallError;

/// The server the app runs; stopped when dropped (or with [`HostedServer::stop`]).
pub struct HostedServer {
    server: Option<Server>,
    url: String,
}

/// A meeting created on the hosted server.
#[derive(Debug, Clone)]
pub struct Meeting {
    pub room: String,
    pub access: HostAccess,
}

impl HostedServer {
    /// Starts the server with its rooms in `db` (a SQLite path, or `:memory:`).
    pub async fn start(db: String) -> Result<Self, CallError> {
        Self::start_with(db, confer_server::ServerConfig::default().token_ttl_secs).await
    }

    /// [`HostedServer::start`] with join tokens that live `token_ttl_secs` (calls renew
    /// them with their refresh tokens).
    pub async fn start_with(db: String, token_ttl_secs: u64) -> Result<Self, CallError> {
        let ip = lan_address();
        let http_port = free_port(7880, |p| TcpListener::bind((Ipv4Addr::UNSPECIFIED, p)).map(|l| l.local_addr()))?;
        let udp_port = free_port(7881, |p| UdpSocket::bind((Ipv4Addr::UNSPECIFIED, p)).map(|s| s.local_addr()))?;
        let url = format!("http://{}", SocketAddr::new(ip, http_port));
        let config = ServerConfig {
            http_addr: SocketAddr::from((Ipv4Addr::UNSPECIFIED, http_port)),
            db,
            public_url: Some(url.clone()),
            udp_addr: SocketAddr::from((Ipv4Addr::UNSPECIFIED, udp_port)),
            advertise_addr: Some(SocketAddr::new(ip, udp_port)),
            token_ttl_secs,
            ..ServerConfig::default()
        };
        let server = Server::start(config).await.map_err(|e| {
            tracing::error!(error = %e, "the hosted server did not start");
            CallError::new("host_failed", format!("The meeting server could not start: {e}"))
        })?;
        tracing::info!(url, "hosting meetings");
        Ok(Self { server: Some(server), url })
    }

    /// The address others reach it at.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A new room that admits guests, and an invite link to it.
    pub async fn create_meeting(&self, title: &str) -> Result<Meeting, CallError> {
        let server = self.server.as_ref().ok_or_else(|| CallError::new("host_failed", "The server is stopped."))?;
        let (key, secret) = (server.api_key().to_owned(), server.api_secret().to_owned());
        let base = confer_client::endpoint::server_base(&server.url()).map_err(|e| failed(&e))?;
        let api =
            ApiClient::new(base, Some(key.clone()), Some(secret.clone()), "confer-app").map_err(|e| failed(&e))?;
        let room = format!("meeting-{}", unix_ms() % 1_000_000_000);
        let create = CreateRoom {
            id: Some(room.as_str().into()),
            name: if title.trim().is_empty() { "Meeting".into() } else { title.trim().to_owned() },
            ..CreateRoom::default()
        };
        api.send(&ApiCall::CreateRoom(create)).await.map_err(|e| failed(&e))?;
        let invite: Invite = api
            .send_as(&ApiCall::CreateInvite(room.as_str().into(), CreateInvite::default()))
            .await
            .map_err(|e| failed(&e))?;
        Ok(Meeting {
            room,
            access: HostAccess { server: self.url.clone(), api_key: key, api_secret: secret, invite_link: invite.link },
        })
    }

    pub async fn stop(mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown().await;
        }
    }
}

fn failed(e: &dyn std::fmt::Display) -> CallError {
    tracing::error!(error = %e, "creating a meeting failed");
    CallError::new("host_failed", format!("The meeting could not be created: {e}"))
}

/// `preferred` when it is free, else any free port.
fn free_port(
    preferred: u16,
    bind: impl Fn(u16) -> std::io::Result<std::io::Result<SocketAddr>>,
) -> Result<u16, CallError> {
    for port in [preferred, 0] {
        if let Ok(Ok(addr)) = bind(port) {
            return Ok(addr.port());
        }
    }
    Err(CallError::new("host_failed", "No free port to host a meeting on."))
}

/// The address this machine uses toward the network (no packet is sent), or loopback
/// without a network.
fn lan_address() -> IpAddr {
    let probe = || -> std::io::Result<IpAddr> {
        let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
        socket.connect((Ipv4Addr::new(192, 0, 2, 1), 9))?;
        Ok(socket.local_addr()?.ip())
    };
    probe().ok().filter(|ip| !ip.is_unspecified()).unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::link::{Access, JoinTarget};

    #[tokio::test]
    async fn a_hosted_meeting_has_a_working_invite_link() {
        let host = HostedServer::start(":memory:".into()).await.unwrap();
        let meeting = host.create_meeting("Standup").await.unwrap();
        let target = JoinTarget::parse(&meeting.access.invite_link).unwrap();
        assert_eq!(target.room, meeting.room);
        assert_eq!(target.server.as_deref(), Some(host.url()));
        assert!(matches!(target.access, Access::Invite { .. }));
        // The link's server answers.
        let health = reqwest::get(format!("{}/healthz", host.url())).await.unwrap();
        assert!(health.status().is_success());
        host.stop().await;
    }
}
