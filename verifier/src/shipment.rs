//! Shipment records (issue 15): `tppguard-verifier shipment sign` turns a vendor's TOML
//! shipment ([`tppguard_proto::shipment::Shipment`]) into a compact JWS (`typ`
//! [`SHIPMENT_TYP`], `x5c` = the shipment signer's chain, leaf first), and [`verify_token`]
//! checks one into a [`VerifiedShipment`]: `typ`, the chain to a pinned `[vendor] roots` root
//! ([`TrustAnchors::verify_shipment_signer`]: never the operator, licence-authority or GPU
//! device roots), the header `alg` against the leaf key, the signature, then the payload
//! ([`Shipment::from_json`], the same checks as the TOML). The vendor a shipment is kept under
//! is the signer certificate's subject, never the record's own `vendor` text.

use std::io::Write;
use std::path::Path;

use serde::Serialize;
use tppguard_proto::jws::{self, Header, JwsError, SigningKey};
use tppguard_proto::shipment::{MAX_SHIPMENT_BYTES, Shipment, ShipmentError};
use tppguard_proto::text::Escaped;

use crate::Outcome;
use crate::attestation::{EnvelopeError, verify_signed};
use crate::chain::{self, ChainError, TrustAnchors, VerifiedLeaf};
use crate::cli::{ShipmentArgs, ShipmentCommand, ShipmentShowArgs, ShipmentSignArgs};
use crate::error::Error;
use crate::licence::{Signer, format_rfc3339, load_signer_files};
use crate::pki::{SHIPMENT_SIGNER_CHAIN, SHIPMENT_SIGNER_KEY};
use crate::policy::shipments::VerifiedShipment;

#[cfg(test)]
mod tests;

/// The JWS `typ` of a signed shipment.
pub const SHIPMENT_TYP: &str = "tppguard-shipment+jwt";

/// Why a shipment token was refused: a stable code (`shipment_bad_token`, `shipment_chain`,
/// `shipment_signature`, `shipment_payload`), the underlying check's code, and a sentence
/// naming the thing, the reason and the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{sentence}")]
pub struct ShipmentRejection {
    code: &'static str,
    reason_code: &'static str,
    sentence: String,
}

impl ShipmentRejection {
    /// Every [`Self::code`].
    pub const CODES: [&'static str; 4] = [
        "shipment_bad_token",
        "shipment_chain",
        "shipment_signature",
        "shipment_payload",
    ];

    /// The stable snake_case code: which stage refused the token.
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// The underlying check's code (a [`JwsError`], [`ChainError`] or [`ShipmentError`]
    /// code, or `wrong_typ`, `missing_x5c`, `key_does_not_match_x5c`).
    pub fn reason_code(&self) -> &'static str {
        self.reason_code
    }

    /// The sentence: the thing, the reason (with [`Self::reason_code`]) and the fix.
    pub fn sentence(&self) -> &str {
        &self.sentence
    }

    fn new(code: &'static str, reason_code: &'static str, sentence: String) -> Self {
        Self {
            code,
            reason_code,
            sentence,
        }
    }

    fn bad_token(reason_code: &'static str, why: &dyn std::fmt::Display) -> Self {
        Self::new(
            "shipment_bad_token",
            reason_code,
            format!(
                "the shipment is not a signed shipment token ({reason_code}): {why}; give the \
                 file `tppguard-verifier shipment sign` wrote, unchanged"
            ),
        )
    }

    fn chain(e: &ChainError) -> Self {
        Self::new(
            "shipment_chain",
            e.code(),
            format!(
                "the shipment signer's chain (x5c) does not lead to a pinned [vendor] root \
                 ({}): {e}; a shipment must be signed with the vendor's shipment-signing key \
                 (`pki init-vendor`), and the verifier must pin that vendor's CA under \
                 [vendor] roots in trust.toml (`pki init-verifier --vendor-ca`); licence and \
                 node keys never sign shipments",
                e.code()
            ),
        )
    }

    fn signature(reason_code: &'static str, why: &dyn std::fmt::Display) -> Self {
        Self::new(
            "shipment_signature",
            reason_code,
            format!(
                "the shipment's signature does not verify with its signer's key \
                 ({reason_code}): {why}; the token was changed after signing, so ask the \
                 vendor for the file as signed"
            ),
        )
    }

    fn payload(e: &ShipmentError) -> Self {
        Self::new(
            "shipment_payload",
            e.code(),
            format!(
                "the signed shipment's contents are invalid ({}): {e}; the vendor must re-sign \
                 a valid shipment TOML",
                e.code()
            ),
        )
    }
}

impl From<EnvelopeError> for ShipmentRejection {
    fn from(e: EnvelopeError) -> Self {
        match e {
            // After the chain: the signature itself.
            EnvelopeError::Jws(
                e @ (JwsError::BadSignature
                | JwsError::SignatureLength { .. }
                | JwsError::AlgKeyMismatch { .. }),
            ) => Self::signature(e.code(), &e),
            EnvelopeError::Jws(e) => Self::bad_token(e.code(), &e),
            EnvelopeError::WrongTyp(typ) => Self::bad_token(
                "wrong_typ",
                &format!(
                    "the header `typ` is {}, not {SHIPMENT_TYP:?}",
                    typ.map_or_else(|| "missing".to_owned(), |t| format!("{t:?}"))
                ),
            ),
            EnvelopeError::MissingX5c => {
                Self::bad_token("missing_x5c", &"the header has no `x5c` certificate chain")
            }
            EnvelopeError::Chain(e) => Self::chain(&e),
            EnvelopeError::KeyDoesNotMatchX5c { header, key } => Self::signature(
                "key_does_not_match_x5c",
                &format!("the header says `alg` {header} but the `x5c` leaf key is {key}"),
            ),
        }
    }
}

/// Verifies a shipment token (compact JWS) at `now` (Unix seconds; the signer's chain and
/// the `[vendor] crls` are checked at that instant) under the pinned `[vendor] roots` only.
pub fn verify_token(
    trust: &TrustAnchors,
    token: &str,
    now: i64,
) -> Result<VerifiedShipment, ShipmentRejection> {
    verify_parts(trust, token, now).map(|(_, verified, _)| verified)
}

/// [`verify_token`], also giving the shipment and the signer's leaf (for display).
fn verify_parts(
    trust: &TrustAnchors,
    token: &str,
    now: i64,
) -> Result<(Shipment, VerifiedShipment, VerifiedLeaf), ShipmentRejection> {
    let (verified, leaf) = verify_signed(token, SHIPMENT_TYP, |x5c| {
        trust
            .verify_shipment_signer(x5c, now)
            .map(|v| v.leaf().clone())
    })?;
    let shipment =
        Shipment::from_json(verified.payload()).map_err(|e| ShipmentRejection::payload(&e))?;
    let verified = VerifiedShipment {
        id: shipment.id().to_owned(),
        licence: shipment.licence().to_owned(),
        vendor: leaf.subject().to_owned(),
        site: shipment.delivery().site.clone(),
        country: shipment.delivery().country,
        delivered_at: shipment.delivered_at(),
        devices: shipment.devices().to_vec(),
        token_sha256: crate::store::sha256_hex(token.as_bytes()),
    };
    Ok((shipment, verified, leaf))
}

/// Why a shipment could not be signed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ShipmentSignError {
    /// The payload could not be written as JSON.
    #[error("cannot write the shipment as JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// Signing failed (the token would be too large, or the random source failed).
    #[error("cannot sign the shipment ({code}): {source}", code = source.code())]
    Jws {
        /// Why.
        #[from]
        source: JwsError,
    },
}

impl ShipmentSignError {
    /// The stable snake_case code: `invalid_json`, or the [`JwsError`] code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Json(_) => "invalid_json",
            Self::Jws { source } => source.code(),
        }
    }
}

/// Signs `shipment` as a compact JWS (`typ` [`SHIPMENT_TYP`], `alg` the key's, `x5c` =
/// `chain`, DER, leaf first: the chain whose leaf holds `key`).
pub fn sign(
    shipment: &Shipment,
    key: &SigningKey,
    chain: &[Vec<u8>],
) -> Result<String, ShipmentSignError> {
    let payload = shipment.to_json()?;
    let header = Header::new(key.alg())
        .with_typ(SHIPMENT_TYP)
        .with_x5c(chain.to_vec());
    Ok(jws::sign(&header, &payload, key)?)
}

/// Runs `tppguard-verifier shipment ...` at Unix time `now`.
pub fn run(args: &ShipmentArgs, out: &mut dyn Write, now: i64) -> Result<Outcome, Error> {
    match &args.command {
        ShipmentCommand::Sign(a) => sign_command(a, out).map(|()| Outcome::Clean),
        ShipmentCommand::Show(a) => show_command(a, out, now).map(|()| Outcome::Clean),
    }
}

/// What `shipment sign` wrote.
#[derive(Debug, Serialize)]
struct SignReport<'a> {
    out: &'a Path,
    id: &'a str,
    licence: &'a str,
    site: &'a str,
    country: &'a str,
    delivered_at: String,
    devices: usize,
    alg: jws::Alg,
    signer: &'a str,
}

fn sign_command(args: &ShipmentSignArgs, out: &mut dyn Write) -> Result<(), Error> {
    let max = u64::try_from(MAX_SHIPMENT_BYTES).unwrap_or(u64::MAX);
    let bytes = chain::read_bounded(&args.shipment, max)?;
    let invalid = |source| Error::InvalidShipment {
        path: args.shipment.clone(),
        source,
    };
    let text = String::from_utf8(bytes).map_err(|_| Error::BadShipmentFile {
        path: args.shipment.clone(),
        reason: "is not UTF-8 text; write the shipment as TOML (examples/shipment.toml)",
    })?;
    let shipment = Shipment::from_toml_str(&text).map_err(invalid)?;
    let Signer {
        key,
        x5c,
        subject: signer,
    } = load_signer_files(
        args.dir.join(SHIPMENT_SIGNER_KEY),
        args.dir.join(SHIPMENT_SIGNER_CHAIN),
    )
    .map_err(|e| Error::ShipmentSigner {
        dir: args.dir.clone(),
        source: Box::new(e),
    })?;
    let token = sign(&shipment, &key, &x5c).map_err(Error::ShipmentSign)?;
    crate::pki::write_public(&args.out, format!("{token}\n").as_bytes())?;

    let report = SignReport {
        out: &args.out,
        id: shipment.id(),
        licence: shipment.licence(),
        site: &shipment.delivery().site,
        country: shipment.delivery().country.as_str(),
        delivered_at: format_rfc3339(shipment.delivered_at()),
        devices: shipment.devices().len(),
        alg: key.alg(),
        signer: &signer,
    };
    if args.json {
        serde_json::to_writer_pretty(&mut *out, &report)?;
        writeln!(out)?;
    } else {
        writeln!(
            out,
            "signed shipment {} of {} GPUs under licence {}, delivered to {} ({}) at {}\n  \
             signed by  {} ({})\nwrote {}",
            Escaped(report.id),
            report.devices,
            Escaped(report.licence),
            Escaped(report.site),
            report.country,
            report.delivered_at,
            Escaped(report.signer),
            report.alg,
            Escaped(&report.out.display().to_string()),
        )?;
    }
    Ok(())
}

/// The JSON of `shipment show`.
#[derive(Debug, Serialize)]
struct ShowReport<'a> {
    file: &'a Path,
    verified: bool,
    at: i64,
    /// The vendor the verifier keeps it under: the signer's subject.
    vendor: &'a str,
    token_sha256: &'a str,
    shipment: &'a Shipment,
    signer: &'a VerifiedLeaf,
}

fn show_command(args: &ShipmentShowArgs, out: &mut dyn Write, now: i64) -> Result<(), Error> {
    let at = args.at.unwrap_or(now);
    let trust = TrustAnchors::from_trust_toml(&args.trust)?;
    let max = u64::try_from(jws::MAX_JWS_BYTES).unwrap_or(u64::MAX);
    let bytes = chain::read_bounded(&args.shipment, max)?;
    // Bytes that are not UTF-8 are not base64url either: the JWS decoder rejects them.
    let text = String::from_utf8_lossy(&bytes);
    let (shipment, verified, leaf) =
        verify_parts(&trust, text.trim_ascii(), at).map_err(|source| Error::ShipmentRejected {
            path: args.shipment.clone(),
            source,
        })?;
    if args.json {
        let report = ShowReport {
            file: &args.shipment,
            verified: true,
            at,
            vendor: &verified.vendor,
            token_sha256: &verified.token_sha256,
            shipment: &shipment,
            signer: &leaf,
        };
        serde_json::to_writer_pretty(&mut *out, &report)?;
        writeln!(out)?;
        return Ok(());
    }
    // Every text of the record and the signer's subject is outside text: escaped.
    let s = &shipment;
    writeln!(
        out,
        "shipment {}: signature verified, signed by {} ({} key) under a pinned [vendor] root",
        Escaped(s.id()),
        Escaped(leaf.subject()),
        leaf.key_algorithm()
    )?;
    writeln!(out, "  vendor (as written)  {}", Escaped(s.vendor()))?;
    writeln!(out, "  licence              {}", Escaped(s.licence()))?;
    writeln!(
        out,
        "  delivered to         {} ({}) at {}",
        Escaped(&s.delivery().site),
        s.delivery().country,
        format_rfc3339(s.delivered_at())
    )?;
    writeln!(out, "  token SHA-256        {}", verified.token_sha256)?;
    writeln!(out, "  devices              {}", s.devices().len())?;
    let field = |v: &Option<String>| {
        v.as_deref()
            .map_or("-".to_owned(), |v| Escaped(v).to_string())
    };
    for (i, d) in s.devices().iter().enumerate() {
        writeln!(
            out,
            "    [{i}] uuid {}  serial {}  hardware id {}  model {}",
            field(&d.uuid),
            field(&d.serial),
            field(&d.hardware_id),
            field(&d.model)
        )?;
    }
    Ok(())
}
