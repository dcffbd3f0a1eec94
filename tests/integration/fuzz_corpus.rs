//! Replays `fuzz/corpus/signed_token/` through the `signed_token` fuzz target's checks
//! (`fuzz/src/verifier_checks.rs`, included as source) on stable, so CI runs the verifier-level
//! seeds without nightly. The proto targets' corpora are replayed by `proto/tests/corpus.rs`.

use std::fs;
use std::path::{Path, PathBuf};

#[path = "../../fuzz/src/verifier_checks.rs"]
mod checks;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

#[test]
fn signed_token_corpus() {
    let trust = checks::load_trust(&fuzz_dir().join("pki"));
    let dir = fuzz_dir().join("corpus/signed_token");
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let mut outcomes = Vec::new();
    for path in &files {
        let text = fs::read_to_string(path).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        outcomes.push((name, checks::check_signed_token(&trust, &text)));
    }
    // The good seeds reach the end of the path (so the fuzzer starts from tokens that verify),
    // and the broken ones are rejected.
    let accepted = |name: &str| outcomes.iter().find(|(n, _)| n == name).map(|(_, o)| *o);
    assert_eq!(accepted("attestation-ed25519.jws"), Some((true, false)));
    assert_eq!(accepted("attestation-p256.jws"), Some((true, false)));
    assert_eq!(accepted("licence.jws"), Some((false, true)));
    for broken in [
        "alg-none.jws",
        "tampered-payload.jws",
        "x5c-from-licence.jws",
        "x5c-root-only.jws",
    ] {
        assert_eq!(accepted(broken), Some((false, false)), "{broken}");
    }
}
