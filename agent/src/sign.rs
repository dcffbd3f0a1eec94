//! Attestation signing (`tppguard-agent attest`): the inventory [`Report`] as an
//! [`AttestationClaims`] set, signed with the node key as a compact JWS whose `x5c` header is
//! the node's certificate chain (DESIGN.md "Formats").
//!
//! The node folder holds `node.key` (PKCS#8 PEM, from `init`) and `node-chain.pem` (the node
//! certificate first, then its issuers, from `tppguard-verifier pki issue-node` or any CA).
//! The claims' `iss` is the leaf certificate's subject common name, so the verifier sees the
//! name its CA certified; a leaf without a common name falls back to the host name.
//!
//! The private key is held only as a [`SigningKey`], whose `Debug` shows the algorithm alone;
//! its PEM text is read into memory, decoded and dropped, and never logged.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivatePkcs8KeyDer};
use serde::Serialize;
use tppguard_proto::claims::{
    self, AgentClassification, AttestationClaims, ClaimsError, EvidenceTier, GpuSubmod, Nonce,
    Profile, measurement::Measurement,
};
use tppguard_proto::identity::NodeId;
use tppguard_proto::jws::{self, Alg, Header, JwsError, MAX_X5C_CERTS, SigningKey};
use tppguard_proto::site::{self, SiteId};

use crate::identity::{CHAIN_FILE, CSR_FILE, KEY_FILE};
use crate::inventory;
use crate::report::Report;

/// The attestation's default file name in the node folder.
pub const ATTESTATION_FILE: &str = "attestation.jws";
/// Largest key file read.
pub const MAX_KEY_FILE_BYTES: u64 = 64 * 1024;
/// Largest chain file read.
pub const MAX_CHAIN_FILE_BYTES: u64 = 256 * 1024;

/// Why an attestation could not be made. Each message reads `<thing>: <reason>`;
/// [`SignError::hint`] says how to fix it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignError {
    /// `--nonce` is not a valid challenge.
    #[error("--nonce")]
    BadNonce(#[source] ClaimsError),
    /// `--site` is outside the site id alphabet (the licences' `[[sites]] id`). The id is
    /// quoted as given: whoever shows the message escapes it (`tppguard_proto::text`).
    #[error("--site \"{site}\": a site id {}", site::ID_RULE)]
    BadSite {
        /// The id given (at most 64 characters of it).
        site: String,
    },
    /// The node key does not exist.
    #[error("{}: no node key", path.display())]
    KeyMissing {
        /// The key file.
        path: PathBuf,
    },
    /// The certificate chain does not exist.
    #[error("{}: no certificate chain for this node", path.display())]
    ChainMissing {
        /// The chain file.
        path: PathBuf,
        /// The CSR to send to the CA.
        csr: PathBuf,
    },
    /// A file could not be read or written.
    #[error("{}: cannot {action}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What was tried.
        action: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A file is larger than any key or chain.
    #[error("{}: is larger than {max} bytes", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The limit.
        max: u64,
    },
    /// The key file is not a PKCS#8 PEM private key.
    #[error("{}: not a PKCS#8 PEM private key (\"BEGIN PRIVATE KEY\")", path.display())]
    KeyNotPkcs8 {
        /// The key file.
        path: PathBuf,
    },
    /// The key is PKCS#8 but not an accepted algorithm (Ed25519, P-256, P-384).
    #[error("{}: not an Ed25519, P-256 or P-384 key", path.display())]
    KeyRejected {
        /// The key file.
        path: PathBuf,
        /// Why.
        #[source]
        source: JwsError,
    },
    /// The chain file holds no PEM certificate, or a malformed one.
    #[error("{}: {reason}", path.display())]
    BadChain {
        /// The chain file.
        path: PathBuf,
        /// Why.
        reason: &'static str,
    },
    /// The chain has more certificates than a JWS `x5c` takes.
    #[error("{}: {len} certificates, more than the {max} an attestation carries", path.display())]
    ChainTooLong {
        /// The chain file.
        path: PathBuf,
        /// Certificates in it.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The leaf certificate certifies another key than the node key.
    #[error("{}: the node certificate is for another key than {}", chain.display(), key.display())]
    KeyMismatch {
        /// The chain file.
        chain: PathBuf,
        /// The key file.
        key: PathBuf,
        /// The CSR to send to the CA again.
        csr: PathBuf,
    },
    /// No name for `iss`.
    #[error("node name: the node certificate has no common name and the host name is unknown")]
    NoIssuer,
    /// The system clock reads before 1970.
    #[error("clock: the system time is before 1970")]
    Clock,
    /// The claims could not be serialized.
    #[error("claims: cannot serialize")]
    Claims(#[source] ClaimsError),
    /// Signing failed.
    #[error("signing")]
    Sign(#[source] JwsError),
}

impl SignError {
    /// A hint for the fix.
    pub fn hint(&self) -> String {
        match self {
            Self::BadNonce(_) => "give the verifier's challenge as it issued it: 64 to 74 \
                                  lower-case hex characters (32 to 37 bytes)"
                .to_owned(),
            Self::BadSite { .. } => "use the site id your licences name in `[[sites]] id` (and \
                                     the operator CA certified for this node), e.g. --site fra-1"
                .to_owned(),
            Self::KeyMissing { path } => format!(
                "create it with: tppguard-agent init --dir {}",
                parent(path).display()
            ),
            Self::ChainMissing { path, csr }
            | Self::KeyMismatch {
                chain: path, csr, ..
            } => {
                format!(
                    "have the CA issue the node certificate; with tppguard's built-in PKI, on \
                     the verifier: tppguard-verifier pki issue-node --dir PKI --csr {} --out {}",
                    csr.display(),
                    path.display()
                )
            }
            Self::Io { .. } => "check the path and its permissions".to_owned(),
            Self::TooLarge { .. } | Self::KeyNotPkcs8 { .. } | Self::KeyRejected { .. } => {
                "point --dir at the node folder made by tppguard-agent init".to_owned()
            }
            Self::BadChain { .. } | Self::ChainTooLong { .. } => {
                "the file must hold the node certificate first, then its issuers, as PEM \
                 (what tppguard-verifier pki issue-node writes)"
                    .to_owned()
            }
            Self::NoIssuer => "issue the node certificate with a subject common name".to_owned(),
            Self::Clock => "set the system clock".to_owned(),
            Self::Claims(_) | Self::Sign(_) => "this is a bug; please report it".to_owned(),
        }
    }

    /// The message, its causes (`: `-separated) and the hint on a second line.
    pub fn render(&self) -> String {
        let mut text = self.to_string();
        let mut cause = std::error::Error::source(self);
        while let Some(c) = cause {
            text.push_str(": ");
            text.push_str(&c.to_string());
            cause = c.source();
        }
        format!("{text}\nhint: {}", self.hint())
    }
}

fn parent(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Checks `--nonce`.
pub fn parse_nonce(hex: &str) -> Result<Nonce, SignError> {
    Nonce::parse(hex).map_err(SignError::BadNonce)
}

/// Checks `--site` against the site id alphabet ([`SiteId::parse`]: 1 to 64 ASCII letters,
/// digits and `-_.:/`), the one licences, certificates and claims share.
pub fn parse_site(text: &str) -> Result<SiteId, SignError> {
    SiteId::parse(text).map_err(|e| SignError::BadSite { site: e.shown })
}

/// The node's signing credentials: its key and certificate chain. `Debug` never shows the key.
pub struct NodeCredentials {
    key: SigningKey,
    /// The key for the TLS client certificate (absent when made by [`Self::new`]).
    tls_key: Option<ureq::tls::PrivateKey<'static>>,
    /// The certificates, DER, leaf first.
    chain: Vec<Vec<u8>>,
    /// The leaf certificate's subject common name.
    common_name: Option<String>,
}

impl std::fmt::Debug for NodeCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeCredentials")
            .field("key", &self.key)
            .field("certificates", &self.chain.len())
            .field("common_name", &self.common_name)
            .finish_non_exhaustive()
    }
}

impl NodeCredentials {
    /// Reads `dir/node.key` and `dir/node-chain.pem`, and checks that the chain's leaf
    /// certifies the key.
    pub fn load(dir: &Path) -> Result<Self, SignError> {
        let key_path = dir.join(KEY_FILE);
        let chain_path = dir.join(CHAIN_FILE);
        let (key, tls_key) = read_key(&key_path)?;
        let chain = read_chain(&chain_path, dir)?;
        let leaf = chain.first().ok_or_else(|| SignError::BadChain {
            path: chain_path.clone(),
            reason: "no certificate",
        })?;
        let (_, cert) =
            x509_parser::parse_x509_certificate(leaf).map_err(|_| SignError::BadChain {
                path: chain_path.clone(),
                reason: "the first certificate cannot be read",
            })?;
        if *cert.public_key().subject_public_key.data != *key.verifying_key().raw() {
            return Err(SignError::KeyMismatch {
                chain: chain_path,
                key: key_path,
                csr: dir.join(CSR_FILE),
            });
        }
        let common_name = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .filter(|cn| !cn.trim().is_empty())
            .map(str::to_owned);
        tracing::debug!(
            alg = %key.alg(),
            certificates = chain.len(),
            common_name = ?common_name,
            "node credentials loaded"
        );
        Ok(Self {
            key,
            tls_key: Some(tls_key),
            chain,
            common_name,
        })
    }

    /// From a key and DER chain already in memory (tests, other key stores).
    pub fn new(key: SigningKey, chain: Vec<Vec<u8>>, common_name: Option<String>) -> Self {
        Self {
            key,
            tls_key: None,
            chain,
            common_name,
        }
    }

    /// The node id: the SHA-256 of the leaf certificate's SubjectPublicKeyInfo, the identity
    /// the verifier keeps this node under (`None` if the leaf cannot be read).
    pub fn node_id(&self) -> Option<NodeId> {
        let leaf = self.chain.first()?;
        let (_, cert) = x509_parser::parse_x509_certificate(leaf).ok()?;
        Some(NodeId::from_spki_der(cert.public_key().raw))
    }

    /// The chain and key as a TLS client certificate, for a verifier that admits nodes by
    /// mutual TLS (`None` when the key was not read from a file).
    pub fn tls_client_cert(&self) -> Option<ureq::tls::ClientCert> {
        let key = self.tls_key.as_ref()?.to_owned();
        let chain: Vec<_> = self
            .chain
            .iter()
            .map(|der| ureq::tls::Certificate::from_der(der).to_owned())
            .collect();
        Some(ureq::tls::ClientCert::new_with_certs(&chain, key))
    }

    /// The signature algorithm, from the key.
    pub fn alg(&self) -> Alg {
        self.key.alg()
    }

    /// The certificates, DER, leaf first.
    pub fn chain(&self) -> &[Vec<u8>] {
        &self.chain
    }

    /// The leaf certificate's subject common name.
    pub fn common_name(&self) -> Option<&str> {
        self.common_name.as_deref()
    }

    /// Signs `claims` as a compact JWS: `typ` [`claims::ATTESTATION_TYP`], `x5c` the chain.
    pub fn sign(&self, claims: &AttestationClaims) -> Result<String, SignError> {
        let payload = claims.to_json().map_err(SignError::Claims)?;
        let header = Header::new(self.key.alg())
            .with_typ(claims::ATTESTATION_TYP)
            .with_x5c(self.chain.clone());
        jws::sign(&header, &payload, &self.key).map_err(SignError::Sign)
    }
}

/// Reads a file of at most `max` bytes.
fn read_bounded(path: &Path, max: u64) -> Result<Vec<u8>, std::io::Error> {
    let file = std::fs::File::open(path)?;
    let mut bytes = Vec::new();
    file.take(max.saturating_add(1)).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// The node key, for signing and for TLS.
fn read_key(path: &Path) -> Result<(SigningKey, ureq::tls::PrivateKey<'static>), SignError> {
    let pem = match read_bounded(path, MAX_KEY_FILE_BYTES) {
        Ok(pem) => pem,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(SignError::KeyMissing {
                path: path.to_owned(),
            });
        }
        Err(source) => {
            return Err(SignError::Io {
                path: path.to_owned(),
                action: "read",
                source,
            });
        }
    };
    if u64::try_from(pem.len()).map_or(true, |len| len > MAX_KEY_FILE_BYTES) {
        return Err(SignError::TooLarge {
            path: path.to_owned(),
            max: MAX_KEY_FILE_BYTES,
        });
    }
    if let Ok(meta) = std::fs::metadata(path) {
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(
                key = %path.display(),
                mode = format_args!("{mode:o}"),
                "the node key is readable by other users; it should be mode 0600"
            );
        }
    }
    let der = PrivatePkcs8KeyDer::from_pem_slice(&pem).map_err(|_| SignError::KeyNotPkcs8 {
        path: path.to_owned(),
    })?;
    let key = SigningKey::from_pkcs8_any(der.secret_pkcs8_der()).map_err(|source| {
        SignError::KeyRejected {
            path: path.to_owned(),
            source,
        }
    })?;
    let tls_key = ureq::tls::PrivateKey::from_pem(&pem).map_err(|_| SignError::KeyNotPkcs8 {
        path: path.to_owned(),
    })?;
    Ok((key, tls_key))
}

fn read_chain(path: &Path, dir: &Path) -> Result<Vec<Vec<u8>>, SignError> {
    let pem = match read_bounded(path, MAX_CHAIN_FILE_BYTES) {
        Ok(pem) => pem,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(SignError::ChainMissing {
                path: path.to_owned(),
                csr: dir.join(CSR_FILE),
            });
        }
        Err(source) => {
            return Err(SignError::Io {
                path: path.to_owned(),
                action: "read",
                source,
            });
        }
    };
    if u64::try_from(pem.len()).map_or(true, |len| len > MAX_CHAIN_FILE_BYTES) {
        return Err(SignError::TooLarge {
            path: path.to_owned(),
            max: MAX_CHAIN_FILE_BYTES,
        });
    }
    let chain = CertificateDer::pem_slice_iter(&pem)
        .map(|c| c.map(|c| c.to_vec()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| SignError::BadChain {
            path: path.to_owned(),
            reason: "not PEM certificates",
        })?;
    if chain.is_empty() {
        return Err(SignError::BadChain {
            path: path.to_owned(),
            reason: "holds no PEM certificate",
        });
    }
    if chain.len() > MAX_X5C_CERTS {
        return Err(SignError::ChainTooLong {
            path: path.to_owned(),
            len: chain.len(),
            max: MAX_X5C_CERTS,
        });
    }
    Ok(chain)
}

/// Seconds since the Unix epoch, now (the agent is the imperative shell: proto reads no clock).
pub fn now() -> Result<i64, SignError> {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()
        .and_then(|d| i64::try_from(d.as_secs()).ok())
        .ok_or(SignError::Clock)
}

/// What goes into a claim set besides the inventory.
#[derive(Debug, Clone)]
pub struct ClaimsContext {
    /// The node's name (`iss`).
    pub iss: String,
    /// When (`iat`), seconds since the Unix epoch.
    pub iat: i64,
    /// The verifier's challenge.
    pub nonce: Nonce,
    /// The site id, when given.
    pub site: Option<SiteId>,
    /// The latest measurement of each GPU, by UUID (`measure --dir`); empty for none.
    pub measurements: BTreeMap<String, Measurement>,
    /// What the agent did about its lease (`tppguard.gating`, from NODE/gate-report.json);
    /// `None` with gating off.
    pub gating: Option<tppguard_proto::lease::GatingReport>,
}

/// How far above the spec a measured rate may be for the agent to call its evidence
/// `measured` (the shipped rule sets' default `exceeds_spec_percent`; the verifier decides
/// with its own rule set and licence).
const CONSISTENT_ABOVE_SPEC: f64 = 1.10;

/// Whether `gpu`'s measurement backs its identity at `iat`: the part is in the spec table, no
/// measured rate exceeds its spec figure beyond [`CONSISTENT_ABOVE_SPEC`], and the
/// measurement is no older than the shipped rule sets' default `max_age_days`.
fn consistent(gpu: &crate::report::ReportGpu, m: &Measurement, iat: i64) -> bool {
    let max_age_s =
        i64::from(tppguard_proto::ruleset::DEFAULT_MEASUREMENT_MAX_AGE_DAYS).saturating_mul(86_400);
    if m.started_at > iat || iat.saturating_sub(m.started_at) > max_age_s {
        return false;
    }
    let pci = gpu.gpu.pci.as_ref().map(|p| p.combined_device_id);
    let tppguard_proto::spec::SpecMatch::Found { spec, .. } =
        tppguard_proto::spec::lookup(pci, gpu.gpu.name.as_deref())
    else {
        return false;
    };
    !m.results.is_empty()
        && m.results.iter().all(|r| {
            spec.dense_tops
                .iter()
                .find(|(p, _)| *p == r.precision)
                .is_none_or(|(_, t)| r.tops_median <= t.as_f64() * CONSISTENT_ABOVE_SPEC)
        })
}

/// The claim set for an inventory: one submod per GPU with its latest measurement when
/// there is one, the host and driver, and whether the inventory was simulated. The evidence
/// tier is `measured` when every GPU has a measurement consistent with its spec, else
/// `declared`.
pub fn claims_from_report(report: &Report, context: ClaimsContext) -> AttestationClaims {
    let measurement_of = |g: &crate::report::ReportGpu| {
        g.gpu
            .uuid
            .as_ref()
            .and_then(|u| context.measurements.get(u))
    };
    let all_measured = !report.gpus.is_empty()
        && report
            .gpus
            .iter()
            .all(|g| measurement_of(g).is_some_and(|m| consistent(g, m, context.iat)));
    let submods: BTreeMap<String, GpuSubmod> = report
        .gpus
        .iter()
        .map(|g| {
            let mut s = submod(g);
            s.measurement = measurement_of(g).cloned();
            (claims::submod_name(g.gpu.index), s)
        })
        .collect();
    let h = &report.host;
    let d = &report.driver;
    AttestationClaims {
        iss: context.iss,
        iat: context.iat,
        eat_nonce: context.nonce,
        ueid: None,
        eat_profile: Profile,
        submods,
        host: claims::Host {
            hostname: h.hostname.clone(),
            machine_id: h.machine_id.clone(),
            os: h.os.clone(),
            kernel: h.kernel.clone(),
            cpu_arch: h.cpu_arch.clone(),
            cpu_model: h.cpu_model.clone(),
            cpu_count: count(h.cpu_count),
            physical_cores: h.physical_cores.map(count),
            memory_bytes: h.memory_bytes,
        },
        evidence_tier: if all_measured {
            EvidenceTier::Measured
        } else {
            EvidenceTier::Declared
        },
        driver: claims::Driver {
            driver_version: d.driver_version.clone(),
            nvml_version: d.nvml_version.clone(),
            cuda_driver_version: d.cuda_driver_version.clone(),
            confidential_computing: d.confidential_computing.map(|cc| {
                claims::ConfidentialComputing {
                    enabled: cc.enabled,
                    dev_tools_mode: cc.dev_tools_mode,
                    multi_gpu_protected_pcie: cc.multi_gpu_protected_pcie,
                    gpus_ready: cc.gpus_ready,
                }
            }),
            absent: absences(&d.absent),
        },
        site: context.site.map(|s| s.as_str().to_owned()),
        simulated: report.source.simulated,
        gating: context.gating,
    }
}

fn count(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

fn submod(g: &crate::report::ReportGpu) -> GpuSubmod {
    let gpu = &g.gpu;
    let c = &g.classification;
    GpuSubmod {
        index: gpu.index,
        status: match gpu.status {
            inventory::GpuStatus::Ok => claims::GpuStatus::Ok,
            inventory::GpuStatus::Lost => claims::GpuStatus::Lost,
            inventory::GpuStatus::Unreadable => claims::GpuStatus::Unreadable,
        },
        uuid: gpu.uuid.clone(),
        serial: gpu.serial.clone(),
        name: gpu.name.clone(),
        brand: gpu.brand.clone(),
        board_part_number: gpu.board_part_number.clone(),
        pci: gpu.pci.as_ref().map(|p| claims::Pci {
            bus_id: p.bus_id.clone(),
            vendor_id: p.vendor_id.clone(),
            device_id: p.device_id.clone(),
            subsystem_id: p.subsystem_id.clone(),
        }),
        architecture: gpu.architecture.clone(),
        cuda_compute_capability: gpu.cuda_compute_capability.clone(),
        multiprocessor_count: gpu.multiprocessor_count,
        memory_total_bytes: gpu.memory_total_bytes,
        max_sm_clock_mhz: gpu.max_sm_clock_mhz,
        max_memory_clock_mhz: gpu.max_memory_clock_mhz,
        power_limit_mw: gpu.power_limit_mw,
        vbios_version: gpu.vbios_version.clone(),
        mig: gpu.mig.as_ref().map(|m| claims::Mig {
            current_enabled: m.current_enabled,
            pending_enabled: m.pending_enabled,
            instances: m
                .instances
                .iter()
                .map(|i| claims::MigInstance {
                    index: i.index,
                    uuid: i.uuid.clone(),
                    name: i.name.clone(),
                    gpu_instance_id: i.gpu_instance_id,
                    compute_instance_id: i.compute_instance_id,
                    multiprocessor_count: i.multiprocessor_count,
                    memory_total_bytes: i.memory_total_bytes,
                    absent: absences(&i.absent),
                })
                .collect(),
            absent: absences(&m.absent),
        }),
        absent: absences(&gpu.absent),
        classification: AgentClassification {
            tpp: c.tpp.map(|t| t.as_f64()),
            tpp_basis: c.tpp_basis.map(|p| p.code().to_owned()),
            performance_density: c.performance_density.map(|p| p.as_f64()),
            eccn: c.eccn.clone(),
        },
        measurement: None,
        gpu_evidence: None,
    }
}

fn absences(absent: &inventory::Absences) -> claims::Absences {
    absent
        .iter()
        .map(|(field, a)| {
            let reason = match a.reason {
                inventory::AbsentReason::NotSupported => claims::AbsentReason::NotSupported,
                inventory::AbsentReason::NoPermission => claims::AbsentReason::NoPermission,
                inventory::AbsentReason::DriverLacksFunction => {
                    claims::AbsentReason::DriverLacksFunction
                }
                inventory::AbsentReason::SymbolMissing => claims::AbsentReason::SymbolMissing,
                inventory::AbsentReason::GpuLost => claims::AbsentReason::GpuLost,
                inventory::AbsentReason::Error => claims::AbsentReason::Error,
            };
            (
                (*field).to_owned(),
                claims::Absence {
                    reason,
                    detail: a.detail.clone(),
                },
            )
        })
        .collect()
}

/// Writes the compact JWS to `path` (mode 0644: an attestation is not secret), replacing an
/// older one.
pub fn write_attestation(path: &Path, jws: &str) -> Result<(), SignError> {
    let io = |action, source| SignError::Io {
        path: path.to_owned(),
        action,
        source,
    };
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .open(path)
        .map_err(|e| io("create", e))?;
    file.write_all(jws.as_bytes())
        .and_then(|()| file.write_all(b"\n"))
        .and_then(|()| file.sync_all())
        .map_err(|e| io("write", e))
}

/// What `attest` signed, for its summary.
#[derive(Debug, Serialize)]
pub struct AttestSummary {
    /// Where the JWS was written.
    pub out: PathBuf,
    /// `iss`.
    pub node: String,
    /// `iat`.
    pub iat: i64,
    /// The signature algorithm.
    pub alg: &'static str,
    /// Certificates in `x5c`.
    pub x5c_certificates: usize,
    /// GPUs (submods).
    pub gpus: usize,
    /// The node's spec TPP (the agent's figure; the verifier recomputes it).
    pub node_tpp: f64,
    /// The node's TPP in H100-equivalents.
    pub h100_equivalents: f64,
    /// The node's ECCN under the in-force rule set.
    pub eccn: Option<String>,
    /// `eat_nonce`.
    pub nonce: String,
    /// `tppguard.site`.
    pub site: Option<String>,
    /// `tppguard.evidence_tier`.
    pub evidence_tier: EvidenceTier,
    /// True when no real GPU was read.
    pub simulated: bool,
    /// The simulated fixture, when simulated.
    pub fixture: Option<String>,
    /// Per GPU: whether its submod carries hardware evidence, or why not.
    pub gpu_evidence: Vec<crate::gpu_evidence::SummaryLine>,
}

impl AttestSummary {
    /// The summary of `claims`, signed from `report` by `credentials` into `out`.
    pub fn new(
        out: PathBuf,
        claims: &AttestationClaims,
        report: &Report,
        credentials: &NodeCredentials,
    ) -> Self {
        Self {
            out,
            node: claims.iss.clone(),
            iat: claims.iat,
            alg: credentials.alg().name(),
            x5c_certificates: credentials.chain().len(),
            gpus: claims.submods.len(),
            node_tpp: report.node.tpp.as_f64(),
            h100_equivalents: report.node.h100_equivalents.as_f64(),
            eccn: report.node.eccn.clone(),
            nonce: claims.eat_nonce.as_str().to_owned(),
            site: claims.site().map(str::to_owned),
            evidence_tier: claims.evidence_tier,
            simulated: claims.simulated,
            fixture: report.source.fixture.clone(),
            gpu_evidence: crate::gpu_evidence::summary(claims),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::Host;
    use crate::nvml::{LibrarySource, Session};
    use crate::simulate::SimulatedDriver;

    const NONCE: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

    fn simulated_report() -> Report {
        let driver = SimulatedDriver::install("dgx-h100").unwrap();
        let session = Session::open(LibrarySource::Simulated(driver)).unwrap();
        let gpus = inventory::collect(&session.nvml).unwrap();
        Report::new(&session, Host::read(), gpus).unwrap()
    }

    fn context() -> ClaimsContext {
        ClaimsContext {
            iss: "gpu-node-01".into(),
            iat: 1_790_000_000,
            nonce: Nonce::parse(NONCE).unwrap(),
            site: Some(SiteId::parse("fra-1").unwrap()),
            measurements: BTreeMap::new(),
            gating: None,
        }
    }

    #[test]
    fn claims_mirror_the_simulated_dgx_h100() {
        let report = simulated_report();
        let claims = claims_from_report(&report, context());
        assert_eq!(claims.submods.len(), 8);
        for (g, (name, submod)) in report.gpus.iter().zip(&claims.submods) {
            assert_eq!(*name, claims::submod_name(g.gpu.index));
            assert_eq!(submod.uuid, g.gpu.uuid);
            assert!(
                submod
                    .uuid
                    .as_deref()
                    .is_some_and(|u| u.starts_with("GPU-"))
            );
            assert_eq!(submod.classification.eccn.as_deref(), Some("3A090.a"));
            assert_eq!(submod.classification.tpp_basis.as_deref(), Some("fp8"));
        }
        let inventory_uuids: Vec<_> = report.gpus.iter().map(|g| g.gpu.uuid.clone()).collect();
        let mut claim_uuids: Vec<_> = claims.submods.values().map(|s| s.uuid.clone()).collect();
        let mut expected = inventory_uuids.clone();
        expected.sort();
        claim_uuids.sort();
        assert_eq!(claim_uuids, expected);
        assert!(claims.simulated);
        assert_eq!(claims.site(), Some("fra-1"));
        assert_eq!(claims.evidence_tier, EvidenceTier::Declared);
        // What the agent builds is what a verifier accepts.
        let bytes = claims.to_json().unwrap();
        assert_eq!(AttestationClaims::from_json(&bytes).unwrap(), claims);
    }

    #[test]
    fn sign_decode_verify_round_trip() {
        let report = simulated_report();
        let claims = claims_from_report(&report, context());
        for alg in Alg::ALL {
            let der = SigningKey::generate_pkcs8(alg).unwrap();
            let key = SigningKey::from_pkcs8_any(&der).unwrap();
            let verifying = key.verifying_key();
            let chain = vec![b"leaf".to_vec(), b"root".to_vec()];
            let credentials = NodeCredentials::new(key, chain.clone(), None);
            let token = credentials.sign(&claims).unwrap();
            let unverified = jws::decode(&token).unwrap();
            assert_eq!(
                unverified.header().typ.as_deref(),
                Some(claims::ATTESTATION_TYP)
            );
            assert_eq!(unverified.header().alg, alg);
            assert_eq!(unverified.header().x5c, chain);
            let verified = unverified.verify(&verifying).unwrap();
            let back = AttestationClaims::from_json(verified.payload()).unwrap();
            assert_eq!(back, claims, "{alg}");
        }
    }

    #[test]
    fn credentials_debug_never_shows_the_key() {
        let der = SigningKey::generate_pkcs8(Alg::EdDSA).unwrap();
        let credentials =
            NodeCredentials::new(SigningKey::from_pkcs8_any(&der).unwrap(), Vec::new(), None);
        let shown = format!("{credentials:?}");
        assert!(shown.contains("EdDSA"), "{shown}");
        assert!(
            !shown.contains("Ed25519KeyPair") && !shown.contains("pair"),
            "{shown}"
        );
    }

    #[test]
    fn nonce_and_site_checks() {
        assert!(parse_nonce(NONCE).is_ok());
        let e = parse_nonce("abcd").unwrap_err();
        assert!(e.render().starts_with("--nonce: "), "{}", e.render());
        assert!(e.render().contains("at least 32"), "{}", e.render());
        assert!(e.render().contains("\nhint: "), "{}", e.render());
        assert!(matches!(
            parse_nonce(&NONCE.to_uppercase()),
            Err(SignError::BadNonce(ClaimsError::BadNonce))
        ));
        assert_eq!(parse_site("fra-1").unwrap().as_str(), "fra-1");
        assert!(parse_site(&"x".repeat(64)).is_ok());
        for bad in ["", " ", " fra", "a\nb", "fra 1", "é", &"x".repeat(65)] {
            assert!(parse_site(bad).is_err(), "{bad:?}");
        }
        let e = parse_site("fra\u{1b}[2J1").unwrap_err().render();
        assert!(
            e.starts_with("--site \"fra\u{1b}[2J1\": a site id must be 1 to 64"),
            "{e}"
        );
        assert!(e.contains("\nhint: ") && e.contains("[[sites]] id"), "{e}");
    }

    #[test]
    fn missing_files_name_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let e = NodeCredentials::load(dir.path()).unwrap_err();
        assert!(matches!(e, SignError::KeyMissing { .. }), "{e}");
        assert!(e.render().contains("tppguard-agent init"), "{}", e.render());
        crate::identity::init(
            dir.path(),
            crate::identity::KeyType::Ed25519,
            "n",
            None,
            false,
        )
        .unwrap();
        let e = NodeCredentials::load(dir.path()).unwrap_err();
        assert!(matches!(e, SignError::ChainMissing { .. }), "{e}");
        let text = e.render();
        assert!(
            text.contains(CHAIN_FILE) && text.contains("pki issue-node"),
            "{text}"
        );
        std::fs::write(dir.path().join(CHAIN_FILE), "not pem").unwrap();
        let e = NodeCredentials::load(dir.path()).unwrap_err();
        assert!(matches!(e, SignError::BadChain { .. }), "{e}");
    }

    #[test]
    fn a_certificate_for_another_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        crate::identity::init(
            dir.path(),
            crate::identity::KeyType::Ed25519,
            "n",
            None,
            false,
        )
        .unwrap();
        // A self-signed certificate for a different key.
        let other = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["n".to_owned()])
            .unwrap()
            .self_signed(&other)
            .unwrap();
        std::fs::write(dir.path().join(CHAIN_FILE), cert.pem()).unwrap();
        let e = NodeCredentials::load(dir.path()).unwrap_err();
        assert!(matches!(e, SignError::KeyMismatch { .. }), "{e}");
        assert!(e.render().contains("pki issue-node"), "{}", e.render());
    }
}
