//! `tppguard-verifier token issue|list|revoke`: the bearer tokens the `serve` API takes, kept
//! in the verifier's database (the one `--config` names).
//!
//! A token reads `tpg_<id>_<secret>`: a 64-bit id (how it is looked up, listed and revoked)
//! and a 256-bit secret from the system's random source, both lower-case hex. It is shown
//! once, at issue; the database keeps only the SHA-256 of the secret. A running `serve`
//! notices a new or revoked token within about a second.

use std::io::Write;
use std::path::{Path, PathBuf};

use ring::rand::{SecureRandom, SystemRandom};
use serde::Serialize;
use tppguard_proto::text::Escaped;

use crate::cli::{TokenArgs, TokenCommand, TokenIssueArgs};
use crate::error::Error;
use crate::licence::format_rfc3339;
use crate::serve::auth::{Role, TOKEN_ID_BYTES, TOKEN_PREFIX, TOKEN_SECRET_BYTES, secret_digest};
use crate::serve::config::Config;
use crate::store::{ApiToken, Store};

/// Longest token name.
pub const MAX_NAME_LEN: usize = 256;
/// Longest `--expires-in-days`.
pub const MAX_EXPIRES_IN_DAYS: u32 = 3650;
const SECONDS_PER_DAY: i64 = 86_400;

/// Why a `token` command refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// `--licence` given or missing for the role.
    #[error("--licence: {reason}")]
    Scope {
        /// What is wrong.
        reason: String,
    },
    /// `--name` is empty or too long.
    #[error("--name: {len} bytes; a name is 1 to {MAX_NAME_LEN} bytes")]
    Name {
        /// Its length.
        len: usize,
    },
    /// `token revoke` named no stored token.
    #[error("token {id}: no such token in {db}")]
    Unknown {
        /// The id given.
        id: String,
        /// The database, password hidden.
        db: String,
    },
    /// The system random source failed.
    #[error("token: the system random source failed")]
    Random,
}

impl TokenError {
    /// The fix.
    pub fn hint(&self) -> &'static str {
        match self {
            Self::Scope { .. } => {
                "a vendor token needs at least one --licence ID (the licences it may read); \
                 node, operator, regulator, admin and metrics tokens take none"
            }
            Self::Name { .. } => "name whom the token is for, e.g. --name bafa-export-control",
            Self::Unknown { .. } => {
                "`tppguard-verifier token list --config VERIFIER.toml` shows the ids; check \
                 --config names the verifier's configuration"
            }
            Self::Random => "check the system's random source (/dev/urandom)",
        }
    }
}

/// Runs a `token` subcommand at `now`.
pub fn run(args: &TokenArgs, out: &mut dyn Write, now: i64) -> Result<(), Error> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| Error::Serve {
            what: "cannot start the async runtime".to_owned(),
            source,
        })?;
    runtime.block_on(async {
        match &args.command {
            TokenCommand::Issue(a) => issue(a, out, now).await,
            TokenCommand::List { config, json } => list(config, *json, out).await,
            TokenCommand::Revoke { config, id, json } => revoke(config, id, *json, out, now).await,
        }
    })
}

async fn open(config: &Path) -> Result<Store, Error> {
    let config = Config::load(config)?;
    Ok(Store::open(&config.database).await?)
}

/// A token as listed: never its secret or the secret's hash.
#[derive(Serialize)]
struct Listed<'a> {
    id: &'a str,
    name: &'a str,
    role: &'a str,
    licences: &'a [String],
    created_at: i64,
    expires_at: Option<i64>,
    revoked_at: Option<i64>,
}

impl<'a> From<&'a ApiToken> for Listed<'a> {
    fn from(t: &'a ApiToken) -> Self {
        Self {
            id: &t.id,
            name: &t.name,
            role: &t.role,
            licences: &t.licences,
            created_at: t.created_at,
            expires_at: t.expires_at,
            revoked_at: t.revoked_at,
        }
    }
}

fn random_hex(rng: &SystemRandom, bytes: usize) -> Result<String, TokenError> {
    let mut buf = vec![0u8; bytes];
    rng.fill(&mut buf).map_err(|_| TokenError::Random)?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// The scope `licences` gives `role`, checked.
fn scope(role: Role, licences: &[String]) -> Result<Vec<String>, TokenError> {
    match (role, licences.is_empty()) {
        (Role::Vendor, true) => Err(TokenError::Scope {
            reason: "a vendor token needs at least one licence".to_owned(),
        }),
        (Role::Vendor, false) => {
            let mut ids = licences.to_vec();
            ids.sort();
            ids.dedup();
            if let Some(bad) = ids
                .iter()
                .find(|l| l.is_empty() || l.len() > crate::store::MAX_LICENCE_ID_LEN)
            {
                return Err(TokenError::Scope {
                    reason: format!("{bad:?} is not a licence id"),
                });
            }
            Ok(ids)
        }
        (_, true) => Ok(Vec::new()),
        (other, false) => Err(TokenError::Scope {
            reason: format!("a {other} token is not scoped to licences"),
        }),
    }
}

async fn issue(a: &TokenIssueArgs, out: &mut dyn Write, now: i64) -> Result<(), Error> {
    let licences = scope(a.role, &a.licence)?;
    if a.name.is_empty() || a.name.len() > MAX_NAME_LEN {
        return Err(TokenError::Name { len: a.name.len() }.into());
    }
    let rng = SystemRandom::new();
    let id = random_hex(&rng, TOKEN_ID_BYTES)?;
    let secret = random_hex(&rng, TOKEN_SECRET_BYTES)?;
    let text = format!("{TOKEN_PREFIX}{id}_{secret}");
    let stored = ApiToken {
        id,
        name: a.name.clone(),
        role: a.role.as_str().to_owned(),
        licences,
        secret_sha256: secret_digest(&secret),
        created_at: now,
        expires_at: a
            .expires_in_days
            .map(|d| now.saturating_add(i64::from(d).saturating_mul(SECONDS_PER_DAY))),
        revoked_at: None,
    };
    // The file first: a token that could not be written is never stored.
    if let Some(path) = &a.out {
        write_secret(path, &text)?;
    }
    let store = open(&a.config).await?;
    let added = store.add_api_token(&stored).await;
    store.close().await;
    if let Err(e) = added {
        if let Some(path) = &a.out {
            // Best effort: the token in it was never valid.
            let _ = std::fs::remove_file(path);
        }
        return Err(e.into());
    }
    if a.json {
        let mut v = serde_json::to_value(Listed::from(&stored))?;
        if let Some(map) = v.as_object_mut() {
            match &a.out {
                Some(path) => map.insert("out".to_owned(), path.display().to_string().into()),
                None => map.insert("token".to_owned(), text.into()),
            };
        }
        writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
    } else if let Some(path) = &a.out {
        writeln!(
            out,
            "issued {} token {} ({}) to {} (mode 0600); it is not shown again",
            stored.role,
            stored.id,
            Escaped(&stored.name),
            Escaped(&path.display().to_string())
        )?;
    } else {
        writeln!(out, "{text}")?;
    }
    Ok(())
}

/// Writes `token` to a new file readable by its owner only.
fn write_secret(path: &PathBuf, token: &str) -> Result<(), Error> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let io = |action: &'static str| {
        move |source: std::io::Error| Error::Io {
            path: path.clone(),
            action,
            source,
        }
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|source| {
            if source.kind() == std::io::ErrorKind::AlreadyExists {
                Error::Exists { path: path.clone() }
            } else {
                io("create")(source)
            }
        })?;
    writeln!(file, "{token}").map_err(io("write"))?;
    file.sync_all().map_err(io("write"))
}

async fn list(config: &Path, json: bool, out: &mut dyn Write) -> Result<(), Error> {
    let store = open(config).await?;
    let tokens = store.api_tokens().await;
    store.close().await;
    let tokens = tokens?;
    if json {
        let listed: Vec<Listed<'_>> = tokens.iter().map(Listed::from).collect();
        let v = serde_json::json!({ "tokens": listed });
        writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
        return Ok(());
    }
    if tokens.is_empty() {
        writeln!(
            out,
            "no tokens; issue one with `tppguard-verifier token issue --config ... --role ROLE \
             --name NAME`"
        )?;
        return Ok(());
    }
    writeln!(
        out,
        "{:<16}  {:<9}  {:<20}  {:<20}  {:<20}  {:<20}  NAME",
        "ID", "ROLE", "LICENCES", "CREATED", "EXPIRES", "REVOKED"
    )?;
    let time = |t: Option<i64>| t.map_or_else(|| "-".to_owned(), format_rfc3339);
    for t in &tokens {
        let licences = if t.licences.is_empty() {
            "-".to_owned()
        } else {
            t.licences.join(",")
        };
        writeln!(
            out,
            "{:<16}  {:<9}  {:<20}  {:<20}  {:<20}  {:<20}  {}",
            Escaped(&t.id),
            Escaped(&t.role),
            Escaped(&licences),
            format_rfc3339(t.created_at),
            time(t.expires_at),
            time(t.revoked_at),
            Escaped(&t.name),
        )?;
    }
    Ok(())
}

async fn revoke(
    config: &Path,
    id: &str,
    json: bool,
    out: &mut dyn Write,
    now: i64,
) -> Result<(), Error> {
    let store = open(config).await?;
    let revoked = store.revoke_api_token(id, now).await;
    let db = store.url_redacted().to_owned();
    store.close().await;
    let Some(t) = revoked? else {
        return Err(TokenError::Unknown {
            id: id.to_owned(),
            db,
        }
        .into());
    };
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&Listed::from(&t))?)?;
    } else {
        writeln!(
            out,
            "revoked {} token {} ({}) at {}; a running verifier refuses it within a second",
            Escaped(&t.role),
            Escaped(&t.id),
            Escaped(&t.name),
            format_rfc3339(t.revoked_at.unwrap_or(now))
        )?;
    }
    Ok(())
}
