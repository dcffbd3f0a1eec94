//! `docs/check.md` documents every finding and rejection code the verifier can report: a code
//! added to one of the `CODES` lists without a line in the doc fails here, so auditors never
//! meet a code the reference does not explain.

use tppguard_proto::claims::ClaimsError;
use tppguard_proto::jws::JwsError;
use tppguard_proto::licence::LicenceError;
use tppguard_proto::licence::revocation::RevocationError;
use tppguard_verifier::attestation::AttestationError;
use tppguard_verifier::chain::ChainError;
use tppguard_verifier::licence::LicenceVerifyError;
use tppguard_verifier::policy::Reason;
use tppguard_verifier::scenario::ScenarioError;

/// Every code list, named as the failure message should name it.
fn code_lists() -> [(&'static str, &'static [&'static str]); 9] {
    [
        ("Reason::CODES", &Reason::CODES),
        ("AttestationError::CODES", &AttestationError::CODES),
        ("LicenceVerifyError::CODES", &LicenceVerifyError::CODES),
        ("JwsError::CODES", &JwsError::CODES),
        ("ChainError::CODES", ChainError::CODES),
        ("ClaimsError::CODES", &ClaimsError::CODES),
        ("LicenceError::CODES", &LicenceError::CODES),
        ("RevocationError::CODES", &RevocationError::CODES),
        ("ScenarioError::CODES", ScenarioError::CODES),
    ]
}

#[test]
fn check_md_documents_every_code() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/check.md");
    let doc = std::fs::read_to_string(path).unwrap();
    // An inline code span, so a code mentioned only inside a longer word does not count.
    let missing: Vec<String> = code_lists()
        .iter()
        .flat_map(|(list, codes)| {
            codes
                .iter()
                .filter(|code| !doc.contains(&format!("`{code}`")))
                .map(move |code| format!("{code} ({list})"))
        })
        .collect();
    assert!(
        missing.is_empty(),
        "docs/check.md lacks these codes as `code` spans: {}",
        missing.join(", ")
    );
}
