//! Storage errors: each names the database (its URL with any password hidden), what failed and
//! the fix.

/// What went wrong in the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The URL names no supported database.
    #[error(
        "unsupported database URL {db}: use sqlite://PATH (a file, created if missing) or \
         postgres://USER@HOST:PORT/DATABASE"
    )]
    UnsupportedUrl {
        /// The URL, password hidden.
        db: String,
    },
    /// The database could not be opened or reached.
    #[error("cannot open {db}: {message} — {hint}")]
    Open {
        /// The URL, password hidden.
        db: String,
        /// The driver's message, password hidden.
        message: String,
        /// What to check.
        hint: &'static str,
    },
    /// A schema migration failed; the database is left at the last version that applied.
    #[error(
        "{db}: schema migration {version} ({name}) failed: {message} — the database stays at the \
         previous version; check the account may create tables, then start the verifier again"
    )]
    Migrate {
        /// The URL, password hidden.
        db: String,
        /// The migration's number.
        version: i64,
        /// The migration's name.
        name: &'static str,
        /// The driver's message.
        message: String,
    },
    /// The database was migrated by a newer verifier, or by a different migration history.
    #[error("{db}: {detail} — run the verifier version that created this database, or a newer one")]
    Schema {
        /// The URL, password hidden.
        db: String,
        /// What does not match.
        detail: String,
    },
    /// A query failed.
    #[error(
        "{db}: {op} failed: {message} — check the database is reachable and the verifier's account \
         may read and write it"
    )]
    Query {
        /// The URL, password hidden.
        db: String,
        /// What the store was doing.
        op: &'static str,
        /// The driver's message.
        message: String,
    },
    /// An attestation with the same token (same SHA-256) is already recorded.
    #[error("{db}: attestation token {sha256} is already recorded (tokens are recorded once)")]
    DuplicateAttestation {
        /// The URL, password hidden.
        db: String,
        /// The token's SHA-256, hex.
        sha256: String,
    },
    /// The nonce was already issued.
    #[error("{db}: nonce already issued (nonces must be fresh random bytes, never reused)")]
    DuplicateNonce {
        /// The URL, password hidden.
        db: String,
    },
    /// An argument is outside the store's bounds.
    #[error("{what}: {reason}")]
    InvalidInput {
        /// Which argument.
        what: &'static str,
        /// Why it is refused.
        reason: String,
    },
    /// A stored row does not read back as this verifier wrote it.
    #[error(
        "{db}: stored {what} is malformed: {detail} — the database was changed outside the verifier"
    )]
    Corrupt {
        /// The URL, password hidden.
        db: String,
        /// Which row kind.
        what: &'static str,
        /// What is wrong.
        detail: String,
    },
    /// More rows than the store returns at once.
    #[error("{db}: more than {limit} {what}; the store returns at most that many at once")]
    TooMany {
        /// The URL, password hidden.
        db: String,
        /// Which rows.
        what: &'static str,
        /// The bound.
        limit: usize,
    },
}

/// `url` with the password of a `user:password@` part and any `password=` query parameter
/// replaced by `***`.
pub fn redact_url(url: &str) -> String {
    let (head, query) = match url.split_once('?') {
        Some((h, q)) => (h, Some(q)),
        None => (url, None),
    };
    let mut out = String::with_capacity(url.len());
    match head.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = match rest.find('/') {
                Some(i) => rest.split_at(i),
                None => (rest, ""),
            };
            out.push_str(scheme);
            out.push_str("://");
            match authority.rsplit_once('@') {
                Some((userinfo, host)) => {
                    match userinfo.split_once(':') {
                        Some((user, _)) => {
                            out.push_str(user);
                            out.push_str(":***");
                        }
                        None => out.push_str(userinfo),
                    }
                    out.push('@');
                    out.push_str(host);
                }
                None => out.push_str(authority),
            }
            out.push_str(path);
        }
        None => out.push_str(head),
    }
    if let Some(query) = query {
        out.push('?');
        let parts: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                _ => pair.to_owned(),
            })
            .collect();
        out.push_str(&parts.join("&"));
    }
    out
}

/// The password in `url` (from `user:password@` or `password=`), if any, so it can be scrubbed
/// from driver messages.
pub(crate) fn url_password(url: &str) -> Option<String> {
    let (head, query) = match url.split_once('?') {
        Some((h, q)) => (h, Some(q)),
        None => (url, None),
    };
    if let Some((_, rest)) = head.split_once("://") {
        let authority = rest.split('/').next().unwrap_or(rest);
        if let Some((userinfo, _)) = authority.rsplit_once('@')
            && let Some((_, pass)) = userinfo.split_once(':')
            && !pass.is_empty()
        {
            return Some(pass.to_owned());
        }
    }
    query.and_then(|q| {
        q.split('&').find_map(|pair| match pair.split_once('=') {
            Some((k, v)) if k.eq_ignore_ascii_case("password") && !v.is_empty() => {
                Some(v.to_owned())
            }
            _ => None,
        })
    })
}

#[cfg(test)]
mod redact_tests {
    use super::{redact_url, url_password};

    #[test]
    fn store_redacts_passwords() {
        assert_eq!(
            redact_url("postgres://app:s3cret@db.example:5432/tpp"),
            "postgres://app:***@db.example:5432/tpp"
        );
        assert_eq!(
            redact_url("postgres://app@db/tpp?sslmode=require&password=s3cret"),
            "postgres://app@db/tpp?sslmode=require&password=***"
        );
        assert_eq!(
            redact_url("sqlite:///var/lib/x.db"),
            "sqlite:///var/lib/x.db"
        );
        assert_eq!(redact_url("postgres://a:b:c@h/d"), "postgres://a:***@h/d");
        assert_eq!(
            url_password("postgres://a:p%40ss@h/d").as_deref(),
            Some("p%40ss")
        );
        assert_eq!(
            url_password("postgres://h/d?password=x").as_deref(),
            Some("x")
        );
        assert_eq!(url_password("sqlite:///x.db"), None);
    }
}
