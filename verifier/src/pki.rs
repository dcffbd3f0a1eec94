//! `tppguard-verifier pki`: a small built-in PKI for trying tppguard, and a chain checker.
//!
//! `pki init` makes a folder with two separate roots and the verifier's result key:
//!
//! | file | what |
//! |---|---|
//! | `operator-ca.pem`, `operator-ca.key` | operator root CA (ECDSA P-384, 10 years, CA:true pathlen 0, keyCertSign + cRLSign): issues node certificates |
//! | `licence-ca.pem`, `licence-ca.key` | licence-authority root CA (same profile), a separate trust domain |
//! | `licence-signer-chain.pem`, `licence-signer.key` | licence-signing leaf (Ed25519, 825 days, digitalSignature, EKU [`LICENCE_SIGNING_EKU`]) then the licence CA |
//! | `verifier-result.key`, `verifier-result.pub.pem` | the verifier's Ed25519 key for signing results (EAR) |
//! | `trust.toml` | the pinned roots, paths relative to it |
//!
//! Roots are P-384 because they live ten years and only sign certificates; leaves are Ed25519
//! (JWS `EdDSA`, the attestation default). Private keys are PKCS#8 PEM, created with mode 0600
//! (never chmod-ed after writing); the folder is created 0700.
//!
//! Operators with their own PKI (step-ca, Vault, an enterprise CA) need none of this: any
//! standard chain works, see [`crate::chain`].

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, CustomExtension,
    DistinguishedName, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose, SerialNumber,
};
use ring::rand::SecureRandom;
use serde::Serialize;

use crate::chain::{
    self, CLIENT_AUTH_EKU, LICENCE_SIGNING_EKU, NODE_ATTESTATION_EKU, TrustAnchors, VerifiedLeaf,
};
use crate::cli::{IssueNodeArgs, PkiArgs, PkiCommand, PkiInitArgs, VerifyChainArgs};
use crate::error::Error;

/// The operator CA's certificate.
pub const OPERATOR_CA_CERT: &str = "operator-ca.pem";
/// The operator CA's private key.
pub const OPERATOR_CA_KEY: &str = "operator-ca.key";
/// The licence-authority CA's certificate.
pub const LICENCE_CA_CERT: &str = "licence-ca.pem";
/// The licence-authority CA's private key.
pub const LICENCE_CA_KEY: &str = "licence-ca.key";
/// The licence signer's chain (leaf, then the licence CA).
pub const LICENCE_SIGNER_CHAIN: &str = "licence-signer-chain.pem";
/// The licence signer's private key.
pub const LICENCE_SIGNER_KEY: &str = "licence-signer.key";
/// The verifier's result-signing private key.
pub const RESULT_KEY: &str = "verifier-result.key";
/// The verifier's result-signing public key.
pub const RESULT_PUBLIC_KEY: &str = "verifier-result.pub.pem";
/// The trust file.
pub const TRUST_TOML: &str = "trust.toml";

/// The largest CSR file read.
pub const MAX_CSR_BYTES: u64 = 64 * 1024;
/// Root validity: ten years.
const ROOT_DAYS: i64 = 3650;
/// Licence-signer validity.
const LICENCE_SIGNER_DAYS: i64 = 825;
/// Certificates are back-dated this much against clock skew between nodes and the verifier.
const BACKDATE_SECS: i64 = 300;
const DAY_SECS: i64 = 86_400;

/// Runs `tppguard-verifier pki ...` at Unix time `now`.
pub fn run(args: &PkiArgs, out: &mut dyn Write, now: i64) -> Result<(), Error> {
    match &args.command {
        PkiCommand::Init(a) => init_command(a, out, now),
        PkiCommand::IssueNode(a) => issue_command(a, out, now),
        PkiCommand::VerifyChain(a) => verify_command(a, out, now),
    }
}

/// What `pki init` wrote.
#[derive(Debug, Serialize)]
pub struct InitReport {
    /// The folder.
    pub dir: PathBuf,
    /// Every file written.
    pub files: Vec<PathBuf>,
    /// The trust file.
    pub trust: PathBuf,
}

fn init_command(args: &PkiInitArgs, out: &mut dyn Write, now: i64) -> Result<(), Error> {
    let report = init(&args.dir, now)?;
    if args.json {
        serde_json::to_writer_pretty(&mut *out, &report)?;
        writeln!(out)?;
    } else {
        writeln!(out, "created the tppguard PKI in {}:", report.dir.display())?;
        for f in &report.files {
            writeln!(out, "  {}", f.display())?;
        }
        writeln!(
            out,
            "private keys (*.key) are mode 0600: keep them off shared disks.\n\
             next: on each node run `tppguard-agent init --dir NODE`, then\n  \
             tppguard-verifier pki issue-node --dir {} --csr NODE/node.csr --out NODE/node-chain.pem",
            report.dir.display()
        )?;
    }
    Ok(())
}

/// Creates the PKI folder `dir` at Unix time `now`; refuses if any of its files exists.
pub fn init(dir: &Path, now: i64) -> Result<InitReport, Error> {
    let names = [
        OPERATOR_CA_KEY,
        OPERATOR_CA_CERT,
        LICENCE_CA_KEY,
        LICENCE_CA_CERT,
        LICENCE_SIGNER_KEY,
        LICENCE_SIGNER_CHAIN,
        RESULT_KEY,
        RESULT_PUBLIC_KEY,
        TRUST_TOML,
    ];
    for name in names {
        let path = dir.join(name);
        if path.exists() {
            return Err(Error::Exists { path });
        }
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| Error::Io {
            path: dir.to_owned(),
            action: "create the folder",
            source,
        })?;

    let (_, op_key, op_cert) = make_root("tppguard operator CA", now)?;
    let (lic_params, lic_key, lic_cert) = make_root("tppguard licence authority CA", now)?;

    // The licence-signing leaf.
    let signer_key = generate(&rcgen::PKCS_ED25519, "licence signer key")?;
    let mut signer = leaf_params(now, now.saturating_add(LICENCE_SIGNER_DAYS * DAY_SECS))?;
    signer
        .distinguished_name
        .push(DnType::CommonName, "tppguard licence signer");
    signer.custom_extensions = vec![eku_extension(&[LICENCE_SIGNING_EKU])?];
    let lic_issuer = Issuer::new(lic_params, lic_key);
    let signer_cert = signer
        .signed_by(&signer_key, &lic_issuer)
        .map_err(|source| Error::Generate {
            what: "licence signer certificate",
            source,
        })?;

    let result_key = generate(&rcgen::PKCS_ED25519, "verifier result key")?;

    let mut files = Vec::new();
    let mut put = |name: &str, contents: &str, secret: bool| -> Result<(), Error> {
        let path = dir.join(name);
        write_new(&path, contents.as_bytes(), secret)?;
        files.push(path);
        Ok(())
    };
    put(OPERATOR_CA_KEY, &op_key.serialize_pem(), true)?;
    put(OPERATOR_CA_CERT, &op_cert.pem(), false)?;
    put(LICENCE_CA_KEY, &lic_issuer.key().serialize_pem(), true)?;
    put(LICENCE_CA_CERT, &lic_cert.pem(), false)?;
    put(LICENCE_SIGNER_KEY, &signer_key.serialize_pem(), true)?;
    put(
        LICENCE_SIGNER_CHAIN,
        &format!("{}{}", signer_cert.pem(), lic_cert.pem()),
        false,
    )?;
    put(RESULT_KEY, &result_key.serialize_pem(), true)?;
    put(RESULT_PUBLIC_KEY, &result_key.public_key_pem(), false)?;
    put(TRUST_TOML, &trust_toml(), false)?;
    Ok(InitReport {
        dir: dir.to_owned(),
        trust: dir.join(TRUST_TOML),
        files,
    })
}

fn trust_toml() -> String {
    format!(
        "# tppguard trust anchors, pinned per domain. Paths are relative to this file.\n\
         # crls (optional, DER or PEM) are checked for every certificate of a chain.\n\
         \n\
         [operator]\n\
         roots = [\"{OPERATOR_CA_CERT}\"]\n\
         crls = []\n\
         \n\
         [licence_authority]\n\
         roots = [\"{LICENCE_CA_CERT}\"]\n\
         crls = []\n\
         \n\
         [vendor]\n\
         roots = []\n"
    )
}

/// What `pki issue-node` issued.
#[derive(Debug, Serialize)]
pub struct IssueReport {
    /// The chain file written.
    pub out: PathBuf,
    /// The issued leaf, as the verifier sees it.
    pub leaf: VerifiedLeaf,
    /// Whether notAfter was cut back to the operator CA's own expiry.
    pub clipped_to_ca: bool,
}

fn issue_command(args: &IssueNodeArgs, out: &mut dyn Write, now: i64) -> Result<(), Error> {
    let report = issue_node(&args.dir, &args.csr, &args.out, args.days, now)?;
    if args.json {
        serde_json::to_writer_pretty(&mut *out, &report)?;
        writeln!(out)?;
    } else {
        let leaf = &report.leaf;
        writeln!(
            out,
            "issued {} ({} key, serial {}), valid until {} (Unix time){}\nwrote {} (leaf, then the operator CA)\n\
             next: the agent signs attestations with NODE/node.key and this chain.",
            leaf.subject(),
            leaf.key_algorithm(),
            leaf.serial(),
            leaf.not_after(),
            if report.clipped_to_ca {
                ", cut back to the operator CA's expiry"
            } else {
                ""
            },
            report.out.display()
        )?;
    }
    Ok(())
}

/// Issues a node certificate for the CSR at `csr_path` from the operator CA in `dir`, valid
/// `days` days from `now`, and writes the chain (leaf, then the operator CA) to `out`.
///
/// Only the CSR's subject, subject alternative names and public key are used; the profile
/// (CA:false, digitalSignature, EKU clientAuth + tppguard node attestation) is the CA's.
pub fn issue_node(
    dir: &Path,
    csr_path: &Path,
    out: &Path,
    days: u32,
    now: i64,
) -> Result<IssueReport, Error> {
    let csr_bytes = read_limited(csr_path, MAX_CSR_BYTES)?;
    let csr_text = String::from_utf8(csr_bytes).map_err(|_| Error::InvalidCsr {
        path: csr_path.to_owned(),
        source: rcgen::Error::CouldNotParseCertificationRequest,
    })?;
    // Parses and checks the CSR's self-signature.
    let csr = CertificateSigningRequestParams::from_pem(&csr_text).map_err(|source| {
        Error::InvalidCsr {
            path: csr_path.to_owned(),
            source,
        }
    })?;

    let ca_key_path = dir.join(OPERATOR_CA_KEY);
    let ca_cert_path = dir.join(OPERATOR_CA_CERT);
    let ca_key_pem = read_text(&ca_key_path, chain::MAX_PEM_FILE_BYTES)?;
    let ca_key = KeyPair::from_pem(&ca_key_pem).map_err(|source| Error::CaUnusable {
        path: ca_key_path.clone(),
        source,
    })?;
    let ca_pem = read_text(&ca_cert_path, chain::MAX_PEM_FILE_BYTES)?;
    let ca_der = chain::certs_from_pem(ca_pem.as_bytes())
        .map_err(|reason| Error::BadCertFile {
            path: ca_cert_path.clone(),
            reason,
        })?
        .into_iter()
        .next()
        .ok_or_else(|| Error::BadCertFile {
            path: ca_cert_path.clone(),
            reason: "holds no certificate".to_owned(),
        })?;
    let ca_not_after = match x509_parser::parse_x509_certificate(&ca_der) {
        Ok((_, c)) => c.validity().not_after.timestamp(),
        Err(_) => {
            return Err(Error::BadCertFile {
                path: ca_cert_path,
                reason: "not a valid X.509 certificate".to_owned(),
            });
        }
    };
    let issuer = Issuer::from_ca_cert_der(&ca_der, ca_key).map_err(|source| Error::CaUnusable {
        path: ca_cert_path.clone(),
        source,
    })?;

    let wanted = now.saturating_add(i64::from(days).saturating_mul(DAY_SECS));
    let clipped_to_ca = wanted > ca_not_after;
    let mut params = leaf_params(now, wanted.min(ca_not_after))?;
    params.distinguished_name = csr.params.distinguished_name.clone();
    params.subject_alt_names = csr.params.subject_alt_names.clone();
    params.custom_extensions = vec![eku_extension(&[CLIENT_AUTH_EKU, NODE_ATTESTATION_EKU])?];
    let leaf = CertificateSigningRequestParams {
        params,
        public_key: csr.public_key,
    }
    .signed_by(&issuer)
    .map_err(|source| Error::Generate {
        what: "node certificate",
        source,
    })?;

    // Check what we issue the way the verifier will, before writing it.
    let chain_der = vec![leaf.der().to_vec(), ca_der.to_vec()];
    let anchors =
        TrustAnchors::from_der_roots(std::slice::from_ref(&ca_der), &[]).map_err(|source| {
            Error::ChainRejected {
                path: ca_cert_path.clone(),
                source,
            }
        })?;
    let verified = chain::verify_node_chain(&chain_der, &anchors, now, &[]).map_err(|source| {
        Error::ChainRejected {
            path: out.to_owned(),
            source,
        }
    })?;
    write_public(
        out,
        format!("{}{}", leaf.pem(), ca_pem_block(&ca_der)).as_bytes(),
    )?;
    Ok(IssueReport {
        out: out.to_owned(),
        leaf: verified.leaf().clone(),
        clipped_to_ca,
    })
}

fn ca_pem_block(der: &[u8]) -> String {
    let b64 = base64_lines(der);
    format!("-----BEGIN CERTIFICATE-----\n{b64}-----END CERTIFICATE-----\n")
}

fn base64_lines(der: &[u8]) -> String {
    use base64::Engine;
    let text = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::with_capacity(text.len() + text.len() / 64 + 1);
    let mut rest = text.as_str();
    while !rest.is_empty() {
        let (line, tail) = rest.split_at(rest.len().min(64));
        out.push_str(line);
        out.push('\n');
        rest = tail;
    }
    out
}

/// The JSON of `pki verify-chain`.
#[derive(Debug, Serialize)]
struct VerifyReport<'a> {
    chain: &'a Path,
    role: &'static str,
    valid: bool,
    at: i64,
    leaf: &'a VerifiedLeaf,
}

fn verify_command(args: &VerifyChainArgs, out: &mut dyn Write, now: i64) -> Result<(), Error> {
    let trust = TrustAnchors::from_trust_toml(&args.trust)?;
    let pem = chain::read_bounded(&args.chain, chain::MAX_PEM_FILE_BYTES)?;
    let certs = chain::certs_from_pem(&pem).map_err(|reason| Error::BadCertFile {
        path: args.chain.clone(),
        reason,
    })?;
    let chain_der: Vec<Vec<u8>> = certs.iter().map(|c| c.to_vec()).collect();
    let at = args.at.unwrap_or(now);
    let rejected = |source| Error::ChainRejected {
        path: args.chain.clone(),
        source,
    };
    let (role, leaf) = if args.licence_signer {
        let v = chain::verify_licence_signer_chain(
            &chain_der,
            &trust,
            at,
            trust.licence_authority_crls(),
        )
        .map_err(rejected)?;
        ("licence_signer", v.leaf().clone())
    } else {
        let v = chain::verify_node_chain(&chain_der, &trust, at, trust.operator_crls())
            .map_err(rejected)?;
        ("node", v.leaf().clone())
    };
    if args.json {
        let report = VerifyReport {
            chain: &args.chain,
            role,
            valid: true,
            at,
            leaf: &leaf,
        };
        serde_json::to_writer_pretty(&mut *out, &report)?;
        writeln!(out)?;
    } else {
        writeln!(
            out,
            "{}: valid {} chain ({} certificates) to a pinned {} root\n  subject    {}\n  key        {}\n  serial     {}\n  not after  {} (Unix time)",
            args.chain.display(),
            role.replace('_', " "),
            leaf.chain_len(),
            if args.licence_signer {
                "licence-authority"
            } else {
                "operator"
            },
            leaf.subject(),
            leaf.key_algorithm(),
            leaf.serial(),
            leaf.not_after(),
        )?;
    }
    Ok(())
}

/// A self-signed root: CA:true pathlen 0, keyCertSign + cRLSign, ECDSA P-384.
fn make_root(
    name: &str,
    now: i64,
) -> Result<(CertificateParams, KeyPair, rcgen::Certificate), Error> {
    let key = generate(&rcgen::PKCS_ECDSA_P384_SHA384, "CA key")?;
    let mut params = CertificateParams::default();
    params.not_before = asn1_time(now.saturating_sub(BACKDATE_SECS))?.to_datetime();
    params.not_after = asn1_time(now.saturating_add(ROOT_DAYS * DAY_SECS))?.to_datetime();
    params.serial_number = Some(random_serial()?);
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let cert = params.self_signed(&key).map_err(|source| Error::Generate {
        what: "CA certificate",
        source,
    })?;
    Ok((params, key, cert))
}

/// The leaf profile: CA:false, digitalSignature, a random serial, back-dated a little.
fn leaf_params(now: i64, not_after: i64) -> Result<CertificateParams, Error> {
    let mut params = CertificateParams::default();
    params.not_before = asn1_time(now.saturating_sub(BACKDATE_SECS))?.to_datetime();
    params.not_after = asn1_time(not_after)?.to_datetime();
    params.serial_number = Some(random_serial()?);
    params.distinguished_name = DistinguishedName::new();
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    Ok(params)
}

/// An extendedKeyUsage extension (non-critical) listing the given OIDs (DER value bytes).
/// rcgen's own EKU type takes `u64` arcs, too small for UUID OIDs.
fn eku_extension(oids: &[&[u8]]) -> Result<CustomExtension, Error> {
    let mut body = Vec::new();
    for oid in oids {
        body.push(0x06);
        body.push(short_len(oid.len())?);
        body.extend_from_slice(oid);
    }
    let mut content = vec![0x30, short_len(body.len())?];
    content.extend_from_slice(&body);
    Ok(CustomExtension::from_oid_content(&[2, 5, 29, 37], content))
}

fn short_len(len: usize) -> Result<u8, Error> {
    u8::try_from(len)
        .ok()
        .filter(|l| *l < 0x80)
        .ok_or(Error::Generate {
            what: "extended key usage extension",
            source: rcgen::Error::CouldNotParseCertificate,
        })
}

fn random_serial() -> Result<SerialNumber, Error> {
    let mut bytes = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| Error::Generate {
            what: "serial number",
            source: rcgen::Error::RingUnspecified,
        })?;
    // Positive, and not starting with a zero byte.
    bytes[0] = (bytes[0] & 0x7f) | 0x01;
    Ok(SerialNumber::from_slice(&bytes))
}

fn generate(alg: &'static rcgen::SignatureAlgorithm, what: &'static str) -> Result<KeyPair, Error> {
    KeyPair::generate_for(alg).map_err(|source| Error::Generate { what, source })
}

/// Unix seconds as a certificate time (through x509-parser, which carries the `time` crate).
fn asn1_time(unix: i64) -> Result<x509_parser::time::ASN1Time, Error> {
    x509_parser::time::ASN1Time::from_timestamp(unix).map_err(|_| Error::Clock { unix })
}

fn read_limited(path: &Path, max: u64) -> Result<Vec<u8>, Error> {
    Ok(chain::read_bounded(path, max)?)
}

fn read_text(path: &Path, max: u64) -> Result<String, Error> {
    String::from_utf8(read_limited(path, max)?).map_err(|_| Error::BadCertFile {
        path: path.to_owned(),
        reason: "not PEM text".to_owned(),
    })
}

/// Creates `path`, which must not exist; a secret is created with mode 0600 from the start.
fn write_new(path: &Path, bytes: &[u8], secret: bool) -> Result<(), Error> {
    let io = |source| Error::Io {
        path: path.to_owned(),
        action: "create",
        source,
    };
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(if secret { 0o600 } else { 0o644 })
        .open(path)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                Error::Exists {
                    path: path.to_owned(),
                }
            } else {
                io(e)
            }
        })?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(io)
}

/// Writes a public file (certificate, token, EAR; mode 0644 when created), replacing any
/// earlier version, and syncs it: the one writer of the verifier's public outputs.
pub(crate) fn write_public(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let io = |source| Error::Io {
        path: path.to_owned(),
        action: "write",
        source,
    };
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .open(path)
        .map_err(io)?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(io)
}
