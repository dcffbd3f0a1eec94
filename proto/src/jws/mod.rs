//! JWS compact serialization (RFC 7515) on ring, for the three algorithms tppguard accepts:
//! `EdDSA` with Ed25519 (RFC 8037), `ES256` and `ES384` (RFC 7518 §3.4, raw `r || s`).
//!
//! Reading is two steps. [`decode`] checks the shape of a token from outside (size, three
//! base64url parts, header JSON depth and types, `alg`, `crit`, `x5c`) and gives an
//! [`Unverified`]; [`Unverified::verify`] checks the signature with a key the caller chose and
//! gives a [`Verified`], the only way to reach the payload. The algorithm is the key's: a
//! header naming another algorithm is [`JwsError::AlgKeyMismatch`], and algorithms other than
//! the three (`none`, `HS256`, `RS256`, ...) never get past [`decode`].
//!
//! ```
//! use tppguard_proto::jws::{self, Alg, Header, SigningKey};
//!
//! let pkcs8 = SigningKey::generate_pkcs8(Alg::EdDSA).unwrap();
//! let key = SigningKey::from_pkcs8(Alg::EdDSA, &pkcs8).unwrap();
//! let token = jws::sign(&Header::new(Alg::EdDSA), b"{}", &key).unwrap();
//! let verified = jws::decode(&token).unwrap().verify(&key.verifying_key()).unwrap();
//! assert_eq!(verified.payload(), b"{}");
//! ```

mod ed25519;
pub mod json;
mod spki;

#[cfg(test)]
mod tests;

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::rand::{SecureRandom as _, SystemRandom};
use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, UnparsedPublicKey};
use serde::Serialize;
use serde_json::Value;

pub use ed25519::{Ed25519KeyProblem, check_public_key as check_ed25519_public_key};
pub use spki::MAX_SPKI_BYTES;

/// Largest compact serialization read or written, in bytes.
pub const MAX_JWS_BYTES: usize = 1024 * 1024;
/// Most certificates in an `x5c` chain.
pub const MAX_X5C_CERTS: usize = 8;
/// Largest certificate in an `x5c` chain, in DER bytes.
pub const MAX_X5C_CERT_BYTES: usize = 16 * 1024;
/// Deepest nesting of arrays and objects in the header and payload JSON (`{}` is 1).
pub const MAX_JSON_DEPTH: usize = 32;

/// Longest outside string (an unknown `alg` or `crit` name) quoted in an error, in characters.
const MAX_QUOTED_CHARS: usize = 64;

/// A signature algorithm tppguard accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Alg {
    /// Ed25519 (RFC 8037). The default.
    EdDSA,
    /// ECDSA on P-256 with SHA-256.
    ES256,
    /// ECDSA on P-384 with SHA-384.
    ES384,
}

impl Alg {
    /// Every accepted algorithm.
    pub const ALL: [Self; 3] = [Self::EdDSA, Self::ES256, Self::ES384];

    /// The `alg` header value (RFC 7518 / RFC 8037).
    pub const fn name(self) -> &'static str {
        match self {
            Self::EdDSA => "EdDSA",
            Self::ES256 => "ES256",
            Self::ES384 => "ES384",
        }
    }

    /// The algorithm with this exact `alg` name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.name() == name)
    }

    /// Length of a signature, in bytes.
    pub const fn signature_len(self) -> usize {
        match self {
            Self::EdDSA | Self::ES256 => 64,
            Self::ES384 => 96,
        }
    }

    /// Length of a raw public key (Ed25519 key, or uncompressed SEC 1 point), in bytes.
    pub const fn public_key_len(self) -> usize {
        match self {
            Self::EdDSA => 32,
            Self::ES256 => 65,
            Self::ES384 => 97,
        }
    }

    fn verification(self) -> &'static dyn signature::VerificationAlgorithm {
        match self {
            Self::EdDSA => &signature::ED25519,
            Self::ES256 => &signature::ECDSA_P256_SHA256_FIXED,
            Self::ES384 => &signature::ECDSA_P384_SHA384_FIXED,
        }
    }
}

impl fmt::Display for Alg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for Alg {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

/// One of the three parts of a compact serialization.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The protected header.
    Header,
    /// The payload.
    Payload,
    /// The signature.
    Signature,
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Header => "header",
            Self::Payload => "payload",
            Self::Signature => "signature",
        })
    }
}

/// The protected header parameters tppguard reads. Other parameters are allowed (RFC 7515
/// §4) and ignored, except `crit`: no extension is understood, so any `crit` is rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Header {
    /// `alg`.
    pub alg: Alg,
    /// `typ`, e.g. `tppguard-attestation+jwt`.
    pub typ: Option<String>,
    /// `kid`.
    pub kid: Option<String>,
    /// `x5c`: the certificate chain, leaf first, as DER (standard base64 on the wire, RFC 7515
    /// §4.1.6). Empty when the header has no `x5c`.
    pub x5c: Vec<Vec<u8>>,
}

impl Header {
    /// A header with only `alg`.
    pub fn new(alg: Alg) -> Self {
        Self {
            alg,
            typ: None,
            kid: None,
            x5c: Vec::new(),
        }
    }

    /// Sets `typ`.
    #[must_use]
    pub fn with_typ(mut self, typ: impl Into<String>) -> Self {
        self.typ = Some(typ.into());
        self
    }

    /// Sets `kid`.
    #[must_use]
    pub fn with_kid(mut self, kid: impl Into<String>) -> Self {
        self.kid = Some(kid.into());
        self
    }

    /// Sets `x5c` (DER certificates, leaf first).
    #[must_use]
    pub fn with_x5c(mut self, x5c: Vec<Vec<u8>>) -> Self {
        self.x5c = x5c;
        self
    }

    /// The header's JSON, parameters in the order `alg`, `typ`, `kid`, `x5c`.
    fn to_json(&self) -> Result<Vec<u8>, JwsError> {
        #[derive(Serialize)]
        struct Wire<'a> {
            alg: Alg,
            #[serde(skip_serializing_if = "Option::is_none")]
            typ: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            kid: Option<&'a str>,
            #[serde(skip_serializing_if = "Vec::is_empty")]
            x5c: Vec<String>,
        }
        check_x5c_len(self.x5c.len())?;
        for (index, cert) in self.x5c.iter().enumerate() {
            check_cert_len(index, cert.len())?;
        }
        let wire = Wire {
            alg: self.alg,
            typ: self.typ.as_deref(),
            kid: self.kid.as_deref(),
            x5c: self.x5c.iter().map(|c| STANDARD.encode(c)).collect(),
        };
        serde_json::to_vec(&wire).map_err(|source| JwsError::Json {
            part: Part::Header,
            source,
        })
    }

    /// Reads the decoded header bytes.
    fn from_json(bytes: &[u8]) -> Result<Self, JwsError> {
        if !json::within_depth(bytes, MAX_JSON_DEPTH) {
            return Err(JwsError::TooDeep {
                part: Part::Header,
                max: MAX_JSON_DEPTH,
            });
        }
        let value = json::parse_strict(bytes).map_err(|source| JwsError::Json {
            part: Part::Header,
            source,
        })?;
        let Value::Object(params) = value else {
            return Err(JwsError::NotAnObject { part: Part::Header });
        };
        let alg = match params.get("alg") {
            None => return Err(JwsError::MissingAlg),
            Some(Value::String(name)) => {
                Alg::from_name(name).ok_or_else(|| JwsError::UnsupportedAlg { alg: quote(name) })?
            }
            Some(_) => return Err(wrong_type("alg", "a string")),
        };
        if let Some(crit) = params.get("crit") {
            return Err(match crit {
                Value::Array(names) => match names.first() {
                    Some(Value::String(name))
                        if names.iter().all(|n| matches!(n, Value::String(_))) =>
                    {
                        JwsError::UnknownCritical { name: quote(name) }
                    }
                    _ => wrong_type("crit", "a non-empty array of strings"),
                },
                _ => wrong_type("crit", "a non-empty array of strings"),
            });
        }
        let typ = optional_string(&params, "typ")?;
        let kid = optional_string(&params, "kid")?;
        let x5c = match params.get("x5c") {
            None => Vec::new(),
            Some(Value::Array(certs)) => {
                check_x5c_len(certs.len())?;
                if certs.is_empty() {
                    return Err(JwsError::X5cEmpty);
                }
                certs
                    .iter()
                    .enumerate()
                    .map(|(index, cert)| match cert {
                        Value::String(b64) => decode_cert(index, b64),
                        _ => Err(wrong_type("x5c", "an array of base64 strings")),
                    })
                    .collect::<Result<_, _>>()?
            }
            Some(_) => return Err(wrong_type("x5c", "an array of base64 strings")),
        };
        Ok(Self { alg, typ, kid, x5c })
    }
}

fn wrong_type(param: &'static str, expected: &'static str) -> JwsError {
    JwsError::WrongType { param, expected }
}

fn optional_string(
    params: &serde_json::Map<String, Value>,
    param: &'static str,
) -> Result<Option<String>, JwsError> {
    match params.get(param) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(wrong_type(param, "a string")),
    }
}

/// At most [`MAX_QUOTED_CHARS`] characters of an outside string, for an error message.
fn quote(s: &str) -> String {
    s.chars().take(MAX_QUOTED_CHARS).collect()
}

fn check_x5c_len(len: usize) -> Result<(), JwsError> {
    if len > MAX_X5C_CERTS {
        return Err(JwsError::X5cTooLong {
            len,
            max: MAX_X5C_CERTS,
        });
    }
    Ok(())
}

fn check_cert_len(index: usize, len: usize) -> Result<(), JwsError> {
    if len > MAX_X5C_CERT_BYTES {
        return Err(JwsError::X5cCertTooLarge {
            index,
            len,
            max: MAX_X5C_CERT_BYTES,
        });
    }
    Ok(())
}

fn decode_cert(index: usize, b64: &str) -> Result<Vec<u8>, JwsError> {
    // Bound the allocation before decoding: 4 characters per 3 bytes.
    let estimate = base64::decoded_len_estimate(b64.len());
    if estimate > MAX_X5C_CERT_BYTES.saturating_add(3) {
        return Err(JwsError::X5cCertTooLarge {
            index,
            len: estimate,
            max: MAX_X5C_CERT_BYTES,
        });
    }
    let der = STANDARD
        .decode(b64)
        .map_err(|_| JwsError::X5cNotBase64 { index })?;
    if der.is_empty() {
        return Err(JwsError::X5cNotBase64 { index });
    }
    check_cert_len(index, der.len())?;
    Ok(der)
}

/// A private key that signs, with its algorithm. `Debug` shows the algorithm only.
pub struct SigningKey {
    alg: Alg,
    pair: Pair,
}

enum Pair {
    Ed25519(Ed25519KeyPair),
    Ecdsa(EcdsaKeyPair, SystemRandom),
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Reads a PKCS#8 DER private key for `alg` (Ed25519: PKCS#8 v1 or v2; ECDSA: RFC 5915
    /// inside PKCS#8).
    pub fn from_pkcs8(alg: Alg, der: &[u8]) -> Result<Self, JwsError> {
        let rejected = |_| JwsError::PrivateKeyRejected { alg };
        let pair = match alg {
            Alg::EdDSA => {
                Pair::Ed25519(Ed25519KeyPair::from_pkcs8_maybe_unchecked(der).map_err(rejected)?)
            }
            Alg::ES256 | Alg::ES384 => {
                let rng = SystemRandom::new();
                let signing = match alg {
                    Alg::ES256 => &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                    _ => &signature::ECDSA_P384_SHA384_FIXED_SIGNING,
                };
                Pair::Ecdsa(
                    EcdsaKeyPair::from_pkcs8(signing, der, &rng).map_err(rejected)?,
                    rng,
                )
            }
        };
        Ok(Self { alg, pair })
    }

    /// Reads a PKCS#8 DER private key of any accepted algorithm.
    pub fn from_pkcs8_any(der: &[u8]) -> Result<Self, JwsError> {
        Alg::ALL
            .into_iter()
            .find_map(|alg| Self::from_pkcs8(alg, der).ok())
            .ok_or(JwsError::PrivateKeyUnrecognised)
    }

    /// An Ed25519 key from its 32-byte seed (the `d` of an OKP JWK, RFC 8037 §2).
    pub fn from_ed25519_seed(seed: &[u8]) -> Result<Self, JwsError> {
        let pair = Ed25519KeyPair::from_seed_unchecked(seed)
            .map_err(|_| JwsError::PrivateKeyRejected { alg: Alg::EdDSA })?;
        Ok(Self {
            alg: Alg::EdDSA,
            pair: Pair::Ed25519(pair),
        })
    }

    /// A new random key for `alg`, as PKCS#8 v1 DER (RFC 5208; for Ed25519 the 48-byte RFC
    /// 8410 document), the form OpenSSL 3 and pyca/cryptography read. The caller stores it with
    /// 0600 permissions and reads it back with [`Self::from_pkcs8`], which also reads v2.
    pub fn generate_pkcs8(alg: Alg) -> Result<Vec<u8>, JwsError> {
        let rng = SystemRandom::new();
        let doc = match alg {
            Alg::EdDSA => {
                let mut seed = [0u8; 32];
                rng.fill(&mut seed).map_err(|_| JwsError::SigningFailed)?;
                let doc = ed25519::pkcs8_v1(&seed);
                seed.fill(0);
                return Ok(doc);
            }
            Alg::ES256 => {
                EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            }
            Alg::ES384 => {
                EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P384_SHA384_FIXED_SIGNING, &rng)
            }
        }
        .map_err(|_| JwsError::SigningFailed)?;
        Ok(doc.as_ref().to_vec())
    }

    /// The key's algorithm.
    pub fn alg(&self) -> Alg {
        self.alg
    }

    /// The matching public key.
    pub fn verifying_key(&self) -> VerifyingKey {
        let raw = match &self.pair {
            Pair::Ed25519(pair) => pair.public_key().as_ref().to_vec(),
            Pair::Ecdsa(pair, _) => pair.public_key().as_ref().to_vec(),
        };
        VerifyingKey { alg: self.alg, raw }
    }

    /// The matching public key as SubjectPublicKeyInfo DER (for a certificate request).
    pub fn public_key_spki_der(&self) -> Vec<u8> {
        self.verifying_key().to_spki_der()
    }

    fn sign_bytes(&self, message: &[u8]) -> Result<Vec<u8>, JwsError> {
        match &self.pair {
            Pair::Ed25519(pair) => Ok(pair.sign(message).as_ref().to_vec()),
            Pair::Ecdsa(pair, rng) => pair
                .sign(rng, message)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| JwsError::SigningFailed),
        }
    }
}

/// A public key that verifies, with the one algorithm it is for.
#[derive(Clone, PartialEq, Eq)]
pub struct VerifyingKey {
    alg: Alg,
    raw: Vec<u8>,
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("alg", &self.alg)
            .field("len", &self.raw.len())
            .finish()
    }
}

impl VerifyingKey {
    /// A raw public key for `alg`: 32 bytes for Ed25519, an uncompressed SEC 1 point
    /// (`0x04 || x || y`) for ECDSA. An Ed25519 key must be a canonically encoded point of
    /// the prime-order subgroup ([`JwsError::WeakPublicKey`] otherwise: a small-order key
    /// makes a fixed signature verify for every message). For ECDSA only the length and form
    /// are checked here; ring refuses a point off the curve at every verification.
    pub fn from_raw(alg: Alg, raw: &[u8]) -> Result<Self, JwsError> {
        let invalid = || JwsError::InvalidPublicKey {
            alg,
            len: raw.len(),
        };
        match alg {
            Alg::EdDSA => {
                let point: &[u8; 32] = raw.try_into().map_err(|_| invalid())?;
                ed25519::check_public_key(point)
                    .map_err(|problem| JwsError::WeakPublicKey { problem })?;
            }
            Alg::ES256 | Alg::ES384 => {
                if raw.len() != alg.public_key_len() || raw.first() != Some(&0x04) {
                    return Err(invalid());
                }
            }
        }
        Ok(Self {
            alg,
            raw: raw.to_vec(),
        })
    }

    /// A SubjectPublicKeyInfo (DER, as in a certificate), its algorithm taken from its OIDs:
    /// Ed25519, or id-ecPublicKey on P-256 or P-384.
    pub fn from_spki_der(der: &[u8]) -> Result<Self, JwsError> {
        let (alg, raw) = spki::parse(der).map_err(|problem| match problem {
            spki::SpkiProblem::Malformed => JwsError::MalformedSpki,
            spki::SpkiProblem::Unsupported => JwsError::UnsupportedKey,
        })?;
        Self::from_raw(alg, raw)
    }

    /// The key's algorithm.
    pub fn alg(&self) -> Alg {
        self.alg
    }

    /// The raw public key.
    pub fn raw(&self) -> &[u8] {
        &self.raw
    }

    /// The key as SubjectPublicKeyInfo DER.
    pub fn to_spki_der(&self) -> Vec<u8> {
        [spki::prefix(self.alg), &self.raw].concat()
    }
}

/// Signs `payload` under `header` as a compact serialization. The header's `alg` must be the
/// key's, and the result must fit the limits [`decode`] applies.
pub fn sign(header: &Header, payload: &[u8], key: &SigningKey) -> Result<String, JwsError> {
    if header.alg != key.alg {
        return Err(JwsError::AlgKeyMismatch {
            header: header.alg,
            key: key.alg,
        });
    }
    if !json::within_depth(payload, MAX_JSON_DEPTH) {
        return Err(JwsError::TooDeep {
            part: Part::Payload,
            max: MAX_JSON_DEPTH,
        });
    }
    let header_json = header.to_json()?;
    let mut token = URL_SAFE_NO_PAD.encode(header_json);
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(payload, &mut token);
    let signature = key.sign_bytes(token.as_bytes())?;
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(signature, &mut token);
    if token.len() > MAX_JWS_BYTES {
        return Err(JwsError::TooLarge {
            len: token.len(),
            max: MAX_JWS_BYTES,
        });
    }
    Ok(token)
}

/// Reads a compact serialization from outside, without checking its signature.
pub fn decode(compact: &str) -> Result<Unverified, JwsError> {
    if compact.len() > MAX_JWS_BYTES {
        return Err(JwsError::TooLarge {
            len: compact.len(),
            max: MAX_JWS_BYTES,
        });
    }
    let mut parts = compact.split('.');
    let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwsError::PartCount {
            found: compact.split('.').count(),
        });
    };
    let part = |part: Part, b64: &str| {
        URL_SAFE_NO_PAD
            .decode(b64)
            .map_err(|_| JwsError::Malformed { part })
    };
    let header_json = part(Part::Header, header_b64)?;
    let payload = part(Part::Payload, payload_b64)?;
    let signature = part(Part::Signature, signature_b64)?;
    if signature.is_empty() {
        return Err(JwsError::EmptySignature);
    }
    let header = Header::from_json(&header_json)?;
    if !json::within_depth(&payload, MAX_JSON_DEPTH) {
        return Err(JwsError::TooDeep {
            part: Part::Payload,
            max: MAX_JSON_DEPTH,
        });
    }
    let signed_len = header_b64
        .len()
        .saturating_add(1)
        .saturating_add(payload_b64.len());
    let signing_input = compact.get(..signed_len).unwrap_or_default().to_owned();
    Ok(Unverified {
        header,
        signing_input,
        payload,
        signature,
    })
}

/// A token whose shape and header are checked but whose signature is not.
#[derive(Debug, Clone)]
pub struct Unverified {
    header: Header,
    /// `BASE64URL(header) "." BASE64URL(payload)` as received.
    signing_input: String,
    payload: Vec<u8>,
    signature: Vec<u8>,
}

impl Unverified {
    /// The header: use it to find the key (`x5c`, `kid`), never to trust the payload.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Checks the signature with `key`, under the key's algorithm.
    pub fn verify(&self, key: &VerifyingKey) -> Result<Verified, JwsError> {
        if self.header.alg != key.alg {
            return Err(JwsError::AlgKeyMismatch {
                header: self.header.alg,
                key: key.alg,
            });
        }
        if self.signature.len() != key.alg.signature_len() {
            return Err(JwsError::SignatureLength {
                alg: key.alg,
                len: self.signature.len(),
                expected: key.alg.signature_len(),
            });
        }
        UnparsedPublicKey::new(key.alg.verification(), &key.raw)
            .verify(self.signing_input.as_bytes(), &self.signature)
            .map_err(|_| JwsError::BadSignature)?;
        Ok(Verified {
            header: self.header.clone(),
            payload: self.payload.clone(),
            _checked: SignatureChecked(()),
        })
    }
}

/// Proof that [`Unverified::verify`] ran; no other code can make one.
#[derive(Debug, Clone)]
struct SignatureChecked(());

/// A token whose signature a caller-chosen key verified.
#[derive(Debug, Clone)]
pub struct Verified {
    header: Header,
    payload: Vec<u8>,
    _checked: SignatureChecked,
}

impl Verified {
    /// The header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The payload bytes.
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// The header and payload.
    pub fn into_parts(self) -> (Header, Vec<u8>) {
        (self.header, self.payload)
    }
}

/// Why a token, key or signing request was rejected.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JwsError {
    /// The token is larger than [`MAX_JWS_BYTES`].
    #[error("token is {len} bytes, more than the {max}-byte limit")]
    TooLarge {
        /// Its size.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Not three `.`-separated parts.
    #[error("token has {found} `.`-separated parts; a compact JWS has exactly 3")]
    PartCount {
        /// Parts found.
        found: usize,
    },
    /// A part is not base64url without padding (padding, whitespace or another character).
    #[error("the {part} is not base64url without padding")]
    Malformed {
        /// Which part.
        part: Part,
    },
    /// The signature part is empty (as in `alg: none` tokens).
    #[error("the signature is empty; unsigned tokens are never accepted")]
    EmptySignature,
    /// The header or payload JSON nests deeper than [`MAX_JSON_DEPTH`].
    #[error("the {part} JSON nests deeper than {max} levels")]
    TooDeep {
        /// Which part.
        part: Part,
        /// The limit.
        max: usize,
    },
    /// The header is not JSON, or has a duplicate parameter.
    #[error("the {part} is not valid JSON")]
    Json {
        /// Which part.
        part: Part,
        /// The parser's reason.
        #[source]
        source: serde_json::Error,
    },
    /// The header is JSON but not an object.
    #[error("the {part} is not a JSON object")]
    NotAnObject {
        /// Which part.
        part: Part,
    },
    /// The header has no `alg`.
    #[error("the header has no `alg`")]
    MissingAlg,
    /// `alg` names an algorithm other than EdDSA, ES256 and ES384.
    #[error("`alg` {alg:?} is not accepted; use EdDSA, ES256 or ES384")]
    UnsupportedAlg {
        /// The `alg` value (at most 64 characters of it).
        alg: String,
    },
    /// A header parameter has the wrong JSON type.
    #[error("header parameter `{param}` must be {expected}")]
    WrongType {
        /// The parameter.
        param: &'static str,
        /// What it must be.
        expected: &'static str,
    },
    /// `crit` names an extension this reader does not understand (it understands none).
    #[error("header `crit` names {name:?}, an extension this verifier does not understand")]
    UnknownCritical {
        /// The first name listed (at most 64 characters of it).
        name: String,
    },
    /// `x5c` has more than [`MAX_X5C_CERTS`] certificates.
    #[error("`x5c` has {len} certificates, more than the limit of {max}")]
    X5cTooLong {
        /// Certificates.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// `x5c` is an empty array.
    #[error("`x5c` is empty; leave it out or give the chain, leaf first")]
    X5cEmpty,
    /// A certificate in `x5c` is larger than [`MAX_X5C_CERT_BYTES`].
    #[error("`x5c` certificate {index} is {len} bytes, more than the {max}-byte limit")]
    X5cCertTooLarge {
        /// Its position, leaf 0.
        index: usize,
        /// Its size (estimated from the base64 when too large to decode).
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A certificate in `x5c` is empty or not standard padded base64.
    #[error("`x5c` certificate {index} is not standard base64 of a non-empty DER certificate")]
    X5cNotBase64 {
        /// Its position, leaf 0.
        index: usize,
    },
    /// The header's `alg` is not the algorithm of the key given to check (or sign) it.
    #[error("the header says `alg` {header} but the key is for {key}")]
    AlgKeyMismatch {
        /// The header's algorithm.
        header: Alg,
        /// The key's algorithm.
        key: Alg,
    },
    /// The signature has the wrong length for the algorithm.
    #[error("the {alg} signature is {len} bytes; it must be {expected}")]
    SignatureLength {
        /// The algorithm.
        alg: Alg,
        /// Its length.
        len: usize,
        /// The length the algorithm gives.
        expected: usize,
    },
    /// The signature does not verify under the key.
    #[error("the signature does not verify under the given key")]
    BadSignature,
    /// A public key has the wrong length or form for its algorithm.
    #[error("the {alg} public key is {len} bytes or not in uncompressed form")]
    InvalidPublicKey {
        /// The algorithm.
        alg: Alg,
        /// Its length.
        len: usize,
    },
    /// A SubjectPublicKeyInfo is not well-formed DER of the expected shape.
    #[error("the public key is not a well-formed SubjectPublicKeyInfo")]
    MalformedSpki,
    /// A SubjectPublicKeyInfo is for an algorithm or curve other than Ed25519, P-256, P-384.
    #[error("the public key is not Ed25519, P-256 or P-384")]
    UnsupportedKey,
    /// A PKCS#8 private key is not a valid key for the algorithm.
    #[error("the private key is not a valid PKCS#8 {alg} key")]
    PrivateKeyRejected {
        /// The algorithm.
        alg: Alg,
    },
    /// A PKCS#8 private key is not a valid key for any accepted algorithm.
    #[error("the private key is not a PKCS#8 Ed25519, P-256 or P-384 key")]
    PrivateKeyUnrecognised,
    /// The system random source failed while signing or generating a key.
    #[error("signing failed: the system random number generator failed")]
    SigningFailed,
    /// An Ed25519 public key is not a canonically encoded point of the prime-order subgroup
    /// (the identity and the other small-order points above all).
    #[error(
        "the Ed25519 public key is {problem}: with such a key a fixed signature verifies for \
         any message, so it is never accepted; the signer must use a freshly generated key"
    )]
    WeakPublicKey {
        /// What is wrong with the point.
        problem: Ed25519KeyProblem,
    },
}

impl JwsError {
    /// Every reason code, in declaration order.
    pub const CODES: [&'static str; 25] = [
        "jws_too_large",
        "jws_part_count",
        "jws_malformed",
        "jws_empty_signature",
        "jws_too_deep",
        "jws_bad_json",
        "jws_not_an_object",
        "jws_missing_alg",
        "jws_unsupported_alg",
        "jws_wrong_type",
        "jws_unknown_critical",
        "jws_x5c_too_long",
        "jws_x5c_empty",
        "jws_x5c_cert_too_large",
        "jws_x5c_not_base64",
        "jws_alg_key_mismatch",
        "jws_signature_length",
        "jws_bad_signature",
        "jws_invalid_public_key",
        "jws_malformed_spki",
        "jws_unsupported_key",
        "jws_private_key_rejected",
        "jws_private_key_unrecognised",
        "jws_signing_failed",
        "jws_weak_public_key",
    ];

    /// The stable snake_case reason code. Codes are added, never renamed or reused.
    pub const fn code(&self) -> &'static str {
        match self {
            Self::TooLarge { .. } => "jws_too_large",
            Self::PartCount { .. } => "jws_part_count",
            Self::Malformed { .. } => "jws_malformed",
            Self::EmptySignature => "jws_empty_signature",
            Self::TooDeep { .. } => "jws_too_deep",
            Self::Json { .. } => "jws_bad_json",
            Self::NotAnObject { .. } => "jws_not_an_object",
            Self::MissingAlg => "jws_missing_alg",
            Self::UnsupportedAlg { .. } => "jws_unsupported_alg",
            Self::WrongType { .. } => "jws_wrong_type",
            Self::UnknownCritical { .. } => "jws_unknown_critical",
            Self::X5cTooLong { .. } => "jws_x5c_too_long",
            Self::X5cEmpty => "jws_x5c_empty",
            Self::X5cCertTooLarge { .. } => "jws_x5c_cert_too_large",
            Self::X5cNotBase64 { .. } => "jws_x5c_not_base64",
            Self::AlgKeyMismatch { .. } => "jws_alg_key_mismatch",
            Self::SignatureLength { .. } => "jws_signature_length",
            Self::BadSignature => "jws_bad_signature",
            Self::InvalidPublicKey { .. } => "jws_invalid_public_key",
            Self::MalformedSpki => "jws_malformed_spki",
            Self::UnsupportedKey => "jws_unsupported_key",
            Self::PrivateKeyRejected { .. } => "jws_private_key_rejected",
            Self::PrivateKeyUnrecognised => "jws_private_key_unrecognised",
            Self::SigningFailed => "jws_signing_failed",
            Self::WeakPublicKey { .. } => "jws_weak_public_key",
        }
    }
}
