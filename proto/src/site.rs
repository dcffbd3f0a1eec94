//! Site ids: the one alphabet for a site, shared by licences (`[[sites]] id`), the node's
//! certificate (a SAN URI written by the operator CA) and the node's `tppguard.site` claim.
//!
//! A site id is 1 to [`MAX_ID_CHARS`] ASCII letters, digits and `-_.:/`: the licence id
//! alphabet. Nothing outside it can reach a terminal or a log, so a site printed anywhere
//! needs no escaping. The operator CA certifies a node's site as the URI
//! `tag:tppguard.dev,2026:site/<id>` ([`SiteId::to_uri`]); [`SiteId::from_uri`] is the only
//! reader of that form.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The most characters of a licence or site id.
pub const MAX_ID_CHARS: usize = 64;

/// The prefix of the SAN URI that certifies a node's site (RFC 4151 tag URI, as the
/// attestation profile): `tag:tppguard.dev,2026:site/fra-1`.
pub const SITE_URI_PREFIX: &str = "tag:tppguard.dev,2026:site/";

/// The rule an id breaks, as errors quote it.
pub const ID_RULE: &str = "must be 1 to 64 ASCII letters, digits and `-_.:/`";

/// Whether `text` is a valid licence or site id.
pub fn is_valid_id(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= MAX_ID_CHARS
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:/".contains(&b))
}

/// A site id in the licence id alphabet.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SiteId(String);

/// A site id outside the alphabet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("site id {shown:?} {ID_RULE}")]
pub struct BadSiteId {
    /// At most 64 characters of the text given.
    pub shown: String,
}

impl SiteId {
    /// Checks `text` against the alphabet.
    pub fn parse(text: &str) -> Result<Self, BadSiteId> {
        if is_valid_id(text) {
            Ok(Self(text.to_owned()))
        } else {
            Err(BadSiteId {
                shown: text.chars().take(MAX_ID_CHARS).collect(),
            })
        }
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The SAN URI that certifies this site.
    pub fn to_uri(&self) -> String {
        format!("{SITE_URI_PREFIX}{}", self.0)
    }

    /// The site a SAN URI certifies: `None` when the URI is not a site URI; an error when it
    /// is one with an id outside the alphabet.
    pub fn from_uri(uri: &str) -> Option<Result<Self, BadSiteId>> {
        uri.strip_prefix(SITE_URI_PREFIX).map(Self::parse)
    }
}

impl fmt::Display for SiteId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

impl Serialize for SiteId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for SiteId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alphabet() {
        assert!(SiteId::parse("fra-1").is_ok());
        assert!(SiteId::parse("dc/eu:west_2.a").is_ok());
        for bad in ["", "fra 1", "fra\u{1b}[2J", "fra\n", "é", &"a".repeat(65)] {
            assert!(SiteId::parse(bad).is_err(), "{bad:?}");
        }
        assert!(SiteId::parse(&"a".repeat(64)).is_ok());
    }

    #[test]
    fn uri_round_trip() {
        let site = SiteId::parse("fra-1").unwrap();
        assert_eq!(site.to_uri(), "tag:tppguard.dev,2026:site/fra-1");
        assert_eq!(SiteId::from_uri(&site.to_uri()), Some(Ok(site)));
        assert_eq!(SiteId::from_uri("https://example.com/"), None);
        assert!(matches!(
            SiteId::from_uri("tag:tppguard.dev,2026:site/a b"),
            Some(Err(_))
        ));
    }
}
