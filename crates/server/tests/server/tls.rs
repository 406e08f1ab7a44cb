//! HTTPS and WSS without a proxy (`--tls-cert`, `--tls-key`): the room API, the join
//! page and signaling over TLS with a certificate the test makes; plain HTTP to the
//! TLS port is turned away without harming the server; half a configuration, or a
//! key that does not match, is refused at start.

use std::sync::Arc;

use confer_proto::signal::{ClientMessage, Request, ServerMessage};
use confer_proto::token::Invite;
use confer_server::config::TlsFiles;
use confer_server::{Args, Server};
use futures_util::{SinkExt, StreamExt};
use reqwest::Method;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use crate::common::*;

/// A self-signed certificate for 127.0.0.1 and localhost, written as PEM files.
fn certificate(dir: &std::path::Path) -> (TlsFiles, CertificateDer<'static>) {
    let names = vec!["127.0.0.1".to_owned(), "localhost".to_owned()];
    let rcgen::CertifiedKey { cert, signing_key } = rcgen::generate_simple_self_signed(names).unwrap();
    let files = TlsFiles { cert: dir.join("cert.pem"), key: dir.join("key.pem") };
    std::fs::write(&files.cert, cert.pem()).unwrap();
    std::fs::write(&files.key, signing_key.serialize_pem()).unwrap();
    (files, cert.der().clone())
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("confer-tls-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test]
async fn https_and_wss_with_the_servers_own_certificate() {
    let dir = temp_dir("serve");
    let (files, der) = certificate(&dir);
    let mut t = TestServer::with(confer_server::ServerConfig { tls: Some(files), ..config() }).await;
    assert!(t.server.url().starts_with("https://"), "{}", t.server.url());
    t.http =
        reqwest::Client::builder().add_root_certificate(reqwest::Certificate::from_der(&der).unwrap()).build().unwrap();

    // The room API and the join page, whose links now say https.
    t.create_room(json!({"id": "secure", "name": "Secure"})).await;
    let invite: Invite =
        t.api(Method::POST, "/v1/rooms/secure/invites").json(&json!({})).send().await.unwrap().json().await.unwrap();
    assert!(invite.link.starts_with("https://127.0.0.1:"), "{}", invite.link);
    assert!(invite.app_link.starts_with("confer://join?server=https%3A%2F%2F127.0.0.1"), "{}", invite.app_link);
    let page = t.http.get(&invite.link).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("Secure"));

    // Plain HTTP to the TLS port gets nowhere, and the server carries on.
    let plain = reqwest::Client::new().get(format!("http://{}/healthz", t.server.http_addr())).send().await;
    assert!(plain.is_err(), "plain HTTP was answered: {plain:?}");

    // Signaling over WSS: a join is answered.
    let token = t.token("secure", "alice").await;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(der).unwrap();
    let client = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(t.server.http_addr()).await.unwrap();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(client)).connect(name, tcp).await.unwrap();
    let url = format!("wss://{}/v1/signal", t.server.http_addr());
    let (mut ws, _) = tokio_tungstenite::client_async(url, tls).await.expect("the WebSocket upgrade over TLS");
    let join = ClientMessage { id: 1, request: Request::Join(join_request(&token)) };
    ws.send(Message::text(serde_json::to_string(&join).unwrap())).await.unwrap();
    let answer = loop {
        match tokio::time::timeout(WAIT, ws.next()).await.expect("an answer in time") {
            Some(Ok(Message::Text(text))) => break serde_json::from_str::<ServerMessage>(text.as_str()).unwrap(),
            Some(Ok(_)) => continue,
            other => panic!("the connection ended: {other:?}"),
        }
    };
    match answer {
        ServerMessage::Response { id: Some(1), outcome } => {
            assert!(serde_json::to_value(&outcome).unwrap().get("result").is_some(), "{outcome:?}")
        }
        other => panic!("not the join's answer: {other:?}"),
    }
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test]
async fn a_half_or_mismatched_tls_configuration_is_refused() {
    let dir = temp_dir("refused");
    let (files, _) = certificate(&dir);
    let half = Args { tls_cert: Some(files.cert.clone()), ..Args::default() }.resolve().unwrap_err();
    assert!(half.to_string().contains("--tls-cert and --tls-key"), "{half}");

    let (other, _) = certificate(&temp_dir("other"));
    let mismatched = TlsFiles { cert: files.cert.clone(), key: other.key };
    let err = Server::start(confer_server::ServerConfig { tls: Some(mismatched), ..config() }).await.err().unwrap();
    assert!(err.to_string().contains("do not make a pair"), "{err}");
    let missing = TlsFiles { cert: dir.join("nope.pem"), key: files.key };
    let err = Server::start(confer_server::ServerConfig { tls: Some(missing), ..config() }).await.err().unwrap();
    assert!(err.to_string().contains("cannot read the TLS certificate"), "{err}");
    std::fs::remove_dir_all(dir).ok();
}
