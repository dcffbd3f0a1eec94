#![cfg(test)]
//! Mutual TLS: over `https://` the agent presents its node certificate (NODE/node-chain.pem
//! with NODE/node.key) as a TLS client certificate. Checked against a rustls server on
//! loopback that requires one from the operator CA, as a verifier configured for mutual TLS
//! does.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, channel};

use rcgen::{
    BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, SanType,
};
use tokio_rustls::rustls;
use tppguard_agent::push::{Client, ClientOptions, PushError};
use tppguard_agent::sign::NodeCredentials;

struct Pki {
    ca: Issuer<'static, KeyPair>,
    ca_pem: String,
    ca_der: Vec<u8>,
}

fn pki() -> Pki {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "operator CA");
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let cert = params.self_signed(&key).unwrap();
    Pki {
        ca_pem: cert.pem(),
        ca_der: cert.der().to_vec(),
        ca: Issuer::new(params, key),
    }
}

/// A node folder whose Ed25519 key the CA certified for client authentication.
fn node(pki: &Pki, dir: &Path) -> Vec<u8> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "gpu-node-01");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let leaf = params.signed_by(&key, &pki.ca).unwrap();
    std::fs::write(dir.join("node.key"), key.serialize_pem()).unwrap();
    std::fs::write(
        dir.join("node-chain.pem"),
        format!("{}{}", leaf.pem(), pki.ca_pem),
    )
    .unwrap();
    leaf.der().to_vec()
}

/// A one-shot HTTPS server on 127.0.0.1 requiring a client certificate from `pki`'s CA: its
/// URL, and the client certificate it saw (or the handshake's error).
fn mtls_server(pki: &Pki) -> (String, Receiver<Result<Vec<u8>, String>>) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.ca_der.clone().into()).unwrap();
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .unwrap();
    let server_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.subject_alt_names = vec![SanType::IpAddress([127, 0, 0, 1].into())];
    let server_cert = params.signed_by(&server_key, &pki.ca).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![server_cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(server_key.serialize_der().into()),
        )
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        let (tcp, _) = listener.accept().unwrap();
        let conn = rustls::ServerConnection::new(Arc::new(config)).unwrap();
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            match tls.read(&mut byte) {
                Ok(1) => head.push(byte[0]),
                Ok(_) => break,
                Err(e) => {
                    let _ = tx.send(Err(e.to_string()));
                    return;
                }
            }
        }
        let peer = tls
            .conn
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.to_vec())
            .ok_or_else(|| "no client certificate".to_owned());
        let body = r#"{"nonce": "ab", "expires_at": 1}"#;
        let _ = write!(
            tls,
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = tls.flush();
        tls.conn.send_close_notify();
        let _ = tls.flush();
        let _ = tx.send(peer);
    });
    (url, rx)
}

fn options(pki: &Pki, dir: &Path, credentials: Option<&NodeCredentials>) -> ClientOptions {
    let ca = dir.join("server-ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    ClientOptions {
        ca: Some(ca),
        client_cert: credentials.and_then(NodeCredentials::tls_client_cert),
        ..ClientOptions::default()
    }
}

#[test]
fn over_https_the_node_certificate_is_the_tls_client_certificate() {
    let pki = pki();
    let dir = tempfile::tempdir().unwrap();
    let leaf = node(&pki, dir.path());
    let credentials = NodeCredentials::load(dir.path()).unwrap();
    let (url, seen) = mtls_server(&pki);
    let client = Client::new(&url, &options(&pki, dir.path(), Some(&credentials))).unwrap();
    let challenge = client.challenge().unwrap();
    assert_eq!(challenge.nonce, "ab");
    assert_eq!(
        seen.recv().unwrap().unwrap(),
        leaf,
        "the node's own certificate"
    );
}

#[test]
fn without_the_node_certificate_a_mutual_tls_verifier_refuses_the_handshake() {
    let pki = pki();
    let dir = tempfile::tempdir().unwrap();
    node(&pki, dir.path());
    let (url, seen) = mtls_server(&pki);
    let client = Client::new(&url, &options(&pki, dir.path(), None)).unwrap();
    let err = client.challenge().unwrap_err();
    assert!(matches!(err, PushError::Unreachable { .. }), "{err}");
    assert!(
        seen.recv().unwrap().is_err(),
        "the server saw no certificate"
    );
}
