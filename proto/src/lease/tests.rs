use super::*;

fn gpu(index: u32, uuid: &str) -> GpuRef {
    GpuRef {
        index,
        uuid: Some(uuid.to_owned()),
        serial: None,
        hardware_id: None,
    }
}

fn lease() -> LeaseClaims {
    LeaseClaims {
        iss: "tppguard-verifier".into(),
        sub: "ab".repeat(32),
        iat: 1000,
        nbf: 1000,
        exp: 4600,
        eat_profile: LEASE_PROFILE.into(),
        token_sha256: "cd".repeat(32),
        verdict: LeaseVerdict::NotCompliant,
        renew_at: 3700,
        grace_s: 600,
        on_expiry: OnExpiry::FailClosed,
        gpus: vec![LeaseGpu {
            gpu: gpu(0, "GPU-aaaa"),
            licence: Some("LIC-1".into()),
        }],
        excluded: vec![LeaseExclusion {
            gpu: gpu(1, "GPU-bbbb"),
            reasons: vec![LeaseReason {
                code: "device_cap_exceeded".into(),
                sentence: "over the cap".into(),
            }],
        }],
    }
}

#[test]
fn a_lease_round_trips_and_names_what_it_allows() {
    let l = lease();
    let back = LeaseClaims::from_json(&l.to_json().unwrap()).unwrap();
    assert_eq!(back, l);
    assert!(
        l.allows(&gpu(7, "gpu-AAAA")),
        "identity, not index, in any case"
    );
    assert!(!l.allows(&gpu(1, "GPU-bbbb")));
    assert!(
        !l.allows(&gpu(2, "GPU-cccc")),
        "a GPU the lease does not name"
    );
    assert_eq!(
        l.exclusion(&gpu(1, "GPU-bbbb")).unwrap().reasons[0].code,
        "device_cap_exceeded"
    );
}

#[test]
fn the_hardware_identity_decides_before_the_uuid() {
    let a = GpuRef {
        index: 0,
        uuid: Some("GPU-aaaa".into()),
        serial: None,
        hardware_id: Some("01".into()),
    };
    let mut b = a.clone();
    b.hardware_id = Some("02".into());
    assert!(!a.same_gpu(&b), "a cloned UUID on another device");
    let no_ids = GpuRef {
        index: 0,
        uuid: None,
        serial: None,
        hardware_id: None,
    };
    assert!(
        !no_ids.same_gpu(&no_ids.clone()),
        "the index alone never matches"
    );
}

#[test]
fn time_at_walks_through_the_lease() {
    let l = lease();
    assert_eq!(l.time_at(999), LeaseTime::NotYetValid);
    assert_eq!(l.time_at(1000), LeaseTime::Valid);
    assert_eq!(l.time_at(3700), LeaseTime::RenewDue);
    assert_eq!(l.time_at(4600), LeaseTime::Grace);
    assert_eq!(l.time_at(5200), LeaseTime::Lapsed);
    let mut huge = l;
    huge.grace_s = u64::MAX;
    assert_eq!(huge.time_at(i64::MAX - 1), LeaseTime::Grace);
}

#[test]
fn hostile_leases_are_refused_with_their_code() {
    let refuse = |f: &dyn Fn(&mut LeaseClaims)| {
        let mut l = lease();
        f(&mut l);
        LeaseClaims::from_json(&l.to_json().unwrap())
            .unwrap_err()
            .code()
    };
    assert_eq!(
        refuse(&|l| l.eat_profile = "x".into()),
        "lease_wrong_profile"
    );
    assert_eq!(refuse(&|l| l.renew_at = l.exp + 1), "lease_bad_instants");
    assert_eq!(refuse(&|l| l.nbf = l.exp + 1), "lease_bad_instants");
    assert_eq!(
        refuse(&|l| l.excluded[0].gpu = l.gpus[0].gpu.clone()),
        "lease_bad_gpu"
    );
    assert_eq!(refuse(&|l| l.excluded[0].reasons.clear()), "lease_bad_gpu");
    assert_eq!(refuse(&|l| l.gpus[0].gpu.uuid = None), "lease_bad_gpu");
    assert_eq!(
        refuse(&|l| l.gpus[0].licence = Some("x".repeat(2000))),
        "lease_too_much"
    );
    assert_eq!(
        refuse(&|l| {
            let g = l.gpus[0].clone();
            l.gpus = (0..300)
                .map(|i| LeaseGpu {
                    gpu: gpu(i, &format!("GPU-{i}")),
                    ..g.clone()
                })
                .collect();
        }),
        "lease_too_much"
    );
    let err = LeaseClaims::from_json(&vec![b' '; MAX_LEASE_BYTES + 1]).unwrap_err();
    assert_eq!(err.code(), "lease_too_large");
    let mut json: serde_json::Value = serde_json::to_value(lease()).unwrap();
    json["extra"] = serde_json::json!(1);
    let err = LeaseClaims::from_json(json.to_string().as_bytes()).unwrap_err();
    assert_eq!(err.code(), "lease_invalid_json");
    assert_eq!(LeaseError::CODES.len(), 6);
}

#[test]
fn a_gating_report_names_what_did_not_hold_in_enforce_mode_only() {
    let mut report = GatingReport {
        mode: GatingMode::Enforce,
        state: GatingState::Leased,
        lease: None,
        gpus: vec![
            GpuGate {
                gpu: gpu(0, "GPU-aaaa"),
                gate: false,
                compute_mode: Some(ComputeMode::Default),
                held: true,
                error: None,
            },
            GpuGate {
                gpu: gpu(1, "GPU-bbbb"),
                gate: true,
                compute_mode: Some(ComputeMode::Default),
                held: false,
                error: Some("no_permission".into()),
            },
        ],
        cc_ready: None,
    };
    let json = serde_json::to_string(&report).unwrap();
    assert!(json.contains("\"compute_mode\":\"default\""), "{json}");
    let back: GatingReport = serde_json::from_str(&json).unwrap();
    assert_eq!(back, report);
    assert_eq!(
        report.not_held().map(|g| g.gpu.index).collect::<Vec<_>>(),
        [1]
    );
    report.mode = GatingMode::Observe;
    assert_eq!(report.not_held().count(), 0);
}
