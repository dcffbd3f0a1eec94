//! The verifier's result as an EAR (EAT Attestation Result, draft-ietf-rats-ear): a JWT
//! signed with the verifier's result key (DESIGN.md "Formats").
//!
//! The claim set uses the draft's names: `eat_profile`
//! ([`EAR_PROFILE`]), `iat`, `ear.verifier-id` (`build`, `developer`), optional `eat_nonce`,
//! and `submods`, one appraisal per node with its `ear.status`. The trustworthiness vector is
//! left out: tppguard does not appraise the AR4SI claims it would carry, and an EAR must not
//! invent them. Each appraisal adds two claims of its own (unregistered extensions, named
//! under `tppguard.` as the draft allows): `tppguard.reasons`, the reason codes behind its
//! status, and `tppguard.token-sha256`, the SHA-256 (lower-case hex) of the attestation token
//! appraised, so a relying party can tell which evidence the status is about; and
//! `tppguard.gpus`, each GPU's own evidence tier and the named checks of its own evidence
//! (signed SPDM report and device chain), so a relying party sees which GPUs are rooted in
//! hardware and why the others are not. The appraisals are keyed by node id (the SHA-256 of the node certificate's SubjectPublicKeyInfo).
//! The claim set also carries `tppguard.posture`, the enforcement posture the appraisals rest
//! on (the rule set's id, version and legal status, where it came from, and the shipped rule
//! set and changes a variant or scenario made): a signed result never shows a modified or
//! historical rule set as the one in force.
//!
//! [`status_of`] is the one mapping from a finding's [`Severity`] to an EAR status.

use std::collections::BTreeMap;
use tppguard_proto::identity::NodeId;

use serde::Serialize;
use tppguard_proto::claims::Nonce;
use tppguard_proto::jws::{self, Header, SigningKey};
use tppguard_proto::ruleset::RuleSetPosture;

use tppguard_proto::evidence::EvidenceTier;

use crate::error::Error;
use crate::gpu_evidence::Outcome;
use crate::policy::{Finding, FindingIndex, FleetVerdict, GpuVerdict, NodeVerdict, Severity};

/// The EAR profile (draft-ietf-rats-ear).
pub const EAR_PROFILE: &str = "tag:github.com,2023:veraison/ear";

/// The JWT `typ` of an EAR.
pub const EAR_TYP: &str = "JWT";

/// `ear.verifier-id.developer`.
pub const DEVELOPER: &str = "tppguard";

/// An EAR status (AR4SI trustworthiness tier). Ordered, so the worst of several is their
/// `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EarStatus {
    /// No claim about trustworthiness can be made.
    None,
    /// Appraised and found trustworthy.
    Affirming,
    /// Appraised; something needs attention.
    Warning,
    /// Appraised and found not trustworthy (here: not compliant).
    Contraindicated,
}

/// The EAR status of a finding's severity: the only place this mapping is made.
pub const fn status_of(severity: Severity) -> EarStatus {
    match severity {
        Severity::Info => EarStatus::Affirming,
        Severity::Warning | Severity::Unproven => EarStatus::Warning,
        Severity::Violation => EarStatus::Contraindicated,
    }
}

/// The status of a submod whose attestation was rejected.
pub const REJECTED_STATUS: EarStatus = EarStatus::Contraindicated;

/// `ear.verifier-id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifierId {
    /// The verifier's build: `tppguard-verifier <version>`.
    pub build: String,
    /// Who made it.
    pub developer: String,
}

impl VerifierId {
    /// This verifier.
    pub fn this() -> Self {
        Self {
            build: format!("tppguard-verifier {}", env!("CARGO_PKG_VERSION")),
            developer: DEVELOPER.to_owned(),
        }
    }
}

/// One appraisal (a submod of the EAR).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Appraisal {
    /// `ear.status`.
    #[serde(rename = "ear.status")]
    pub status: EarStatus,
    /// The reason codes behind the status, worst first, each once.
    #[serde(rename = "tppguard.reasons")]
    pub reasons: Vec<String>,
    /// SHA-256 of the attestation token appraised, lower-case hex (absent for a rejection).
    #[serde(
        rename = "tppguard.token-sha256",
        skip_serializing_if = "Option::is_none"
    )]
    pub token_sha256: Option<String>,
    /// Each GPU of the node (by submod name): the tier the verifier derived for it and, when
    /// it carried its own evidence, each named check's outcome and the codes of those that did
    /// not pass (absent for a rejection).
    #[serde(rename = "tppguard.gpus", skip_serializing_if = "BTreeMap::is_empty")]
    pub gpus: BTreeMap<String, GpuAppraisal>,
}

/// One GPU of an appraised node. Compact, since an EAR carries every GPU of a node: the tier,
/// each check's outcome by name, and the reason code of each check that did not pass. No
/// hardware identity: an EAR is signed and shown whole (a node's history), so it carries
/// nothing a regulator's view must redact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GpuAppraisal {
    /// The GPU's own evidence tier, as the verifier derived it.
    pub tier: EvidenceTier,
    /// Each check of its evidence by name, with its outcome (`passed`, `failed`,
    /// `not_checked`); absent when the GPU carried no evidence.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub checks: BTreeMap<&'static str, Outcome>,
    /// The reason code of each check that did not pass, by name.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub codes: BTreeMap<&'static str, String>,
}

impl GpuAppraisal {
    fn of(gpu: &GpuVerdict) -> Self {
        let checks = gpu.gpu_evidence.as_deref().map_or(&[][..], |r| &r.checks);
        Self {
            tier: gpu.evidence_tier,
            checks: checks
                .iter()
                .map(|c| (c.name.as_str(), c.outcome))
                .collect(),
            codes: checks
                .iter()
                .filter(|c| c.outcome != Outcome::Passed)
                .map(|c| (c.name.as_str(), c.code.clone()))
                .collect(),
        }
    }
}

impl Appraisal {
    /// The appraisal of `node`'s token: the worst status of `findings` (affirming when there
    /// are none) and their codes, each once, in order.
    fn of(node: &NodeVerdict, findings: &[&Finding]) -> Self {
        let mut status = EarStatus::Affirming;
        let mut reasons: Vec<String> = Vec::new();
        for finding in findings {
            status = status.max(status_of(finding.severity));
            if !reasons.iter().any(|r| r == finding.code) {
                reasons.push(finding.code.to_owned());
            }
        }
        Self {
            status,
            reasons,
            token_sha256: Some(node.token_sha256.clone()),
            gpus: node
                .gpus
                .iter()
                .map(|g| (g.submod.to_string(), GpuAppraisal::of(g)))
                .collect(),
        }
    }
}

/// An EAR claim set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EarClaims {
    /// `eat_profile`.
    pub eat_profile: &'static str,
    /// `iat`: the evaluation instant, Unix seconds.
    pub iat: i64,
    /// `ear.verifier-id`.
    #[serde(rename = "ear.verifier-id")]
    pub verifier_id: VerifierId,
    /// `eat_nonce`: the challenge the attestations were checked against, when one was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eat_nonce: Option<String>,
    /// `tppguard.posture`: the rule set the appraisals rest on, with its status, origin and
    /// modifications (the verdict's `posture`).
    #[serde(rename = "tppguard.posture")]
    pub posture: RuleSetPosture,
    /// `submods`: one appraisal per node (its node id) and per rejected attestation
    /// (`rejected:<file>`).
    pub submods: BTreeMap<String, Appraisal>,
}

/// An attestation the verifier rejected, as the EAR shows it.
#[derive(Debug, Clone, Copy)]
pub struct Rejection<'a> {
    /// The file it came from.
    pub file: &'a str,
    /// The rejection's reason code.
    pub code: &'static str,
}

impl EarClaims {
    /// The claim set for `verdict` (the first rule set's) at `at`, with one contraindicated
    /// submod per rejected attestation.
    ///
    /// A node's status is the worst of the findings that bear on it
    /// ([`FindingIndex::for_node`]): about the node or its GPUs (a duplicated GPU bears on
    /// every node reporting it), about the licence it is assigned to or the whole fleet (no
    /// node named): a licence over its cap makes every node counted under it
    /// contraindicated. No finding: affirming.
    pub fn new(
        verdict: &FleetVerdict,
        rejected: &[Rejection<'_>],
        nonce: Option<&Nonce>,
        at: i64,
    ) -> Self {
        let index = verdict.finding_index();
        let mut submods: BTreeMap<String, Appraisal> = verdict
            .nodes
            .iter()
            .map(|node| {
                let appraisal = Appraisal::of(node, &index.for_node(node));
                (node.node.to_string(), appraisal)
            })
            .collect();
        for r in rejected {
            let appraisal = submods
                .entry(format!("rejected:{}", r.file))
                .or_insert_with(|| Appraisal {
                    status: REJECTED_STATUS,
                    reasons: Vec::new(),
                    token_sha256: None,
                    gpus: BTreeMap::new(),
                });
            if !appraisal.reasons.iter().any(|c| c == r.code) {
                appraisal.reasons.push(r.code.to_owned());
            }
        }
        Self {
            eat_profile: EAR_PROFILE,
            iat: at,
            verifier_id: VerifierId::this(),
            eat_nonce: nonce.map(|n| n.as_str().to_owned()),
            posture: verdict.posture.clone(),
            submods,
        }
    }

    /// The claim set for one node of `verdict`: its appraisal alone (empty `submods` when the
    /// verdict has no such node).
    pub fn for_node(
        verdict: &FleetVerdict,
        index: &FindingIndex<'_>,
        node: NodeId,
        nonce: Option<&Nonce>,
        at: i64,
    ) -> Self {
        let submods = verdict
            .nodes
            .binary_search_by(|n| n.node.cmp(&node))
            .ok()
            .and_then(|i| verdict.nodes.get(i))
            .map(|n| (n.node.to_string(), Appraisal::of(n, &index.for_node(n))))
            .into_iter()
            .collect();
        Self {
            eat_profile: EAR_PROFILE,
            iat: at,
            verifier_id: VerifierId::this(),
            eat_nonce: nonce.map(|n| n.as_str().to_owned()),
            posture: verdict.posture.clone(),
            submods,
        }
    }

    /// Signs the claim set as a JWT (`typ` JWT, `alg` the key's).
    pub fn sign(&self, key: &SigningKey) -> Result<String, Error> {
        let payload = serde_json::to_vec(self)?;
        jws::sign(&Header::new(key.alg()).with_typ(EAR_TYP), &payload, key).map_err(Error::EarSign)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn severity_maps_to_status() {
        assert_eq!(status_of(Severity::Info), EarStatus::Affirming);
        assert_eq!(status_of(Severity::Warning), EarStatus::Warning);
        assert_eq!(status_of(Severity::Violation), EarStatus::Contraindicated);
        assert_eq!(REJECTED_STATUS, EarStatus::Contraindicated);
    }

    #[test]
    fn worse_severity_gives_worse_status() {
        let severities = [Severity::Info, Severity::Warning, Severity::Violation];
        for pair in severities.windows(2) {
            assert!(pair[0] < pair[1]);
            assert!(status_of(pair[0]) < status_of(pair[1]));
        }
        assert!(EarStatus::None < EarStatus::Affirming);
    }

    #[test]
    fn measurement_findings_map_by_their_severity() {
        use crate::policy::{Reason, SpecRatio};
        let rate = |t: &str| t.parse().unwrap();
        let exceeds = Reason::ExceedsSpec {
            model: "H100 SXM5 80GB".to_owned(),
            precision: tppguard_proto::tpp::Precision::Fp8,
            measured_tops: rate("2200"),
            spec_tops: rate("1978.9"),
            ratio: SpecRatio::new(rate("2200"), rate("1978.9")).unwrap(),
            tolerance_percent: 10,
        };
        // A part more capable than it claims is not compliant.
        assert_eq!(status_of(exceeds.severity()), EarStatus::Contraindicated);
        let downgraded = Reason::MeasuredTierDowngraded {
            claimed: tppguard_proto::evidence::EvidenceTier::Measured,
            effective: tppguard_proto::evidence::EvidenceTier::Declared,
            gpus: 1,
            unmeasured: 1,
            exceeding: 0,
            unlisted: 0,
            no_spec_figure: 0,
            stale: 0,
            simulated: 0,
        };
        assert_eq!(status_of(downgraded.severity()), EarStatus::Warning);
    }

    #[test]
    fn statuses_serialize_with_the_draft_names() {
        let names: Vec<String> = [
            EarStatus::None,
            EarStatus::Affirming,
            EarStatus::Warning,
            EarStatus::Contraindicated,
        ]
        .iter()
        .map(|s| serde_json::to_string(s).unwrap())
        .collect();
        assert_eq!(
            names,
            [
                "\"none\"",
                "\"affirming\"",
                "\"warning\"",
                "\"contraindicated\""
            ]
        );
    }

    #[test]
    fn claim_set_uses_ear_names_and_signs_as_jwt() {
        let verdict = FleetVerdict {
            at: 1_780_272_000,
            rule_set: "us-eccn-3a090".to_owned(),
            rule_set_version: "1".to_owned(),
            rule_set_status: tppguard_proto::ruleset::RuleSetStatus::InForce,
            posture: tppguard_proto::ruleset::shipped_rule_set("us-eccn-3a090")
                .unwrap()
                .posture(),
            verdict: crate::policy::Verdict::Compliant,
            nodes: Vec::new(),
            licences: Vec::new(),
            countries: Vec::new(),
            findings: Vec::new(),
        };
        let rejected = [Rejection {
            file: "b.jws",
            code: "nonce_mismatch",
        }];
        let claims = EarClaims::new(&verdict, &rejected, None, 1_780_272_000);
        let json: serde_json::Value = serde_json::to_value(&claims).unwrap();
        assert_eq!(json["eat_profile"], EAR_PROFILE);
        assert_eq!(json["iat"], 1_780_272_000);
        assert_eq!(json["ear.verifier-id"]["developer"], "tppguard");
        assert!(
            json["ear.verifier-id"]["build"]
                .as_str()
                .unwrap()
                .starts_with("tppguard-verifier ")
        );
        assert!(json.get("eat_nonce").is_none());
        let posture = &json["tppguard.posture"];
        assert_eq!(posture["rule_set"], "us-eccn-3a090");
        assert_eq!(posture["status"], "in_force");
        assert_eq!(posture["origin"], "shipped");
        assert!(posture.get("variant_of").is_none() && posture.get("modifications").is_none());
        let sub = &json["submods"]["rejected:b.jws"];
        assert_eq!(sub["ear.status"], "contraindicated");
        assert_eq!(sub["tppguard.reasons"][0], "nonce_mismatch");

        let seed = [7u8; 32];
        let key = SigningKey::from_ed25519_seed(&seed).unwrap();
        let token = claims.sign(&key).unwrap();
        let verified = jws::decode(&token)
            .unwrap()
            .verify(&key.verifying_key())
            .unwrap();
        assert_eq!(verified.header().typ.as_deref(), Some("JWT"));
        let back: serde_json::Value = serde_json::from_slice(verified.payload()).unwrap();
        assert_eq!(back, json);
    }

    #[test]
    fn a_scenario_s_posture_is_signed_as_modified() {
        use tppguard_proto::ruleset::shipped_rule_set;
        let shipped = shipped_rule_set("us-ai-diffusion-2025").unwrap();
        let modified = shipped
            .with_country_in_group("FR".parse().unwrap(), "tier_2")
            .unwrap();
        let verdict = crate::policy::evaluate(&[], &[], &modified, [], 1_780_272_000);
        let claims = EarClaims::new(&verdict, &[], None, 1_780_272_000);
        assert_eq!(claims.posture, modified.posture());
        let json = serde_json::to_value(&claims).unwrap();
        let posture = &json["tppguard.posture"];
        assert_eq!(posture["rule_set"], "us-ai-diffusion-2025");
        assert_eq!(posture["status"], json!(shipped.status));
        assert_eq!(posture["origin"], "scenario");
        assert_eq!(posture["variant_of"], "us-ai-diffusion-2025");
        assert_eq!(
            posture["modifications"],
            json!(["FR moved from tier_1 to tier_2"])
        );
        // One node's claim set carries it too.
        let index = verdict.finding_index();
        let one = EarClaims::for_node(
            &verdict,
            &index,
            NodeId::from_spki_der(b"none"),
            None,
            1_780_272_000,
        );
        assert_eq!(one.posture, modified.posture());
    }
}
