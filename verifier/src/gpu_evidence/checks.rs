//! The checks of one GPU's evidence, in order; each records its outcome and never stops the
//! others unless they have nothing left to judge (then they are `not_checked`, naming why).

use ring::signature::{ECDSA_P384_SHA384_FIXED, UnparsedPublicKey};
use tppguard_proto::gpu_evidence::opaque::{FeatureFlag, Nvdec0Status};
use tppguard_proto::gpu_evidence::spdm::Report;
use tppguard_proto::gpu_evidence::spdm::SPDM_VERSION_1_1;
use tppguard_proto::gpu_evidence::{GpuEvidence, MAX_ARCH_CHARS};
use tppguard_proto::text::escape;
use x509_parser::certificate::X509Certificate;

use super::{
    Check, CheckName, Expected, GpuEvidenceReport, InventoryRule, MAX_GPU_CHAIN_CERTS, Outcome,
    ReportFacts, chips, dice, rim,
};
use crate::chain::{ChainError, TrustAnchors, VerifiedGpuDeviceChain, certs_from_pem};

/// The checks made so far.
struct Checks(Vec<Check>);

impl Checks {
    fn put(&mut self, name: CheckName, outcome: Outcome, code: &str, sentence: String) {
        self.0.push(Check {
            name,
            outcome,
            code: code.to_owned(),
            sentence,
        });
    }
    fn pass(&mut self, name: CheckName, sentence: String) {
        self.put(name, Outcome::Passed, "passed", sentence);
    }
    fn fail(&mut self, name: CheckName, code: &str, sentence: String) {
        self.put(name, Outcome::Failed, code, sentence);
    }
    fn skip(&mut self, name: CheckName, code: &str, sentence: &str) {
        self.put(name, Outcome::NotChecked, code, sentence.to_owned());
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Equality in time independent of where two 32-byte values differ.
fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a
        .iter()
        .zip(b)
        .fold(0u8, |acc, (x, y)| acc | std::hint::black_box(x ^ y));
    std::hint::black_box(diff) == 0
}

/// Verifies one GPU's evidence: every check of [`CheckName::ALL`], in order, at `at_unix`
/// (Unix seconds), against the `[vendor] device_roots` and reference values of `trust` and
/// what `expected` says. Never panics and never fails as a whole: every problem is a failed
/// or not-checked named check. See `docs/gpu-evidence.md` for each check and code.
pub fn verify_gpu_evidence(
    evidence: &GpuEvidence,
    trust: &TrustAnchors,
    expected: &Expected<'_>,
    at_unix: i64,
) -> GpuEvidenceReport {
    let mut checks = Checks(Vec::with_capacity(CheckName::ALL.len()));
    let mut out = GpuEvidenceReport {
        checks: Vec::new(),
        hardware_id: None,
        ecid: None,
        facts: None,
    };
    let Some((report_bytes, chain_der)) = decode(evidence, &mut checks) else {
        for name in CheckName::ALL.iter().skip(1) {
            checks.skip(
                *name,
                "evidence_undecodable",
                "the evidence could not be decoded",
            );
        }
        out.checks = checks.0;
        return out;
    };
    let report = match Report::parse(&report_bytes) {
        Ok(report) => {
            checks.pass(
                CheckName::ReportParsed,
                format!(
                    "SPDM {}.{} GET_MEASUREMENTS and MEASUREMENTS with {} measurement blocks and \
                     a 96-byte signature ({} bytes)",
                    report.request().version >> 4,
                    report.request().version & 0x0f,
                    report.response().blocks.len(),
                    report_bytes.len()
                ),
            );
            Some(report)
        }
        Err(e) => {
            checks.fail(
                CheckName::ReportParsed,
                e.code(),
                format!("the report does not parse: {}", escape(&e.to_string())),
            );
            None
        }
    };
    let chain = check_chain(trust, &chain_der, at_unix, &mut checks);
    let leaf = chain
        .as_ref()
        .and_then(|_| chain_der.first())
        .and_then(|der| x509_parser::parse_x509_certificate(der).ok())
        .map(|(_, cert)| cert);
    if let Some(device) = chain.as_ref().and_then(|c| c.device_certificate()) {
        out.hardware_id = Some(device.spki_sha256_hex.clone());
        out.ecid = device.serial_number.clone();
    }

    // Signature: the one gate to the report's contents.
    let signed = match (&report, &leaf) {
        (Some(report), Some(leaf)) => check_signature(report, leaf, &mut checks),
        (None, _) => {
            checks.skip(
                CheckName::Signature,
                "report_unparsed",
                "the report could not be parsed",
            );
            false
        }
        (Some(_), None) => {
            checks.skip(
                CheckName::Signature,
                "chain_unverified",
                "the certificate chain did not verify at the verification time, so the leaf's \
                 key is not trusted",
            );
            false
        }
    };
    let (report, leaf) = match (report.filter(|_| signed), leaf) {
        (Some(report), Some(leaf)) => (report, leaf),
        (_, leaf) => {
            skip_unsigned(evidence, leaf.as_ref(), expected, &mut checks);
            out.checks = checks.0;
            return out;
        }
    };

    check_nonce(&report, expected, &mut checks);
    check_fwid(&report, &leaf, &mut checks);
    let opaque = report.opaque();
    check_version(
        CheckName::DriverVersion,
        "driver",
        opaque.driver_version().as_deref(),
        expected.driver_version,
        expected.inventory,
        false,
        &mut checks,
    );
    check_version(
        CheckName::VbiosVersion,
        "VBIOS",
        opaque.vbios_version().as_deref(),
        expected.vbios_version,
        expected.inventory,
        true,
        &mut checks,
    );
    let chip_info = opaque.chip_info();
    check_model(evidence, &leaf, chip_info.as_deref(), expected, &mut checks);
    let (outcome, code, sentence) = rim::check_measurements(trust.reference_values(), &report);
    checks.put(CheckName::Measurements, outcome, code, sentence);
    check_ocsp(&mut checks);
    out.facts = Some(facts(&report, &leaf));
    out.checks = checks.0;
    out
}

/// The checks of a report whose signature did not verify: its contents are not read; the
/// model is judged from the verified leaf alone, if there is one.
fn skip_unsigned(
    evidence: &GpuEvidence,
    leaf: Option<&X509Certificate<'_>>,
    expected: &Expected<'_>,
    checks: &mut Checks,
) {
    let why = "the report's signature was not verified, so its contents are not evidence";
    for name in [
        CheckName::Nonce,
        CheckName::Fwid,
        CheckName::DriverVersion,
        CheckName::VbiosVersion,
    ] {
        checks.skip(name, "signature_unverified", why);
    }
    match leaf {
        Some(leaf) => check_model(evidence, leaf, None, expected, checks),
        None => checks.skip(
            CheckName::Model,
            "chain_unverified",
            "the certificate chain did not verify at the verification time",
        ),
    }
    checks.skip(CheckName::Measurements, "signature_unverified", why);
    check_ocsp(checks);
}

/// `evidence_decoded`: the report bytes and the chain's DER certificates.
fn decode(evidence: &GpuEvidence, checks: &mut Checks) -> Option<(Vec<u8>, Vec<Vec<u8>>)> {
    let name = CheckName::EvidenceDecoded;
    let decoded = evidence
        .report_bytes()
        .and_then(|report| Ok((report, evidence.chain_pem()?)));
    let (report, pem) = match decoded {
        Ok(both) => both,
        Err(e) => {
            checks.fail(name, e.code(), escape(&e.to_string()).into_owned());
            return None;
        }
    };
    let arch_ok = !evidence.arch.is_empty()
        && evidence.arch.len() <= MAX_ARCH_CHARS
        && evidence
            .arch
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !arch_ok {
        checks.fail(
            name,
            "gpu_evidence_bad_arch",
            format!(
                "the evidence's arch is not 1 to {MAX_ARCH_CHARS} ASCII letters, digits or \
                 underscores (NVIDIA's tools write HOPPER or BLACKWELL)"
            ),
        );
        return None;
    }
    let chain = match certs_from_pem(&pem) {
        Ok(certs) if certs.len() > MAX_GPU_CHAIN_CERTS => {
            checks.fail(
                name,
                "gpu_chain_too_long",
                format!(
                    "the certificate chain holds {} certificates; an NVIDIA GPU sends at most \
                     {MAX_GPU_CHAIN_CERTS} (leaf, device, provisioner, identity CA, root)",
                    certs.len()
                ),
            );
            return None;
        }
        Ok(certs) => certs.into_iter().map(|c| c.to_vec()).collect::<Vec<_>>(),
        Err(reason) => {
            checks.fail(
                name,
                "chain_not_pem",
                format!("the certificate chain {}", escape(&reason)),
            );
            return None;
        }
    };
    checks.pass(
        name,
        format!(
            "a {}-byte report and a PEM chain of {} certificates (arch {})",
            report.len(),
            chain.len(),
            escape(&evidence.arch)
        ),
    );
    Some((report, chain))
}

fn is_time_error(e: &ChainError) -> bool {
    matches!(
        e,
        ChainError::Expired { .. }
            | ChainError::NotYetValid { .. }
            | ChainError::RootExpired { .. }
            | ChainError::RootNotYetValid { .. }
            | ChainError::InvalidTime { .. }
    )
}

/// The latest notBefore of the certificates given, if they all parse and some instant lies
/// within all of them.
fn common_instant(chain_der: &[Vec<u8>]) -> Option<i64> {
    let (mut from, mut until) = (0i64, i64::MAX);
    for der in chain_der {
        let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
        from = from.max(cert.validity().not_before.timestamp());
        until = until.min(cert.validity().not_after.timestamp());
    }
    (from <= until).then_some(from)
}

/// `cert_chain` and `cert_validity`. A chain refused only for the time is validated again at
/// an instant inside every certificate's validity, so `cert_chain` says whether the chain
/// itself leads to a pinned root while `cert_validity` fails; the evidence still does not
/// verify.
fn check_chain(
    trust: &TrustAnchors,
    chain_der: &[Vec<u8>],
    at_unix: i64,
    checks: &mut Checks,
) -> Option<VerifiedGpuDeviceChain> {
    let roots = trust.device_roots_count();
    let pinned = format!("{roots} pinned [vendor] device_roots root(s)");
    match trust.verify_gpu_device(chain_der, at_unix) {
        Ok(chain) => {
            checks.pass(
                CheckName::CertChain,
                // The leaf's subject is left out: its serialNumber identifies the GPU, and
                // sentences are shown where identities are redacted.
                format!(
                    "the {}-certificate chain leads to one of the {pinned}",
                    chain_der.len()
                ),
            );
            checks.pass(
                CheckName::CertValidity,
                format!("every certificate of the path is valid at {at_unix} (Unix seconds)"),
            );
            Some(chain)
        }
        Err(e) if is_time_error(&e) => {
            checks_for_time_error(trust, chain_der, &pinned, &e, checks);
            None
        }
        Err(e) => {
            checks.fail(
                CheckName::CertChain,
                e.code(),
                format!(
                    "the chain does not lead to one of the {pinned} (the root a GPU sends is \
                     never trusted): {}",
                    escape(&e.to_string())
                ),
            );
            checks.skip(
                CheckName::CertValidity,
                "chain_unverified",
                "the certificate chain did not verify",
            );
            None
        }
    }
}

fn checks_for_time_error(
    trust: &TrustAnchors,
    chain_der: &[Vec<u8>],
    pinned: &str,
    time_error: &ChainError,
    checks: &mut Checks,
) {
    match common_instant(chain_der).map(|at| (at, trust.verify_gpu_device(chain_der, at))) {
        Some((at, Ok(_))) => checks.pass(
            CheckName::CertChain,
            format!(
                "the chain leads to one of the {pinned} when validated at {at}, an instant \
                 inside every certificate's validity"
            ),
        ),
        Some((_, Err(e))) if !is_time_error(&e) => checks.fail(
            CheckName::CertChain,
            e.code(),
            format!(
                "the chain does not lead to one of the {pinned}: {}",
                escape(&e.to_string())
            ),
        ),
        _ => checks.skip(
            CheckName::CertChain,
            "no_common_validity",
            "no instant lies inside every certificate's validity, so the chain could not be \
             judged apart from the time",
        ),
    }
    checks.fail(
        CheckName::CertValidity,
        time_error.code(),
        format!(
            "{}; the evidence is judged at the verification time only",
            escape(&time_error.to_string())
        ),
    );
}

/// `signature`: ECDSA P-384 / SHA-384 (raw r || s) over request || response less the
/// signature, with the verified leaf's key.
fn check_signature(report: &Report<'_>, leaf: &X509Certificate<'_>, checks: &mut Checks) -> bool {
    // SPDM 1.2 signs a transcript hash with a signing context, not request || response as
    // SPDM 1.1 does; no 1.2 report has been seen to test against, so it is refused by name.
    let version = report.request().version;
    if version != SPDM_VERSION_1_1 {
        checks.fail(
            CheckName::Signature,
            "spdm_version_unsupported",
            format!(
                "the report is SPDM {}.{}; tppguard verifies SPDM 1.1 measurement signatures \
                 only (1.2 signs a transcript with a signing context)",
                version >> 4,
                version & 0x0f
            ),
        );
        return false;
    }
    let key = UnparsedPublicKey::new(
        &ECDSA_P384_SHA384_FIXED,
        leaf.public_key().subject_public_key.data.as_ref(),
    );
    match key.verify(report.signed_bytes(), report.signature()) {
        Ok(()) => {
            checks.pass(
                CheckName::Signature,
                format!(
                    "ECDSA P-384 / SHA-384 over the {} signed bytes verifies with the leaf's key",
                    report.signed_bytes().len()
                ),
            );
            true
        }
        Err(_) => {
            checks.fail(
                CheckName::Signature,
                "bad_signature",
                "the report's ECDSA P-384 / SHA-384 signature does not verify with the leaf's \
                 key: the report was altered, or was signed by another device"
                    .to_owned(),
            );
            false
        }
    }
}

fn check_nonce(report: &Report<'_>, expected: &Expected<'_>, checks: &mut Checks) {
    let got = report.request().nonce;
    if constant_time_eq(&got, &expected.nonce) {
        checks.pass(
            CheckName::Nonce,
            format!("the report answers the expected nonce {}", hex(&got)),
        );
    } else {
        checks.fail(
            CheckName::Nonce,
            "nonce_mismatch",
            format!(
                "the report answers nonce {}, not the expected {}: it was made for another \
                 challenge, node or GPU",
                hex(&got),
                hex(&expected.nonce)
            ),
        );
    }
}

fn check_fwid(report: &Report<'_>, leaf: &X509Certificate<'_>, checks: &mut Checks) {
    let name = CheckName::Fwid;
    let Some(reported) = report.opaque().fwid() else {
        checks.fail(
            name,
            "report_without_fwid",
            "the report carries no FWID (opaque id 20)".to_owned(),
        );
        return;
    };
    match dice::leaf_fwids(leaf) {
        Err(e) => checks.fail(name, e.code(), e.to_string()),
        Ok((form, fwids)) if fwids.iter().any(|f| f.as_slice() == reported) => checks.pass(
            name,
            format!(
                "the report's FWID {} is certified by the leaf ({})",
                hex(reported),
                form.words()
            ),
        ),
        Ok((form, fwids)) => checks.fail(
            name,
            "fwid_mismatch",
            format!(
                "the report's FWID {} is not among the leaf's ({}: {})",
                hex(reported),
                form.words(),
                fwids.iter().map(|f| hex(f)).collect::<Vec<_>>().join(", ")
            ),
        ),
    }
}

/// `driver_version` and `vbios_version`: the signed value against the inventory's.
fn check_version(
    name: CheckName,
    what: &str,
    reported: Option<&str>,
    claimed: Option<&str>,
    rule: InventoryRule,
    ignore_case: bool,
    checks: &mut Checks,
) {
    let Some(reported) = reported else {
        checks.fail(
            name,
            "report_without_version",
            format!("the report carries no {what} version"),
        );
        return;
    };
    let shown = escape(reported);
    let Some(claimed) = claimed else {
        match rule {
            InventoryRule::Required => checks.fail(
                name,
                "inventory_silent",
                format!(
                    "the report says {what} {shown} but the inventory does not state its {what} \
                     version; an attestation must state what it runs"
                ),
            ),
            InventoryRule::Optional => checks.put(
                name,
                Outcome::NotChecked,
                "no_claim",
                format!("the report says {what} {shown}; no {what} version was given to compare"),
            ),
        }
        return;
    };
    let same = if ignore_case {
        reported.eq_ignore_ascii_case(claimed)
    } else {
        reported == claimed
    };
    if same {
        checks.pass(
            name,
            format!("the report's {what} version {shown} is the inventory's"),
        );
    } else {
        checks.fail(
            name,
            "version_mismatch",
            format!(
                "the report says {what} {shown}, the inventory {}",
                escape(claimed)
            ),
        );
    }
}

/// The chip the leaf names (its common name's first word).
fn leaf_chip(leaf: &X509Certificate<'_>) -> Option<String> {
    leaf.subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .and_then(chips::chip_of_common_name)
        .map(str::to_owned)
}

/// `model`: the certified chip against the evidence's arch, the signed chip info and the
/// inventory's architecture and model.
fn check_model(
    evidence: &GpuEvidence,
    leaf: &X509Certificate<'_>,
    chip_info: Option<&str>,
    expected: &Expected<'_>,
    checks: &mut Checks,
) {
    let name = CheckName::Model;
    let Some(chip_name) = leaf_chip(leaf) else {
        checks.skip(name, "chip_unknown", "the leaf's common name names no chip");
        return;
    };
    let Some(chip) = chips::chip(&chip_name) else {
        checks.put(
            name,
            Outcome::NotChecked,
            "chip_unknown",
            format!(
                "the leaf names chip {}, which tppguard's chip table does not hold",
                escape(&chip_name)
            ),
        );
        return;
    };
    let arch = chip.architecture;
    let mut problems = Vec::new();
    if !evidence.arch.eq_ignore_ascii_case(arch) {
        problems.push((
            "arch_mismatch",
            format!("the evidence says arch {}", escape(&evidence.arch)),
        ));
    }
    if let Some(info) = chip_info.and_then(chips::chip_of_common_name)
        && !info.eq_ignore_ascii_case(chip.name)
    {
        problems.push((
            "chip_info_mismatch",
            format!("the report's chip info says {}", escape(info)),
        ));
    }
    if let Some(claimed) = expected.architecture
        && !claimed.eq_ignore_ascii_case(arch)
    {
        problems.push((
            "architecture_mismatch",
            format!("the inventory says {}", escape(claimed)),
        ));
    }
    if let Some(model) = expected.model
        && !chip.admits_model(model)
    {
        problems.push((
            "model_mismatch",
            format!("the inventory's model is {}", escape(model)),
        ));
    }
    match problems.first() {
        None => checks.pass(
            name,
            format!(
                "the leaf certifies chip {} ({arch}), consistent with the evidence's arch{}{}",
                chip.name,
                expected.architecture.map_or(String::new(), |a| format!(
                    ", the inventory's {}",
                    escape(a)
                )),
                expected
                    .model
                    .map_or(String::new(), |m| format!(" and model {}", escape(m)))
            ),
        ),
        Some((code, _)) => checks.fail(
            name,
            code,
            format!(
                "the leaf certifies chip {} ({arch}), but {}",
                chip.name,
                problems
                    .iter()
                    .map(|(_, s)| s.as_str())
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        ),
    }
}

fn check_ocsp(checks: &mut Checks) {
    checks.skip(
        CheckName::Ocsp,
        "ocsp_not_supplied",
        "no OCSP response was supplied; tppguard does not fetch OCSP online",
    );
}

fn facts(report: &Report<'_>, leaf: &X509Certificate<'_>) -> ReportFacts {
    let opaque = report.opaque();
    let chip = leaf_chip(leaf);
    ReportFacts {
        driver_version: opaque.driver_version().map(|v| escape(&v).into_owned()),
        vbios_version: opaque.vbios_version(),
        fwid: opaque.fwid().map(hex),
        architecture: chip
            .as_deref()
            .and_then(chips::chip)
            .map(|c| c.architecture.to_owned()),
        chip: chip.map(|c| escape(&c).into_owned()),
        board_id: opaque.board_id(),
        chip_sku: opaque.chip_sku().map(|v| escape(&v).into_owned()),
        project: opaque.project().map(|v| escape(&v).into_owned()),
        project_sku: opaque.project_sku().map(|v| escape(&v).into_owned()),
        protected_pcie_status: opaque.protected_pcie_status(),
        nvdec0_status: opaque.nvdec0_status().map(|s| match s {
            Nvdec0Status::Enabled => "enabled".to_owned(),
            Nvdec0Status::Disabled => "disabled".to_owned(),
            Nvdec0Status::Other(b) => format!("other(0x{b:02x})"),
        }),
        feature_flag: opaque.feature_flag().map(|f| match f {
            FeatureFlag::Spt => "spt".to_owned(),
            FeatureFlag::Mpt => "mpt".to_owned(),
            FeatureFlag::Ppcie => "ppcie".to_owned(),
            FeatureFlag::Other(n) => format!("other({n})"),
        }),
        chip_info: opaque.chip_info().map(|v| escape(&v).into_owned()),
        measurement_count: report.response().blocks.len(),
        unknown_opaque_ids: opaque.unknown_ids(),
    }
}
