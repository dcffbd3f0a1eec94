//! Crypto hygiene (issue 11, point 9), through the binaries: the small-order Ed25519 key
//! forgery against `check` and `pki issue-node`, and every private key tppguard writes read
//! back by OpenSSL and pyca/cryptography.
//!
//! The forgery: under the identity point as a public key, the fixed signature R = identity,
//! S = 0 verifies (cofactorless, as ring checks) for every message. An operator CA that
//! certifies such a key, or a licence authority, lets anyone sign anything.

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SubjectPublicKeyInfo,
};
use serde_json::Value;

use crate::support::{
    attest_to, jws_payload, node_with_chain, ok, pki_issuer, run, s, sign_licence, stderr,
    workspace_root,
};

const NONCE: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

/// The identity point (y = 1) as an Ed25519 SubjectPublicKeyInfo.
fn identity_spki() -> Vec<u8> {
    let mut der = vec![
        0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00, 0x01,
    ];
    der.extend([0u8; 31]);
    der
}

/// The signature that verifies for every message under the identity point: R = identity
/// (its encoding, y = 1), S = 0.
fn forged_signature() -> [u8; 64] {
    let mut sig = [0u8; 64];
    sig[0] = 1;
    sig
}

/// A leaf certificate for the identity-point key, signed by the CA: rcgen's `signed_by` takes
/// any public key, as a careless or hostile CA does.
fn identity_point_leaf(issuer: &Issuer<'_, KeyPair>, eku: ExtendedKeyUsagePurpose) -> Vec<u8> {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, "forged-node");
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![eku];
    let key = SubjectPublicKeyInfo::from_der(&identity_spki()).unwrap();
    params.signed_by(&key, issuer).unwrap().der().to_vec()
}

/// A compact JWS with this header, `payload_b64` as is, and the forged signature.
fn forged_token(typ: &str, x5c: &[&[u8]], payload_b64: &str) -> String {
    let header = serde_json::json!({
        "alg": "EdDSA",
        "typ": typ,
        "x5c": x5c.iter().map(|c| STANDARD.encode(c)).collect::<Vec<_>>(),
    });
    format!(
        "{}.{}.{}\n",
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).unwrap()),
        payload_b64,
        URL_SAFE_NO_PAD.encode(forged_signature())
    )
}

/// A PKI, a genuine node attestation and a genuine signed licence.
struct Setup {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    pki: PathBuf,
    attestation: PathBuf,
    licence: PathBuf,
    at: String,
}

impl Setup {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let (node, pki) = node_with_chain(&dir, "gpu-node-01");
        let attestation = dir.join("A.jws");
        attest_to(&node, None, NONCE, "fra-1", &attestation);
        let licence = dir.join("l.jws");
        let toml = workspace_root().join("examples/licence.toml");
        sign_licence(&pki, &toml, &licence);
        let iat = jws_payload(&std::fs::read_to_string(&attestation).unwrap())["iat"]
            .as_i64()
            .unwrap();
        Self {
            _tmp: tmp,
            dir,
            pki,
            attestation,
            licence,
            at: (iat + 60).to_string(),
        }
    }

    fn check_json(&self, licence: &Path, attestations: &[&Path]) -> (Option<i32>, Value) {
        let trust = self.pki.join("verifier/trust.toml");
        let mut args = vec![
            "check",
            "--trust",
            s(&trust),
            "--at",
            &self.at,
            "--licence",
            s(licence),
            "--json",
        ];
        args.extend(attestations.iter().map(|p| s(p)));
        let out = run("tppguard-verifier", &args);
        let json =
            serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", stderr(&out)));
        (out.status.code(), json)
    }
}

fn payload_part(token_file: &Path) -> String {
    let token = std::fs::read_to_string(token_file).unwrap();
    token.trim().split('.').nth(1).unwrap().to_owned()
}

#[test]
fn an_attestation_forged_under_a_certified_identity_point_key_is_rejected() {
    let f = Setup::new();
    let (issuer, ca_der) = pki_issuer(
        &f.pki,
        "operator/operator-ca.pem",
        "operator/operator-ca.key",
    );
    let leaf = identity_point_leaf(&issuer, ExtendedKeyUsagePurpose::ClientAuth);
    // The genuine node's claims, "signed" by nobody.
    let forged = f.dir.join("forged.jws");
    std::fs::write(
        &forged,
        forged_token(
            "tppguard-attestation+jwt",
            &[&leaf, &ca_der],
            &payload_part(&f.attestation),
        ),
    )
    .unwrap();
    let (code, json) = f.check_json(&f.licence, &[&f.attestation, &forged]);
    assert_eq!(code, Some(1), "{json:#}");
    let rejected = &json["attestations"]["rejected"];
    assert_eq!(rejected.as_array().unwrap().len(), 1, "{json:#}");
    assert_eq!(rejected[0]["file"], s(&forged));
    assert_eq!(rejected[0]["code"], "weak_public_key");
    let sentence = rejected[0]["sentence"].as_str().unwrap();
    assert!(sentence.contains("small order"), "{sentence}");
    assert_eq!(
        json["attestations"]["accepted"].as_array().unwrap().len(),
        1
    );
}

#[test]
fn a_licence_forged_under_a_certified_identity_point_key_is_rejected() {
    let f = Setup::new();
    let (issuer, ca_der) = pki_issuer(
        &f.pki,
        "licence-authority/licence-ca.pem",
        "licence-authority/licence-ca.key",
    );
    let leaf = identity_point_leaf(&issuer, ExtendedKeyUsagePurpose::CodeSigning);
    let forged = f.dir.join("forged-licence.jws");
    std::fs::write(
        &forged,
        forged_token(
            "tppguard-licence+jwt",
            &[&leaf, &ca_der],
            &payload_part(&f.licence),
        ),
    )
    .unwrap();
    let (code, json) = f.check_json(&forged, &[&f.attestation]);
    assert_ne!(code, Some(0), "{json:#}");
    let licence = &json["licences"][0];
    assert_eq!(licence["accepted"], false, "{json:#}");
    assert_eq!(licence["code"], "weak_public_key", "{json:#}");
}

/// DER TLV with a definite length.
fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let len = content.len();
    let mut out = vec![tag];
    match len {
        0..=0x7f => out.push(u8::try_from(len).unwrap()),
        0x80..=0xff => out.extend([0x81, u8::try_from(len).unwrap()]),
        _ => out.extend([
            0x82,
            u8::try_from(len >> 8).unwrap(),
            u8::try_from(len & 0xff).unwrap(),
        ]),
    }
    out.extend_from_slice(content);
    out
}

/// A PKCS#10 request for the identity-point key whose self-signature is the forged one (it
/// verifies, as it does for any message). Built with a DER writer in the test: no library
/// signs with a key nobody holds.
fn forged_csr(common_name: &str) -> String {
    let cn = tlv(
        0x30,
        &[
            tlv(0x06, &[0x55, 0x04, 0x03]),
            tlv(0x0c, common_name.as_bytes()),
        ]
        .concat(),
    );
    let name = tlv(0x30, &tlv(0x31, &cn));
    let info = tlv(
        0x30,
        &[tlv(0x02, &[0]), name, identity_spki(), vec![0xa0, 0x00]].concat(),
    );
    let algorithm = tlv(0x30, &tlv(0x06, &[0x2b, 0x65, 0x70]));
    let signature = tlv(0x03, &[&[0u8][..], &forged_signature()[..]].concat());
    let der = tlv(0x30, &[info, algorithm, signature].concat());
    let b64 = STANDARD.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN CERTIFICATE REQUEST-----\n{}\n-----END CERTIFICATE REQUEST-----\n",
        lines.join("\n")
    )
}

#[test]
fn issue_node_refuses_a_csr_for_the_identity_point_key() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = tmp.path().join("pki");
    ok("tppguard-verifier", &["pki", "init", "--dir", s(&pki)]);
    let csr = tmp.path().join("forged.csr");
    std::fs::write(&csr, forged_csr("forged-node")).unwrap();
    let out_chain = tmp.path().join("chain.pem");
    let out = run(
        "tppguard-verifier",
        &[
            "pki",
            "issue-node",
            "--dir",
            s(&pki.join("operator")),
            "--csr",
            s(&csr),
            "--out",
            s(&out_chain),
        ],
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.starts_with("tppguard-verifier: ")
            && err.contains("public key is refused (jws_weak_public_key)")
            && err.contains("small order"),
        "{err}"
    );
    assert!(err.contains("hint:") && err.contains("fresh key"), "{err}");
    assert!(!out_chain.exists(), "no certificate written");
    assert!(
        !pki.join("operator/issued.jsonl").exists(),
        "nothing recorded"
    );
}

/// Reads `key` with `openssl pkey` and pyca/cryptography; either missing is a failure, never
/// a skip (the interop install script puts both on the machine).
fn assert_standard_tools_read(key: &Path) {
    let out = Command::new("openssl")
        .args(["pkey", "-in", s(key), "-noout"])
        .output()
        .unwrap_or_else(|e| panic!("openssl must be installed for this test: {e}"));
    assert!(
        out.status.success(),
        "openssl pkey -in {} -noout: {}",
        key.display(),
        stderr(&out)
    );
    let script = "import sys\n\
                  from cryptography.hazmat.primitives.serialization import load_pem_private_key\n\
                  load_pem_private_key(open(sys.argv[1], 'rb').read(), password=None)\n";
    let out = Command::new("python3")
        .args(["-c", script, s(key)])
        .output()
        .unwrap_or_else(|e| panic!("python3 must be installed for this test: {e}"));
    assert!(
        out.status.success(),
        "pyca/cryptography load_pem_private_key({}) (pip install -r \
         tests/interop/requirements.txt): {}",
        key.display(),
        stderr(&out)
    );
}

#[test]
fn openssl_and_pyca_cryptography_read_every_key_tppguard_writes() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = tmp.path().join("pki");
    ok("tppguard-verifier", &["pki", "init", "--dir", s(&pki)]);
    let mut keys: Vec<PathBuf> = [
        "operator/operator-ca.key",
        "licence-authority/licence-ca.key",
        "licence-authority/licence-signer.key",
        "verifier/verifier-result.key",
    ]
    .iter()
    .map(|k| pki.join(k))
    .collect();
    for key_type in ["ed25519", "p256"] {
        let node = tmp.path().join(format!("node-{key_type}"));
        ok(
            "tppguard-agent",
            &["init", "--dir", s(&node), "--key-type", key_type],
        );
        keys.push(node.join("node.key"));
    }
    for key in &keys {
        assert_standard_tools_read(key);
    }
    // The Ed25519 keys are the 48-byte RFC 8410 v1 document.
    for key in [&keys[2], &keys[3], &keys[4]] {
        let pem = std::fs::read_to_string(key).unwrap();
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        assert_eq!(
            STANDARD.decode(body).unwrap().len(),
            48,
            "{}",
            key.display()
        );
    }
}
