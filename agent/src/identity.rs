//! The node's identity: its signing key and the certificate signing request for it
//! (`tppguard-agent init`).
//!
//! `NODE/node.key` is the private key as PKCS#8 v1 PEM (RFC 8410 for Ed25519: the form
//! OpenSSL 3 and pyca/cryptography read), created with mode 0600 from the start
//! (`O_CREAT | O_EXCL`, never chmod-ed after writing) and never logged; `NODE/node.csr` is a
//! PKCS#10 request whose subject CN is `<host name>-<node id prefix>` (or `--name`) and whose
//! subject alternative name carries `urn:tppguard:node:<machine-id>` when the OS keeps a
//! machine id. Any CA can sign it; `tppguard-verifier pki issue-node` is the built-in one.
//!
//! That SAN is a hint for whoever reviews the request, not an identity: `pki issue-node` copies
//! no SAN from a CSR (the leaf's one SAN is the site the operator certifies), and the verifier
//! never reads it from a certificate. The node is its key; the machine id reaches the verifier
//! in every attestation (`machine_id` in `tppguard.host`), where one key on two machines is a finding.
//!
//! The default name carries the first 12 hex digits of the node id (the SHA-256 of the new
//! key's SubjectPublicKeyInfo): cloned images share host names and `/etc/machine-id`, and two
//! hosts must never collide by accident under one subject.

use std::fmt;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, PublicKeyData as _, SanType};
use serde::Serialize;
use tppguard_proto::identity::NodeId;
use tppguard_proto::jws::{Alg, SigningKey};

/// The private key's file name in the node folder.
pub const KEY_FILE: &str = "node.key";
/// The CSR's file name in the node folder.
pub const CSR_FILE: &str = "node.csr";
/// The chain's file name in the node folder, once issued.
pub const CHAIN_FILE: &str = "node-chain.pem";

/// The node key's algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum KeyType {
    /// Ed25519 (JWS `EdDSA`), the default.
    #[default]
    Ed25519,
    /// ECDSA P-256 (JWS `ES256`), for CAs or HSM policies that need NIST curves.
    P256,
}

impl KeyType {
    fn algorithm(self) -> &'static rcgen::SignatureAlgorithm {
        match self {
            Self::Ed25519 => &rcgen::PKCS_ED25519,
            Self::P256 => &rcgen::PKCS_ECDSA_P256_SHA256,
        }
    }
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Ed25519 => "Ed25519",
            Self::P256 => "P-256",
        })
    }
}

/// The node's private key. Its `Debug` shows the algorithm only, never the key.
pub struct NodeKey {
    key_type: KeyType,
    pair: KeyPair,
}

impl fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeKey")
            .field("key_type", &self.key_type)
            .field("private_key", &"<redacted>")
            .finish()
    }
}

impl NodeKey {
    /// Generates a fresh key, held as PKCS#8 v1 (ring writes Ed25519 as v2, which OpenSSL 3
    /// refuses; ECDSA keys are v1 already).
    pub fn generate(key_type: KeyType) -> Result<Self, IdentityError> {
        let pair = match key_type {
            KeyType::Ed25519 => {
                let der = SigningKey::generate_pkcs8(Alg::EdDSA)
                    .map_err(|_| IdentityError::Generate(rcgen::Error::RingUnspecified))?;
                KeyPair::try_from(der.as_slice()).map_err(IdentityError::Generate)?
            }
            KeyType::P256 => {
                KeyPair::generate_for(key_type.algorithm()).map_err(IdentityError::Generate)?
            }
        };
        Ok(Self { key_type, pair })
    }

    /// The node id: SHA-256 of the key's SubjectPublicKeyInfo, as the verifier computes it
    /// from the certificate.
    pub fn node_id(&self) -> NodeId {
        NodeId::from_spki_der(&self.pair.subject_public_key_info())
    }

    /// The key's algorithm.
    pub fn key_type(&self) -> KeyType {
        self.key_type
    }

    /// The public key, PEM (SubjectPublicKeyInfo).
    pub fn public_key_pem(&self) -> String {
        self.pair.public_key_pem()
    }
}

/// Why `init` failed. Each message reads `<thing>: <reason>`; [`IdentityError::hint`] says
/// how to fix it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// A node key exists and `--force` was not given.
    #[error("{}: a node key already exists; refusing to overwrite it", path.display())]
    KeyExists {
        /// The key file.
        path: PathBuf,
    },
    /// A file or folder could not be created or written.
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
    /// No host name to use as the subject.
    #[error("node name: the host name is unknown")]
    NoName,
    /// The host name is not usable in a certificate subject.
    #[error("node name: the host name \"{host}\" is empty, too long or not printable")]
    BadHostName {
        /// The host name, escaped.
        host: String,
    },
    /// The name is not usable in a certificate.
    #[error("--name {name:?}: {reason}")]
    BadName {
        /// The name.
        name: String,
        /// Why.
        reason: &'static str,
    },
    /// Key or CSR generation failed.
    #[error("node key: cannot generate")]
    Generate(#[source] rcgen::Error),
}

impl IdentityError {
    /// A hint for the fix.
    pub fn hint(&self) -> &'static str {
        match self {
            Self::KeyExists { .. } => {
                "keep it (its CSR is node.csr beside it), or pass --force to replace it; the \
                 node's certificate must then be issued again"
            }
            Self::Io { .. } => "check the path and its permissions",
            Self::NoName | Self::BadHostName { .. } => "give the node's name with --name",
            Self::BadName { .. } => "use the host name, e.g. --name gpu-node-01",
            Self::Generate(_) => "this is a bug; please report it",
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

/// What `init` wrote.
#[derive(Debug, Serialize)]
pub struct InitReport {
    /// The private key file (mode 0600).
    pub key: PathBuf,
    /// The CSR file.
    pub csr: PathBuf,
    /// The key's algorithm.
    pub key_type: KeyType,
    /// The CSR's subject common name.
    pub name: String,
    /// The node id: SHA-256 of the new key's SubjectPublicKeyInfo, the identity the verifier
    /// keeps this node under.
    pub node_id: NodeId,
    /// The `urn:tppguard:node:` URI in the CSR, when a machine id was found: a hint for the
    /// CA's reviewer, which `pki issue-node` does not copy into the certificate.
    pub node_uri: Option<String>,
    /// Whether an existing key was replaced (`--force`).
    pub replaced: bool,
    /// The command that issues the certificate with the built-in PKI.
    pub next: String,
}

/// The most characters of a node name.
const MAX_NAME_CHARS: usize = 64;

/// Where the CSR's subject common name comes from.
#[derive(Debug, Clone, Copy)]
pub enum NodeName<'a> {
    /// `--name`, used as given.
    Given(&'a str),
    /// The host name: the subject is `<host name>-<first 12 hex digits of the node id>`, so
    /// cloned hosts with one host name never share a subject.
    Host(&'a str),
}

/// Creates `dir/node.key` and `dir/node.csr` for a node called `name` (the CSR subject CN)
/// with the given machine id. An existing key is an error unless `force`.
pub fn init(
    dir: &Path,
    key_type: KeyType,
    name: &str,
    machine_id: Option<&str>,
    force: bool,
) -> Result<InitReport, IdentityError> {
    init_named(dir, key_type, NodeName::Given(name), machine_id, force)
}

/// The name a host called `host` gets with the key `node_id`: the host name (its first
/// characters, as many as fit in 64 with the suffix), `-`, the node id's first 12 digits.
pub fn default_name(host: &str, node_id: &NodeId) -> String {
    let short = node_id.short();
    let room = MAX_NAME_CHARS.saturating_sub(short.len()).saturating_sub(1);
    let host: String = host.trim().chars().take(room).collect();
    format!("{host}-{short}")
}

/// Creates `dir/node.key` and `dir/node.csr` as [`init`] does, the subject from `name`.
pub fn init_named(
    dir: &Path,
    key_type: KeyType,
    name: NodeName<'_>,
    machine_id: Option<&str>,
    force: bool,
) -> Result<InitReport, IdentityError> {
    match name {
        NodeName::Given(given) => validate_name(given)?,
        NodeName::Host(host) => validate_name(host).map_err(|_| IdentityError::BadHostName {
            host: tppguard_proto::text::escape(host).into_owned(),
        })?,
    }
    let key_path = dir.join(KEY_FILE);
    let csr_path = dir.join(CSR_FILE);
    let replaced = key_path.exists();
    if replaced && !force {
        return Err(IdentityError::KeyExists { path: key_path });
    }
    std::fs::create_dir_all(dir).map_err(|source| IdentityError::Io {
        path: dir.to_owned(),
        action: "create the folder",
        source,
    })?;

    let key = NodeKey::generate(key_type)?;
    let node_id = key.node_id();
    let name = match name {
        NodeName::Given(given) => given.to_owned(),
        NodeName::Host(host) => default_name(host, &node_id),
    };
    let name = name.as_str();
    // Kept in the CSR on purpose, though no certificate tppguard issues carries it: it lets an
    // operator match a request to the host it came from (the same machine id the node's
    // attestations report), and it cannot do harm, since neither `pki issue-node` nor the
    // verifier takes identity from a CSR or certificate SAN. A third-party CA that copies it
    // certifies nothing tppguard relies on.
    let node_uri = machine_id
        .map(str::trim)
        .filter(|id| !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(|id| format!("urn:tppguard:node:{}", id.to_ascii_lowercase()));
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, name);
    if let Some(uri) = &node_uri {
        let uri = uri.clone().try_into().map_err(IdentityError::Generate)?;
        params.subject_alt_names = vec![SanType::URI(uri)];
    }
    let csr = params
        .serialize_request(&key.pair)
        .and_then(|c| c.pem())
        .map_err(IdentityError::Generate)?;

    write_key(&key_path, &key, force)?;
    write_public(&csr_path, csr.as_bytes())?;
    tracing::debug!(key = %key_path.display(), key_type = %key_type, "node key written");
    Ok(InitReport {
        next: format!(
            "tppguard-verifier pki issue-node --dir PKI --csr {} --out {}",
            csr_path.display(),
            dir.join(CHAIN_FILE).display()
        ),
        key: key_path,
        csr: csr_path,
        key_type,
        name: name.to_owned(),
        node_id,
        node_uri,
        replaced,
    })
}

fn validate_name(name: &str) -> Result<(), IdentityError> {
    let bad = |reason| IdentityError::BadName {
        name: name.to_owned(),
        reason,
    };
    if name.trim().is_empty() {
        return Err(bad("is empty"));
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(bad("is longer than 64 characters"));
    }
    if matches!(
        tppguard_proto::text::escape(name),
        std::borrow::Cow::Owned(_)
    ) {
        return Err(bad(
            "has control characters, a backslash or bidirectional controls",
        ));
    }
    Ok(())
}

/// Writes the key with mode 0600 from creation. Without `force` the file must not exist
/// (`O_EXCL`); with it, the key goes to a fresh temporary file (also 0600) renamed over the
/// old one, so an old file's looser mode is never inherited.
fn write_key(path: &Path, key: &NodeKey, force: bool) -> Result<(), IdentityError> {
    let target = if force {
        path.with_file_name(format!(".{KEY_FILE}.tmp-{}", std::process::id()))
    } else {
        path.to_owned()
    };
    let io = |action, source| IdentityError::Io {
        path: target.clone(),
        action,
        source,
    };
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&target)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists && !force {
                IdentityError::KeyExists {
                    path: path.to_owned(),
                }
            } else {
                io("create", e)
            }
        })?;
    let written = file
        .write_all(key.pair.serialize_pem().as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| io("write", e))
        .and_then(|()| {
            if force {
                std::fs::rename(&target, path).map_err(|source| IdentityError::Io {
                    path: path.to_owned(),
                    action: "replace",
                    source,
                })
            } else {
                Ok(())
            }
        });
    if written.is_err() {
        // Leave no partial key behind (best effort: the error above is the one to report).
        let _ = std::fs::remove_file(&target);
    }
    written
}

fn write_public(path: &Path, bytes: &[u8]) -> Result<(), IdentityError> {
    let io = |source| IdentityError::Io {
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
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn writes_a_0600_key_and_a_csr_with_the_node_uri() {
        let dir = tempfile::tempdir().unwrap();
        let node = dir.path().join("node");
        let id = "0123456789ABCDEF0123456789abcdef";
        let report = init(&node, KeyType::Ed25519, "gpu-node-01", Some(id), false).unwrap();
        assert_eq!(mode(&report.key), 0o600);
        let key = std::fs::read_to_string(&report.key).unwrap();
        assert!(key.starts_with("-----BEGIN PRIVATE KEY-----"), "PKCS#8");
        let csr = std::fs::read_to_string(&report.csr).unwrap();
        assert!(csr.starts_with("-----BEGIN CERTIFICATE REQUEST-----"));
        assert_eq!(
            report.node_uri.as_deref(),
            Some("urn:tppguard:node:0123456789abcdef0123456789abcdef")
        );
        assert!(report.next.contains("pki issue-node"));
    }

    #[test]
    fn refuses_to_overwrite_without_force_and_replaces_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let first = init(dir.path(), KeyType::P256, "n", None, false).unwrap();
        let old = std::fs::read(&first.key).unwrap();
        let e = init(dir.path(), KeyType::P256, "n", None, false).unwrap_err();
        assert!(matches!(e, IdentityError::KeyExists { .. }), "{e}");
        assert!(e.render().contains("--force"), "{}", e.render());
        assert_eq!(std::fs::read(&first.key).unwrap(), old, "key untouched");
        // A looser mode on the old file is not inherited.
        std::fs::set_permissions(&first.key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let again = init(dir.path(), KeyType::Ed25519, "n", None, true).unwrap();
        assert!(again.replaced);
        assert_ne!(std::fs::read(&again.key).unwrap(), old);
        assert_eq!(mode(&again.key), 0o600);
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            2,
            "no temp file left"
        );
    }

    #[test]
    fn the_key_is_pkcs8_v1_and_the_default_name_carries_the_node_id() {
        let dir = tempfile::tempdir().unwrap();
        let a = init_named(
            &dir.path().join("a"),
            KeyType::Ed25519,
            NodeName::Host("gpu-host"),
            None,
            false,
        )
        .unwrap();
        let b = init_named(
            &dir.path().join("b"),
            KeyType::Ed25519,
            NodeName::Host("gpu-host"),
            None,
            false,
        )
        .unwrap();
        // Two clones with one host name: two subjects.
        assert_ne!(a.name, b.name);
        assert_eq!(a.name, format!("gpu-host-{}", a.node_id.short()));
        let pem = std::fs::read_to_string(&a.key).unwrap();
        let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        // 48 bytes, 30 2e 02 01 00 (version 0) 30 05 06 03 2b 65 70 04 22 04 20 || seed.
        assert_eq!(b64.len(), 64, "RFC 8410 PKCS#8 v1 is 48 bytes");
        assert!(b64.starts_with("MC4CAQAwBQYDK2VwBCIEI"), "{b64}");
        // A long host name is cut so the name stays within 64 characters.
        let long = default_name(&"h".repeat(100), &a.node_id);
        assert_eq!(long.chars().count(), 64);
        assert!(long.ends_with(&a.node_id.short()));
        // --name is used as given.
        let given = init(&dir.path().join("c"), KeyType::P256, "n-1", None, false).unwrap();
        assert_eq!(given.name, "n-1");
        assert!(
            init_named(
                &dir.path().join("d"),
                KeyType::Ed25519,
                NodeName::Host("bad\u{1b}host"),
                None,
                false
            )
            .is_err()
        );
    }

    #[test]
    fn key_debug_redacts() {
        let key = NodeKey::generate(KeyType::Ed25519).unwrap();
        let shown = format!("{key:?}");
        assert!(
            shown.contains("<redacted>") && !shown.contains("PRIVATE"),
            "{shown}"
        );
    }

    #[test]
    fn bad_names_and_machine_ids() {
        let dir = tempfile::tempdir().unwrap();
        for bad in ["", " ", "a\nb", "a\\b", "\u{202e}x", &"x".repeat(65)] {
            assert!(init(dir.path(), KeyType::Ed25519, bad, None, false).is_err());
        }
        let r = init(dir.path(), KeyType::Ed25519, "n", Some("not hex!"), false).unwrap();
        assert_eq!(r.node_uri, None);
    }
}
