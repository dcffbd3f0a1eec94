//! Node identity: a node is its key. [`NodeId`] is the SHA-256 of the node certificate's
//! SubjectPublicKeyInfo (DER), the name the verifier keeps a node under; the certificate's
//! subject is only for display, since two machines can share a subject but not a key.

use std::fmt;

use ring::digest;
use serde::{Serialize, Serializer};

/// The SHA-256 of a node's SubjectPublicKeyInfo. Displays and serializes as 64 lower-case
/// hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId([u8; 32]);

impl NodeId {
    /// The id of the key whose SubjectPublicKeyInfo DER is `spki_der`.
    pub fn from_spki_der(spki_der: &[u8]) -> Self {
        let mut id = [0u8; 32];
        id.copy_from_slice(digest::digest(&digest::SHA256, spki_der).as_ref());
        Self(id)
    }

    /// The id from its 32 bytes.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// Reads 64 hex digits (either case); `None` otherwise.
    pub fn from_hex(text: &str) -> Option<Self> {
        let bytes = text.as_bytes();
        if bytes.len() != 64 {
            return None;
        }
        let mut id = [0u8; 32];
        for (out, pair) in id.iter_mut().zip(bytes.chunks_exact(2)) {
            let hi = char::from(*pair.first()?).to_digit(16)?;
            let lo = char::from(*pair.get(1)?).to_digit(16)?;
            *out = u8::try_from(hi * 16 + lo).ok()?;
        }
        Some(Self(id))
    }

    /// The 32 bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The first 12 hex digits, for a short display beside the subject.
    pub fn short(&self) -> String {
        let mut text = self.to_string();
        text.truncate(12);
        text
    }
}

impl fmt::Display for NodeId {
    /// 64 lower-case hex digits, written at once (a fleet names every node).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut text = [0u8; 64];
        for (pair, b) in text.chunks_exact_mut(2).zip(self.0) {
            for (out, nibble) in pair.iter_mut().zip([b >> 4, b & 0x0f]) {
                *out = DIGITS.get(usize::from(nibble)).copied().unwrap_or(b'0');
            }
        }
        // Hex digits are ASCII, so this never fails.
        f.write_str(std::str::from_utf8(&text).map_err(|_| fmt::Error)?)
    }
}

impl Serialize for NodeId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        let id = NodeId::from_spki_der(b"not really a key");
        let text = id.to_string();
        assert_eq!(text.len(), 64);
        assert_eq!(NodeId::from_hex(&text), Some(id));
        assert_eq!(NodeId::from_hex(&text.to_uppercase()), Some(id));
        assert_eq!(NodeId::from_hex(&text[..63]), None);
        assert_eq!(NodeId::from_hex(&format!("{}g", &text[..63])), None);
        assert_eq!(id.short(), text[..12]);
    }

    #[test]
    fn distinct_keys_distinct_ids() {
        assert_ne!(NodeId::from_spki_der(b"a"), NodeId::from_spki_der(b"b"));
    }
}
