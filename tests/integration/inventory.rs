//! `tppguard-agent inventory` run as a binary against the fake NVML library, for every fixture.
//!
//! Two kinds of check: a generic one that reads each fixture independently of the agent and
//! asserts that every field the agent prints is exactly what the fixture serves (or absent
//! with the reason the fixture forces), and exact expectations for the cases users meet.

use std::process::Output;

use serde_json::Value;

use crate::support::{FakeDriver, bin, fixtures_dir, old_driver_fake_nvml_lib};

fn run(args: &[&str]) -> Output {
    bin("tppguard-agent")
        .args(args)
        .output()
        .expect("agent runs")
}

fn json_inventory(fixture: &str) -> (Output, Value) {
    let out = run(&["inventory", "--simulate", fixture, "--json"]);
    let json = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{fixture}: stdout is not JSON ({e}); stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out, json)
}

fn fixture_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(fixtures_dir("nvml"))
        .expect("fixtures dir")
        .filter_map(|e| {
            let path = e.expect("entry").path();
            (path.extension()? == "json").then(|| path.file_stem()?.to_str().map(str::to_owned))?
        })
        .collect();
    names.sort();
    names
}

fn load_fixture(name: &str) -> Value {
    let text = std::fs::read_to_string(fixtures_dir("nvml").join(format!("{name}.json")))
        .expect("fixture readable");
    serde_json::from_str(&text).expect("fixture is JSON")
}

/// The absence reason the agent must give for an NVML error name.
fn reason_for(nvml_error: &str) -> &'static str {
    match nvml_error {
        "NOT_SUPPORTED" => "not_supported",
        "NO_PERMISSION" => "no_permission",
        "FUNCTION_NOT_FOUND" => "driver_lacks_function",
        "GPU_IS_LOST" => "gpu_lost",
        _ => "error",
    }
}

/// Checks one inventory field against what the fixture serves for it.
struct FieldCheck<'a> {
    fixture: &'a str,
    gpu: &'a Value,
    device: &'a Value,
}

impl FieldCheck<'_> {
    /// `field` in the agent's output must equal `expected`, or, when the fixture has no value,
    /// be null with the absence reason the fixture implies.
    fn field(&self, field: &str, symbol: &str, expected: Option<Value>) {
        let ctx = format!("{} GPU {} {field}", self.fixture, self.gpu["index"]);
        let got = &self.gpu[field];
        let absent = &self.gpu["absent"][field];
        let forced = self.device["errors"][symbol].as_str();
        if self.device["lost"] == Value::Bool(true) {
            assert_eq!(*got, Value::Null, "{ctx}: a lost GPU gives nothing");
            assert_eq!(absent["reason"], "gpu_lost", "{ctx}");
        } else if let Some(err) = forced {
            assert_eq!(*got, Value::Null, "{ctx}: forced {err}");
            assert_eq!(absent["reason"], reason_for(err), "{ctx}");
        } else if let Some(value) = expected {
            assert_eq!(*got, value, "{ctx}");
            assert_eq!(*absent, Value::Null, "{ctx}: present, so not absent");
        } else {
            assert_eq!(*got, Value::Null, "{ctx}: the fixture has no value");
            assert_eq!(absent["reason"], "not_supported", "{ctx}");
        }
    }
}

fn architecture_name(nvml: &str) -> String {
    let mut chars = nvml.chars();
    match chars.next() {
        Some(first) => first.to_string() + &chars.as_str().to_lowercase(),
        None => String::new(),
    }
}

#[test]
fn every_fixture_is_reported_exactly_as_served() {
    let names = fixture_names();
    assert!(
        names.len() >= 20,
        "expected the full fixture set, found {names:?}"
    );
    for name in &names {
        let fixture = load_fixture(name);
        if let Some(err) = fixture["init_error"].as_str() {
            let out = run(&["inventory", "--simulate", name, "--json"]);
            assert_eq!(
                out.status.code(),
                Some(4),
                "{name}: init failure ({err}) exits 4"
            );
            assert!(out.stdout.is_empty(), "{name}: nothing on stdout");
            continue;
        }
        let (out, report) = json_inventory(name);
        let devices = fixture["devices"].as_array().expect("devices");
        let gpus = report["gpus"].as_array().expect("gpus");
        assert_eq!(gpus.len(), devices.len(), "{name}: GPU count");
        assert_eq!(report["schema"], "tppguard-inventory/v1");
        assert_eq!(report["source"]["simulated"], true, "{name}");
        assert_eq!(report["source"]["fixture"], name.as_str());
        assert_eq!(report["node"]["gpu_count"], devices.len());
        assert_eq!(
            report["driver"]["driver_version"], fixture["driver_version"],
            "{name}"
        );
        let any_lost = devices.iter().any(|d| d["lost"] == Value::Bool(true));
        assert_eq!(
            out.status.code(),
            Some(if any_lost { 1 } else { 0 }),
            "{name}: exit code"
        );

        for (i, (gpu, device)) in gpus.iter().zip(devices).enumerate() {
            assert_eq!(gpu["index"], i, "{name}");
            let check = FieldCheck {
                fixture: name,
                gpu,
                device,
            };
            let s = |k: &str| device.get(k).cloned();
            check.field("name", "nvmlDeviceGetName", s("name"));
            check.field("uuid", "nvmlDeviceGetUUID", s("uuid"));
            check.field("serial", "nvmlDeviceGetSerial", s("serial"));
            check.field(
                "board_part_number",
                "nvmlDeviceGetBoardPartNumber",
                s("board_part_number"),
            );
            check.field(
                "vbios_version",
                "nvmlDeviceGetVbiosVersion",
                s("vbios_version"),
            );
            check.field(
                "architecture",
                "nvmlDeviceGetArchitecture",
                device["architecture"]
                    .as_str()
                    .map(|a| Value::from(architecture_name(a))),
            );
            check.field(
                "cuda_compute_capability",
                "nvmlDeviceGetCudaComputeCapability",
                device["cuda_compute_capability"]
                    .as_array()
                    .map(|cc| Value::from(format!("{}.{}", cc[0], cc[1]))),
            );
            check.field(
                "multiprocessor_count",
                "nvmlDeviceGetAttributes_v2",
                s("multiprocessor_count"),
            );
            check.field(
                "memory_total_bytes",
                "nvmlDeviceGetMemoryInfo_v2",
                device["memory"].get("total_bytes").cloned(),
            );
            check.field(
                "max_sm_clock_mhz",
                "nvmlDeviceGetMaxClockInfo",
                device["max_clocks_mhz"].get("sm").cloned(),
            );
            check.field(
                "max_memory_clock_mhz",
                "nvmlDeviceGetMaxClockInfo",
                device["max_clocks_mhz"].get("memory").cloned(),
            );
            check.field(
                "power_limit_mw",
                "nvmlDeviceGetPowerManagementLimit",
                s("power_limit_mw"),
            );

            if device["lost"] == Value::Bool(true) {
                assert_eq!(gpu["status"], "lost", "{name} GPU {i}");
                continue;
            }
            assert_eq!(gpu["status"], "ok", "{name} GPU {i}");
            match device.get("pci") {
                Some(pci) => {
                    assert_eq!(gpu["pci"]["bus_id"], pci["bus_id"], "{name} GPU {i}");
                    if let Some(id) = pci["pci_device_id"].as_str() {
                        let combined =
                            u32::from_str_radix(id.trim_start_matches("0x"), 16).unwrap();
                        assert_eq!(
                            gpu["pci"]["device_id"],
                            format!("0x{:04x}", combined >> 16),
                            "{name} GPU {i}"
                        );
                        assert_eq!(
                            gpu["pci"]["vendor_id"],
                            format!("0x{:04x}", combined & 0xffff),
                            "{name} GPU {i}"
                        );
                    }
                }
                None => assert_eq!(
                    gpu["absent"]["pci"]["reason"], "not_supported",
                    "{name} GPU {i}"
                ),
            }
            match device.get("mig_mode") {
                Some(mode) => {
                    assert_eq!(
                        gpu["mig"]["current_enabled"], mode["current"],
                        "{name} GPU {i}"
                    );
                    assert_eq!(
                        gpu["mig"]["pending_enabled"], mode["pending"],
                        "{name} GPU {i}"
                    );
                    let served = device["mig_devices"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default();
                    let reported = gpu["mig"]["instances"].as_array().expect("instances");
                    assert_eq!(reported.len(), served.len(), "{name} GPU {i} MIG instances");
                    for (r, m) in reported.iter().zip(&served) {
                        assert_eq!(r["uuid"], m["uuid"], "{name} GPU {i}");
                        assert_eq!(r["name"], m["name"], "{name} GPU {i}");
                        assert_eq!(r["gpu_instance_id"], m["gpu_instance_id"], "{name} GPU {i}");
                        assert_eq!(
                            r["compute_instance_id"], m["compute_instance_id"],
                            "{name} GPU {i}"
                        );
                        assert_eq!(
                            r["multiprocessor_count"], m["multiprocessor_count"],
                            "{name} GPU {i}"
                        );
                        assert_eq!(
                            r["memory_total_bytes"], m["memory"]["total_bytes"],
                            "{name} GPU {i}"
                        );
                    }
                }
                None => {
                    assert_eq!(gpu["mig"], Value::Null, "{name} GPU {i}");
                    assert_eq!(
                        gpu["absent"]["mig"]["reason"], "not_supported",
                        "{name} GPU {i}"
                    );
                }
            }
        }
    }
}

#[test]
fn default_simulation_is_the_dgx_h100_and_says_so() {
    let out = run(&["inventory", "--simulate"]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.starts_with("SIMULATED NODE: fixture dgx-h100"),
        "{text}"
    );
    assert!(text.contains("No real GPU was read."), "{text}");
    assert_eq!(
        text.matches("H100 SXM5 80GB (by pci_device_id)  15831.2")
            .count(),
        8,
        "{text}"
    );
    assert!(
        text.contains("Node: 8 GPU(s), total TPP 126649.6 = 8.00 H100-equivalents"),
        "{text}"
    );
    assert!(text.contains("us-eccn-3a090 [in force]: 4A090.a"), "{text}");
    assert!(
        text.contains("us-gain-ai-act-s3150 [bill (not law)]: covered"),
        "{text}"
    );
}

#[test]
fn dgx_h100_json_has_tpp_eccn_and_node_totals() {
    let (out, report) = json_inventory("dgx-h100");
    assert_eq!(out.status.code(), Some(0));
    let gpus = report["gpus"].as_array().unwrap();
    assert_eq!(gpus.len(), 8);
    for g in gpus {
        let c = &g["classification"];
        assert_eq!(c["spec"]["model"], "H100 SXM5 80GB");
        assert_eq!(c["spec"]["matched_by"], "pci_device_id");
        assert_eq!(c["tpp"], 15831.2);
        assert_eq!(c["tpp_basis"], "fp8");
        assert_eq!(c["eccn"], "3A090.a");
        assert_eq!(c["gain_ai"], "covered");
        assert_eq!(c["h100_equivalents"], 1.0);
        assert_eq!(g["serial"].as_str().unwrap().len(), 16);
    }
    assert_eq!(report["node"]["tpp"], 126649.6);
    assert_eq!(report["node"]["h100_equivalents"], 8.0);
    assert_eq!(report["node"]["eccn"], "4A090.a");
    assert_eq!(report["driver"]["driver_version"], "550.90.07");
    assert_eq!(report["driver"]["confidential_computing"]["enabled"], false);
    assert!(report["host"]["cpu_count"].as_u64().unwrap() >= 1);
}

#[test]
fn gtx_1660_ti_capture_is_classified_by_its_pci_id_as_a_gtx_1660() {
    let (out, report) = json_inventory("capture-gtx-1660-ti");
    assert_eq!(out.status.code(), Some(0));
    let g = &report["gpus"][0];
    assert_eq!(g["name"], "Graphics Device");
    assert_eq!(g["pci"]["device_id"], "0x2184");
    assert_eq!(g["classification"]["spec"]["model"], "GeForce GTX 1660");
    assert_eq!(g["classification"]["spec"]["matched_by"], "pci_device_id");
    assert_eq!(g["classification"]["eccn"], "not_3a090");
}

#[test]
fn a_part_with_unpublished_tensor_rates_is_not_guessed() {
    // The A10G is in the table but its tensor rates are unpublished: TPP stays unknown.
    let (_, report) = json_inventory("capture-a10g");
    let c = &report["gpus"][0]["classification"];
    assert_eq!(c["tpp"], Value::Null, "{c}");
    assert_eq!(report["node"]["gpus_with_tpp"], 0);
}

#[test]
fn lost_gpu_is_reported_lost_and_exits_1() {
    let (out, report) = json_inventory("fault-gpu-lost");
    assert_eq!(out.status.code(), Some(1));
    let gpus = report["gpus"].as_array().unwrap();
    assert_eq!(gpus.len(), 8);
    let lost: Vec<_> = gpus.iter().filter(|g| g["status"] == "lost").collect();
    assert_eq!(lost.len(), 1);
    assert_eq!(lost[0]["index"], 3);
    assert_eq!(lost[0]["absent"]["uuid"]["reason"], "gpu_lost");
    // Its TPP cannot be known from NVML, so the node total counts the 7 others; it stays in
    // the node's view as indeterminate, which decides nothing where the others already reach
    // the most severe outcome (4A090.a) and everything where they do not.
    assert_eq!(report["node"]["gpus_with_tpp"], 7);
    assert_eq!(lost[0]["classification"]["eccn"], "indeterminate");
    let node_rules = report["node"]["rule_sets"].as_array().unwrap();
    let eccn = node_rules
        .iter()
        .find(|r| r["rule_set"] == "us-eccn-3a090")
        .unwrap();
    assert_eq!(eccn["outcome"], "4A090.a");
    assert_eq!(eccn["devices"], 8);
    let china = node_rules
        .iter()
        .find(|r| r["rule_set"] == "us-china-review-2026-01")
        .unwrap();
    assert_eq!(china["outcome"], "indeterminate");
    assert_eq!(
        china["device"], 3,
        "the node names the lost GPU by its NVML index"
    );
    let text =
        String::from_utf8(run(&["inventory", "--simulate", "fault-gpu-lost"]).stdout).unwrap();
    assert!(text.contains("3 (LOST)"), "{text}");
}

#[test]
fn partial_failures_are_absent_with_their_reasons() {
    let (out, report) = json_inventory("fault-partial");
    assert_eq!(out.status.code(), Some(0));
    let g = &report["gpus"][1];
    assert_eq!(g["absent"]["serial"]["reason"], "no_permission");
    assert_eq!(
        g["absent"]["architecture"]["reason"],
        "driver_lacks_function"
    );
    assert_eq!(g["absent"]["power_limit_mw"]["reason"], "not_supported");
    assert_eq!(g["uuid"], report["gpus"][1]["uuid"]);
    assert_eq!(
        g["classification"]["eccn"], "3A090.a",
        "identity via PCI id still classifies"
    );
    let text =
        String::from_utf8(run(&["inventory", "--simulate", "fault-partial"]).stdout).unwrap();
    assert!(text.contains("GPU 1: serial: no_permission"), "{text}");
}

#[test]
fn init_failure_exits_4_with_a_sentence() {
    let out = run(&["inventory", "--simulate", "fault-init-failure"]);
    assert_eq!(out.status.code(), Some(4));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("kernel module is not loaded"), "{err}");
    assert!(out.stdout.is_empty());
}

#[test]
fn zero_devices_is_an_empty_inventory() {
    let (out, report) = json_inventory("fault-no-devices");
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(report["gpus"].as_array().unwrap().len(), 0);
    assert_eq!(report["node"]["tpp"], 0.0);
}

#[test]
fn mig_instances_are_listed() {
    let (_, report) = json_inventory("mig-h100");
    let mig = &report["gpus"][0]["mig"];
    assert_eq!(mig["current_enabled"], true);
    assert_eq!(mig["instances"].as_array().unwrap().len(), 7);
    assert!(
        mig["instances"][0]["name"]
            .as_str()
            .unwrap()
            .ends_with("MIG 1g.10gb")
    );
    assert_eq!(
        report["gpus"][1]["mig"]["instances"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
}

#[test]
fn no_driver_exits_3_and_says_what_to_do() {
    let out = run(&["inventory", "--nvml-lib", "/nonexistent/libnvidia-ml.so.1"]);
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.starts_with("tppguard-agent: no NVIDIA driver found"),
        "{err}"
    );
    assert!(err.contains("install the NVIDIA driver"), "{err}");
    assert!(err.contains("--simulate"), "{err}");
    assert_eq!(err.lines().count(), 1, "one sentence: {err}");
}

#[test]
fn demo_falls_back_to_the_simulated_node_when_no_driver_is_installed() {
    // The test machines have no NVIDIA driver; on one that has, demo reads the real GPUs.
    if std::path::Path::new("/dev/nvidiactl").exists() {
        return;
    }
    let out = run(&["demo", "--json"]);
    assert_eq!(out.status.code(), Some(0));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("no NVIDIA driver on this machine"), "{err}");
    assert!(err.contains("SIMULATED"), "{err}");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["source"]["simulated"], true);
    assert_eq!(report["gpus"].as_array().unwrap().len(), 8);
}

#[test]
fn simulate_list_names_every_bundled_fixture() {
    let out = run(&["inventory", "--simulate", "list"]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    for name in fixture_names() {
        assert!(
            text.lines().any(|l| l.starts_with(&format!("{name} "))),
            "{name} missing: {text}"
        );
    }
    assert!(text.contains("(default)"));
}

#[test]
fn unknown_fixture_is_a_usage_error() {
    let out = run(&["inventory", "--simulate", "dgx-h999"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("no bundled fixture is named \"dgx-h999\""),
        "{err}"
    );
    assert!(err.contains("--simulate list"), "{err}");
}

#[test]
fn a_broken_fixture_file_fails_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.json");
    std::fs::write(
        &path,
        "{\"schema\": \"tppguard-fake-nvml/v1\", \"devices\": [",
    )
    .unwrap();
    let out = run(&["inventory", "--simulate", path.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(4),
        "NVML init fails on a bad fixture"
    );
    assert!(!String::from_utf8(out.stderr).unwrap().is_empty());
}

#[test]
fn nvml_lib_with_the_fixture_environment_variable() {
    // The other way to point the fake at a fixture: `--nvml-lib` plus the variable.
    let driver = FakeDriver::with_fixture_file("fault-no-devices");
    let out = bin("tppguard-agent")
        .args(["inventory", "--json", "--nvml-lib"])
        .arg(driver.lib_path())
        .env(
            "TPPGUARD_FAKE_NVML_FIXTURE",
            fixtures_dir("nvml").join("hgx-h20.json"),
        )
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        report["source"]["simulated"], true,
        "the fake named with --nvml-lib is as simulated as the bundled one"
    );
    assert_eq!(report["source"]["fixture"], Value::Null, "{report}");
    let gpus = report["gpus"].as_array().unwrap();
    assert_eq!(gpus.len(), 8, "the variable wins over fixture.json");
    assert_eq!(gpus[0]["classification"]["spec"]["model"], "H20");
    assert_eq!(gpus[0]["classification"]["eccn"], "not_3a090");
    assert_eq!(gpus[0]["classification"]["gain_ai"], "covered");
}

#[test]
fn functions_an_old_driver_does_not_export_are_absent_as_symbol_missing() {
    let fixture = std::fs::read_to_string(fixtures_dir("nvml").join("dgx-h100.json")).unwrap();
    let driver = FakeDriver::with_library(&old_driver_fake_nvml_lib(), &fixture);
    let out = bin("tppguard-agent")
        .args(["inventory", "--json", "--nvml-lib"])
        .arg(driver.lib_path())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["driver"]["confidential_computing"], Value::Null);
    assert_eq!(
        report["driver"]["absent"]["confidential_computing"]["reason"],
        "symbol_missing"
    );
    for gpu in report["gpus"].as_array().unwrap() {
        assert_eq!(gpu["architecture"], Value::Null);
        assert_eq!(gpu["absent"]["architecture"]["reason"], "symbol_missing");
        assert_eq!(gpu["status"], "ok", "a missing function is not a lost GPU");
        assert_eq!(
            gpu["classification"]["eccn"], "3A090.a",
            "identity still classifies"
        );
    }
}

#[test]
fn the_fake_named_with_nvml_lib_is_labelled_simulated() {
    // However the fake is chosen (here: a copy named libnvidia-ml.so.1, as a driver installs
    // it, given with --nvml-lib), the agent reads tppguard's mark in the loaded library.
    let fixture = std::fs::read_to_string(fixtures_dir("nvml").join("dgx-h100.json")).unwrap();
    let driver = FakeDriver::with_fixture_json(&fixture);
    let as_driver = driver.dir.path().join("libnvidia-ml.so.1");
    std::fs::copy(driver.lib_path(), &as_driver).unwrap();
    let out = bin("tppguard-agent")
        .args(["inventory", "--nvml-lib"])
        .arg(&as_driver)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.starts_with(&format!(
            "SIMULATED NODE: the NVML library {} is tppguard's fake (tests/fake-nvml). \
             No real GPU was read.",
            as_driver.display()
        )),
        "{text}"
    );
    // The loader's own search finds it too (a fake installed where the driver goes).
    let out = bin("tppguard-agent")
        .args(["inventory", "--json"])
        .env("LD_LIBRARY_PATH", driver.dir.path())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["source"]["simulated"], true, "{report}");
    assert_eq!(report["source"]["library"], "libnvidia-ml.so.1");
}
