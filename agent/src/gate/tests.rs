use super::*;

use tppguard_proto::jws::{Alg, Header, SigningKey};
use tppguard_proto::lease::{LEASE_PROFILE, LeaseExclusion, LeaseGpu, LeaseReason, LeaseVerdict};

const NOW: i64 = 1_800_000_000;

fn token() -> String {
    "ab".repeat(32)
}

fn node() -> NodeId {
    NodeId::from_hex(&"11".repeat(32)).unwrap()
}

fn signer() -> SigningKey {
    SigningKey::from_pkcs8(Alg::EdDSA, &SigningKey::generate_pkcs8(Alg::EdDSA).unwrap()).unwrap()
}

fn pinned(key: &SigningKey) -> ResultKey {
    ResultKey::new(
        key.verifying_key(),
        PathBuf::from("verifier-result.pub.pem"),
    )
}

fn gpu(index: u32) -> GpuRef {
    GpuRef {
        index,
        uuid: Some(format!("GPU-{index:08}")),
        serial: None,
        hardware_id: None,
    }
}

/// A lease for `node()` over `token()`, valid `[NOW-10, NOW+3600)`, allowing GPUs 0..8 but
/// `excluded`.
fn claims(excluded: &[u32]) -> LeaseClaims {
    LeaseClaims {
        iss: "verifier".into(),
        sub: node().to_string(),
        iat: NOW - 10,
        nbf: NOW - 10,
        exp: NOW + 3600,
        eat_profile: LEASE_PROFILE.into(),
        token_sha256: token(),
        verdict: LeaseVerdict::NotCompliant,
        renew_at: NOW + 2700,
        grace_s: 600,
        on_expiry: OnExpiry::FailClosed,
        gpus: (0..8)
            .filter(|i| !excluded.contains(i))
            .map(|i| LeaseGpu {
                gpu: gpu(i),
                licence: Some("LIC-1".into()),
            })
            .collect(),
        excluded: excluded
            .iter()
            .map(|i| LeaseExclusion {
                gpu: gpu(*i),
                reasons: vec![LeaseReason {
                    code: "cap_exceeded".into(),
                    sentence: "over the cap".into(),
                }],
            })
            .collect(),
    }
}

fn sign_with(key: &SigningKey, typ: &str, claims: &LeaseClaims) -> String {
    jws::sign(
        &Header::new(Alg::EdDSA).with_typ(typ),
        &claims.to_json().unwrap(),
        key,
    )
    .unwrap()
}

fn expect(now: i64) -> Expect<'static> {
    Expect {
        node: node(),
        token_sha256: None,
        now: Some(now),
        held_iat: None,
    }
}

#[test]
fn a_lease_verifies_only_for_this_node_token_key_and_time() {
    let key = signer();
    let result = pinned(&key);
    let good = sign_with(&key, LEASE_TYP, &claims(&[3]));
    let sent = token();
    let ok = verify_lease(
        Some(&result),
        &good,
        &Expect {
            token_sha256: Some(&sent),
            ..expect(NOW)
        },
    )
    .unwrap();
    assert_eq!(ok.claims, claims(&[3]));

    let refused = |jws: &str, expect: Expect<'_>| {
        verify_lease(Some(&result), jws, &expect)
            .unwrap_err()
            .code()
    };
    assert_eq!(
        verify_lease(None, &good, &expect(NOW)).unwrap_err().code(),
        "lease_unverifiable"
    );
    assert_eq!(refused("not a jws", expect(NOW)), "lease_malformed");
    let forged = sign_with(&signer(), LEASE_TYP, &claims(&[]));
    assert_eq!(refused(&forged, expect(NOW)), "lease_signature_invalid");
    assert_eq!(
        refused(&sign_with(&key, "JWT", &claims(&[])), expect(NOW)),
        "lease_wrong_typ"
    );
    let mut other = claims(&[]);
    other.sub = "22".repeat(32);
    assert_eq!(
        refused(&sign_with(&key, LEASE_TYP, &other), expect(NOW)),
        "lease_for_another_node"
    );
    let mut profile = claims(&[]);
    profile.eat_profile = "tag:other".into();
    assert_eq!(
        refused(&sign_with(&key, LEASE_TYP, &profile), expect(NOW)),
        "lease_wrong_profile"
    );
    let other_token = "cd".repeat(32);
    assert_eq!(
        refused(
            &good,
            Expect {
                token_sha256: Some(&other_token),
                ..expect(NOW)
            }
        ),
        "lease_for_another_token"
    );
    // Expired (past the skew), not yet valid (past the skew), older than held.
    assert_eq!(
        refused(&good, expect(NOW + 3600 + LEASE_SKEW_S)),
        "lease_expired"
    );
    assert!(verify_lease(Some(&result), &good, &expect(NOW + 3600 + LEASE_SKEW_S - 1)).is_ok());
    assert_eq!(
        refused(&good, expect(NOW - 10 - LEASE_SKEW_S - 1)),
        "lease_not_yet_valid"
    );
    assert_eq!(
        refused(
            &good,
            Expect {
                held_iat: Some(NOW),
                ..expect(NOW)
            }
        ),
        "lease_older_than_held"
    );
    // Read back from the node folder: time is not judged here.
    assert!(
        verify_lease(
            Some(&result),
            &good,
            &Expect {
                now: None,
                ..expect(NOW + 1_000_000)
            }
        )
        .is_ok()
    );
    for code in LeaseRefusal::CODES {
        assert!(code.starts_with("lease_"), "{code}");
    }
}

#[test]
fn the_states_follow_the_lease_and_the_first_start() {
    let mut config = GatingConfig::new(GatingMode::Enforce);
    config.first_lease_grace_s = 100;
    let started = NOW;
    assert_eq!(
        standing(None, None, started, NOW + 99, &config),
        GatingState::NoLeaseYet
    );
    assert_eq!(
        standing(None, None, started, NOW + 100, &config),
        GatingState::LapsedFailOpen
    );
    config.without_lease = OnExpiry::FailClosed;
    assert_eq!(
        standing(None, None, started, NOW + 100, &config),
        GatingState::LapsedFailClosed
    );
    // A lease once held and now gone: lapsed under its on_expiry at once.
    assert_eq!(
        standing(None, Some(OnExpiry::FailClosed), started, NOW, &config),
        GatingState::LapsedFailClosed
    );
    let lease = claims(&[3]);
    let at = |now| standing(Some(&lease), None, started, now, &config);
    assert_eq!(at(NOW - 100), GatingState::Leased);
    assert_eq!(at(NOW), GatingState::Leased);
    assert_eq!(at(NOW + 2700), GatingState::Leased);
    assert_eq!(at(NOW + 3600), GatingState::Grace);
    assert_eq!(at(NOW + 4199), GatingState::Grace);
    assert_eq!(at(NOW + 4200), GatingState::LapsedFailClosed);
    let mut open = claims(&[3]);
    open.on_expiry = OnExpiry::FailOpen;
    assert_eq!(
        standing(Some(&open), None, started, NOW + 4200, &config),
        GatingState::LapsedFailOpen
    );

    // A GPU the lease does not name is gated; none before the first lease. Fail-open keeps
    // the licensed GPUs running and never releases the ones the lease left out or did not
    // name.
    let stranger = GpuRef {
        index: 9,
        uuid: Some("GPU-stranger".into()),
        serial: None,
        hardware_id: None,
    };
    for state in [
        GatingState::Leased,
        GatingState::Grace,
        GatingState::LapsedFailOpen,
    ] {
        assert!(must_gate(state, Some(&lease), &gpu(3)));
        assert!(!must_gate(state, Some(&lease), &gpu(2)));
        assert!(must_gate(state, Some(&lease), &stranger));
    }
    assert!(!must_gate(GatingState::NoLeaseYet, None, &gpu(3)));
    assert!(!must_gate(GatingState::LapsedFailOpen, None, &gpu(3)));
    assert!(must_gate(
        GatingState::LapsedFailClosed,
        Some(&lease),
        &gpu(2)
    ));

    // The wake-ups: renewal, expiry, lapse; then nothing.
    assert_eq!(
        next_change(Some(&lease), started, NOW, &config),
        Some(NOW + 2700)
    );
    assert_eq!(
        next_change(Some(&lease), started, NOW + 2700, &config),
        Some(NOW + 3600)
    );
    assert_eq!(
        next_change(Some(&lease), started, NOW + 3600, &config),
        Some(NOW + 4200)
    );
    assert_eq!(
        next_change(Some(&lease), started, NOW + 4200, &config),
        None
    );
    assert_eq!(next_change(None, started, NOW, &config), Some(NOW + 100));
}

/// A fake NVML: compute modes by index, a log of set calls, knobs for what root can do.
#[derive(Default)]
struct Fake {
    modes: Vec<ComputeMode>,
    sets: Vec<(u32, ComputeMode)>,
    refuse: Option<u32>,
    not_sticking: Option<u32>,
    cc: Option<bool>,
    cc_sets: Vec<bool>,
}

impl Fake {
    fn eight() -> Self {
        Self {
            modes: vec![ComputeMode::Default; 8],
            ..Self::default()
        }
    }
}

impl GpuControl for Fake {
    fn gpus(&mut self) -> Result<Vec<GpuRef>, String> {
        Ok((0..self.modes.len())
            .rev()
            .map(|i| gpu(u32::try_from(i).unwrap()))
            .collect())
    }
    fn compute_mode(&mut self, index: u32) -> Result<ComputeMode, String> {
        Ok(self.modes[index as usize])
    }
    fn set_compute_mode(&mut self, index: u32, mode: ComputeMode) -> Result<(), String> {
        self.sets.push((index, mode));
        if self.refuse == Some(index) {
            return Err("no_permission".into());
        }
        if self.not_sticking != Some(index) {
            self.modes[index as usize] = mode;
        }
        Ok(())
    }
    fn cc_on(&mut self) -> bool {
        self.cc.is_some()
    }
    fn cc_ready(&mut self) -> Result<bool, String> {
        self.cc.ok_or_else(|| "not_supported".into())
    }
    fn set_cc_ready(&mut self, ready: bool) -> Result<(), String> {
        self.cc_sets.push(ready);
        self.cc = Some(ready);
        Ok(())
    }
}

fn held(excluded: &[u32]) -> HeldLease {
    HeldLease {
        jws: "lease.jws".into(),
        claims: claims(excluded),
    }
}

#[test]
fn enforce_gates_exactly_what_the_lease_leaves_out_and_only_acts_on_changes() {
    let mut fake = Fake::eight();
    fake.modes[5] = ComputeMode::ExclusiveProcess;
    let mut record = GateRecord::default();
    let lease = held(&[3, 5]);
    let report = act(
        &mut fake,
        GatingMode::Enforce,
        GatingState::Leased,
        Some(&lease),
        None,
        &mut record,
    )
    .unwrap();
    assert_eq!(
        fake.sets,
        [(3, ComputeMode::Prohibited), (5, ComputeMode::Prohibited)]
    );
    assert_eq!(report.lease.as_deref(), Some("lease.jws"));
    assert_eq!(
        report.gpus.iter().map(|g| g.gpu.index).collect::<Vec<_>>(),
        (0..8).collect::<Vec<_>>(),
        "index order"
    );
    assert!(report.gpus.iter().all(|g| g.held && g.error.is_none()));
    assert_eq!(report.not_held().count(), 0);
    assert_eq!(record.last_gated, ["GPU-00000003", "GPU-00000005"]);
    assert_eq!(
        record.restore["GPU-00000005"],
        ComputeMode::ExclusiveProcess
    );

    // Again: nothing to do, no set call.
    fake.sets.clear();
    act(
        &mut fake,
        GatingMode::Enforce,
        GatingState::Leased,
        Some(&lease),
        None,
        &mut record,
    )
    .unwrap();
    assert!(fake.sets.is_empty());

    // A lease allowing them: each back to the mode found before gating.
    let report = act(
        &mut fake,
        GatingMode::Enforce,
        GatingState::Leased,
        Some(&held(&[])),
        None,
        &mut record,
    )
    .unwrap();
    assert_eq!(
        fake.sets,
        [
            (3, ComputeMode::Default),
            (5, ComputeMode::ExclusiveProcess)
        ]
    );
    assert!(report.gpus.iter().all(|g| g.held && !g.gate));
    assert!(record.restore.is_empty());
}

#[test]
fn lapsed_fail_closed_gates_all_and_fail_open_none() {
    let mut fake = Fake::eight();
    let mut record = GateRecord::default();
    act(
        &mut fake,
        GatingMode::Enforce,
        GatingState::LapsedFailClosed,
        Some(&held(&[3])),
        None,
        &mut record,
    )
    .unwrap();
    assert_eq!(fake.sets.len(), 8);
    assert!(fake.modes.iter().all(|m| *m == ComputeMode::Prohibited));
    fake.sets.clear();
    let report = act(
        &mut fake,
        GatingMode::Enforce,
        GatingState::LapsedFailOpen,
        None,
        None,
        &mut record,
    )
    .unwrap();
    assert_eq!(fake.sets.len(), 8);
    assert!(fake.sets.iter().all(|(_, m)| *m == ComputeMode::Default));
    assert_eq!(report.lease, None);
    assert!(report.gpus.iter().all(|g| !g.gate && g.held));
}

#[test]
fn observe_changes_nothing_and_says_what_would_be_gated() {
    let mut fake = Fake::eight();
    fake.cc = Some(true);
    let mut record = GateRecord::default();
    let report = act(
        &mut fake,
        GatingMode::Observe,
        GatingState::LapsedFailClosed,
        None,
        None,
        &mut record,
    )
    .unwrap();
    assert!(fake.sets.is_empty() && fake.cc_sets.is_empty());
    assert!(report.gpus.iter().all(|g| g.gate && !g.held));
    assert_eq!(report.gpus[0].compute_mode, Some(ComputeMode::Default));
    // Nothing is expected to hold in observe mode.
    assert_eq!(report.not_held().count(), 0);
    let cc = report.cc_ready.unwrap();
    assert_eq!(
        (cc.ready, cc.read_back, cc.held),
        (false, Some(true), false)
    );
}

#[test]
fn what_root_undoes_is_reported_not_hidden() {
    let mut fake = Fake::eight();
    fake.refuse = Some(1);
    fake.not_sticking = Some(2);
    let mut record = GateRecord::default();
    let report = act(
        &mut fake,
        GatingMode::Enforce,
        GatingState::Leased,
        Some(&held(&[1, 2])),
        None,
        &mut record,
    )
    .unwrap();
    let g1 = &report.gpus[1];
    assert_eq!(
        (g1.held, g1.error.as_deref()),
        (false, Some("no_permission"))
    );
    let g2 = &report.gpus[2];
    assert_eq!(
        (g2.held, g2.compute_mode, g2.error.as_deref()),
        (false, Some(ComputeMode::Default), None)
    );
    assert_eq!(
        report.not_held().map(|g| g.gpu.index).collect::<Vec<_>>(),
        [1, 2]
    );
    // Root set a gated GPU back: the next evaluation sets it again.
    fake.modes[1] = ComputeMode::Default;
    fake.refuse = None;
    fake.sets.clear();
    let report = act(
        &mut fake,
        GatingMode::Enforce,
        GatingState::Leased,
        Some(&held(&[1, 2])),
        None,
        &mut record,
    )
    .unwrap();
    assert_eq!(
        fake.sets,
        [(1, ComputeMode::Prohibited), (2, ComputeMode::Prohibited)]
    );
    assert!(report.gpus[1].held);
}

#[test]
fn cc_ready_goes_not_ready_only_when_every_gpu_is_gated() {
    let mut fake = Fake::eight();
    fake.cc = Some(true);
    let mut record = GateRecord::default();
    let report = act(
        &mut fake,
        GatingMode::Enforce,
        GatingState::Leased,
        Some(&held(&[3])),
        None,
        &mut record,
    )
    .unwrap();
    assert!(fake.cc_sets.is_empty(), "one GPU allowed: stays ready");
    assert!(report.cc_ready.unwrap().held);
    let report = act(
        &mut fake,
        GatingMode::Enforce,
        GatingState::LapsedFailClosed,
        None,
        None,
        &mut record,
    )
    .unwrap();
    assert_eq!(fake.cc_sets, [false]);
    assert_eq!(
        report.cc_ready,
        Some(CcReadyGate {
            ready: false,
            read_back: Some(false),
            held: true
        })
    );
    // CC off: no ready state in the report.
    let mut off = Fake::eight();
    let report = act(
        &mut off,
        GatingMode::Enforce,
        GatingState::LapsedFailClosed,
        None,
        None,
        &mut record,
    )
    .unwrap();
    assert_eq!(report.cc_ready, None);
}

#[test]
fn the_gatekeeper_keeps_its_state_and_never_un_gates_on_a_refused_lease() {
    let dir = tempfile::tempdir().unwrap();
    let key = signer();
    let mut config = GatingConfig::new(GatingMode::Enforce);
    config.first_lease_grace_s = 60;
    let open = |now| {
        Gatekeeper::open(dir.path(), config.clone(), Some(pinned(&key)), node(), now).unwrap()
    };
    let mut gate = open(NOW);
    let mut fake = Fake::eight();
    assert_eq!(
        gate.evaluate(&mut fake, NOW).unwrap().state,
        GatingState::NoLeaseYet
    );
    assert!(fake.sets.is_empty());

    gate.offer(&sign_with(&key, LEASE_TYP, &claims(&[3])), None, NOW)
        .unwrap();
    let report = gate.evaluate(&mut fake, NOW).unwrap();
    assert_eq!(report.state, GatingState::Leased);
    assert_eq!(fake.sets, [(3, ComputeMode::Prohibited)]);
    assert_eq!(load_report(dir.path()).unwrap(), Some(report));

    // A forged lease allowing everything, an other node's, an older one: nothing changes.
    let mut all = claims(&[]);
    all.iat = NOW;
    let forged = sign_with(&signer(), LEASE_TYP, &all);
    assert_eq!(
        gate.offer(&forged, None, NOW).unwrap_err().code(),
        "lease_signature_invalid"
    );
    let mut older = claims(&[]);
    older.iat = NOW - 20;
    assert_eq!(
        gate.offer(&sign_with(&key, LEASE_TYP, &older), None, NOW)
            .unwrap_err()
            .code(),
        "lease_older_than_held"
    );
    fake.sets.clear();
    gate.evaluate(&mut fake, NOW).unwrap();
    assert!(fake.sets.is_empty());
    assert_eq!(fake.modes[3], ComputeMode::Prohibited);

    // A restart finds the lease and the first start; a tampered lease file is set aside.
    let again = open(NOW + 10_000);
    assert_eq!(again.lease().map(|l| &l.claims), Some(&claims(&[3])));
    assert_eq!(again.state(NOW + 10_000), GatingState::LapsedFailClosed);
    std::fs::write(dir.path().join(LEASE_FILE), forged).unwrap();
    let tampered = open(NOW + 10_000);
    assert!(tampered.lease().is_none());
    // The lease held was fail-closed: a lease file deleted or replaced gates everything.
    assert_eq!(tampered.state(NOW), GatingState::LapsedFailClosed);
    std::fs::remove_file(dir.path().join(LEASE_FILE)).unwrap();
    assert_eq!(open(NOW).state(NOW), GatingState::LapsedFailClosed);
    // With no lease ever, the first start is kept, so a restart does not buy a new grace.
    std::fs::remove_file(dir.path().join(STATE_FILE)).unwrap();
    let mut fresh = open(NOW);
    fresh.evaluate(&mut Fake::eight(), NOW).unwrap();
    let restarted = open(NOW + 61);
    assert_eq!(restarted.state(NOW + 61), GatingState::LapsedFailOpen);
    assert_eq!(restarted.next_change(NOW), Some(NOW + 60));
}

#[test]
fn a_report_that_does_not_read_is_an_error_and_none_is_none() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(load_report(dir.path()).unwrap(), None);
    std::fs::write(dir.path().join(REPORT_FILE), "{").unwrap();
    let err = load_report(dir.path()).unwrap_err();
    assert!(format!("{err:#}").contains("gating report"), "{err:#}");
}

#[test]
fn fail_open_keeps_the_gpus_the_last_lease_left_out_gated() {
    let mut fake = Fake::eight();
    let mut record = GateRecord::default();
    let mut lease = held(&[3]);
    lease.claims.on_expiry = OnExpiry::FailOpen;
    act(
        &mut fake,
        GatingMode::Enforce,
        GatingState::Leased,
        Some(&lease),
        None,
        &mut record,
    )
    .unwrap();
    assert_eq!(fake.sets, [(3, ComputeMode::Prohibited)]);
    fake.sets.clear();
    // The lease lapses fail-open (a verifier outage): GPU 3 stays gated, the rest run on.
    let report = act(
        &mut fake,
        GatingMode::Enforce,
        GatingState::LapsedFailOpen,
        Some(&lease),
        None,
        &mut record,
    )
    .unwrap();
    assert!(fake.sets.is_empty());
    assert_eq!(
        report
            .gpus
            .iter()
            .filter(|g| g.gate)
            .map(|g| g.gpu.index)
            .collect::<Vec<_>>(),
        [3]
    );
    assert_eq!(fake.modes[3], ComputeMode::Prohibited);
}

#[test]
fn only_what_the_agent_gated_is_restored() {
    let mut fake = Fake::eight();
    // Someone else prohibited GPU 2; the lease allows it.
    fake.modes[2] = ComputeMode::Prohibited;
    let mut record = GateRecord::default();
    let report = act(
        &mut fake,
        GatingMode::Enforce,
        GatingState::Leased,
        Some(&held(&[])),
        None,
        &mut record,
    )
    .unwrap();
    assert!(fake.sets.is_empty(), "{:?}", fake.sets);
    assert_eq!(report.gpus[2].compute_mode, Some(ComputeMode::Prohibited));
    assert!(!report.gpus[2].gate);
    // A GPU the agent gated is restored, to the mode it found, once allowed.
    let mut record = GateRecord::default();
    let mut fake = Fake::eight();
    act(
        &mut fake,
        GatingMode::Enforce,
        GatingState::Leased,
        Some(&held(&[4])),
        None,
        &mut record,
    )
    .unwrap();
    assert_eq!(
        record.restore.get("GPU-00000004"),
        Some(&ComputeMode::Default)
    );
    fake.sets.clear();
    act(
        &mut fake,
        GatingMode::Enforce,
        GatingState::Leased,
        Some(&held(&[])),
        None,
        &mut record,
    )
    .unwrap();
    assert_eq!(fake.sets, [(4, ComputeMode::Default)]);
    assert!(record.restore.is_empty());
}

#[test]
fn cc_ready_is_restored_to_what_was_found_and_never_set_ready_otherwise() {
    // Found not-ready (someone else's doing): gating everything sets nothing, and allowing
    // a GPU again never makes the system ready.
    let mut fake = Fake::eight();
    fake.cc = Some(false);
    let mut record = GateRecord::default();
    act(
        &mut fake,
        GatingMode::Enforce,
        GatingState::LapsedFailClosed,
        None,
        None,
        &mut record,
    )
    .unwrap();
    let report = act(
        &mut fake,
        GatingMode::Enforce,
        GatingState::Leased,
        Some(&held(&[3])),
        None,
        &mut record,
    )
    .unwrap();
    assert!(fake.cc_sets.is_empty(), "{:?}", fake.cc_sets);
    assert_eq!(record.cc_ready_found, None);
    let cc = report.cc_ready.unwrap();
    assert_eq!(
        (cc.ready, cc.read_back, cc.held),
        (false, Some(false), true)
    );

    // Found ready: the agent makes it not-ready, keeps what it found, and restores it.
    let mut fake = Fake::eight();
    fake.cc = Some(true);
    let mut record = GateRecord::default();
    act(
        &mut fake,
        GatingMode::Enforce,
        GatingState::LapsedFailClosed,
        None,
        None,
        &mut record,
    )
    .unwrap();
    assert_eq!(fake.cc_sets, [false]);
    assert_eq!(record.cc_ready_found, Some(true));
    act(
        &mut fake,
        GatingMode::Enforce,
        GatingState::Leased,
        Some(&held(&[3])),
        None,
        &mut record,
    )
    .unwrap();
    assert_eq!(fake.cc_sets, [false, true]);
    assert_eq!(record.cc_ready_found, None);
}

#[test]
fn an_older_lease_swapped_in_while_down_is_refused_and_a_clock_rolled_back_keeps_the_gates() {
    let dir = tempfile::tempdir().unwrap();
    let key = signer();
    let config = GatingConfig::new(GatingMode::Enforce);
    let open = |now| {
        Gatekeeper::open(dir.path(), config.clone(), Some(pinned(&key)), node(), now).unwrap()
    };
    let mut old = claims(&[]);
    old.iat = NOW - 100;
    old.on_expiry = OnExpiry::FailOpen;
    let old = sign_with(&key, LEASE_TYP, &old);
    let mut gate = open(NOW);
    let mut fresh = claims(&[3]);
    fresh.on_expiry = OnExpiry::FailOpen;
    let fresh = sign_with(&key, LEASE_TYP, &fresh);
    gate.offer(&fresh, None, NOW).unwrap();
    let mut fake = Fake::eight();
    gate.evaluate(&mut fake, NOW).unwrap();
    assert_eq!(gate.record.lease_iat, Some(NOW - 10));
    assert_eq!(
        gate.record.lease_sha256.as_deref(),
        Some(crate::push::sha256_hex(fresh.as_bytes()).as_str())
    );

    // While the agent is down, root swaps in an older lease allowing every GPU.
    std::fs::write(dir.path().join(LEASE_FILE), &old).unwrap();
    let mut restarted = open(NOW + 5);
    assert!(restarted.lease().is_none());
    assert_eq!(restarted.state(NOW + 5), GatingState::LapsedFailOpen);
    fake.sets.clear();
    let report = restarted.evaluate(&mut fake, NOW + 5).unwrap();
    // Lapsed fail-open with the lease gone: the last gated set stays gated.
    assert!(fake.sets.is_empty(), "{:?}", fake.sets);
    assert!(report.gpus[3].gate);
    assert_eq!(fake.modes[3], ComputeMode::Prohibited);

    // The real lease back, the clock rolled back before its iat: the last set is kept.
    std::fs::write(dir.path().join(LEASE_FILE), &fresh).unwrap();
    let mut rolled = open(NOW - 1000);
    assert!(rolled.clock_behind(NOW - 1000));
    assert!(!rolled.clock_behind(NOW - 10 - LEASE_SKEW_S));
    let report = rolled.evaluate(&mut fake, NOW - 1000).unwrap();
    assert!(fake.sets.is_empty(), "{:?}", fake.sets);
    assert_eq!(
        report
            .gpus
            .iter()
            .filter(|g| g.gate)
            .map(|g| g.gpu.index)
            .collect::<Vec<_>>(),
        [3]
    );
}

#[test]
fn a_failed_kubernetes_mark_is_tried_again_and_a_made_one_is_not_repeated() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let dir = tempfile::tempdir().unwrap();
    // An API server that drops every connection: each mark fails.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let tries = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&tries);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            counted.fetch_add(1, Ordering::SeqCst);
            drop(stream);
        }
    });
    let token = dir.path().join("token");
    std::fs::write(&token, "t").unwrap();
    let mut config = GatingConfig::new(GatingMode::Enforce);
    config.kubernetes = Some(KubeConfig {
        api_url: Some(url),
        token_file: token,
        ..KubeConfig::for_node("n1")
    });
    let mut gate = Gatekeeper::open(dir.path(), config, None, node(), NOW).unwrap();
    let mut fake = Fake::eight();
    gate.evaluate(&mut fake, NOW).unwrap();
    let first = tries.load(Ordering::SeqCst);
    assert!(first >= 1);
    assert_eq!(gate.record.kube_marked, None);
    // Nothing changed, but the mark failed: tried again.
    gate.evaluate(&mut fake, NOW).unwrap();
    let second = tries.load(Ordering::SeqCst);
    assert!(second > first);
    // Marked already as wanted: not again.
    gate.record.kube_marked = Some(KubeMarks {
        mode: GatingMode::Enforce,
        left_out: 0,
        allowed: 8,
    });
    gate.evaluate(&mut fake, NOW).unwrap();
    assert_eq!(tries.load(Ordering::SeqCst), second);
}

#[test]
fn a_dry_run_sets_nothing_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let key = signer();
    let mut gate = Gatekeeper::open(
        dir.path(),
        GatingConfig::new(GatingMode::Enforce),
        Some(pinned(&key)),
        node(),
        NOW,
    )
    .unwrap();
    gate.dry_run();
    gate.offer(&sign_with(&key, LEASE_TYP, &claims(&[3])), None, NOW)
        .unwrap();
    let mut fake = Fake::eight();
    let report = gate.evaluate(&mut fake, NOW).unwrap();
    assert!(report.gpus[3].gate);
    assert!(fake.sets.is_empty());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}
