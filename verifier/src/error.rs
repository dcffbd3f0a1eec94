//! The verifier's errors. Each reads `<thing>: <reason>` and has a hint for the fix.

use std::path::PathBuf;

use tppguard_proto::jws::JwsError;
use tppguard_proto::licence::LicenceError;
use tppguard_proto::ruleset::RuleSetError;

use crate::chain::{ChainError, TrustError};
use crate::licence::LicenceVerifyError;
use tppguard_proto::tpp::Precision;

/// An error of a verifier command (all map to exit code 2). Messages quote outside text as
/// given: whoever shows one escapes it (`tppguard_proto::text`; the binary's `main` does).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `--model` names no row of the spec table.
    #[error("--model: no model \"{name}\" in the spec table")]
    UnknownModel {
        /// The name given.
        name: String,
        /// Close model names.
        suggestions: Vec<&'static str>,
    },
    /// `--tops` gives one precision twice.
    #[error("--tops: {precision} given more than once")]
    DuplicateTops {
        /// The precision.
        precision: Precision,
    },
    /// `--rule-set` is neither a shipped id nor an existing file.
    #[error("--rule-set: \"{arg}\" is neither a shipped rule set nor a file")]
    UnknownRuleSet {
        /// The argument.
        arg: String,
        /// Shipped ids, comma-separated.
        known: String,
    },
    /// A rule-set file could not be read.
    #[error("{}: cannot read rule set: {source}", path.display())]
    ReadRuleSet {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A rule-set file is invalid.
    #[error("{}: invalid rule set: {source}", path.display())]
    InvalidRuleSet {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: RuleSetError,
    },
    /// The shipped rule sets failed to load (a packaging bug).
    #[error("shipped rule sets: {0}")]
    Shipped(#[source] RuleSetError),
    /// A file `pki` would create already exists.
    #[error("{}: already exists; refusing to overwrite it", path.display())]
    Exists {
        /// The file.
        path: PathBuf,
    },
    /// A file or folder could not be created or written.
    #[error("{}: cannot {action}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What was tried.
        action: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A key or certificate could not be generated.
    #[error("{what}: cannot generate: {source}")]
    Generate {
        /// What.
        what: &'static str,
        /// Why.
        #[source]
        source: rcgen::Error,
    },
    /// A certificate signing request is unreadable or its signature does not verify.
    #[error("{}: invalid certificate signing request: {source}", path.display())]
    InvalidCsr {
        /// The CSR file.
        path: PathBuf,
        /// Why.
        #[source]
        source: rcgen::Error,
    },
    /// The operator CA's key or certificate cannot be used.
    #[error("{}: cannot use the CA: {source}", path.display())]
    CaUnusable {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: rcgen::Error,
    },
    /// A certificate file is not PEM certificates.
    #[error("{}: {reason}", path.display())]
    BadCertFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// trust.toml or a file it names cannot be loaded.
    #[error(transparent)]
    Trust(#[from] TrustError),
    /// A certificate chain was rejected.
    #[error("{}: certificate chain rejected ({}): {source}", path.display(), source.code())]
    ChainRejected {
        /// The chain file.
        path: PathBuf,
        /// Why.
        #[source]
        source: ChainError,
    },
    /// A licence TOML is invalid.
    #[error("{}: invalid licence ({}): {source}", path.display(), source.code())]
    InvalidLicence {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: LicenceError,
    },
    /// `licence revoke` was given a revocation that is not valid (lifecycle, issue 12).
    #[error("invalid revocation ({}): {source}", source.code())]
    InvalidRevocation {
        /// Why.
        #[source]
        source: tppguard_proto::licence::revocation::RevocationError,
    },
    /// A private-key file is not a usable PKCS#8 PEM key.
    #[error("{}: {reason}", path.display())]
    BadKeyFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The licence-signing key is not the key of its chain's leaf certificate.
    #[error(
        "{}: this key is not the key of the first certificate in {}",
        key.display(),
        chain.display()
    )]
    SignerKeyMismatch {
        /// The key file.
        key: PathBuf,
        /// The chain file.
        chain: PathBuf,
    },
    /// Signing failed (the token would be too large, or the random source failed).
    #[error("licence: cannot sign ({code}): {0}", code = .0.code())]
    Sign(#[source] JwsError),
    /// A signed licence cannot be verified.
    #[error("{}: licence rejected ({}): {}", path.display(), source.code(), source.sentence())]
    LicenceRejected {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: LicenceVerifyError,
    },
    /// A licence names a rule set that is not shipped (and no --rule-set was given).
    #[error("licence {licence}: names rule set \"{rule_set}\", which is not a shipped rule set")]
    LicenceRuleSetUnknown {
        /// The licence id.
        licence: String,
        /// The rule set it names.
        rule_set: String,
        /// Shipped ids, comma-separated.
        known: String,
    },
    /// `--ear` was given but there is no result-signing key.
    #[error("--ear-key: no result-signing key at {}", path.display())]
    EarKeyMissing {
        /// Where it was looked for.
        path: PathBuf,
    },
    /// The result-signing key is not a usable PKCS#8 PEM key.
    #[error("{}: cannot use as the result-signing key: {reason}", path.display())]
    EarKeyUnusable {
        /// The key file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Signing the EAR failed.
    #[error("--ear: cannot sign the result ({code}): {0}", code = .0.code())]
    EarSign(#[source] JwsError),
    /// A time outside what certificates can carry.
    #[error("time {unix}: outside the range of certificate times")]
    Clock {
        /// Unix seconds.
        unix: i64,
    },
    /// Writing the output failed.
    #[error("output: {0}")]
    Output(#[from] std::io::Error),
    /// Encoding JSON failed.
    #[error("output: cannot encode JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// The `serve` configuration is unusable.
    #[error("{}: {key}: {reason}", path.display())]
    Config {
        /// The configuration file.
        path: PathBuf,
        /// The key at fault (`listen`, `trust`, ...), or `file` for the whole file.
        key: &'static str,
        /// What is wrong.
        reason: String,
        /// How to fix it.
        hint: String,
    },
    /// The verifier's database could not be opened or used.
    #[error("{0}")]
    Store(#[from] crate::store::StoreError),
    /// `pki` refused a request (subject, key, issuance record, a CA file, a folder).
    #[error(transparent)]
    Pki(#[from] crate::pki::PkiError),
    /// A `token` command refused (issue 12).
    #[error(transparent)]
    Token(#[from] crate::token::TokenError),
    /// `gpu-evidence` could not run (issue 13).
    #[error(transparent)]
    GpuEvidence(#[from] crate::gpu_evidence::cli::GpuEvidenceCliError),
    /// A what-if scenario (`check --scenario`) could not be built (issue 14).
    #[error("--scenario: {0}")]
    Scenario(#[from] crate::scenario::ScenarioError),
    // Shipments (issue 15): `shipment sign` and `shipment show`.
    /// `shipment sign` was given a shipment TOML that is not valid.
    #[error("{}: invalid shipment ({}): {source}", path.display(), source.code())]
    InvalidShipment {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: tppguard_proto::shipment::ShipmentError,
    },
    /// A shipment file is not text.
    #[error("{}: {reason}", path.display())]
    BadShipmentFile {
        /// The file.
        path: PathBuf,
        /// Why, and the fix.
        reason: &'static str,
    },
    /// The shipment signer of `shipment sign --dir` cannot be used.
    #[error("shipment signer in {}: {source}", dir.display())]
    ShipmentSigner {
        /// The vendor's folder.
        dir: PathBuf,
        /// Why (the key or chain file's error).
        #[source]
        source: Box<Error>,
    },
    /// Signing a shipment failed.
    #[error("shipment: {0}")]
    ShipmentSign(#[source] crate::shipment::ShipmentSignError),
    /// A signed shipment cannot be verified.
    #[error("{}: shipment rejected ({}): {}", path.display(), source.code(), source.sentence())]
    ShipmentRejected {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: crate::shipment::ShipmentRejection,
    },
    /// The HTTP server could not start or stopped with an error.
    #[error("serve: {what}: {source}")]
    Serve {
        /// What was being done.
        what: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// A hint for the fix, printed under the message.
    pub fn hint(&self) -> Option<String> {
        match self {
            Self::UnknownModel { suggestions, .. } if !suggestions.is_empty() => Some(format!(
                "did you mean {}? `tppguard-verifier classify --list-models` lists every model",
                suggestions
                    .iter()
                    .map(|s| format!("{s:?}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            Self::UnknownModel { .. } => Some(
                "`tppguard-verifier classify --list-models` lists every model; or give the \
                 figures with --tops and --die-area"
                    .to_owned(),
            ),
            Self::DuplicateTops { .. } => Some("give each precision's rate once".to_owned()),
            Self::UnknownRuleSet { known, .. } => Some(format!(
                "shipped rule sets: {known}; or give the path of a rule-set TOML file \
                 (format: rules/README.md)"
            )),
            Self::ReadRuleSet { .. } => Some("check the path and its permissions".to_owned()),
            Self::InvalidRuleSet { .. } => {
                Some("the format is documented in rules/README.md".to_owned())
            }
            Self::Shipped(_) => Some("this is a bug in the build; please report it".to_owned()),
            Self::Exists { .. } => Some(
                "choose another --dir (or --out), or move the existing files away; keys are \
                 never overwritten"
                    .to_owned(),
            ),
            Self::Io { .. } => Some("check the path and its permissions".to_owned()),
            Self::Generate { .. } => Some("this is a bug; please report it".to_owned()),
            Self::InvalidCsr { .. } => Some(
                "make the CSR with `tppguard-agent init --dir NODE` (NODE/node.csr), or any \
                 PEM PKCS#10 request with an Ed25519, P-256 or P-384 key"
                    .to_owned(),
            ),
            Self::CaUnusable { .. } => Some(
                "--dir must be the operator's folder (`tppguard-verifier pki \
                     init-operator`, or DIR/operator of `pki init`)"
                    .to_owned(),
            ),
            Self::BadCertFile { .. } => {
                Some("give a PEM file of CERTIFICATE blocks, leaf first".to_owned())
            }
            Self::Trust(_) => Some(
                "trust.toml has [operator], [licence_authority] and [vendor] sections, each \
                 with roots = [PEM files] and optional crls = [CRL files], paths relative to \
                 trust.toml; `tppguard-verifier pki init-verifier` writes one"
                    .to_owned(),
            ),
            Self::ChainRejected { source, .. } => Some(chain_hint(source).to_owned()),
            Self::InvalidLicence { .. } => Some(
                "the licence format is documented in examples/README.md (example: \
                 examples/licence.toml)"
                    .to_owned(),
            ),
            Self::BadKeyFile { .. } | Self::SignerKeyMismatch { .. } => Some(
                "--dir must be the licence authority's folder (`tppguard-verifier pki \
                 init-licence-authority`, or DIR/licence-authority of `pki init`), or hold a \
                 licence-signer.key and licence-signer-chain.pem of your licence authority"
                    .to_owned(),
            ),
            Self::Sign(_) => Some("a licence is at most 64 KiB of TOML".to_owned()),
            Self::LicenceRejected { source, .. } => Some(licence_hint(source).to_owned()),
            Self::LicenceRuleSetUnknown { known, .. } => Some(format!(
                "shipped rule sets: {known}; name one or a rule-set file with --rule-set"
            )),
            Self::EarKeyMissing { .. } => Some(
                "give the verifier's result key with --ear-key KEY.pem (`pki init-verifier` \
                 writes verifier-result.key beside trust.toml)"
                    .to_owned(),
            ),
            Self::EarKeyUnusable { .. } => Some(
                "give a PKCS#8 PEM Ed25519, P-256 or P-384 private key (`pki init-verifier` \
                 writes verifier-result.key)"
                    .to_owned(),
            ),
            Self::EarSign(_) => Some("this is a bug; please report it".to_owned()),
            Self::Clock { .. } => Some("check the system clock and --days".to_owned()),
            Self::Config { hint, .. } => Some(hint.clone()),
            Self::Store(_) => Some(
                "check the `database` URL in the configuration, and that the database is \
                 reachable and writable"
                    .to_owned(),
            ),
            Self::Serve { .. } => Some(
                "check `listen` in the configuration: the address must be local and the port \
                 free"
                    .to_owned(),
            ),
            Self::Pki(e) => Some(e.hint().to_owned()),
            Self::Token(e) => Some(e.hint().to_owned()),
            Self::GpuEvidence(e) => Some(e.hint().to_owned()),
            Self::InvalidRevocation { .. } => Some(
                "--licence is the licence id (64 ASCII letters, digits and `-_.:/` at most) and \
                 --reason one line of at most 1024 characters"
                    .to_owned(),
            ),
            Self::Scenario(e) => Some(format!(
                "({}) `tppguard-verifier check --help` shows the three forms of --scenario, \
                 with examples",
                e.code()
            )),
            // Shipments (issue 15).
            Self::InvalidShipment { .. } | Self::BadShipmentFile { .. } => Some(
                "the shipment format is documented in examples/README.md (example: \
                 examples/shipment.toml)"
                    .to_owned(),
            ),
            Self::ShipmentSigner { .. } => Some(
                "--dir must be the GPU vendor's folder (`tppguard-verifier pki init-vendor`, or \
                 DIR/vendor of `pki init`), holding shipment-signer.key and \
                 shipment-signer-chain.pem"
                    .to_owned(),
            ),
            Self::ShipmentSign(_) => Some(
                "a signed shipment must fit 1 MiB: split a large delivery into several \
                 shipments"
                    .to_owned(),
            ),
            Self::ShipmentRejected { source, .. } => Some(
                match source.code() {
                    "shipment_chain" => {
                        "pin the vendor's CA (vendor-ca.pem) under [vendor] roots in trust.toml; \
                         operator, licence-authority and GPU device roots never validate a \
                         shipment signer"
                    }
                    "shipment_signature" => {
                        "the file was changed after signing: ask the vendor for the signed file \
                         as sent"
                    }
                    "shipment_payload" => {
                        "the vendor must re-sign a valid shipment (format: examples/README.md)"
                    }
                    _ => "give the .jws file `tppguard-verifier shipment sign` wrote",
                }
                .to_owned(),
            ),
            Self::Output(_) | Self::Json(_) => None,
        }
    }
}

/// The hint for a rejected chain.
fn chain_hint(e: &ChainError) -> &'static str {
    match e {
        ChainError::Expired { .. } | ChainError::NotYetValid { .. } => {
            "check the clocks, then reissue the node certificate (`pki issue-node`)"
        }
        ChainError::UnknownIssuer => {
            "the chain must end at a root pinned in trust.toml for this role, and include \
             every intermediate (leaf first)"
        }
        ChainError::LeafIsCa
        | ChainError::MissingDigitalSignature
        | ChainError::WrongEku { .. }
        | ChainError::UnknownCriticalExtension { .. } => {
            "issue the leaf with CA:false, digitalSignature and, if it has an EKU, clientAuth \
             (nodes) or codeSigning (licence signers)"
        }
        ChainError::Revoked => "the certificate is revoked: issue a new one",
        ChainError::CrlExpired { .. } => "fetch a current CRL from the CA",
        ChainError::RootExpired { .. } | ChainError::RootNotYetValid { .. } => {
            "the pinned root is outside its validity at this time: pin the CA's current root \
             in trust.toml (and check --at and the clocks)"
        }
        ChainError::RootNotCa => {
            "a file listed as a root in trust.toml is not a CA certificate: pin the CA's root"
        }
        ChainError::RootPathLenExceeded { .. } => {
            "the chain has more intermediates than the root's pathLenConstraint allows: issue \
             the leaf from a CA the root permits"
        }
        ChainError::WeakPublicKey { .. } => {
            "a key in the chain is a weak Ed25519 key (small order or not canonical): issue a \
             new key with `tppguard-agent init --force` and a new certificate"
        }
        ChainError::BadCertifiedSite { .. } => {
            "the certificate's site SAN URI is invalid: reissue it with `pki issue-node --site \
             ID` (1 to 64 ASCII letters, digits and `-_.:/`)"
        }
        _ => "check that the file is the chain the CA issued, leaf first",
    }
}

/// The hint for a signed licence that cannot be verified.
fn licence_hint(e: &LicenceVerifyError) -> &'static str {
    match e {
        LicenceVerifyError::Chain(ChainError::UnknownIssuer) => {
            "the licence must be signed by a licence-signing key whose chain ends at a root \
             pinned in trust.toml's [licence_authority]; operator (node) keys cannot sign \
             licences"
        }
        LicenceVerifyError::Chain(ChainError::Expired { .. } | ChainError::NotYetValid { .. }) => {
            "the signer's certificate is not valid at --at: check --at and the clocks"
        }
        LicenceVerifyError::Chain(_) => {
            "the signer's chain is rejected: check it with `tppguard-verifier pki verify-chain \
             --licence-signer`"
        }
        LicenceVerifyError::Licence(_) => {
            "the signed licence's contents are invalid: re-sign a valid licence TOML"
        }
        _ => {
            "the file is not a licence signed with `tppguard-verifier licence sign`, or it was \
             changed after signing"
        }
    }
}
