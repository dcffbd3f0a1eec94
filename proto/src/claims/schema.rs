//! The JSON Schema of the attestation claim set, generated from [`AttestationClaims`] (with
//! the `schema` feature) so third parties can check attestations without reading Rust.
//!
//! The committed copy is `docs/schema/attestation-claims.schema.json`; a test in the
//! `tppguard-tests` package fails when it differs from [`attestation_claims_schema_json`].
//! The schema describes the shape; [`AttestationClaims::from_json`] remains the authority
//! (it also checks, for instance, that each submod's name is `gpu` and its `index`).

use schemars::generate::SchemaSettings;
use serde_json::Value;

use super::{AttestationClaims, EAT_PROFILE};

/// The schema's `$id`.
pub const SCHEMA_ID: &str = "https://tppguard.dev/schema/attestation-claims.schema.json";

/// The JSON Schema (draft 2020-12) of an attestation claim set, as a JSON value.
pub fn attestation_claims_schema() -> Value {
    let generator = SchemaSettings::draft2020_12().into_generator();
    let mut schema = generator.into_root_schema_for::<AttestationClaims>();
    schema.insert("$id".to_owned(), Value::from(SCHEMA_ID));
    schema.insert(
        "description".to_owned(),
        Value::from(format!(
            "The payload of a tppguard attestation: a JWS with typ \
             tppguard-attestation+jwt, eat_profile {EAT_PROFILE}. \
             Generated from tppguard-proto's AttestationClaims; do not edit."
        )),
    );
    schema.to_value()
}

/// [`attestation_claims_schema`] pretty-printed with a final newline: the committed file's
/// exact bytes.
pub fn attestation_claims_schema_json() -> String {
    let value = attestation_claims_schema();
    // A `Value` always serializes.
    let mut text = serde_json::to_string_pretty(&value).unwrap_or_default();
    text.push('\n');
    text
}
