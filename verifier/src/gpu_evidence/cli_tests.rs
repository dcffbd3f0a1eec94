use clap::Parser;

use super::super::test_device::{FwidForm, TestDevice};
use crate::cli::Cli;
use crate::{Error, Outcome};

const REPORT_HEX: &str =
    include_str!("../../../tests/fixtures/nvidia-cc/hopperAttestationReport.txt");
const CHAIN_PEM: &str = include_str!("../../../tests/fixtures/nvidia-cc/hopperCertChain.txt");
const NONCE: &str = "931d8dd0add203ac3d8b4fbde75e115278eefcdceac5b87671a748f32364dfcb";

struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        // NVIDIA's files, with line breaks added to the hex: whitespace is allowed.
        let wrapped: String = REPORT_HEX
            .as_bytes()
            .chunks(64)
            .map(|c| format!("{}\n", std::str::from_utf8(c).unwrap()))
            .collect();
        std::fs::write(dir.path().join("report.txt"), wrapped).unwrap();
        std::fs::write(dir.path().join("chain.pem"), CHAIN_PEM).unwrap();
        Self { dir }
    }
    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }
}

fn run(args: &[&str]) -> (Result<Outcome, Error>, String) {
    let argv = ["tppguard-verifier", "gpu-evidence"].iter().chain(args);
    let cli = Cli::try_parse_from(argv).unwrap();
    let mut out = Vec::new();
    let result = crate::run(&cli, &mut out);
    (result, String::from_utf8(out).unwrap())
}

fn verify(files: &Files, extra: &[&str]) -> (Result<Outcome, Error>, String) {
    let (report, chain) = (files.path("report.txt"), files.path("chain.pem"));
    let mut args = vec![
        "verify",
        "--report",
        &report,
        "--chain",
        &chain,
        "--at",
        "2024-06-01T00:00:00Z",
    ];
    if !extra.contains(&"--nonce") {
        args.extend(["--nonce", NONCE]);
    }
    args.extend(extra);
    run(&args)
}

#[test]
fn the_real_sample_verifies_with_the_shipped_root_exit_0() {
    let files = Files::new();
    let (result, out) = verify(
        &files,
        &[
            "--driver-version",
            "550.90.07",
            "--vbios-version",
            "96.00.9F.00.01",
        ],
    );
    assert_eq!(result.unwrap().exit_code(), 0, "{out}");
    assert!(out.starts_with("GPU evidence: VERIFIED\n"), "{out}");
    assert!(out.contains("shipped in tppguard-verifier"), "{out}");
    assert!(out.contains("ecid: 41431D480FE5E87274"), "{out}");
    assert!(out.contains("  signature         passed"), "{out}");
    // Without versions: nothing failed, the versions are not compared, and it says so.
    let (result, out) = verify(&files, &[]);
    assert_eq!(result.unwrap(), Outcome::Clean);
    assert!(out.contains("versions not compared"), "{out}");
    assert!(out.contains("code: no_claim"), "{out}");
    // JSON: the report, read back.
    let (result, out) = verify(&files, &["--json"]);
    assert_eq!(result.unwrap(), Outcome::Clean);
    let report: super::GpuEvidenceReport = serde_json::from_str(&out).unwrap();
    assert_eq!(report.ecid.as_deref(), Some("41431D480FE5E87274"));
}

#[test]
fn a_failed_check_exits_1() {
    let files = Files::new();
    let wrong = "00".repeat(32);
    let (result, out) = verify(&files, &["--nonce", &wrong]);
    assert_eq!(result.unwrap().exit_code(), 1, "{out}");
    assert!(out.starts_with("GPU evidence: NOT VERIFIED"), "{out}");
    assert!(out.contains("code: nonce_mismatch"), "{out}");
    let (result, out) = verify(&files, &["--driver-version", "535.1.1"]);
    assert_eq!(result.unwrap(), Outcome::Findings, "{out}");
    // The real chain against a test root.
    let dev = TestDevice::new("GH100", FwidForm::NvidiaLegacy);
    std::fs::write(files.dir.path().join("test-root.pem"), dev.root_pem()).unwrap();
    let root = files.path("test-root.pem");
    let (result, out) = verify(&files, &["--root", &root]);
    assert_eq!(result.unwrap(), Outcome::Findings);
    assert!(out.contains("code: unknown_issuer"), "{out}");
    // Raw binary reports are read too: a test device's fresh one, against its root.
    std::fs::write(
        files.dir.path().join("report.bin"),
        dev.sign_report([0x11; 32], "550.90.07", "96.00.9F.00.01"),
    )
    .unwrap();
    std::fs::write(files.dir.path().join("dev.pem"), dev.chain_pem()).unwrap();
    let (report, chain) = (files.path("report.bin"), files.path("dev.pem"));
    let nonce = "11".repeat(32);
    let (result, out) = run(&[
        "verify",
        "--report",
        &report,
        "--chain",
        &chain,
        "--nonce",
        &nonce,
        "--root",
        &root,
        "--at",
        "2024-06-01T00:00:00Z",
    ]);
    assert_eq!(result.unwrap(), Outcome::Clean, "{out}");
}

#[test]
fn inputs_that_cannot_be_read_exit_2() {
    let files = Files::new();
    std::fs::write(files.dir.path().join("odd.txt"), "abc").unwrap();
    std::fs::write(files.dir.path().join("text.txt"), "not hex at all!").unwrap();
    let chain = files.path("chain.pem");
    for (report, code) in [
        (files.path("missing.txt"), "cannot read"),
        (files.path("odd.txt"), "odd number"),
        (files.path("text.txt"), "not a hex digit"),
    ] {
        let (result, _) = run(&[
            "verify", "--report", &report, "--chain", &chain, "--nonce", NONCE,
        ]);
        let e = result.unwrap_err();
        assert!(e.to_string().contains(code), "{e}");
        assert!(e.hint().is_some());
    }
    // A --root that is not PEM, and a --rims folder that does not exist.
    let report = files.path("report.txt");
    let (result, _) = run(&[
        "verify", "--report", &report, "--chain", &chain, "--nonce", NONCE, "--root", &report,
    ]);
    assert!(
        result
            .unwrap_err()
            .to_string()
            .contains("not a usable device root")
    );
    let missing = files.path("no-rims");
    let (result, _) = run(&[
        "verify", "--report", &report, "--chain", &chain, "--nonce", NONCE, "--rims", &missing,
    ]);
    assert!(result.unwrap_err().to_string().contains("--rims"));
    // A malformed nonce is a usage error (clap: exit 2).
    let argv = [
        "tppguard-verifier",
        "gpu-evidence",
        "verify",
        "--report",
        "r",
        "--chain",
        "c",
        "--nonce",
        "abcd",
    ];
    assert!(Cli::try_parse_from(argv).is_err());
}

#[test]
fn nonce_prints_the_derived_nonce() {
    let challenge = "ab".repeat(32);
    let node = "cd".repeat(32);
    let (result, out) = run(&[
        "nonce",
        "--challenge",
        &challenge,
        "--node-id",
        &node,
        "--index",
        "3",
    ]);
    assert_eq!(result.unwrap(), Outcome::Clean);
    let expected = tppguard_proto::gpu_evidence::gpu_nonce(
        &tppguard_proto::claims::Nonce::parse(&challenge).unwrap(),
        &tppguard_proto::identity::NodeId::from_hex(&node).unwrap(),
        3,
    );
    let hex: String = expected.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(out, format!("{hex}\n"));
}
