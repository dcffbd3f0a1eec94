//! The verifier's answer checked before it is believed: the EAR (EAT Attestation Result) that
//! comes with every `POST /v1/attestations` answer is a JWT signed with the verifier's result
//! key (`verifier-result.pub.pem`, written by `tppguard-verifier pki init-verifier`). With that
//! public key pinned (`--verifier-result-key`, `verifier_result_key =`), the agent believes
//! an answer only when its EAR
//!
//! - verifies under the pinned key, with the key's algorithm (the shared JWS code,
//!   [`tppguard_proto::jws`]: `none`, `HS256` and an `alg` that is not the key's never pass),
//! - is an EAR ([`EAR_PROFILE`], `typ` JWT),
//! - appraises this node (its submod is keyed by this node's id) and the very token sent
//!   (`tppguard.token-sha256`),
//! - carries the challenge's nonce when the agent knows it (`eat_nonce`), and was issued
//!   while the token was being sent (`iat`, within [`MAX_SKEW_S`] of the request),
//! - says what the unsigned JSON says: the same status, and findings whose codes are the
//!   EAR's `tppguard.reasons`.
//!
//! Anything else is an [`EarRefusal`]: the answer is not trusted (exit code 7).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};

use rustls_pki_types::SubjectPublicKeyInfoDer;
use rustls_pki_types::pem::PemObject;
use serde::Deserialize;
use tppguard_proto::identity::NodeId;
use tppguard_proto::jws::{self, JwsError, VerifyingKey};

use crate::push::Verdict;

/// The EAR profile the verifier signs (`tppguard_verifier::ear::EAR_PROFILE`; the integration
/// test `push_believes_an_ear_only_under_the_pinned_result_key` fails if they part).
pub const EAR_PROFILE: &str = "tag:github.com,2023:veraison/ear";
/// The JWT `typ` of an EAR.
pub const EAR_TYP: &str = "JWT";
/// How far an EAR's `iat` may lie before the request was sent or after the answer came, in
/// seconds (clock skew between the node and the verifier).
pub const MAX_SKEW_S: i64 = 300;
/// The largest result-key file read.
const MAX_KEY_FILE_BYTES: u64 = 64 * 1024;

/// The verifier's pinned result key.
#[derive(Debug, Clone)]
pub struct ResultKey {
    key: VerifyingKey,
    path: PathBuf,
}

impl ResultKey {
    /// Reads a PEM public key (`-----BEGIN PUBLIC KEY-----`, SubjectPublicKeyInfo), as
    /// `pki init-verifier` writes `verifier-result.pub.pem`.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let fix = "copy verifier-result.pub.pem from the verifier's folder (`tppguard-verifier \
                   pki init-verifier` writes it) and name it with --verifier-result-key or \
                   verifier_result_key";
        let mut pem = Vec::new();
        std::fs::File::open(path)
            .and_then(|f| {
                f.take(MAX_KEY_FILE_BYTES.saturating_add(1))
                    .read_to_end(&mut pem)
            })
            .map_err(|e| {
                anyhow::anyhow!(
                    "the verifier result key {}: cannot be read ({e}); {fix}",
                    path.display()
                )
            })?;
        if u64::try_from(pem.len()).map_or(true, |len| len > MAX_KEY_FILE_BYTES) {
            anyhow::bail!(
                "the verifier result key {}: larger than {MAX_KEY_FILE_BYTES} bytes; {fix}",
                path.display()
            );
        }
        let der = SubjectPublicKeyInfoDer::from_pem_slice(&pem).map_err(|_| {
            anyhow::anyhow!(
                "the verifier result key {}: no PEM public key (-----BEGIN PUBLIC KEY-----) \
                 in it; {fix}",
                path.display()
            )
        })?;
        let key = VerifyingKey::from_spki_der(der.as_ref()).map_err(|e| {
            anyhow::anyhow!(
                "the verifier result key {}: refused ({}: {e}); {fix}",
                path.display(),
                e.code()
            )
        })?;
        Ok(Self {
            key,
            path: path.to_owned(),
        })
    }

    /// A key already in memory (tests).
    pub fn new(key: VerifyingKey, path: PathBuf) -> Self {
        Self { key, path }
    }

    /// The key (leases are verified under it too: [`crate::gate`]).
    pub fn key(&self) -> &VerifyingKey {
        &self.key
    }

    /// The file it came from.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// What the agent sent, to hold the EAR against.
#[derive(Debug, Clone, Copy)]
pub struct Sent<'a> {
    /// The node id of this node.
    pub node: NodeId,
    /// SHA-256 of the token sent, lower-case hex.
    pub token_sha256: &'a str,
    /// The challenge's nonce, when known (a queued token carries its own, bound by its hash).
    pub nonce: Option<&'a str>,
    /// Unix time just before the token was sent.
    pub sent_at: i64,
    /// Unix time the answer came.
    pub now: i64,
}

/// Why an answer's EAR is not believed. The verifier's text in it is quoted as sent: whoever
/// shows the message escapes it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EarRefusal {
    /// The answer appraises another token (the JSON's `token_sha256`).
    #[error("the answer appraises the token with SHA-256 {answered}, not the one sent ({sent})")]
    AnotherToken {
        /// What the answer says.
        answered: String,
        /// The SHA-256 of the token sent.
        sent: String,
    },
    /// The answer is about another node (the JSON's `node`).
    #[error("the answer is about node {answered}, not this node ({node})")]
    AnotherNode {
        /// What the answer says.
        answered: String,
        /// This node.
        node: NodeId,
    },
    /// The EAR is not a JWS the shared code reads, or its signature does not verify under the
    /// pinned key.
    #[error("its EAR does not verify under the pinned result key {} ({}: {source})", .key.display(), .source.code())]
    Signature {
        /// The pinned key's file.
        key: PathBuf,
        /// Why.
        #[source]
        source: JwsError,
    },
    /// The EAR's header or claims are not an EAR's.
    #[error("its EAR is signed but not an EAR: {reason}")]
    NotAnEar {
        /// What is wrong.
        reason: String,
    },
    /// The EAR has no appraisal of this node.
    #[error("its EAR has no appraisal of this node ({node})")]
    NoAppraisal {
        /// This node.
        node: NodeId,
    },
    /// The EAR appraises another token.
    #[error("its EAR appraises the token with SHA-256 {ear}, not the one sent ({sent})")]
    EarForAnotherToken {
        /// The EAR's `tppguard.token-sha256` (`-` when absent).
        ear: String,
        /// The SHA-256 of the token sent.
        sent: String,
    },
    /// The EAR names another challenge.
    #[error("its EAR names the nonce {ear}, not the challenge's ({sent})")]
    Nonce {
        /// The EAR's `eat_nonce` (`-` when absent).
        ear: String,
        /// The challenge's nonce.
        sent: String,
    },
    /// The EAR was not issued while the token was being sent.
    #[error(
        "its EAR was issued at {iat} (Unix time), outside the request ({sent_at} to {now}, \
         give or take {MAX_SKEW_S} s of clock skew)"
    )]
    Time {
        /// The EAR's `iat`.
        iat: i64,
        /// When the token was sent.
        sent_at: i64,
        /// When the answer came.
        now: i64,
    },
    /// The JSON's status is not the signed one.
    #[error("the answer says {answered} but its EAR says {ear}")]
    Status {
        /// The JSON's status.
        answered: String,
        /// The EAR's `ear.status`.
        ear: String,
    },
    /// The JSON's findings are not the ones the EAR's reasons name.
    #[error("the answer's findings ({answered}) are not the reasons its EAR names ({ear})")]
    Findings {
        /// The JSON findings' codes.
        answered: String,
        /// The EAR's `tppguard.reasons`.
        ear: String,
    },
}

impl EarRefusal {
    /// Every code, in declaration order.
    pub const CODES: [&'static str; 10] = [
        "answer_for_another_token",
        "answer_for_another_node",
        "ear_signature_invalid",
        "ear_malformed",
        "ear_without_this_node",
        "ear_for_another_token",
        "ear_nonce_mismatch",
        "ear_time_outside_request",
        "ear_status_mismatch",
        "ear_findings_mismatch",
    ];

    /// The stable snake_case code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::AnotherToken { .. } => "answer_for_another_token",
            Self::AnotherNode { .. } => "answer_for_another_node",
            Self::Signature { .. } => "ear_signature_invalid",
            Self::NotAnEar { .. } => "ear_malformed",
            Self::NoAppraisal { .. } => "ear_without_this_node",
            Self::EarForAnotherToken { .. } => "ear_for_another_token",
            Self::Nonce { .. } => "ear_nonce_mismatch",
            Self::Time { .. } => "ear_time_outside_request",
            Self::Status { .. } => "ear_status_mismatch",
            Self::Findings { .. } => "ear_findings_mismatch",
        }
    }
}

#[derive(Deserialize)]
struct Claims {
    eat_profile: String,
    iat: i64,
    #[serde(default)]
    eat_nonce: Option<String>,
    submods: BTreeMap<String, Appraisal>,
}

#[derive(Deserialize)]
struct Appraisal {
    #[serde(rename = "ear.status")]
    status: String,
    #[serde(rename = "tppguard.reasons", default)]
    reasons: Vec<String>,
    #[serde(rename = "tppguard.token-sha256", default)]
    token_sha256: Option<String>,
}

/// Checks the unsigned parts of an answer that need no key: it appraises the token sent and
/// this node.
pub fn check_answer(verdict: &Verdict, sent: &Sent<'_>) -> Result<(), EarRefusal> {
    if !verdict.token_sha256.eq_ignore_ascii_case(sent.token_sha256) {
        return Err(EarRefusal::AnotherToken {
            answered: verdict.token_sha256.clone(),
            sent: sent.token_sha256.to_owned(),
        });
    }
    if NodeId::from_hex(&verdict.node) != Some(sent.node) {
        return Err(EarRefusal::AnotherNode {
            answered: verdict.node.clone(),
            node: sent.node,
        });
    }
    Ok(())
}

/// Checks `verdict`'s EAR under `key` against what was `sent` (the module's list).
pub fn check_ear(key: &ResultKey, verdict: &Verdict, sent: &Sent<'_>) -> Result<(), EarRefusal> {
    let signature = |source| EarRefusal::Signature {
        key: key.path.clone(),
        source,
    };
    let verified = jws::decode(verdict.ear.trim())
        .map_err(signature)?
        .verify(&key.key)
        .map_err(signature)?;
    let not_an_ear = |reason: String| EarRefusal::NotAnEar { reason };
    if verified.header().typ.as_deref() != Some(EAR_TYP) {
        return Err(not_an_ear(format!("its typ is not {EAR_TYP}")));
    }
    let claims: Claims = serde_json::from_slice(verified.payload())
        .map_err(|e| not_an_ear(format!("its claims do not read: {e}")))?;
    if claims.eat_profile != EAR_PROFILE {
        return Err(not_an_ear(format!(
            "its eat_profile is {}, not {EAR_PROFILE}",
            claims.eat_profile
        )));
    }
    let appraisal = claims
        .submods
        .get(&sent.node.to_string())
        .ok_or(EarRefusal::NoAppraisal { node: sent.node })?;
    let ear_sha = appraisal.token_sha256.as_deref().unwrap_or("-");
    if !ear_sha.eq_ignore_ascii_case(sent.token_sha256) {
        return Err(EarRefusal::EarForAnotherToken {
            ear: ear_sha.to_owned(),
            sent: sent.token_sha256.to_owned(),
        });
    }
    if let Some(nonce) = sent.nonce
        && claims.eat_nonce.as_deref() != Some(nonce)
    {
        return Err(EarRefusal::Nonce {
            ear: claims.eat_nonce.unwrap_or_else(|| "-".to_owned()),
            sent: nonce.to_owned(),
        });
    }
    if claims.iat < sent.sent_at.saturating_sub(MAX_SKEW_S)
        || claims.iat > sent.now.saturating_add(MAX_SKEW_S)
    {
        return Err(EarRefusal::Time {
            iat: claims.iat,
            sent_at: sent.sent_at,
            now: sent.now,
        });
    }
    if appraisal.status != verdict.status {
        return Err(EarRefusal::Status {
            answered: verdict.status.clone(),
            ear: appraisal.status.clone(),
        });
    }
    let answered: BTreeSet<&str> = verdict
        .findings
        .iter()
        .map(|f| f["code"].as_str().unwrap_or("-"))
        .collect();
    let ear: BTreeSet<&str> = appraisal.reasons.iter().map(String::as_str).collect();
    if answered != ear {
        let list = |s: &BTreeSet<&str>| s.iter().copied().collect::<Vec<_>>().join(", ");
        return Err(EarRefusal::Findings {
            answered: list(&answered),
            ear: list(&ear),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tppguard_proto::jws::{Alg, Header, SigningKey};

    const NONCE: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    const AT: i64 = 1_780_000_000;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_ed25519_seed(&[seed; 32]).unwrap()
    }

    fn node() -> NodeId {
        NodeId::from_spki_der(b"node")
    }

    fn sha() -> String {
        "ab".repeat(32)
    }

    /// An EAR as `tppguard-verifier serve` signs it, with `edit` applied to its claims.
    fn ear(signer: &SigningKey, edit: impl FnOnce(&mut serde_json::Value)) -> String {
        let mut claims = serde_json::json!({
            "eat_profile": EAR_PROFILE,
            "iat": AT,
            "ear.verifier-id": {"build": "tppguard-verifier 0", "developer": "tppguard"},
            "eat_nonce": NONCE,
            "submods": {
                node().to_string(): {
                    "ear.status": "warning",
                    "tppguard.reasons": ["simulated_inventory"],
                    "tppguard.token-sha256": sha(),
                }
            }
        });
        edit(&mut claims);
        let payload = serde_json::to_vec(&claims).unwrap();
        jws::sign(&Header::new(Alg::EdDSA).with_typ("JWT"), &payload, signer).unwrap()
    }

    fn verdict(ear: String) -> Verdict {
        Verdict {
            status: "warning".into(),
            ear,
            node: node().to_string(),
            subject: "CN=n".into(),
            token_sha256: sha(),
            findings: vec![serde_json::json!({
                "severity": "unproven", "code": "simulated_inventory", "sentence": "S."
            })],
            lease: None,
        }
    }

    fn check(v: &Verdict) -> Result<(), EarRefusal> {
        let pinned = ResultKey::new(key(1).verifying_key(), "r.pub.pem".into());
        let token_sha256 = sha();
        let sent = Sent {
            node: node(),
            token_sha256: &token_sha256,
            nonce: Some(NONCE),
            sent_at: AT - 1,
            now: AT + 1,
        };
        check_answer(v, &sent)?;
        check_ear(&pinned, v, &sent)
    }

    fn refused(v: &Verdict) -> &'static str {
        check(v).unwrap_err().code()
    }

    #[test]
    fn a_genuine_ear_verifies() {
        check(&verdict(ear(&key(1), |_| {}))).unwrap();
    }

    #[test]
    fn an_ear_signed_by_another_key_is_refused() {
        assert_eq!(
            refused(&verdict(ear(&key(2), |_| {}))),
            "ear_signature_invalid"
        );
        // Another algorithm than the pinned key's, and an unsigned token.
        let p256 = SigningKey::generate_pkcs8(Alg::ES256).unwrap();
        let p256 = SigningKey::from_pkcs8(Alg::ES256, &p256).unwrap();
        let other = jws::sign(&Header::new(Alg::ES256).with_typ("JWT"), b"{}", &p256).unwrap();
        assert_eq!(refused(&verdict(other)), "ear_signature_invalid");
        let genuine = ear(&key(1), |_| {});
        let (head, _) = genuine.rsplit_once('.').unwrap();
        assert_eq!(
            refused(&verdict(format!("{head}."))),
            "ear_signature_invalid"
        );
    }

    #[test]
    fn an_ear_for_another_token_or_node_is_refused() {
        let other = ear(&key(1), |c| {
            let sub = &mut c["submods"][node().to_string()];
            sub["tppguard.token-sha256"] = "cd".repeat(32).into();
        });
        assert_eq!(refused(&verdict(other)), "ear_for_another_token");
        let elsewhere = ear(&key(1), |c| {
            let sub = c["submods"][node().to_string()].take();
            c["submods"] = serde_json::json!({ NodeId::from_spki_der(b"x").to_string(): sub });
        });
        assert_eq!(refused(&verdict(elsewhere)), "ear_without_this_node");
        // The unsigned JSON about another token or node, before any key is needed.
        let mut v = verdict(ear(&key(1), |_| {}));
        v.token_sha256 = "cd".repeat(32);
        assert_eq!(refused(&v), "answer_for_another_token");
        let mut v = verdict(ear(&key(1), |_| {}));
        v.node = NodeId::from_spki_der(b"x").to_string();
        assert_eq!(refused(&v), "answer_for_another_node");
    }

    #[test]
    fn a_tampered_status_or_finding_is_refused() {
        let mut v = verdict(ear(&key(1), |_| {}));
        v.status = "affirming".into();
        assert_eq!(refused(&v), "ear_status_mismatch");
        let mut v = verdict(ear(&key(1), |_| {}));
        v.findings.clear();
        assert_eq!(refused(&v), "ear_findings_mismatch");
        // The EAR's payload changed after signing: the signature no longer holds.
        let genuine = ear(&key(1), |_| {});
        let mut parts: Vec<String> = genuine.split('.').map(str::to_owned).collect();
        let forged = ear(&key(2), |c| {
            c["submods"][node().to_string()]["ear.status"] = "affirming".into();
        });
        parts[1] = forged.split('.').nth(1).unwrap().to_owned();
        assert_eq!(refused(&verdict(parts.join("."))), "ear_signature_invalid");
    }

    #[test]
    fn an_ear_for_another_challenge_or_time_is_refused() {
        let other = ear(&key(1), |c| c["eat_nonce"] = "ff".repeat(32).into());
        assert_eq!(refused(&verdict(other)), "ear_nonce_mismatch");
        let old = ear(&key(1), |c| c["iat"] = (AT - 3600).into());
        assert_eq!(refused(&verdict(old)), "ear_time_outside_request");
        let future = ear(&key(1), |c| c["iat"] = (AT + 3600).into());
        assert_eq!(refused(&verdict(future)), "ear_time_outside_request");
        // Within the skew: believed.
        let skewed = ear(&key(1), |c| c["iat"] = (AT + MAX_SKEW_S).into());
        check(&verdict(skewed)).unwrap();
        let profile = ear(&key(1), |c| c["eat_profile"] = "x".into());
        assert_eq!(refused(&verdict(profile)), "ear_malformed");
    }

    #[test]
    fn codes_are_unique_and_listed() {
        let set: BTreeSet<_> = EarRefusal::CODES.iter().collect();
        assert_eq!(set.len(), EarRefusal::CODES.len());
    }

    #[test]
    fn the_result_key_file_is_read_or_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = ResultKey::load(&dir.path().join("none.pem")).unwrap_err();
        assert!(missing.to_string().contains("none.pem"), "{missing}");
        let garbage = dir.path().join("g.pem");
        std::fs::write(&garbage, "not a key\n").unwrap();
        let err = ResultKey::load(&garbage).unwrap_err().to_string();
        assert!(err.contains("no PEM public key"), "{err}");
        let good = dir.path().join("r.pub.pem");
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        std::fs::write(&good, pair.public_key_pem()).unwrap();
        let loaded = ResultKey::load(&good).unwrap();
        assert_eq!(
            loaded.key,
            VerifyingKey::from_spki_der(&rcgen::PublicKeyData::subject_public_key_info(&pair))
                .unwrap()
        );
        assert_eq!(loaded.path(), good);
    }
}
