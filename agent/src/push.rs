//! `push`: one round with a verifier's HTTP API (`tppguard-verifier serve`): fetch a challenge,
//! attest over its nonce, post the token, print the verifier's answer. [`Client`] is shared
//! with `run`.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use tppguard_proto::identity::NodeId;
use tppguard_proto::text::Escaped;

use crate::bearer::BearerToken;
use crate::cli::PushArgs;
use crate::ear::{EarRefusal, ResultKey, Sent, check_answer, check_ear};
use crate::{EXIT_DEGRADED, EXIT_OK, attest_token, sign};

/// How long connecting to the verifier may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one request may take in all (sending the token, the verifier's evaluation, the
/// answer).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// The largest answer read (an EAR with its findings is far smaller).
const MAX_ANSWER_BYTES: u64 = 8 << 20;
/// Hex digits of a node id shown in text output.
const SHORT_NODE_ID: usize = 12;
/// The most characters of a verifier's text quoted in an error (a `Location`, a body that
/// is not JSON).
const MAX_QUOTED_CHARS: usize = 200;

/// The verifier could not be reached, or answered an error.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// No answer: connection refused, DNS, TLS, timeout.
    #[error("the verifier at {url} could not be reached: {reason}")]
    Unreachable {
        /// The URL called.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// An answer with an error status (`{"code", "sentence"}`). The verifier's words are
    /// quoted as sent: whoever shows the message escapes it.
    #[error("the verifier answered {status} {code}: {sentence}")]
    Answered {
        /// The HTTP status.
        status: u16,
        /// The error code (`nonce_expired`, `rate_limited`, a verification code, ...).
        code: String,
        /// The verifier's sentence.
        sentence: String,
    },
    /// A redirect (3xx). The agent follows none: a verifier's API never redirects, and one
    /// that does could send the node's token and credential to another host or over plain
    /// HTTP. `location` is quoted as sent: whoever shows the message escapes it.
    #[error(
        "the verifier at {url} answered {status} redirecting to {location}; the agent follows \
         no redirects: give the verifier's final URL (--verifier, or verifier = in agent.toml)"
    )]
    Redirected {
        /// The URL called.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The `Location` header (at most [`MAX_QUOTED_CHARS`] characters of it; `-` if none).
        location: String,
    },
    /// The answer came but is not believed ([`crate::ear`]): its EAR does not verify under
    /// the pinned result key, or it is about another token, node, challenge or status.
    #[error(
        "the verifier's answer from {url} is not trusted ({}): {refusal}; do not rely on it, \
         and report it to the verifier's operator", .refusal.code()
    )]
    Untrusted {
        /// The URL called.
        url: String,
        /// Why.
        #[source]
        refusal: EarRefusal,
    },
}

impl PushError {
    /// Whether trying again later may help: no answer, a server error, a timeout or the
    /// rate limit. A rejection of the token itself (4xx) will not change by waiting.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Unreachable { .. } => true,
            Self::Answered { status, .. } => *status >= 500 || *status == 408 || *status == 429,
            Self::Redirected { .. } | Self::Untrusted { .. } => false,
        }
    }
}

/// `POST /v1/challenge`'s answer.
#[derive(Debug, Clone, Deserialize)]
pub struct Challenge {
    /// Lower-case hex.
    pub nonce: String,
    /// When the nonce stops being accepted (Unix seconds).
    pub expires_at: i64,
}

/// `POST /v1/attestations`'s answer (`docs/serve.md`), kept whole for `push --json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Verdict {
    /// The node's EAR status: `affirming`, `warning` (a warning, or evidence that cannot
    /// establish compliance), `contraindicated` or `none`.
    pub status: String,
    /// The EAR (a signed JWT).
    pub ear: String,
    /// The node id: the SHA-256 of its certificate's SubjectPublicKeyInfo, 64 lower-case hex.
    pub node: String,
    /// The node's certificate subject, for display.
    pub subject: String,
    /// The SHA-256 (lower-case hex) of the token the answer and its EAR appraise.
    /// [`Client::post_attestation`] refuses an answer about any other token.
    pub token_sha256: String,
    /// The findings that bear on this node.
    #[serde(default)]
    pub findings: Vec<serde_json::Value>,
    /// The lease the verifier issued with this answer (compact JWS, `typ`
    /// `tppguard-lease+jwt`), when it issues leases. Believed only once [`crate::gate`]
    /// verifies it under the pinned result key for this node and this token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<String>,
}

impl Verdict {
    /// The node id shortened for people: its first 12 hex digits, as `git` shortens hashes.
    pub fn short_node(&self) -> &str {
        self.node.get(..SHORT_NODE_ID).unwrap_or(&self.node)
    }

    /// `push`'s exit code: 0 when the verifier affirms or warns, else 1 (`contraindicated`,
    /// or `none`: no claim could be made).
    pub fn exit_code(&self) -> u8 {
        match self.status.as_str() {
            "affirming" | "warning" => EXIT_OK,
            _ => EXIT_DEGRADED,
        }
    }
}

#[derive(Deserialize)]
struct ErrorBody {
    code: String,
    sentence: String,
}

/// How the agent reaches and trusts one verifier: `push`'s flags, `run`'s keys.
#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    /// PEM CA certificates for an `https://` verifier (default: the Mozilla roots).
    pub ca: Option<std::path::PathBuf>,
    /// A bearer token sent on every request.
    pub token: Option<BearerToken>,
    /// The node's certificate and key, presented as a TLS client certificate over `https://`.
    pub client_cert: Option<ureq::tls::ClientCert>,
    /// The verifier's pinned result key: answers whose EAR does not verify under it are
    /// refused. `None`: answers are believed unverified (with a warning).
    pub result_key: Option<ResultKey>,
}

impl ClientOptions {
    /// Options from the paths given: `ca`, `token_file`, `result_key`, and the node folder
    /// `node` whose credentials are the TLS client certificate.
    pub fn load(
        ca: Option<&Path>,
        token_file: Option<&Path>,
        result_key: Option<&Path>,
        node: &sign::NodeCredentials,
    ) -> anyhow::Result<Self> {
        let result_key = result_key.map(ResultKey::load).transpose()?;
        if result_key.is_none() {
            tracing::warn!(
                "no verifier result key pinned (--verifier-result-key, verifier_result_key): the \
                 verifier's verdict is believed without checking its EAR's signature"
            );
        }
        Ok(Self {
            ca: ca.map(Path::to_owned),
            token: token_file.map(BearerToken::load).transpose()?,
            client_cert: node.tls_client_cert(),
            result_key,
        })
    }
}

/// A blocking HTTP client for one verifier.
#[derive(Debug, Clone)]
pub struct Client {
    http: ureq::Agent,
    base: String,
    token: Option<BearerToken>,
    result_key: Option<ResultKey>,
}

impl Client {
    /// A client for the verifier at `url` (`http://` or `https://`; a path prefix is kept).
    /// It follows no redirects ([`PushError::Redirected`]).
    pub fn new(url: &str, options: &ClientOptions) -> anyhow::Result<Self> {
        let base = url.trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            anyhow::bail!("verifier URL {url:?}: give it as http://HOST:PORT or https://HOST");
        }
        let mut config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .timeout_global(Some(CALL_TIMEOUT))
            .user_agent(concat!("tppguard-agent/", env!("CARGO_PKG_VERSION")));
        let mut tls = ureq::tls::TlsConfig::builder();
        if let Some(ca) = &options.ca {
            tls = tls.root_certs(ureq::tls::RootCerts::new_with_certs(&read_ca(ca)?));
        }
        if base.starts_with("https://") {
            tls = tls.client_cert(options.client_cert.clone());
        }
        config = config.tls_config(tls.build());
        Ok(Self {
            http: config.build().into(),
            base,
            token: options.token.clone(),
            result_key: options.result_key.clone(),
        })
    }

    /// The verifier's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Whether answers are checked against a pinned result key.
    pub fn pins_result_key(&self) -> bool {
        self.result_key.is_some()
    }

    /// A POST to `url`, with the bearer token when there is one.
    fn post(&self, url: &str) -> ureq::RequestBuilder<ureq::typestate::WithBody> {
        let request = self.http.post(url);
        match &self.token {
            Some(token) => request.header("Authorization", token.header_value()),
            None => request,
        }
    }

    /// `POST /v1/challenge`.
    pub fn challenge(&self) -> Result<Challenge, PushError> {
        let url = format!("{}/v1/challenge", self.base);
        let resp = self.post(&url).send_empty();
        Self::parse(&url, resp)
    }

    /// `POST /v1/attestations` with the compact JWS `token` of node `node`, signed over the
    /// challenge `nonce` when known. The answer must appraise this token and node, and with a
    /// pinned result key its EAR must say so under the verifier's signature ([`crate::ear`]):
    /// otherwise [`PushError::Untrusted`].
    pub fn post_attestation(
        &self,
        token: &str,
        node: NodeId,
        nonce: Option<&str>,
    ) -> Result<Verdict, PushError> {
        let url = format!("{}/v1/attestations", self.base);
        let token = token.trim();
        let sent_at = sign::now().unwrap_or(0);
        let resp = self
            .post(&url)
            .header("Content-Type", "application/jose")
            .send(token);
        let verdict: Verdict = Self::parse(&url, resp)?;
        let token_sha256 = sha256_hex(token.as_bytes());
        let sent = Sent {
            node,
            token_sha256: &token_sha256,
            nonce,
            sent_at,
            now: sign::now().unwrap_or(i64::MAX),
        };
        let untrusted = |refusal| PushError::Untrusted {
            url: url.clone(),
            refusal,
        };
        check_answer(&verdict, &sent).map_err(untrusted)?;
        if let Some(key) = &self.result_key {
            check_ear(key, &verdict, &sent).map_err(untrusted)?;
        }
        Ok(verdict)
    }

    fn parse<T: for<'de> Deserialize<'de>>(
        url: &str,
        resp: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<T, PushError> {
        let unreachable = |reason: String| PushError::Unreachable {
            url: url.to_owned(),
            reason,
        };
        let mut resp = resp.map_err(|e| unreachable(e.to_string()))?;
        let status = resp.status().as_u16();
        if (300..400).contains(&status) {
            let location = resp.headers().get("location").map_or("-".to_owned(), |v| {
                String::from_utf8_lossy(v.as_bytes())
                    .chars()
                    .take(MAX_QUOTED_CHARS)
                    .collect()
            });
            return Err(PushError::Redirected {
                url: url.to_owned(),
                status,
                location,
            });
        }
        let body = resp
            .body_mut()
            .with_config()
            .limit(MAX_ANSWER_BYTES)
            .read_to_string()
            .map_err(|e| unreachable(format!("reading the answer: {e}")))?;
        if (200..300).contains(&status) {
            return serde_json::from_str(&body).map_err(|e| PushError::Answered {
                status,
                code: "answer_unreadable".to_owned(),
                sentence: format!(
                    "the answer is not what this agent's version of tppguard's API returns \
                     (is the verifier older than the agent?): {e}"
                ),
            });
        }
        Err(match serde_json::from_str::<ErrorBody>(&body) {
            Ok(b) => PushError::Answered {
                status,
                code: b.code,
                sentence: b.sentence,
            },
            Err(_) => PushError::Answered {
                status,
                code: format!("http_{status}"),
                sentence: body.chars().take(MAX_QUOTED_CHARS).collect(),
            },
        })
    }
}

/// The certificates of the PEM file `ca`.
fn read_ca(ca: &Path) -> anyhow::Result<Vec<ureq::tls::Certificate<'static>>> {
    let pem = std::fs::read(ca).with_context(|| format!("reading the CA file {}", ca.display()))?;
    let certs = ureq::tls::parse_pem(&pem)
        .filter_map(|item| match item {
            Ok(ureq::tls::PemItem::Certificate(c)) => Some(Ok(c.to_owned())),
            Ok(_) => None,
            Err(e) => Some(Err(e)),
        })
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("the CA file {} is not PEM", ca.display()))?;
    if certs.is_empty() {
        anyhow::bail!("the CA file {} holds no certificate", ca.display());
    }
    Ok(certs)
}

/// Lower-case hex SHA-256 of `bytes`.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut hex = String::with_capacity(64);
    for b in digest.as_ref() {
        let _ = write!(hex, "{b:02x}");
    }
    hex
}

/// Writes the verifier's answer for a person: the status, the node (subject and short id)
/// and the findings.
pub fn render_verdict(out: &mut impl Write, verdict: &Verdict) -> std::io::Result<()> {
    // Everything here is the verifier's text, read from the network: escaped.
    writeln!(
        out,
        "verifier: {} for {} [{}]",
        Escaped(&verdict.status),
        Escaped(&verdict.subject),
        Escaped(verdict.short_node())
    )?;
    if verdict.findings.is_empty() {
        writeln!(out, "  no findings")?;
    }
    for f in &verdict.findings {
        let field = |k: &str| Escaped(f[k].as_str().unwrap_or("-"));
        writeln!(
            out,
            "  [{}] {}: {}",
            field("severity"),
            field("code"),
            field("sentence")
        )?;
    }
    Ok(())
}

/// `tppguard-agent push`.
pub fn push_command(args: &PushArgs) -> anyhow::Result<ExitCode> {
    let credentials =
        sign::NodeCredentials::load(&args.dir).map_err(|e| anyhow::anyhow!(e.render()))?;
    let node = node_id(&credentials)?;
    let options = ClientOptions::load(
        args.ca.as_deref(),
        args.token_file.as_deref(),
        args.verifier_result_key.as_deref(),
        &credentials,
    )?;
    let client = Client::new(&args.verifier, &options)?;
    let challenge = client.challenge()?;
    let attested = attest_token(
        &args.dir,
        &args.source,
        &challenge.nonce,
        args.site.as_deref(),
    )?;
    tracing::debug!(gpus = attested.claims.submods.len(), "attestation signed");
    let verdict = client.post_attestation(&attested.token, node, Some(&challenge.nonce))?;
    if let Some(path) = &args.ear {
        std::fs::write(path, format!("{}\n", verdict.ear))
            .with_context(|| format!("writing the EAR to {}", path.display()))?;
    }
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &verdict)?;
        writeln!(out)?;
    } else {
        // First, as `inventory` and `attest` do: no verdict below is about real hardware.
        if attested.claims.simulated {
            writeln!(
                out,
                "{} The attestation pushed says so (tppguard.simulated).",
                attested.report.source.simulated_line()
            )?;
        }
        render_verdict(&mut out, &verdict)?;
    }
    Ok(ExitCode::from(verdict.exit_code()))
}

/// The node id of `credentials`, or why there is none.
pub fn node_id(credentials: &sign::NodeCredentials) -> anyhow::Result<NodeId> {
    credentials.node_id().ok_or_else(|| {
        anyhow::anyhow!(
            "the node certificate (node-chain.pem) cannot be read for its public key; issue \
             it again with `tppguard-verifier pki issue-node`"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn answered(status: u16) -> PushError {
        PushError::Answered {
            status,
            code: "x".into(),
            sentence: "y".into(),
        }
    }

    #[test]
    fn transient_errors_are_network_server_and_rate_limit() {
        assert!(
            PushError::Unreachable {
                url: "u".into(),
                reason: "r".into()
            }
            .is_transient()
        );
        for s in [500, 503, 408, 429] {
            assert!(answered(s).is_transient(), "{s}");
        }
        for s in [400, 401, 403, 409, 422] {
            assert!(!answered(s).is_transient(), "{s}");
        }
    }

    #[test]
    fn an_answer_may_carry_a_lease() {
        let base = serde_json::json!({
            "status": "warning", "ear": "e", "node": "n", "subject": "CN=n",
            "token_sha256": "ab", "findings": []
        });
        let v: Verdict = serde_json::from_value(base.clone()).unwrap();
        assert_eq!(v.lease, None, "a verifier without leases");
        assert!(!serde_json::to_string(&v).unwrap().contains("lease"));
        let mut with = base;
        with["lease"] = "a.b.c".into();
        let v: Verdict = serde_json::from_value(with).unwrap();
        assert_eq!(v.lease.as_deref(), Some("a.b.c"));
    }

    #[test]
    fn exit_code_follows_the_status() {
        let v = |status: &str| Verdict {
            status: status.into(),
            ear: String::new(),
            node: "n".into(),
            subject: "CN=n".into(),
            token_sha256: String::new(),
            findings: vec![],
            lease: None,
        };
        assert_eq!(v("affirming").exit_code(), 0);
        assert_eq!(v("warning").exit_code(), 0);
        assert_eq!(v("contraindicated").exit_code(), 1);
        assert_eq!(v("none").exit_code(), 1);
    }

    #[test]
    fn client_checks_the_url_and_the_ca_file() {
        assert!(Client::new("ftp://x", &ClientOptions::default()).is_err());
        let c = Client::new("http://127.0.0.1:9/api/", &ClientOptions::default()).unwrap();
        assert_eq!(c.base(), "http://127.0.0.1:9/api");
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("ca.pem");
        std::fs::write(&empty, "no certificate here\n").unwrap();
        let with_ca = |ca: PathBuf| ClientOptions {
            ca: Some(ca),
            ..ClientOptions::default()
        };
        let err = Client::new("https://v", &with_ca(empty)).unwrap_err();
        assert!(err.to_string().contains("no certificate"), "{err:#}");
        assert!(Client::new("https://v", &with_ca(dir.path().join("missing.pem"))).is_err());
    }

    #[test]
    fn a_closed_port_is_unreachable() {
        // Bind and drop: the port is free and nothing listens on it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let c = Client::new(
            &format!("http://127.0.0.1:{port}"),
            &ClientOptions::default(),
        )
        .unwrap();
        let err = c.challenge().unwrap_err();
        assert!(matches!(err, PushError::Unreachable { .. }), "{err}");
        assert!(err.is_transient());
    }

    #[test]
    fn render_names_the_subject_and_short_id_and_lists_the_findings() {
        let v = Verdict {
            status: "warning".into(),
            ear: "e".into(),
            node: "0123456789abcdef".repeat(4),
            subject: "CN=n".into(),
            token_sha256: "ab".repeat(32),
            findings: vec![serde_json::json!({
                "severity": "unproven", "code": "simulated_inventory", "sentence": "Simulated."
            })],
            lease: None,
        };
        let mut out = Vec::new();
        render_verdict(&mut out, &v).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with("verifier: warning for CN=n [0123456789ab]\n"),
            "{text}"
        );
        assert!(
            text.contains("[unproven] simulated_inventory: Simulated."),
            "{text}"
        );
    }

    #[test]
    fn render_escapes_the_verifiers_words() {
        // A hostile or broken verifier: a subject that clears the screen, a node id that is
        // no id and ends inside a character, a finding with a bidi override.
        let v = Verdict {
            status: "affirming\u{1b}[2J".into(),
            ear: String::new(),
            node: "\u{9b}31mxxxxxxé".into(),
            subject: "CN=a\u{1b}[2J\ncompliant".into(),
            token_sha256: String::new(),
            findings: vec![serde_json::json!({
                "severity": "info", "code": "x", "sentence": "ok\u{202e}"
            })],
            lease: None,
        };
        let mut out = Vec::new();
        render_verdict(&mut out, &v).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            !text
                .chars()
                .any(|c| c == '\u{1b}' || c == '\u{9b}' || c == '\u{202e}'),
            "{text:?}"
        );
        assert_eq!(text.lines().count(), 2, "{text:?}");
    }

    #[test]
    fn short_node_is_twelve_digits_or_what_there_is() {
        let mut v = Verdict {
            status: String::new(),
            ear: String::new(),
            node: "f".repeat(64),
            subject: String::new(),
            token_sha256: String::new(),
            findings: vec![],
            lease: None,
        };
        assert_eq!(v.short_node(), "ffffffffffff");
        v.node = "abc".into();
        assert_eq!(v.short_node(), "abc");
        // Not on a character boundary: the whole text, escaped by whoever shows it.
        v.node = "aéééééé".into();
        assert_eq!(v.short_node(), "aéééééé");
    }

    /// A one-shot HTTP server on loopback that reads one request and answers `status` with
    /// `headers` and `body`; its URL, and the request's head (request line and headers) once
    /// read.
    fn serving(
        status: &str,
        headers: &str,
        body: String,
    ) -> (String, std::sync::mpsc::Receiver<String>) {
        use std::io::{BufRead, BufReader, Read};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = std::sync::mpsc::channel();
        let (status, headers) = (status.to_owned(), headers.to_owned());
        std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream);
            let (mut length, mut head) = (0, String::new());
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                if let Some((name, value)) = line.split_once(':')
                    && name.eq_ignore_ascii_case("content-length")
                {
                    length = value.trim().parse().unwrap();
                }
                if line == "\r\n" {
                    break;
                }
                head.push_str(&line);
            }
            reader.read_exact(&mut vec![0; length]).unwrap();
            let _ = tx.send(head);
            let mut stream = reader.into_inner();
            write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\n{headers}\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
            .unwrap();
        });
        (url, rx)
    }

    /// [`serving`] 200 with the JSON `body`.
    fn answering(body: String) -> String {
        serving("200 OK", "", body).0
    }

    fn node() -> NodeId {
        NodeId::from_hex(&"ab".repeat(32)).unwrap()
    }

    fn answer(token_sha256: &str) -> String {
        serde_json::json!({
            "status": "affirming", "ear": "e", "node": "ab".repeat(32),
            "subject": "CN=n", "token_sha256": token_sha256, "findings": []
        })
        .to_string()
    }

    #[test]
    fn an_answer_about_the_token_sent_is_taken() {
        let token = "a.b.c";
        let url = answering(answer(&sha256_hex(token.as_bytes())));
        // Surrounding whitespace (a token read from a file) is not sent, nor hashed.
        let v = Client::new(&url, &ClientOptions::default())
            .unwrap()
            .post_attestation(&format!("{token}\n"), node(), None)
            .unwrap();
        assert_eq!(v.subject, "CN=n");
        assert_eq!(v.short_node(), "abababababab");
    }

    #[test]
    fn an_answer_about_another_token_is_refused() {
        let url = answering(answer(&sha256_hex(b"another token")));
        let err = Client::new(&url, &ClientOptions::default())
            .unwrap()
            .post_attestation("a.b.c", node(), None)
            .unwrap_err();
        assert!(
            matches!(&err, PushError::Untrusted { refusal, .. } if refusal.code() == "answer_for_another_token"),
            "{err}"
        );
        assert!(!err.is_transient());
        assert!(err.to_string().contains("not the one sent"), "{err}");
    }

    #[test]
    fn an_answer_without_the_new_fields_names_the_missing_one() {
        let url = answering(r#"{"status": "affirming", "ear": "e", "node": "CN=n"}"#.to_owned());
        let err = Client::new(&url, &ClientOptions::default())
            .unwrap()
            .post_attestation("a.b.c", node(), None)
            .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("answer_unreadable") && text.contains("subject"),
            "{text}"
        );
    }

    #[test]
    fn sha256_hex_is_lower_case_hex() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
    #[test]
    fn no_redirect_is_followed_and_its_location_is_named() {
        // The target: a verifier on another port that would answer. It must never be called.
        let (elsewhere, called) = serving("200 OK", "", answer(&sha256_hex(b"a.b.c")));
        for (status, location) in [
            ("302 Found", format!("{elsewhere}/v1/challenge")),
            (
                "301 Moved Permanently",
                "http://127.0.0.1:9/v1/challenge".to_owned(),
            ),
            ("307 Temporary Redirect", "/v1/other".to_owned()),
        ] {
            let (url, _) = serving(status, &format!("Location: {location}\r\n"), String::new());
            let err = Client::new(&url, &ClientOptions::default())
                .unwrap()
                .challenge()
                .unwrap_err();
            let PushError::Redirected {
                status: code,
                location: named,
                ..
            } = &err
            else {
                panic!("{err}");
            };
            assert_eq!(status.split(' ').next(), Some(code.to_string().as_str()));
            assert_eq!(named, &location);
            assert!(!err.is_transient());
            assert!(err.to_string().contains("follows no redirects"), "{err}");
        }
        assert!(
            called.recv_timeout(Duration::from_millis(300)).is_err(),
            "the redirect target was never called"
        );
    }

    #[test]
    fn a_redirect_location_is_escaped_in_the_error_text() {
        let (url, _) = serving(
            "302 Found",
            "Location: http://evil.example/\u{9b}2Jok\u{202e}\r\n",
            String::new(),
        );
        let err = Client::new(&url, &ClientOptions::default())
            .unwrap()
            .challenge()
            .unwrap_err();
        let text = crate::error_text(&anyhow::Error::new(err));
        assert!(
            !text.chars().any(|c| c == '\u{9b}' || c == '\u{202e}'),
            "{text:?}"
        );
        assert!(text.contains("evil.example/\\u{9b}2Jok\\u{202e}"), "{text}");
    }

    #[test]
    fn a_verifier_error_cannot_start_a_line_or_steer_the_terminal() {
        let body = serde_json::json!({
            "code": "bad\u{1b}[31m",
            "sentence": "refused\ntppguard-agent: COMPLIANT\u{202e}\u{9b}2J"
        })
        .to_string();
        let (url, _) = serving("403 Forbidden", "", body);
        let err = Client::new(&url, &ClientOptions::default())
            .unwrap()
            .challenge()
            .unwrap_err();
        let text = crate::error_text(&anyhow::Error::new(err));
        assert_eq!(text.lines().count(), 1, "{text:?}");
        assert!(
            !text
                .chars()
                .any(|c| c == '\u{1b}' || c == '\u{202e}' || c == '\u{9b}'),
            "{text:?}"
        );
        assert!(text.contains("refused\\ntppguard-agent"), "{text}");
    }

    #[test]
    fn the_bearer_token_goes_on_every_request() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "tpg_node_secret\n").unwrap();
        let options = ClientOptions {
            token: Some(BearerToken::load(&file).unwrap()),
            ..ClientOptions::default()
        };
        let challenge = serde_json::json!({"nonce": "ab", "expires_at": 1}).to_string();
        let (url, head) = serving("200 OK", "", challenge);
        Client::new(&url, &options).unwrap().challenge().unwrap();
        let head = head.recv().unwrap();
        assert!(
            head.lines()
                .any(|l| l.eq_ignore_ascii_case("authorization: Bearer tpg_node_secret")),
            "{head}"
        );
        let token = "a.b.c";
        let (url, head) = serving("200 OK", "", answer(&sha256_hex(token.as_bytes())));
        Client::new(&url, &options)
            .unwrap()
            .post_attestation(token, node(), None)
            .unwrap();
        assert!(head.recv().unwrap().contains("Bearer tpg_node_secret"));
        // Without a token file, no Authorization header.
        let (url, head) = serving("200 OK", "", answer(&sha256_hex(token.as_bytes())));
        Client::new(&url, &ClientOptions::default())
            .unwrap()
            .post_attestation(token, node(), None)
            .unwrap();
        assert!(
            !head
                .recv()
                .unwrap()
                .to_ascii_lowercase()
                .contains("authorization")
        );
        // Never in the client's Debug.
        let client = Client::new("http://v", &options).unwrap();
        assert!(!format!("{client:?}").contains("secret"));
    }

    #[test]
    fn an_answer_about_another_node_is_refused() {
        let token = "a.b.c";
        let url = answering(answer(&sha256_hex(token.as_bytes())));
        let other = NodeId::from_hex(&"cd".repeat(32)).unwrap();
        let err = Client::new(&url, &ClientOptions::default())
            .unwrap()
            .post_attestation(token, other, None)
            .unwrap_err();
        assert!(
            matches!(&err, PushError::Untrusted { refusal, .. } if refusal.code() == "answer_for_another_node"),
            "{err}"
        );
    }
}
