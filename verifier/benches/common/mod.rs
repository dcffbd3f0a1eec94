//! What the load and reads benches share: the environment knobs, the clock, simulated nodes
//! with real keys and certificates, the verifier process and its credentials.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, PKCS_ED25519};
use tppguard_proto::claims::{ATTESTATION_TYP, AttestationClaims, Nonce};
use tppguard_proto::jws::{self, Alg, Header, SigningKey};
use tppguard_verifier::chain::certs_from_pem;
use tppguard_verifier::pki;

/// The environment variable `name` parsed, or `default`.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Unix seconds now.
pub fn unix_now() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap()
}

/// One simulated node: its subject, signing key, certificate chain and claim set.
pub struct Node {
    pub name: String,
    key: SigningKey,
    x5c: Vec<Vec<u8>>,
    claims: AttestationClaims,
}

impl Node {
    /// A signed attestation answering `nonce`.
    pub fn attest(&self, nonce: Nonce) -> String {
        let mut claims = self.claims.clone();
        claims.iss.clone_from(&self.name);
        claims.iat = unix_now();
        claims.eat_nonce = nonce;
        let payload = claims.to_json().unwrap();
        let header = Header::new(Alg::EdDSA)
            .with_typ(ATTESTATION_TYP)
            .with_x5c(self.x5c.clone());
        jws::sign(&header, &payload, &self.key).unwrap()
    }
}

/// A node `name` with a fresh Ed25519 key and a certificate from the operator folder
/// `operator` certifying `site-0` (as `pki issue-node --site` does), attesting `claims`.
pub fn make_node(
    dir: &Path,
    operator: &Path,
    name: String,
    now: i64,
    claims: AttestationClaims,
) -> Node {
    let key = KeyPair::generate_for(&PKCS_ED25519).unwrap();
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, &name);
    let csr_path = dir.join("node.csr");
    std::fs::write(
        &csr_path,
        params.serialize_request(&key).unwrap().pem().unwrap(),
    )
    .unwrap();
    let chain_path = dir.join("node-chain.pem");
    let options = pki::IssueOptions {
        days: 30,
        site: Some(tppguard_proto::site::SiteId::parse("site-0").unwrap()),
        replace: false,
    };
    pki::issue_node_with(operator, &csr_path, &chain_path, &options, now).unwrap();
    let x5c = certs_from_pem(&std::fs::read(&chain_path).unwrap())
        .unwrap()
        .into_iter()
        .map(|c| c.to_vec())
        .collect();
    Node {
        name,
        key: SigningKey::from_pkcs8(Alg::EdDSA, &key.serialize_der()).unwrap(),
        x5c,
        claims,
    }
}

/// `tppguard-verifier token issue --role ROLE` for `config`: the `Authorization` value.
pub fn bearer_token(config: &Path, role: &str, name: &str) -> String {
    let issued = Command::new(env!("CARGO_BIN_EXE_tppguard-verifier"))
        .args(["token", "issue", "--role", role, "--name", name, "--config"])
        .arg(config)
        .output()
        .expect("token issue");
    assert!(issued.status.success(), "token issue: {issued:?}");
    format!(
        "Bearer {}",
        String::from_utf8(issued.stdout).unwrap().trim()
    )
}

/// The verifier process (`serve`, release); killed when dropped.
pub struct Server {
    child: Child,
    pub base: String,
}

impl Server {
    /// Starts `serve --config config` and waits for its listening line.
    pub fn start(config: &Path) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tppguard-verifier"))
            .arg("serve")
            .arg("--config")
            .arg(config)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start tppguard-verifier serve");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let base = loop {
            let line = lines
                .next()
                .expect("the verifier exited before listening")
                .unwrap();
            if let Some(addr) = line.strip_prefix("listening on ") {
                break addr.trim().to_owned();
            }
        };
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Self { child, base }
    }

    /// The process's resident set (VmRSS), KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    /// SIGTERM: the verifier drains and exits 0.
    pub fn stop(&mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
