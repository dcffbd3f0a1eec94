//! `tppguard-verifier pki`: a small built-in PKI for trying tppguard, and a chain checker.
//!
//! Four parties hold keys, each in its own folder (docs/pki.md, "Who keeps what"):
//!
//! | party, command | files |
//! |---|---|
//! | operator, `pki init-operator` | `operator-ca.pem`, `operator-ca.key`: operator root CA (ECDSA P-384, 10 years, CA:true pathlen 0, keyCertSign + cRLSign), issues node certificates (`pki issue-node`, which keeps `issued.jsonl` here) |
//! | licence authority, `pki init-licence-authority` | `licence-ca.pem`, `licence-ca.key`: licence-authority root CA (same profile), a separate trust domain; `licence-signer-chain.pem`, `licence-signer.key`: licence-signing leaf (Ed25519, 825 days, digitalSignature, EKU [`LICENCE_SIGNING_EKU`]) then the licence CA |
//! | vendor, `pki init-vendor` | `vendor-ca.pem`, `vendor-ca.key`: the GPU vendor's root CA (same profile), a separate trust domain; `shipment-signer-chain.pem`, `shipment-signer.key`: shipment-signing leaf (Ed25519, 825 days, digitalSignature, EKU [`SHIPMENT_SIGNING_EKU`]) then the vendor CA |
//! | verifier, `pki init-verifier` | copies of `operator-ca.pem` and `licence-ca.pem` (public only), and of `vendor-ca.pem` when given (pinned under `[vendor] roots`: shipment records only); `verifier-result.key`, `verifier-result.pub.pem`: the verifier's Ed25519 key for signing results (EAR); `nvidia-device-identity-ca.pem`: the NVIDIA Device Identity CA shipped in the binary, pinned under `[vendor] device_roots` (GPU evidence only); `trust.toml`: the pinned roots, paths relative to it |
//!
//! `pki init --dir D` is the one-machine demo: the four folders as `D/operator`,
//! `D/licence-authority`, `D/vendor` and `D/verifier`, never one folder holding every key.
//!
//! Roots are P-384 because they live ten years and only sign certificates; leaves are Ed25519
//! (JWS `EdDSA`, the attestation default). Private keys are PKCS#8 v1 PEM (RFC 5208; Ed25519
//! keys the RFC 8410 document OpenSSL 3 and pyca/cryptography read), created with mode 0600
//! (never chmod-ed after writing); each folder is created 0700.
//!
//! `pki issue-node` keeps the issuance record `issued.jsonl` in the folder (0644, one JSON
//! object a line, rewritten atomically): one key per subject unless `--replace` rotates it,
//! and one subject per key. A node is its key (`NodeId`, the SHA-256 of its
//! SubjectPublicKeyInfo); the subject is for people, so it must be printable.
//!
//! Operators with their own PKI (step-ca, Vault, an enterprise CA) need none of this: any
//! standard chain works, see [`crate::chain`].

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, CustomExtension,
    DistinguishedName, DnType, DnValue, IsCa, Issuer, KeyPair, KeyUsagePurpose, PublicKeyData,
    SanType, SerialNumber,
};
use ring::rand::SecureRandom;
use rustls_pki_types::PrivatePkcs8KeyDer;
use serde::{Deserialize, Serialize};
use tppguard_proto::identity::NodeId;
use tppguard_proto::jws::{Alg, JwsError, SigningKey, VerifyingKey};
use tppguard_proto::site::SiteId;
use tppguard_proto::text::{Escaped, escape};

use crate::chain::{
    self, CLIENT_AUTH_EKU, LICENCE_SIGNING_EKU, NODE_ATTESTATION_EKU, SHIPMENT_SIGNING_EKU,
    TrustAnchors, VerifiedLeaf,
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
/// The vendor CA's certificate (shipment signers' root, `[vendor] roots`).
pub const VENDOR_CA_CERT: &str = "vendor-ca.pem";
/// The vendor CA's private key.
pub const VENDOR_CA_KEY: &str = "vendor-ca.key";
/// The shipment signer's chain (leaf, then the vendor CA).
pub const SHIPMENT_SIGNER_CHAIN: &str = "shipment-signer-chain.pem";
/// The shipment signer's private key.
pub const SHIPMENT_SIGNER_KEY: &str = "shipment-signer.key";
/// The verifier's result-signing private key.
pub const RESULT_KEY: &str = "verifier-result.key";
/// The verifier's result-signing public key.
pub const RESULT_PUBLIC_KEY: &str = "verifier-result.pub.pem";
/// The trust file.
pub const TRUST_TOML: &str = "trust.toml";
/// The NVIDIA Device Identity CA, copied into the verifier's folder by `pki init-verifier`
/// and pinned under `[vendor] device_roots` (GPU evidence only).
pub const NVIDIA_DEVICE_ROOT: &str = "nvidia-device-identity-ca.pem";
/// `pki init`'s folder for the operator's material.
pub const OPERATOR_DIR: &str = "operator";
/// `pki init`'s folder for the licence authority's material.
pub const LICENCE_AUTHORITY_DIR: &str = "licence-authority";
/// `pki init`'s folder for the GPU vendor's material.
pub const VENDOR_DIR: &str = "vendor";
/// `pki init`'s folder for the verifier's material.
pub const VERIFIER_DIR: &str = "verifier";
/// The issuance record: one JSON object a line, one per certificate `issue-node` issued.
pub const ISSUED_RECORD: &str = "issued.jsonl";
/// The largest issuance record read (about 250 bytes a certificate: 200,000 certificates).
pub const MAX_RECORD_BYTES: u64 = 48 * 1024 * 1024;
/// The most characters of one subject attribute (X.520's upper bound for a common name).
pub const MAX_SUBJECT_VALUE_CHARS: usize = 64;

/// The largest CSR file read.
pub const MAX_CSR_BYTES: u64 = 64 * 1024;
/// Root validity: ten years.
const ROOT_DAYS: i64 = 3650;
/// Licence-signer and shipment-signer validity.
const SIGNER_DAYS: i64 = 825;
/// Certificates are back-dated this much against clock skew between nodes and the verifier.
const BACKDATE_SECS: i64 = 300;
const DAY_SECS: i64 = 86_400;

/// Runs `tppguard-verifier pki ...` at Unix time `now`.
pub fn run(args: &PkiArgs, out: &mut dyn Write, now: i64) -> Result<(), Error> {
    match &args.command {
        PkiCommand::Init(a) => init_command(a, out, now),
        PkiCommand::InitOperator(a) => party_command(&init_operator(&a.dir, now)?, a.json, out),
        PkiCommand::InitLicenceAuthority(a) => {
            party_command(&init_licence_authority(&a.dir, now)?, a.json, out)
        }
        PkiCommand::InitVendor(a) => party_command(&init_vendor(&a.dir, now)?, a.json, out),
        PkiCommand::InitVerifier(a) => party_command(
            &init_verifier(
                &a.dir,
                &a.operator_ca,
                &a.licence_ca,
                a.vendor_ca.as_deref(),
            )?,
            a.json,
            out,
        ),
        PkiCommand::IssueNode(a) => issue_command(a, out, now),
        PkiCommand::VerifyChain(a) => verify_command(a, out, now),
    }
}

/// One party's folder, as `pki init-*` wrote it.
#[derive(Debug, Serialize)]
pub struct PartyReport {
    /// Whose: `operator`, `licence-authority`, `vendor` or `verifier`.
    pub party: &'static str,
    /// The folder.
    pub dir: PathBuf,
    /// Every file written.
    pub files: Vec<PathBuf>,
    /// What the party does with it, and what it hands to whom.
    pub role: &'static str,
}

/// What `pki init` wrote: the four parties' folders.
#[derive(Debug, Serialize)]
pub struct InitReport {
    /// The folder holding the four.
    pub dir: PathBuf,
    /// The operator's folder (`pki issue-node --dir`).
    pub operator: PathBuf,
    /// The licence authority's folder (`licence sign --dir`).
    pub licence_authority: PathBuf,
    /// The GPU vendor's folder (`shipment sign --dir`).
    pub vendor: PathBuf,
    /// The verifier's folder.
    pub verifier: PathBuf,
    /// The trust file, in the verifier's folder.
    pub trust: PathBuf,
    /// Each party's folder and files.
    pub parties: Vec<PartyReport>,
}

fn party_command(report: &PartyReport, json: bool, out: &mut dyn Write) -> Result<(), Error> {
    if json {
        serde_json::to_writer_pretty(&mut *out, report)?;
        writeln!(out)?;
    } else {
        write_party(report, out)?;
    }
    Ok(())
}

fn write_party(report: &PartyReport, out: &mut dyn Write) -> Result<(), Error> {
    writeln!(
        out,
        "{} ({}): {}",
        Escaped(&report.dir.display().to_string()),
        report.party,
        report.role
    )?;
    for f in &report.files {
        writeln!(out, "  {}", Escaped(&f.display().to_string()))?;
    }
    Ok(())
}

fn init_command(args: &PkiInitArgs, out: &mut dyn Write, now: i64) -> Result<(), Error> {
    let report = init(&args.dir, now)?;
    if args.json {
        serde_json::to_writer_pretty(&mut *out, &report)?;
        writeln!(out)?;
        return Ok(());
    }
    writeln!(
        out,
        "created the tppguard PKI demo in {}, one folder per party (in production each \
         party makes its own, on its own machine: docs/pki.md):",
        Escaped(&report.dir.display().to_string())
    )?;
    for party in &report.parties {
        write_party(party, out)?;
    }
    writeln!(
        out,
        "private keys (*.key) are mode 0600, folders 0700: keep them off shared disks.\n\
         next: on each node run `tppguard-agent init --dir NODE`, then\n  \
         tppguard-verifier pki issue-node --dir {} --csr NODE/node.csr --out NODE/node-chain.pem",
        Escaped(&report.operator.display().to_string())
    )?;
    Ok(())
}

/// Refuses if any of `names` exists in `dir`, then creates `dir` (mode 0700).
fn new_folder(dir: &Path, names: &[&str]) -> Result<(), Error> {
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
        })
}

/// Writes each `(name, contents, secret)` as a new file in `dir`; the paths written.
fn put_all(dir: &Path, files: &[(&str, &str, bool)]) -> Result<Vec<PathBuf>, Error> {
    let mut written = Vec::with_capacity(files.len());
    for (name, contents, secret) in files {
        let path = dir.join(name);
        write_new(&path, contents.as_bytes(), *secret)?;
        written.push(path);
    }
    Ok(written)
}

/// The operator's folder `dir` at Unix time `now`: the operator CA. Refuses if any of its
/// files exists.
pub fn init_operator(dir: &Path, now: i64) -> Result<PartyReport, Error> {
    new_folder(dir, &[OPERATOR_CA_KEY, OPERATOR_CA_CERT])?;
    let (_, key, cert) = make_root("tppguard operator CA", now)?;
    let files = put_all(
        dir,
        &[
            (OPERATOR_CA_KEY, &key.serialize_pem(), true),
            (OPERATOR_CA_CERT, &cert.pem(), false),
        ],
    )?;
    Ok(PartyReport {
        party: OPERATOR_DIR,
        dir: dir.to_owned(),
        files,
        role: "the operator CA: issues node certificates (pki issue-node --dir here); \
               hand operator-ca.pem to the verifier",
    })
}

/// The licence authority's folder `dir` at Unix time `now`: the licence CA and the
/// licence-signing key and chain. Refuses if any of its files exists.
pub fn init_licence_authority(dir: &Path, now: i64) -> Result<PartyReport, Error> {
    let files = init_signing_party(dir, now, &LICENCE_SIGNING_PARTY)?;
    Ok(PartyReport {
        party: LICENCE_AUTHORITY_DIR,
        dir: dir.to_owned(),
        files,
        role: "the licence authority (vendor, regulator or exporter): signs licences \
               (licence sign --dir here); hand licence-ca.pem to the verifier",
    })
}

/// The GPU vendor's folder `dir` at Unix time `now`: the vendor CA and the shipment-signing
/// key and chain. Refuses if any of its files exists.
pub fn init_vendor(dir: &Path, now: i64) -> Result<PartyReport, Error> {
    let files = init_signing_party(dir, now, &SHIPMENT_SIGNING_PARTY)?;
    Ok(PartyReport {
        party: VENDOR_DIR,
        dir: dir.to_owned(),
        files,
        role: "the GPU vendor: signs shipment records (shipment sign --dir here); hand \
               vendor-ca.pem to the verifier (pki init-verifier --vendor-ca)",
    })
}

/// A party that signs one kind of record: its CA and one signer under it.
struct SigningParty {
    ca_key: &'static str,
    ca_cert: &'static str,
    signer_key: &'static str,
    signer_chain: &'static str,
    ca_name: &'static str,
    signer_name: &'static str,
    eku: &'static [u8],
    what: &'static str,
}

const LICENCE_SIGNING_PARTY: SigningParty = SigningParty {
    ca_key: LICENCE_CA_KEY,
    ca_cert: LICENCE_CA_CERT,
    signer_key: LICENCE_SIGNER_KEY,
    signer_chain: LICENCE_SIGNER_CHAIN,
    ca_name: "tppguard licence authority CA",
    signer_name: "tppguard licence signer",
    eku: LICENCE_SIGNING_EKU,
    what: "licence signer certificate",
};

const SHIPMENT_SIGNING_PARTY: SigningParty = SigningParty {
    ca_key: VENDOR_CA_KEY,
    ca_cert: VENDOR_CA_CERT,
    signer_key: SHIPMENT_SIGNER_KEY,
    signer_chain: SHIPMENT_SIGNER_CHAIN,
    ca_name: "tppguard vendor CA",
    signer_name: "tppguard shipment signer",
    eku: SHIPMENT_SIGNING_EKU,
    what: "shipment signer certificate",
};

impl SigningParty {
    fn names(&self) -> [&'static str; 4] {
        [
            self.ca_key,
            self.ca_cert,
            self.signer_key,
            self.signer_chain,
        ]
    }
}

/// Writes `party`'s CA (P-384 root) and signer (Ed25519 leaf with the party's EKU, then the
/// CA) into `dir`; the paths written.
fn init_signing_party(dir: &Path, now: i64, party: &SigningParty) -> Result<Vec<PathBuf>, Error> {
    new_folder(dir, &party.names())?;
    let (ca_params, ca_key, ca_cert) = make_root(party.ca_name, now)?;
    let signer_key = ed25519_key("signer key")?;
    let mut signer = leaf_params(now, now.saturating_add(SIGNER_DAYS * DAY_SECS))?;
    signer
        .distinguished_name
        .push(DnType::CommonName, party.signer_name);
    signer.custom_extensions = vec![eku_extension(&[party.eku])?];
    let ca_issuer = Issuer::new(ca_params, ca_key);
    let signer_cert = signer
        .signed_by(&signer_key, &ca_issuer)
        .map_err(|source| Error::Generate {
            what: party.what,
            source,
        })?;
    put_all(
        dir,
        &[
            (party.ca_key, &ca_issuer.key().serialize_pem(), true),
            (party.ca_cert, &ca_cert.pem(), false),
            (party.signer_key, &signer_key.serialize_pem(), true),
            (
                party.signer_chain,
                &format!("{}{}", signer_cert.pem(), ca_cert.pem()),
                false,
            ),
        ],
    )
}

/// The verifier's folder `dir`: copies of the CA certificates in `operator_ca`,
/// `licence_ca` and, when given, `vendor_ca` (each checked: PEM, every block an X.509 CA
/// certificate usable as a trust anchor), the result-signing key pair and `trust.toml` naming
/// the copies (the vendor's under `[vendor] roots`). Refuses if any of its files exists;
/// nothing is written when a CA file is refused.
pub fn init_verifier(
    dir: &Path,
    operator_ca: &Path,
    licence_ca: &Path,
    vendor_ca: Option<&Path>,
) -> Result<PartyReport, Error> {
    let operator_pem = read_ca_certificate(operator_ca)?;
    let licence_pem = read_ca_certificate(licence_ca)?;
    let vendor_pem = vendor_ca.map(read_ca_certificate).transpose()?;
    new_folder(dir, &VERIFIER_FILES)?;
    let result_key = ed25519_key("verifier result key")?;
    let nvidia_root =
        String::from_utf8_lossy(crate::gpu_evidence::cli::NVIDIA_DEVICE_IDENTITY_CA_PEM)
            .into_owned();
    let mut files = put_all(
        dir,
        &[
            (OPERATOR_CA_CERT, &operator_pem, false),
            (LICENCE_CA_CERT, &licence_pem, false),
            (RESULT_KEY, &result_key.serialize_pem(), true),
            (RESULT_PUBLIC_KEY, &result_key.public_key_pem(), false),
            (NVIDIA_DEVICE_ROOT, &nvidia_root, false),
            (TRUST_TOML, &trust_toml(vendor_pem.is_some()), false),
        ],
    )?;
    if let Some(pem) = &vendor_pem {
        files.extend(put_all(dir, &[(VENDOR_CA_CERT, pem, false)])?);
    }
    Ok(PartyReport {
        party: VERIFIER_DIR,
        dir: dir.to_owned(),
        files,
        role: "the verifier: trust.toml (public CA certificates only) and the result key \
               that signs EARs (serve finds it beside trust.toml); hand \
               verifier-result.pub.pem to the agents (verifier_result_key)",
    })
}

/// The CA certificates in the PEM file `path`, re-encoded: refuses a missing file, one that
/// is not PEM certificates, and a certificate that is not a CA (CA:true) or cannot be a
/// trust anchor.
fn read_ca_certificate(path: &Path) -> Result<String, Error> {
    let bad = |reason: &str| -> Error {
        PkiError::BadCaFile {
            path: path.to_owned(),
            reason: reason.to_owned(),
        }
        .into()
    };
    let pem = read_text(path, chain::MAX_PEM_FILE_BYTES).map_err(|e| match e {
        Error::BadCertFile { reason, .. } => bad(&reason),
        other => other,
    })?;
    let ders = chain::certs_from_pem(pem.as_bytes()).map_err(|reason| bad(&reason))?;
    if ders.is_empty() {
        return Err(bad("holds no certificate"));
    }
    for der in &ders {
        let cert = match x509_parser::parse_x509_certificate(der) {
            Ok((_, cert)) => cert,
            Err(_) => return Err(bad("holds a block that is not a valid X.509 certificate")),
        };
        if !cert.is_ca() {
            return Err(bad(
                "holds a certificate that is not a CA (basicConstraints CA:true); give the \
                 CA's own certificate (operator-ca.pem, licence-ca.pem or vendor-ca.pem), not \
                 a leaf",
            ));
        }
    }
    TrustAnchors::from_der_roots(&ders, &[]).map_err(|source| Error::ChainRejected {
        path: path.to_owned(),
        source,
    })?;
    Ok(ders.iter().map(|der| ca_pem_block(der)).collect())
}

/// The files `init_verifier` writes (`VENDOR_CA_CERT` only when given a vendor CA).
const VERIFIER_FILES: [&str; 7] = [
    OPERATOR_CA_CERT,
    LICENCE_CA_CERT,
    VENDOR_CA_CERT,
    RESULT_KEY,
    RESULT_PUBLIC_KEY,
    NVIDIA_DEVICE_ROOT,
    TRUST_TOML,
];

/// The one-machine demo at Unix time `now`: [`init_operator`], [`init_licence_authority`],
/// [`init_vendor`] and [`init_verifier`] into `dir/operator`, `dir/licence-authority`,
/// `dir/vendor` and `dir/verifier`. Refuses if any of their files exists.
pub fn init(dir: &Path, now: i64) -> Result<InitReport, Error> {
    let operator_dir = dir.join(OPERATOR_DIR);
    let licence_dir = dir.join(LICENCE_AUTHORITY_DIR);
    let vendor_dir = dir.join(VENDOR_DIR);
    let verifier_dir = dir.join(VERIFIER_DIR);
    for (folder, names) in [
        (&operator_dir, &[OPERATOR_CA_KEY, OPERATOR_CA_CERT][..]),
        (&licence_dir, &LICENCE_SIGNING_PARTY.names()[..]),
        (&vendor_dir, &SHIPMENT_SIGNING_PARTY.names()[..]),
        (&verifier_dir, &VERIFIER_FILES[..]),
    ] {
        for name in names {
            let path = folder.join(name);
            if path.exists() {
                return Err(Error::Exists { path });
            }
        }
    }
    new_folder(dir, &[])?;
    let operator = init_operator(&operator_dir, now)?;
    let licence = init_licence_authority(&licence_dir, now)?;
    let vendor = init_vendor(&vendor_dir, now)?;
    let verifier = init_verifier(
        &verifier_dir,
        &operator_dir.join(OPERATOR_CA_CERT),
        &licence_dir.join(LICENCE_CA_CERT),
        Some(&vendor_dir.join(VENDOR_CA_CERT)),
    )?;
    Ok(InitReport {
        dir: dir.to_owned(),
        trust: verifier_dir.join(TRUST_TOML),
        operator: operator_dir,
        licence_authority: licence_dir,
        vendor: vendor_dir,
        verifier: verifier_dir,
        parties: vec![operator, licence, vendor, verifier],
    })
}

/// `trust.toml` naming the copies; `[vendor] roots` names vendor-ca.pem when `vendor`.
fn trust_toml(vendor: bool) -> String {
    let vendor_roots = if vendor {
        format!("[\"{VENDOR_CA_CERT}\"]")
    } else {
        "[]".to_owned()
    };
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
         # roots: the GPU vendor's CA, for shipment records only (docs/pki.md).\n\
         [vendor]\n\
         roots = {vendor_roots}\n\
         crls = []\n\
         # GPU device-identity roots (NVIDIA's, shipped with tppguard): they verify GPU evidence\n\
         # only, never a signer of anything else (docs/gpu-evidence.md).\n\
         device_roots = [\"{NVIDIA_DEVICE_ROOT}\"]\n\
         # reference_values = \"rims\"  # optional: a folder of NVIDIA RIMs (XML signatures not verified)\n"
    )
}

/// What `pki issue-node` issued.
#[derive(Debug, Serialize)]
pub struct IssueReport {
    /// The chain file written.
    pub out: PathBuf,
    /// The node id: SHA-256 of the leaf's SubjectPublicKeyInfo, the identity the verifier
    /// keeps the node under.
    pub node_id: NodeId,
    /// The certified site (`--site`), if any.
    pub site: Option<SiteId>,
    /// What the issuance record says this was: a first issue, a renewal or a rotation.
    pub action: IssueAction,
    /// The key this subject had before a rotation (`--replace`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replaced_node_id: Option<NodeId>,
    /// The issuance record.
    pub record: PathBuf,
    /// The issued leaf, as the verifier sees it.
    pub leaf: VerifiedLeaf,
    /// Whether notAfter was cut back to the operator CA's own expiry.
    pub clipped_to_ca: bool,
}

/// How `pki issue-node` may issue, beyond the CSR: the flags.
#[derive(Debug, Clone, Default)]
pub struct IssueOptions {
    /// Days of validity from now.
    pub days: u32,
    /// The site certified as a SAN URI.
    pub site: Option<SiteId>,
    /// Rotate a subject recorded under another key.
    pub replace: bool,
}

fn issue_command(args: &IssueNodeArgs, out: &mut dyn Write, now: i64) -> Result<(), Error> {
    let options = IssueOptions {
        days: args.days,
        site: args.site.clone(),
        replace: args.replace,
    };
    let report = issue_node_with(&args.dir, &args.csr, &args.out, &options, now)?;
    if args.json {
        serde_json::to_writer_pretty(&mut *out, &report)?;
        writeln!(out)?;
        return Ok(());
    }
    let leaf = &report.leaf;
    writeln!(
        out,
        "issued {} ({} key, serial {}), valid until {} (Unix time){}",
        Escaped(leaf.subject()),
        leaf.key_algorithm(),
        leaf.serial(),
        leaf.not_after(),
        if report.clipped_to_ca {
            ", cut back to the operator CA's expiry"
        } else {
            ""
        },
    )?;
    writeln!(out, "  node id  {}", report.node_id)?;
    match &report.site {
        Some(site) => writeln!(out, "  site     {site} (certified)")?,
        None => writeln!(
            out,
            "  site     none certified: the verifier flags the node (give --site ID)"
        )?,
    }
    let action = match (&report.action, &report.replaced_node_id) {
        (IssueAction::Replace, Some(old)) => format!("rotation, replacing key {}", old.short()),
        (action, _) => action.words().to_owned(),
    };
    writeln!(
        out,
        "  record   {} ({action})\nwrote {} (leaf, then the operator CA)\n\
         next: the agent signs attestations with NODE/node.key and this chain.",
        Escaped(&report.record.display().to_string()),
        Escaped(&report.out.display().to_string()),
    )?;
    Ok(())
}

/// Issues a node certificate as [`issue_node_with`] does, without a site or `--replace`.
pub fn issue_node(
    dir: &Path,
    csr_path: &Path,
    out: &Path,
    days: u32,
    now: i64,
) -> Result<IssueReport, Error> {
    let options = IssueOptions {
        days,
        ..IssueOptions::default()
    };
    issue_node_with(dir, csr_path, out, &options, now)
}

/// Issues a node certificate for the CSR at `csr_path` from the operator CA in `dir`, valid
/// `options.days` days from `now`, records it in `dir/issued.jsonl` and writes the chain
/// (leaf, then the operator CA) to `out`.
///
/// Only the CSR's subject and public key are used: the subject must be non-empty printable
/// text, the key a sound Ed25519, P-256 or P-384 key. The leaf's one subject alternative name
/// is the `--site` URI; the profile (CA:false, digitalSignature, EKU clientAuth + tppguard
/// node attestation) is the CA's. The record refuses a subject held by another key unless
/// `options.replace`, and a key recorded under another subject.
pub fn issue_node_with(
    dir: &Path,
    csr_path: &Path,
    out: &Path,
    options: &IssueOptions,
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
    // The self-signature proves nothing for a weak key (R = identity, S = 0 verifies for
    // every message under the identity point): the key itself is checked.
    let spki_der = csr.public_key.subject_public_key_info();
    VerifyingKey::from_spki_der(&spki_der).map_err(|source| PkiError::CsrKeyRefused {
        csr: csr_path.to_owned(),
        source,
    })?;
    let node_id = NodeId::from_spki_der(&spki_der);
    check_subject(csr_path, &csr.params.distinguished_name)?;

    let ca_key_path = dir.join(OPERATOR_CA_KEY);
    let ca_cert_path = dir.join(OPERATOR_CA_CERT);
    if !ca_key_path.exists() && dir.join(OPERATOR_DIR).join(OPERATOR_CA_KEY).exists() {
        return Err(PkiError::NotThePartyFolder {
            dir: dir.to_owned(),
            party: OPERATOR_DIR,
        }
        .into());
    }
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
    let record_path = dir.join(ISSUED_RECORD);
    let record = IssuanceRecord::load(&record_path)?;

    let wanted = now.saturating_add(i64::from(options.days).saturating_mul(DAY_SECS));
    let clipped_to_ca = wanted > ca_not_after;
    let mut params = leaf_params(now, wanted.min(ca_not_after))?;
    params.distinguished_name = csr.params.distinguished_name.clone();
    // SANs only from flags: never the CSR's.
    params.subject_alt_names = match &options.site {
        Some(site) => vec![SanType::URI(site.to_uri().try_into().map_err(
            |source| Error::Generate {
                what: "site subject alternative name",
                source,
            },
        )?)],
        None => Vec::new(),
    };
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

    // Check what we issue the way the verifier will, before recording or writing it.
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
    let issued = verified.leaf();
    let (action, replaced) =
        record.decide(&record_path, issued.subject(), node_id, options.replace)?;
    let entry = IssuedEntry {
        subject: issued.subject().to_owned(),
        node_id: node_id.to_string(),
        site: options.site.clone(),
        serial: issued.serial().to_owned(),
        not_after: issued.not_after(),
        issued_at: now,
        action,
    };
    // The record first: a certificate recorded but not delivered is harmless, one delivered
    // but not recorded is not.
    record.append(&record_path, &entry)?;
    write_public(
        out,
        format!("{}{}", leaf.pem(), ca_pem_block(&ca_der)).as_bytes(),
    )?;
    Ok(IssueReport {
        out: out.to_owned(),
        node_id,
        site: options.site.clone(),
        action,
        replaced_node_id: replaced,
        record: record_path,
        leaf: issued.clone(),
        clipped_to_ca,
    })
}

/// Why `pki issue-node` refused a request. Each reads `<thing>: <reason>`; outside text in it
/// is escaped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PkiError {
    /// The CSR's subject has no attribute, or an attribute whose value is empty.
    #[error("{}: the CSR's subject is empty; a node certificate needs a name people can read", .csr.display())]
    EmptySubject {
        /// The CSR file.
        csr: PathBuf,
    },
    /// A subject attribute is not printable text.
    #[error("{}: the CSR's subject {subject} {reason}", .csr.display())]
    BadSubject {
        /// The CSR file.
        csr: PathBuf,
        /// The subject's values, escaped and quoted.
        subject: String,
        /// Why, in words.
        reason: &'static str,
    },
    /// The CSR's public key is refused (a weak Ed25519 key above all).
    #[error("{}: the CSR's public key is refused ({}): {source}", .csr.display(), .source.code())]
    CsrKeyRefused {
        /// The CSR file.
        csr: PathBuf,
        /// Why.
        #[source]
        source: JwsError,
    },
    /// The subject is recorded under another key.
    #[error(
        "{}: subject {subject} was issued to another key (node id {holder}); refusing to \
         certify a second key under it",
        .record.display()
    )]
    SubjectTaken {
        /// The issuance record.
        record: PathBuf,
        /// The subject, escaped.
        subject: String,
        /// The key that holds it.
        holder: NodeId,
    },
    /// The key is recorded under another subject.
    #[error(
        "{}: this key (node id {node_id}) was issued under subject {other}; one key is one node \
         and has one subject",
        .record.display()
    )]
    KeyUnderAnotherSubject {
        /// The issuance record.
        record: PathBuf,
        /// The key.
        node_id: NodeId,
        /// The subject it is recorded under, escaped.
        other: String,
    },
    /// A CA certificate file given to `pki init-verifier` is not one.
    #[error("{}: {reason}", .path.display())]
    BadCaFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// `--dir` is a `pki init` folder, not the party's folder inside it.
    #[error(
        "{}: this is a `pki init` folder holding one folder per party; the key is in its \
         {party} folder",
        .dir.display()
    )]
    NotThePartyFolder {
        /// The folder given.
        dir: PathBuf,
        /// The party folder meant.
        party: &'static str,
    },
    /// The issuance record cannot be read.
    #[error("{}: line {line}: not an issuance record entry: {reason}", .record.display())]
    BadRecord {
        /// The issuance record.
        record: PathBuf,
        /// The line, from 1.
        line: usize,
        /// What is wrong, escaped.
        reason: String,
    },
}

impl PkiError {
    /// Every code, in declaration order.
    pub const CODES: [&'static str; 8] = [
        "empty_subject",
        "bad_subject",
        "csr_key_refused",
        "subject_already_issued",
        "key_already_issued",
        "bad_ca_file",
        "not_the_party_folder",
        "bad_issuance_record",
    ];

    /// The stable snake_case reason code; codes are added, never renamed or reused.
    pub fn code(&self) -> &'static str {
        match self {
            Self::EmptySubject { .. } => "empty_subject",
            Self::BadSubject { .. } => "bad_subject",
            Self::CsrKeyRefused { .. } => "csr_key_refused",
            Self::SubjectTaken { .. } => "subject_already_issued",
            Self::KeyUnderAnotherSubject { .. } => "key_already_issued",
            Self::BadCaFile { .. } => "bad_ca_file",
            Self::NotThePartyFolder { .. } => "not_the_party_folder",
            Self::BadRecord { .. } => "bad_issuance_record",
        }
    }

    /// How to fix it.
    pub fn hint(&self) -> &'static str {
        match self {
            Self::EmptySubject { .. } | Self::BadSubject { .. } => {
                "make the CSR again with a printable name: `tppguard-agent init --dir NODE \
                 --force --name NAME` (letters, digits, `-_.`; at most 64 characters)"
            }
            Self::CsrKeyRefused { .. } => {
                "the node must generate a fresh key: `tppguard-agent init --dir NODE --force`"
            }
            Self::SubjectTaken { .. } => {
                "if this node's key was rotated, issue again with --replace (the rotation is \
                 recorded); otherwise give the new node its own name"
            }
            Self::KeyUnderAnotherSubject { .. } => {
                "issue under the subject recorded for this key, or give the node a fresh key \
                 (`tppguard-agent init --force`)"
            }
            Self::BadCaFile { .. } => {
                "give the CA's own certificate: operator-ca.pem from the operator's folder \
                 (--operator-ca), licence-ca.pem from the licence authority's (--licence-ca)"
            }
            Self::NotThePartyFolder { .. } => {
                "give the operator's folder: --dir DIR/operator (the licence authority's is \
                 DIR/licence-authority, the verifier's DIR/verifier)"
            }
            Self::BadRecord { .. } => {
                "issued.jsonl is written only by `pki issue-node`: restore it from a backup"
            }
        }
    }
}

/// The text of a subject attribute, for the string types a CSR may use.
fn dn_text(value: &DnValue) -> Option<&str> {
    match value {
        DnValue::Utf8String(s) => Some(s),
        DnValue::PrintableString(s) => Some(s.as_ref()),
        DnValue::Ia5String(s) => Some(s.as_ref()),
        DnValue::TeletexString(s) => Some(s.as_ref()),
        // UCS-2 and UCS-4 strings: no node agent writes them.
        DnValue::BmpString(_) | DnValue::UniversalString(_) => None,
        _ => None,
    }
}

/// Refuses an empty subject and one with text [`escape`] would change (controls, escapes,
/// bidirectional overrides, backslashes), or an attribute longer than
/// [`MAX_SUBJECT_VALUE_CHARS`].
fn check_subject(csr: &Path, dn: &DistinguishedName) -> Result<(), PkiError> {
    let values: Vec<Option<&str>> = dn.iter().map(|(_, v)| dn_text(v)).collect();
    let shown = || {
        values
            .iter()
            .map(|v| format!("\"{}\"", escape(v.unwrap_or("?"))))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let bad = |reason| PkiError::BadSubject {
        csr: csr.to_owned(),
        subject: shown(),
        reason,
    };
    if values.is_empty()
        || values
            .iter()
            .any(|v| v.is_some_and(|t| t.trim().is_empty()))
    {
        return Err(PkiError::EmptySubject {
            csr: csr.to_owned(),
        });
    }
    for value in &values {
        let Some(text) = value else {
            return Err(bad("uses a BMP or Universal string; use UTF-8"));
        };
        if matches!(escape(text), std::borrow::Cow::Owned(_)) {
            return Err(bad(
                "has control characters, a backslash or bidirectional controls, which would \
                 steer the terminals that show it",
            ));
        }
        if text.chars().count() > MAX_SUBJECT_VALUE_CHARS {
            return Err(bad("has an attribute longer than 64 characters"));
        }
    }
    Ok(())
}

/// What one issuance was, in the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IssueAction {
    /// The subject's first certificate.
    Issue,
    /// The same key under the same subject again.
    Renew,
    /// A new key for a subject held by another (`--replace`).
    Replace,
}

impl IssueAction {
    fn words(self) -> &'static str {
        match self {
            Self::Issue => "first issue",
            Self::Renew => "renewal",
            Self::Replace => "rotation",
        }
    }
}

/// One line of `issued.jsonl`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct IssuedEntry {
    /// The leaf's subject as the verifier shows it (`CN=gpu-node-01`).
    subject: String,
    /// The node id, lower-case hex.
    node_id: String,
    /// The certified site.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    site: Option<SiteId>,
    /// The leaf's serial.
    serial: String,
    /// The leaf's notAfter, Unix seconds.
    not_after: i64,
    /// When it was issued, Unix seconds.
    issued_at: i64,
    /// What it was.
    action: IssueAction,
}

/// The issuance record as read: its bytes (rewritten with one more line) and its entries.
#[derive(Debug, Default)]
struct IssuanceRecord {
    bytes: Vec<u8>,
    entries: Vec<(NodeId, IssuedEntry)>,
}

impl IssuanceRecord {
    /// Reads `path` (bounded; absent is empty).
    fn load(path: &Path) -> Result<Self, Error> {
        let bytes = match chain::read_bounded(path, MAX_RECORD_BYTES) {
            Ok(bytes) => bytes,
            Err(chain::TrustError::Read { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                return Ok(Self::default());
            }
            Err(e) => return Err(e.into()),
        };
        Ok(Self::parse(path, bytes)?)
    }

    /// The record in `bytes`, read from `path` (named in errors). The one parser of the
    /// record.
    fn parse(path: &Path, bytes: Vec<u8>) -> Result<Self, PkiError> {
        let bad = |line: usize, reason: String| PkiError::BadRecord {
            record: path.to_owned(),
            line,
            reason: escape(&reason).into_owned(),
        };
        let text = std::str::from_utf8(&bytes).map_err(|_| bad(0, "not UTF-8".to_owned()))?;
        let mut entries = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let number = index.saturating_add(1);
            if line.trim().is_empty() {
                continue;
            }
            let entry: IssuedEntry =
                serde_json::from_str(line).map_err(|e| bad(number, e.to_string()))?;
            let node_id = NodeId::from_hex(&entry.node_id)
                .ok_or_else(|| bad(number, "node_id is not 64 hex digits".to_owned()))?;
            entries.push((node_id, entry));
        }
        Ok(Self { bytes, entries })
    }

    /// What issuing `node_id` under `subject` would be; the key it replaces on a rotation.
    fn decide(
        &self,
        path: &Path,
        subject: &str,
        node_id: NodeId,
        replace: bool,
    ) -> Result<(IssueAction, Option<NodeId>), PkiError> {
        if let Some((_, other)) = self
            .entries
            .iter()
            .find(|(id, e)| *id == node_id && e.subject != subject)
        {
            return Err(PkiError::KeyUnderAnotherSubject {
                record: path.to_owned(),
                node_id,
                other: escape(&other.subject).into_owned(),
            });
        }
        let holder = self
            .entries
            .iter()
            .rev()
            .find(|(_, e)| e.subject == subject)
            .map(|(id, _)| *id);
        match holder {
            None => Ok((IssueAction::Issue, None)),
            Some(id) if id == node_id => Ok((IssueAction::Renew, None)),
            Some(id) if replace => Ok((IssueAction::Replace, Some(id))),
            Some(id) => Err(PkiError::SubjectTaken {
                record: path.to_owned(),
                subject: escape(subject).into_owned(),
                holder: id,
            }),
        }
    }

    /// Writes the record with `entry` added: a temporary file in the same folder (0644),
    /// synced, renamed over the old record.
    fn append(&self, path: &Path, entry: &IssuedEntry) -> Result<(), Error> {
        let mut bytes = self.bytes.clone();
        if !bytes.is_empty() && !bytes.ends_with(b"\n") {
            bytes.push(b'\n');
        }
        serde_json::to_writer(&mut bytes, entry)?;
        bytes.push(b'\n');
        let tmp = path.with_file_name(format!(".{ISSUED_RECORD}.tmp-{}", std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        write_new(&tmp, &bytes, false)?;
        std::fs::rename(&tmp, path).map_err(|source| {
            let _ = std::fs::remove_file(&tmp);
            Error::Io {
                path: path.to_owned(),
                action: "replace",
                source,
            }
        })?;
        if let Some(parent) = path.parent()
            && let Ok(dir) = std::fs::File::open(parent)
        {
            // Best effort: the rename is durable once the folder is synced.
            let _ = dir.sync_all();
        }
        Ok(())
    }
}

/// The `issued_record` fuzz target's way in, not part of the API: the issuance record's parser
/// on `bytes`, giving each entry's node id and the entry written back as one JSON line, as
/// `pki issue-node` appends it.
#[doc(hidden)]
pub fn fuzz_issuance_record(bytes: &[u8]) -> Result<Vec<(NodeId, String)>, Error> {
    let record = IssuanceRecord::parse(Path::new(ISSUED_RECORD), bytes.to_vec())?;
    record
        .entries
        .iter()
        .map(|(node_id, entry)| Ok((*node_id, serde_json::to_string(entry)?)))
        .collect()
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
            "{}: valid {} chain ({} certificates) to a pinned {} root\n  subject    {}\n  node id    {}\n  site       {}\n  key        {}\n  serial     {}\n  not after  {} (Unix time)",
            Escaped(&args.chain.display().to_string()),
            role.replace('_', " "),
            leaf.chain_len(),
            if args.licence_signer {
                "licence-authority"
            } else {
                "operator"
            },
            Escaped(leaf.subject()),
            leaf.node_id(),
            leaf.certified_site()
                .map_or_else(|| "none certified".to_owned(), ToString::to_string),
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

/// A new Ed25519 key whose PKCS#8 is v1 (ring, under rcgen, writes v2, which OpenSSL 3 and
/// pyca/cryptography refuse).
fn ed25519_key(what: &'static str) -> Result<KeyPair, Error> {
    let der = SigningKey::generate_pkcs8(Alg::EdDSA).map_err(|_| Error::Generate {
        what,
        source: rcgen::Error::RingUnspecified,
    })?;
    KeyPair::from_pkcs8_der_and_sign_algo(&PrivatePkcs8KeyDer::from(der), &rcgen::PKCS_ED25519)
        .map_err(|source| Error::Generate { what, source })
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

#[cfg(test)]
mod tests {
    use super::*;

    fn id(byte: u8) -> NodeId {
        NodeId::from_bytes([byte; 32])
    }

    fn record(entries: &[(&str, u8)]) -> IssuanceRecord {
        IssuanceRecord {
            bytes: Vec::new(),
            entries: entries
                .iter()
                .map(|(subject, key)| {
                    (
                        id(*key),
                        IssuedEntry {
                            subject: (*subject).to_owned(),
                            node_id: id(*key).to_string(),
                            site: None,
                            serial: "01".to_owned(),
                            not_after: 0,
                            issued_at: 0,
                            action: IssueAction::Issue,
                        },
                    )
                })
                .collect(),
        }
    }

    #[test]
    fn the_record_keeps_one_key_per_subject_and_one_subject_per_key() {
        let path = Path::new("issued.jsonl");
        let r = record(&[("CN=a", 1), ("CN=b", 2)]);
        assert_eq!(
            r.decide(path, "CN=c", id(3), false).unwrap(),
            (IssueAction::Issue, None)
        );
        assert_eq!(
            r.decide(path, "CN=a", id(1), false).unwrap(),
            (IssueAction::Renew, None)
        );
        let e = r.decide(path, "CN=a", id(3), false).unwrap_err();
        assert_eq!(e.code(), "subject_already_issued");
        assert_eq!(
            r.decide(path, "CN=a", id(3), true).unwrap(),
            (IssueAction::Replace, Some(id(1)))
        );
        // One key under two subjects: never, not even with --replace.
        for replace in [false, true] {
            let e = r.decide(path, "CN=b", id(1), replace).unwrap_err();
            assert_eq!(e.code(), "key_already_issued");
        }
        // After a rotation the newest key holds the subject.
        let rotated = record(&[("CN=a", 1), ("CN=a", 3)]);
        assert_eq!(
            rotated.decide(path, "CN=a", id(3), false).unwrap(),
            (IssueAction::Renew, None)
        );
        assert!(rotated.decide(path, "CN=a", id(1), false).is_err());
    }

    #[test]
    fn subjects_must_be_printable_and_non_empty() {
        let csr = Path::new("n.csr");
        let dn = |values: &[&str]| {
            let mut dn = DistinguishedName::new();
            for (i, v) in values.iter().enumerate() {
                let ty = if i == 0 {
                    DnType::CommonName
                } else {
                    DnType::OrganizationName
                };
                dn.push(ty, *v);
            }
            dn
        };
        assert!(check_subject(csr, &dn(&["gpu-node-01"])).is_ok());
        for empty in [&[][..], &[""], &["  "], &["ok", ""]] {
            let e = check_subject(csr, &dn(empty)).unwrap_err();
            assert_eq!(e.code(), "empty_subject", "{empty:?}");
        }
        for bad in [
            "gpu\u{1b}[2J",
            "a\nb",
            "a\\b",
            "\u{202e}evil",
            &"x".repeat(65),
        ] {
            let e = check_subject(csr, &dn(&[bad])).unwrap_err();
            assert_eq!(e.code(), "bad_subject", "{bad:?}");
            let shown = e.to_string();
            assert!(!shown.chars().any(char::is_control), "{shown:?}");
            assert!(!shown.contains('\u{202e}'), "{shown:?}");
        }
    }

    #[test]
    fn codes_are_unique_and_listed() {
        let e = [
            PkiError::EmptySubject { csr: "c".into() },
            PkiError::BadSubject {
                csr: "c".into(),
                subject: String::new(),
                reason: "",
            },
            PkiError::CsrKeyRefused {
                csr: "c".into(),
                source: JwsError::MalformedSpki,
            },
            PkiError::SubjectTaken {
                record: "r".into(),
                subject: String::new(),
                holder: id(1),
            },
            PkiError::KeyUnderAnotherSubject {
                record: "r".into(),
                node_id: id(1),
                other: String::new(),
            },
            PkiError::BadCaFile {
                path: "p".into(),
                reason: String::new(),
            },
            PkiError::NotThePartyFolder {
                dir: "d".into(),
                party: OPERATOR_DIR,
            },
            PkiError::BadRecord {
                record: "r".into(),
                line: 1,
                reason: String::new(),
            },
        ];
        let codes: Vec<&str> = e.iter().map(PkiError::code).collect();
        assert_eq!(codes, PkiError::CODES);
        let unique: std::collections::HashSet<_> = codes.iter().collect();
        assert_eq!(unique.len(), codes.len());
    }
}
