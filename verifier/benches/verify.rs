//! `cargo bench -p tppguard-verifier --features test-device --bench verify`: attestation
//! verification throughput on one thread, against ring's raw Ed25519 verification of the same
//! signing input, and (c) licence evaluation of a 125,000-node fleet. No harness: figures are
//! printed, not judged.
//!
//! The PKI is the verifier's own (`pki::init`, `pki::issue_node`, in a temporary folder), the
//! node key Ed25519, the claim set an 8-GPU H100 node's, signed with proto's JWS: the tokens
//! are those `tppguard-agent attest` makes.
//!
//! (e) A what-if on the same fleet (`--scenario rule-set=us-ai-diffusion-2025 --scenario
//! DE=tier_2`): the baseline evaluation, the scenario's and their comparison, against the
//! baseline evaluation alone, interleaved in the same run.
//!
//! (f) The same fleet with every GPU on a vendor's shipment (issue 15: the shipments stage
//! matches a million shipped devices), against the evaluation without shipments, interleaved.
//! (g) Leases on the same verdict: the plan (every licence's cap walk) and one node's lease,
//! as each ingest batch makes them, against the evaluation that batch makes anyway.
//!
//! (d) The same node at the `hardware` tier: each GPU carries its own evidence (a P-384 SPDM
//! report signed for the derived GPU nonce, and its device chain, from test devices shaped
//! like NVIDIA's under a test root pinned in `device_roots`), against eight raw ring P-384
//! verifications of the same reports in the same run. Device chains are remembered after the
//! first attestation, as a node's are.

#![expect(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "a benchmark: a failed setup step is a bug to stop on"
)]

use base64::Engine as _;
use std::hint::black_box;
use std::time::{Duration, Instant};

use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, PKCS_ED25519};
use ring::signature::{ECDSA_P384_SHA384_FIXED, ED25519, UnparsedPublicKey};
use tppguard_proto::claims::{ATTESTATION_TYP, AttestationClaims, Nonce};
use tppguard_proto::gpu_evidence::spdm::Report;
use tppguard_proto::gpu_evidence::{GpuEvidence, gpu_nonce};
use tppguard_proto::identity::NodeId;
use tppguard_proto::jws::{self, Alg, Header, SigningKey};
use tppguard_proto::ruleset::shipped_rule_set;
use tppguard_verifier::attestation::verify_attestation;
use tppguard_verifier::chain::{TrustAnchors, certs_from_pem};
use tppguard_verifier::gpu_evidence::test_device::{FwidForm, TestRoot};
use tppguard_verifier::pki;
use tppguard_verifier::policy::{ShippedDevice, VerifiedShipment, bench_support, evaluate};
use tppguard_verifier::scenario::{Scenario, ScenarioError, compare};

/// How long each measurement round runs.
const ROUND: Duration = Duration::from_millis(1500);
/// Rounds per figure; the median is reported.
const ROUNDS: usize = 5;

fn main() {
    let setup = Setup::new();
    println!(
        "attestation: {} GPUs, compact JWS {} bytes, signing input {} bytes, x5c {} certs",
        setup.gpus,
        setup.token.len(),
        setup.signing_input.len(),
        setup.x5c_len
    );

    // (a) The whole check: decode, typ, x5c chain to the pinned root, alg, signature,
    // claims, nonce. A node presents the same chain every time, so after its first
    // attestation the chain is a remembered one (`TrustAnchors::verify_node`).
    let full = median_rate(|| {
        let v = verify_attestation(
            black_box(&setup.token),
            &setup.trust,
            setup.now,
            Some(&setup.nonce),
        );
        black_box(v.expect("the token verifies"));
    });
    // Its JWS layer alone (decode + signature with the known leaf key), for the breakdown.
    let jws_only = median_rate(|| {
        let v = jws::decode(black_box(&setup.token))
            .and_then(|u| u.verify(&setup.leaf_key))
            .expect("the token verifies");
        black_box(v);
    });
    // The same check with the chain validated from scratch each time (a node's first
    // attestation, or a verifier that just started).
    let x5c = setup.x5c.clone();
    let cold = median_rate(|| {
        let v = tppguard_verifier::chain::verify_node_chain(
            black_box(&x5c),
            &setup.trust,
            setup.now,
            setup.trust.operator_crls(),
        );
        black_box(v.expect("the chain verifies"));
    });
    let digest = median_rate(|| {
        black_box(ring::digest::digest(
            &ring::digest::SHA256,
            black_box(setup.token.as_bytes()),
        ));
    });
    let claims = median_rate(|| {
        black_box(AttestationClaims::from_json(black_box(&setup.payload)).expect("claims"));
    });
    // (b) ring's raw Ed25519 verify of the same signing input and signature.
    let raw = median_rate(|| {
        UnparsedPublicKey::new(&ED25519, &setup.leaf_raw)
            .verify(black_box(&setup.signing_input), &setup.signature)
            .expect("raw verify");
    });
    println!("verify_attestation (8-GPU node, 1 thread): {full:>10.0} /s");
    println!("  jws decode + Ed25519 verify only:         {jws_only:>10.0} /s");
    println!("  claim set parse and checks only:          {claims:>10.0} /s");
    println!("  SHA-256 of the token (its evidence id):   {digest:>10.0} /s");
    println!("  x5c chain validated from scratch only:    {cold:>10.0} /s");
    println!("ring Ed25519 verify, same input (1 thread): {raw:>10.0} /s");
    println!(
        "ratio verify_attestation / raw Ed25519:     {:>10.3} (goal >= 0.8)",
        full / raw
    );

    // (d) The hardware tier: eight GPU reports per attestation.
    let hw = Hardware::new(&setup);
    let checked = verify_attestation(&hw.token, &hw.trust, setup.now, Some(&setup.nonce))
        .expect("the hardware token verifies");
    assert_eq!(checked.gpu_evidence().len(), 8);
    assert!(
        checked.gpu_evidence().values().all(|r| r.verified()),
        "every GPU's evidence verifies"
    );
    let full_hw = median_rate(|| {
        let v = verify_attestation(
            black_box(&hw.token),
            &hw.trust,
            setup.now,
            Some(&setup.nonce),
        );
        black_box(v.expect("the token verifies"));
    });
    let raw_p384 = median_rate(|| {
        for (key, signed, signature) in &hw.reports {
            UnparsedPublicKey::new(&ECDSA_P384_SHA384_FIXED, key)
                .verify(black_box(signed), signature)
                .expect("raw P-384 verify");
        }
    });
    println!(
        "hardware-tier attestation: 8 GPU reports, compact JWS {} bytes",
        hw.token.len()
    );
    println!("verify_attestation (8 GPU reports, 1 thread): {full_hw:>10.0} /s");
    println!("ring P-384 verify x 8, same reports:          {raw_p384:>10.0} /s");
    println!(
        "ratio verify_attestation / 8 raw P-384:       {:>10.3} (goal >= 0.8)",
        full_hw / raw_p384
    );

    // (c) Licence evaluation over a synthetic fleet.
    let (nodes, gpus, licences) = (125_000, 8, 20);
    let start = Instant::now();
    let (lics, fleet, rules, at) = bench_support::synthetic_fleet(nodes, gpus, licences);
    println!(
        "synthetic fleet: {nodes} nodes x {gpus} GPUs, {licences} licences, built in {:.2?}",
        start.elapsed()
    );
    let mut times: Vec<Duration> = (0..ROUNDS)
        .map(|_| {
            let start = Instant::now();
            let verdict = black_box(evaluate(&lics, &[], &rules, &fleet, at));
            let took = start.elapsed();
            assert!(
                verdict.verdict.is_compliant(),
                "the synthetic fleet is compliant"
            );
            took
        })
        .collect();
    times.sort();
    println!(
        "evaluate {nodes} nodes x {gpus} GPUs x {licences} licences: median {:.3?} of {ROUNDS} \
         (min {:.3?}, max {:.3?}; goal < 1 s)",
        times[ROUNDS / 2],
        times[0],
        times[ROUNDS - 1]
    );

    // (e) A what-if: the baseline, the scenario and their comparison, against the baseline
    // alone, in alternating rounds so both see the same machine.
    let changes = ["rule-set=us-ai-diffusion-2025", "DE=tier_2"].map(str::to_owned);
    let scenario = Scenario::parse(&changes).unwrap();
    let load = |id: &str| {
        shipped_rule_set(id).map_err(|e| ScenarioError::RuleSetUnavailable {
            rule_set: id.to_owned(),
            reason: e.to_string(),
        })
    };
    let what_if_rules = scenario
        .rule_sets(std::slice::from_ref(&rules), &load)
        .unwrap()
        .remove(0);
    let what_if_lics = scenario.licences(&lics).unwrap();
    let mut alone = Vec::with_capacity(ROUNDS);
    let mut with_scenario = Vec::with_capacity(ROUNDS);
    let mut compare_only = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        // Each side's verdicts are dropped after its clock stops, so neither pays for freeing.
        let start = Instant::now();
        let verdict = black_box(evaluate(&lics, &[], &rules, &fleet, at));
        alone.push(start.elapsed());
        drop(verdict);
        let start = Instant::now();
        let baseline = evaluate(&lics, &[], &rules, &fleet, at);
        let what_if = evaluate(&what_if_lics, &[], &what_if_rules, &fleet, at);
        let compared = Instant::now();
        let c = black_box(compare(&baseline, &what_if));
        compare_only.push(compared.elapsed());
        with_scenario.push(start.elapsed());
        assert!(
            !c.countries.is_empty(),
            "the scenario moves the fleet's country"
        );
    }
    for t in [&mut alone, &mut with_scenario, &mut compare_only] {
        t.sort();
    }
    let (a, w) = (alone[ROUNDS / 2], with_scenario[ROUNDS / 2]);
    println!(
        "what-if (rule-set=us-ai-diffusion-2025, DE=tier_2) on the same fleet: baseline + \
         scenario + comparison median {w:.3?} (of which comparison {:.3?}) against baseline \
         alone {a:.3?}: ratio {:.2} (two evaluations: ~2 expected)",
        compare_only[ROUNDS / 2],
        w.as_secs_f64() / a.as_secs_f64()
    );

    shipments_and_leases(&lics, &rules, &fleet, at);
}

/// Cases (f) and (g) of the module documentation.
fn shipments_and_leases(
    lics: &[tppguard_verifier::policy::VerifiedLicence],
    rules: &tppguard_proto::ruleset::RuleSet,
    fleet: &[tppguard_verifier::policy::VerifiedAttestation],
    at: i64,
) {
    // Every GPU of the fleet on a shipment of its node's licence, to its node's site, in
    // shipments of at most 4,096 devices (the format's limit).
    let verdict = evaluate(lics, &[], rules, fleet, at);
    let mut by_place: std::collections::BTreeMap<(String, String), Vec<ShippedDevice>> =
        std::collections::BTreeMap::new();
    for n in &verdict.nodes {
        let (Some(licence), Some(site)) = (n.licence.clone(), n.site.as_deref()) else {
            continue;
        };
        let devices = by_place.entry((licence, site.to_owned())).or_default();
        devices.extend(n.gpus.iter().map(|g| ShippedDevice {
            uuid: g.uuid.clone(),
            serial: g.serial.clone(),
            hardware_id: None,
            model: None,
        }));
    }
    let mut shipments = Vec::new();
    for ((licence, site), devices) in by_place {
        for (k, chunk) in devices.chunks(4096).enumerate() {
            shipments.push(VerifiedShipment {
                id: format!("SHP-{licence}-{site}-{k}"),
                licence: licence.clone(),
                vendor: "CN=bench vendor".to_owned(),
                site: site.clone(),
                country: "DE".parse().expect("a country"),
                delivered_at: at - 86_400,
                devices: chunk.to_vec(),
                token_sha256: format!("{:064x}", shipments.len()),
            });
        }
    }
    let shipped: usize = shipments.iter().map(|s| s.devices.len()).sum();
    let mut without = Vec::with_capacity(ROUNDS);
    let mut with = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let start = Instant::now();
        let v = black_box(evaluate(lics, &[], rules, fleet, at));
        without.push(start.elapsed());
        drop(v);
        let start = Instant::now();
        let v = black_box(evaluate(lics, &shipments, rules, fleet, at));
        with.push(start.elapsed());
        assert!(
            !v.findings.iter().any(|f| f.code == "diverted_device"),
            "every shipped GPU is where it was shipped"
        );
        drop(v);
    }
    without.sort();
    with.sort();
    let (a, w) = (without[ROUNDS / 2], with[ROUNDS / 2]);
    println!(
        "shipments: {} shipments of {shipped} GPUs: evaluate with them median {w:.3?} against \
         without {a:.3?}: ratio {:.2}",
        shipments.len(),
        w.as_secs_f64() / a.as_secs_f64()
    );

    // (g) A batch's leases: the plan once per verdict, then one lease per arrival.
    let index = verdict.finding_index();
    let node = verdict.nodes.last().map(|n| n.node).expect("a node");
    let mut plans = Vec::with_capacity(ROUNDS);
    let mut one = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let start = Instant::now();
        let plan = black_box(tppguard_verifier::lease::LeasePlan::new(&verdict, &index));
        plans.push(start.elapsed());
        let start = Instant::now();
        let lease = black_box(plan.lease(node, at, "tppguard-verifier:bench"));
        one.push(start.elapsed());
        assert!(lease.is_some_and(|l| l.gpus.len() == 8));
    }
    plans.sort();
    one.sort();
    println!(
        "leases on the same verdict: plan (every licence's cap walk) median {:.3?}, one node's \
         lease {:.3?}; the evaluation a batch makes anyway {a:.3?}: plan / evaluation {:.3}",
        plans[ROUNDS / 2],
        one[ROUNDS / 2],
        plans[ROUNDS / 2].as_secs_f64() / a.as_secs_f64()
    );
}

/// A verifier PKI, a node certificate, and one signed attestation.
struct Setup {
    _dir: tempfile::TempDir,
    trust: TrustAnchors,
    token: String,
    signing_input: Vec<u8>,
    signature: Vec<u8>,
    leaf_key: jws::VerifyingKey,
    signing_key: SigningKey,
    leaf_raw: Vec<u8>,
    nonce: Nonce,
    now: i64,
    gpus: usize,
    x5c_len: usize,
    x5c: Vec<Vec<u8>>,
    payload: Vec<u8>,
}

impl Setup {
    fn new() -> Self {
        let now = i64::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs(),
        )
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let pki_dir = dir.path().join("pki");
        let report = pki::init(&pki_dir, now).unwrap();
        let trust = TrustAnchors::from_trust_toml(&report.trust).unwrap();

        // The node: an Ed25519 key and a CSR, as `tppguard-agent init` makes them.
        let node_key = KeyPair::generate_for(&PKCS_ED25519).unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, "node-0000000");
        let csr = params.serialize_request(&node_key).unwrap().pem().unwrap();
        let csr_path = dir.path().join("node.csr");
        std::fs::write(&csr_path, csr).unwrap();
        let chain_path = dir.path().join("node-chain.pem");
        pki::issue_node(&report.operator, &csr_path, &chain_path, 30, now).unwrap();
        let x5c: Vec<Vec<u8>> = certs_from_pem(&std::fs::read(&chain_path).unwrap())
            .unwrap()
            .into_iter()
            .map(|c| c.to_vec())
            .collect();

        // A realistic 8-GPU H100 claim set (the policy benchmark's), answering our nonce.
        let (_, fleet, _, _) = bench_support::synthetic_fleet(1, 8, 1);
        let mut claims: AttestationClaims = fleet[0].claims().clone();
        claims.iss = "node-0000000".to_owned();
        claims.iat = now;
        let nonce = Nonce::from_bytes(&[0x5a; 32]).unwrap();
        claims.eat_nonce = nonce.clone();
        let payload = claims.to_json().unwrap();

        let signing = SigningKey::from_pkcs8(Alg::EdDSA, &node_key.serialize_der()).unwrap();
        let header = Header::new(Alg::EdDSA)
            .with_typ(ATTESTATION_TYP)
            .with_x5c(x5c.clone());
        let payload_bytes = payload.clone();
        let token = jws::sign(&header, &payload, &signing).unwrap();

        let (input, sig) = token.rsplit_once('.').unwrap();
        let signature = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(sig)
            .unwrap();
        let leaf_key = signing.verifying_key();
        Self {
            _dir: dir,
            trust,
            signing_input: input.as_bytes().to_vec(),
            signature,
            leaf_raw: leaf_key.raw().to_vec(),
            leaf_key,
            signing_key: signing,
            token,
            nonce,
            now,
            gpus: claims.submods.len(),
            x5c_len: x5c.len(),
            x5c,
            payload: payload_bytes,
        }
    }
}

/// The setup's node at the hardware tier: its claims with each GPU's evidence, signed again.
struct Hardware {
    trust: TrustAnchors,
    token: String,
    /// Per GPU: the leaf's public key (uncompressed point), the signed bytes, the signature.
    reports: Vec<(Vec<u8>, Vec<u8>, Vec<u8>)>,
}

impl Hardware {
    fn new(setup: &Setup) -> Self {
        let root = TestRoot::new("GH100");
        let trust = setup
            .trust
            .clone()
            .with_device_roots(&[root.root_der().into()])
            .unwrap();
        let mut claims = AttestationClaims::from_json(&setup.payload).unwrap();
        let node = NodeId::from_spki_der(
            x509_parser::parse_x509_certificate(&setup.x5c[0])
                .unwrap()
                .1
                .public_key()
                .raw,
        );
        let mut reports = Vec::new();
        for gpu in claims.submods.values_mut() {
            let device = root.device(FwidForm::NvidiaLegacy);
            let nonce = gpu_nonce(&setup.nonce, &node, gpu.index);
            let (driver, vbios) = ("550.90.07", gpu.vbios_version.clone().unwrap());
            let report = device.sign_report(nonce, driver, &vbios);
            let parsed = Report::parse(&report).unwrap();
            let leaf = &device.chain_der()[0];
            let key = x509_parser::parse_x509_certificate(leaf)
                .unwrap()
                .1
                .public_key()
                .subject_public_key
                .data
                .to_vec();
            reports.push((
                key,
                parsed.signed_bytes().to_vec(),
                parsed.signature().to_vec(),
            ));
            gpu.gpu_evidence = Some(GpuEvidence::from_parts(
                "HOPPER",
                device.chain_pem().as_bytes(),
                &report,
            ));
        }
        let header = jws::decode(&setup.token).unwrap().header().clone();
        let token = jws::sign(&header, &claims.to_json().unwrap(), &setup.signing_key).unwrap();
        Self {
            trust,
            token,
            reports,
        }
    }
}

/// Operations per second of `op` on this thread: the median of [`ROUNDS`] rounds of
/// [`ROUND`] each, after a short warm-up.
fn median_rate(mut op: impl FnMut()) -> f64 {
    let warm = Instant::now();
    while warm.elapsed() < Duration::from_millis(200) {
        op();
    }
    let mut rates: Vec<f64> = (0..ROUNDS)
        .map(|_| {
            let start = Instant::now();
            let mut n = 0u32;
            while start.elapsed() < ROUND {
                for _ in 0..16 {
                    op();
                }
                n += 16;
            }
            f64::from(n) / start.elapsed().as_secs_f64()
        })
        .collect();
    rates.sort_by(f64::total_cmp);
    rates[ROUNDS / 2]
}
