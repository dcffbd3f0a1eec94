#![cfg(test)]
//! The Kubernetes hook over HTTPS: the API server's certificate must chain to `ca_file` (the
//! pod's service-account CA). Checked against a rustls server on loopback standing for the
//! API server: with the cluster's CA the node is marked; with another CA the handshake fails
//! and the service-account token is never sent.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, channel};

use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, SanType};
use tokio_rustls::rustls;
use tppguard_agent::kube::{KubeConfig, mark};
use tppguard_proto::lease::GatingMode;

/// A self-signed CA: its PEM, and a server certificate for 127.0.0.1 it issued (DER, key).
fn ca_and_server() -> (String, Vec<u8>, Vec<u8>) {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "kubernetes");
    let ca_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let ca_cert = params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(params, ca_key);
    let server_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut server = CertificateParams::new(Vec::<String>::new()).unwrap();
    server.subject_alt_names = vec![SanType::IpAddress([127, 0, 0, 1].into())];
    let server_cert = server.signed_by(&server_key, &issuer).unwrap();
    (
        ca_cert.pem(),
        server_cert.der().to_vec(),
        server_key.serialize_der(),
    )
}

/// An HTTPS server on 127.0.0.1 answering `answers` in order, one request per connection;
/// each request's head comes out of the channel, or the handshake's error.
fn api_server(
    cert: Vec<u8>,
    key: Vec<u8>,
    answers: Vec<String>,
) -> (String, Receiver<Result<String, String>>) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.into()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.into()),
        )
        .unwrap();
    let config = Arc::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for body in answers {
            let (tcp, _) = listener.accept().unwrap();
            let conn = rustls::ServerConnection::new(config.clone()).unwrap();
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
            let head = String::from_utf8(head).unwrap();
            let length: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            let mut rest = vec![0; length];
            tls.read_exact(&mut rest).unwrap();
            let _ = write!(
                tls,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = tls.flush();
            tls.conn.send_close_notify();
            let _ = tls.flush();
            let _ = tx.send(Ok(head));
        }
    });
    (url, rx)
}

/// A node already carrying tppguard's taint: marking it with one GPU gated reads it and
/// patches the labels only.
fn tainted_node() -> String {
    serde_json::json!({
        "kind": "Node", "apiVersion": "v1",
        "metadata": {"name": "gpu-node-1", "resourceVersion": "3"},
        "spec": {"taints": [{"key": "tppguard.dev/gpus-gated", "value": "true",
                             "effect": "NoSchedule"}]},
    })
    .to_string()
}

fn config(url: &str, ca_pem: &str, dir: &std::path::Path) -> KubeConfig {
    std::fs::write(dir.join("token"), "sa-token-tls").unwrap();
    std::fs::write(dir.join("ca.crt"), ca_pem).unwrap();
    KubeConfig {
        api_url: Some(url.to_owned()),
        token_file: dir.join("token"),
        ca_file: dir.join("ca.crt"),
        ..KubeConfig::for_node("gpu-node-1")
    }
}

fn no_env(_: &str) -> Option<String> {
    None
}

#[test]
fn the_node_is_marked_over_https_with_the_clusters_ca() {
    let (ca_pem, cert, key) = ca_and_server();
    let (url, seen) = api_server(cert, key, vec![tainted_node(), String::new()]);
    let dir = tempfile::tempdir().unwrap();
    let config = config(&url, &ca_pem, dir.path());
    mark(&config, &no_env, GatingMode::Enforce, 1, 7).unwrap();
    let get = seen.recv().unwrap().unwrap();
    assert!(get.starts_with("GET /api/v1/nodes/gpu-node-1 "), "{get}");
    assert!(get.contains("Bearer sa-token-tls"), "{get}");
    let patch = seen.recv().unwrap().unwrap();
    assert!(
        patch.starts_with("PATCH /api/v1/nodes/gpu-node-1 "),
        "{patch}"
    );
}

#[test]
fn an_api_server_outside_the_clusters_ca_never_gets_the_token() {
    let (_, cert, key) = ca_and_server();
    let (other_ca, _, _) = ca_and_server();
    let (url, seen) = api_server(cert, key, vec![tainted_node()]);
    let dir = tempfile::tempdir().unwrap();
    let config = config(&url, &other_ca, dir.path());
    let err = mark(&config, &no_env, GatingMode::Enforce, 1, 7).unwrap_err();
    assert_eq!(err.code(), "kube_unreachable", "{err}");
    assert!(err.to_string().contains("marking node gpu-node-1"), "{err}");
    // The handshake failed on the server's side too: no request head was read.
    assert!(seen.recv().unwrap().is_err());
}
