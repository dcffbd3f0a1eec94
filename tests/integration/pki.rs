//! `tppguard-agent init` and `tppguard-verifier pki`, run as an operator would: node key and
//! CSR, the built-in PKI, issuing a node certificate and checking the chain.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use serde_json::Value;

use crate::support::{run, s};

/// Runs, expects success, and parses stdout as JSON.
fn ok_json(name: &str, args: &[&str]) -> Value {
    let out = run(name, args);
    assert!(
        out.status.success(),
        "{name} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("stdout is JSON")
}

/// Runs, expects exit code 2 and nothing on stdout, and returns stderr.
fn fails(name: &str, args: &[&str]) -> String {
    let out = run(name, args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{name} {args:?}: {stderr}");
    assert!(out.stdout.is_empty(), "nothing on stdout on error");
    stderr
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .expect("file exists")
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn agent_init_writes_a_0600_key_and_a_csr_and_refuses_to_overwrite() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let node = tmp.path().join("node");
    let report = ok_json(
        "tppguard-agent",
        &["init", "--dir", s(&node), "--name", "gpu-node-01", "--json"],
    );
    let key = node.join("node.key");
    assert_eq!(report["key"], s(&key));
    assert_eq!(report["key_type"], "ed25519");
    assert_eq!(report["name"], "gpu-node-01");
    assert!(report["next"].as_str().unwrap().contains("pki issue-node"));
    assert_eq!(mode(&key), 0o600);
    let pem = std::fs::read_to_string(&key).unwrap();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"), "PKCS#8 PEM");
    let csr = std::fs::read_to_string(node.join("node.csr")).unwrap();
    assert!(csr.starts_with("-----BEGIN CERTIFICATE REQUEST-----"));

    let stderr = fails("tppguard-agent", &["init", "--dir", s(&node)]);
    assert!(
        stderr.starts_with("tppguard-agent: ") && stderr.contains("already exists"),
        "{stderr}"
    );
    assert!(
        stderr.contains("hint:") && stderr.contains("--force"),
        "{stderr}"
    );
    assert_eq!(std::fs::read_to_string(&key).unwrap(), pem, "key untouched");

    let report = ok_json(
        "tppguard-agent",
        &[
            "init",
            "--dir",
            s(&node),
            "--key-type",
            "p256",
            "--force",
            "--json",
        ],
    );
    assert_eq!(report["replaced"], true);
    assert_eq!(report["key_type"], "p256");
    assert_ne!(std::fs::read_to_string(&key).unwrap(), pem);
    assert_eq!(mode(&key), 0o600);
}

/// `pki init`, then a node key of `key_type`, its certificate and the chain check.
fn issue_and_verify(key_type: &str, expected_alg: &str) {
    let tmp = tempfile::tempdir().expect("temp dir");
    let pki = tmp.path().join("pki");
    let node = tmp.path().join("node");
    let init = ok_json(
        "tppguard-verifier",
        &["pki", "init", "--dir", s(&pki), "--json"],
    );
    let files: usize = init["parties"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["files"].as_array().unwrap().len())
        .sum();
    assert_eq!(files, 17, "{init}");
    assert_eq!(init["trust"], s(&pki.join("verifier/trust.toml")), "{init}");
    for folder in ["", "operator", "licence-authority", "vendor", "verifier"] {
        assert_eq!(mode(&pki.join(folder)), 0o700, "{folder}");
    }
    for key in [
        "operator/operator-ca.key",
        "licence-authority/licence-ca.key",
        "licence-authority/licence-signer.key",
        "vendor/vendor-ca.key",
        "vendor/shipment-signer.key",
        "verifier/verifier-result.key",
    ] {
        assert_eq!(mode(&pki.join(key)), 0o600, "{key}");
    }
    let trust_text = std::fs::read_to_string(pki.join("verifier/trust.toml")).unwrap();
    assert!(trust_text.contains("[operator]\nroots = [\"operator-ca.pem\"]"));
    assert!(trust_text.contains("[licence_authority]\nroots = [\"licence-ca.pem\"]"));
    assert!(trust_text.contains("[vendor]\nroots = [\"vendor-ca.pem\"]"));
    assert!(trust_text.contains("\ndevice_roots = [\"nvidia-device-identity-ca.pem\"]\n"));
    assert_eq!(
        std::fs::read(pki.join("verifier/nvidia-device-identity-ca.pem")).unwrap(),
        std::fs::read(
            crate::support::workspace_root().join("verifier/data/nvidia-device-identity-ca.pem")
        )
        .unwrap()
    );

    ok_json(
        "tppguard-agent",
        &[
            "init",
            "--dir",
            s(&node),
            "--key-type",
            key_type,
            "--name",
            "gpu-7",
            "--json",
        ],
    );
    let chain = node.join("node-chain.pem");
    let issued = ok_json(
        "tppguard-verifier",
        &[
            "pki",
            "issue-node",
            "--dir",
            s(&pki.join("operator")),
            "--csr",
            s(&node.join("node.csr")),
            "--out",
            s(&chain),
            "--days",
            "30",
            "--json",
        ],
    );
    assert_eq!(issued["leaf"]["key_algorithm"], expected_alg);
    assert_eq!(issued["leaf"]["subject"], "CN=gpu-7");
    assert_eq!(issued["clipped_to_ca"], false);
    let pem = std::fs::read_to_string(&chain).unwrap();
    assert_eq!(
        pem.matches("BEGIN CERTIFICATE").count(),
        2,
        "leaf, then the CA"
    );

    let trust = pki.join("verifier/trust.toml");
    let verified = ok_json(
        "tppguard-verifier",
        &[
            "pki",
            "verify-chain",
            "--trust",
            s(&trust),
            "--json",
            s(&chain),
        ],
    );
    assert_eq!(verified["valid"], true);
    assert_eq!(verified["role"], "node");
    assert_eq!(verified["leaf"]["serial"], issued["leaf"]["serial"]);
    assert_eq!(verified["leaf"]["chain_len"], 2);
    let not_after = verified["leaf"]["not_after"].as_i64().unwrap();
    let days = (not_after - verified["at"].as_i64().unwrap()) / 86_400;
    assert!((29..=30).contains(&days), "{days} days");

    // The same chain, later than its notAfter.
    let late = (not_after + 1).to_string();
    let stderr = fails(
        "tppguard-verifier",
        &[
            "pki",
            "verify-chain",
            "--trust",
            s(&trust),
            "--at",
            &late,
            s(&chain),
        ],
    );
    assert!(
        stderr.starts_with("tppguard-verifier: ") && stderr.contains("(cert_expired)"),
        "{stderr}"
    );
    assert!(stderr.contains("hint:"), "{stderr}");

    // A node chain is not a licence signer's, and the signer's chain is.
    let stderr = fails(
        "tppguard-verifier",
        &[
            "pki",
            "verify-chain",
            "--trust",
            s(&trust),
            "--licence-signer",
            s(&chain),
        ],
    );
    assert!(stderr.contains("(wrong_eku)"), "{stderr}");
    let signer = ok_json(
        "tppguard-verifier",
        &[
            "pki",
            "verify-chain",
            "--trust",
            s(&trust),
            "--licence-signer",
            "--json",
            s(&pki.join("licence-authority/licence-signer-chain.pem")),
        ],
    );
    assert_eq!(signer["role"], "licence_signer");
    assert_eq!(signer["leaf"]["key_algorithm"], "ed25519");
}

#[test]
fn pki_issues_an_ed25519_node_chain_the_verifier_accepts() {
    issue_and_verify("ed25519", "ed25519");
}

#[test]
fn pki_issues_a_p256_node_chain_the_verifier_accepts() {
    issue_and_verify("p256", "p256");
}

#[test]
fn pki_init_refuses_to_overwrite() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let pki = tmp.path().join("pki");
    ok_json(
        "tppguard-verifier",
        &["pki", "init", "--dir", s(&pki), "--json"],
    );
    let key = std::fs::read(pki.join("operator/operator-ca.key")).unwrap();
    let stderr = fails("tppguard-verifier", &["pki", "init", "--dir", s(&pki)]);
    assert!(stderr.contains("already exists"), "{stderr}");
    assert!(stderr.contains("hint:"), "{stderr}");
    assert_eq!(
        std::fs::read(pki.join("operator/operator-ca.key")).unwrap(),
        key
    );
    // Each party's command refuses its own existing folder too.
    for (command, folder) in [
        ("init-operator", "operator"),
        ("init-licence-authority", "licence-authority"),
    ] {
        let stderr = fails(
            "tppguard-verifier",
            &["pki", command, "--dir", s(&pki.join(folder))],
        );
        assert!(stderr.contains("already exists"), "{command}: {stderr}");
    }
}

#[test]
fn issue_node_rejects_a_tampered_or_oversized_csr() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let pki = tmp.path().join("pki");
    let node = tmp.path().join("node");
    ok_json(
        "tppguard-verifier",
        &["pki", "init", "--dir", s(&pki), "--json"],
    );
    ok_json(
        "tppguard-agent",
        &["init", "--dir", s(&node), "--name", "n", "--json"],
    );
    let csr = std::fs::read_to_string(node.join("node.csr")).unwrap();
    // Change one character inside the signed request body.
    let body_start = csr.find('\n').unwrap() + 1;
    let mut bytes = csr.into_bytes();
    let i = body_start + 40;
    bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
    let tampered = tmp.path().join("tampered.csr");
    std::fs::write(&tampered, bytes).unwrap();
    let out = tmp.path().join("chain.pem");
    let stderr = fails(
        "tppguard-verifier",
        &[
            "pki",
            "issue-node",
            "--dir",
            s(&pki.join("operator")),
            "--csr",
            s(&tampered),
            "--out",
            s(&out),
        ],
    );
    assert!(
        stderr.contains("invalid certificate signing request"),
        "{stderr}"
    );
    assert!(!out.exists(), "nothing written");

    let big = tmp.path().join("big.csr");
    std::fs::write(&big, vec![b'A'; 70 * 1024]).unwrap();
    let stderr = fails(
        "tppguard-verifier",
        &[
            "pki",
            "issue-node",
            "--dir",
            s(&pki.join("operator")),
            "--csr",
            s(&big),
            "--out",
            s(&out),
        ],
    );
    assert!(stderr.contains("more than the 65536 allowed"), "{stderr}");
}

#[test]
fn verify_chain_reports_a_bad_trust_file_by_name_and_key() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let trust = tmp.path().join("trust.toml");
    std::fs::write(
        &trust,
        "[operator]\nroots = []\n[licence_authority]\nroots = []\nextra = 1\n",
    )
    .unwrap();
    let chain = tmp.path().join("chain.pem");
    std::fs::write(&chain, "").unwrap();
    let stderr = fails(
        "tppguard-verifier",
        &["pki", "verify-chain", "--trust", s(&trust), s(&chain)],
    );
    assert!(
        stderr.contains("trust.toml") && stderr.contains("extra"),
        "{stderr}"
    );
}

/// A PEM CSR for `key` with this subject (common name and extra attributes) and SANs, made
/// with rcgen as any CSR tool would.
fn csr_for(key: &rcgen::KeyPair, names: &[&str], sans: &[&str]) -> String {
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    for (i, name) in names.iter().enumerate() {
        let ty = if i == 0 {
            rcgen::DnType::CommonName
        } else {
            rcgen::DnType::OrganizationName
        };
        params.distinguished_name.push(ty, *name);
    }
    params.subject_alt_names = sans
        .iter()
        .map(|u| rcgen::SanType::URI((*u).try_into().unwrap()))
        .collect();
    params.serialize_request(key).unwrap().pem().unwrap()
}

/// A `pki init` folder in a temporary directory: `dir` is its operator's folder, `trust`
/// the verifier's trust file.
struct Pki {
    tmp: tempfile::TempDir,
    dir: std::path::PathBuf,
    trust: std::path::PathBuf,
}

impl Pki {
    fn new() -> Self {
        let tmp = tempfile::tempdir().expect("temp dir");
        let root = tmp.path().join("pki");
        ok_json(
            "tppguard-verifier",
            &["pki", "init", "--dir", s(&root), "--json"],
        );
        Self {
            dir: root.join("operator"),
            trust: root.join("verifier/trust.toml"),
            tmp,
        }
    }

    /// `pki issue-node` for a CSR text, with extra flags; the process output.
    fn issue(&self, csr: &str, extra: &[&str]) -> std::process::Output {
        let path = self.tmp.path().join("req.csr");
        std::fs::write(&path, csr).unwrap();
        let chain = self.tmp.path().join("chain.pem");
        let mut args = vec![
            "pki",
            "issue-node",
            "--dir",
            s(&self.dir),
            "--csr",
            s(&path),
            "--out",
            s(&chain),
        ];
        args.extend_from_slice(extra);
        run("tppguard-verifier", &args)
    }

    fn issue_json(&self, csr: &str, extra: &[&str]) -> Value {
        let mut extra = extra.to_vec();
        extra.push("--json");
        let out = self.issue(csr, &extra);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    fn issue_fails(&self, csr: &str, extra: &[&str]) -> String {
        let out = self.issue(csr, extra);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(out.stdout.is_empty());
        stderr
    }

    fn record(&self) -> Vec<Value> {
        std::fs::read_to_string(self.dir.join("issued.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

#[test]
fn issue_node_refuses_empty_and_terminal_steering_subjects() {
    let pki = Pki::new();
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    for empty in [&[][..], &[""], &["   "]] {
        let stderr = pki.issue_fails(&csr_for(&key, empty, &[]), &[]);
        assert!(stderr.contains("subject is empty"), "{stderr}");
        assert!(
            stderr.contains("hint:") && stderr.contains("--name"),
            "{stderr}"
        );
    }
    // A subject that would clear the auditor's screen and print "COMPLIANT", one with a
    // newline, one with a right-to-left override.
    for bad in [
        "gpu\u{1b}[2J\u{1b}[HCOMPLIANT",
        "gpu\nnode",
        "\u{202e}10-edon",
    ] {
        let stderr = pki.issue_fails(&csr_for(&key, &[bad], &[]), &[]);
        assert!(stderr.contains("control characters"), "{stderr}");
        assert!(
            !stderr.contains('\u{1b}') && !stderr.contains('\u{202e}'),
            "the subject is shown escaped: {stderr:?}"
        );
        assert_eq!(stderr.lines().count(), 2, "message and hint: {stderr:?}");
    }
    assert!(pki.record().is_empty(), "nothing issued, nothing recorded");
}

#[test]
fn the_issuance_record_keeps_one_key_per_subject_and_one_subject_per_key() {
    let pki = Pki::new();
    let first = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let issued = pki.issue_json(&csr_for(&first, &["gpu-node-01"], &[]), &[]);
    assert_eq!(issued["action"], "issue");
    let node_id = issued["node_id"].as_str().unwrap().to_owned();
    assert_eq!(node_id.len(), 64);
    assert_eq!(issued["leaf"]["node_id"], node_id.as_str());
    assert_eq!(mode(&pki.dir.join("issued.jsonl")), 0o644);

    // Renewal: same key, same subject.
    let renewed = pki.issue_json(&csr_for(&first, &["gpu-node-01"], &[]), &[]);
    assert_eq!(renewed["action"], "renew");
    assert_eq!(renewed["node_id"], node_id.as_str());

    // A cloned machine (another key) asking for the same subject: refused.
    let clone = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let stderr = pki.issue_fails(&csr_for(&clone, &["gpu-node-01"], &[]), &[]);
    assert!(
        stderr.contains("subject CN=gpu-node-01 was issued to another key")
            && stderr.contains(&node_id),
        "{stderr}"
    );
    assert!(stderr.contains("--replace"), "{stderr}");

    // One key under two subjects: refused, --replace or not.
    for extra in [&[][..], &["--replace"]] {
        let stderr = pki.issue_fails(&csr_for(&first, &["gpu-node-02"], &[]), extra);
        assert!(
            stderr.contains("was issued under subject CN=gpu-node-01"),
            "{stderr}"
        );
    }

    // A rotation with --replace is recorded, naming the key it replaces.
    let rotated = pki.issue_json(&csr_for(&clone, &["gpu-node-01"], &[]), &["--replace"]);
    assert_eq!(rotated["action"], "replace");
    assert_eq!(rotated["replaced_node_id"], node_id.as_str());
    let record = pki.record();
    let actions: Vec<&str> = record
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["issue", "renew", "replace"]);
    // The old key now holds nothing: it cannot come back without --replace.
    let stderr = pki.issue_fails(&csr_for(&first, &["gpu-node-01"], &[]), &[]);
    assert!(stderr.contains("issued to another key"), "{stderr}");
}

#[test]
fn issue_node_certifies_the_site_from_the_flag_and_never_copies_csr_sans() {
    let pki = Pki::new();
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    // A node asking, in its CSR, for a site the operator did not give it.
    let csr = csr_for(
        &key,
        &["gpu-node-07"],
        &[
            "tag:tppguard.dev,2026:site/other-country",
            "urn:tppguard:node:abcd",
        ],
    );
    let issued = pki.issue_json(&csr, &[]);
    assert_eq!(issued["site"], Value::Null);
    assert!(issued["leaf"].get("certified_site").is_none(), "{issued:#}");
    let chain = pki.tmp.path().join("chain.pem");
    let pem = std::fs::read_to_string(&chain).unwrap();
    assert!(!pem.is_empty());
    let text = run(
        "tppguard-verifier",
        &["pki", "verify-chain", "--trust", s(&pki.trust), s(&chain)],
    );
    let shown = String::from_utf8_lossy(&text.stdout);
    assert!(shown.contains("site       none certified"), "{shown}");

    // With --site, the leaf certifies it; verify-chain and the issue output show it.
    let out = pki.issue(&csr, &["--site", "fra-1"]);
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(shown.contains("site     fra-1 (certified)"), "{shown}");
    assert!(shown.contains("node id  "), "{shown}");
    let verified = ok_json(
        "tppguard-verifier",
        &[
            "pki",
            "verify-chain",
            "--trust",
            s(&pki.trust),
            "--json",
            s(&chain),
        ],
    );
    assert_eq!(verified["leaf"]["certified_site"], "fra-1");
    assert_eq!(verified["leaf"]["node_id"], issued["node_id"]);
    let text = run(
        "tppguard-verifier",
        &["pki", "verify-chain", "--trust", s(&pki.trust), s(&chain)],
    );
    let shown = String::from_utf8_lossy(&text.stdout);
    assert!(
        shown.contains("site       fra-1")
            && shown.contains(&format!(
                "node id    {}",
                issued["node_id"].as_str().unwrap()
            )),
        "{shown}"
    );
    let record = pki.record();
    assert_eq!(record[1]["site"], "fra-1");

    // A site outside the alphabet is a usage error.
    let out = pki.issue(&csr, &["--site", "fra 1"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn agent_init_names_cloned_hosts_apart_by_their_keys() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let mut names = Vec::new();
    for n in ["a", "b"] {
        let report = ok_json(
            "tppguard-agent",
            &["init", "--dir", s(&tmp.path().join(n)), "--json"],
        );
        let node_id = report["node_id"].as_str().unwrap().to_owned();
        let name = report["name"].as_str().unwrap().to_owned();
        assert!(
            name.ends_with(&format!("-{}", &node_id[..12])),
            "{name} {node_id}"
        );
        names.push(name);
    }
    assert_ne!(names[0], names[1], "one host name, two keys, two subjects");
    let out = run(
        "tppguard-agent",
        &["init", "--dir", s(&tmp.path().join("c"))],
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("node id: "));
}

/// The files, recursively, under `dir`, relative to it.
fn files_under(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                found.push(s(path.strip_prefix(dir).unwrap()).to_owned());
            }
        }
    }
    found.sort();
    found
}

#[test]
fn pki_init_gives_each_party_its_own_folder_and_only_its_own_secrets() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let pki = tmp.path().join("pki");
    let out = run("tppguard-verifier", &["pki", "init", "--dir", s(&pki)]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    for party in [
        "(operator)",
        "(licence-authority)",
        "(vendor)",
        "(verifier)",
    ] {
        assert!(text.contains(party), "{party} in {text}");
    }
    assert_eq!(
        files_under(&pki.join("operator")),
        ["operator-ca.key", "operator-ca.pem"]
    );
    assert_eq!(
        files_under(&pki.join("licence-authority")),
        [
            "licence-ca.key",
            "licence-ca.pem",
            "licence-signer-chain.pem",
            "licence-signer.key"
        ]
    );
    assert_eq!(
        files_under(&pki.join("vendor")),
        [
            "shipment-signer-chain.pem",
            "shipment-signer.key",
            "vendor-ca.key",
            "vendor-ca.pem"
        ]
    );
    assert_eq!(
        files_under(&pki.join("verifier")),
        [
            "licence-ca.pem",
            "nvidia-device-identity-ca.pem",
            "operator-ca.pem",
            "trust.toml",
            "vendor-ca.pem",
            "verifier-result.key",
            "verifier-result.pub.pem"
        ]
    );
    // Nothing at the top: no folder holds every key.
    assert_eq!(
        std::fs::read_dir(&pki).unwrap().count(),
        4,
        "only the four party folders"
    );
    // The verifier's copies are the CAs' certificates, and hold no private key.
    for (copy, original) in [
        ("verifier/operator-ca.pem", "operator/operator-ca.pem"),
        (
            "verifier/licence-ca.pem",
            "licence-authority/licence-ca.pem",
        ),
        ("verifier/vendor-ca.pem", "vendor/vendor-ca.pem"),
    ] {
        let copy = std::fs::read_to_string(pki.join(copy)).unwrap();
        assert_eq!(copy, std::fs::read_to_string(pki.join(original)).unwrap());
        assert!(!copy.contains("PRIVATE KEY"));
    }
    // The demo's top folder is no party's: issue-node says which folder to give.
    let node = tmp.path().join("node");
    ok_json(
        "tppguard-agent",
        &["init", "--dir", s(&node), "--name", "n-1", "--json"],
    );
    let stderr = fails(
        "tppguard-verifier",
        &[
            "pki",
            "issue-node",
            "--dir",
            s(&pki),
            "--csr",
            s(&node.join("node.csr")),
            "--out",
            s(&node.join("node-chain.pem")),
        ],
    );
    assert!(
        stderr.contains("one folder per party") && stderr.contains("--dir DIR/operator"),
        "{stderr}"
    );
    for public in [
        "operator/operator-ca.pem",
        "licence-authority/licence-signer-chain.pem",
        "verifier/verifier-result.pub.pem",
        "verifier/trust.toml",
    ] {
        assert_eq!(mode(&pki.join(public)), 0o644, "{public}");
    }
}

#[test]
fn the_parties_make_their_folders_apart_and_the_verifier_trusts_them() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let (operator, authority, verifier) = (
        tmp.path().join("op"),
        tmp.path().join("la"),
        tmp.path().join("v"),
    );
    let op = ok_json(
        "tppguard-verifier",
        &["pki", "init-operator", "--dir", s(&operator), "--json"],
    );
    assert_eq!(op["party"], "operator");
    ok_json(
        "tppguard-verifier",
        &[
            "pki",
            "init-licence-authority",
            "--dir",
            s(&authority),
            "--json",
        ],
    );
    // Only the two public certificates travel to the verifier.
    let v = ok_json(
        "tppguard-verifier",
        &[
            "pki",
            "init-verifier",
            "--dir",
            s(&verifier),
            "--operator-ca",
            s(&operator.join("operator-ca.pem")),
            "--licence-ca",
            s(&authority.join("licence-ca.pem")),
            "--json",
        ],
    );
    assert_eq!(v["files"].as_array().unwrap().len(), 6, "{v}");
    assert_eq!(mode(&verifier), 0o700);
    assert_eq!(mode(&verifier.join("verifier-result.key")), 0o600);
    // A node the operator certifies verifies under the verifier's trust, and the licence
    // authority's signer chain does too.
    let node = tmp.path().join("node");
    ok_json(
        "tppguard-agent",
        &["init", "--dir", s(&node), "--name", "n-1", "--json"],
    );
    let chain = node.join("node-chain.pem");
    ok_json(
        "tppguard-verifier",
        &[
            "pki",
            "issue-node",
            "--dir",
            s(&operator),
            "--csr",
            s(&node.join("node.csr")),
            "--out",
            s(&chain),
            "--json",
        ],
    );
    assert!(
        operator.join("issued.jsonl").exists(),
        "the operator keeps the record"
    );
    let trust = verifier.join("trust.toml");
    for (extra, file) in [
        (None, chain),
        (
            Some("--licence-signer"),
            authority.join("licence-signer-chain.pem"),
        ),
    ] {
        let mut args = vec!["pki", "verify-chain", "--trust", s(&trust), "--json"];
        args.extend(extra);
        args.push(s(&file));
        assert_eq!(ok_json("tppguard-verifier", &args)["valid"], true);
    }
}

#[test]
fn init_verifier_refuses_a_missing_malformed_or_leaf_ca_and_writes_nothing() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let pki = tmp.path().join("pki");
    ok_json(
        "tppguard-verifier",
        &["pki", "init", "--dir", s(&pki), "--json"],
    );
    let licence_ca = pki.join("licence-authority/licence-ca.pem");
    let garbage = tmp.path().join("garbage.pem");
    std::fs::write(
        &garbage,
        "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let empty = tmp.path().join("empty.pem");
    std::fs::write(&empty, "no PEM here\n").unwrap();
    let key = pki.join("operator/operator-ca.key");
    // The signer's chain starts with a leaf: not a CA.
    let leaf = pki.join("licence-authority/licence-signer-chain.pem");
    let missing = tmp.path().join("missing.pem");
    for (bad, expected) in [
        (&missing, "missing.pem"),
        (&garbage, "garbage.pem"),
        (&empty, "holds no PEM CERTIFICATE block"),
        (&key, "operator-ca.key"),
        (&leaf, "not a CA"),
    ] {
        let dir = tmp.path().join("v");
        let stderr = fails(
            "tppguard-verifier",
            &[
                "pki",
                "init-verifier",
                "--dir",
                s(&dir),
                "--operator-ca",
                s(bad),
                "--licence-ca",
                s(&licence_ca),
            ],
        );
        assert!(stderr.contains(expected), "{expected}: {stderr}");
        assert!(stderr.contains("hint:"), "{stderr}");
        assert!(!dir.exists(), "nothing written for {}", s(bad));
    }
}
