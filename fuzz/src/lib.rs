//! The invariants the fuzz targets check, one function per `tppguard-proto` entry point.
//!
//! Shared, as source, with `proto/tests/corpus.rs` (through `#[path]`), so the stable test that
//! replays the committed corpus checks exactly what the fuzzers check. Each function panics
//! (fails) when an invariant is broken; any input at all must pass.

use std::fmt;
use std::str::FromStr;

use tppguard_proto::classify::{DecidedBy, Party, classify_device, classify_node, licence_need};
use tppguard_proto::licence::{Licence, LicenceError, MAX_LICENCE_BYTES, Validity};
use tppguard_proto::ruleset::{
    INDETERMINATE, LicenceNeed, MAX_RULE_SET_BYTES, RuleSet, RuleSetError,
};
use tppguard_proto::spec::{self, MatchedBy, SpecMatch, UnknownReason};
use tppguard_proto::tpp::{ComputeFigures, Precision};
use tppguard_proto::units::{Bandwidth, DecimalError, DieArea, Tops, Tpp};

/// `RuleSet::from_toml_str`: never panics; oversize input is `TooLarge`; a parsed rule set
/// classifies a fixed set of devices, and a node of them, to one of its own outcomes.
pub fn check_ruleset_toml(text: &str) {
    // The user-file loader accepts a subset of what the parser accepts: never a shipped id with
    // other content, never a variant of an unknown rule set or with another status.
    if let Ok(file) = RuleSet::from_file_toml_str(text) {
        let parsed = RuleSet::from_toml_str(text);
        assert!(parsed.is_ok(), "the loader accepts what the parser refuses");
        if let Some(base) = &file.variant_of {
            let shipped = tppguard_proto::ruleset::shipped_rule_set(base);
            assert!(shipped.is_ok_and(|b| b.status == file.status && b.id != file.id));
        }
    }
    match RuleSet::from_toml_str(text) {
        Err(e) => {
            assert!(!e.to_string().is_empty());
            if text.len() > MAX_RULE_SET_BYTES {
                assert!(matches!(e, RuleSetError::TooLarge { .. }), "{e}");
            }
        }
        Ok(rule_set) => {
            assert!(text.len() <= MAX_RULE_SET_BYTES);
            let outcomes = rule_set.outcomes();
            assert!(outcomes.contains(&rule_set.default_outcome.as_str()));
            assert_eq!(rule_set.node.rank.len(), outcomes.len());
            let devices: Vec<_> = device_figures()
                .iter()
                .map(|figures| {
                    let c = classify_device(figures, &rule_set);
                    assert!(
                        c.outcome == INDETERMINATE || outcomes.contains(&c.outcome.as_str()),
                        "device outcome {:?} is not an outcome of the rule set",
                        c.outcome
                    );
                    assert_eq!(
                        c.outcome == INDETERMINATE,
                        c.decided_by == DecidedBy::Indeterminate,
                        "{c:?}"
                    );
                    c
                })
                .collect();
            for node in [&devices[..], &devices[..1], &[]] {
                let n = classify_node(node, &rule_set);
                assert_eq!(n.devices, node.len());
                let node_outcomes: Vec<&str> =
                    outcomes.iter().map(|o| rule_set.node_outcome(o)).collect();
                assert!(
                    n.outcome == INDETERMINATE || node_outcomes.contains(&n.outcome.as_str()),
                    "node outcome {:?} is not a node outcome of the rule set",
                    n.outcome
                );
                assert_eq!(n.outcome == INDETERMINATE, n.reason.is_some(), "{n:?}");
            }
            check_licence_need(&rule_set, &devices);
        }
    }
}

/// The licence need of each classified device, for a few destinations and parties: an outcome
/// the rule set does not control needs none, an indeterminate one is undetermined, and a rule
/// named in the determination is one of the rule set's.
fn check_licence_need(rule_set: &RuleSet, devices: &[tppguard_proto::classify::Classification]) {
    let codes = ["DE", "CN", "US", "AE", "MO"];
    for c in devices {
        for destination in codes {
            for parent in codes {
                let (Ok(destination), Ok(parent)) = (destination.parse(), parent.parse()) else {
                    continue;
                };
                let party = Party {
                    headquarters: destination,
                    ultimate_parent: parent,
                };
                let d = licence_need(rule_set, Some(&c.outcome), destination, &party);
                let controlled = rule_set.classes.iter().any(|k| k.outcome == c.outcome);
                if c.outcome == INDETERMINATE {
                    assert_eq!(d.need, LicenceNeed::Undetermined, "{d:?}");
                } else if !controlled {
                    assert_eq!(d.need, LicenceNeed::NotRequired, "{d:?}");
                }
                if let Some(rule) = &d.rule {
                    let known = rule_set
                        .licensing
                        .as_ref()
                        .is_some_and(|l| l.rules.iter().any(|r| &r.id == rule));
                    assert!(known, "{d:?}");
                }
                assert!(!d.sentence.is_empty());
            }
        }
    }
}

/// Devices spanning the shipped thresholds, plus unknown and extreme figures.
fn device_figures() -> Vec<ComputeFigures> {
    let tops = |t: &str| t.parse::<Tops>().ok();
    let area = |a: &str| a.parse::<DieArea>().ok();
    let bw = |b: &str| b.parse::<Bandwidth>().ok();
    let device = |rate: &[(Precision, &str)],
                  die: Option<&str>,
                  dc: bool,
                  dram: Option<&str>,
                  link: Option<&str>| ComputeFigures {
        dense_tops: rate
            .iter()
            .filter_map(|(p, t)| Some((*p, tops(t)?)))
            .collect(),
        die_area: die.and_then(area),
        datacenter: dc,
        dram_bandwidth: dram.and_then(bw),
        interconnect_bandwidth: link.and_then(bw),
    };
    vec![
        // H100 SXM5: TPP 15831.2, 814 mm².
        device(
            &[(Precision::Fp8, "1978.9")],
            Some("814"),
            true,
            Some("3350"),
            Some("900"),
        ),
        // Exactly on 4800 and 5.92.
        device(
            &[(Precision::Int8, "600")],
            Some("810.81"),
            true,
            Some("0"),
            None,
        ),
        // Consumer part, no die area, no bandwidth.
        device(&[(Precision::Fp16, "82.6")], None, false, None, None),
        // No rates at all.
        device(&[], Some("100"), true, Some("1"), Some("1")),
        // The largest figures.
        device(
            &[(Precision::Fp64, "100000000")],
            Some("0.01"),
            true,
            Some("1000000000000"),
            Some("1000000000000"),
        ),
    ]
}

/// The decimal `FromStr`s, against an independent reading of the grammar `DIGITS[.DIGITS]`:
/// a string is accepted exactly when it is a plain decimal with at most the unit's decimals
/// and in range, to the exact value; its `Display` is the canonical form (leading zeros and
/// trailing fractional zeros dropped) and re-parses to the same value; a rejected string gets
/// the error its shape calls for.
pub fn check_decimal(text: &str) {
    check_fixed_point(
        text,
        Tops::DECIMALS,
        Tops::MIN_RAW,
        Tops::MAX_RAW,
        Tops::raw,
    );
    check_fixed_point(text, Tpp::DECIMALS, Tpp::MIN_RAW, Tpp::MAX_RAW, Tpp::raw);
    check_fixed_point(
        text,
        DieArea::DECIMALS,
        DieArea::MIN_RAW,
        DieArea::MAX_RAW,
        DieArea::raw,
    );
    check_fixed_point(
        text,
        Bandwidth::DECIMALS,
        Bandwidth::MIN_RAW,
        Bandwidth::MAX_RAW,
        Bandwidth::raw,
    );
}

fn check_fixed_point<T>(text: &str, decimals: u32, min: u64, max: u64, raw: fn(T) -> u64)
where
    T: FromStr<Err = DecimalError> + fmt::Display + fmt::Debug + PartialEq + Copy,
{
    let shape = Shape::of(text);
    match (text.parse::<T>(), shape) {
        (
            Ok(value),
            Shape::Decimal {
                canonical,
                places,
                scaled,
            },
        ) => {
            assert!(
                places <= decimals,
                "{text:?} has more than {decimals} places"
            );
            assert_eq!(
                scaled.value(decimals),
                Some(u128::from(raw(value))),
                "{text:?}"
            );
            let shown = value.to_string();
            assert_eq!(shown, canonical, "{text:?} displays as {shown:?}");
            assert_eq!(shown.parse::<T>(), Ok(value), "{shown:?} does not re-parse");
        }
        (Ok(value), shape) => panic!("{text:?} ({shape:?}) parsed to {value:?}"),
        (Err(e), shape) => {
            assert!(!e.to_string().is_empty());
            match (shape, e) {
                (Shape::Empty, DecimalError::Empty)
                | (Shape::Negative, DecimalError::Negative)
                | (Shape::Other, DecimalError::NotADecimal { .. }) => {}
                (Shape::Decimal { places, .. }, DecimalError::TooManyDecimals { .. }) => {
                    assert!(places > decimals, "{text:?}: {places} places rejected");
                }
                (Shape::Decimal { places, scaled, .. }, DecimalError::TooLarge { .. }) => {
                    assert!(places <= decimals);
                    assert!(
                        scaled.value(decimals).is_none_or(|v| v > u128::from(max)),
                        "{text:?}"
                    );
                }
                (Shape::Decimal { places, scaled, .. }, DecimalError::TooSmall { .. }) => {
                    assert!(places <= decimals);
                    assert!(
                        scaled.value(decimals).is_some_and(|v| v < u128::from(min)),
                        "{text:?}"
                    );
                }
                (shape, e) => panic!("{text:?} ({shape:?}) rejected with {e:?}"),
            }
        }
    }
}

/// What a string is, read independently of the parser under test.
#[derive(Debug)]
enum Shape<'a> {
    Empty,
    Negative,
    /// `DIGITS[.DIGITS]`.
    Decimal {
        /// Without leading zeros or trailing fractional zeros: `0.5`, `4800`.
        canonical: String,
        /// Significant decimal places.
        places: u32,
        /// The value in units of `10^-scale`, when it has at most `scale` places and fits.
        scaled: Scaled<'a>,
    },
    Other,
}

/// The integer and significant fractional digits of a plain decimal.
#[derive(Debug, Clone, Copy)]
struct Scaled<'a> {
    int: &'a str,
    frac: &'a str,
}

impl Scaled<'_> {
    /// `int.frac` in units of `10^-scale`; `None` when it does not fit 30 digits.
    fn value(self, scale: u32) -> Option<u128> {
        let pad = usize::try_from(scale).ok()?.checked_sub(self.frac.len())?;
        let digits = format!("{}{}{}", self.int, self.frac, "0".repeat(pad));
        let digits = digits.trim_start_matches('0');
        if digits.len() > 30 {
            return None;
        }
        if digits.is_empty() {
            return Some(0);
        }
        digits.parse().ok()
    }
}

impl<'a> Shape<'a> {
    fn of(text: &'a str) -> Self {
        if text.is_empty() {
            return Self::Empty;
        }
        if text.starts_with('-') {
            return Self::Negative;
        }
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        let (int, frac) = text.split_once('.').unwrap_or((text, "0"));
        if !digits(int) || !digits(frac) {
            return Self::Other;
        }
        let int = int.trim_start_matches('0');
        let int = if int.is_empty() { "0" } else { int };
        let frac = frac.trim_end_matches('0');
        let canonical = if frac.is_empty() {
            int.to_owned()
        } else {
            format!("{int}.{frac}")
        };
        Self::Decimal {
            canonical,
            places: u32::try_from(frac.len()).unwrap_or(u32::MAX),
            scaled: Scaled { int, frac },
        }
    }
}

/// The spec look-ups, from `[PCI id line "\n"] name`: the first line is a PCI id when it is
/// hex (`0x233010DE`); the rest (or everything) is the name.
pub fn check_spec_lookup(input: &str) {
    let (pci, name) = match input.split_once('\n') {
        Some((first, rest)) => match u32::from_str_radix(first.trim_start_matches("0x"), 16) {
            Ok(id) => (Some(id), rest),
            Err(_) => (None, input),
        },
        None => (None, input),
    };
    for (pci, name) in [(pci, Some(name)), (pci, None), (None, Some(name))] {
        check_lookup(pci, name);
    }
    if let Some(spec) = spec::by_model(name) {
        assert!(
            spec.model.eq_ignore_ascii_case(name.trim())
                || lookup_found(None, Some(name)) == Some((spec.model, MatchedBy::NvmlName)),
            "by_model({name:?}) gave {} with neither its model nor an NVML name",
            spec.model
        );
    }
}

fn lookup_found(pci: Option<u32>, name: Option<&str>) -> Option<(&'static str, MatchedBy)> {
    match spec::lookup(pci, name) {
        SpecMatch::Found { spec, by } => Some((spec.model, by)),
        SpecMatch::Unknown { .. } => None,
    }
}

fn check_lookup(pci: Option<u32>, name: Option<&str>) {
    match spec::lookup(pci, name) {
        SpecMatch::Found { spec, by } => match by {
            MatchedBy::PciDeviceId => {
                let id = pci.unwrap_or_else(|| panic!("found by PCI id without one"));
                let [d1, d0, v1, v0] = id.to_be_bytes();
                assert_eq!(spec.pci_vendor_id, Some(u16::from_be_bytes([v1, v0])));
                assert!(spec.pci_device_ids.contains(&u16::from_be_bytes([d1, d0])));
            }
            MatchedBy::NvmlName => {
                let name = name.unwrap_or_else(|| panic!("found by name without one"));
                let bare = |n: &str| {
                    let n = n.trim();
                    n.strip_prefix("NVIDIA ").unwrap_or(n).to_owned()
                };
                assert!(
                    spec.nvml_names.iter().any(|n| bare(n) == bare(name)),
                    "{name:?} found {} by a name it does not have",
                    spec.model
                );
            }
        },
        SpecMatch::Unknown { reason } => {
            assert!(UnknownReason::CODES.contains(&reason.code()));
            assert!(!reason.sentence().is_empty());
            let consistent = match (&reason, pci, name) {
                (UnknownReason::NoIdentity, None, None) => true,
                (UnknownReason::PciIdNotListed { pci_device_id }, Some(id), None) => {
                    *pci_device_id == id
                }
                (UnknownReason::NameNotListed { nvml_name }, None, Some(n)) => nvml_name == n,
                (
                    UnknownReason::PciIdAndNameNotListed {
                        pci_device_id,
                        nvml_name,
                    },
                    Some(id),
                    Some(n),
                ) => *pci_device_id == id && nvml_name == n,
                (
                    UnknownReason::AmbiguousName {
                        nvml_name,
                        candidates,
                    },
                    _,
                    Some(n),
                ) => nvml_name == n && candidates.len() >= 2,
                _ => false,
            };
            assert!(consistent, "{reason:?} for ({pci:?}, {name:?})");
        }
    }
}

/// `Licence::from_toml_str`: never panics; oversize input is `TooLarge`; every error has a
/// listed code; a parsed licence re-serializes to JSON that `Licence::from_json` reads back
/// to an equal licence (and the same bytes), and its helpers agree with its fields.
pub fn check_licence_toml(text: &str) {
    check_licence_json(text.as_bytes());
    match Licence::from_toml_str(text) {
        Err(e) => {
            assert!(!e.to_string().is_empty());
            assert!(LicenceError::CODES.contains(&e.code()), "{}", e.code());
            if text.len() > MAX_LICENCE_BYTES {
                assert!(matches!(e, LicenceError::TooLarge { .. }), "{e}");
            }
        }
        Ok(licence) => {
            assert!(text.len() <= MAX_LICENCE_BYTES);
            let json = licence
                .to_json()
                .unwrap_or_else(|e| panic!("to_json failed: {e}"));
            let back = Licence::from_json(&json).unwrap_or_else(|e| {
                panic!("from_json({}) failed: {e}", String::from_utf8_lossy(&json))
            });
            assert_eq!(back, licence);
            assert_eq!(back.to_json().ok(), Some(json));

            let (from, until) = (licence.valid_from(), licence.valid_until());
            assert!(from < until);
            assert!(licence.is_valid_at(from).is_valid());
            assert!(licence.is_valid_at(until - 1).is_valid());
            assert!(matches!(
                licence.is_valid_at(from - 1),
                Validity::NotYetValid { .. }
            ));
            assert!(matches!(
                licence.is_valid_at(until),
                Validity::Expired { .. }
            ));
            assert!(licence.max_devices() >= 1);
            assert!(licence.max_aggregate_tpp() > Tpp::default());
            assert!(
                licence
                    .max_tpp_per_device()
                    .is_none_or(|cap| cap <= licence.max_aggregate_tpp())
            );
            assert!(licence.attestation_is_fresh(licence.max_attestation_age_s()));
            assert!(!licence.attestation_is_fresh(licence.max_attestation_age_s() + 1));
            assert!(!licence.sites().is_empty());
            assert!(
                licence
                    .sites()
                    .iter()
                    .all(|s| s.country == licence.destination_country()
                        && licence.site(&s.id) == Some(s))
            );
            assert!(!licence.eccns().is_empty() || !licence.models().is_empty());
            assert!(!licence.allows(None, None));
            for eccn in licence.eccns() {
                for model in licence.models() {
                    assert!(licence.allows(Some(eccn), Some(model)), "{eccn} {model}");
                }
                if licence.models().is_empty() {
                    assert!(licence.allows(Some(eccn), None), "{eccn}");
                }
            }
            for model in licence.models() {
                assert!(spec::by_model(model).is_some_and(|s| s.model == model));
                if licence.eccns().is_empty() {
                    assert!(licence.allows(None, Some(model)), "{model}");
                }
            }
        }
    }
}

/// RFC 8037 Appendix A.1's Ed25519 public key `x`: the key `check_jws` verifies with (the seed
/// corpus has tokens it signed).
const JWS_FUZZ_KEY: [u8; 32] = [
    0xd7, 0x5a, 0x98, 0x01, 0x82, 0xb1, 0x0a, 0xb7, 0xd5, 0x4b, 0xfe, 0xd3, 0xc9, 0x64, 0x07, 0x3a,
    0x0e, 0xe1, 0x72, 0xf3, 0xda, 0xa6, 0x23, 0x25, 0xaf, 0x02, 0x1a, 0x68, 0xf7, 0x07, 0x51, 0x1a,
];

/// `jws::decode`, then `verify` against [`JWS_FUZZ_KEY`]: never panics; every error has a
/// listed code; oversize input is `TooLarge`; a decoded token is three parts within the `x5c`
/// limits, and only an `EdDSA` one can verify; a verified payload, and the input itself, go
/// through `AttestationClaims::from_json`, whose result re-serializes to an equal claim set.
pub fn check_jws(text: &str) {
    use tppguard_proto::jws::{self, Alg, JwsError, VerifyingKey};

    check_claims(text.as_bytes());
    let unverified = match jws::decode(text) {
        Err(e) => {
            assert!(!e.to_string().is_empty());
            assert!(JwsError::CODES.contains(&e.code()), "{}", e.code());
            if text.len() > jws::MAX_JWS_BYTES {
                assert!(matches!(e, JwsError::TooLarge { .. }), "{e}");
            }
            return;
        }
        Ok(unverified) => unverified,
    };
    assert!(text.len() <= jws::MAX_JWS_BYTES);
    assert_eq!(text.split('.').count(), 3);
    let header = unverified.header();
    assert!(header.x5c.len() <= jws::MAX_X5C_CERTS);
    assert!(
        header
            .x5c
            .iter()
            .all(|c| !c.is_empty() && c.len() <= jws::MAX_X5C_CERT_BYTES)
    );
    let key = VerifyingKey::from_raw(Alg::EdDSA, &JWS_FUZZ_KEY)
        .unwrap_or_else(|e| panic!("the fixed key is rejected: {e}"));
    match unverified.verify(&key) {
        Ok(verified) => {
            assert_eq!(verified.header().alg, Alg::EdDSA);
            assert_eq!(verified.header(), header);
            check_claims(verified.payload());
        }
        Err(e) => {
            assert!(JwsError::CODES.contains(&e.code()), "{}", e.code());
            let expected = if header.alg == Alg::EdDSA {
                matches!(e, JwsError::BadSignature | JwsError::SignatureLength { .. })
            } else {
                matches!(
                    e,
                    JwsError::AlgKeyMismatch {
                        key: Alg::EdDSA,
                        ..
                    }
                )
            };
            assert!(expected, "{:?} token rejected with {e}", header.alg);
        }
    }
}

fn check_claims(bytes: &[u8]) {
    use tppguard_proto::claims::{AttestationClaims, ClaimsError, EAT_PROFILE};

    // The typed reader and the reference reader agree on every input.
    let reference = AttestationClaims::from_json_reference(bytes);
    match AttestationClaims::from_json(bytes) {
        Err(e) => {
            assert!(!e.to_string().is_empty());
            assert!(ClaimsError::CODES.contains(&e.code()), "{}", e.code());
            let r = reference
                .err()
                .unwrap_or_else(|| panic!("only the reference accepts"));
            assert_eq!(e.code(), r.code());
        }
        Ok(claims) => {
            match reference {
                Ok(r) => assert_eq!(r, claims),
                Err(e) => panic!("only the typed reader accepts; the reference says {e}"),
            }
            let json = claims
                .to_json()
                .unwrap_or_else(|e| panic!("claims do not serialize: {e}"));
            assert!(String::from_utf8_lossy(&json).contains(EAT_PROFILE));
            let again = AttestationClaims::from_json(&json)
                .unwrap_or_else(|e| panic!("re-serialized claims rejected: {e}"));
            assert_eq!(again, claims);
        }
    }
}

/// `Licence::from_json` (a signed licence's payload) on any bytes: rejected with a listed code
/// and a sentence, or accepted and stable under a JSON round trip.
fn check_licence_json(bytes: &[u8]) {
    match Licence::from_json(bytes) {
        Err(e) => {
            assert!(!e.to_string().is_empty());
            assert!(LicenceError::CODES.contains(&e.code()), "{}", e.code());
        }
        Ok(licence) => {
            let json = licence
                .to_json()
                .unwrap_or_else(|e| panic!("an accepted licence does not serialize: {e}"));
            let back = Licence::from_json(&json)
                .unwrap_or_else(|e| panic!("an accepted licence does not read back: {e}"));
            assert_eq!(back, licence);
        }
    }
}
