#![cfg(test)]
//! Replays the committed fuzz corpus (`fuzz/corpus/<target>/`) through the fuzz targets'
//! checks on stable, so CI needs no nightly. The checks are the fuzz crate's own source
//! (`fuzz/src/lib.rs`), included here, so both check the same invariants.

use std::fs;
use std::path::{Path, PathBuf};

#[path = "../../fuzz/src/lib.rs"]
mod checks;

/// Every file of `fuzz/corpus/<target>/`, sorted, with its text (`None` when not UTF-8, which
/// the targets skip).
fn corpus(target: &str) -> Vec<(PathBuf, Option<String>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} has no seeds", dir.display());
    files
        .into_iter()
        .map(|path| {
            let bytes = fs::read(&path).unwrap();
            (path, String::from_utf8(bytes).ok())
        })
        .collect()
}

fn replay(target: &str, check: fn(&str)) -> usize {
    let files = corpus(target);
    for (path, text) in &files {
        if let Some(text) = text {
            let outcome = std::panic::catch_unwind(|| check(text));
            assert!(outcome.is_ok(), "{target}: {} fails", path.display());
        }
    }
    files.len()
}

#[test]
fn corpus_dirs_match_fuzz_targets() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut targets: Vec<String> = fs::read_dir(root.join("fuzz_targets"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter_map(|p| Some(p.file_stem()?.to_str()?.to_owned()))
        .collect();
    targets.sort();
    let mut corpora: Vec<String> = fs::read_dir(root.join("corpus"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    corpora.sort();
    assert_eq!(
        targets,
        [
            "decimal",
            "issued_record",
            "jws",
            "leaf_facts",
            "licence_revocation",
            "licence_toml",
            "ruleset_toml",
            "scenario_change",
            "shipment_toml",
            "signed_token",
            "site_and_text",
            "spdm_report",
            "spec_lookup"
        ]
    );
    assert_eq!(targets, corpora, "one seed corpus per fuzz target");
}

#[test]
fn ruleset_toml_corpus() {
    assert!(replay("ruleset_toml", checks::check_ruleset_toml) >= 3);
    // The seeds include every shipped rule set, and those parse.
    for file in [
        "us-eccn-3a090.toml",
        "us-gain-ai-act-s3150.toml",
        "us-ai-overwatch-act-hr6875.toml",
        "us-china-review-2026-01.toml",
        "us-ai-diffusion-2025.toml",
    ] {
        let seed = fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../fuzz/corpus/ruleset_toml")
                .join(file),
        )
        .unwrap();
        let shipped = fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../rules")
                .join(file),
        )
        .unwrap();
        assert_eq!(seed, shipped, "fuzz/corpus/ruleset_toml/{file} is stale");
        tppguard_proto::ruleset::RuleSet::from_toml_str(&seed).unwrap();
    }
}

#[test]
fn decimal_corpus() {
    assert!(replay("decimal", checks::check_decimal) >= 10);
}

#[test]
fn spec_lookup_corpus() {
    assert!(replay("spec_lookup", checks::check_spec_lookup) >= 10);
}

#[test]
fn licence_toml_corpus() {
    assert!(replay("licence_toml", checks::check_licence_toml) >= 10);
    // The seeds include both examples, and those parse.
    for file in ["licence.toml", "licence-too-small.toml"] {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let seed = fs::read_to_string(root.join("fuzz/corpus/licence_toml").join(file)).unwrap();
        let example = fs::read_to_string(root.join("examples").join(file)).unwrap();
        assert_eq!(seed, example, "fuzz/corpus/licence_toml/{file} is stale");
        tppguard_proto::licence::Licence::from_toml_str(&seed).unwrap();
    }
}

#[test]
fn jws_corpus() {
    assert!(replay("jws", checks::check_jws) >= 10);
}
