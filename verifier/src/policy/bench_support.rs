//! Synthetic inputs for benchmarks of [`evaluate`](super::evaluate), **for benchmarks
//! only**: hidden from the docs, not part of the supported API, and never used by the
//! verifier itself. The inputs go through the real parsers (claims JSON, licence TOML); only
//! the signature checks are skipped, which is why this lives inside the crate.

use serde_json::{Value, json};
use tppguard_proto::claims::AttestationClaims;
use tppguard_proto::identity::NodeId;
use tppguard_proto::licence::Licence;
use tppguard_proto::ruleset::{RuleSet, shipped_rule_set};

use super::{VerifiedAttestation, VerifiedLicence};

/// The evaluation instant of the synthetic fleet (2026-09-21), inside every licence's
/// validity; every attestation is made one minute before it.
pub const AT: i64 = 1_790_000_000;

/// A compliant synthetic fleet: `licences` licences (DE, one site each, caps sized to fit),
/// `nodes` nodes of `gpus_per_node` H100 SXM5 GPUs with distinct identities, node `n` at the
/// site of licence `n % licences` (no site when `licences` is 0), the `us-eccn-3a090` rule
/// set and the evaluation instant: `(licences, attestations, rule_set, at)`.
#[expect(
    clippy::expect_used,
    reason = "benchmark-only: the inputs are fixed and valid, so a parse failure is a bug here"
)]
pub fn synthetic_fleet(
    nodes: usize,
    gpus_per_node: usize,
    licences: usize,
) -> (Vec<VerifiedLicence>, Vec<VerifiedAttestation>, RuleSet, i64) {
    let rule_set = shipped_rule_set("us-eccn-3a090").expect("shipped rule set");
    let per_licence = nodes
        .div_ceil(licences.max(1))
        .saturating_mul(gpus_per_node)
        .max(1);
    let max_devices = u32::try_from(per_licence).unwrap_or(u32::MAX);
    // 16,000 TPP a device is above the H100's 15,831.2.
    let max_tpp = u64::from(max_devices).saturating_mul(16_000);
    let lics = (0..licences)
        .map(|i| {
            let text = licence_toml(i, max_devices, max_tpp);
            let licence = Licence::from_toml_str(&text).expect("synthetic licence");
            VerifiedLicence::new(licence, "CN=Synthetic licence authority".to_owned())
        })
        .collect();
    let attestations = (0..nodes)
        .map(|n| {
            let node = format!("node-{n:07}");
            let site = n.checked_rem(licences).map(|i| format!("site-{i}"));
            let text = claims_json(&node, n, site.as_deref(), gpus_per_node);
            let claims = AttestationClaims::from_json(text.as_bytes()).expect("synthetic claims");
            let mut hash = [0u8; 32];
            for (h, b) in hash.iter_mut().zip(n.to_be_bytes()) {
                *h = b;
            }
            // The operator CA certified the site the node claims.
            let certified = site
                .as_deref()
                .and_then(|s| tppguard_proto::site::SiteId::parse(s).ok());
            VerifiedAttestation::from_stored(
                claims,
                NodeId::from_spki_der(node.as_bytes()),
                node,
                certified,
                None,
                hash,
            )
        })
        .collect();
    (lics, attestations, rule_set, AT)
}

/// The TOML of synthetic licence `i` (id `SYN-DE-{i:04}`, site `site-{i}`, Germany): H100 SXM5
/// under `us-eccn-3a090`, at most `max_devices` devices and `max_tpp` TPP.
pub fn licence_toml(i: usize, max_devices: u32, max_tpp: u64) -> String {
    format!(
        r#"id = "SYN-DE-{i:04}"
issuer = "Synthetic licence authority (benchmark)"
destination_country = "DE"
end_user = "Synthetic Cloud GmbH"
end_use = "Benchmark"
eccns = ["3A090.a"]
models = ["H100 SXM5 80GB"]
max_devices = {max_devices}
max_aggregate_tpp = "{max_tpp}"
max_tpp_per_device = "15831.2"
min_evidence_tier = "declared"
max_attestation_age = "24h"
valid_from = 2026-01-01T00:00:00Z
valid_until = 2028-01-01T00:00:00Z
rule_set = "us-eccn-3a090"

[licensee]
name = "Synthetic Cloud GmbH"
headquarters_country = "DE"
ultimate_parent_country = "DE"

[[sites]]
id = "site-{i}"
name = "Synthetic site {i}"
country = "DE"
"#
    )
}

/// A valid claim set for one node of H100 SXM5 GPUs.
fn claims_json(node: &str, n: usize, site: Option<&str>, gpus: usize) -> String {
    let submods: serde_json::Map<String, Value> = (0..gpus)
        .map(|g| {
            (
                format!("gpu{g}"),
                json!({
                    "index": g,
                    "status": "ok",
                    "uuid": format!("GPU-{n:08x}-{g:04x}-4000-8000-000000000000"),
                    "serial": format!("165{n:07}{g:03}"),
                    "name": "NVIDIA H100 80GB HBM3",
                    "brand": "NVIDIA",
                    "board_part_number": null,
                    "pci": {
                        "bus_id": format!("00000000:{:02x}:00.0", g.saturating_add(0x18) % 256),
                        "vendor_id": "0x10de",
                        "device_id": "0x2330",
                        "subsystem_id": null
                    },
                    "architecture": "Hopper",
                    "cuda_compute_capability": "9.0",
                    "multiprocessor_count": 132,
                    "memory_total_bytes": 85_899_345_920_u64,
                    "max_sm_clock_mhz": 1980,
                    "max_memory_clock_mhz": 2619,
                    "power_limit_mw": 700_000,
                    "vbios_version": "96.00.9F.00.01",
                    "mig": null,
                    "absent": {},
                    "classification": {
                        "tpp": 15831.2,
                        "tpp_basis": "fp8",
                        "performance_density": null,
                        "eccn": "3A090.a"
                    }
                }),
            )
        })
        .collect();
    let mut claims = json!({
        "iss": node,
        "iat": AT.saturating_sub(60),
        "eat_nonce": "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
        "eat_profile": "tag:tppguard.dev,2026:attestation/v1",
        "submods": submods,
        "tppguard.host": {
            "hostname": node,
            "machine_id": null,
            "os": "Linux",
            "kernel": "6.8.0",
            "cpu_arch": "x86_64",
            "cpu_model": null,
            "cpu_count": 224,
            "physical_cores": 112,
            "memory_bytes": 2_199_023_255_552_u64
        },
        "tppguard.evidence_tier": "declared",
        "tppguard.driver": {
            "driver_version": "550.90.07",
            "nvml_version": "12.550.90.07",
            "cuda_driver_version": "12.4",
            "confidential_computing": null,
            "absent": {}
        }
    });
    if let (Some(site), Some(map)) = (site, claims.as_object_mut()) {
        map.insert("tppguard.site".to_owned(), json!(site));
    }
    claims.to_string()
}
