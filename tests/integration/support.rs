//! Shared helpers: locating the workspace's binaries and building the fake NVML and CUDA
//! libraries.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rcgen::{Issuer, KeyPair};

/// The workspace root (the folder holding the top-level `Cargo.toml`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// `tests/fixtures/<area>`.
pub fn fixtures_dir(area: &str) -> PathBuf {
    workspace_root().join("tests").join("fixtures").join(area)
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|p| {
            if p.is_absolute() {
                p
            } else {
                workspace_root().join(p)
            }
        })
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// Runs `cargo build --quiet ARGS` in the workspace and fails the test run if it fails.
fn cargo_build(args: &[&str], target_dir: Option<&Path>) {
    let mut cmd = Command::new(env!("CARGO"));
    cmd.args(["build", "--quiet"])
        .args(args)
        .current_dir(workspace_root());
    if let Some(dir) = target_dir {
        cmd.arg("--target-dir").arg(dir);
    }
    let status = cmd.status().expect("cargo runs");
    assert!(status.success(), "cargo build {args:?} failed");
}

/// Builds the binaries and the fake NVML library once per test run (the integration tests
/// live in their own package, so Cargo's `CARGO_BIN_EXE_*` does not reach the binaries) and
/// returns the folder they are in.
fn built() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        cargo_build(
            &[
                "-p",
                "tppguard-fake-nvml",
                "-p",
                "tppguard-agent",
                "-p",
                "tppguard-verifier",
            ],
            None,
        );
        target_dir().join("debug")
    })
}

/// The folder holding the binaries built for this test run.
pub fn bin_dir() -> &'static Path {
    built()
}

/// The fake NVML library (`tests/fake-nvml`), built for this test run.
pub fn fake_nvml_lib() -> PathBuf {
    let lib = built().join("libtppguard_fake_nvml.so");
    assert!(lib.is_file(), "{} was not built", lib.display());
    lib
}

/// The fake NVML library built with its `old-driver` feature: it does not export a few
/// functions the agent calls, as a driver older than those functions does. Built once per run
/// into its own target folder.
pub fn old_driver_fake_nvml_lib() -> PathBuf {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| {
        // Its own target folder: a feature build must not replace the ordinary library.
        let dir = target_dir().join("fake-old-driver");
        cargo_build(
            &["-p", "tppguard-fake-nvml", "--features", "old-driver"],
            Some(&dir),
        );
        dir.join("debug").join("libtppguard_fake_nvml.so")
    })
    .clone()
}

/// The SONAME the fake CUDA library is linked with, for [`install_fake_cuda`] to write the real
/// names over. Keep in step with `SONAME_PLACEHOLDER` in `tests/fake-cuda/build.rs`.
const FAKE_CUDA_SONAME_PLACEHOLDER: &[u8] = b"libtppguard_fake_cuda.so#SONAME-PLACEHOLDER";

/// The fake CUDA library (`tests/fake-cuda`: the driver, cuBLAS and cuBLASLt in one file),
/// built once per test run.
pub fn fake_cuda_lib() -> PathBuf {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| {
        cargo_build(&["-p", "tppguard-fake-cuda"], None);
        let lib = target_dir().join("debug").join("libtppguard_fake_cuda.so");
        assert!(lib.is_file(), "{} was not built", lib.display());
        lib
    })
    .clone()
}

/// Installs the fake CUDA libraries `names` in `dir` as a CUDA install names them, each a copy
/// of [`fake_cuda_lib`] with that name as its SONAME: `libcuda.so.1` (with a `libcuda.so`
/// link to it, as the driver installs), `libcublas.so.13`, `libcublasLt.so.13`.
pub fn install_fake_cuda(dir: &Path, names: &[&str]) {
    use std::os::unix::fs::PermissionsExt as _;
    let original = std::fs::read(fake_cuda_lib()).expect("read the fake CUDA library");
    let mut placeholder = FAKE_CUDA_SONAME_PLACEHOLDER.to_vec();
    placeholder.push(0);
    let at: Vec<usize> = original
        .windows(placeholder.len())
        .enumerate()
        .filter(|(_, w)| *w == placeholder.as_slice())
        .map(|(i, _)| i)
        .collect();
    assert_eq!(
        at.len(),
        1,
        "the placeholder SONAME, once, in the fake CUDA library"
    );
    for name in names {
        assert!(name.len() < FAKE_CUDA_SONAME_PLACEHOLDER.len(), "{name}");
        let mut bytes = original.clone();
        let soname = &mut bytes[at[0]..at[0] + placeholder.len()];
        soname.fill(0);
        soname[..name.len()].copy_from_slice(name.as_bytes());
        let path = dir.join(name);
        std::fs::write(&path, bytes).expect("write a fake CUDA library");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
            .expect("chmod a fake CUDA library");
        if *name == "libcuda.so.1" {
            std::os::unix::fs::symlink(name, dir.join("libcuda.so")).expect("link libcuda.so");
        }
    }
}

/// A simulated driver install: a temporary folder holding a copy of the fake library as
/// `libnvidia-ml.so` and the given fixture as `fixture.json` beside it.
pub struct FakeDriver {
    pub dir: tempfile::TempDir,
}

impl FakeDriver {
    pub fn with_fixture_json(json: &str) -> Self {
        Self::with_library(&fake_nvml_lib(), json)
    }

    /// Installs `library` (a build of the fake) with the fixture `json`.
    pub fn with_library(library: &Path, json: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::copy(library, dir.path().join("libnvidia-ml.so")).expect("copy fake");
        std::fs::write(dir.path().join("fixture.json"), json).expect("write fixture");
        Self { dir }
    }

    pub fn with_fixture_file(name: &str) -> Self {
        let path = fixtures_dir("nvml").join(format!("{name}.json"));
        let json = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        Self::with_fixture_json(&json)
    }

    pub fn lib_path(&self) -> PathBuf {
        self.dir.path().join("libnvidia-ml.so")
    }
}

/// A `Command` for one of the workspace's binaries, built by Cargo for this test run.
pub fn bin(name: &str) -> Command {
    let path = built().join(name);
    assert!(path.is_file(), "{} was not built", path.display());
    let mut cmd = Command::new(path);
    cmd.env_remove("TPPGUARD_FAKE_NVML_FIXTURE")
        .env_remove("RUST_LOG")
        .env("NO_COLOR", "1");
    cmd
}

/// Runs a workspace binary with `args` and returns what it did.
pub fn run(name: &str, args: &[&str]) -> std::process::Output {
    bin(name).args(args).output().expect("binary runs")
}

/// [`run`], asserting success (stderr in the message otherwise).
pub fn ok(name: &str, args: &[&str]) -> std::process::Output {
    let out = run(name, args);
    assert!(
        out.status.success(),
        "{name} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A temporary path as an argument.
pub fn s(path: &Path) -> &str {
    path.to_str().expect("UTF-8 temp path")
}

/// A command's stderr as text.
pub fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Base64url without padding (RFC 7515 §2), for reading a token's parts.
pub fn base64url(text: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .unwrap_or_else(|e| panic!("not base64url ({e}): {text:.40}"))
}

/// A compact JWS's payload as JSON.
pub fn jws_payload(token: &str) -> serde_json::Value {
    let part = token.trim().split('.').nth(1).expect("payload part");
    serde_json::from_slice(&base64url(part)).expect("payload JSON")
}

/// In `dir`: a node folder (`init --name name`) and a built-in PKI (`pki init`: `pki/operator`,
/// `pki/licence-authority`, `pki/verifier`) whose operator issued its certificate chain, as an
/// operator sets them up. Returns `(node, pki)`.
pub fn node_with_chain(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let (node, pki) = (dir.join("node"), dir.join("pki"));
    ok("tppguard-verifier", &["pki", "init", "--dir", s(&pki)]);
    issue_node(&pki, &node, name, None);
    (node, pki)
}

/// A node folder `node` (`init --name name`) whose certificate the operator of the `pki init`
/// folder `pki` issued (`pki/operator`), certifying `site` when given.
pub fn issue_node(pki: &Path, node: &Path, name: &str, site: Option<&str>) {
    ok(
        "tppguard-agent",
        &["init", "--dir", s(node), "--name", name],
    );
    let (csr, chain) = (node.join("node.csr"), node.join("node-chain.pem"));
    let operator = pki.join("operator");
    let mut args = vec![
        "pki",
        "issue-node",
        "--dir",
        s(&operator),
        "--csr",
        s(&csr),
        "--out",
        s(&chain),
    ];
    if let Some(site) = site {
        args.extend(["--site", site]);
    }
    ok("tppguard-verifier", &args);
}

/// A free loopback port (bound, then released), for a server started later on it.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A verifier setup in a temporary folder, as an operator makes it: a node (`init`, name
/// `gpu-node-01`) with a chain from the built-in PKI, the example licence `examples/licence.toml`
/// signed into `licences/`, and `verifier.toml` listening on `listen`.
pub struct VerifierSetup {
    pub tmp: tempfile::TempDir,
    pub node: PathBuf,
    pub config: PathBuf,
    credentials: OnceLock<Credentials>,
}

/// Bearer tokens a setup issued with `tppguard-verifier token issue` (issue 12).
#[derive(Debug, Clone)]
pub struct Credentials {
    /// An operator token: reads.
    pub operator: String,
    /// A node token: challenges and attestations.
    pub node: String,
    /// The node token in a file (mode 0600), for the agent's `--token-file`.
    pub node_file: PathBuf,
}

/// `tppguard-verifier token issue --config CONFIG --role ROLE --name NAME`: the token.
pub fn issue_token(config: &Path, role: &str, name: &str) -> String {
    let out = ok(
        "tppguard-verifier",
        &[
            "token",
            "issue",
            "--config",
            s(config),
            "--role",
            role,
            "--name",
            name,
        ],
    );
    String::from_utf8(out.stdout)
        .expect("UTF-8 token")
        .trim()
        .to_owned()
}

/// `Authorization: Bearer TOKEN`'s value.
pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

impl VerifierSetup {
    pub fn new(listen: &str) -> Self {
        let tmp = tempfile::tempdir().expect("temp dir");
        let dir = tmp.path();
        let (node, pki) = node_with_chain(dir, "gpu-node-01");
        let licences = dir.join("licences");
        std::fs::create_dir(&licences).expect("licences dir");
        let example = workspace_root().join("examples").join("licence.toml");
        sign_licence(&pki, &example, &licences.join("licence.jws"));
        let config = dir.join("verifier.toml");
        std::fs::write(
            &config,
            format!(
                "listen = \"{listen}\"\ntrust = \"pki/verifier/trust.toml\"\nlicences_dir = \"licences\"\n"
            ),
        )
        .expect("config");
        Self {
            tmp,
            node,
            config,
            credentials: OnceLock::new(),
        }
    }

    /// An operator and a node token, issued on first use into the database the
    /// configuration names then (configure `database` before).
    pub fn credentials(&self) -> &Credentials {
        self.credentials.get_or_init(|| {
            let node_file = self.tmp.path().join("node.token");
            let node = issue_token(&self.config, "node", "test-nodes");
            std::fs::write(&node_file, format!("{node}\n")).expect("node token file");
            Credentials {
                operator: issue_token(&self.config, "operator", "test-operator"),
                node,
                node_file,
            }
        })
    }

    /// Another node folder (`init --name name`) with a chain from this setup's PKI.
    pub fn add_node(&self, name: &str) -> PathBuf {
        let node = self.tmp.path().join(name);
        issue_node(&self.tmp.path().join("pki"), &node, name, None);
        node
    }

    /// Appends `lines` to `verifier.toml`.
    pub fn configure(&self, lines: &str) {
        use std::io::Write as _;
        let mut config = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.config)
            .expect("open config");
        writeln!(config, "{lines}").expect("append to config");
    }

    /// Starts `tppguard-verifier serve` on this setup and waits for its listening line.
    pub fn start(&self) -> RunningVerifier {
        use std::io::BufRead as _;
        let credentials = self.credentials().clone();
        let mut child = bin("tppguard-verifier")
            .args(["serve", "--config", s(&self.config)])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .expect("serve starts");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.as_mut().expect("stdout"))
            .read_line(&mut line)
            .expect("read the listening line");
        let base = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("no listening line: {line:?}"))
            .to_owned();
        RunningVerifier {
            child,
            base,
            credentials,
        }
    }
}

/// A running `tppguard-verifier serve` (killed when dropped).
pub struct RunningVerifier {
    pub child: std::process::Child,
    /// `http://ADDR`.
    pub base: String,
    /// The setup's tokens.
    pub credentials: Credentials,
}

impl RunningVerifier {
    /// `GET path`: the status and the body as JSON (null when not JSON).
    pub fn get_json(&self, path: &str) -> (u16, serde_json::Value) {
        let http: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let mut resp = http
            .get(format!("{}{path}", self.base))
            .header("Authorization", bearer(&self.credentials.operator))
            .call()
            .expect("GET");
        let status = resp.status().as_u16();
        let body = resp.body_mut().read_to_string().expect("body");
        (status, serde_json::from_str(&body).unwrap_or_default())
    }
}

impl Drop for RunningVerifier {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `tppguard-agent push --simulate --site fra-1 --json --token-file TOKEN_FILE` from `node`
/// to `base`: the finished process (exit 0 or 1 with a verdict on stdout when the verifier
/// answered 200).
pub fn agent_push(base: &str, token_file: &Path, node: &Path) -> std::process::Output {
    run(
        "tppguard-agent",
        &[
            "push",
            "--verifier",
            base,
            "--token-file",
            s(token_file),
            "--dir",
            s(node),
            "--simulate",
            "--site",
            "fra-1",
            "--json",
        ],
    )
}

/// Percent-encodes a URL path segment.
pub fn path_segment(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Sends SIGTERM to `child` and waits for it: its exit code.
pub fn terminate(child: &mut std::process::Child) -> Option<i32> {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill -TERM");
    child.wait().expect("wait").code()
}

// Tokens and certificates as an attacker or a hostile CA makes them.

/// `token` with its claims changed by `change`, signed again with the node's own key (what
/// root on the node can do), with the same header and certificate chain.
pub fn resigned(node: &Path, token: &str, change: impl FnOnce(&mut serde_json::Value)) -> String {
    let pem = std::fs::read_to_string(node.join("node.key")).expect("node.key");
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = STANDARD.decode(body).expect("PEM body");
    let key = tppguard_proto::jws::SigningKey::from_pkcs8_any(&der).expect("node key");
    let header = tppguard_proto::jws::decode(token)
        .expect("token")
        .header()
        .clone();
    let mut claims = jws_payload(token);
    change(&mut claims);
    let payload = serde_json::to_vec(&claims).expect("claims JSON");
    tppguard_proto::jws::sign(&header, &payload, &key).expect("sign")
}

/// The DER certificates of a PEM file.
pub fn pem_certs(path: &Path) -> Vec<Vec<u8>> {
    let text = std::fs::read_to_string(path).expect("PEM file");
    text.split("-----BEGIN CERTIFICATE-----")
        .skip(1)
        .map(|block| {
            let body: String = block
                .split("-----END CERTIFICATE-----")
                .next()
                .unwrap()
                .split_whitespace()
                .collect();
            STANDARD.decode(body).expect("PEM base64")
        })
        .collect()
}

/// A CA of a `pki init` folder (`cert`, `key`: paths in it, e.g. `operator/operator-ca.pem`),
/// as an rcgen issuer.
pub fn pki_issuer(pki: &Path, cert: &str, key: &str) -> (Issuer<'static, KeyPair>, Vec<u8>) {
    let ca_der = pem_certs(&pki.join(cert)).remove(0);
    let key = KeyPair::from_pem(&std::fs::read_to_string(pki.join(key)).unwrap()).unwrap();
    let issuer = Issuer::from_ca_cert_der(&ca_der.clone().into(), key).unwrap();
    (issuer, ca_der)
}

/// `tppguard-agent attest --simulate[=FIXTURE] --nonce NONCE --site SITE --out OUT` from the
/// node folder `node` (`fixture` `None`: the default simulated node): the token, trimmed.
pub fn attest_to(
    node: &Path,
    fixture: Option<&str>,
    nonce: &str,
    site: &str,
    out: &Path,
) -> String {
    let simulate = fixture.map_or_else(|| "--simulate".to_owned(), |f| format!("--simulate={f}"));
    ok(
        "tppguard-agent",
        &[
            "attest",
            "--dir",
            s(node),
            &simulate,
            "--nonce",
            nonce,
            "--site",
            site,
            "--out",
            s(out),
        ],
    );
    std::fs::read_to_string(out)
        .expect("attestation")
        .trim()
        .to_owned()
}

/// An HTTP client that returns error statuses as answers, for the `serve` tests.
pub fn http() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

/// `POST /v1/challenge` at `base` with the node token `node`: the nonce.
pub fn challenge(base: &str, node: &str) -> String {
    let mut resp = http()
        .post(format!("{base}/v1/challenge"))
        .header("Authorization", bearer(node))
        .send_empty()
        .expect("POST challenge");
    assert_eq!(resp.status().as_u16(), 200);
    let v: serde_json::Value =
        serde_json::from_str(&resp.body_mut().read_to_string().expect("body"))
            .expect("challenge JSON");
    v["nonce"].as_str().expect("nonce").to_owned()
}

/// `POST /v1/attestations` at `base` with the node token `node`: the status and the JSON
/// answer.
pub fn post_attestation(base: &str, node: &str, token: &str) -> (u16, serde_json::Value) {
    let mut resp = http()
        .post(format!("{base}/v1/attestations"))
        .header("Authorization", bearer(node))
        .header("Content-Type", "application/jose")
        .send(token)
        .expect("POST attestation");
    let status = resp.status().as_u16();
    let body = resp.body_mut().read_to_string().expect("body");
    (status, serde_json::from_str(&body).unwrap_or_default())
}

/// `tppguard-verifier licence sign --dir PKI/licence-authority TOML --out OUT` (`pki`: a
/// `pki init` folder), which must succeed: its output.
pub fn sign_licence(pki: &Path, toml: &Path, out: &Path) -> std::process::Output {
    let authority = pki.join("licence-authority");
    ok(
        "tppguard-verifier",
        &[
            "licence",
            "sign",
            "--dir",
            s(&authority),
            s(toml),
            "--out",
            s(out),
        ],
    )
}
