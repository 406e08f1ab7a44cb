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
        // The usual ports when they are free, else any: a port found free can be taken
        // before the server binds it (another app, another hosted server), so a failed
        // start is tried again on ports the system picks.
        let mut last_error = String::new();
        for preferred in [(7880, 7881), (0, 0), (0, 0)] {
            let http_port =
                free_port(preferred.0, |p| TcpListener::bind((Ipv4Addr::UNSPECIFIED, p)).map(|l| l.local_addr()))?;
            let udp_port =
                free_port(preferred.1, |p| UdpSocket::bind((Ipv4Addr::UNSPECIFIED, p)).map(|s| s.local_addr()))?;
            let url = format!("http://{}", SocketAddr::new(ip, http_port));
            let config = ServerConfig {
                http_addr: SocketAddr::from((Ipv4Addr::UNSPECIFIED, http_port)),
                db: db.clone(),
                public_url: Some(url.clone()),
                udp_addr: SocketAddr::from((Ipv4Addr::UNSPECIFIED, udp_port)),
                advertise_ips: vec![ip],
                token_ttl_secs,
                ..ServerConfig::default()
            };
            match Server::start(config).await {
                Ok(server) => {
                    tracing::info!(url, "hosting meetings");
                    return Ok(Self { server: Some(server), url });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "the hosted server did not start; trying other ports");
                    last_error = e.to_string();
                }
            }
        }
        tracing::error!(error = %last_error, "the hosted server did not start");
        Err(CallError::new("host_failed", format!("The meeting server could not start: {last_error}")))
    }

    /// The address others reach it at.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Who can reach this server with its invite links.
    pub fn reach(&self) -> Reach {
        let host = self.url.trim_start_matches("http://").rsplit_once(':').map_or("", |(h, _)| h);
        host.trim_matches(|c| c == '[' || c == ']').parse().map_or(Reach::LocalNetwork, Reach::of)
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

/// Who can reach a meeting hosted on this machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// No network: only this computer.
    ThisComputer,
    /// A private address (home, office, hotel networks; carrier NAT): people on the same
    /// network only.
    LocalNetwork,
    /// A public address: anyone, unless a firewall is in the way.
    Internet,
}

impl Reach {
    pub fn of(ip: IpAddr) -> Reach {
        if ip.is_loopback() || ip.is_unspecified() {
            return Reach::ThisComputer;
        }
        let private = match ip {
            IpAddr::V4(v4) => {
                let [a, b, ..] = v4.octets();
                // RFC 1918, link-local, and carrier-grade NAT (RFC 6598).
                v4.is_private() || v4.is_link_local() || (a == 100 && (64..128).contains(&b))
            }
            // Unique local (fc00::/7) and link-local (fe80::/10).
            IpAddr::V6(v6) => (v6.segments()[0] & 0xfe00) == 0xfc00 || (v6.segments()[0] & 0xffc0) == 0xfe80,
        };
        if private {
            Reach::LocalNetwork
        } else {
            Reach::Internet
        }
    }

    /// What to tell the host about its invite links, when they do not reach everyone.
    pub fn note(self, url: &str) -> Option<String> {
        match self {
            Reach::Internet => None,
            Reach::ThisComputer => Some(
                "This computer is on no network: the invite link works only on this computer.                  Connect to a network, or use a Confer server on the internet (set its address on the home screen)."
                    .to_owned(),
            ),
            Reach::LocalNetwork => Some(format!(
                "The invite link works only for people on this network ({url} is a private address).                  For people elsewhere, use a Confer server on the internet (set its address on the home screen),                  or one whose administrator has set up a TURN relay."
            )),
        }
    }
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

    #[test]
    fn invite_links_say_who_they_reach() {
        let of = |ip: &str| Reach::of(ip.parse().unwrap());
        assert_eq!(of("127.0.0.1"), Reach::ThisComputer);
        for lan in ["192.168.1.20", "10.1.2.3", "172.20.0.5", "100.72.1.1", "169.254.3.4", "fd00::5", "fe80::1"] {
            assert_eq!(of(lan), Reach::LocalNetwork, "{lan}");
        }
        for public in ["203.0.113.7", "8.8.8.8", "2001:db8::7", "172.32.0.1"] {
            assert_eq!(of(public), Reach::Internet, "{public}");
        }
        assert!(Reach::LocalNetwork
            .note("http://192.168.1.20:7880")
            .unwrap()
            .contains("only for people on this network"));
        assert!(Reach::Internet.note("http://203.0.113.7:7880").is_none());
    }

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
