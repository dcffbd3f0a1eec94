//! Licence revocations: a statement by the licence authority that a licence no longer counts,
//! signed as a compact JWS (`typ` [`LICENCE_REVOCATION_TYP`]) by the licence signer, exactly
//! as licences are. The payload is JSON: `{"licence_id": ID, "reason": TEXT, "revoked_at":
//! UNIX}`, parsed here once ([`LicenceRevocation::from_json`]). A revocation is permanent: a
//! verifier that holds one never counts the licence again, whatever is uploaded later.

use serde::{Deserialize, Serialize};

use super::{MAX_UNIX_SECONDS, MIN_UNIX_SECONDS};

/// The JWS `typ` of a signed licence revocation.
pub const LICENCE_REVOCATION_TYP: &str = "tppguard-licence-revocation+jwt";

/// Largest revocation payload accepted (JSON bytes), checked before parsing.
pub const MAX_REVOCATION_BYTES: usize = 8 * 1024;

/// Longest reason accepted, in characters.
pub const MAX_REASON_CHARS: usize = 1024;

/// A validated licence revocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LicenceRevocation {
    licence_id: String,
    reason: String,
    revoked_at: i64,
}

/// The payload as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    licence_id: String,
    reason: String,
    revoked_at: i64,
}

/// Why a revocation payload was rejected. Each message names the key, the reason and the fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RevocationError {
    /// The payload is larger than [`MAX_REVOCATION_BYTES`].
    #[error("the revocation is {len} bytes, more than the {max}-byte limit")]
    TooLarge {
        /// Its size.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Not valid JSON, or a key is unknown, missing or of the wrong type.
    #[error(
        "the revocation is not the expected JSON ({0}); it holds licence_id, reason and \
         revoked_at"
    )]
    Json(#[from] serde_json::Error),
    /// `licence_id` is not a licence id.
    #[error("`licence_id` {value:?} must be 1 to 64 ASCII letters, digits and `-_.:/`")]
    BadLicenceId {
        /// The value (at most 80 characters of it).
        value: String,
    },
    /// `reason` is empty, too long or holds control characters.
    #[error("`reason` {rule}")]
    BadReason {
        /// The rule it breaks.
        rule: &'static str,
    },
    /// `revoked_at` is outside 1970..=9999.
    #[error("`revoked_at` {value} is not Unix seconds from 1970 to 9999")]
    BadTime {
        /// The value.
        value: i64,
    },
}

impl RevocationError {
    /// Every code, in declaration order.
    pub const CODES: [&'static str; 5] = [
        "revocation_too_large",
        "revocation_malformed",
        "revocation_bad_licence_id",
        "revocation_bad_reason",
        "revocation_bad_time",
    ];

    /// The stable snake_case code.
    pub const fn code(&self) -> &'static str {
        match self {
            Self::TooLarge { .. } => "revocation_too_large",
            Self::Json(_) => "revocation_malformed",
            Self::BadLicenceId { .. } => "revocation_bad_licence_id",
            Self::BadReason { .. } => "revocation_bad_reason",
            Self::BadTime { .. } => "revocation_bad_time",
        }
    }
}

impl LicenceRevocation {
    /// A revocation of licence `licence_id` at `revoked_at`, checked as [`Self::from_json`]
    /// checks a payload.
    pub fn new(licence_id: &str, reason: &str, revoked_at: i64) -> Result<Self, RevocationError> {
        Self::check(Raw {
            licence_id: licence_id.to_owned(),
            reason: reason.to_owned(),
            revoked_at,
        })
    }

    /// Parses and checks a payload: the one parser of revocations.
    pub fn from_json(bytes: &[u8]) -> Result<Self, RevocationError> {
        if bytes.len() > MAX_REVOCATION_BYTES {
            return Err(RevocationError::TooLarge {
                len: bytes.len(),
                max: MAX_REVOCATION_BYTES,
            });
        }
        Self::check(serde_json::from_slice(bytes)?)
    }

    fn check(raw: Raw) -> Result<Self, RevocationError> {
        if !crate::site::is_valid_id(&raw.licence_id) {
            return Err(RevocationError::BadLicenceId {
                value: raw.licence_id.chars().take(80).collect(),
            });
        }
        let reason = raw.reason.trim();
        if reason.is_empty() {
            return Err(RevocationError::BadReason {
                rule: "is empty; say why the licence is revoked",
            });
        }
        if reason.chars().count() > MAX_REASON_CHARS {
            return Err(RevocationError::BadReason {
                rule: "is longer than 1024 characters; shorten it",
            });
        }
        if reason.chars().any(char::is_control) {
            return Err(RevocationError::BadReason {
                rule: "holds control characters (a line break, say); write one line",
            });
        }
        if !(MIN_UNIX_SECONDS..=MAX_UNIX_SECONDS).contains(&raw.revoked_at) {
            return Err(RevocationError::BadTime {
                value: raw.revoked_at,
            });
        }
        Ok(Self {
            licence_id: raw.licence_id,
            reason: reason.to_owned(),
            revoked_at: raw.revoked_at,
        })
    }

    /// The JSON payload (what is signed).
    pub fn to_json(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(self)
    }

    /// The licence revoked.
    pub fn licence_id(&self) -> &str {
        &self.licence_id
    }

    /// Why, as the licence authority wrote it (outside text: escape it when printing).
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// When the authority revoked it, Unix seconds.
    pub fn revoked_at(&self) -> i64 {
        self.revoked_at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(bytes: &[u8]) -> &'static str {
        let e = LicenceRevocation::from_json(bytes).unwrap_err();
        assert!(!e.to_string().is_empty());
        e.code()
    }

    #[test]
    fn a_revocation_round_trips() {
        let r = LicenceRevocation::new("LIC-2026-0001", " export terms breached ", 1_767_225_600)
            .unwrap();
        assert_eq!(r.reason(), "export terms breached");
        let json = r.to_json().unwrap();
        assert_eq!(
            std::str::from_utf8(&json).unwrap(),
            r#"{"licence_id":"LIC-2026-0001","reason":"export terms breached","revoked_at":1767225600}"#
        );
        assert_eq!(LicenceRevocation::from_json(&json).unwrap(), r);
    }

    #[test]
    fn hostile_payloads_are_refused_with_their_code() {
        let ok = r#""licence_id":"L-1","reason":"r","revoked_at":0"#;
        assert!(LicenceRevocation::from_json(format!("{{{ok}}}").as_bytes()).is_ok());
        assert_eq!(code(b""), "revocation_malformed");
        assert_eq!(code(b"[]"), "revocation_malformed");
        assert_eq!(code(b"{\"licence_id\":\"L-1\"}"), "revocation_malformed");
        assert_eq!(
            code(format!("{{{ok},\"extra\":1}}").as_bytes()),
            "revocation_malformed",
            "unknown keys are refused"
        );
        assert_eq!(
            code(format!("{{{ok},\"reason\":\"again\"}}").as_bytes()),
            "revocation_malformed",
            "a duplicate key is refused"
        );
        assert_eq!(
            code(br#"{"licence_id":"L-1","reason":"r","revoked_at":1.5}"#),
            "revocation_malformed"
        );
        assert_eq!(
            code(br#"{"licence_id":"a b","reason":"r","revoked_at":0}"#),
            "revocation_bad_licence_id"
        );
        assert_eq!(
            code(br#"{"licence_id":"","reason":"r","revoked_at":0}"#),
            "revocation_bad_licence_id"
        );
        let long_id = "x".repeat(65);
        assert_eq!(
            code(format!(r#"{{"licence_id":"{long_id}","reason":"r","revoked_at":0}}"#).as_bytes()),
            "revocation_bad_licence_id"
        );
        assert_eq!(
            code(br#"{"licence_id":"L-1","reason":"  ","revoked_at":0}"#),
            "revocation_bad_reason"
        );
        assert_eq!(
            code(br#"{"licence_id":"L-1","reason":"a\u001b[31mb","revoked_at":0}"#),
            "revocation_bad_reason",
            "terminal escapes are refused"
        );
        assert_eq!(
            code(br#"{"licence_id":"L-1","reason":"a\nb","revoked_at":0}"#),
            "revocation_bad_reason"
        );
        assert!(
            LicenceRevocation::new("L-1", &"é".repeat(MAX_REASON_CHARS), 0).is_ok(),
            "the limit counts characters, not bytes"
        );
        let long = "é".repeat(MAX_REASON_CHARS + 1);
        assert_eq!(
            code(format!(r#"{{"licence_id":"L-1","reason":"{long}","revoked_at":0}}"#).as_bytes()),
            "revocation_bad_reason"
        );
        assert_eq!(
            code(br#"{"licence_id":"L-1","reason":"r","revoked_at":-1}"#),
            "revocation_bad_time"
        );
        assert_eq!(
            code(br#"{"licence_id":"L-1","reason":"r","revoked_at":253402300800}"#),
            "revocation_bad_time"
        );
        assert_eq!(
            code(&vec![b' '; MAX_REVOCATION_BYTES + 1]),
            "revocation_too_large"
        );
    }

    #[test]
    fn codes_are_listed_once() {
        let mut codes = RevocationError::CODES.to_vec();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), RevocationError::CODES.len());
    }
}
