//! `tppguard-verifier check`: verify licences and attestations against trust.toml at one
//! instant, evaluate the accepted evidence under one or more rule sets side by side
//! ([`evaluate`]), and report (tables or one JSON object, optionally an EAR JWT).
//!
//! With `--scenario`, the same evidence is also evaluated at the same instant under the
//! scenario's rule sets and licences ([`Scenario`]) and compared with the baseline
//! ([`compare`]): the report's `scenario`, and a WHAT IF section in the text. A scenario is
//! hypothetical: the exit code is the baseline's.
//!
//! A licence or attestation that fails verification does not stop the run: it is reported with its
//! reason code and makes the result not compliant. Only what prevents the check itself is an
//! [`Error`]: an unreadable file or trust file, an unknown rule set (named with `--rule-set`, or,
//! without it, by an accepted licence), an unusable result key, a scenario change that cannot be
//! applied. The output is deterministic: inputs are put in a fixed order (by file name, then by
//! content hash) and every list is sorted, so a fixed `--at` gives the same bytes.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use ring::digest;
use rustls_pki_types::PrivatePkcs8KeyDer;
use rustls_pki_types::pem::PemObject;
use serde::Serialize;
use tppguard_proto::claims::measurement::MeasurementMethod;
use tppguard_proto::jws::{MAX_JWS_BYTES, SigningKey};
use tppguard_proto::ruleset::{RuleSet, RuleSetError, RuleSetPosture, shipped_rule_set};

use crate::Outcome;
use crate::attestation::verify_attestation;
use crate::chain::{self, TrustAnchors};
use crate::classify::load_rule_sets;
use crate::cli::CheckArgs;
use crate::ear::{EarClaims, Rejection};
use crate::error::Error;
use crate::licence::{format_rfc3339, verify_licence};
use crate::pki::RESULT_KEY;
use crate::policy::{
    CountryUsage, FleetVerdict, GpuMeasurement, GpuVerdict, LicenceUsage, Verdict,
    VerifiedAttestation, VerifiedLicence, VerifiedShipment, evaluate,
};
use crate::scenario::{Comparison, Scenario, ScenarioError, compare, grouped, write_comparison};
use tppguard_proto::text::Escaped;

/// The rule set evaluated when no `--rule-set` is given and no licence is accepted.
pub const DEFAULT_RULE_SET: &str = "us-eccn-3a090";

/// One licence file, as `check` saw it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LicenceEntry {
    /// The file, as given.
    pub file: String,
    /// Whether it verified.
    pub accepted: bool,
    /// The licence id, when accepted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The rule set the licence names, when accepted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule_set: Option<String>,
    /// The reason code, when rejected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<&'static str>,
    /// The reason, when rejected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sentence: Option<String>,
}

/// One shipment file (`--shipment`), as `check` saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ShipmentEntry {
    /// The file, as given.
    pub file: String,
    /// Whether it verified.
    pub accepted: bool,
    /// The shipment id, when accepted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The licence it ships under, when accepted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub licence: Option<String>,
    /// The vendor that signed it (its certificate's subject), when accepted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vendor: Option<String>,
    /// The devices it lists, when accepted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub devices: Option<u64>,
    /// The reason code, when rejected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<&'static str>,
    /// The reason, when rejected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sentence: Option<String>,
}

/// An accepted attestation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AcceptedAttestation {
    /// The file, as given.
    pub file: String,
    /// The node: the SHA-256 of its certificate's SubjectPublicKeyInfo, hex.
    pub node: String,
    /// The node certificate's subject, for display.
    pub subject: String,
    /// When it was made, Unix seconds.
    pub iat: i64,
    /// SHA-256 of the token, hex.
    pub token_sha256: String,
}

/// A rejected input file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rejected {
    /// The file, as given.
    pub file: String,
    /// The stable reason code.
    pub code: &'static str,
    /// The reason.
    pub sentence: String,
}

/// The attestations, accepted and rejected.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Attestations {
    /// Those that verified.
    pub accepted: Vec<AcceptedAttestation>,
    /// Those that did not.
    pub rejected: Vec<Rejected>,
}

/// The result of `check`, as printed with `--json`. Field names are stable.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckReport {
    /// The instant checked at, Unix seconds.
    pub at: i64,
    /// `at` as RFC 3339.
    pub at_rfc3339: String,
    /// Every licence file, in file order.
    pub licences: Vec<LicenceEntry>,
    /// Every shipment file (`--shipment`), in file order; absent when none was given.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub shipments: Vec<ShipmentEntry>,
    /// Every attestation file.
    pub attestations: Attestations,
    /// The enforcement posture of the determination: one per rule set evaluated, in order
    /// (id, version, legal status, origin, and how it was modified when it was).
    pub posture: Vec<RuleSetPosture>,
    /// One verdict per rule set, in the order evaluated.
    pub verdicts: Vec<FleetVerdict>,
    /// The worst verdict of the rule sets evaluated: `compliant` under every rule set with no
    /// input rejected; `not_compliant` when an input is rejected. A what-if scenario never
    /// changes it.
    pub verdict: Verdict,
    /// The what-if scenario (`--scenario`), when one was given: hypothetical, beside the
    /// baseline above.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scenario: Option<ScenarioReport>,
}

/// A what-if scenario: the same evidence at the same instant under changed rule sets or
/// licences, and its comparison with the baseline. Hypothetical: the exit code is the
/// baseline's.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScenarioReport {
    /// The changes, canonical (`FR=tier_2`), in the order given.
    pub changes: Vec<String>,
    /// The scenario's enforcement posture, one per rule set (MODIFIED where changed).
    pub posture: Vec<RuleSetPosture>,
    /// One verdict per scenario rule set, in the baseline's order.
    pub verdicts: Vec<FleetVerdict>,
    /// One comparison per (baseline, scenario) rule-set pair, in order.
    pub comparisons: Vec<Comparison>,
}

impl CheckReport {
    /// Licences, shipments or attestations rejected.
    pub fn rejections(&self) -> usize {
        self.attestations.rejected.len()
            + self.licences.iter().filter(|l| !l.accepted).count()
            + self.shipments.iter().filter(|s| !s.accepted).count()
    }

    /// One scenario's verdict: its own, or `not_compliant` when an input was rejected.
    pub fn scenario_verdict(&self, verdict: &FleetVerdict) -> Verdict {
        if self.rejections() > 0 {
            Verdict::NotCompliant
        } else {
            verdict.verdict
        }
    }
}

/// Runs `check` at Unix time `now` (used when `--at` is not given).
pub fn run(args: &CheckArgs, out: &mut dyn Write, now: i64) -> Result<Outcome, Error> {
    let at = args.at.unwrap_or(now);
    // A malformed change stops the run before any file is read.
    let scenario = if args.scenario.is_empty() {
        None
    } else {
        Some(Scenario::parse(&args.scenario)?)
    };
    let trust = TrustAnchors::from_trust_toml(&args.trust)?;

    // Read every input first: an unreadable file stops the run before anything is printed.
    let licence_files = read_inputs(&args.licence)?;
    let shipment_files = read_inputs(&args.shipment)?;
    let attestation_files = read_inputs(&args.attestations)?;

    let mut licences = Vec::with_capacity(licence_files.len());
    let mut verified_licences = Vec::new();
    for input in &licence_files {
        licences.push(match verify_licence(&input.text, &trust, at) {
            Ok(v) => {
                let entry = LicenceEntry {
                    file: input.name.clone(),
                    accepted: true,
                    id: Some(v.licence().id().to_owned()),
                    rule_set: Some(v.licence().rule_set().to_owned()),
                    code: None,
                    sentence: None,
                };
                verified_licences.push(v);
                entry
            }
            Err(e) => LicenceEntry {
                file: input.name.clone(),
                accepted: false,
                id: None,
                rule_set: None,
                code: Some(e.code()),
                sentence: Some(e.sentence()),
            },
        });
    }

    let (shipments, verified_shipments) = verify_shipments(&shipment_files, &trust, at);

    let mut attestations = Attestations::default();
    let mut verified_attestations: Vec<VerifiedAttestation> = Vec::new();
    for input in &attestation_files {
        match verify_attestation(&input.text, &trust, at, args.nonce.as_ref()) {
            Ok(v) => {
                attestations.accepted.push(AcceptedAttestation {
                    file: input.name.clone(),
                    node: v.node_id().to_string(),
                    subject: v.node_subject().to_owned(),
                    iat: v.claims().iat,
                    token_sha256: hex(v.token_sha256()),
                });
                verified_attestations.push(v);
            }
            Err(e) => attestations.rejected.push(Rejected {
                file: input.name.clone(),
                code: e.code(),
                sentence: e.sentence(),
            }),
        }
    }

    let rule_sets = rule_sets(&args.rule_set, &verified_licences)?;
    let verdicts: Vec<FleetVerdict> = rule_sets
        .iter()
        .map(|r| {
            evaluate(
                &verified_licences,
                &verified_shipments,
                r,
                &verified_attestations,
                at,
            )
        })
        .collect();
    let scenario = scenario
        .map(|s| {
            run_scenario(
                &s,
                &rule_sets,
                &verified_licences,
                &verified_shipments,
                &verified_attestations,
                &verdicts,
                at,
            )
        })
        .transpose()?;

    let mut report = CheckReport {
        at,
        at_rfc3339: format_rfc3339(at),
        licences,
        shipments,
        attestations,
        posture: rule_sets.iter().map(RuleSet::posture).collect(),
        verdicts,
        verdict: Verdict::NotCompliant,
        scenario,
    };
    report.verdict = report
        .verdicts
        .iter()
        .map(|v| report.scenario_verdict(v))
        .max()
        .unwrap_or(Verdict::NotCompliant);

    if let Some(ear_path) = &args.ear {
        let key = ear_key(&args.trust, args.ear_key.as_deref())?;
        let rejected: Vec<Rejection<'_>> = report
            .attestations
            .rejected
            .iter()
            .map(|r| Rejection {
                file: &r.file,
                code: r.code,
            })
            .collect();
        // No rule set means nothing to appraise; `rule_sets` always gives at least one.
        if let Some(first) = report.verdicts.first() {
            let claims = EarClaims::new(first, &rejected, args.nonce.as_ref(), at);
            let token = claims.sign(&key)?;
            crate::pki::write_public(ear_path, format!("{token}\n").as_bytes())?;
        }
    }

    if args.json {
        serde_json::to_writer_pretty(&mut *out, &report)?;
        writeln!(out)?;
    } else {
        write_human(&report, args.ear.as_deref(), out)?;
    }
    Ok(match report.verdict {
        Verdict::Compliant => Outcome::Clean,
        Verdict::Unproven => Outcome::Unproven,
        Verdict::NotCompliant => Outcome::Findings,
    })
}

/// Evaluates the scenario: its rule sets (one per baseline rule set) and licences, the same
/// attestations at the same instant, and one comparison per pair.
fn run_scenario(
    scenario: &Scenario,
    rule_sets: &[RuleSet],
    licences: &[VerifiedLicence],
    shipments: &[VerifiedShipment],
    attestations: &[VerifiedAttestation],
    baseline: &[FleetVerdict],
    at: i64,
) -> Result<ScenarioReport, Error> {
    let scenario_rule_sets = scenario.rule_sets(rule_sets, &load_scenario_rule_set)?;
    let scenario_licences = scenario.licences(licences)?;
    let verdicts: Vec<FleetVerdict> = scenario_rule_sets
        .iter()
        .map(|r| evaluate(&scenario_licences, shipments, r, attestations, at))
        .collect();
    let comparisons = baseline
        .iter()
        .zip(&verdicts)
        .map(|(b, s)| compare(b, s))
        .collect();
    Ok(ScenarioReport {
        changes: scenario.changes.iter().map(ToString::to_string).collect(),
        posture: scenario_rule_sets.iter().map(RuleSet::posture).collect(),
        verdicts,
        comparisons,
    })
}

/// Verifies each shipment file under the trust file's `[vendor]` roots at `at`: one entry per
/// file, and the shipments that verified. A shipment that does not verify is reported with
/// its code, like a licence, and makes the result not compliant; it never stops the run.
fn verify_shipments(
    files: &[Input],
    trust: &TrustAnchors,
    at: i64,
) -> (Vec<ShipmentEntry>, Vec<VerifiedShipment>) {
    let mut entries = Vec::with_capacity(files.len());
    let mut verified = Vec::with_capacity(files.len());
    for input in files {
        entries.push(
            match crate::shipment::verify_token(trust, &input.text, at) {
                Ok(s) => {
                    let entry = ShipmentEntry {
                        file: input.name.clone(),
                        accepted: true,
                        id: Some(s.id.clone()),
                        licence: Some(s.licence.clone()),
                        vendor: Some(s.vendor.clone()),
                        devices: Some(u64::try_from(s.devices.len()).unwrap_or(u64::MAX)),
                        code: None,
                        sentence: None,
                    };
                    verified.push(s);
                    entry
                }
                Err(e) => ShipmentEntry {
                    file: input.name.clone(),
                    accepted: false,
                    id: None,
                    licence: None,
                    vendor: None,
                    devices: None,
                    code: Some(e.code()),
                    sentence: Some(e.sentence().to_owned()),
                },
            },
        );
    }
    (entries, verified)
}

/// The rule set of a `rule-set=` change: a shipped id or a rule-set file, as `--rule-set`
/// takes it; the refusal says which ids are shipped.
fn load_scenario_rule_set(arg: &str) -> Result<RuleSet, ScenarioError> {
    let unavailable = |reason: String| ScenarioError::RuleSetUnavailable {
        rule_set: arg.to_owned(),
        reason,
    };
    let loaded = load_rule_sets(&[arg.to_owned()]).map_err(|e| {
        unavailable(match e {
            Error::UnknownRuleSet { known, .. } => format!(
                "it is neither a shipped rule set nor a file; name a shipped rule set ({known}) \
                 or the path of a rule-set TOML file"
            ),
            other => match other.hint() {
                Some(hint) => format!("{other}; {hint}"),
                None => other.to_string(),
            },
        })
    })?;
    loaded
        .into_iter()
        .next()
        .ok_or_else(|| unavailable("no rule set was loaded".to_owned()))
}

/// An input file's name and text.
struct Input {
    name: String,
    text: String,
    sha256: Vec<u8>,
}

/// Reads the files (at most twice the JWS limit each, so an oversized token is rejected by
/// the JWS decoder with its code), in a fixed order: by name, then content hash. Exact
/// duplicates (same name) are read once.
fn read_inputs(paths: &[PathBuf]) -> Result<Vec<Input>, Error> {
    let max = u64::try_from(MAX_JWS_BYTES)
        .unwrap_or(u64::MAX)
        .saturating_mul(2);
    let mut inputs = Vec::with_capacity(paths.len());
    let unique: BTreeSet<&PathBuf> = paths.iter().collect();
    for path in unique {
        let io = |source| Error::Io {
            path: path.clone(),
            action: "read",
            source,
        };
        let mut bytes = Vec::new();
        std::fs::File::open(path)
            .and_then(|f| f.take(max).read_to_end(&mut bytes))
            .map_err(io)?;
        let sha256 = digest::digest(&digest::SHA256, &bytes).as_ref().to_vec();
        // Bytes that are not UTF-8 are not base64url either: the JWS decoder rejects them.
        let text = String::from_utf8_lossy(&bytes).trim_ascii().to_owned();
        inputs.push(Input {
            name: path.display().to_string(),
            text,
            sha256,
        });
    }
    inputs.sort_by(|a, b| (&a.name, &a.sha256).cmp(&(&b.name, &b.sha256)));
    Ok(inputs)
}

/// The rule sets to evaluate: `--rule-set` in the order given, or those the accepted licences
/// name (sorted by id, each once), or [`DEFAULT_RULE_SET`].
pub(crate) fn rule_sets(
    args: &[String],
    licences: &[VerifiedLicence],
) -> Result<Vec<RuleSet>, Error> {
    if !args.is_empty() {
        return load_rule_sets(args);
    }
    let named: BTreeSet<(&str, &str)> = licences
        .iter()
        .map(|v| (v.licence().rule_set(), v.licence().id()))
        .collect();
    let mut ids: Vec<(&str, &str)> = Vec::new();
    for (rule_set, licence) in named {
        if !ids.iter().any(|(r, _)| *r == rule_set) {
            ids.push((rule_set, licence));
        }
    }
    if ids.is_empty() {
        ids.push((DEFAULT_RULE_SET, ""));
    }
    ids.into_iter()
        .map(|(id, licence)| {
            shipped_rule_set(id).map_err(|e| match e {
                RuleSetError::UnknownId { id, known } => Error::LicenceRuleSetUnknown {
                    licence: licence.to_owned(),
                    rule_set: id,
                    known,
                },
                other => Error::Shipped(other),
            })
        })
        .collect()
}

/// The result-signing key: `--ear-key`, or verifier-result.key beside trust.toml.
fn ear_key(trust: &Path, flag: Option<&Path>) -> Result<SigningKey, Error> {
    let path = match flag {
        Some(p) => p.to_owned(),
        None => {
            let beside = trust
                .parent()
                .unwrap_or_else(|| Path::new(""))
                .join(RESULT_KEY);
            if !beside.is_file() {
                return Err(Error::EarKeyMissing { path: beside });
            }
            beside
        }
    };
    load_result_key(&path)
}

/// Reads the verifier's result-signing key (PKCS#8 PEM) from `path`.
pub(crate) fn load_result_key(path: &Path) -> Result<SigningKey, Error> {
    let pem = chain::read_bounded(path, chain::MAX_PEM_FILE_BYTES)?;
    let unusable = |reason: String| Error::EarKeyUnusable {
        path: path.to_owned(),
        reason,
    };
    let pkcs8 = PrivatePkcs8KeyDer::from_pem_slice(&pem)
        .map_err(|e| unusable(format!("not a PEM PKCS#8 private key ({e})")))?;
    SigningKey::from_pkcs8_any(pkcs8.secret_pkcs8_der()).map_err(|e| unusable(e.to_string()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One line per GPU that carried its own evidence, under its node: its tier, its hardware
/// identity when verified, and each named check's outcome (the failed ones with their code).
/// Nodes without evidence are left out, and so is the section when none has any.
fn write_gpu_evidence(v: &FleetVerdict, out: &mut dyn Write) -> Result<(), Error> {
    let mut nodes = v
        .nodes
        .iter()
        .filter(|n| n.gpus.iter().any(|g| g.gpu_evidence.is_some()))
        .peekable();
    if nodes.peek().is_none() {
        return Ok(());
    }
    writeln!(out, "  gpu evidence:")?;
    for n in nodes {
        writeln!(
            out,
            "    node {} (evidence {})",
            Escaped(&n.subject),
            n.effective_evidence_tier
        )?;
        for g in &n.gpus {
            let Some(report) = g.gpu_evidence.as_deref() else {
                continue;
            };
            let checks: Vec<String> = report
                .checks
                .iter()
                .map(|c| match c.outcome {
                    crate::gpu_evidence::Outcome::Failed => {
                        format!("{} FAILED ({})", c.name.as_str(), Escaped(&c.code))
                    }
                    other => format!("{} {}", c.name.as_str(), other.as_str()),
                })
                .collect();
            let id = report
                .hardware_id
                .as_deref()
                .filter(|_| report.verified())
                .map(|h| format!(", hardware id {}", h.get(..16).unwrap_or(h)))
                .unwrap_or_default();
            writeln!(
                out,
                "      {} {}{id}: {}",
                g.submod,
                g.evidence_tier,
                checks.join(", ")
            )?;
        }
    }
    Ok(())
}

/// One line per measured GPU, under its node: the measured rates against spec and the measured
/// TPP. Nodes without a measured GPU are left out, and so is the section when none has one.
fn write_measured(v: &FleetVerdict, out: &mut dyn Write) -> Result<(), Error> {
    let mut nodes = v
        .nodes
        .iter()
        .filter(|n| n.gpus.iter().any(|g| g.measured.is_some()))
        .peekable();
    if nodes.peek().is_none() {
        return Ok(());
    }
    writeln!(out, "  measurements:")?;
    for n in nodes {
        let tier = if n.effective_evidence_tier == n.evidence_tier {
            format!("evidence {}", n.evidence_tier)
        } else {
            format!(
                "evidence {}, claimed {}",
                n.effective_evidence_tier, n.evidence_tier
            )
        };
        writeln!(out, "    node {} ({tier})", Escaped(&n.subject))?;
        for g in &n.gpus {
            if let Some(m) = &g.measured {
                writeln!(out, "      {}", measured_line(g, m))?;
            }
        }
    }
    Ok(())
}

/// `gpu0 H100 SXM5 80GB: measured FP8 1320.4 TOPS = 0.67 of spec, ...; TPP >= 10563.2`.
fn measured_line(g: &GpuVerdict, m: &GpuMeasurement) -> String {
    let rates: Vec<String> = m
        .rates
        .iter()
        .map(|r| {
            let against = match r.ratio {
                Some(ratio) => format!("= {ratio} of spec"),
                None => "(no spec figure)".to_owned(),
            };
            format!("{} {:.1} TOPS {against}", r.precision, r.tops.as_f64())
        })
        .collect();
    let simulated = match m.method {
        MeasurementMethod::Simulated => " (simulated)",
        MeasurementMethod::CudaGemm => "",
    };
    let rates = if rates.is_empty() {
        "nothing measured".to_owned()
    } else {
        rates.join(", ")
    };
    let tpp = m.tpp.map_or_else(String::new, |t| {
        let counted = if g.model.is_none() && g.tpp == Some(t) {
            ", counted"
        } else {
            ""
        };
        format!("; TPP >= {t} (lower bound{counted})")
    });
    format!(
        "{} {}: measured{simulated} {rates}{tpp}",
        g.submod,
        g.model.unwrap_or("unlisted")
    )
}

fn verdict_word(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::Compliant => "COMPLIANT",
        Verdict::Unproven => "UNPROVEN (the evidence cannot establish compliance)",
        Verdict::NotCompliant => "NOT COMPLIANT",
    }
}

/// The human report: inputs, then one block per rule set, the what-if comparison when a
/// scenario was given, then one line per rule set (and per scenario rule set).
fn write_human(report: &CheckReport, ear: Option<&Path>, out: &mut dyn Write) -> Result<(), Error> {
    write_inputs(report, out)?;
    for v in &report.verdicts {
        writeln!(out)?;
        write_verdict(v, out)?;
    }
    if let Some(s) = &report.scenario {
        writeln!(out)?;
        let changes: Vec<String> = s.changes.iter().map(|c| Escaped(c).to_string()).collect();
        writeln!(
            out,
            "WHAT IF {} (hypothetical: the exit code is the baseline's)",
            changes.join(", ")
        )?;
        for c in &s.comparisons {
            write_comparison(c, out)?;
        }
    }

    writeln!(out)?;
    if report.rejections() > 0 {
        writeln!(
            out,
            "{} input(s) rejected: not compliant under any rule set",
            report.rejections()
        )?;
    }
    for v in &report.verdicts {
        // The posture, not the bare status: a variant file never reads as a shipped rule.
        writeln!(
            out,
            "{}: {}",
            Escaped(&v.posture.to_string()),
            verdict_word(report.scenario_verdict(v))
        )?;
    }
    if let Some(s) = &report.scenario {
        for v in &s.verdicts {
            writeln!(
                out,
                "what if: {}: {}",
                Escaped(&v.posture.to_string()),
                verdict_word(report.scenario_verdict(v))
            )?;
        }
    }
    if let Some(path) = ear {
        writeln!(out, "wrote EAR {}", Escaped(&path.display().to_string()))?;
    }
    Ok(())
}

/// The licence and attestation files, accepted and rejected.
fn write_inputs(report: &CheckReport, out: &mut dyn Write) -> Result<(), Error> {
    writeln!(
        out,
        "tppguard check at {} ({})",
        report.at_rfc3339, report.at
    )?;
    writeln!(out, "licences:")?;
    for l in &report.licences {
        match (&l.id, l.code, &l.sentence) {
            (Some(id), _, _) => writeln!(
                out,
                "  accepted  {} (rule set {}) from {}",
                Escaped(id),
                Escaped(l.rule_set.as_deref().unwrap_or("?")),
                Escaped(&l.file)
            )?,
            (None, code, sentence) => writeln!(
                out,
                "  REJECTED  {}: {} ({})",
                Escaped(&l.file),
                Escaped(sentence.as_deref().unwrap_or("")),
                code.unwrap_or("")
            )?,
        }
    }
    write_shipment_inputs(report, out)?;
    writeln!(
        out,
        "attestations: {} accepted, {} rejected",
        report.attestations.accepted.len(),
        report.attestations.rejected.len()
    )?;
    for a in &report.attestations.accepted {
        writeln!(
            out,
            "  accepted  {} (node {} [{}], made {})",
            Escaped(&a.file),
            Escaped(&a.subject),
            a.node.get(..12).unwrap_or(&a.node),
            format_rfc3339(a.iat)
        )?;
    }
    for r in &report.attestations.rejected {
        writeln!(
            out,
            "  REJECTED  {}: {} ({})",
            Escaped(&r.file),
            Escaped(&r.sentence),
            r.code
        )?;
    }
    Ok(())
}

/// The shipment files, accepted and rejected; nothing when none was given.
fn write_shipment_inputs(report: &CheckReport, out: &mut dyn Write) -> Result<(), Error> {
    if report.shipments.is_empty() {
        return Ok(());
    }
    writeln!(out, "shipments:")?;
    for s in &report.shipments {
        match (&s.id, s.code, &s.sentence) {
            (Some(id), _, _) => writeln!(
                out,
                "  accepted  {} (licence {}, vendor {}, {} devices) from {}",
                Escaped(id),
                Escaped(s.licence.as_deref().unwrap_or("?")),
                Escaped(s.vendor.as_deref().unwrap_or("?")),
                s.devices.unwrap_or(0),
                Escaped(&s.file)
            )?,
            (None, code, sentence) => writeln!(
                out,
                "  REJECTED  {}: {} ({})",
                Escaped(&s.file),
                Escaped(sentence.as_deref().unwrap_or("")),
                code.unwrap_or("")
            )?,
        }
    }
    Ok(())
}

/// One rule set's block: its posture, each licence, each country, measurements, GPU
/// evidence, findings and the verdict.
fn write_verdict(v: &FleetVerdict, out: &mut dyn Write) -> Result<(), Error> {
    writeln!(out, "rule set {}", Escaped(&v.posture.to_string()))?;
    if v.licences.is_empty() {
        writeln!(out, "  no licence accepted")?;
    }
    for l in &v.licences {
        write_licence(l, out)?;
    }
    for c in &v.countries {
        write_country(c, out)?;
    }
    write_measured(v, out)?;
    write_gpu_evidence(v, out)?;
    write_findings(v, out)?;
    writeln!(out, "  => {}", verdict_word(v.verdict))?;
    Ok(())
}

/// One licence's usage against its caps, its devices left out, and its licence need.
fn write_licence(l: &LicenceUsage, out: &mut dyn Write) -> Result<(), Error> {
    writeln!(
        out,
        "  licence {} ({}, {}; nodes: {}, stale: {}): {}",
        Escaped(&l.licence),
        l.destination_country,
        l.validity.code(),
        l.nodes,
        l.stale_nodes,
        l.verdict.code()
    )?;
    let over = |by: String, is_over: bool| {
        if is_over {
            format!("  OVER by {by}")
        } else {
            String::new()
        }
    };
    writeln!(
        out,
        "    devices  used {:>12}  cap {:>12}  headroom {:>12}{}",
        l.devices.used,
        l.devices.cap,
        l.devices.headroom,
        over(l.devices.over_by.to_string(), l.devices.over_by > 0)
    )?;
    writeln!(
        out,
        "    TPP      used {:>12}  cap {:>12}  headroom {:>12}{}",
        l.tpp.used.to_string(),
        l.tpp.cap.to_string(),
        l.tpp.headroom.to_string(),
        over(l.tpp.over_by.to_string(), l.tpp.is_over())
    )?;
    writeln!(
        out,
        "    H100-eq  used {:>12}  cap {:>12}",
        l.tpp.used_h100_equivalents.to_string(),
        l.tpp.cap_h100_equivalents.to_string()
    )?;
    if l.devices_tpp_measured > 0 {
        writeln!(
            out,
            "    {} device(s) not in the spec table counted by measured TPP, a lower \
             bound: TPP used is at least the figure shown",
            l.devices_tpp_measured
        )?;
    }
    if l.devices_not_controlled > 0 {
        writeln!(
            out,
            "    {} device(s) not controlled by this rule set (no licence needed): \
             listed, not counted",
            l.devices_not_controlled
        )?;
    }
    if l.devices_tpp_unknown > 0 {
        writeln!(
            out,
            "    {} device(s) of unknown TPP (not in the spec table)",
            l.devices_tpp_unknown
        )?;
    }
    if let Some(need) = licence_need_line(l) {
        writeln!(out, "    licence need: {need}")?;
    }
    if let Some(s) = &l.shipments {
        writeln!(
            out,
            "    shipments: {} ({} devices: {} seen at its sites, {} diverted, {} \
             unaccounted; {} counted devices unshipped)",
            s.count,
            s.devices_shipped,
            s.devices_seen,
            s.devices_diverted,
            s.devices_unaccounted,
            s.devices_unshipped
        )?;
    }
    Ok(())
}

/// `8 required (742.6(a)(6)(iii)(A), party: headquarters DE, ultimate parent CN), 2 not
/// required`: the counts that are not zero, each with the rules that decided it; `None` when
/// every count is zero.
fn licence_need_line(l: &LicenceUsage) -> Option<String> {
    use tppguard_proto::ruleset::LicenceNeed;
    let n = &l.licence_need;
    let parts: Vec<String> = [
        (LicenceNeed::Required, n.required, "required"),
        (LicenceNeed::NotRequired, n.not_required, "not required"),
        (LicenceNeed::Undetermined, n.undetermined, "undetermined"),
    ]
    .into_iter()
    .filter(|(_, count, _)| *count > 0)
    .map(|(need, count, word)| {
        let mut why: Vec<String> = Vec::new();
        for d in n
            .determinations
            .iter()
            .map(|c| &c.determination)
            .filter(|d| d.need == need)
        {
            if let Some(rule) = &d.rule {
                let rule = Escaped(rule).to_string();
                if !why.contains(&rule) {
                    why.push(rule);
                }
            }
            let party = format!(
                "party: headquarters {}, ultimate parent {}",
                l.party.headquarters, l.party.ultimate_parent
            );
            if d.by_party && !why.contains(&party) {
                why.push(party);
            }
        }
        if why.is_empty() {
            format!("{count} {word}")
        } else {
            format!("{count} {word} ({})", why.join(", "))
        }
    })
    .collect();
    (!parts.is_empty()).then(|| parts.join(", "))
}

/// One country: its tier, usage and verdict, and its national allocation when its group has
/// one (shared by every licence to the country).
fn write_country(c: &CountryUsage, out: &mut dyn Write) -> Result<(), Error> {
    let licences: Vec<String> = c.licences.iter().map(|l| Escaped(l).to_string()).collect();
    let tier = c
        .tier
        .as_deref()
        .map(|t| format!(" ({})", Escaped(t)))
        .unwrap_or_default();
    writeln!(
        out,
        "  country {}{tier}: {} devices, TPP {} ({} H100-equivalents), licences {}: {}",
        c.country,
        c.devices,
        c.tpp,
        c.h100_equivalents,
        licences.join(", "),
        c.verdict.code()
    )?;
    if let Some(a) = &c.allocation {
        let period = c
            .allocation_period
            .as_deref()
            .map(|p| format!(" ({})", Escaped(p)))
            .unwrap_or_default();
        let over = if a.is_over() {
            format!(", OVER by {}", grouped(a.over_by))
        } else {
            String::new()
        };
        let shared = match licences.len() {
            1 => "used by 1 licence".to_owned(),
            n => format!("shared by {n} licences"),
        };
        writeln!(
            out,
            "    allocation {} TPP{period}: used {}, headroom {}{over}; {shared}",
            grouped(a.cap),
            grouped(a.used),
            grouped(a.headroom)
        )?;
    }
    Ok(())
}

/// The findings, each with what it is about.
fn write_findings(v: &FleetVerdict, out: &mut dyn Write) -> Result<(), Error> {
    let subjects: std::collections::HashMap<String, &str> = v
        .nodes
        .iter()
        .map(|n| (n.node.to_string(), n.subject.as_str()))
        .collect();
    if v.findings.is_empty() {
        writeln!(out, "  findings: none")?;
    } else {
        writeln!(out, "  findings:")?;
    }
    for f in &v.findings {
        let mut about = Vec::new();
        if let Some(l) = &f.licence {
            about.push(format!("licence {}", Escaped(l)));
        }
        if let Some(n) = &f.node {
            let subject = subjects.get(n.as_str()).copied().unwrap_or("");
            about.push(format!(
                "node {} [{}]",
                Escaped(subject),
                n.get(..12).unwrap_or(n)
            ));
        }
        if let Some(g) = &f.gpu {
            about.push(Escaped(g).to_string());
        }
        let about = if about.is_empty() {
            String::new()
        } else {
            format!(" [{}]", about.join(", "))
        };
        writeln!(
            out,
            "    {:<9} {}{}: {}",
            f.severity.code(),
            f.code,
            about,
            Escaped(&f.sentence)
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tppguard_proto::claims::GpuStatus;
    use tppguard_proto::evidence::EvidenceTier;
    use tppguard_proto::ruleset::{MeasurementTolerances, RuleSetStatus};
    use tppguard_proto::spec::h100_equivalents;
    use tppguard_proto::tpp::Precision;
    use tppguard_proto::units::{Tops, Tpp};

    use super::*;
    use crate::policy::{
        MeasuredRate, MeasurementStatus, NodeVerdict, RateCheck, Severity, SpecRatio, TppSource,
    };

    fn tops(text: &str) -> Tops {
        text.parse().unwrap()
    }

    fn gpu(
        submod: &str,
        model: Option<&'static str>,
        measured: Option<GpuMeasurement>,
    ) -> GpuVerdict {
        let tpp: Tpp = "15831.2".parse().unwrap();
        GpuVerdict {
            submod: Arc::from(submod),
            uuid: None,
            serial: None,
            status: GpuStatus::Ok,
            model,
            outcome: None,
            clause: None,
            controlled: true,
            tpp: Some(tpp),
            h100_equivalents: Some(h100_equivalents(tpp)),
            counted: true,
            tpp_from: Some(TppSource::Spec),
            measured: measured.map(Box::new),
            evidence_tier: EvidenceTier::Declared,
            gpu_evidence: None,
        }
    }

    fn report(gpus: Vec<GpuVerdict>, tiers: (EvidenceTier, EvidenceTier)) -> CheckReport {
        let verdict = FleetVerdict {
            at: 0,
            rule_set: "us-eccn-3a090".to_owned(),
            rule_set_version: "1".to_owned(),
            rule_set_status: RuleSetStatus::InForce,
            posture: tppguard_proto::ruleset::shipped_rule_set("us-eccn-3a090")
                .unwrap()
                .posture(),
            verdict: crate::policy::Verdict::Compliant,
            nodes: vec![NodeVerdict {
                node: tppguard_proto::identity::NodeId::from_spki_der(b"node-1"),
                subject: "CN=node-1".to_owned(),
                token_sha256: String::new(),
                iat: 0,
                received_at: None,
                age_s: 0,
                stale: false,
                site: None,
                site_certified: false,
                licence: None,
                evidence_tier: tiers.0,
                effective_evidence_tier: tiers.1,
                devices_counted: 1,
                devices_not_controlled: 0,
                tpp_counted: Tpp::default(),
                h100_equivalents: h100_equivalents(Tpp::default()),
                severity: Severity::Info,
                gpus,
            }],
            licences: Vec::new(),
            countries: Vec::new(),
            findings: Vec::new(),
        };
        CheckReport {
            at: 0,
            at_rfc3339: format_rfc3339(0),
            licences: Vec::new(),
            shipments: Vec::new(),
            attestations: Attestations::default(),
            posture: vec![verdict.posture.clone()],
            verdicts: vec![verdict],
            verdict: Verdict::Compliant,
            scenario: None,
        }
    }

    fn human(report: &CheckReport) -> String {
        let mut out = Vec::new();
        write_human(report, None, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn human_report_shows_measured_figures_briefly_per_gpu() {
        let fp8 = tops("1320.4");
        let measured = GpuMeasurement {
            method: MeasurementMethod::CudaGemm,
            started_at: 0,
            tpp: Some("10563.2".parse().unwrap()),
            tpp_basis: Some(Precision::Fp8),
            tpp_ratio: None,
            status: MeasurementStatus::Consistent,
            tolerances: MeasurementTolerances::default(),
            rates: vec![
                MeasuredRate {
                    precision: Precision::Fp8,
                    tops: fp8,
                    spec_tops: Some(tops("1978.9")),
                    ratio: SpecRatio::new(fp8, tops("1978.9")),
                    check: RateCheck::WithinTolerance,
                },
                MeasuredRate {
                    precision: Precision::Int4,
                    tops: tops("2000"),
                    spec_tops: None,
                    ratio: None,
                    check: RateCheck::NoSpecFigure,
                },
            ],
        };
        let text = human(&report(
            vec![
                gpu("gpu0", Some("H100 SXM5 80GB"), Some(measured)),
                gpu("gpu1", Some("H100 SXM5 80GB"), None),
            ],
            (EvidenceTier::Measured, EvidenceTier::Declared),
        ));
        assert!(
            text.contains(
                "  measurements:\n    node CN=node-1 (evidence declared, claimed measured)\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "      gpu0 H100 SXM5 80GB: measured FP8 1320.4 TOPS = 0.67 of spec, INT4 2000.0 \
                 TOPS (no spec figure); TPP >= 10563.2 (lower bound)\n"
            ),
            "{text}"
        );
        assert!(!text.contains("gpu1"), "{text}");
        // No measured GPU: no section.
        let text = human(&report(
            vec![gpu("gpu0", Some("H100 SXM5 80GB"), None)],
            (EvidenceTier::Declared, EvidenceTier::Declared),
        ));
        assert!(!text.contains("measurements:"), "{text}");
    }

    /// A verdict of two DE licences (4 nodes of 2 H100s) under the AI Diffusion Rule with DE
    /// moved to Tier 2, so DE has the national allocation.
    fn tier_2_verdict() -> FleetVerdict {
        let (lics, atts, _, at) = crate::policy::bench_support::synthetic_fleet(4, 2, 2);
        let rule_set = shipped_rule_set("us-ai-diffusion-2025")
            .unwrap()
            .with_country_in_group("DE".parse().unwrap(), "tier_2")
            .unwrap();
        evaluate(&lics, &[], &rule_set, &atts, at)
    }

    #[test]
    fn a_country_line_shows_its_tier_and_the_shared_allocation() {
        let v = tier_2_verdict();
        let mut out = Vec::new();
        write_verdict(&v, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with(
                "rule set us-ai-diffusion-2025 v2 [historical (not in force); MODIFIED from \
                 us-ai-diffusion-2025: DE moved from tier_1 to tier_2]\n"
            ),
            "{text}"
        );
        assert!(text.contains("  country DE (tier_2): 8 devices"), "{text}");
        assert!(
            text.contains(
                "    allocation 790,000,000 TPP (2025-2027): used 126,649.6, headroom \
                 789,873,350.4; shared by 2 licences\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn the_licence_need_line_counts_each_need_with_its_rules() {
        use tppguard_proto::classify::NeedDetermination;
        use tppguard_proto::ruleset::LicenceNeed;

        use crate::policy::{LicenceNeedSummary, NeedCount};
        let v = tier_2_verdict();
        let mut usage = v.licences.first().unwrap().clone();
        // Every count zero (nothing determined): no line.
        usage.licence_need = LicenceNeedSummary::default();
        assert_eq!(licence_need_line(&usage), None);
        let determination = |need, rule: Option<&str>, by_party| NeedCount {
            determination: NeedDetermination {
                rule_set: "us-eccn-3a090".to_owned(),
                rule_set_status: RuleSetStatus::InForce,
                need,
                rule: rule.map(str::to_owned),
                by_party,
                sentence: String::new(),
            },
            outcome: Some("3A090.a".to_owned()),
            devices: 4,
        };
        usage.licence_need = LicenceNeedSummary {
            required: 8,
            not_required: 0,
            undetermined: 2,
            determinations: vec![
                determination(LicenceNeed::Required, Some("742.6(a)(6)(iii)(A)"), true),
                determination(LicenceNeed::Required, Some("742.6(a)(6)(iii)(A)"), true),
                determination(LicenceNeed::Undetermined, None, false),
            ],
        };
        assert_eq!(
            licence_need_line(&usage).as_deref(),
            Some(
                "8 required (742.6(a)(6)(iii)(A), party: headquarters DE, ultimate parent DE), \
                 2 undetermined"
            )
        );
    }

    #[test]
    fn a_licence_with_shipments_shows_them_on_one_line() {
        let v = tier_2_verdict();
        let mut usage = v.licences.first().unwrap().clone();
        let text = |usage: &LicenceUsage| {
            let mut out = Vec::new();
            write_licence(usage, &mut out).unwrap();
            String::from_utf8(out).unwrap()
        };
        assert!(!text(&usage).contains("shipments:"), "none: no line");
        usage.shipments = Some(crate::policy::ShipmentSummary {
            count: 2,
            devices_shipped: 16,
            devices_seen: 13,
            devices_diverted: 1,
            devices_unaccounted: 2,
            devices_unshipped: 0,
        });
        assert!(
            text(&usage).contains(
                "    shipments: 2 (16 devices: 13 seen at its sites, 1 diverted, 2 unaccounted; \
                 0 counted devices unshipped)\n"
            ),
            "{}",
            text(&usage)
        );
    }
}
