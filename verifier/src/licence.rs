//! Signed licences: `tppguard-verifier licence sign` turns an authored TOML licence into a
//! compact JWS (`typ` [`LICENCE_TYP`], `x5c` = the licence signer's chain, leaf first), and
//! [`verify_licence`] checks one: `typ`, the chain to a pinned licence-authority root
//! ([`TrustAnchors::verify_licence_signer`], with that domain's CRLs), the header `alg` against the
//! leaf key, the signature, then the payload ([`Licence::from_json`], the same checks as the
//! TOML). A licence signed under the operator CA (a node key) is a chain error: the two trust
//! domains are separate.
//!
//! A licence outside its own validity window still verifies: whether it is in force at an
//! instant is [`Licence::is_valid_at`], a finding the policy (and `licence show`) reports.

use std::io::Write;
use std::path::{Path, PathBuf};

use rustls_pki_types::PrivatePkcs8KeyDer;
use rustls_pki_types::pem::PemObject;
use serde::Serialize;
use tppguard_proto::jws::{self, Alg, Header, JwsError, SigningKey, VerifyingKey};
use tppguard_proto::licence::revocation::{
    LICENCE_REVOCATION_TYP, LicenceRevocation, RevocationError,
};
use tppguard_proto::licence::{CountryCode, Licence, LicenceError, MAX_LICENCE_BYTES, Validity};
use tppguard_proto::spec::h100_equivalents;
use tppguard_proto::text::{Escaped, escape};

use crate::Outcome;
use crate::attestation::{EnvelopeError, verify_signed};
use crate::chain::{self, ChainError, KeyAlgorithm, TrustAnchors, VerifiedLeaf};
use crate::cli::{LicenceArgs, LicenceCommand, LicenceShowArgs, LicenceSignArgs};
use crate::error::Error;
use crate::pki::{LICENCE_SIGNER_CHAIN, LICENCE_SIGNER_KEY};
use crate::policy::VerifiedLicence;

mod revoke;
#[cfg(test)]
mod tests;

/// The JWS `typ` of a signed licence.
pub const LICENCE_TYP: &str = "tppguard-licence+jwt";

/// Verifies a signed licence at Unix time `at_unix` (the signer chain's validity and CRLs are
/// checked at that instant). The licence's own validity window is not checked here.
pub fn verify_licence(
    token: &str,
    trust: &TrustAnchors,
    at_unix: i64,
) -> Result<VerifiedLicence, LicenceVerifyError> {
    let (licence, leaf) = verify_licence_parts(token, trust, at_unix)?;
    Ok(VerifiedLicence::new(licence, leaf.subject().to_owned()))
}

/// [`verify_licence`], giving the licence and the signer's leaf (for display).
fn verify_licence_parts(
    token: &str,
    trust: &TrustAnchors,
    at_unix: i64,
) -> Result<(Licence, VerifiedLeaf), LicenceVerifyError> {
    let (verified, leaf) = verify_signed(token, LICENCE_TYP, |x5c| {
        trust
            .verify_licence_signer(x5c, at_unix)
            .map(|v| v.leaf().clone())
    })?;
    let licence = Licence::from_json(verified.payload())?;
    Ok((licence, leaf))
}

/// A licence revocation whose signature chains to the licence authority.
#[derive(Debug, Clone)]
pub struct VerifiedRevocation {
    revocation: LicenceRevocation,
    signer_subject: String,
}

impl VerifiedRevocation {
    /// The revocation.
    pub fn revocation(&self) -> &LicenceRevocation {
        &self.revocation
    }

    /// The subject of the certificate that signed it.
    pub fn signer_subject(&self) -> &str {
        &self.signer_subject
    }
}

/// Verifies a signed licence revocation (`typ` [`LICENCE_REVOCATION_TYP`]) at Unix time
/// `at_unix` exactly as [`verify_licence`] verifies a licence: the chain to a pinned
/// licence-authority root with that domain's CRLs, `alg` against the leaf key, the signature,
/// then the payload ([`LicenceRevocation::from_json`]).
pub fn verify_licence_revocation(
    token: &str,
    trust: &TrustAnchors,
    at_unix: i64,
) -> Result<VerifiedRevocation, LicenceVerifyError> {
    let (verified, leaf) = verify_signed(token, LICENCE_REVOCATION_TYP, |x5c| {
        trust
            .verify_licence_signer(x5c, at_unix)
            .map(|v| v.leaf().clone())
    })?;
    let revocation = LicenceRevocation::from_json(verified.payload())?;
    Ok(VerifiedRevocation {
        revocation,
        signer_subject: leaf.subject().to_owned(),
    })
}

/// Why a signed licence was rejected.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LicenceVerifyError {
    /// The token is not a well-formed JWS, or its signature does not verify.
    #[error("licence token rejected ({})", .0.code())]
    Jws(#[from] JwsError),
    /// The header's `typ` is not [`LICENCE_TYP`].
    #[error("the header `typ` is {}, not the one expected ({LICENCE_TYP:?} for a licence, {LICENCE_REVOCATION_TYP:?} for a revocation)", typ.as_deref().map_or_else(|| "missing".to_owned(), |t| format!("{t:?}")))]
    WrongTyp {
        /// The `typ` given, if any (at most 64 characters of it).
        typ: Option<String>,
    },
    /// The header has no `x5c`, so no key can be trusted for it.
    #[error("the header has no `x5c` certificate chain")]
    MissingX5c,
    /// The `x5c` chain does not verify to a pinned licence-authority root.
    #[error("the `x5c` licence-signer chain is rejected ({})", .0.code())]
    Chain(#[from] ChainError),
    /// The header's `alg` is not the algorithm of the `x5c` leaf's key.
    #[error("the header says `alg` {header} but the `x5c` leaf key is {key}")]
    KeyDoesNotMatchX5c {
        /// The header's algorithm.
        header: Alg,
        /// The leaf key's algorithm.
        key: KeyAlgorithm,
    },
    /// The signed payload is not a valid licence.
    #[error("the signed licence is invalid ({})", .0.code())]
    Licence(#[from] LicenceError),
    /// The signed payload is not a valid licence revocation.
    #[error("the signed revocation is invalid: {0}")]
    Revocation(#[from] RevocationError),
}

impl LicenceVerifyError {
    /// The codes this type defines itself (the same meaning as
    /// [`crate::attestation::AttestationError::CODES`]); wrapped errors give their own
    /// ([`JwsError::CODES`], [`ChainError::CODES`], [`LicenceError::CODES`]).
    pub const CODES: [&'static str; 3] = ["wrong_typ", "missing_x5c", "key_does_not_match_x5c"];

    /// The stable snake_case reason code: the wrapped error's code, or this type's own.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Jws(e) => e.code(),
            Self::WrongTyp { .. } => "wrong_typ",
            Self::MissingX5c => "missing_x5c",
            Self::Chain(e) => e.code(),
            Self::KeyDoesNotMatchX5c { .. } => "key_does_not_match_x5c",
            Self::Licence(e) => e.code(),
            Self::Revocation(e) => e.code(),
        }
    }

    /// A human sentence: what was wrong, with the wrapped error's reason.
    pub fn sentence(&self) -> String {
        match self {
            Self::Jws(e) => format!("the licence is not a valid signed token: {e}"),
            Self::Chain(e) => format!(
                "the licence signer's chain (x5c) does not lead to a pinned licence-authority \
                 root: {e}"
            ),
            Self::Licence(e) => format!("the signed licence is invalid: {e}"),
            Self::Revocation(e) => format!("the signed revocation is invalid: {e}"),
            Self::WrongTyp { .. } | Self::MissingX5c | Self::KeyDoesNotMatchX5c { .. } => {
                format!("the licence is rejected: {self}")
            }
        }
    }
}

impl From<EnvelopeError> for LicenceVerifyError {
    fn from(e: EnvelopeError) -> Self {
        match e {
            EnvelopeError::Jws(e) => Self::Jws(e),
            EnvelopeError::WrongTyp(typ) => Self::WrongTyp { typ },
            EnvelopeError::MissingX5c => Self::MissingX5c,
            EnvelopeError::Chain(e) => Self::Chain(e),
            EnvelopeError::KeyDoesNotMatchX5c { header, key } => {
                Self::KeyDoesNotMatchX5c { header, key }
            }
        }
    }
}

/// Runs `tppguard-verifier licence ...` at Unix time `now`.
pub fn run(args: &LicenceArgs, out: &mut dyn Write, now: i64) -> Result<Outcome, Error> {
    match &args.command {
        LicenceCommand::Sign(a) => sign_command(a, out).map(|()| Outcome::Clean),
        LicenceCommand::Show(a) => show_command(a, out, now),
        LicenceCommand::Revoke(a) => revoke::run(a, out, now).map(|()| Outcome::Clean),
    }
}

/// The caps of a licence, with H100-equivalents (JSON of `sign` and `show`).
#[derive(Debug, Serialize)]
struct Caps {
    max_devices: u32,
    max_aggregate_tpp: String,
    max_aggregate_h100_equivalents: String,
    max_tpp_per_device: Option<String>,
    max_per_device_h100_equivalents: Option<String>,
}

impl Caps {
    fn of(licence: &Licence) -> Self {
        let per_device = licence.max_tpp_per_device();
        Self {
            max_devices: licence.max_devices(),
            max_aggregate_tpp: licence.max_aggregate_tpp().to_string(),
            max_aggregate_h100_equivalents: h100_equivalents(licence.max_aggregate_tpp())
                .to_string(),
            max_tpp_per_device: per_device.map(|t| t.to_string()),
            max_per_device_h100_equivalents: per_device.map(|t| h100_equivalents(t).to_string()),
        }
    }

    fn lines(&self) -> String {
        let mut text = format!(
            "  max devices          {}\n  max aggregate TPP    {} ({} H100-equivalents)\n",
            self.max_devices, self.max_aggregate_tpp, self.max_aggregate_h100_equivalents
        );
        match (
            &self.max_tpp_per_device,
            &self.max_per_device_h100_equivalents,
        ) {
            (Some(tpp), Some(h100)) => text.push_str(&format!(
                "  max TPP per device   {tpp} ({h100} H100-equivalents)\n"
            )),
            _ => text.push_str("  max TPP per device   none\n"),
        }
        text
    }
}

/// What `licence sign` wrote.
#[derive(Debug, Serialize)]
struct SignReport<'a> {
    out: &'a Path,
    id: &'a str,
    licensee: &'a str,
    destination_country: CountryCode,
    caps: Caps,
    valid_from: String,
    valid_until: String,
    alg: Alg,
    signer: String,
}

fn sign_command(args: &LicenceSignArgs, out: &mut dyn Write) -> Result<(), Error> {
    let text = read_text(
        &args.licence,
        u64::try_from(MAX_LICENCE_BYTES).unwrap_or(u64::MAX),
    )?;
    let licence = Licence::from_toml_str(&text).map_err(|source| Error::InvalidLicence {
        path: args.licence.clone(),
        source,
    })?;

    let Signer {
        key,
        x5c,
        subject: signer,
    } = load_signer(&args.dir)?;

    let payload = licence.to_json()?;
    let header = Header::new(key.alg())
        .with_typ(LICENCE_TYP)
        .with_x5c(x5c.clone());
    let token = jws::sign(&header, &payload, &key).map_err(Error::Sign)?;
    crate::pki::write_public(&args.out, format!("{token}\n").as_bytes())?;

    let report = SignReport {
        out: &args.out,
        id: licence.id(),
        licensee: &licence.licensee().name,
        destination_country: licence.destination_country(),
        caps: Caps::of(&licence),
        valid_from: format_rfc3339(licence.valid_from()),
        valid_until: format_rfc3339(licence.valid_until()),
        alg: key.alg(),
        signer,
    };
    if args.json {
        serde_json::to_writer_pretty(&mut *out, &report)?;
        writeln!(out)?;
    } else {
        write!(
            out,
            "signed licence {} for {} (destination {})\n{}  valid                {} until {}\n  signed by            {} ({})\nwrote {}\n",
            Escaped(report.id),
            Escaped(report.licensee),
            report.destination_country,
            report.caps.lines(),
            report.valid_from,
            report.valid_until,
            Escaped(&report.signer),
            report.alg,
            Escaped(&report.out.display().to_string()),
        )?;
    }
    Ok(())
}

/// The licence signer of a `pki init` folder: its key and chain, checked to match.
pub(crate) struct Signer {
    pub(crate) key: SigningKey,
    /// The chain, DER, leaf first (the JWS `x5c`).
    pub(crate) x5c: Vec<Vec<u8>>,
    /// The leaf's subject.
    pub(crate) subject: String,
}

/// Reads `licence-signer.key` and `licence-signer-chain.pem` of `dir`.
pub(crate) fn load_signer(dir: &Path) -> Result<Signer, Error> {
    load_signer_files(dir.join(LICENCE_SIGNER_KEY), dir.join(LICENCE_SIGNER_CHAIN))
}

/// Reads a signer's PKCS#8 PEM key and its PEM chain (leaf first), checked to match: the
/// licence signer's, or the shipment signer's (`crate::shipment`).
pub(crate) fn load_signer_files(key_path: PathBuf, chain_path: PathBuf) -> Result<Signer, Error> {
    let key_pem = chain::read_bounded(&key_path, chain::MAX_PEM_FILE_BYTES)?;
    let bad_key = |reason: String| Error::BadKeyFile {
        path: key_path.clone(),
        reason,
    };
    let pkcs8 = PrivatePkcs8KeyDer::from_pem_slice(&key_pem)
        .map_err(|e| bad_key(format!("not a PEM PKCS#8 private key ({e})")))?;
    let key =
        SigningKey::from_pkcs8_any(pkcs8.secret_pkcs8_der()).map_err(|e| bad_key(e.to_string()))?;

    let chain_pem = chain::read_bounded(&chain_path, chain::MAX_PEM_FILE_BYTES)?;
    let bad_chain = |reason: String| Error::BadCertFile {
        path: chain_path.clone(),
        reason,
    };
    let x5c: Vec<Vec<u8>> = chain::certs_from_pem(&chain_pem)
        .map_err(bad_chain)?
        .iter()
        .map(|c| c.to_vec())
        .collect();
    let leaf = x5c.first().map(Vec::as_slice).unwrap_or_default();
    let (_, cert) = x509_parser::parse_x509_certificate(leaf)
        .map_err(|_| bad_chain("the first certificate is not valid X.509".to_owned()))?;
    // The key must be the leaf's, or every verifier would reject what it signs.
    if VerifyingKey::from_spki_der(cert.public_key().raw).ok() != Some(key.verifying_key()) {
        return Err(Error::SignerKeyMismatch {
            key: key_path,
            chain: chain_path,
        });
    }
    let subject = cert.subject().to_string();
    Ok(Signer { key, x5c, subject })
}

/// The JSON of `licence show`.
#[derive(Debug, Serialize)]
struct ShowReport<'a> {
    file: &'a Path,
    verified: bool,
    at: i64,
    validity: Validity,
    validity_code: &'static str,
    validity_sentence: String,
    caps: Caps,
    licence: &'a Licence,
    signer: &'a VerifiedLeaf,
}

fn show_command(args: &LicenceShowArgs, out: &mut dyn Write, now: i64) -> Result<Outcome, Error> {
    let at = args.at.unwrap_or(now);
    let trust = TrustAnchors::from_trust_toml(&args.trust)?;
    let max = u64::try_from(jws::MAX_JWS_BYTES).unwrap_or(u64::MAX);
    let bytes = chain::read_bounded(&args.licence, max)?;
    let rejected = |source| Error::LicenceRejected {
        path: args.licence.clone(),
        source,
    };
    // Bytes that are not UTF-8 are not base64url either: the JWS decoder rejects them.
    let text = String::from_utf8_lossy(&bytes);
    let (licence, leaf) = verify_licence_parts(text.trim_ascii(), &trust, at).map_err(rejected)?;
    let validity = licence.is_valid_at(at);
    let outcome = if validity.is_valid() {
        Outcome::Clean
    } else {
        Outcome::Findings
    };
    let report = ShowReport {
        file: &args.licence,
        verified: true,
        at,
        validity,
        validity_code: validity.code(),
        validity_sentence: validity.sentence(),
        caps: Caps::of(&licence),
        licence: &licence,
        signer: &leaf,
    };
    if args.json {
        serde_json::to_writer_pretty(&mut *out, &report)?;
        writeln!(out)?;
        return Ok(outcome);
    }
    let l = &licence;
    // Every text field of the licence and the signer's subject is outside text: escaped.
    let list = |items: &[String]| {
        if items.is_empty() {
            "any".to_owned()
        } else {
            items
                .iter()
                .map(|item| escape(item))
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    writeln!(
        out,
        "licence {}: signature verified, signed by {} ({} key) under a pinned licence-authority root",
        Escaped(l.id()),
        Escaped(leaf.subject()),
        leaf.key_algorithm()
    )?;
    writeln!(out, "  issuer               {}", Escaped(l.issuer()))?;
    writeln!(
        out,
        "  licensee             {} (headquarters {}, ultimate parent {})",
        Escaped(&l.licensee().name),
        l.licensee().headquarters_country,
        l.licensee().ultimate_parent_country
    )?;
    writeln!(out, "  destination          {}", l.destination_country())?;
    writeln!(out, "  end user             {}", Escaped(l.end_user()))?;
    writeln!(out, "  end use              {}", Escaped(l.end_use()))?;
    for (i, site) in l.sites().iter().enumerate() {
        writeln!(
            out,
            "  {}{} ({}, {})",
            if i == 0 {
                "sites                "
            } else {
                "                     "
            },
            Escaped(&site.id.to_string()),
            Escaped(&site.name),
            site.country
        )?;
    }
    writeln!(out, "  allowed ECCNs        {}", list(l.eccns()))?;
    writeln!(out, "  allowed models       {}", list(l.models()))?;
    write!(out, "{}", report.caps.lines())?;
    writeln!(
        out,
        "  min evidence tier    {}",
        l.min_evidence_tier().code()
    )?;
    writeln!(
        out,
        "  max attestation age  {} s",
        l.max_attestation_age_s()
    )?;
    writeln!(out, "  rule set             {}", Escaped(l.rule_set()))?;
    let m = l.measurement();
    if !m.is_empty() {
        let mut overrides = Vec::new();
        if let Some(p) = m.exceeds_spec_percent {
            overrides.push(format!("exceeds_spec_percent {p}"));
        }
        if let Some(p) = m.below_spec_percent {
            overrides.push(format!("below_spec_percent {p}"));
        }
        if let Some(d) = m.max_age_days {
            overrides.push(format!("max_age_days {d}"));
        }
        writeln!(
            out,
            "  measurement          {} (replacing the rule set's)",
            overrides.join(", ")
        )?;
    }
    writeln!(
        out,
        "  validity             {} until {} (exclusive)",
        format_rfc3339(l.valid_from()),
        format_rfc3339(l.valid_until())
    )?;
    writeln!(
        out,
        "  status               {}: {}",
        validity.code(),
        Escaped(&validity.sentence())
    )?;
    Ok(outcome)
}

fn read_text(path: &Path, max: u64) -> Result<String, Error> {
    String::from_utf8(chain::read_bounded(path, max)?).map_err(|_| Error::BadCertFile {
        path: path.to_owned(),
        reason: "not UTF-8 text".to_owned(),
    })
}

// RFC 3339 for `--at`. proto's strict parser (`licence::time`) is private to proto, so this is
// a minimal one: `YYYY-MM-DDTHH:MM:SS[.000]` then `Z` or `±HH:MM`, 1970..=9999.

const SECONDS_PER_DAY: i64 = 86_400;
/// Latest instant accepted: 9999-12-31T23:59:59Z.
const MAX_UNIX: i64 = 253_402_300_799;

/// `--at`: Unix seconds (digits, optionally signed) or an RFC 3339 timestamp with an offset.
pub fn parse_at(text: &str) -> Result<i64, &'static str> {
    if !text.is_empty()
        && text
            .strip_prefix('-')
            .unwrap_or(text)
            .bytes()
            .all(|b| b.is_ascii_digit())
    {
        return text.parse().map_err(|_| "is out of range for Unix seconds");
    }
    parse_rfc3339(text)
}

fn digits(text: Option<&str>, n: usize) -> Option<i64> {
    text.filter(|t| t.len() == n && t.bytes().all(|b| b.is_ascii_digit()))?
        .parse()
        .ok()
}

/// Strict RFC 3339 (`2026-01-01T00:00:00Z`, `2026-01-01T01:00:00+01:00`) to Unix seconds.
fn parse_rfc3339(text: &str) -> Result<i64, &'static str> {
    const SHAPE: &str =
        "is neither Unix seconds nor an RFC 3339 timestamp such as 2026-01-01T00:00:00Z";
    let (date, rest) = text.split_at_checked(10).ok_or(SHAPE)?;
    let rest = rest.strip_prefix(['T', 't']).ok_or(SHAPE)?;
    let (time, offset) = rest.split_at_checked(8).ok_or(SHAPE)?;
    let mut d = date.split('-');
    let (Some(year), Some(month), Some(day), None) = (
        digits(d.next(), 4),
        digits(d.next(), 2),
        digits(d.next(), 2),
        d.next(),
    ) else {
        return Err(SHAPE);
    };
    let mut t = time.split(':');
    let (Some(hour), Some(minute), Some(second), None) = (
        digits(t.next(), 2),
        digits(t.next(), 2),
        digits(t.next(), 2),
        t.next(),
    ) else {
        return Err(SHAPE);
    };
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return Err("has a date that does not exist");
    }
    if hour > 23 || minute > 59 || second > 59 {
        return Err("has a time that does not exist (leap seconds are not accepted)");
    }
    let offset = match offset.strip_prefix('.') {
        Some(frac) => {
            let n = frac.bytes().take_while(u8::is_ascii_digit).count();
            let (frac, offset) = frac.split_at_checked(n).unwrap_or((frac, ""));
            if frac.is_empty() || frac.bytes().any(|b| b != b'0') {
                return Err("has fractional seconds; give whole seconds");
            }
            offset
        }
        None => offset,
    };
    let offset_s = match offset {
        "Z" | "z" => 0,
        "" => return Err("has no UTC offset; add `Z` for UTC (2026-01-01T00:00:00Z)"),
        _ => {
            const BAD: &str = "has an offset that is not `Z` or ±HH:MM";
            let (sign, hhmm) = match offset.split_at_checked(1) {
                Some(("+", hhmm)) => (1, hhmm),
                Some(("-", hhmm)) => (-1, hhmm),
                _ => return Err(BAD),
            };
            let mut parts = hhmm.split(':');
            let (Some(h), Some(m), None) = (
                digits(parts.next(), 2),
                digits(parts.next(), 2),
                parts.next(),
            ) else {
                return Err(BAD);
            };
            if h > 23 || m > 59 {
                return Err(BAD);
            }
            sign * (h * 3600 + m * 60)
        }
    };
    let unix =
        days_from_civil(year, month, day) * SECONDS_PER_DAY + hour * 3600 + minute * 60 + second
            - offset_s;
    if !(0..=MAX_UNIX).contains(&unix) {
        return Err("is outside 1970-01-01T00:00:00Z..=9999-12-31T23:59:59Z");
    }
    Ok(unix)
}

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 (H. Hinnant's days-from-civil); year 0..=9999, so nothing overflows.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let doy = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468
}

/// Unix seconds (clamped to 1970..=9999) as RFC 3339 UTC.
pub fn format_rfc3339(unix: i64) -> String {
    let t = unix.clamp(0, MAX_UNIX);
    let z = t.div_euclid(SECONDS_PER_DAY) + 719_468;
    let (era, doe) = (z.div_euclid(146_097), z.rem_euclid(146_097));
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let s = t.rem_euclid(SECONDS_PER_DAY);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        s / 3600,
        s % 3600 / 60,
        s % 60
    )
}
