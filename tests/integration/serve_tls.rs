//! `tppguard-verifier serve` over HTTPS (`tls_cert`, `tls_key`) on loopback: a throwaway CA
//! and a server certificate for 127.0.0.1 made with rcgen, the same setup as the push tests
//! (`support::VerifierSetup`). The agent pushes with `--ca` and the node is listed; a plain-HTTP
//! request and clients that do not trust the CA get nothing; a half TLS configuration stops
//! the start with exit code 2.

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::support::{RunningVerifier, VerifierSetup, bearer, bin, run, s, stderr};

/// A CA and a server certificate it issued for 127.0.0.1, written to `dir` as `name-ca.pem`,
/// `name-server.pem` (leaf, then the CA) and `name-server.key` (PKCS#8). Returns the CA file.
pub(crate) fn server_pki(dir: &Path, name: &str) -> (PathBuf, PathBuf, PathBuf) {
    let ca_key = rcgen::KeyPair::generate().expect("CA key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::new()).expect("CA params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("{name} test CA"));
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let ca = ca_params.self_signed(&ca_key).expect("CA certificate");
    let issuer = rcgen::Issuer::new(ca_params, &ca_key);
    let key = rcgen::KeyPair::generate().expect("server key");
    let mut params =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).expect("server params");
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let leaf = params.signed_by(&key, &issuer).expect("server certificate");
    let (ca_file, cert, key_file) = (
        dir.join(format!("{name}-ca.pem")),
        dir.join(format!("{name}-server.pem")),
        dir.join(format!("{name}-server.key")),
    );
    std::fs::write(&ca_file, ca.pem()).expect("write CA");
    std::fs::write(&cert, leaf.pem() + &ca.pem()).expect("write chain");
    std::fs::write(&key_file, key.serialize_pem()).expect("write key");
    (ca_file, cert, key_file)
}

/// Adds `lines` to the setup's `verifier.toml`.
fn add_to_config(setup: &VerifierSetup, lines: &str) {
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&setup.config)
        .expect("open config");
    file.write_all(lines.as_bytes()).expect("append config");
}

/// A setup serving HTTPS with a fresh CA; returns it, the running server and the CA file.
fn start_tls() -> (VerifierSetup, RunningVerifier, PathBuf) {
    let setup = VerifierSetup::new("127.0.0.1:0");
    let (ca, _, _) = server_pki(setup.tmp.path(), "tls");
    // Relative paths, read from the configuration file's folder.
    add_to_config(
        &setup,
        "tls_cert = \"tls-server.pem\"\ntls_key = \"tls-server.key\"\n",
    );
    let verifier = setup.start();
    assert!(
        verifier.base.starts_with("https://127.0.0.1:"),
        "{}",
        verifier.base
    );
    (setup, verifier, ca)
}

/// A ureq agent trusting only the certificates in `ca` (none: ureq's default roots).
fn https_client(ca: Option<&Path>) -> ureq::Agent {
    let mut config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)));
    if let Some(ca) = ca {
        let pem = std::fs::read(ca).expect("read CA");
        let certs: Vec<_> = ureq::tls::parse_pem(&pem)
            .filter_map(|item| match item.expect("PEM") {
                ureq::tls::PemItem::Certificate(c) => Some(c),
                _ => None,
            })
            .collect();
        config = config.tls_config(
            ureq::tls::TlsConfig::builder()
                .root_certs(ureq::tls::RootCerts::new_with_certs(&certs))
                .build(),
        );
    }
    config.build().into()
}

/// `tppguard-agent push --simulate` to `base`, with `ca` as `--ca` when given.
fn push(setup: &VerifierSetup, base: &str, ca: Option<&Path>) -> std::process::Output {
    let mut args = vec![
        "push",
        "--verifier",
        base,
        "--dir",
        s(&setup.node),
        "--simulate",
        "--site",
        "fra-1",
        "--json",
        "--token-file",
        s(&setup.credentials().node_file),
    ];
    if let Some(ca) = ca {
        args.extend(["--ca", s(ca)]);
    }
    run("tppguard-agent", &args)
}

#[test]
fn the_agent_pushes_over_https_with_its_ca_file_and_the_node_is_listed() {
    let (setup, verifier, ca) = start_tls();
    let out = push(&setup, &verifier.base, Some(&ca));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let answer: Value = serde_json::from_slice(&out.stdout).expect("JSON answer");
    let node = answer["node"].as_str().expect("node").to_owned();
    assert!(
        node.len() == 64 && node.bytes().all(|b| b.is_ascii_hexdigit()),
        "a node is its key id: {answer}"
    );

    let mut resp = https_client(Some(&ca))
        .get(format!("{}/v1/fleet?view=full", verifier.base))
        .header("Authorization", bearer(&verifier.credentials.operator))
        .call()
        .expect("GET /v1/fleet over HTTPS");
    assert_eq!(resp.status().as_u16(), 200);
    let fleet: Value =
        serde_json::from_str(&resp.body_mut().read_to_string().expect("body")).expect("JSON");
    assert_eq!(fleet["nodes"][0]["node"], node.as_str(), "{fleet}");
}

#[test]
fn clients_that_do_not_trust_the_ca_get_nothing() {
    let (setup, verifier, _) = start_tls();

    // The agent with the Mozilla roots, and with another CA.
    let out = push(&setup, &verifier.base, None);
    assert_ne!(out.status.code(), Some(0), "pushed without trusting the CA");
    assert!(stderr(&out).contains("certificate"), "{}", stderr(&out));
    let (other_ca, _, _) = server_pki(setup.tmp.path(), "other");
    let out = push(&setup, &verifier.base, Some(&other_ca));
    assert_ne!(out.status.code(), Some(0), "pushed trusting another CA");
    assert!(stderr(&out).contains("certificate"), "{}", stderr(&out));

    let got = https_client(Some(&other_ca))
        .get(format!("{}/v1/fleet", verifier.base))
        .call();
    assert!(
        got.is_err(),
        "answered a client trusting another CA: {got:?}"
    );
}

#[test]
fn plain_http_to_the_tls_port_gets_no_answer() {
    let (_setup, verifier, _) = start_tls();
    let addr = verifier
        .base
        .strip_prefix("https://")
        .expect("https base")
        .to_owned();

    let got = https_client(None)
        .get(format!("http://{addr}/v1/fleet"))
        .call();
    assert!(got.is_err(), "plain HTTP was answered: {got:?}");

    // On the wire: a TLS alert and the close, no HTTP status line and no data.
    let mut tcp = std::net::TcpStream::connect(&addr).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(15)))
        .expect("read timeout");
    tcp.write_all(b"GET /v1/fleet HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .expect("send");
    let mut answer = Vec::new();
    let _ = tcp.read_to_end(&mut answer);
    assert!(
        !answer.windows(5).any(|w| w == b"HTTP/") && !answer.windows(5).any(|w| w == b"nodes"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    assert!(answer.len() < 64, "more than an alert: {answer:?}");
}

#[test]
fn a_half_or_wrong_tls_configuration_stops_the_start_with_exit_2() {
    let setup = VerifierSetup::new("127.0.0.1:0");
    let (_, cert, _) = server_pki(setup.tmp.path(), "tls");
    let (_, _, other_key) = server_pki(setup.tmp.path(), "other");
    let original = std::fs::read_to_string(&setup.config).expect("config");
    let serve = |extra: &str| {
        std::fs::write(&setup.config, format!("{original}{extra}")).expect("config");
        bin("tppguard-verifier")
            .args(["serve", "--config", s(&setup.config)])
            .output()
            .expect("serve runs")
    };

    let out = serve("tls_cert = \"tls-server.pem\"\n");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("verifier.toml: tls_key: missing while tls_cert is set"),
        "{err}"
    );
    assert!(err.contains("hint: give both tls_cert"), "{err}");
    assert!(out.stdout.is_empty(), "started: {:?}", out.stdout);

    let out = serve(&format!(
        "tls_cert = \"{}\"\ntls_key = \"{}\"\n",
        s(&cert),
        s(&other_key)
    ));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("tls_key: ") && err.contains("does not match the certificate"),
        "{err}"
    );
    assert!(out.stdout.is_empty(), "started: {:?}", out.stdout);
}
