//! The committed JSON Schema of the attestation claims (`docs/schema/`) is the one generated
//! from `tppguard_proto::claims::AttestationClaims`, and it describes what the agent signs.

use tppguard_proto::claims::schema::attestation_claims_schema_json;

use crate::support::workspace_root;

const SCHEMA_FILE: &str = "docs/schema/attestation-claims.schema.json";
const REGENERATE: &str =
    "TPPGUARD_UPDATE_SCHEMA=1 cargo test -p tppguard-tests --test integration schema";

#[test]
fn committed_attestation_claims_schema_is_current() {
    let path = workspace_root().join(SCHEMA_FILE);
    let generated = attestation_claims_schema_json();
    if std::env::var_os("TPPGUARD_UPDATE_SCHEMA").is_some() {
        std::fs::create_dir_all(path.parent().expect("docs/schema")).expect("mkdir");
        std::fs::write(&path, &generated).expect("write schema");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{SCHEMA_FILE} is not the schema generated from AttestationClaims; regenerate it \
         with `{REGENERATE}` and commit the result"
    );
}
