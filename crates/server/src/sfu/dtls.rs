//! The SFU's DTLS: str0m's own (dimpl over AWS-LC), repeating its handshake flights
//! later than dimpl's default so that webrtc-rs clients finish their handshake under loss.
//!
//! webrtc-rs's DTLS (`rtc-dtls` 0.21, the stack of Confer's own SDK) retransmits its
//! flight on a fixed 1 s timer, and *stops that timer* when the peer repeats a flight
//! it already has. When the client's final flight (certificate, key exchange, Finished)
//! is lost and the server's timer fires first, the client gets the server's repeat,
//! stops its timer, and waits for a Finished that can never come: the connection
//! stays "connecting" until the SDK gives it up. dimpl's first repeat comes after
//! 1 s ± 25 %, so at 5 % loss roughly one call in forty lost its publisher connection.
//!
//! Starting at [`FLIGHT_START_RTO`] (2.5 s ± 25 %, so never before 1.8 s) lets the
//! client's own retransmission, at 1 s and again at 2 s, arrive first. Nothing is
//! slower for a flight the server lost: the client repeats its previous flight at 1 s
//! and dimpl answers that repeat at once. Browsers are unaffected either way.

use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::crypto::dtls::{
    DtlsCert, DtlsImplError, DtlsInstance, DtlsOutput, DtlsProvider, DtlsVersion, ProtocolVersion,
};
use str0m::crypto::{CryptoError, CryptoProvider};

/// The server's first retransmission of a handshake flight (doubling after).
pub const FLIGHT_START_RTO: Duration = Duration::from_millis(2500);

/// The crypto provider of every SFU transport: the default one with [`PatientDtls`].
pub fn crypto_provider() -> Arc<CryptoProvider> {
    static PROVIDER: std::sync::OnceLock<Arc<CryptoProvider>> = std::sync::OnceLock::new();
    PROVIDER
        .get_or_init(|| {
            static DTLS: PatientDtls = PatientDtls;
            Arc::new(CryptoProvider { dtls_provider: &DTLS, ..str0m::crypto::from_feature_flags() })
        })
        .clone()
}

/// dimpl with [`FLIGHT_START_RTO`], as str0m's AWS-LC provider configures it otherwise.
#[derive(Debug)]
pub struct PatientDtls;

impl DtlsProvider for PatientDtls {
    fn generate_certificate(&self) -> Option<DtlsCert> {
        str0m::crypto::from_feature_flags().dtls_provider.generate_certificate()
    }

    fn new_dtls(
        &self,
        cert: &DtlsCert,
        now: Instant,
        version: DtlsVersion,
        mtu: Option<usize>,
    ) -> Result<Box<dyn DtlsInstance>, CryptoError> {
        // ICE has already proved the return path, so no cookie exchange (as str0m).
        let mut builder = dimpl::Config::builder().use_server_cookie(false).flight_start_rto(FLIGHT_START_RTO);
        if let Some(mtu) = mtu {
            builder = builder.mtu(mtu);
        }
        let config = Arc::new(builder.build().map_err(|e| CryptoError::Other(format!("DTLS configuration: {e}")))?);
        let cert =
            dimpl::DtlsCertificate { certificate: cert.certificate.clone(), private_key: cert.private_key.clone() };
        let dtls = match version {
            DtlsVersion::Dtls12 => dimpl::Dtls::new_12(config, cert, now),
            DtlsVersion::Dtls13 => dimpl::Dtls::new_13(config, cert, now),
            DtlsVersion::Auto => dimpl::Dtls::new_auto(config, cert, now),
            other => return Err(CryptoError::Other(format!("unsupported DTLS version {other}"))),
        };
        Ok(Box::new(Dimpl(dtls)))
    }
}

struct Dimpl(dimpl::Dtls);

impl std::fmt::Debug for Dimpl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Dimpl")
    }
}

impl DtlsInstance for Dimpl {
    fn set_active(&mut self, active: bool) {
        self.0.set_active(active);
    }

    fn handle_packet(&mut self, packet: &[u8]) -> Result<(), DtlsImplError> {
        self.0.handle_packet(packet)
    }

    fn poll_output<'a>(&mut self, buf: &'a mut [u8]) -> DtlsOutput<'a> {
        self.0.poll_output(buf)
    }

    fn handle_timeout(&mut self, now: Instant) -> Result<(), DtlsImplError> {
        self.0.handle_timeout(now)
    }

    fn send_application_data(&mut self, data: &[u8]) -> Result<usize, DtlsImplError> {
        self.0.send_application_data(data)
    }

    fn is_active(&self) -> bool {
        self.0.is_active()
    }

    fn protocol_version(&self) -> Option<ProtocolVersion> {
        self.0.protocol_version()
    }

    fn is_closing(&self) -> bool {
        self.0.is_closing()
    }

    fn is_closed(&self) -> bool {
        self.0.is_closed()
    }

    fn close(&mut self) -> Result<(), DtlsImplError> {
        self.0.close()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::net::SocketAddr;

    use rtc::dtls::config::{ClientAuthType, ConfigBuilder, ExtendedMasterSecretType};
    use rtc::dtls::crypto::Certificate;
    use rtc::dtls::crypto_provider::providers::RingProvider;
    use rtc::dtls::crypto_provider::RTCCryptoProvider;
    use rtc::dtls::endpoint::{Endpoint, EndpointEvent};
    use rtc::dtls::extension::extension_use_srtp::SrtpProtectionProfile;
    use rtc::shared::TransportProtocol;

    use super::*;

    /// The webrtc-rs side's address, and the SFU's.
    const PEER: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 4000);
    const SFU: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 5000);

    /// webrtc-rs's DTLS as the SDK configures it, as the client (it connects now) or
    /// the server.
    fn peer(now: Instant, client: bool) -> Endpoint {
        let provider: Arc<dyn RTCCryptoProvider> = Arc::new(RingProvider::new());
        let cert = Certificate::generate_self_signed(vec!["confer".to_owned()], provider.crypto()).unwrap();
        let config = ConfigBuilder::default()
            .with_crypto_provider(provider)
            .with_certificates(vec![cert])
            .with_srtp_protection_profiles(vec![SrtpProtectionProfile::Srtp_Aead_Aes_128_Gcm])
            .with_client_auth(ClientAuthType::RequireAnyClientCert)
            .with_insecure_skip_verify(true)
            .with_extended_master_secret(ExtendedMasterSecretType::Require)
            .build(client, None)
            .unwrap();
        let config = Arc::new(config);
        if client {
            let mut endpoint = Endpoint::new(PEER, TransportProtocol::UDP, None);
            endpoint.connect(now, SFU, config, None).unwrap();
            endpoint
        } else {
            Endpoint::new(PEER, TransportProtocol::UDP, Some(config))
        }
    }

    /// The handshake type of a datagram's first record, if it is a handshake record.
    fn handshake_type(datagram: &[u8]) -> Option<u8> {
        (datagram.first() == Some(&22)).then(|| datagram.get(13).copied()).flatten()
    }

    /// Runs one handshake in virtual time with `delay` each way, in which the webrtc-rs
    /// side's flight that starts with handshake message `lose` is lost once; returns
    /// when each side connected, if it did within 10 s.
    fn handshake(delay: Duration, peer_is_client: bool, lose: u8) -> (Option<Duration>, Option<Duration>) {
        let start = Instant::now();
        let mut peer = peer(start, peer_is_client);
        let cert = PatientDtls.generate_certificate().unwrap();
        let mut sfu = PatientDtls.new_dtls(&cert, start, DtlsVersion::Dtls12, None).unwrap();
        sfu.set_active(!peer_is_client);
        sfu.handle_timeout(start).unwrap();
        if !peer_is_client {
            // What makes a client send its ClientHello (as str0m does).
            let _ = sfu.handle_packet(&[]);
        }

        // Datagrams on the wire: (arrival, to the SFU?, bytes).
        let mut wire: VecDeque<(Instant, bool, Vec<u8>)> = VecDeque::new();
        let (mut peer_done, mut sfu_done, mut lost) = (None, None, false);
        let mut now = start;
        let mut buf = vec![0; 2000];
        while now < start + Duration::from_secs(10) && (peer_done.is_none() || sfu_done.is_none()) {
            let mut batch = Vec::new();
            while let Some(t) = peer.poll_transmit() {
                batch.push(t.message.to_vec());
            }
            if !lost && batch.first().and_then(|d| handshake_type(d)) == Some(lose) {
                lost = true;
                batch.clear();
            }
            wire.extend(batch.into_iter().map(|d| (now + delay, true, d)));
            let sfu_timeout = loop {
                match sfu.poll_output(&mut buf) {
                    DtlsOutput::Packet(p) => wire.push_back((now + delay, false, p.to_vec())),
                    DtlsOutput::Connected => {
                        sfu_done.get_or_insert(now - start);
                    }
                    DtlsOutput::Timeout(t) => break t,
                    _ => {}
                }
            };
            // The next thing to happen.
            let next = [wire.front().map(|w| w.0), Some(sfu_timeout), peer.poll_timeout(&SFU)];
            let Some(next) = next.into_iter().flatten().min() else { break };
            now = next.max(now);
            if wire.front().is_some_and(|w| w.0 <= now) {
                let (_, to_sfu, datagram) = wire.pop_front().unwrap();
                if to_sfu {
                    sfu.handle_packet(&datagram).unwrap();
                } else {
                    let events = peer.read(now, SFU, None, datagram.as_slice().into()).unwrap();
                    if events.iter().any(|e| matches!(e, EndpointEvent::HandshakeComplete)) {
                        peer_done.get_or_insert(now - start);
                    }
                }
            }
            if sfu_timeout <= now {
                sfu.handle_timeout(now).unwrap();
            }
            if peer.poll_timeout(&SFU).is_some_and(|t| t <= now) {
                peer.handle_timeout(SFU, now).unwrap();
            }
        }
        assert!(lost, "the flight to lose was never sent");
        (peer_done, sfu_done)
    }

    /// Loopback, a continent, and across the world; a few handshakes each, as dimpl's
    /// timer is jittered. Both sides connect soon after webrtc-rs repeats its flight at 1 s.
    fn connects_soon_after_a_second(peer_is_client: bool, lose: u8) {
        for delay in [5, 60, 150] {
            for _ in 0..5 {
                let (peer, sfu) = handshake(Duration::from_millis(delay), peer_is_client, lose);
                let (peer, sfu) = (peer.expect("webrtc-rs connects"), sfu.expect("the SFU connects"));
                let limit = Duration::from_millis(1200 + 6 * delay);
                assert!(peer < limit && sfu < limit, "connected after {peer:?} (webrtc-rs) and {sfu:?} (SFU)");
            }
        }
    }

    /// A publisher connection: the SDK offers, the SFU answers passive (DTLS server).
    #[test]
    fn a_webrtc_rs_client_whose_final_flight_is_lost_still_connects() {
        const CERTIFICATE: u8 = 11;
        connects_soon_after_a_second(true, CERTIFICATE);
    }

    /// A subscriber connection answered passive (DTLS server), as the SDK did before it
    /// answered active like browsers; other clients may.
    #[test]
    fn a_webrtc_rs_server_whose_flight_is_lost_still_connects() {
        const SERVER_HELLO: u8 = 2;
        connects_soon_after_a_second(false, SERVER_HELLO);
    }
}
