use std::collections::HashSet;

use serde_json::json;

use super::*;

const NONCE: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

/// A claim set for one H100 (GPU 1 of docs/inventory.md's example) on a two-GPU node.
fn sample() -> Value {
    json!({
        "iss": "node-7.example",
        "iat": 1_790_000_000,
        "eat_nonce": NONCE,
        "ueid": "AZ1iZ2VyLWlk",
        "eat_profile": EAT_PROFILE,
        "submods": {
            "gpu1": {
                "index": 1,
                "status": "ok",
                "uuid": "GPU-9fa5439d-6347-8c64-bff6-eeb625ed8eed",
                "serial": null,
                "name": "NVIDIA H100 80GB HBM3",
                "brand": "NVIDIA",
                "board_part_number": null,
                "pci": {
                    "bus_id": "00000000:20:00.0",
                    "vendor_id": "0x10de",
                    "device_id": "0x2330",
                    "subsystem_id": null
                },
                "architecture": null,
                "cuda_compute_capability": null,
                "multiprocessor_count": 132,
                "memory_total_bytes": 85_899_345_920_u64,
                "max_sm_clock_mhz": 1980,
                "max_memory_clock_mhz": null,
                "power_limit_mw": null,
                "vbios_version": "96.00.9F.00.01",
                "mig": {
                    "current_enabled": false,
                    "pending_enabled": false,
                    "instances": [],
                    "absent": {}
                },
                "absent": {
                    "serial": {
                        "reason": "no_permission",
                        "detail": "the current user does not have permission to perform this operation"
                    }
                },
                "classification": {
                    "tpp": 15831.2,
                    "tpp_basis": "fp8",
                    "performance_density": 19.44864864864865,
                    "eccn": "3A090.a"
                }
            },
            "gpu0": {
                "index": 0,
                "status": "lost",
                "uuid": null,
                "serial": null,
                "name": null,
                "pci": null,
                "memory_total_bytes": null,
                "max_sm_clock_mhz": null,
                "max_memory_clock_mhz": null,
                "power_limit_mw": null,
                "vbios_version": null,
                "mig": null,
                "absent": {
                    "uuid": {"reason": "gpu_lost", "detail": "the GPU has fallen off the bus"}
                },
                "classification": {
                    "tpp": null,
                    "performance_density": null,
                    "eccn": "indeterminate"
                }
            }
        },
        "tppguard.host": {
            "hostname": "vm",
            "machine_id": "3d1219c7c4c5404aaa1f6d2a48adfda4",
            "os": "Linux (Debian GNU/Linux 12)",
            "kernel": "6.18.44",
            "cpu_arch": "x86_64",
            "cpu_model": "Intel(R) Xeon(R) Processor",
            "cpu_count": 2,
            "physical_cores": 2,
            "memory_bytes": 25_276_063_744_u64
        },
        "tppguard.evidence_tier": "declared",
        "tppguard.driver": {
            "driver_version": "550.90.07",
            "nvml_version": null,
            "cuda_driver_version": "12.4",
            "confidential_computing": {
                "enabled": true,
                "dev_tools_mode": false,
                "multi_gpu_protected_pcie": false,
                "gpus_ready": null
            },
            "absent": {}
        }
    })
}

fn parse(value: &Value) -> Result<AttestationClaims, ClaimsError> {
    AttestationClaims::from_json(&serde_json::to_vec(value).unwrap())
}

fn with(mut value: Value, claim: &str, new: Value) -> Value {
    value[claim] = new;
    value
}

#[test]
fn round_trip() {
    let claims = parse(&sample()).unwrap();
    assert_eq!(claims.iss, "node-7.example");
    assert_eq!(claims.eat_nonce.as_str(), NONCE);
    assert_eq!(claims.evidence_tier, EvidenceTier::Declared);
    assert_eq!(claims.submods.keys().collect::<Vec<_>>(), ["gpu0", "gpu1"]);
    let gpu1 = &claims.submods["gpu1"];
    assert_eq!(gpu1.classification.eccn.as_deref(), Some("3A090.a"));
    assert_eq!(gpu1.absent["serial"].reason, AbsentReason::NoPermission);
    assert_eq!(claims.submods["gpu0"].status, GpuStatus::Lost);
    let bytes = claims.to_json().unwrap();
    assert_eq!(AttestationClaims::from_json(&bytes).unwrap(), claims);
    // The serialized form is the input, key for key.
    let reparsed: Value = serde_json::from_slice(&bytes).unwrap();
    let mut expected = sample();
    // Fields the input left out come back as null.
    for field in [
        "brand",
        "board_part_number",
        "architecture",
        "cuda_compute_capability",
        "multiprocessor_count",
    ] {
        expected["submods"]["gpu0"][field] = Value::Null;
    }
    expected["submods"]["gpu0"]["classification"]["tpp_basis"] = Value::Null;
    assert_eq!(reparsed, expected);
}

#[test]
fn missing_required_claim() {
    for name in REQUIRED_CLAIMS {
        let mut value = sample();
        value.as_object_mut().unwrap().remove(name);
        assert!(
            matches!(parse(&value), Err(ClaimsError::MissingClaim { name: n }) if n == name),
            "{name}"
        );
    }
    // ueid is optional.
    let mut value = sample();
    value.as_object_mut().unwrap().remove("ueid");
    assert_eq!(parse(&value).unwrap().ueid, None);
    // A required field inside a claim.
    let mut value = sample();
    value["tppguard.host"]
        .as_object_mut()
        .unwrap()
        .remove("cpu_arch");
    assert!(matches!(parse(&value), Err(ClaimsError::Invalid { .. })));
}

#[test]
fn wrong_profile() {
    for profile in [
        "tag:tppguard.dev,2026:attestation/v2",
        "tag:tppguard.dev,2026:attestation/v1 ",
        "",
    ] {
        assert!(
            matches!(
                parse(&with(sample(), "eat_profile", json!(profile))),
                Err(ClaimsError::WrongProfile { profile: p }) if p == profile
            ),
            "{profile}"
        );
    }
    assert!(matches!(
        parse(&with(sample(), "eat_profile", json!(["x"]))),
        Err(ClaimsError::WrongType {
            claim: "eat_profile"
        })
    ));
}

#[test]
fn short_or_malformed_nonce() {
    let short = &NONCE[..62];
    assert!(matches!(
        parse(&with(sample(), "eat_nonce", json!(short))),
        Err(ClaimsError::ShortNonce { bytes: 31, min: 32 })
    ));
    for bad in [
        NONCE.to_uppercase(),
        format!("{NONCE}0"),
        format!("{NONCE}zz"),
        "ab".repeat(38),
    ] {
        assert!(
            matches!(
                parse(&with(sample(), "eat_nonce", json!(bad))),
                Err(ClaimsError::BadNonce)
            ),
            "{bad}"
        );
    }
    assert!(matches!(
        parse(&with(sample(), "eat_nonce", json!(12))),
        Err(ClaimsError::WrongType { claim: "eat_nonce" })
    ));
    assert!(matches!(
        Nonce::parse(""),
        Err(ClaimsError::ShortNonce { bytes: 0, .. })
    ));
    assert!(Nonce::parse(&"ab".repeat(37)).is_ok());
    assert_eq!(
        Nonce::from_bytes(&[0x5a; 32]).unwrap().as_str(),
        "5a".repeat(32)
    );
    assert_eq!(
        format!("{:?}", Nonce::parse(NONCE).unwrap()),
        "Nonce(64 hex chars)"
    );
}

#[test]
fn unknown_evidence_tier() {
    for tier in ["Hardware", "attested", "", "none"] {
        assert!(
            matches!(
                parse(&with(sample(), "tppguard.evidence_tier", json!(tier))),
                Err(ClaimsError::UnknownEvidenceTier { tier: t }) if t == tier
            ),
            "{tier}"
        );
    }
    for tier in EvidenceTier::ALL {
        let claims = parse(&with(
            sample(),
            "tppguard.evidence_tier",
            json!(tier.code()),
        ))
        .unwrap();
        assert_eq!(claims.evidence_tier, tier);
    }
}

#[test]
fn evidence_tiers_are_ordered() {
    assert!(EvidenceTier::Hardware > EvidenceTier::Measured);
    assert!(EvidenceTier::Measured > EvidenceTier::Declared);
    assert_eq!(
        EvidenceTier::ALL.into_iter().max(),
        Some(EvidenceTier::Hardware)
    );
}

#[test]
fn unknown_claims_and_fields_are_rejected() {
    assert!(matches!(
        parse(&with(sample(), "exp", json!(1))),
        Err(ClaimsError::UnknownClaim { name }) if name == "exp"
    ));
    let mut value = sample();
    value["submods"]["gpu1"]["tpp_override"] = json!(1);
    assert!(matches!(parse(&value), Err(ClaimsError::Invalid { .. })));
    let mut value = sample();
    value["submods"]["gpu1"]["absent"]["serial"]["reason"] = json!("forgot");
    assert!(matches!(parse(&value), Err(ClaimsError::Invalid { .. })));
    assert!(matches!(
        parse(&with(sample(), "iat", json!(1.5))),
        Err(ClaimsError::Invalid { .. })
    ));
    assert!(matches!(
        parse(&with(sample(), "iss", json!(""))),
        Err(ClaimsError::EmptyIssuer)
    ));
}

#[test]
fn submod_names_follow_the_index() {
    for name in ["GPU0", "gpu", "gpu01", "gpu-1", "gpu1 ", "gpu99999999999"] {
        let mut value = sample();
        let gpu = value["submods"]
            .as_object_mut()
            .unwrap()
            .remove("gpu1")
            .unwrap();
        value["submods"][name] = gpu;
        assert!(
            matches!(parse(&value), Err(ClaimsError::BadSubmodName { name: n }) if n == name),
            "{name}"
        );
    }
    let mut value = sample();
    value["submods"]["gpu1"]["index"] = json!(3);
    assert!(matches!(
        parse(&value),
        Err(ClaimsError::SubmodIndexMismatch { index: 3, .. })
    ));
    let mut value = sample();
    value["submods"] = json!({});
    assert!(parse(&value).unwrap().submods.is_empty());
    assert_eq!(submod_name(12), "gpu12");
}

#[test]
fn bounded_and_strict_input() {
    let huge = vec![b' '; MAX_CLAIMS_BYTES + 1];
    assert!(matches!(
        AttestationClaims::from_json(&huge),
        Err(ClaimsError::TooLarge { .. })
    ));
    let deep = format!(
        "{}{}",
        "[".repeat(MAX_JSON_DEPTH + 1),
        "]".repeat(MAX_JSON_DEPTH + 1)
    );
    assert!(matches!(
        AttestationClaims::from_json(deep.as_bytes()),
        Err(ClaimsError::TooDeep {
            max: MAX_JSON_DEPTH
        })
    ));
    assert!(matches!(
        AttestationClaims::from_json(b"[]"),
        Err(ClaimsError::NotAnObject)
    ));
    let text = serde_json::to_string(&sample()).unwrap();
    // A second gpu1 that would hide the first.
    let duplicated = text.replacen(r#""submods":{"#, r#""submods":{"gpu1":{},"#, 1);
    assert!(matches!(
        AttestationClaims::from_json(duplicated.as_bytes()),
        Err(ClaimsError::Json { .. })
    ));
}

#[test]
fn codes_are_unique_snake_case_and_listed() {
    let json_error = || serde_json::from_str::<Value>("x").unwrap_err();
    let errors = [
        ClaimsError::TooLarge { len: 2, max: 1 },
        ClaimsError::TooDeep { max: 1 },
        ClaimsError::Json {
            source: json_error(),
        },
        ClaimsError::NotAnObject,
        ClaimsError::MissingClaim { name: "iss" },
        ClaimsError::UnknownClaim { name: "x".into() },
        ClaimsError::WrongType { claim: "iss" },
        ClaimsError::WrongProfile {
            profile: "x".into(),
        },
        ClaimsError::BadNonce,
        ClaimsError::ShortNonce { bytes: 1, min: 32 },
        ClaimsError::UnknownEvidenceTier { tier: "x".into() },
        ClaimsError::BadSubmodName { name: "x".into() },
        ClaimsError::TooManySubmods { len: 2, max: 1 },
        ClaimsError::SubmodIndexMismatch {
            name: "gpu0".into(),
            index: 1,
        },
        ClaimsError::EmptyIssuer,
        ClaimsError::Invalid {
            source: json_error(),
        },
        ClaimsError::BadMeasurement {
            name: "gpu0".into(),
            reason: "zero repeats",
        },
        ClaimsError::BadSite {
            site: "fra 1".into(),
        },
    ];
    let codes: Vec<&str> = errors.iter().map(ClaimsError::code).collect();
    assert_eq!(codes, ClaimsError::CODES);
    assert_eq!(codes.iter().collect::<HashSet<_>>().len(), codes.len());
    for code in codes {
        assert!(code.starts_with("claims_"), "{code}");
        assert!(
            code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') && !code.contains("__"),
            "{code}"
        );
    }
    for e in errors {
        assert!(!e.to_string().is_empty());
    }
}

#[test]
fn site_and_simulated_are_optional() {
    // Absent: no site, not simulated, and neither is written back.
    let claims = parse(&sample()).unwrap();
    assert_eq!(claims.site(), None);
    assert!(!claims.simulated);
    let written: Value = serde_json::from_slice(&claims.to_json().unwrap()).unwrap();
    assert!(written.get("tppguard.site").is_none());
    assert!(written.get("tppguard.simulated").is_none());

    // Present: read, and written back as given.
    let mut value = sample();
    value["tppguard.site"] = json!("fra-1");
    value["tppguard.simulated"] = json!(true);
    let claims = parse(&value).unwrap();
    assert_eq!(claims.site(), Some("fra-1"));
    assert!(claims.simulated);
    let bytes = claims.to_json().unwrap();
    let written: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(written["tppguard.site"], json!("fra-1"));
    assert_eq!(written["tppguard.simulated"], json!(true));
    assert_eq!(AttestationClaims::from_json(&bytes).unwrap(), claims);

    // `false` is accepted and reads as absent.
    let claims = parse(&with(sample(), "tppguard.simulated", json!(false))).unwrap();
    assert!(!claims.simulated);

    // Wrong JSON types are rejected.
    assert!(matches!(
        parse(&with(sample(), "tppguard.site", json!(7))),
        Err(ClaimsError::Invalid { .. })
    ));
    assert!(matches!(
        parse(&with(sample(), "tppguard.simulated", json!("yes"))),
        Err(ClaimsError::Invalid { .. })
    ));
}

/// Both readers give the same answer: the same claims, or errors with the same code.
fn agree(bytes: &[u8]) -> Result<AttestationClaims, &'static str> {
    let fast = AttestationClaims::from_json(bytes);
    let reference = AttestationClaims::from_json_reference(bytes);
    match (&fast, &reference) {
        (Ok(a), Ok(b)) => assert_eq!(a, b),
        (Err(a), Err(b)) => assert_eq!(a.code(), b.code(), "{a} / {b}"),
        _ => panic!(
            "the readers disagree on {}: {fast:?} / {reference:?}",
            String::from_utf8_lossy(bytes)
        ),
    }
    fast.map_err(|e| e.code())
}

/// Every object member of `value`, as a path of keys.
fn member_paths(value: &Value, path: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    if let Value::Object(map) = value {
        for (key, child) in map {
            path.push(key.clone());
            out.push(path.clone());
            member_paths(child, path, out);
            path.pop();
        }
    }
}

fn parent_mut<'a>(value: &'a mut Value, path: &[String]) -> &'a mut serde_json::Map<String, Value> {
    let mut at = value;
    for key in &path[..path.len() - 1] {
        at = &mut at[key.as_str()];
    }
    at.as_object_mut().unwrap()
}

#[test]
fn the_typed_reader_agrees_with_the_reference_on_every_mutation() {
    let base = sample();
    assert!(agree(&serde_json::to_vec(&base).unwrap()).is_ok());
    let mut paths = Vec::new();
    member_paths(&base, &mut Vec::new(), &mut paths);
    assert!(paths.len() > 40, "{}", paths.len());
    let replacements = [
        json!(null),
        json!(true),
        json!(0),
        json!(-1),
        json!(1.5),
        json!(1e300),
        json!(18_446_744_073_709_551_615u64),
        json!(""),
        json!("x"),
        json!([]),
        json!({}),
        serde_json::from_str(&format!("{}1{}", "[".repeat(40), "]".repeat(40))).unwrap(),
    ];
    let (mut accepted, mut rejected, mut doubled_members) = (0, 0, 0);
    let mut tally = |r: Result<AttestationClaims, &'static str>| match r {
        Ok(_) => accepted += 1,
        Err(_) => rejected += 1,
    };
    for path in &paths {
        let last = path.last().unwrap().clone();
        let mut removed = base.clone();
        parent_mut(&mut removed, path).remove(&last);
        tally(agree(&serde_json::to_vec(&removed).unwrap()));
        let mut extra = base.clone();
        parent_mut(&mut extra, path).insert(format!("{last}_extra"), json!(1));
        tally(agree(&serde_json::to_vec(&extra).unwrap()));
        for new in &replacements {
            let mut changed = base.clone();
            parent_mut(&mut changed, path).insert(last.clone(), new.clone());
            tally(agree(&serde_json::to_vec(&changed).unwrap()));
        }
        // The member written twice, the second time with the same value: still refused.
        let text = serde_json::to_string(&base).unwrap();
        let key = serde_json::to_string(&last).unwrap();
        let mut parent = base.clone();
        let value = parent_mut(&mut parent, path)[&last].clone();
        let member = format!("{key}:{}", serde_json::to_string(&value).unwrap());
        if let Some(at) = text.find(&member) {
            doubled_members += 1;
            let doubled = format!("{}{member},{}", &text[..at], &text[at..]);
            assert_eq!(
                agree(doubled.as_bytes()).unwrap_err(),
                "claims_bad_json",
                "{member}"
            );
        }
    }
    // Both outcomes were exercised (optional members removed or nulled are accepted), and
    // every member was also written twice.
    assert!(accepted > 10 && rejected > 200, "{accepted} / {rejected}");
    assert_eq!(doubled_members, paths.len());
}

#[test]
fn measurements_are_read_and_impossible_figures_refused() {
    let good = json!({
        "method": "cuda_gemm",
        "backend": "CUDA 13.0, cuBLAS 13.0.2",
        "started_at": 1_790_000_000,
        "duration_ms": 5400,
        "repeats": 7,
        "results": [{"precision": "fp8", "matrix_size": 8192, "gemms_per_repeat": 900,
                     "tops_median": 1286.3, "tops_min": 1280.0, "tops_max": 1290.5}],
        "telemetry": {"samples": 54, "sm_clock_mhz_min": 1755, "sm_clock_mhz_max": 1980,
                      "temperature_c_max": 71, "power_mw_max": 690_000,
                      "throttle_reasons": ["sw_power_cap"]}
    });
    let mut value = sample();
    value["submods"]["gpu1"]["measurement"] = good.clone();
    let bytes = serde_json::to_vec(&value).unwrap();
    let claims = agree(&bytes).unwrap();
    let m = claims.submods["gpu1"].measurement.as_ref().unwrap();
    assert_eq!(
        m.result(crate::tpp::Precision::Fp8).unwrap().tops_median,
        1286.3
    );
    for (field, bad) in [
        ("tops_min", json!(1300.0)),
        ("tops_max", json!(-1.0)),
        ("matrix_size", json!(0)),
        ("precision", json!("FP8")),
    ] {
        let mut value = sample();
        let mut m = good.clone();
        m["results"][0][field] = bad;
        value["submods"]["gpu1"]["measurement"] = m;
        let code = agree(&serde_json::to_vec(&value).unwrap()).unwrap_err();
        assert!(
            ["claims_bad_measurement", "claims_invalid"].contains(&code),
            "{field}: {code}"
        );
    }
    let mut value = sample();
    let mut m = good;
    m["results"] = json!([m["results"][0], m["results"][0]]);
    value["submods"]["gpu1"]["measurement"] = m;
    assert_eq!(
        agree(&serde_json::to_vec(&value).unwrap()).unwrap_err(),
        "claims_bad_measurement"
    );
}

#[test]
fn a_site_outside_the_id_alphabet_is_refused_by_both_readers() {
    for site in ["fra 1", "\u{1b}[2JCOMPLIANT", "", "a\nb"] {
        let mut v = sample();
        v["tppguard.site"] = Value::String(site.to_owned());
        let bytes = serde_json::to_vec(&v).unwrap();
        let fast = AttestationClaims::from_json(&bytes).unwrap_err();
        let reference = AttestationClaims::from_json_reference(&bytes).unwrap_err();
        assert_eq!(fast.code(), "claims_bad_site", "{site:?}");
        assert_eq!(reference.code(), "claims_bad_site", "{site:?}");
    }
}
