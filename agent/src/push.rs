//! `push`: one round with a verifier's HTTP API (`tppguard-verifier serve`): fetch a challenge,
//! attest over its nonce, post the token, print the verifier's answer. [`Client`] is shared
//! with `run`.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use tppguard_proto::text::Escaped;

use crate::cli::PushArgs;
use crate::{EXIT_DEGRADED, EXIT_OK, attest_token};

/// How long connecting to the verifier may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one request may take in all (sending the token, the verifier's evaluation, the
/// answer).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// The largest answer read (an EAR with its findings is far smaller).
const MAX_ANSWER_BYTES: u64 = 8 << 20;
/// Hex digits of a node id shown in text output.
const SHORT_NODE_ID: usize = 12;

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
}

impl PushError {
    /// Whether trying again later may help: no answer, a server error, a timeout or the
    /// rate limit. A rejection of the token itself (4xx) will not change by waiting.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Unreachable { .. } => true,
            Self::Answered { status, .. } => *status >= 500 || *status == 408 || *status == 429,
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

/// A blocking HTTP client for one verifier.
#[derive(Debug, Clone)]
pub struct Client {
    http: ureq::Agent,
    base: String,
}

impl Client {
    /// A client for the verifier at `url` (`http://` or `https://`; a path prefix is kept),
    /// trusting the PEM certificates in `ca` for `https://` (default: the Mozilla roots).
    pub fn new(url: &str, ca: Option<&Path>) -> anyhow::Result<Self> {
        let base = url.trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            anyhow::bail!("verifier URL {url:?}: give it as http://HOST:PORT or https://HOST");
        }
        let mut config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .timeout_global(Some(CALL_TIMEOUT))
            .user_agent(concat!("tppguard-agent/", env!("CARGO_PKG_VERSION")));
        if let Some(ca) = ca {
            let pem = std::fs::read(ca)
                .with_context(|| format!("reading the CA file {}", ca.display()))?;
            let certs = ureq::tls::parse_pem(&pem)
                .filter_map(|item| match item {
                    Ok(ureq::tls::PemItem::Certificate(c)) => Some(Ok(c)),
                    Ok(_) => None,
                    Err(e) => Some(Err(e)),
                })
                .collect::<Result<Vec<_>, _>>()
                .with_context(|| format!("the CA file {} is not PEM", ca.display()))?;
            if certs.is_empty() {
                anyhow::bail!("the CA file {} holds no certificate", ca.display());
            }
            config = config.tls_config(
                ureq::tls::TlsConfig::builder()
                    .root_certs(ureq::tls::RootCerts::new_with_certs(&certs))
                    .build(),
            );
        }
        Ok(Self {
            http: config.build().into(),
            base,
        })
    }

    /// The verifier's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// `POST /v1/challenge`.
    pub fn challenge(&self) -> Result<Challenge, PushError> {
        let url = format!("{}/v1/challenge", self.base);
        let resp = self.http.post(&url).send_empty();
        Self::parse(&url, resp)
    }

    /// `POST /v1/attestations` with the compact JWS `token`. An answer that appraises another
    /// token (its `token_sha256` is not the SHA-256 of the token sent) is refused as
    /// `answer_for_another_token`: its status would be about evidence this node did not send.
    pub fn post_attestation(&self, token: &str) -> Result<Verdict, PushError> {
        let url = format!("{}/v1/attestations", self.base);
        let token = token.trim();
        let resp = self
            .http
            .post(&url)
            .header("Content-Type", "application/jose")
            .send(token);
        let verdict: Verdict = Self::parse(&url, resp)?;
        let sent = sha256_hex(token.as_bytes());
        if !verdict.token_sha256.eq_ignore_ascii_case(&sent) {
            return Err(PushError::Answered {
                status: 200,
                code: "answer_for_another_token".to_owned(),
                sentence: format!(
                    "the verifier's answer appraises the token with SHA-256 {}, not the one \
                     sent ({sent}); do not rely on it, and report it to the verifier's operator",
                    verdict.token_sha256
                ),
            });
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
                sentence: body.chars().take(200).collect(),
            },
        })
    }
}

/// Lower-case hex SHA-256 of `bytes`.
fn sha256_hex(bytes: &[u8]) -> String {
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
    let client = Client::new(&args.verifier, args.ca.as_deref())?;
    let challenge = client.challenge()?;
    let attested = attest_token(
        &args.dir,
        &args.source,
        &challenge.nonce,
        args.site.as_deref(),
    )?;
    tracing::debug!(gpus = attested.claims.submods.len(), "attestation signed");
    let verdict = client.post_attestation(&attested.token)?;
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn exit_code_follows_the_status() {
        let v = |status: &str| Verdict {
            status: status.into(),
            ear: String::new(),
            node: "n".into(),
            subject: "CN=n".into(),
            token_sha256: String::new(),
            findings: vec![],
        };
        assert_eq!(v("affirming").exit_code(), 0);
        assert_eq!(v("warning").exit_code(), 0);
        assert_eq!(v("contraindicated").exit_code(), 1);
        assert_eq!(v("none").exit_code(), 1);
    }

    #[test]
    fn client_checks_the_url_and_the_ca_file() {
        assert!(Client::new("ftp://x", None).is_err());
        let c = Client::new("http://127.0.0.1:9/api/", None).unwrap();
        assert_eq!(c.base(), "http://127.0.0.1:9/api");
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("ca.pem");
        std::fs::write(&empty, "no certificate here\n").unwrap();
        let err = Client::new("https://v", Some(&empty)).unwrap_err();
        assert!(err.to_string().contains("no certificate"), "{err:#}");
        assert!(Client::new("https://v", Some(&dir.path().join("missing.pem"))).is_err());
    }

    #[test]
    fn a_closed_port_is_unreachable() {
        // Bind and drop: the port is free and nothing listens on it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let c = Client::new(&format!("http://127.0.0.1:{port}"), None).unwrap();
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
        };
        assert_eq!(v.short_node(), "ffffffffffff");
        v.node = "abc".into();
        assert_eq!(v.short_node(), "abc");
        // Not on a character boundary: the whole text, escaped by whoever shows it.
        v.node = "aéééééé".into();
        assert_eq!(v.short_node(), "aéééééé");
    }

    /// A one-shot HTTP server on loopback that reads one request and answers `body` (JSON,
    /// 200); its URL.
    fn answering(body: String) -> String {
        use std::io::{BufRead, BufReader, Read};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream);
            let mut length = 0;
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
            }
            reader.read_exact(&mut vec![0; length]).unwrap();
            let mut stream = reader.into_inner();
            write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n{body}",
                body.len()
            )
            .unwrap();
        });
        url
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
        let v = Client::new(&url, None)
            .unwrap()
            .post_attestation(&format!("{token}\n"))
            .unwrap();
        assert_eq!(v.subject, "CN=n");
        assert_eq!(v.short_node(), "abababababab");
    }

    #[test]
    fn an_answer_about_another_token_is_refused() {
        let url = answering(answer(&sha256_hex(b"another token")));
        let err = Client::new(&url, None)
            .unwrap()
            .post_attestation("a.b.c")
            .unwrap_err();
        assert!(
            matches!(&err, PushError::Answered { code, .. } if code == "answer_for_another_token"),
            "{err}"
        );
        assert!(!err.is_transient());
        assert!(err.to_string().contains("not the one sent"), "{err}");
    }

    #[test]
    fn an_answer_without_the_new_fields_names_the_missing_one() {
        let url = answering(r#"{"status": "affirming", "ear": "e", "node": "CN=n"}"#.to_owned());
        let err = Client::new(&url, None)
            .unwrap()
            .post_attestation("a.b.c")
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
}
