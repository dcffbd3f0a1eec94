//! The firmware ids (FWIDs) a GPU leaf certificate certifies, from its TCG DICE extension.
//!
//! Three forms are read, with asn1-rs (through x509-parser), every length checked by it:
//! - NVIDIA's legacy form on Hopper leaves, at 2.23.133.5.4.1 (the TcbInfo OID):
//!   `SEQUENCE { INTEGER 1, SubjectPublicKeyInfo, SEQUENCE { hashAlg OID, digest OCTET STRING } }`
//!   (the key is the issuing device certificate's; the real H100 sample has this form);
//! - the standard TCG DICE `TcbInfo` at 2.23.133.5.4.1: `SEQUENCE { [0] vendor, [1] model,
//!   [2] version, [3] svn, [4] layer, [5] index, [6] IMPLICIT SEQUENCE OF FWID, [7] flags, ... }`,
//!   every field optional, `FWID ::= SEQUENCE { hashAlg OID, digest OCTET STRING }`;
//! - `MultiTcbInfo` at 2.23.133.5.4.5: `SEQUENCE OF TcbInfo`.
//!
//! Only SHA-384 FWIDs are returned (the report's FWID, opaque id 20, is a SHA-384 digest).

use x509_parser::asn1_rs::{Any, Class, FromDer, Tag};
use x509_parser::certificate::X509Certificate;

/// 2.23.133.5.4.1 (TCG DICE TcbInfo), content bytes.
const TCB_INFO_OID: &[u8] = &[0x67, 0x81, 0x05, 0x05, 0x04, 0x01];
/// 2.23.133.5.4.5 (TCG DICE MultiTcbInfo), content bytes.
const MULTI_TCB_INFO_OID: &[u8] = &[0x67, 0x81, 0x05, 0x05, 0x04, 0x05];
/// id-sha384 (2.16.840.1.101.3.4.2.2), content bytes.
const SHA384_OID: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02];
/// The SHA-384 digest length.
pub const FWID_LEN: usize = 48;

/// Which form the FWIDs were read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiceForm {
    /// NVIDIA's legacy form (Hopper).
    NvidiaLegacy,
    /// TCG DICE TcbInfo.
    TcbInfo,
    /// TCG DICE MultiTcbInfo.
    MultiTcbInfo,
}

impl DiceForm {
    /// In words, for sentences.
    pub fn words(self) -> &'static str {
        match self {
            Self::NvidiaLegacy => "NVIDIA's legacy TcbInfo form (2.23.133.5.4.1)",
            Self::TcbInfo => "TCG DICE TcbInfo (2.23.133.5.4.1)",
            Self::MultiTcbInfo => "TCG DICE MultiTcbInfo (2.23.133.5.4.5)",
        }
    }
}

/// Why no FWID could be read from a leaf.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DiceError {
    /// The leaf has neither DICE extension.
    #[error("the leaf certificate has no TCG DICE TcbInfo or MultiTcbInfo extension")]
    NoExtension,
    /// The extension is not well-formed DER of any known form.
    #[error("the leaf's {form} extension is malformed ({detail})")]
    Malformed {
        /// The OID, in words.
        form: &'static str,
        /// What was wrong.
        detail: &'static str,
    },
    /// The extension holds no SHA-384 FWID.
    #[error("the leaf's {} extension holds no SHA-384 FWID", form.words())]
    NoSha384Fwid {
        /// The form read.
        form: DiceForm,
    },
}

impl DiceError {
    /// A stable snake_case code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NoExtension => "leaf_without_fwid_extension",
            Self::Malformed { .. } => "fwid_extension_malformed",
            Self::NoSha384Fwid { .. } => "leaf_without_sha384_fwid",
        }
    }
}

/// The SHA-384 FWIDs a leaf certifies, and the form they were read from. A leaf with both
/// extensions is read from MultiTcbInfo and TcbInfo together.
pub fn leaf_fwids(cert: &X509Certificate<'_>) -> Result<(DiceForm, Vec<Vec<u8>>), DiceError> {
    let mut found: Option<(DiceForm, Vec<Vec<u8>>)> = None;
    for ext in cert.extensions() {
        let oid = ext.oid.as_bytes();
        let (form, fwids) = if oid == TCB_INFO_OID {
            tcb_info_extension(ext.value)?
        } else if oid == MULTI_TCB_INFO_OID {
            (DiceForm::MultiTcbInfo, multi_tcb_info(ext.value)?)
        } else {
            continue;
        };
        match &mut found {
            Some((_, all)) => all.extend(fwids),
            None => found = Some((form, fwids)),
        }
    }
    let (form, fwids) = found.ok_or(DiceError::NoExtension)?;
    if fwids.is_empty() {
        return Err(DiceError::NoSha384Fwid { form });
    }
    Ok((form, fwids))
}

const TCB_WORDS: &str = "2.23.133.5.4.1";
const MULTI_WORDS: &str = "2.23.133.5.4.5";

fn malformed(form: &'static str, detail: &'static str) -> DiceError {
    DiceError::Malformed { form, detail }
}

/// One whole DER value: trailing bytes are refused.
fn whole<'a>(bytes: &'a [u8], form: &'static str) -> Result<Any<'a>, DiceError> {
    match Any::from_der(bytes) {
        Ok(([], any)) => Ok(any),
        Ok(_) => Err(malformed(form, "trailing bytes")),
        Err(_) => Err(malformed(form, "not DER")),
    }
}

/// Every DER value in `bytes`, in order.
fn items<'a>(mut bytes: &'a [u8], form: &'static str) -> Result<Vec<Any<'a>>, DiceError> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let (rest, any) = Any::from_der(bytes).map_err(|_| malformed(form, "not DER"))?;
        out.push(any);
        bytes = rest;
    }
    Ok(out)
}

fn is_universal(any: &Any<'_>, tag: Tag) -> bool {
    any.class() == Class::Universal && any.tag() == tag
}

fn sequence<'a>(any: &Any<'a>, form: &'static str) -> Result<Vec<Any<'a>>, DiceError> {
    if !is_universal(any, Tag::Sequence) {
        return Err(malformed(form, "a SEQUENCE was expected"));
    }
    items(any.data, form)
}

/// The TcbInfo OID's content: NVIDIA's legacy form when its first element is an INTEGER,
/// else a TCG TcbInfo.
fn tcb_info_extension(value: &[u8]) -> Result<(DiceForm, Vec<Vec<u8>>), DiceError> {
    let outer = whole(value, TCB_WORDS)?;
    let fields = sequence(&outer, TCB_WORDS)?;
    if fields
        .first()
        .is_some_and(|f| is_universal(f, Tag::Integer))
    {
        // SEQUENCE { INTEGER, SubjectPublicKeyInfo, FWID }.
        let [_, spki, fwid] = fields.as_slice() else {
            return Err(malformed(TCB_WORDS, "the legacy form has three elements"));
        };
        if !is_universal(spki, Tag::Sequence) {
            return Err(malformed(
                TCB_WORDS,
                "the legacy form's key is not a SEQUENCE",
            ));
        }
        return Ok((
            DiceForm::NvidiaLegacy,
            fwid_value(fwid, TCB_WORDS)?.into_iter().collect(),
        ));
    }
    Ok((DiceForm::TcbInfo, tcb_info_fields(&fields, TCB_WORDS)?))
}

/// The SHA-384 FWIDs of a TcbInfo's fields: those of `[6] IMPLICIT SEQUENCE OF FWID`.
fn tcb_info_fields(fields: &[Any<'_>], form: &'static str) -> Result<Vec<Vec<u8>>, DiceError> {
    let mut out = Vec::new();
    for field in fields {
        if field.class() != Class::ContextSpecific {
            return Err(malformed(form, "a TcbInfo field is not context-tagged"));
        }
        if field.tag() == Tag(6) {
            if !field.header.is_constructed() {
                return Err(malformed(form, "fwids [6] is not constructed"));
            }
            for fwid in items(field.data, form)? {
                out.extend(fwid_value(&fwid, form)?);
            }
        }
    }
    Ok(out)
}

fn multi_tcb_info(value: &[u8]) -> Result<Vec<Vec<u8>>, DiceError> {
    let outer = whole(value, MULTI_WORDS)?;
    let mut out = Vec::new();
    for tcb in sequence(&outer, MULTI_WORDS)? {
        let fields = sequence(&tcb, MULTI_WORDS)?;
        out.extend(tcb_info_fields(&fields, MULTI_WORDS)?);
    }
    Ok(out)
}

/// `FWID ::= SEQUENCE { hashAlg OID, digest OCTET STRING }`: the digest when SHA-384.
fn fwid_value(any: &Any<'_>, form: &'static str) -> Result<Option<Vec<u8>>, DiceError> {
    let [alg, digest] = <[Any<'_>; 2]>::try_from(sequence(any, form)?)
        .map_err(|_| malformed(form, "an FWID has two elements"))?;
    if !is_universal(&alg, Tag::Oid) || !is_universal(&digest, Tag::OctetString) {
        return Err(malformed(form, "an FWID is { OID, OCTET STRING }"));
    }
    if alg.data != SHA384_OID {
        return Ok(None);
    }
    if digest.data.len() != FWID_LEN {
        return Err(malformed(form, "a SHA-384 FWID is not 48 bytes"));
    }
    Ok(Some(digest.data.to_vec()))
}
