use rustls_pki_types::CertificateDer;
use tppguard_proto::gpu_evidence::GpuEvidence;
use tppguard_proto::gpu_evidence::opaque::OpaqueId;

use super::test_device::{FwidForm, Quirks, TestDevice, TestRoot};
use super::*;
use crate::chain::{ChainError, TrustAnchors, certs_from_pem};

#[path = "dice_tests.rs"]
mod dice_tests;
#[path = "rim_tests.rs"]
mod rim_tests;

const REPORT_HEX: &str =
    include_str!("../../../tests/fixtures/nvidia-cc/hopperAttestationReport.txt");
const CHAIN_PEM: &str = include_str!("../../../tests/fixtures/nvidia-cc/hopperCertChain.txt");
const NVIDIA_ROOT: &[u8] = include_bytes!("../../data/nvidia-device-identity-ca.pem");
const SAMPLE_NONCE: &str = "931d8dd0add203ac3d8b4fbde75e115278eefcdceac5b87671a748f32364dfcb";
const SAMPLE_FWID: &str = "f5c384aebb579217a2c66b17ed0f28e6a9b8d639041acd7b4721cec004f7275494ba94bb5cdfdb3055ee051762b1f75d";
/// 2024-06-01T00:00:00Z.
const AT_2024: i64 = 1_717_200_000;
/// 2020-01-01T00:00:00Z: before every certificate of the sample.
const AT_2020: i64 = 1_577_836_800;
const DRIVER: &str = "550.90.07";
const VBIOS: &str = "96.00.9F.00.01";
const MODEL: &str = "NVIDIA H100 80GB HBM3";

fn unhex(text: &str) -> Vec<u8> {
    let text: String = text.split_whitespace().collect();
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

fn nonce32(text: &str) -> [u8; 32] {
    unhex(text).try_into().unwrap()
}

fn sample_report() -> Vec<u8> {
    unhex(REPORT_HEX)
}

fn sample_evidence(report: &[u8]) -> GpuEvidence {
    GpuEvidence::from_parts("HOPPER", CHAIN_PEM.as_bytes(), report)
}

fn nvidia_trust() -> TrustAnchors {
    let roots = certs_from_pem(NVIDIA_ROOT).unwrap();
    TrustAnchors::default().with_device_roots(&roots).unwrap()
}

fn trust_of(root_der: Vec<u8>) -> TrustAnchors {
    TrustAnchors::default()
        .with_device_roots(&[CertificateDer::from(root_der)])
        .unwrap()
}

fn expected(nonce: [u8; 32]) -> Expected<'static> {
    Expected {
        nonce,
        driver_version: Some(DRIVER),
        vbios_version: Some(VBIOS),
        architecture: Some("Hopper"),
        model: Some(MODEL),
        inventory: InventoryRule::Required,
    }
}

fn sample_expected() -> Expected<'static> {
    expected(nonce32(SAMPLE_NONCE))
}

#[track_caller]
fn assert_check(report: &GpuEvidenceReport, name: CheckName, outcome: Outcome, code: &str) {
    let check = report.check(name).unwrap();
    assert_eq!(
        (check.outcome, check.code.as_str()),
        (outcome, code),
        "{name:?}: {}",
        check.sentence
    );
}

#[track_caller]
fn assert_fails(report: &GpuEvidenceReport, name: CheckName, code: &str) {
    assert_check(report, name, Outcome::Failed, code);
    assert!(!report.verified());
}

fn verify_sample(report: &[u8], expected: &Expected<'_>, at: i64) -> GpuEvidenceReport {
    verify_gpu_evidence(&sample_evidence(report), &nvidia_trust(), expected, at)
}

#[test]
fn the_real_h100_sample_verifies_with_the_pinned_nvidia_root() {
    let report = verify_sample(&sample_report(), &sample_expected(), AT_2024);
    for &name in CheckName::REQUIRED {
        assert_check(&report, name, Outcome::Passed, "passed");
    }
    assert_check(&report, CheckName::Model, Outcome::Passed, "passed");
    assert_check(
        &report,
        CheckName::Measurements,
        Outcome::NotChecked,
        "no_reference_values",
    );
    assert_check(
        &report,
        CheckName::Ocsp,
        Outcome::NotChecked,
        "ocsp_not_supplied",
    );
    assert!(report.verified());
    let names: Vec<CheckName> = report.checks.iter().map(|c| c.name).collect();
    assert_eq!(names, CheckName::ALL);
    assert_eq!(report.ecid.as_deref(), Some("41431D480FE5E87274"));
    // SHA-256 of the "GH100 A01 GSP BROM" certificate's SubjectPublicKeyInfo.
    let brom = &certs_from_pem(CHAIN_PEM.as_bytes()).unwrap()[1];
    let (_, brom) = x509_parser::parse_x509_certificate(brom).unwrap();
    let digest = ring::digest::digest(&ring::digest::SHA256, brom.public_key().raw);
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(report.hardware_id.as_deref(), Some(hex.as_str()));
    let facts = report.facts.as_ref().unwrap();
    assert_eq!(facts.driver_version.as_deref(), Some(DRIVER));
    assert_eq!(facts.vbios_version.as_deref(), Some(VBIOS));
    assert_eq!(facts.fwid.as_deref(), Some(SAMPLE_FWID));
    assert_eq!(facts.chip.as_deref(), Some("GH100"));
    assert_eq!(facts.architecture.as_deref(), Some("Hopper"));
    assert_eq!(facts.board_id, Some(0x3b1));
    assert_eq!(facts.chip_sku.as_deref(), Some("882"));
    assert_eq!(facts.project.as_deref(), Some("1010"));
    assert_eq!(facts.project_sku.as_deref(), Some("0200"));
    assert_eq!(facts.nvdec0_status.as_deref(), Some("disabled"));
    assert_eq!(facts.protected_pcie_status, Some(0x55));
    assert_eq!(facts.measurement_count, 64);
    // The stored form reads back, and unknown fields are refused.
    let json = serde_json::to_string(&report).unwrap();
    assert_eq!(
        serde_json::from_str::<GpuEvidenceReport>(&json).unwrap(),
        report
    );
    let extra = json.replacen("{\"checks\"", "{\"extra\":1,\"checks\"", 1);
    assert!(serde_json::from_str::<GpuEvidenceReport>(&extra).is_err());
    assert!(json.contains("\"name\":\"cert_chain\",\"outcome\":\"passed\""));
}

#[test]
fn a_wrong_nonce_fails_the_nonce_check_only() {
    let mut exp = sample_expected();
    exp.nonce[0] ^= 1;
    let report = verify_sample(&sample_report(), &exp, AT_2024);
    assert_fails(&report, CheckName::Nonce, "nonce_mismatch");
    assert_check(&report, CheckName::Signature, Outcome::Passed, "passed");
    assert_eq!(report.failures().count(), 1);
}

fn flipped(bytes: &[u8], byte: usize, bit: u8) -> Vec<u8> {
    let mut out = bytes.to_vec();
    out[byte] ^= 1 << bit;
    out
}

#[test]
fn one_flipped_bit_in_request_measurements_or_opaque_data_fails_the_signature() {
    let bytes = sample_report();
    let fwid = unhex(SAMPLE_FWID);
    let opaque_at = bytes.windows(48).position(|w| w == fwid).unwrap();
    // Request nonce; a measurement value (request 37 + response header 8 + block header 7);
    // the opaque FWID.
    for at in [10, 37 + 8 + 7 + 3, opaque_at + 5] {
        let report = verify_sample(&flipped(&bytes, at, 3), &sample_expected(), AT_2024);
        assert_fails(&report, CheckName::Signature, "bad_signature");
        assert_check(
            &report,
            CheckName::Nonce,
            Outcome::NotChecked,
            "signature_unverified",
        );
        assert_check(&report, CheckName::CertChain, Outcome::Passed, "passed");
        assert!(report.facts.is_none());
    }
}

#[test]
fn no_single_bit_flip_of_the_report_verifies_or_panics() {
    let bytes = sample_report();
    let trust = nvidia_trust();
    let exp = sample_expected();
    for byte in 0..bytes.len() {
        for bit in 0..8 {
            let ev = sample_evidence(&flipped(&bytes, byte, bit));
            let report = verify_gpu_evidence(&ev, &trust, &exp, AT_2024);
            assert!(!report.verified(), "byte {byte} bit {bit}");
            assert_eq!(report.checks.len(), CheckName::ALL.len());
        }
    }
}

#[test]
fn a_truncated_report_fails_to_parse() {
    let bytes = sample_report();
    for len in [0, 10, 36, 37, 100, 3000, bytes.len() - 97, bytes.len() - 1] {
        let report = verify_sample(&bytes[..len], &sample_expected(), AT_2024);
        let check = report.check(CheckName::ReportParsed).unwrap();
        assert_eq!(check.outcome, Outcome::Failed, "len {len}");
        assert!(check.code.starts_with("spdm_"), "{}", check.code);
        assert_check(
            &report,
            CheckName::Signature,
            Outcome::NotChecked,
            "report_unparsed",
        );
        assert!(!report.verified());
    }
}

#[test]
fn a_chain_from_another_device_fails_the_signature_with_the_chain_passing() {
    let dev = TestDevice::new("GH100", FwidForm::NvidiaLegacy);
    let other = dev.sibling(FwidForm::NvidiaLegacy);
    let nonce = [9; 32];
    let report = dev.sign_report(nonce, DRIVER, VBIOS);
    let ev = GpuEvidence::from_parts("HOPPER", other.chain_pem().as_bytes(), &report);
    let out = verify_gpu_evidence(&ev, &trust_of(dev.root_der()), &expected(nonce), AT_2024);
    assert_check(&out, CheckName::CertChain, Outcome::Passed, "passed");
    assert_fails(&out, CheckName::Signature, "bad_signature");
    // The identity is the other device's: the one whose chain was sent.
    assert_eq!(out.ecid.as_deref(), Some(other.ecid()));
}

#[test]
fn a_verification_time_before_the_certificates_fails_cert_validity() {
    let report = verify_sample(&sample_report(), &sample_expected(), AT_2020);
    let check = report.check(CheckName::CertValidity).unwrap();
    assert_eq!(check.outcome, Outcome::Failed);
    assert!(
        ["cert_not_yet_valid", "root_not_yet_valid"].contains(&check.code.as_str()),
        "{}",
        check.code
    );
    // The chain itself is sound: judged at an instant inside every validity. No identity
    // comes from a chain not valid at the verification time.
    assert_check(&report, CheckName::CertChain, Outcome::Passed, "passed");
    assert!(report.hardware_id.is_none() && report.ecid.is_none());
    assert!(!report.verified());
    // After 9999 nothing is valid either; before 1970 is refused.
    let late = verify_sample(&sample_report(), &sample_expected(), 253_402_300_800 + 1);
    assert_eq!(late.outcome(CheckName::CertValidity), Some(Outcome::Failed));
    let early = verify_sample(&sample_report(), &sample_expected(), -5);
    assert_fails(&early, CheckName::CertValidity, "invalid_time");
}

#[test]
fn versions_differing_from_the_inventory_fail_their_checks() {
    let mut exp = sample_expected();
    exp.driver_version = Some("550.90.08");
    let report = verify_sample(&sample_report(), &exp, AT_2024);
    assert_fails(&report, CheckName::DriverVersion, "version_mismatch");
    assert_check(&report, CheckName::VbiosVersion, Outcome::Passed, "passed");

    let mut exp = sample_expected();
    exp.vbios_version = Some("96.00.9F.00.02");
    let report = verify_sample(&sample_report(), &exp, AT_2024);
    assert_fails(&report, CheckName::VbiosVersion, "version_mismatch");
    assert_check(&report, CheckName::DriverVersion, Outcome::Passed, "passed");

    // NVML writes VBIOS versions in upper case, nvtrust compares lower case: case is ignored.
    let mut exp = sample_expected();
    exp.vbios_version = Some("96.00.9f.00.01");
    assert!(verify_sample(&sample_report(), &exp, AT_2024).verified());
}

#[test]
fn an_inventory_that_does_not_state_its_versions_fails_unless_optional() {
    let mut exp = sample_expected();
    exp.driver_version = None;
    exp.vbios_version = None;
    let report = verify_sample(&sample_report(), &exp, AT_2024);
    assert_fails(&report, CheckName::DriverVersion, "inventory_silent");
    assert_fails(&report, CheckName::VbiosVersion, "inventory_silent");
    exp.inventory = InventoryRule::Optional;
    let report = verify_sample(&sample_report(), &exp, AT_2024);
    assert_check(
        &report,
        CheckName::DriverVersion,
        Outcome::NotChecked,
        "no_claim",
    );
    assert_check(
        &report,
        CheckName::VbiosVersion,
        Outcome::NotChecked,
        "no_claim",
    );
    assert!(!report.verified(), "versions are required checks");
}

#[test]
fn the_real_chain_against_a_test_root_and_a_test_device_against_the_real_root_fail() {
    let dev = TestDevice::new("GH100", FwidForm::NvidiaLegacy);
    let ev = sample_evidence(&sample_report());
    let out = verify_gpu_evidence(&ev, &trust_of(dev.root_der()), &sample_expected(), AT_2024);
    assert_fails(&out, CheckName::CertChain, "unknown_issuer");
    assert!(out.hardware_id.is_none() && out.ecid.is_none());
    assert_check(
        &out,
        CheckName::Signature,
        Outcome::NotChecked,
        "chain_unverified",
    );

    let nonce = [1; 32];
    let ev = dev.evidence(nonce, DRIVER, VBIOS);
    let out = verify_gpu_evidence(&ev, &nvidia_trust(), &expected(nonce), AT_2024);
    assert_fails(&out, CheckName::CertChain, "unknown_issuer");
}

#[test]
fn a_gpu_sent_root_named_like_nvidias_with_another_key_is_not_trusted() {
    let fake = TestRoot::impersonating_nvidia("GH100").device(FwidForm::NvidiaLegacy);
    let root_der = fake.root_der();
    let (_, root) = x509_parser::parse_x509_certificate(&root_der).unwrap();
    assert_eq!(
        root.subject().to_string(),
        "CN=NVIDIA Device Identity CA, O=NVIDIA"
    );
    let nonce = [2; 32];
    let out = verify_gpu_evidence(
        &fake.evidence(nonce, DRIVER, VBIOS),
        &nvidia_trust(),
        &expected(nonce),
        AT_2024,
    );
    let check = out.check(CheckName::CertChain).unwrap();
    assert_eq!(check.outcome, Outcome::Failed);
    assert!(
        ["unknown_issuer", "bad_signature"].contains(&check.code.as_str()),
        "{}",
        check.code
    );
}

#[test]
fn device_roots_validate_gpu_evidence_only_and_other_roots_never_do() {
    let dev = TestDevice::new("GH100", FwidForm::NvidiaLegacy);
    let root = CertificateDer::from(dev.root_der());
    // Pinned as a device root: no node or licence-signer chain validates under it.
    let trust = TrustAnchors::default()
        .with_device_roots(std::slice::from_ref(&root))
        .unwrap();
    assert_eq!(trust.device_roots_count(), 1);
    assert_eq!(trust.counts(), (0, 0, 0));
    let chain = dev.chain_der();
    assert_eq!(
        trust.verify_node(&chain, AT_2024).unwrap_err(),
        ChainError::UnknownIssuer
    );
    assert_eq!(
        trust.verify_licence_signer(&chain, AT_2024).unwrap_err(),
        ChainError::UnknownIssuer
    );
    assert!(trust.verify_gpu_device(&chain, AT_2024).is_ok());
    // Pinned as operator and licence-authority root: GPU evidence does not validate.
    let trust =
        TrustAnchors::from_der_roots(std::slice::from_ref(&root), std::slice::from_ref(&root))
            .unwrap();
    assert_eq!(trust.device_roots_count(), 0);
    let nonce = [3; 32];
    let out = verify_gpu_evidence(
        &dev.evidence(nonce, DRIVER, VBIOS),
        &trust,
        &expected(nonce),
        AT_2024,
    );
    assert_fails(&out, CheckName::CertChain, "unknown_issuer");
}

#[test]
fn trust_toml_device_roots_and_reference_values_load_and_unknown_keys_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let dev = TestDevice::new("GH100", FwidForm::NvidiaLegacy);
    std::fs::write(dir.path().join("gpu.pem"), dev.root_pem()).unwrap();
    std::fs::write(
        dir.path().join("op.pem"),
        TestDevice::new("GH100", FwidForm::NvidiaLegacy).root_pem(),
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("rims")).unwrap();
    std::fs::write(
        dir.path().join("rims/driver.xml"),
        rim_tests::rim_xml(DRIVER, &[(0, true, vec![[0u8; 48].to_vec()])]),
    )
    .unwrap();
    let toml = dir.path().join("trust.toml");
    std::fs::write(
        &toml,
        "[operator]\nroots = [\"op.pem\"]\n[licence_authority]\nroots = []\n[vendor]\nroots = []\n\
         device_roots = [\"gpu.pem\"]\nreference_values = \"rims\"\n",
    )
    .unwrap();
    let trust = TrustAnchors::from_trust_toml(&toml).unwrap();
    assert_eq!(trust.counts(), (1, 0, 0));
    assert_eq!(trust.device_roots_count(), 1);
    assert_eq!(trust.reference_values().unwrap().rims().len(), 1);
    assert!(trust.verify_gpu_device(&dev.chain_der(), AT_2024).is_ok());
    assert!(trust.verify_node(&dev.chain_der(), AT_2024).is_err());
    // CRL reloads keep the device roots.
    assert_eq!(trust.with_crls_of(&trust).device_roots_count(), 1);

    std::fs::write(
        &toml,
        "[operator]\nroots = []\n[licence_authority]\nroots = []\n[vendor]\ndevice_root = []\n",
    )
    .unwrap();
    let e = TrustAnchors::from_trust_toml(&toml)
        .unwrap_err()
        .to_string();
    assert!(e.contains("device_root"), "{e}");
    // device_roots belongs to [vendor] only.
    std::fs::write(
        &toml,
        "[operator]\nroots = []\ndevice_roots = []\n[licence_authority]\nroots = []\n",
    )
    .unwrap();
    assert!(TrustAnchors::from_trust_toml(&toml).is_err());
    // A bad RIM folder is refused when trust.toml loads, naming the key.
    std::fs::write(dir.path().join("rims/bad.xml"), "<not-a-rim/>").unwrap();
    std::fs::write(
        &toml,
        "[operator]\nroots = []\n[licence_authority]\nroots = []\n[vendor]\nreference_values = \"rims\"\n",
    )
    .unwrap();
    let e = TrustAnchors::from_trust_toml(&toml)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("vendor.reference_values") && e.contains("rim_invalid"),
        "{e}"
    );
}

#[test]
fn fresh_reports_of_test_devices_verify_in_every_fwid_form() {
    for form in [
        FwidForm::NvidiaLegacy,
        FwidForm::TcgTcbInfo,
        FwidForm::TcgMultiTcbInfo,
    ] {
        let dev = TestDevice::new("GH100", form);
        let nonce = [form as u8 + 40; 32];
        let out = verify_gpu_evidence(
            &dev.evidence(nonce, DRIVER, VBIOS),
            &trust_of(dev.root_der()),
            &expected(nonce),
            AT_2024,
        );
        assert!(
            out.verified(),
            "{form:?}: {:?}",
            out.failures().collect::<Vec<_>>()
        );
        assert_eq!(out.ecid.as_deref(), Some(dev.ecid()));
        let digest = ring::digest::digest(&ring::digest::SHA256, dev.brom_spki_der());
        let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(out.hardware_id.as_deref(), Some(hex.as_str()));
    }
}

#[test]
fn a_report_whose_fwid_the_leaf_does_not_certify_fails_fwid() {
    let dev = TestDevice::new("GH100", FwidForm::TcgMultiTcbInfo);
    let nonce = [4; 32];
    let mut builder = dev.report_builder(nonce, DRIVER, VBIOS);
    for field in &mut builder.opaque {
        if field.id == OpaqueId::Fwid.as_u16() {
            field.value[0] ^= 0xff;
        }
    }
    let ev = GpuEvidence::from_parts("HOPPER", dev.chain_pem().as_bytes(), &dev.sign(&builder));
    let out = verify_gpu_evidence(&ev, &trust_of(dev.root_der()), &expected(nonce), AT_2024);
    assert_fails(&out, CheckName::Fwid, "fwid_mismatch");
    // Without the FWID field at all.
    builder.opaque.retain(|f| f.id != OpaqueId::Fwid.as_u16());
    let ev = GpuEvidence::from_parts("HOPPER", dev.chain_pem().as_bytes(), &dev.sign(&builder));
    let out = verify_gpu_evidence(&ev, &trust_of(dev.root_der()), &expected(nonce), AT_2024);
    assert_fails(&out, CheckName::Fwid, "report_without_fwid");
}

#[test]
fn the_model_check_names_what_disagrees_and_never_passes_an_unknown_chip() {
    let nonce = [5; 32];
    let dev = TestDevice::new("GH100", FwidForm::NvidiaLegacy);
    let trust = trust_of(dev.root_der());
    let ev = dev.evidence(nonce, DRIVER, VBIOS);
    let mut exp = expected(nonce);
    exp.model = Some("NVIDIA B200");
    assert_fails(
        &verify_gpu_evidence(&ev, &trust, &exp, AT_2024),
        CheckName::Model,
        "model_mismatch",
    );
    let mut exp = expected(nonce);
    exp.architecture = Some("Blackwell");
    assert_fails(
        &verify_gpu_evidence(&ev, &trust, &exp, AT_2024),
        CheckName::Model,
        "architecture_mismatch",
    );
    let mut blackwell = ev.clone();
    blackwell.arch = "BLACKWELL".to_owned();
    assert_fails(
        &verify_gpu_evidence(&blackwell, &trust, &expected(nonce), AT_2024),
        CheckName::Model,
        "arch_mismatch",
    );
    // H20 admits "NVIDIA H20" but not "NVIDIA H2000".
    let gh100 = chips::chip("GH100").unwrap();
    assert!(gh100.admits_model("NVIDIA H20") && gh100.admits_model("NVIDIA H200 NVL"));
    assert!(gh100.admits_model("H100 PCIe") && !gh100.admits_model("NVIDIA H2000"));

    let unknown = TestDevice::new("GX999", FwidForm::NvidiaLegacy);
    let out = verify_gpu_evidence(
        &unknown.evidence(nonce, DRIVER, VBIOS),
        &trust_of(unknown.root_der()),
        &expected(nonce),
        AT_2024,
    );
    assert_check(&out, CheckName::Model, Outcome::NotChecked, "chip_unknown");
    assert!(out.verified(), "model may be not_checked");
}

#[test]
fn hostile_evidence_fails_named_checks_without_panicking() {
    let exp = sample_expected();
    let trust = nvidia_trust();
    let run = |ev: &GpuEvidence| verify_gpu_evidence(ev, &trust, &exp, AT_2024);

    let mut ev = sample_evidence(&sample_report());
    ev.evidence = "not base64 at all!".to_owned();
    let out = run(&ev);
    assert_fails(&out, CheckName::EvidenceDecoded, "gpu_evidence_not_base64");
    assert!(
        out.checks[1..]
            .iter()
            .all(|c| c.outcome == Outcome::NotChecked)
    );

    let ev = sample_evidence(&vec![0u8; 20_000]);
    assert_fails(
        &run(&ev),
        CheckName::EvidenceDecoded,
        "gpu_evidence_too_large",
    );

    // A PEM block whose body is not base64.
    let garbage = "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n";
    let ev = GpuEvidence::from_parts("HOPPER", garbage.as_bytes(), &sample_report());
    assert_fails(&run(&ev), CheckName::EvidenceDecoded, "chain_not_pem");
    // No PEM at all.
    let ev = GpuEvidence::from_parts("HOPPER", b"hello", &sample_report());
    assert_fails(&run(&ev), CheckName::EvidenceDecoded, "chain_not_pem");
    // A well-formed PEM block of garbage DER before the real chain's first four certificates.
    let junk = "-----BEGIN CERTIFICATE-----\nAAECAwQF\n-----END CERTIFICATE-----\n";
    let end = "-----END CERTIFICATE-----";
    let four_end = CHAIN_PEM.match_indices(end).nth(3).unwrap().0 + end.len();
    let ev = GpuEvidence::from_parts(
        "HOPPER",
        format!("{junk}{}", &CHAIN_PEM[..four_end]).as_bytes(),
        &sample_report(),
    );
    assert_fails(&run(&ev), CheckName::CertChain, "malformed_certificate");
    // The same before the whole chain: six certificates, more than an NVIDIA GPU sends.
    let ev = GpuEvidence::from_parts(
        "HOPPER",
        format!("{junk}{CHAIN_PEM}").as_bytes(),
        &sample_report(),
    );
    assert_fails(&run(&ev), CheckName::EvidenceDecoded, "gpu_chain_too_long");
    // An arch that is not a short ASCII word never reaches a sentence.
    for arch in ["", "HOPPER\u{1b}[2J", &"A".repeat(33)] {
        let ev = GpuEvidence::from_parts(arch, CHAIN_PEM.as_bytes(), &sample_report());
        assert_fails(
            &run(&ev),
            CheckName::EvidenceDecoded,
            "gpu_evidence_bad_arch",
        );
    }

    // Nine certificates: more than any chain may hold.
    // Ten certificates of the real chain do not fit the evidence item's bound.
    let ten = [CHAIN_PEM, "\n", CHAIN_PEM].concat();
    let ev = GpuEvidence::from_parts("HOPPER", ten.as_bytes(), &sample_report());
    assert_fails(
        &run(&ev),
        CheckName::EvidenceDecoded,
        "gpu_evidence_too_large",
    );
    // Nine test certificates: refused by size, or by count before any parsing.
    let dev = TestDevice::new("GH100", FwidForm::NvidiaLegacy);
    let chain = dev.chain_pem();
    let leaf_end = chain.find("-----END CERTIFICATE-----").unwrap() + 26;
    let nine = [chain.as_str(), &chain, &chain[..leaf_end]].concat();
    assert_eq!(certs_from_pem(nine.as_bytes()).unwrap().len(), 9);
    let ev = GpuEvidence::from_parts(
        "HOPPER",
        nine.as_bytes(),
        &dev.sign_report([0; 32], DRIVER, VBIOS),
    );
    let out = verify_gpu_evidence(&ev, &trust_of(dev.root_der()), &expected([0; 32]), AT_2024);
    if nine.len() > tppguard_proto::gpu_evidence::MAX_CHAIN_PEM_BYTES {
        assert_fails(&out, CheckName::EvidenceDecoded, "gpu_evidence_too_large");
    } else {
        assert_fails(&out, CheckName::EvidenceDecoded, "gpu_chain_too_long");
    }
    let certs = certs_from_pem(CHAIN_PEM.as_bytes()).unwrap();
    let mut der: Vec<Vec<u8>> = certs.iter().map(|c| c.to_vec()).collect();
    der.extend(der.clone());
    der.truncate(9);
    assert_eq!(
        trust.verify_gpu_device(&der, AT_2024).unwrap_err().code(),
        "chain_too_long"
    );
    // An arch of control characters is refused before any sentence quotes it.
    let mut ev = sample_evidence(&sample_report());
    ev.arch = "\u{1b}[31mHOPPER".to_owned();
    let out = run(&ev);
    assert!(out.checks.iter().all(|c| !c.sentence.contains('\u{1b}')));
    assert_fails(&out, CheckName::EvidenceDecoded, "gpu_evidence_bad_arch");
}

#[test]
fn test_devices_chain_like_nvidia_and_their_keys_load_in_ring() {
    for form in [
        FwidForm::NvidiaLegacy,
        FwidForm::TcgTcbInfo,
        FwidForm::TcgMultiTcbInfo,
    ] {
        let dev = TestDevice::new("GH100", form);
        let chain = dev.chain_der();
        assert_eq!(chain.len(), 4);
        assert_eq!(chain[3], dev.root_der());
        let (_, leaf) = x509_parser::parse_x509_certificate(&chain[0]).unwrap();
        assert!(leaf.subject().to_string().contains("GH100 A01 GSP FMC LF"));
        assert!(leaf.issuer().to_string().contains(dev.ecid()));
        ring::signature::EcdsaKeyPair::from_pkcs8(
            &ring::signature::ECDSA_P384_SHA384_FIXED_SIGNING,
            &dev.leaf_key_pkcs8(),
            &ring::rand::SystemRandom::new(),
        )
        .unwrap();
        let sib = dev.sibling(form);
        assert_ne!(sib.ecid(), dev.ecid());
        assert_eq!(sib.root_der(), dev.root_der());
    }
}

#[test]
fn test_device_reports_parse_and_carry_the_fwid() {
    let dev = TestDevice::new("GH100", FwidForm::NvidiaLegacy);
    let bytes = dev.sign_report([7; 32], DRIVER, VBIOS);
    let report = tppguard_proto::gpu_evidence::spdm::Report::parse(&bytes).unwrap();
    assert_eq!(report.request().nonce, [7; 32]);
    assert_eq!(report.opaque().fwid(), Some(&dev.fwid()[..]));
    assert_eq!(report.opaque().vbios_version().as_deref(), Some(VBIOS));
    let ev = dev.evidence([7; 32], DRIVER, VBIOS);
    assert_eq!(ev.arch, "HOPPER");
    assert_eq!(ev.chain_pem().unwrap(), dev.chain_pem().as_bytes());
}

#[test]
fn gpu_leaves_must_be_p384_and_their_dice_extension_is_refused_by_webpki_when_critical() {
    let root = TestRoot::new("GH100");
    let good = root.device(FwidForm::NvidiaLegacy);
    let nonce = [8; 32];
    let report = good.sign_report(nonce, DRIVER, VBIOS);
    let p256 = root.device_with(
        FwidForm::NvidiaLegacy,
        Quirks {
            leaf_p256: true,
            ..Quirks::default()
        },
    );
    let ev = GpuEvidence::from_parts("HOPPER", p256.chain_pem().as_bytes(), &report);
    let out = verify_gpu_evidence(&ev, &trust_of(good.root_der()), &expected(nonce), AT_2024);
    assert_fails(&out, CheckName::CertChain, "unsupported_key_algorithm");
    // rustls-webpki refuses critical extensions it does not know: NVIDIA's are not critical.
    let critical = root.device_with(
        FwidForm::TcgTcbInfo,
        Quirks {
            critical_fwid: true,
            ..Quirks::default()
        },
    );
    let out = verify_gpu_evidence(
        &critical.evidence(nonce, DRIVER, VBIOS),
        &trust_of(good.root_der()),
        &expected(nonce),
        AT_2024,
    );
    assert_fails(&out, CheckName::CertChain, "unknown_critical_extension");
}

#[test]
fn verified_gpu_chains_are_remembered_under_their_own_role() {
    let dev = TestDevice::new("GH100", FwidForm::NvidiaLegacy);
    let root = CertificateDer::from(dev.root_der());
    let trust = TrustAnchors::from_der_roots(std::slice::from_ref(&root), &[])
        .unwrap()
        .with_device_roots(std::slice::from_ref(&root))
        .unwrap();
    assert_eq!(trust.remembered_chains(), 0);
    for nonce in [[1; 32], [2; 32]] {
        let out = verify_gpu_evidence(
            &dev.evidence(nonce, DRIVER, VBIOS),
            &trust,
            &expected(nonce),
            AT_2024,
        );
        assert!(out.verified());
        assert_eq!(trust.remembered_chains(), 1);
    }
    // The same bytes as a node chain (this test pins the root for both) are judged afresh
    // under the node role: a second entry, never the GPU one reused.
    assert!(trust.verify_node(&dev.chain_der(), AT_2024).is_ok());
    assert_eq!(trust.remembered_chains(), 2);
    let remembered = trust.verify_gpu_device(&dev.chain_der(), AT_2024).unwrap();
    assert_eq!(
        remembered
            .device_certificate()
            .unwrap()
            .serial_number
            .as_deref(),
        Some(dev.ecid())
    );
}

/// SPDM 1.2 signs a transcript hash with a signing context, which this verifier does not
/// rebuild: a 1.2 report is refused by name, never verified as if it were 1.1.
#[test]
fn an_spdm_1_2_report_is_refused_by_name() {
    let dev = TestDevice::new("GH100", FwidForm::NvidiaLegacy);
    let nonce = [7u8; 32];
    let mut builder = dev.report_builder(nonce, DRIVER, VBIOS);
    builder.version = tppguard_proto::gpu_evidence::spdm::SPDM_VERSION_1_2;
    let ev = GpuEvidence::from_parts("HOPPER", dev.chain_pem().as_bytes(), &dev.sign(&builder));
    let out = verify_gpu_evidence(&ev, &trust_of(dev.root_der()), &expected(nonce), AT_2024);
    assert_check(&out, CheckName::ReportParsed, Outcome::Passed, "passed");
    assert_fails(&out, CheckName::Signature, "spdm_version_unsupported");
}
