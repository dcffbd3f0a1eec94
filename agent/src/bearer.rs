//! The agent's credential for a verifier that authenticates its callers: a bearer token
//! (`tppguard-verifier token issue --role node`), read once from a file (`--token-file`,
//! `token_file =`) and sent as `Authorization: Bearer <token>` on every request.
//!
//! The token is never logged or printed: `Debug` hides it and no error quotes it. A file
//! readable by other users is used, with a warning (as the node key is).

use std::fmt;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// The largest token file read (a tppguard token is under 100 bytes).
pub const MAX_TOKEN_FILE_BYTES: u64 = 4096;

/// A bearer token.
#[derive(Clone)]
pub struct BearerToken(String);

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BearerToken(hidden)")
    }
}

impl BearerToken {
    /// Reads the token in `path`: surrounding whitespace trimmed, then 1 to
    /// [`MAX_TOKEN_FILE_BYTES`] visible ASCII characters (what an HTTP header carries).
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let fix = "put the token `tppguard-verifier token issue --role node` printed in the \
                   file, alone, and make it mode 0600";
        let mut bytes = Vec::new();
        std::fs::File::open(path)
            .and_then(|f| {
                f.take(MAX_TOKEN_FILE_BYTES.saturating_add(1))
                    .read_to_end(&mut bytes)
            })
            .map_err(|e| {
                anyhow::anyhow!("the token file {}: cannot be read ({e})", path.display())
            })?;
        if u64::try_from(bytes.len()).map_or(true, |len| len > MAX_TOKEN_FILE_BYTES) {
            anyhow::bail!(
                "the token file {}: larger than {MAX_TOKEN_FILE_BYTES} bytes; {fix}",
                path.display()
            );
        }
        let text = std::str::from_utf8(&bytes).unwrap_or_default().trim();
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_graphic()) {
            // The content is never quoted: it may be a secret, whatever its shape.
            anyhow::bail!(
                "the token file {}: not one token (empty, or with spaces, controls or \
                 non-ASCII characters); {fix}",
                path.display()
            );
        }
        if let Ok(meta) = std::fs::metadata(path) {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                tracing::warn!(
                    file = %path.display(),
                    mode = format_args!("{mode:o}"),
                    "the token file is readable by other users; it should be mode 0600"
                );
            }
        }
        Ok(Self(text.to_owned()))
    }

    /// The `Authorization` header's value.
    pub(crate) fn header_value(&self) -> String {
        format!("Bearer {}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        path
    }

    #[test]
    fn a_token_is_read_trimmed_and_never_shown() {
        let dir = tempfile::tempdir().unwrap();
        let t = BearerToken::load(&file(dir.path(), "t", b"  tpg_node_abc123\n")).unwrap();
        assert_eq!(t.header_value(), "Bearer tpg_node_abc123");
        assert_eq!(format!("{t:?}"), "BearerToken(hidden)");
    }

    #[test]
    fn bad_token_files_are_refused_without_quoting_them() {
        let dir = tempfile::tempdir().unwrap();
        for (name, bytes) in [
            ("empty", b"\n".to_vec()),
            ("spaced", b"secret-one secret-two".to_vec()),
            ("control", b"secret\x1b[2J".to_vec()),
            ("utf8", "secret\u{e9}".as_bytes().to_vec()),
            ("big", vec![b'a'; 5000]),
        ] {
            let err = BearerToken::load(&file(dir.path(), name, &bytes))
                .unwrap_err()
                .to_string();
            assert!(err.contains(name), "{err}");
            assert!(
                !err.contains("secret"),
                "the content is never quoted: {err}"
            );
        }
        assert!(BearerToken::load(&dir.path().join("missing")).is_err());
    }
}
