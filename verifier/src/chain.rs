//! Certificate-chain validation for node keys, licence signers and shipment signers.
//!
//! Path building, signatures, validity periods, basic constraints, name constraints and CRLs
//! are rustls-webpki's ([`webpki::EndEntityCert::verify_for_usage`], with its own work budget);
//! this module adds the size limits checked before any parsing, the trust anchors from
//! `trust.toml`, and the leaf checks webpki leaves to the caller (digitalSignature key usage,
//! the EKU rule, "the leaf is not a CA", unknown critical extensions), done with x509-parser.
//!
//! Pinned roots are more than webpki's bare name and key: each keeps its validity period and
//! its basic constraints. A root that is not a CA (basicConstraints CA:true absent) is refused
//! when loaded; at validation a root outside its validity at the validation time is refused
//! (`root_expired`, `root_not_yet_valid`), and its pathLenConstraint limits the intermediates
//! below it (`root_path_len_exceeded`). Every Ed25519 key in a chain, leaf first, and in a
//! root must be a canonical point of the prime-order subgroup (`weak_public_key`): with a
//! small-order key a fixed signature verifies for any message.
//!
//! The EKU rule is deliberately standard: a leaf with no EKU extension passes; a leaf with one
//! must list `clientAuth` or [`NODE_ATTESTATION_EKU`] (node keys), or `codeSigning` or
//! [`LICENCE_SIGNING_EKU`] (licence signers), or `codeSigning` or [`SHIPMENT_SIGNING_EKU`]
//! (shipment signers). Any operator PKI (step-ca, Vault, an enterprise
//! CA) can therefore issue node certificates without tppguard's private OIDs.
//!
//! GPU device-identity chains (`[vendor] device_roots`, [`TrustAnchors::verify_gpu_device`])
//! are a fourth role with their own roots: such a root validates GPU evidence and nothing
//! else, and no other root validates GPU evidence. A GPU leaf must hold a P-384 key, must not
//! be a CA and must have digitalSignature; any EKU, or none (NVIDIA's leaves carry none), is
//! accepted. webpki refuses any critical extension it does not know, so a GPU leaf whose TCG
//! DICE extensions were critical would be refused (`unknown_critical_extension`); NVIDIA's are
//! not critical.
//!
//! Shipment signers (`[vendor] roots`, [`TrustAnchors::verify_shipment_signer`]) are a role of
//! their own too: a vendor root validates shipment records and nothing else, and a shipment
//! signer never validates under the operator, licence-authority or GPU device roots. A leaf
//! whose EKU lists only another tppguard purpose (a licence signer's, a node's) is refused
//! even under a vendor root.
//!
//! No function here reads the clock: the validation time is an argument.

use std::cell::RefCell;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, TrustAnchor, UnixTime};
use serde::Deserialize;
use tppguard_proto::identity::NodeId;
use tppguard_proto::jws::{Ed25519KeyProblem, JwsError, VerifyingKey};
use tppguard_proto::site::SiteId;
use tppguard_proto::text::escape;
use webpki::{
    CertRevocationList, EndEntityCert, ExpirationPolicy, ExtendedKeyUsageValidator, KeyPurposeId,
    KeyPurposeIdIter, KeyUsage, OwnedCertRevocationList, RequiredEkuNotFoundContext,
    RevocationCheckDepth, RevocationOptionsBuilder, UnknownStatusPolicy,
};
use x509_parser::certificate::X509Certificate;
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_SIG_ED25519,
    OID_X509_EXT_BASIC_CONSTRAINTS, OID_X509_EXT_CRL_DISTRIBUTION_POINTS,
    OID_X509_EXT_EXTENDED_KEY_USAGE, OID_X509_EXT_KEY_USAGE, OID_X509_EXT_NAME_CONSTRAINTS,
    OID_X509_EXT_SUBJECT_ALT_NAME,
};

mod cache;
use cache::{Caches, ChainCache};

use crate::gpu_evidence::rim::ReferenceValues;

/// The most certificates a chain may hold (leaf included), checked before parsing.
pub const MAX_CHAIN_CERTS: usize = 8;
/// The largest DER certificate accepted, checked before parsing.
pub const MAX_CERT_BYTES: usize = 16 * 1024;
/// The largest `trust.toml` accepted.
pub const MAX_TRUST_FILE_BYTES: u64 = 64 * 1024;
/// The largest PEM file (roots, CRLs, a chain) read from disk.
pub const MAX_PEM_FILE_BYTES: u64 = 1024 * 1024;

/// tppguard's node-attestation key purpose, `2.25.227217330610018926947444553135213581405`
/// (a UUID OID under ITU-T X.667, which needs no registration): DER value bytes.
pub const NODE_ATTESTATION_EKU: &[u8] = &[
    0x69, 0x82, 0xd5, 0xf0, 0xbb, 0xd4, 0xb6, 0xdf, 0x9a, 0x8b, 0xd1, 0x99, 0xfe, 0xaa, 0xef, 0xeb,
    0xde, 0xf4, 0xa8, 0x5d,
];
/// [`NODE_ATTESTATION_EKU`] in dotted form.
pub const NODE_ATTESTATION_EKU_DOTTED: &str = "2.25.227217330610018926947444553135213581405";
/// tppguard's licence-signing key purpose, `2.25.76805770298329466430960923117125436728`
/// (a UUID OID): DER value bytes.
pub const LICENCE_SIGNING_EKU: &[u8] = &[
    0x69, 0xf3, 0xc8, 0xa0, 0xb5, 0xf7, 0xd6, 0x9a, 0xba, 0xc7, 0xa9, 0xc5, 0xf5, 0x8f, 0xeb, 0xf7,
    0xc4, 0x8a, 0x38,
];
/// [`LICENCE_SIGNING_EKU`] in dotted form.
pub const LICENCE_SIGNING_EKU_DOTTED: &str = "2.25.76805770298329466430960923117125436728";
/// tppguard's shipment-signing key purpose, `2.25.216044703687014797888359890915889662041`
/// (a UUID OID): DER value bytes.
pub const SHIPMENT_SIGNING_EKU: &[u8] = &[
    0x69, 0x82, 0xc5, 0x88, 0xd9, 0x92, 0x89, 0xcc, 0xb2, 0x87, 0xa5, 0x87, 0xaa, 0xb8, 0xa0, 0xb7,
    0xc3, 0xf9, 0x90, 0x59,
];
/// [`SHIPMENT_SIGNING_EKU`] in dotted form.
pub const SHIPMENT_SIGNING_EKU_DOTTED: &str = "2.25.216044703687014797888359890915889662041";
/// id-kp-clientAuth (1.3.6.1.5.5.7.3.2): DER value bytes.
pub const CLIENT_AUTH_EKU: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x02];
/// id-kp-codeSigning (1.3.6.1.5.5.7.3.3): DER value bytes.
pub const CODE_SIGNING_EKU: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x03];

/// The signature algorithms accepted anywhere in a chain (ring, constant time).
static SIG_ALGS: &[&dyn rustls_pki_types::SignatureVerificationAlgorithm] = &[
    webpki::ring::ED25519,
    webpki::ring::ECDSA_P256_SHA256,
    webpki::ring::ECDSA_P256_SHA384,
    webpki::ring::ECDSA_P384_SHA256,
    webpki::ring::ECDSA_P384_SHA384,
];

/// A CRL in DER form, as read from `trust.toml`'s `crls`.
pub type CrlDer = CertificateRevocationListDer<'static>;

/// Why a certificate chain was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChainError {
    /// The chain is empty.
    #[error("the chain holds no certificate")]
    Empty,
    /// The chain holds more certificates than the pinned roots can use (their path-length
    /// constraints) or than [`MAX_CHAIN_CERTS`].
    #[error(
        "the chain holds {len} certificates, more than the {max} the pinned roots allow (send \
         the leaf and the intermediates up to a pinned root)"
    )]
    ChainTooLong {
        /// Certificates given.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// One certificate is larger than allowed.
    #[error("certificate {index} is {len} bytes, more than the {max} allowed")]
    CertTooLarge {
        /// Its position in the chain (0 = leaf).
        index: usize,
        /// Its size.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The validation time is before 1970.
    #[error("validation time {at} is before the Unix epoch")]
    InvalidTime {
        /// The time given.
        at: i64,
    },
    /// A certificate (or the chain's validity as a whole) has expired.
    #[error("a certificate expired at {not_after} (validation time {at})")]
    Expired {
        /// Validation time, Unix seconds.
        at: i64,
        /// The certificate's notAfter, Unix seconds.
        not_after: i64,
    },
    /// A certificate is not valid yet.
    #[error("a certificate is valid only from {not_before} (validation time {at})")]
    NotYetValid {
        /// Validation time, Unix seconds.
        at: i64,
        /// The certificate's notBefore, Unix seconds.
        not_before: i64,
    },
    /// No path leads from the leaf to a pinned root.
    #[error("no chain to a pinned root (unknown issuer)")]
    UnknownIssuer,
    /// A signature in the chain does not verify.
    #[error("a certificate's signature does not verify")]
    BadSignature,
    /// A signature or key algorithm outside Ed25519, ECDSA P-256 and P-384.
    #[error("unsupported signature or key algorithm")]
    UnsupportedAlgorithm,
    /// The leaf is a CA certificate (basicConstraints CA:true).
    #[error("the leaf certificate is a CA (basicConstraints CA:true)")]
    LeafIsCa,
    /// An intermediate is not a CA, or a path-length constraint is broken.
    #[error("an issuing certificate is not a CA, or its path length is exceeded")]
    BadIssuer,
    /// A critical extension that is not understood.
    #[error("unknown critical extension {oid}")]
    UnknownCriticalExtension {
        /// Its OID, dotted (`unknown` when webpki found it in an issuer it could not name).
        oid: String,
    },
    /// The leaf's key usage lacks digitalSignature.
    #[error("the leaf's key usage does not include digitalSignature")]
    MissingDigitalSignature,
    /// The EKU extension is present but allows none of the accepted purposes.
    #[error("the extended key usage does not allow {expected}")]
    WrongEku {
        /// The purposes accepted, in words.
        expected: &'static str,
    },
    /// A certificate is revoked by a CRL.
    #[error("a certificate in the chain is revoked")]
    Revoked,
    /// A CRL has passed its nextUpdate.
    #[error("a CRL expired at {next_update} (validation time {at})")]
    CrlExpired {
        /// Validation time, Unix seconds.
        at: i64,
        /// The CRL's nextUpdate, Unix seconds.
        next_update: i64,
    },
    /// A CRL is malformed, badly signed or of an unsupported kind.
    #[error("a CRL is invalid or unsupported")]
    BadCrl,
    /// The leaf's public key is not Ed25519, P-256 or P-384.
    #[error("leaf key algorithm {oid} is not Ed25519, P-256 or P-384")]
    UnsupportedKeyAlgorithm {
        /// The SPKI algorithm (and curve) OID.
        oid: String,
    },
    /// A certificate is not well-formed DER X.509 v3, or violates a name constraint.
    #[error("malformed certificate ({detail})")]
    Malformed {
        /// What was wrong, in words.
        detail: &'static str,
    },
    /// The path search ran out of its work budget (hostile or absurd chain).
    #[error("chain building exceeded its work budget")]
    BudgetExceeded,
    /// The leaf certifies a site (`tag:tppguard.dev,2026:site/...` SAN URI) outside the site
    /// id alphabet, or more than one site.
    #[error("the leaf's certified site is invalid ({detail})")]
    BadCertifiedSite {
        /// What was wrong, in words (quoted text escaped, at most 64 characters).
        detail: String,
    },
    /// A certificate's Ed25519 key is of small order, outside the prime-order subgroup, not
    /// canonically encoded or not a point: a fixed signature would verify for any message.
    #[error(
        "certificate {index} of the chain (0 = the leaf) has an Ed25519 public key {problem}; \
         such a key is never trusted: issue a certificate for a freshly generated key"
    )]
    WeakPublicKey {
        /// Its position in the chain as given (0 = leaf).
        index: usize,
        /// What is wrong with the point.
        problem: Ed25519KeyProblem,
    },
    /// The pinned root the chain leads to has expired at the validation time.
    #[error("the pinned root expired at {not_after} (validation time {at}); pin its successor")]
    RootExpired {
        /// Validation time, Unix seconds.
        at: i64,
        /// The root's notAfter, Unix seconds.
        not_after: i64,
    },
    /// The pinned root the chain leads to is not valid yet at the validation time.
    #[error(
        "the pinned root is valid only from {not_before} (validation time {at}); check the \
         clocks and --at"
    )]
    RootNotYetValid {
        /// Validation time, Unix seconds.
        at: i64,
        /// The root's notBefore, Unix seconds.
        not_before: i64,
    },
    /// A certificate pinned as a root is not a CA (basicConstraints CA:true absent).
    #[error(
        "a pinned root is not a CA certificate (basicConstraints CA:true is absent); pin the CA that issues the chains"
    )]
    RootNotCa,
    /// More intermediates stand below the pinned root than its pathLenConstraint allows.
    #[error(
        "the chain has {intermediates} intermediate(s) below a pinned root whose \
         pathLenConstraint allows {max}"
    )]
    RootPathLenExceeded {
        /// Intermediates in the path built.
        intermediates: usize,
        /// The root's pathLenConstraint.
        max: u32,
    },
}

impl ChainError {
    /// Every code, for the uniqueness test and the documentation.
    pub const CODES: &'static [&'static str] = &[
        "chain_empty",
        "chain_too_long",
        "cert_too_large",
        "invalid_time",
        "cert_expired",
        "cert_not_yet_valid",
        "unknown_issuer",
        "bad_signature",
        "unsupported_algorithm",
        "leaf_is_ca",
        "bad_issuer",
        "unknown_critical_extension",
        "missing_digital_signature",
        "wrong_eku",
        "cert_revoked",
        "crl_expired",
        "bad_crl",
        "unsupported_key_algorithm",
        "malformed_certificate",
        "budget_exceeded",
        "bad_certified_site",
        "weak_public_key",
        "root_expired",
        "root_not_yet_valid",
        "root_not_ca",
        "root_path_len_exceeded",
    ];

    /// A stable snake_case reason code; codes are added, never renamed or reused.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Empty => "chain_empty",
            Self::ChainTooLong { .. } => "chain_too_long",
            Self::CertTooLarge { .. } => "cert_too_large",
            Self::InvalidTime { .. } => "invalid_time",
            Self::Expired { .. } => "cert_expired",
            Self::NotYetValid { .. } => "cert_not_yet_valid",
            Self::UnknownIssuer => "unknown_issuer",
            Self::BadSignature => "bad_signature",
            Self::UnsupportedAlgorithm => "unsupported_algorithm",
            Self::LeafIsCa => "leaf_is_ca",
            Self::BadIssuer => "bad_issuer",
            Self::UnknownCriticalExtension { .. } => "unknown_critical_extension",
            Self::MissingDigitalSignature => "missing_digital_signature",
            Self::WrongEku { .. } => "wrong_eku",
            Self::Revoked => "cert_revoked",
            Self::CrlExpired { .. } => "crl_expired",
            Self::BadCrl => "bad_crl",
            Self::UnsupportedKeyAlgorithm { .. } => "unsupported_key_algorithm",
            Self::Malformed { .. } => "malformed_certificate",
            Self::BudgetExceeded => "budget_exceeded",
            Self::BadCertifiedSite { .. } => "bad_certified_site",
            Self::WeakPublicKey { .. } => "weak_public_key",
            Self::RootExpired { .. } => "root_expired",
            Self::RootNotYetValid { .. } => "root_not_yet_valid",
            Self::RootNotCa => "root_not_ca",
            Self::RootPathLenExceeded { .. } => "root_path_len_exceeded",
        }
    }
}

fn unix(t: UnixTime) -> i64 {
    i64::try_from(t.as_secs()).unwrap_or(i64::MAX)
}

/// Maps webpki's error to ours: one match, every variant webpki 0.103 has named.
#[expect(
    deprecated,
    reason = "webpki still returns its deprecated variants in places"
)]
fn from_webpki(e: webpki::Error) -> ChainError {
    use webpki::Error as W;
    match e {
        W::CertExpired { time, not_after } => ChainError::Expired {
            at: unix(time),
            not_after: unix(not_after),
        },
        W::CertNotValidYet { time, not_before } => ChainError::NotYetValid {
            at: unix(time),
            not_before: unix(not_before),
        },
        W::UnknownIssuer | W::CertDistrusted => ChainError::UnknownIssuer,
        W::InvalidSignatureForPublicKey | W::SignatureAlgorithmMismatch => ChainError::BadSignature,
        W::UnsupportedSignatureAlgorithm
        | W::UnsupportedSignatureAlgorithmContext(_)
        | W::UnsupportedSignatureAlgorithmForPublicKey
        | W::UnsupportedSignatureAlgorithmForPublicKeyContext(_) => {
            ChainError::UnsupportedAlgorithm
        }
        W::CaUsedAsEndEntity => ChainError::LeafIsCa,
        W::EndEntityUsedAsCa | W::PathLenConstraintViolated => ChainError::BadIssuer,
        W::UnsupportedCriticalExtension => ChainError::UnknownCriticalExtension {
            oid: "unknown".to_owned(),
        },
        W::RequiredEkuNotFound | W::RequiredEkuNotFoundContext(_) | W::EmptyEkuExtension => {
            ChainError::WrongEku {
                expected: "the required purpose (in the leaf or an issuer)",
            }
        }
        W::CertRevoked => ChainError::Revoked,
        W::CrlExpired { time, next_update } => ChainError::CrlExpired {
            at: unix(time),
            next_update: unix(next_update),
        },
        W::UnknownRevocationStatus
        | W::InvalidCrlNumber
        | W::InvalidCrlSignatureForPublicKey
        | W::IssuerNotCrlSigner
        | W::UnsupportedCrlIssuingDistributionPoint
        | W::UnsupportedCrlVersion
        | W::UnsupportedDeltaCrl
        | W::UnsupportedIndirectCrl
        | W::UnsupportedRevocationReason
        | W::UnsupportedRevocationReasonsPartitioning
        | W::UnsupportedCrlSignatureAlgorithm
        | W::UnsupportedCrlSignatureAlgorithmContext(_)
        | W::UnsupportedCrlSignatureAlgorithmForPublicKey
        | W::UnsupportedCrlSignatureAlgorithmForPublicKeyContext(_) => ChainError::BadCrl,
        W::MaximumPathBuildCallsExceeded
        | W::MaximumSignatureChecksExceeded
        | W::MaximumPathDepthExceeded
        | W::MaximumNameConstraintComparisonsExceeded => ChainError::BudgetExceeded,
        W::BadDer | W::TrailingData(_) => ChainError::Malformed { detail: "bad DER" },
        W::BadDerTime | W::InvalidCertValidity => ChainError::Malformed {
            detail: "bad validity period",
        },
        W::InvalidSerialNumber => ChainError::Malformed {
            detail: "bad serial number",
        },
        W::UnsupportedCertVersion => ChainError::Malformed {
            detail: "not an X.509 v3 certificate",
        },
        W::ExtensionValueInvalid | W::MalformedExtensions => ChainError::Malformed {
            detail: "bad extension",
        },
        W::NameConstraintViolation
        | W::MalformedNameConstraint
        | W::InvalidNetworkMaskConstraint => ChainError::Malformed {
            detail: "name constraint violated or malformed",
        },
        W::CertNotValidForName(_) | W::MalformedDnsIdentifier | W::UnsupportedNameType => {
            ChainError::Malformed {
                detail: "name check failed",
            }
        }
        // webpki's enum is non_exhaustive: a variant added later is reported, not ignored.
        _ => ChainError::Malformed {
            detail: "rejected by webpki",
        },
    }
}

/// The leaf's public-key algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyAlgorithm {
    /// Ed25519 (JWS `EdDSA`).
    Ed25519,
    /// ECDSA P-256 (JWS `ES256`).
    P256,
    /// ECDSA P-384 (JWS `ES384`).
    P384,
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Ed25519 => "Ed25519",
            Self::P256 => "P-256",
            Self::P384 => "P-384",
        })
    }
}

/// What a verified chain tells about its leaf.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct VerifiedLeaf {
    #[serde(rename = "spki_der_base64", serialize_with = "base64_standard")]
    spki_der: Vec<u8>,
    /// The leaf's key, parsed and checked once (a weak Ed25519 key is refused here), so a
    /// remembered chain's tokens are verified without parsing and checking it again.
    #[serde(skip)]
    key: VerifyingKey,
    /// SHA-256 of `spki_der`: the node's identity (a node is its key).
    node_id: NodeId,
    /// The site the issuing CA certified (a `tag:tppguard.dev,2026:site/ID` SAN URI).
    #[serde(skip_serializing_if = "Option::is_none")]
    certified_site: Option<SiteId>,
    key_algorithm: KeyAlgorithm,
    subject: String,
    serial: String,
    not_before: i64,
    not_after: i64,
    chain_len: usize,
    /// GPU device chains only: the certificate that issued the leaf in the verified path.
    #[serde(skip_serializing_if = "Option::is_none")]
    issuer: Option<DeviceCertificate>,
}

fn base64_standard<S: serde::Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
    use base64::Engine;
    s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
}

impl VerifiedLeaf {
    /// The leaf's SubjectPublicKeyInfo, DER.
    pub fn spki_der(&self) -> &[u8] {
        &self.spki_der
    }
    /// The leaf's public key, checked (never a weak Ed25519 key).
    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.key
    }
    /// SHA-256 of the leaf's SubjectPublicKeyInfo: the identity a node is kept under.
    pub fn node_id(&self) -> NodeId {
        self.node_id
    }
    /// The site the issuing CA wrote into the leaf, if any.
    pub fn certified_site(&self) -> Option<&SiteId> {
        self.certified_site.as_ref()
    }
    /// The leaf's key algorithm.
    pub fn key_algorithm(&self) -> KeyAlgorithm {
        self.key_algorithm
    }
    /// The leaf's subject, RFC 4514 style (`CN=gpu-node-01`).
    pub fn subject(&self) -> &str {
        &self.subject
    }
    /// The leaf's serial number, lower-case hex with colons.
    pub fn serial(&self) -> &str {
        &self.serial
    }
    /// The leaf's notBefore, Unix seconds.
    pub fn not_before(&self) -> i64 {
        self.not_before
    }
    /// The leaf's notAfter, Unix seconds.
    pub fn not_after(&self) -> i64 {
        self.not_after
    }
    /// Certificates in the chain as given (leaf included).
    pub fn chain_len(&self) -> usize {
        self.chain_len
    }
}

/// A node certificate chain that verified to a pinned operator root: only
/// [`verify_node_chain`] makes one.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(transparent)]
pub struct VerifiedNodeChain(VerifiedLeaf);

impl VerifiedNodeChain {
    /// The leaf's facts.
    pub fn leaf(&self) -> &VerifiedLeaf {
        &self.0
    }
}

/// A licence-signer chain that verified to a pinned licence-authority root: only
/// [`verify_licence_signer_chain`] makes one.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(transparent)]
pub struct VerifiedLicenceSigner(VerifiedLeaf);

impl VerifiedLicenceSigner {
    /// The leaf's facts.
    pub fn leaf(&self) -> &VerifiedLeaf {
        &self.0
    }
}

/// A shipment signer's chain that verified to a pinned `[vendor] roots` root: only
/// [`TrustAnchors::verify_shipment_signer`] makes one.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(transparent)]
pub struct VerifiedShipmentSigner(VerifiedLeaf);

impl VerifiedShipmentSigner {
    /// The leaf's facts (its subject names the vendor).
    pub fn leaf(&self) -> &VerifiedLeaf {
        &self.0
    }
}

/// A GPU device chain that verified to a pinned `[vendor] device_roots` root: only
/// [`TrustAnchors::verify_gpu_device`] makes one.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(transparent)]
pub struct VerifiedGpuDeviceChain(VerifiedLeaf);

impl VerifiedGpuDeviceChain {
    /// The leaf's facts (the attestation key's certificate, "GSP FMC LF" on NVIDIA GPUs).
    pub fn leaf(&self) -> &VerifiedLeaf {
        &self.0
    }

    /// The certificate that issued the leaf in the path webpki verified: the per-device
    /// certificate ("GSP BROM" on NVIDIA GPUs); `None` when the leaf was issued by the pinned
    /// root itself.
    pub fn device_certificate(&self) -> Option<&DeviceCertificate> {
        self.0.issuer.as_ref()
    }
}

/// The certificate that issued a GPU leaf, as verified in its path: the GPU's stable hardware
/// identity (the leaf's own key embeds the firmware id and changes with firmware).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DeviceCertificate {
    /// Lower-case hex SHA-256 of its SubjectPublicKeyInfo (DER).
    pub spki_sha256_hex: String,
    /// Its subject's serialNumber attribute (NVIDIA: the chip's ECID), escaped.
    pub serial_number: Option<String>,
    /// Its subject, RFC 4514 style.
    pub subject: String,
}

impl DeviceCertificate {
    fn read(der: &[u8]) -> Result<Self, ChainError> {
        let cert = parse(der)?;
        let digest = ring::digest::digest(&ring::digest::SHA256, cert.public_key().raw);
        let serial_number = cert
            .subject()
            .iter_by_oid(&x509_parser::oid_registry::OID_X509_SERIALNUMBER)
            .next()
            .and_then(|attr| attr.as_str().ok())
            .map(|text| escape(text).into_owned());
        Ok(Self {
            spki_sha256_hex: digest.as_ref().iter().map(|b| format!("{b:02x}")).collect(),
            serial_number,
            subject: cert.subject().to_string(),
        })
    }
}

/// Which role a chain is checked for.
#[derive(Debug, Clone, Copy)]
enum Role {
    Node,
    LicenceSigner,
    GpuDevice,
    ShipmentSigner,
}

impl Role {
    /// The role's byte in a [`cache::ChainCache`] key.
    fn tag(self) -> u8 {
        match self {
            Self::Node => 1,
            Self::LicenceSigner => 2,
            Self::GpuDevice => 3,
            Self::ShipmentSigner => 4,
        }
    }
    /// The purposes an EKU must list; `None`: any EKU, or none, is accepted (GPU leaves).
    fn accepted_ekus(self) -> Option<&'static [&'static [u8]]> {
        match self {
            Self::Node => Some(&[CLIENT_AUTH_EKU, NODE_ATTESTATION_EKU]),
            Self::LicenceSigner => Some(&[CODE_SIGNING_EKU, LICENCE_SIGNING_EKU]),
            Self::GpuDevice => None,
            Self::ShipmentSigner => Some(&[CODE_SIGNING_EKU, SHIPMENT_SIGNING_EKU]),
        }
    }
    fn eku_words(self) -> &'static str {
        match self {
            Self::Node => "clientAuth or tppguard node attestation",
            Self::LicenceSigner => "codeSigning or tppguard licence signing",
            Self::GpuDevice => "any purpose",
            Self::ShipmentSigner => "codeSigning or tppguard shipment signing",
        }
    }
}

/// webpki's EKU check, applied to every certificate of the path: an EKU extension, where
/// present, must list one of the role's purposes (webpki's `required_if_present`, with two
/// accepted OIDs instead of one).
struct EkuPolicy(Role);

impl ExtendedKeyUsageValidator for EkuPolicy {
    fn validate(&self, iter: KeyPurposeIdIter<'_, '_>) -> Result<(), webpki::Error> {
        let Some(accepted) = self.0.accepted_ekus() else {
            return Ok(());
        };
        let mut empty = true;
        for id in iter {
            empty = false;
            let id = id?;
            if accepted.iter().any(|oid| KeyPurposeId::new(oid) == id) {
                return Ok(());
            }
        }
        if empty {
            return Ok(());
        }
        Err(webpki::Error::RequiredEkuNotFoundContext(
            RequiredEkuNotFoundContext {
                required: KeyUsage::required_if_present(match self.0 {
                    Role::Node | Role::GpuDevice => NODE_ATTESTATION_EKU,
                    Role::LicenceSigner => LICENCE_SIGNING_EKU,
                    Role::ShipmentSigner => SHIPMENT_SIGNING_EKU,
                }),
                present: Vec::new(),
            },
        ))
    }
}

/// What a pinned root certificate says beyond its name and key: its validity and its
/// pathLenConstraint (webpki keeps anchors as bare name and key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RootFacts {
    not_before: i64,
    not_after: i64,
    path_len: Option<u32>,
}

impl RootFacts {
    /// Reads a root certificate: it must be a CA, and an Ed25519 key must be sound.
    fn read(der: &[u8]) -> Result<Self, ChainError> {
        let cert = parse(der)?;
        let bc = cert
            .basic_constraints()
            .map_err(|_| ChainError::Malformed {
                detail: "bad extension",
            })?
            .map(|bc| bc.value.clone());
        let path_len = match bc {
            Some(bc) if bc.ca => bc.path_len_constraint,
            _ => return Err(ChainError::RootNotCa),
        };
        check_ed25519_key(&cert, 0)?;
        Ok(Self {
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
            path_len,
        })
    }

    /// Whether a path with `intermediates` intermediates may end at this root at `at`.
    fn admits(&self, at: i64, intermediates: usize) -> Result<(), ChainError> {
        if at < self.not_before {
            return Err(ChainError::RootNotYetValid {
                at,
                not_before: self.not_before,
            });
        }
        if at > self.not_after {
            return Err(ChainError::RootExpired {
                at,
                not_after: self.not_after,
            });
        }
        if let Some(max) = self.path_len
            && u32::try_from(intermediates).map_or(true, |n| n > max)
        {
            return Err(ChainError::RootPathLenExceeded { intermediates, max });
        }
        Ok(())
    }
}

/// One trust domain's pinned roots: webpki's anchors and, at the same index, their facts.
#[derive(Debug, Clone, Default)]
struct Roots {
    anchors: Vec<TrustAnchor<'static>>,
    facts: Vec<RootFacts>,
}

impl Roots {
    fn push(&mut self, der: &CertificateDer<'_>) -> Result<(), ChainError> {
        let facts = RootFacts::read(der)?;
        let anchor = webpki::anchor_from_trusted_cert(der).map_err(from_webpki)?;
        self.anchors.push(anchor.to_owned());
        self.facts.push(facts);
        Ok(())
    }

    fn len(&self) -> usize {
        self.anchors.len()
    }

    /// The most certificates a chain ending at one of these roots can use: the leaf, the
    /// intermediates a root's path-length constraint admits, and the root itself (a sender
    /// may include it); [`MAX_CHAIN_CERTS`] for an unconstrained root or none pinned. A longer
    /// `x5c` is refused before any parsing or signature check, so it cannot buy path-building
    /// work.
    fn longest_chain(&self) -> usize {
        self.facts
            .iter()
            .map(|f| {
                f.path_len.map_or(MAX_CHAIN_CERTS, |n| {
                    usize::try_from(n).map_or(MAX_CHAIN_CERTS, |n| n.saturating_add(2))
                })
            })
            .max()
            .unwrap_or(MAX_CHAIN_CERTS)
            .min(MAX_CHAIN_CERTS)
    }

    /// The facts of `anchor`, which must be one of this domain's anchors (by address).
    fn facts_of(&self, anchor: &TrustAnchor<'_>) -> Option<RootFacts> {
        let index = self
            .anchors
            .iter()
            .position(|a| std::ptr::eq::<TrustAnchor<'_>>(a, anchor))?;
        self.facts.get(index).copied()
    }
}

/// The pinned roots and CRLs of the trust domains, from `trust.toml`.
#[derive(Debug, Clone, Default)]
pub struct TrustAnchors {
    operator: Roots,
    operator_crls: Vec<CrlDer>,
    licence_authority: Roots,
    licence_authority_crls: Vec<CrlDer>,
    /// `[vendor] roots`: shipment-signer roots, for shipment records only.
    vendor: Roots,
    /// `[vendor] crls`: checked for every certificate of a shipment signer's chain.
    vendor_crls: Vec<CrlDer>,
    /// `[vendor] device_roots`: GPU device-identity roots, for GPU evidence only.
    gpu_device: Roots,
    /// `[vendor] reference_values`: the RIMs of that folder, read when trust.toml is loaded.
    reference_values: Option<Arc<ReferenceValues>>,
    /// Chains verified against these anchors and CRLs (GPU device chains apart); clones share
    /// them.
    cache: Arc<Caches>,
}

/// `trust.toml`, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TrustFile {
    operator: Domain,
    licence_authority: Domain,
    #[serde(default)]
    vendor: VendorDomain,
}

/// The `[vendor]` section: shipment-signer roots, and the GPU evidence keys.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct VendorDomain {
    /// PEM files of pinned shipment-signer roots, relative to trust.toml.
    #[serde(default)]
    roots: Vec<PathBuf>,
    /// DER or PEM CRL files, relative to trust.toml, for the shipment signers' chains.
    #[serde(default)]
    crls: Vec<PathBuf>,
    /// PEM files of GPU device-identity roots (NVIDIA Device Identity CA), relative to
    /// trust.toml: they validate GPU evidence and nothing else.
    #[serde(default)]
    device_roots: Vec<PathBuf>,
    /// A folder of reference-value files (NVIDIA RIMs, `*.xml`), relative to trust.toml.
    #[serde(default)]
    reference_values: Option<PathBuf>,
}

/// One trust domain's section.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Domain {
    /// PEM files of pinned root certificates, relative to trust.toml.
    #[serde(default)]
    roots: Vec<PathBuf>,
    /// DER or PEM CRL files, relative to trust.toml.
    #[serde(default)]
    crls: Vec<PathBuf>,
}

/// Why `trust.toml` or a file it names could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrustError {
    /// A file could not be read.
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A file is larger than allowed.
    #[error("{}: {len} bytes, more than the {max} allowed", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// trust.toml is not valid TOML or has an unknown or mistyped key.
    #[error("{}: {source}", path.display())]
    Syntax {
        /// trust.toml.
        path: PathBuf,
        /// The parser's message, naming the key.
        #[source]
        source: toml::de::Error,
    },
    /// A file named under a key is not what the key needs.
    #[error("{}: {key}: {}: {reason}", trust.display(), file.display())]
    Entry {
        /// trust.toml.
        trust: PathBuf,
        /// The key (`operator.roots`).
        key: String,
        /// The file named.
        file: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

/// Reads a file of at most `max` bytes.
pub fn read_bounded(path: &Path, max: u64) -> Result<Vec<u8>, TrustError> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|source| TrustError::Read {
        path: path.to_owned(),
        source,
    })?;
    let mut bytes = Vec::new();
    file.take(max.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|source| TrustError::Read {
            path: path.to_owned(),
            source,
        })?;
    let len = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
    if len > max {
        return Err(TrustError::TooLarge {
            path: path.to_owned(),
            len,
            max,
        });
    }
    Ok(bytes)
}

/// Parses every `CERTIFICATE` block of a PEM file.
pub fn certs_from_pem(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not a PEM certificate file ({e})"))?;
    if certs.is_empty() {
        return Err("holds no PEM CERTIFICATE block".to_owned());
    }
    Ok(certs)
}

impl TrustAnchors {
    /// Loads `trust.toml` and the roots and CRLs it names (paths relative to its folder).
    pub fn from_trust_toml(path: &Path) -> Result<Self, TrustError> {
        let bytes = read_bounded(path, MAX_TRUST_FILE_BYTES)?;
        let text = String::from_utf8_lossy(&bytes);
        let file: TrustFile = toml::from_str(&text).map_err(|source| TrustError::Syntax {
            path: path.to_owned(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let roots = |key: &str, files: &[PathBuf]| load_roots(path, base, key, files);
        let crls = |key: &str, files: &[PathBuf]| load_crls(path, base, key, files);
        Ok(Self {
            operator: roots("operator.roots", &file.operator.roots)?,
            operator_crls: crls("operator.crls", &file.operator.crls)?,
            licence_authority: roots("licence_authority.roots", &file.licence_authority.roots)?,
            licence_authority_crls: crls("licence_authority.crls", &file.licence_authority.crls)?,
            vendor: roots("vendor.roots", &file.vendor.roots)?,
            vendor_crls: crls("vendor.crls", &file.vendor.crls)?,
            gpu_device: roots("vendor.device_roots", &file.vendor.device_roots)?,
            reference_values: match &file.vendor.reference_values {
                Some(dir) => Some(Arc::new(
                    ReferenceValues::load_dir(&base.join(dir)).map_err(|e| {
                        entry_error(
                            path,
                            "vendor.reference_values",
                            dir,
                            format!("not a usable RIM folder ({}): {e}", e.code()),
                        )
                    })?,
                )),
                None => None,
            },
            cache: Arc::default(),
        })
    }

    /// These anchors with `device_roots` added to the GPU device-identity roots (tests,
    /// embedders, the CLI's `--root`); each must be a CA with a sound key. The new value has
    /// a cache of its own.
    pub fn with_device_roots(
        self,
        device_roots: &[CertificateDer<'_>],
    ) -> Result<Self, ChainError> {
        let mut gpu_device = self.gpu_device;
        for cert in device_roots {
            gpu_device.push(cert)?;
        }
        Ok(Self {
            gpu_device,
            cache: Arc::default(),
            ..self
        })
    }

    /// These anchors with `vendor_roots` added to the shipment-signer roots (`[vendor]
    /// roots`; tests and embedders); each must be a CA with a sound key. The new value has a
    /// cache of its own.
    pub fn with_vendor_roots(
        self,
        vendor_roots: &[CertificateDer<'_>],
    ) -> Result<Self, ChainError> {
        let mut vendor = self.vendor;
        for cert in vendor_roots {
            vendor.push(cert)?;
        }
        Ok(Self {
            vendor,
            cache: Arc::default(),
            ..self
        })
    }

    /// These anchors with `rims` as the reference values (the CLI's `--rims`, tests).
    pub fn with_reference_values(self, rims: ReferenceValues) -> Self {
        Self {
            reference_values: Some(Arc::new(rims)),
            ..self
        }
    }

    /// The reference values (RIMs) of `[vendor] reference_values`, if configured.
    pub fn reference_values(&self) -> Option<&ReferenceValues> {
        self.reference_values.as_deref()
    }

    /// How many GPU device-identity roots `[vendor] device_roots` pins.
    pub fn device_roots_count(&self) -> usize {
        self.gpu_device.len()
    }

    /// Verifies a GPU device certificate chain (DER, leaf first, as the GPU sends it) against
    /// the pinned `[vendor] device_roots` at `at_unix`, remembering a success as
    /// [`Self::verify_node`] does. A root the GPU sends is never trusted: the path must end at
    /// a pinned root. No CRL is consulted (none is configured for this domain).
    pub fn verify_gpu_device(
        &self,
        chain_der: &[Vec<u8>],
        at_unix: i64,
    ) -> Result<VerifiedGpuDeviceChain, ChainError> {
        self.verify_remembered(chain_der, at_unix, Role::GpuDevice)
            .map(VerifiedGpuDeviceChain)
    }

    /// Anchors built from DER root certificates (for tests and embedders); each must be a CA
    /// ([`ChainError::RootNotCa`]) with a sound key.
    pub fn from_der_roots(
        operator: &[CertificateDer<'_>],
        licence_authority: &[CertificateDer<'_>],
    ) -> Result<Self, ChainError> {
        let anchors = |certs: &[CertificateDer<'_>]| {
            let mut roots = Roots::default();
            for cert in certs {
                roots.push(cert)?;
            }
            Ok::<_, ChainError>(roots)
        };
        Ok(Self {
            operator: anchors(operator)?,
            licence_authority: anchors(licence_authority)?,
            ..Self::default()
        })
    }

    /// Verifies a node certificate chain as [`verify_node_chain`] does with the operator
    /// CRLs, remembering a success for the instants at which it is certain to repeat (see
    /// the `cache` module): a node's next attestations then skip path validation.
    pub fn verify_node(
        &self,
        chain_der: &[Vec<u8>],
        at_unix: i64,
    ) -> Result<VerifiedNodeChain, ChainError> {
        self.verify_remembered(chain_der, at_unix, Role::Node)
            .map(VerifiedNodeChain)
    }

    /// Verifies a licence signer's chain as [`verify_licence_signer_chain`] does with the
    /// licence-authority CRLs, remembering a success; see [`Self::verify_node`].
    pub fn verify_licence_signer(
        &self,
        chain_der: &[Vec<u8>],
        at_unix: i64,
    ) -> Result<VerifiedLicenceSigner, ChainError> {
        self.verify_remembered(chain_der, at_unix, Role::LicenceSigner)
            .map(VerifiedLicenceSigner)
    }

    /// Verifies a shipment signer's chain (DER, leaf first, a shipment's `x5c`) against the
    /// pinned `[vendor] roots` only, with the `[vendor] crls`, at `at_unix`, remembering a
    /// success; see [`Self::verify_node`]. The operator, licence-authority and GPU device
    /// roots never validate a shipment signer, and a vendor root validates nothing else.
    pub fn verify_shipment_signer(
        &self,
        chain_der: &[Vec<u8>],
        at_unix: i64,
    ) -> Result<VerifiedShipmentSigner, ChainError> {
        self.verify_remembered(chain_der, at_unix, Role::ShipmentSigner)
            .map(VerifiedShipmentSigner)
    }

    /// Chains remembered by [`Self::verify_node`] and [`Self::verify_licence_signer`].
    pub fn remembered_chains(&self) -> usize {
        self.cache.len()
    }

    fn verify_remembered(
        &self,
        chain_der: &[Vec<u8>],
        at_unix: i64,
        role: Role,
    ) -> Result<VerifiedLeaf, ChainError> {
        let (anchors, crls): (_, &[CrlDer]) = match role {
            Role::Node => (&self.operator, &self.operator_crls),
            Role::LicenceSigner => (&self.licence_authority, &self.licence_authority_crls),
            Role::GpuDevice => (&self.gpu_device, &[]),
            Role::ShipmentSigner => (&self.vendor, &self.vendor_crls),
        };
        let key = ChainCache::key(role, chain_der);
        let cache = self.cache.of(role);
        if let Some(leaf) = cache.get(&key, at_unix) {
            return Ok(leaf);
        }
        let (leaf, root) = verify(chain_der, anchors, at_unix, crls, role)?;
        if let Some((from, until)) = validity_window(chain_der, crls) {
            // The root's own validity bounds the window too.
            let (from, until) = (from.max(root.not_before), until.min(root.not_after));
            cache.insert(key, leaf.clone(), from, until);
        }
        Ok(leaf)
    }

    /// These roots with `other`'s CRLs and a cache of their own (no chain remembered under
    /// the old CRLs is reused): how `serve` takes CRLs reloaded from trust.toml.
    pub fn with_crls_of(&self, other: &TrustAnchors) -> Self {
        Self {
            operator: self.operator.clone(),
            operator_crls: other.operator_crls.clone(),
            licence_authority: self.licence_authority.clone(),
            licence_authority_crls: other.licence_authority_crls.clone(),
            vendor: self.vendor.clone(),
            vendor_crls: other.vendor_crls.clone(),
            gpu_device: self.gpu_device.clone(),
            reference_values: self.reference_values.clone(),
            cache: Arc::default(),
        }
    }

    /// The operator CRLs (`[operator] crls`).
    pub fn operator_crls(&self) -> &[CrlDer] {
        &self.operator_crls
    }

    /// The shipment-signer CRLs (`[vendor] crls`).
    pub fn vendor_crls(&self) -> &[CrlDer] {
        &self.vendor_crls
    }

    /// The licence-authority CRLs (`[licence_authority] crls`).
    pub fn licence_authority_crls(&self) -> &[CrlDer] {
        &self.licence_authority_crls
    }

    /// How many roots each domain pins: operator, licence authority, vendor.
    pub fn counts(&self) -> (usize, usize, usize) {
        (
            self.operator.len(),
            self.licence_authority.len(),
            self.vendor.len(),
        )
    }
}

fn entry_error(trust: &Path, key: &str, file: &Path, reason: String) -> TrustError {
    TrustError::Entry {
        trust: trust.to_owned(),
        key: key.to_owned(),
        file: file.to_owned(),
        reason,
    }
}

fn load_roots(
    trust: &Path,
    base: &Path,
    key: &str,
    files: &[PathBuf],
) -> Result<Roots, TrustError> {
    let mut roots = Roots::default();
    for file in files {
        let pem = read_bounded(&base.join(file), MAX_PEM_FILE_BYTES)?;
        let certs = certs_from_pem(&pem).map_err(|r| entry_error(trust, key, file, r))?;
        for cert in &certs {
            roots.push(cert).map_err(|e| {
                entry_error(
                    trust,
                    key,
                    file,
                    format!("not a usable root ({}): {e}", e.code()),
                )
            })?;
        }
    }
    Ok(roots)
}

fn load_crls(
    trust: &Path,
    base: &Path,
    key: &str,
    files: &[PathBuf],
) -> Result<Vec<CrlDer>, TrustError> {
    let mut crls = Vec::new();
    for file in files {
        let bytes = read_bounded(&base.join(file), MAX_PEM_FILE_BYTES)?;
        let der = if bytes.starts_with(b"-----BEGIN") {
            CertificateRevocationListDer::from_pem_slice(&bytes)
                .map_err(|e| entry_error(trust, key, file, format!("not a PEM X509 CRL ({e})")))?
        } else {
            CertificateRevocationListDer::from(bytes)
        };
        OwnedCertRevocationList::from_der(&der).map_err(|e| {
            entry_error(
                trust,
                key,
                file,
                format!("not a valid CRL: {}", from_webpki(e)),
            )
        })?;
        crls.push(der);
    }
    Ok(crls)
}

/// Verifies a node certificate chain (leaf first, as in a JWS `x5c`) against the pinned
/// operator roots at Unix time `at_unix`, checking revocation against `crls` (every
/// certificate of the path that a CRL covers; a certificate no CRL covers passes).
pub fn verify_node_chain(
    chain_der: &[Vec<u8>],
    trust: &TrustAnchors,
    at_unix: i64,
    crls: &[CrlDer],
) -> Result<VerifiedNodeChain, ChainError> {
    verify(chain_der, &trust.operator, at_unix, crls, Role::Node)
        .map(|(leaf, _)| VerifiedNodeChain(leaf))
}

/// Verifies a licence signer's chain against the pinned licence-authority roots; see
/// [`verify_node_chain`].
pub fn verify_licence_signer_chain(
    chain_der: &[Vec<u8>],
    trust: &TrustAnchors,
    at_unix: i64,
    crls: &[CrlDer],
) -> Result<VerifiedLicenceSigner, ChainError> {
    verify(
        chain_der,
        &trust.licence_authority,
        at_unix,
        crls,
        Role::LicenceSigner,
    )
    .map(|(leaf, _)| VerifiedLicenceSigner(leaf))
}

/// Verifies a chain; gives the leaf's facts and those of the root the path ended at.
fn verify(
    chain_der: &[Vec<u8>],
    roots: &Roots,
    at_unix: i64,
    crls: &[CrlDer],
    role: Role,
) -> Result<(VerifiedLeaf, RootFacts), ChainError> {
    // Limits first, before any parsing: no longer than the pinned roots can use.
    let longest = roots.longest_chain();
    if chain_der.len() > longest {
        return Err(ChainError::ChainTooLong {
            len: chain_der.len(),
            max: longest,
        });
    }
    for (index, cert) in chain_der.iter().enumerate() {
        if cert.len() > MAX_CERT_BYTES {
            return Err(ChainError::CertTooLarge {
                index,
                len: cert.len(),
                max: MAX_CERT_BYTES,
            });
        }
    }
    let (leaf_der, intermediates) = chain_der.split_first().ok_or(ChainError::Empty)?;
    let secs = u64::try_from(at_unix).map_err(|_| ChainError::InvalidTime { at: at_unix })?;
    // Every Ed25519 key given, leaf first, before webpki trusts any of them to verify a
    // signature. A certificate that does not parse is left to webpki to name.
    for (index, der) in chain_der.iter().enumerate() {
        if let Ok(cert) = parse(der) {
            check_ed25519_key(&cert, index)?;
        }
    }
    let time = UnixTime::since_unix_epoch(Duration::from_secs(secs));

    let crls = crls
        .iter()
        .map(|der| {
            OwnedCertRevocationList::from_der(der)
                .map(CertRevocationList::from)
                .map_err(|_| ChainError::BadCrl)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let crl_refs: Vec<&CertRevocationList<'_>> = crls.iter().collect();
    let revocation = RevocationOptionsBuilder::new(&crl_refs).ok().map(|b| {
        b.with_depth(RevocationCheckDepth::Chain)
            .with_status_policy(UnknownStatusPolicy::Allow)
            .with_expiration_policy(ExpirationPolicy::Enforce)
            .build()
    });

    let leaf_cert = CertificateDer::from(leaf_der.as_slice());
    let intermediates: Vec<CertificateDer<'_>> = intermediates
        .iter()
        .map(|c| CertificateDer::from(c.as_slice()))
        .collect();
    // Name the extension webpki refused, and the purposes an EKU had to list.
    let refine = |e: webpki::Error| match from_webpki(e) {
        ChainError::WrongEku { .. } => ChainError::WrongEku {
            expected: role.eku_words(),
        },
        ChainError::UnknownCriticalExtension { .. } => chain_der
            .iter()
            .find_map(|der| unknown_critical_extension(der))
            .unwrap_or(ChainError::UnknownCriticalExtension {
                oid: "unknown".to_owned(),
            }),
        other => other,
    };
    // webpki keeps anchors as bare name and key: each candidate path is checked against its
    // root's validity and pathLenConstraint here, and webpki tries the next path if refused.
    // The first such refusal is kept: it is the error when no path is left.
    let root_refusal: RefCell<Option<ChainError>> = RefCell::new(None);
    let used_root: RefCell<Option<RootFacts>> = RefCell::new(None);
    // The leaf's issuer in the accepted path (a GPU's device certificate).
    let leaf_issuer: RefCell<Option<Vec<u8>>> = RefCell::new(None);
    let check_root = |path: &webpki::VerifiedPath<'_>| -> Result<(), webpki::Error> {
        let facts = roots
            .facts_of(path.anchor())
            .ok_or(webpki::Error::UnknownIssuer)?;
        match facts.admits(at_unix, path.intermediate_certificates().count()) {
            Ok(()) => {
                used_root.replace(Some(facts));
                leaf_issuer.replace(
                    path.intermediate_certificates()
                        .next()
                        .map(|cert| cert.der().to_vec()),
                );
                Ok(())
            }
            Err(refused) => {
                root_refusal.borrow_mut().get_or_insert(refused);
                Err(webpki::Error::UnknownIssuer)
            }
        }
    };
    let ee = EndEntityCert::try_from(&leaf_cert).map_err(refine)?;
    ee.verify_for_usage(
        SIG_ALGS,
        &roots.anchors,
        &intermediates,
        time,
        EkuPolicy(role),
        revocation,
        Some(&check_root),
    )
    .map_err(|e| root_refusal.take().unwrap_or_else(|| refine(e)))?;
    let root = used_root.take().ok_or(ChainError::UnknownIssuer)?;

    let mut leaf = check_leaf(leaf_der, role, chain_der.len())?;
    if matches!(role, Role::GpuDevice) {
        leaf.issuer = leaf_issuer
            .take()
            .map(|der| DeviceCertificate::read(&der))
            .transpose()?;
    }
    Ok((leaf, root))
}

/// Refuses a weak Ed25519 key in `cert`, at position `index` of its chain; other keys pass.
fn check_ed25519_key(cert: &X509Certificate<'_>, index: usize) -> Result<(), ChainError> {
    let spki = cert.public_key();
    if spki.algorithm.algorithm != OID_SIG_ED25519 {
        return Ok(());
    }
    match VerifyingKey::from_spki_der(spki.raw) {
        Err(JwsError::WeakPublicKey { problem }) => {
            Err(ChainError::WeakPublicKey { index, problem })
        }
        // Length and shape are webpki's and check_leaf's to refuse.
        _ => Ok(()),
    }
}

/// The instants (Unix seconds, inclusive) at which a chain verified once verifies again:
/// every certificate given is within its validity and every CRL before its nextUpdate. Path
/// building may have used fewer certificates than were given, so this window is never wider
/// than the true one. `None` when a date cannot be read: such a chain is not remembered.
fn validity_window(chain_der: &[Vec<u8>], crls: &[CrlDer]) -> Option<(i64, i64)> {
    let (mut from, mut until) = (i64::MIN, i64::MAX);
    for der in chain_der {
        let validity = parse(der).ok()?.validity().clone();
        from = from.max(validity.not_before.timestamp());
        until = until.min(validity.not_after.timestamp());
    }
    for der in crls {
        let (_, crl) = x509_parser::parse_x509_crl(der).ok()?;
        if let Some(next_update) = crl.next_update() {
            until = until.min(next_update.timestamp().checked_sub(1)?);
        }
    }
    Some((from, until))
}

/// Extensions this verifier (through webpki) understands when critical.
fn is_understood(oid: &x509_parser::der_parser::Oid<'_>) -> bool {
    [
        OID_X509_EXT_KEY_USAGE,
        OID_X509_EXT_EXTENDED_KEY_USAGE,
        OID_X509_EXT_BASIC_CONSTRAINTS,
        OID_X509_EXT_SUBJECT_ALT_NAME,
        OID_X509_EXT_NAME_CONSTRAINTS,
        OID_X509_EXT_CRL_DISTRIBUTION_POINTS,
    ]
    .contains(oid)
}

fn parse(der: &[u8]) -> Result<X509Certificate<'_>, ChainError> {
    match x509_parser::parse_x509_certificate(der) {
        Ok(([], cert)) => Ok(cert),
        Ok(_) => Err(ChainError::Malformed {
            detail: "trailing data after the certificate",
        }),
        Err(_) => Err(ChainError::Malformed { detail: "bad DER" }),
    }
}

fn unknown_critical_extension(der: &[u8]) -> Option<ChainError> {
    let cert = parse(der).ok()?;
    cert.extensions()
        .iter()
        .find(|ext| ext.critical && !is_understood(&ext.oid))
        .map(|ext| ChainError::UnknownCriticalExtension {
            oid: ext.oid.to_id_string(),
        })
}

/// The node id and certified site of a leaf certificate that was verified earlier (read back
/// from a stored token's `x5c`); no chain check. Public, hidden, for the `leaf_facts` fuzz
/// target; not part of the API.
#[doc(hidden)]
pub fn stored_leaf_facts(der: &[u8]) -> Result<(NodeId, Option<SiteId>), ChainError> {
    let cert = parse(der)?;
    Ok((
        NodeId::from_spki_der(cert.public_key().raw),
        certified_site(&cert)?,
    ))
}

/// The site a certificate certifies: the one SAN URI under
/// [`tppguard_proto::site::SITE_URI_PREFIX`]; `None`
/// without one; an error for an id outside the alphabet or for two such URIs.
fn certified_site(cert: &X509Certificate<'_>) -> Result<Option<SiteId>, ChainError> {
    let bad = |detail: String| ChainError::BadCertifiedSite { detail };
    let san = cert
        .subject_alternative_name()
        .map_err(|_| ChainError::Malformed {
            detail: "bad extension",
        })?;
    let mut found: Option<SiteId> = None;
    for name in san.iter().flat_map(|s| s.value.general_names.iter()) {
        let x509_parser::extensions::GeneralName::URI(uri) = name else {
            continue;
        };
        let Some(parsed) = SiteId::from_uri(uri) else {
            continue;
        };
        let site = parsed.map_err(|e| bad(escape(&e.to_string()).into_owned()))?;
        if let Some(first) = &found {
            return Err(bad(format!("two sites, {first} and {site}")));
        }
        found = Some(site);
    }
    Ok(found)
}

/// The leaf checks webpki leaves to its caller.
fn check_leaf(der: &[u8], role: Role, chain_len: usize) -> Result<VerifiedLeaf, ChainError> {
    let bad_ext = |_| ChainError::Malformed {
        detail: "bad extension",
    };
    let cert = parse(der)?;
    if let Some(e) = unknown_critical_extension(der) {
        return Err(e);
    }
    if cert
        .basic_constraints()
        .map_err(bad_ext)?
        .is_some_and(|bc| bc.value.ca)
    {
        return Err(ChainError::LeafIsCa);
    }
    match cert.key_usage().map_err(bad_ext)? {
        Some(ku) if ku.value.digital_signature() => {}
        _ => return Err(ChainError::MissingDigitalSignature),
    }
    if let Some(accepted) = role.accepted_ekus()
        && let Some(eku) = cert.extended_key_usage().map_err(bad_ext)?
    {
        let eku = eku.value;
        let standard = match role {
            Role::Node => eku.client_auth,
            Role::LicenceSigner | Role::ShipmentSigner => eku.code_signing,
            Role::GpuDevice => true,
        };
        let private = eku
            .other
            .iter()
            .any(|oid| accepted.contains(&oid.as_bytes()));
        if !standard && !private {
            return Err(ChainError::WrongEku {
                expected: role.eku_words(),
            });
        }
    }
    let spki = cert.public_key();
    let alg = &spki.algorithm;
    let key_algorithm = if alg.algorithm == OID_SIG_ED25519 {
        KeyAlgorithm::Ed25519
    } else if alg.algorithm == OID_KEY_TYPE_EC_PUBLIC_KEY {
        let curve = alg.parameters.as_ref().and_then(|p| p.as_oid().ok());
        match curve {
            Some(c) if c == OID_EC_P256 => KeyAlgorithm::P256,
            Some(c) if c == OID_NIST_EC_P384 => KeyAlgorithm::P384,
            other => {
                return Err(ChainError::UnsupportedKeyAlgorithm {
                    oid: format!(
                        "{} ({})",
                        alg.algorithm.to_id_string(),
                        other.map_or_else(|| "no curve".to_owned(), |c| c.to_id_string())
                    ),
                });
            }
        }
    } else {
        return Err(ChainError::UnsupportedKeyAlgorithm {
            oid: alg.algorithm.to_id_string(),
        });
    };
    if matches!(role, Role::GpuDevice) && key_algorithm != KeyAlgorithm::P384 {
        return Err(ChainError::UnsupportedKeyAlgorithm {
            oid: format!("{key_algorithm} (a GPU attestation key must be P-384)"),
        });
    }
    let certified_site = certified_site(&cert)?;
    let key = VerifyingKey::from_spki_der(spki.raw).map_err(|e| match e {
        JwsError::WeakPublicKey { problem } => ChainError::WeakPublicKey { index: 0, problem },
        _ => ChainError::UnsupportedKeyAlgorithm {
            oid: alg.algorithm.to_id_string(),
        },
    })?;
    Ok(VerifiedLeaf {
        spki_der: spki.raw.to_vec(),
        key,
        node_id: NodeId::from_spki_der(spki.raw),
        certified_site,
        key_algorithm,
        subject: cert.subject().to_string(),
        serial: cert.raw_serial_as_string(),
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
        chain_len,
        issuer: None,
    })
}

/// The certificates a set of CRLs revokes, by (issuer name, serial number) as DER bytes: how
/// the attestations already accepted are checked again when the CRLs change, without building
/// any chain (`serve`'s CRL reload). The CRLs are those pinned in trust.toml, already parsed
/// when loaded ([`TrustAnchors::from_trust_toml`]); chain validation checks their signatures.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RevokedSet(std::collections::HashSet<(Vec<u8>, Vec<u8>)>);

/// A revoked certificate found in a chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokedCert {
    /// Its subject, RFC 4514 style.
    pub subject: String,
    /// Its serial number, lower-case hex with colons.
    pub serial: String,
}

impl RevokedSet {
    /// Every entry of `crls` (a CRL that does not parse contributes nothing: it was checked
    /// when loaded).
    pub fn from_crls(crls: &[CrlDer]) -> Self {
        let mut set = std::collections::HashSet::new();
        for der in crls {
            let Ok((_, crl)) = x509_parser::parse_x509_crl(der) else {
                continue;
            };
            let issuer = crl.issuer().as_raw().to_vec();
            for entry in crl.iter_revoked_certificates() {
                set.insert((issuer.clone(), entry.raw_serial().to_vec()));
            }
        }
        Self(set)
    }

    /// Whether nothing is revoked.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How many certificates are revoked.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The first certificate of `x5c` (DER, leaf first) this set revokes; `None` when none
    /// is (a certificate that does not parse is not judged here: it was verified when its
    /// attestation was accepted).
    pub fn revoked_in(&self, x5c: &[Vec<u8>]) -> Option<RevokedCert> {
        if self.0.is_empty() {
            return None;
        }
        x5c.iter().find_map(|der| {
            let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
            let key = (cert.issuer().as_raw().to_vec(), cert.raw_serial().to_vec());
            self.0.contains(&key).then(|| RevokedCert {
                subject: cert.subject().to_string(),
                serial: cert.raw_serial_as_string(),
            })
        })
    }
}

#[cfg(test)]
mod tests;
