//! The fake-NVML fixtures: the committed files are the generator's output, and the real
//! `nvml-wrapper` reads back from the fake library exactly what each fixture says.

use std::fmt::Debug;

use nvml_wrapper::Nvml;
use nvml_wrapper::enum_wrappers::device::Clock;
use nvml_wrapper::error::NvmlError;
use serde_json::Value;

use crate::support::{FakeDriver, fixtures_dir, workspace_root};

/// NVML's error name for what nvml-wrapper returned.
fn error_name(e: &NvmlError) -> String {
    match e {
        NvmlError::Uninitialized => "UNINITIALIZED".into(),
        NvmlError::InvalidArg => "INVALID_ARGUMENT".into(),
        NvmlError::NotSupported => "NOT_SUPPORTED".into(),
        NvmlError::NoPermission => "NO_PERMISSION".into(),
        NvmlError::NotFound => "NOT_FOUND".into(),
        NvmlError::DriverNotLoaded => "DRIVER_NOT_LOADED".into(),
        NvmlError::FunctionNotFound => "FUNCTION_NOT_FOUND".into(),
        NvmlError::GpuLost => "GPU_IS_LOST".into(),
        NvmlError::Unknown => "UNKNOWN".into(),
        other => format!("{other:?}"),
    }
}

fn init(driver: &FakeDriver) -> Result<Nvml, NvmlError> {
    Nvml::builder()
        .lib_path(driver.lib_path().as_os_str())
        .init()
}

/// The names of every committed fixture, sorted.
fn fixture_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(fixtures_dir("nvml"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| p.file_stem().unwrap().to_str().unwrap().to_owned())
        .collect();
    names.sort();
    names
}

fn load(name: &str) -> Value {
    let path = fixtures_dir("nvml").join(format!("{name}.json"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Checks one answer against the fixture: the forced error if any, else the value, else
/// NOT_SUPPORTED for an absent field.
fn check<T: PartialEq + Debug>(
    at: &str,
    got: Result<T, NvmlError>,
    forced: Option<String>,
    want: Option<T>,
) {
    let got = got.map_err(|e| error_name(&e));
    let want = match (forced, want) {
        (Some(error), _) => Err(error),
        (None, Some(v)) => Ok(v),
        (None, None) => Err("NOT_SUPPORTED".to_owned()),
    };
    assert_eq!(got, want, "{at}");
}

fn string(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_owned)
}

fn uint(v: &Value, key: &str) -> Option<u64> {
    v.get(key).and_then(Value::as_u64)
}

fn u32_of(v: &Value, key: &str) -> Option<u32> {
    uint(v, key).map(|n| u32::try_from(n).unwrap())
}

fn hex(v: &Value, key: &str) -> Option<u32> {
    string(v, key).map(|s| u32::from_str_radix(s.trim_start_matches("0x"), 16).unwrap())
}

/// Memory as (total, reserved, used, free).
fn memory(v: &Value) -> Option<(u64, u64, u64, u64)> {
    let m = v.get("memory")?;
    let total = uint(m, "total_bytes").unwrap();
    let reserved = uint(m, "reserved_bytes").unwrap_or(0);
    let used = uint(m, "used_bytes").unwrap();
    Some((total, reserved, used, total - reserved - used))
}

const BRANDS: &[&str] = &[
    "UNKNOWN",
    "QUADRO",
    "TESLA",
    "NVS",
    "GRID",
    "GEFORCE",
    "TITAN",
    "NVIDIA_VAPPS",
    "NVIDIA_VPC",
    "NVIDIA_VCS",
    "NVIDIA_VWS",
    "NVIDIA_CLOUD_GAMING",
    "QUADRO_RTX",
    "NVIDIA_RTX",
    "NVIDIA",
    "GEFORCE_RTX",
    "TITAN_RTX",
];

fn brand_value(name: &str) -> u32 {
    u32::try_from(BRANDS.iter().position(|b| *b == name).unwrap()).unwrap()
}

fn architecture_value(name: &str) -> u32 {
    match name {
        "KEPLER" => 2,
        "MAXWELL" => 3,
        "PASCAL" => 4,
        "VOLTA" => 5,
        "TURING" => 6,
        "AMPERE" => 7,
        "ADA" => 8,
        "HOPPER" => 9,
        "BLACKWELL" => 10,
        other => panic!("architecture {other}"),
    }
}

/// `nvmlDeviceGetGpuInstanceId` / `nvmlDeviceGetComputeInstanceId`, which nvml-wrapper does
/// not wrap.
#[allow(unsafe_code)]
mod raw {
    use nvml_wrapper::error::{NvmlError, nvml_sym, nvml_try};
    use nvml_wrapper::{Device, Nvml};

    pub fn gpu_instance_id(nvml: &Nvml, device: &Device<'_>) -> Result<u32, NvmlError> {
        let sym = nvml_sym(nvml.lib().nvmlDeviceGetGpuInstanceId.as_ref())?;
        let mut id = 0;
        // SAFETY: the handle was given out by this `Nvml`'s library, which is still
        // initialised, and `id` is a valid `unsigned int` to write.
        nvml_try(unsafe { sym(device.handle(), &mut id) })?;
        Ok(id)
    }

    pub fn compute_instance_id(nvml: &Nvml, device: &Device<'_>) -> Result<u32, NvmlError> {
        let sym = nvml_sym(nvml.lib().nvmlDeviceGetComputeInstanceId.as_ref())?;
        let mut id = 0;
        // SAFETY: as in `gpu_instance_id`.
        nvml_try(unsafe { sym(device.handle(), &mut id) })?;
        Ok(id)
    }
}

/// Everything nvml-wrapper reads from one fixture's node.
fn verify(name: &str, fixture: &Value, nvml: &Nvml) {
    let system_forced = |symbol: &str| string(&fixture["errors"], symbol);
    check(
        &format!("{name}: driver version"),
        nvml.sys_driver_version(),
        system_forced("nvmlSystemGetDriverVersion"),
        string(fixture, "driver_version"),
    );
    check(
        &format!("{name}: NVML version"),
        nvml.sys_nvml_version(),
        system_forced("nvmlSystemGetNVMLVersion"),
        string(fixture, "nvml_version"),
    );
    check(
        &format!("{name}: CUDA driver version"),
        nvml.sys_cuda_driver_version(),
        system_forced("nvmlSystemGetCudaDriverVersion_v2"),
        fixture
            .get("cuda_driver_version")
            .and_then(Value::as_i64)
            .map(|v| i32::try_from(v).unwrap()),
    );
    let devices = fixture["devices"].as_array().unwrap();
    assert_eq!(
        nvml.device_count().unwrap(),
        u32::try_from(devices.len()).unwrap(),
        "{name}: device count"
    );

    for (index, d) in devices.iter().enumerate() {
        let at = format!("{name}: GPU {index}");
        let device = nvml.device_by_index(u32::try_from(index).unwrap()).unwrap();
        let forced = |symbol: &str| {
            if d.get("lost").and_then(Value::as_bool) == Some(true) {
                Some("GPU_IS_LOST".to_owned())
            } else {
                string(&d["errors"], symbol)
            }
        };
        check(
            &format!("{at} name"),
            device.name(),
            forced("nvmlDeviceGetName"),
            string(d, "name"),
        );
        check(
            &format!("{at} uuid"),
            device.uuid(),
            forced("nvmlDeviceGetUUID"),
            string(d, "uuid"),
        );
        check(
            &format!("{at} serial"),
            device.serial(),
            forced("nvmlDeviceGetSerial"),
            string(d, "serial"),
        );
        check(
            &format!("{at} board part number"),
            device.board_part_number(),
            forced("nvmlDeviceGetBoardPartNumber"),
            string(d, "board_part_number"),
        );
        check(
            &format!("{at} VBIOS"),
            device.vbios_version(),
            forced("nvmlDeviceGetVbiosVersion"),
            string(d, "vbios_version"),
        );
        check(
            &format!("{at} brand"),
            device.brand().map(|b| b.as_c()),
            forced("nvmlDeviceGetBrand"),
            string(d, "brand").map(|b| brand_value(&b)),
        );
        check(
            &format!("{at} architecture"),
            device.architecture().map(|a| a.as_c()),
            forced("nvmlDeviceGetArchitecture"),
            string(d, "architecture").map(|a| architecture_value(&a)),
        );
        check(
            &format!("{at} PCI"),
            device.pci_info().map(|p| {
                (
                    p.bus_id,
                    p.domain,
                    p.bus,
                    p.device,
                    p.pci_device_id,
                    p.pci_sub_system_id,
                )
            }),
            forced("nvmlDeviceGetPciInfo_v3"),
            d.get("pci").map(|p| {
                (
                    string(p, "bus_id").unwrap(),
                    u32_of(p, "domain").unwrap(),
                    u32_of(p, "bus").unwrap(),
                    u32_of(p, "device").unwrap(),
                    hex(p, "pci_device_id").unwrap_or(0),
                    Some(hex(p, "pci_subsystem_id").unwrap_or(0)),
                )
            }),
        );
        check(
            &format!("{at} compute capability"),
            device.cuda_compute_capability().map(|c| (c.major, c.minor)),
            forced("nvmlDeviceGetCudaComputeCapability"),
            d.get("cuda_compute_capability").map(|c| {
                let n = |i: usize| i32::try_from(c[i].as_i64().unwrap()).unwrap();
                (n(0), n(1))
            }),
        );
        check(
            &format!("{at} SMs"),
            device.attributes().map(|a| a.multiprocessor_count),
            forced("nvmlDeviceGetAttributes_v2"),
            u32_of(d, "multiprocessor_count"),
        );
        check(
            &format!("{at} memory"),
            device
                .memory_info()
                .map(|m| (m.total, m.reserved, m.used, m.free)),
            forced("nvmlDeviceGetMemoryInfo_v2"),
            memory(d),
        );
        let clocks = d.get("max_clocks_mhz");
        let clock = |key: &str| clocks.and_then(|c| u32_of(c, key));
        for (clock_type, key) in [
            (Clock::Graphics, "sm"),
            (Clock::SM, "sm"),
            (Clock::Memory, "memory"),
        ] {
            check(
                &format!("{at} max {clock_type:?} clock"),
                device.max_clock_info(clock_type),
                forced("nvmlDeviceGetMaxClockInfo"),
                clock(key),
            );
        }
        check(
            &format!("{at} power limit"),
            device.power_management_limit(),
            forced("nvmlDeviceGetPowerManagementLimit"),
            u32_of(d, "power_limit_mw"),
        );
        check(
            &format!("{at} MIG mode"),
            device.mig_mode().map(|m| (m.current, m.pending)),
            forced("nvmlDeviceGetMigMode"),
            d.get("mig_mode").map(|m| {
                let on = |k: &str| u32::from(m[k].as_bool().unwrap());
                (on("current"), on("pending"))
            }),
        );
        check(
            &format!("{at} is a MIG handle"),
            device.mig_is_mig_device_handle(),
            forced("nvmlDeviceIsMigDeviceHandle"),
            Some(false),
        );

        let migs = d
            .get("mig_devices")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let max_migs = u32_of(d, "max_mig_devices").or_else(|| {
            d.get("mig_mode")
                .map(|_| u32::try_from(migs.len()).unwrap())
        });
        check(
            &format!("{at} max MIG devices"),
            device.mig_device_count(),
            forced("nvmlDeviceGetMaxMigDeviceCount"),
            max_migs,
        );
        if forced("nvmlDeviceGetMigDeviceHandleByIndex").is_some() || d.get("mig_mode").is_none() {
            continue;
        }
        for (j, m) in migs.iter().enumerate() {
            let at = format!("{at} MIG {j}");
            let mig = device
                .mig_device_by_index(u32::try_from(j).unwrap())
                .unwrap();
            assert!(mig.mig_is_mig_device_handle().unwrap(), "{at}");
            let parent = mig.mig_parent_device().unwrap();
            assert_eq!(parent.uuid().ok(), device.uuid().ok(), "{at}: parent");
            check(&format!("{at} name"), mig.name(), None, string(m, "name"));
            check(&format!("{at} uuid"), mig.uuid(), None, string(m, "uuid"));
            check(
                &format!("{at} SMs"),
                mig.attributes().map(|a| a.multiprocessor_count),
                None,
                u32_of(m, "multiprocessor_count"),
            );
            check(
                &format!("{at} memory"),
                mig.memory_info()
                    .map(|x| (x.total, x.reserved, x.used, x.free)),
                None,
                memory(m),
            );
            check(
                &format!("{at} GPU instance"),
                raw::gpu_instance_id(nvml, &mig),
                None,
                u32_of(m, "gpu_instance_id"),
            );
            check(
                &format!("{at} compute instance"),
                raw::compute_instance_id(nvml, &mig),
                None,
                u32_of(m, "compute_instance_id"),
            );
            check(&format!("{at} serial"), mig.serial(), None, None);
        }
        let past_end = device.mig_device_by_index(u32::try_from(migs.len()).unwrap());
        assert_eq!(
            past_end.err().map(|e| error_name(&e)).as_deref(),
            Some("NOT_FOUND"),
            "{at}"
        );
        let gi = raw::gpu_instance_id(nvml, &device);
        assert_eq!(
            gi.err().map(|e| error_name(&e)).as_deref(),
            Some("NOT_SUPPORTED"),
            "{at}"
        );
    }

    if let Some(first) = devices.first().map(|_| nvml.device_by_index(0).unwrap()) {
        let cc = fixture.get("conf_compute");
        let flag = |k: &str| cc.and_then(|c| c.get(k)).and_then(Value::as_bool);
        let forced = system_forced("nvmlSystemGetConfComputeSettings");
        check(
            &format!("{name}: CC feature"),
            first.is_cc_enabled(),
            forced.clone(),
            flag("cc_feature"),
        );
        check(
            &format!("{name}: CC dev tools"),
            first.is_cc_dev_mode_enabled(),
            forced.clone(),
            flag("dev_tools_mode"),
        );
        check(
            &format!("{name}: CC multi-GPU"),
            first.is_multi_gpu_protected_pcie_enabled(),
            forced,
            flag("multi_gpu_mode"),
        );
        check(
            &format!("{name}: CC ready"),
            first.get_confidential_compute_state(),
            system_forced("nvmlSystemGetConfComputeGpusReadyState"),
            flag("gpus_ready"),
        );
    }
}

#[test]
fn committed_fixtures_are_the_generators_output() {
    let stale = tppguard_tests::stale(&workspace_root()).unwrap();
    assert!(
        stale.is_empty(),
        "stale fixtures (run `cargo run -p tppguard-tests --bin tppguard-fixtures -- generate`): {stale:?}"
    );
}

#[test]
fn the_fixture_set_is_complete() {
    let names = fixture_names();
    for want in [
        "dgx-h100",
        "hgx-h200",
        "hgx-h20",
        "dgx-a100",
        "l40s-x4",
        "dgx-b200",
        "rtx-4090d-x8",
        "mixed",
        "fault-init-failure",
        "fault-no-devices",
        "fault-partial",
        "fault-gpu-lost",
        "mig-h100",
        "capture-a100-sxm4-v12",
        "capture-gtx-1660-ti",
    ] {
        assert!(
            names.iter().any(|n| n == want),
            "{want} missing from {names:?}"
        );
    }
    for name in &names {
        let f = load(name);
        assert_eq!(f["schema"], "tppguard-fake-nvml/v1", "{name}");
        let description = f["description"].as_str().unwrap();
        assert!(
            !description.is_empty() && !description.contains('\n'),
            "{name}"
        );
        assert!(!f["source"].as_str().unwrap().is_empty(), "{name}");
    }
}

#[test]
fn nvml_wrapper_reads_every_fixture_as_written() {
    for name in fixture_names() {
        let fixture = load(&name);
        let driver = FakeDriver::with_fixture_file(&name);
        match (init(&driver), string(&fixture, "init_error")) {
            (Ok(nvml), None) => {
                verify(&name, &fixture, &nvml);
                nvml.shutdown().unwrap();
            }
            (Err(e), Some(want)) => assert_eq!(error_name(&e), want, "{name}: init"),
            (Ok(_), Some(want)) => panic!("{name}: init succeeded, the fixture says {want}"),
            (Err(e), None) => panic!("{name}: init failed: {e:?}"),
        }
    }
}

#[test]
fn init_failure_is_driver_not_loaded() {
    let driver = FakeDriver::with_fixture_file("fault-init-failure");
    assert!(matches!(init(&driver), Err(NvmlError::DriverNotLoaded)));
    // A failed init leaves nothing initialised; a retry fails the same way.
    assert!(matches!(init(&driver), Err(NvmlError::DriverNotLoaded)));
}

#[test]
fn a_lost_gpu_answers_gpu_lost_and_the_others_answer() {
    let driver = FakeDriver::with_fixture_file("fault-gpu-lost");
    let nvml = init(&driver).unwrap();
    assert_eq!(nvml.device_count().unwrap(), 8);
    let lost = nvml.device_by_index(3).unwrap();
    assert!(matches!(lost.uuid(), Err(NvmlError::GpuLost)));
    assert!(matches!(lost.memory_info(), Err(NvmlError::GpuLost)));
    assert!(matches!(lost.pci_info(), Err(NvmlError::GpuLost)));
    assert_eq!(
        nvml.device_by_index(2).unwrap().name().unwrap(),
        "NVIDIA H100 80GB HBM3"
    );
}

#[test]
fn partial_failures_map_to_their_nvml_errors() {
    let driver = FakeDriver::with_fixture_file("fault-partial");
    let nvml = init(&driver).unwrap();
    let ok = nvml.device_by_index(0).unwrap();
    let bad = nvml.device_by_index(1).unwrap();
    assert!(ok.serial().is_ok() && ok.architecture().is_ok());
    assert!(matches!(bad.serial(), Err(NvmlError::NoPermission)));
    assert!(matches!(
        bad.architecture(),
        Err(NvmlError::FunctionNotFound)
    ));
    assert!(matches!(
        bad.power_management_limit(),
        Err(NvmlError::NotSupported)
    ));
    assert_ne!(bad.uuid().unwrap(), ok.uuid().unwrap());
}

#[test]
fn absent_fields_are_not_supported() {
    // The H20 row has no SM count or boost clock; the capture of a GTX 1070 Ti lacks nearly
    // everything.
    let driver = FakeDriver::with_fixture_file("hgx-h20");
    let nvml = init(&driver).unwrap();
    let h20 = nvml.device_by_index(0).unwrap();
    assert!(matches!(h20.attributes(), Err(NvmlError::NotSupported)));
    assert!(matches!(
        h20.max_clock_info(Clock::SM),
        Err(NvmlError::NotSupported)
    ));
    assert!(matches!(
        h20.cuda_compute_capability(),
        Err(NvmlError::NotSupported)
    ));

    let driver = FakeDriver::with_fixture_file("capture-gtx-1070-ti");
    let nvml = init(&driver).unwrap();
    assert!(matches!(
        nvml.sys_driver_version(),
        Err(NvmlError::NotSupported)
    ));
    let gtx = nvml.device_by_index(0).unwrap();
    assert_eq!(gtx.name().unwrap(), "GeForce GTX 1070 Ti");
    assert!(matches!(gtx.pci_info(), Err(NvmlError::NotSupported)));
    assert!(matches!(gtx.serial(), Err(NvmlError::NotSupported)));
}

#[test]
fn a_function_the_fake_lacks_fails_to_load_like_an_old_driver() {
    let driver = FakeDriver::with_fixture_file("dgx-h100");
    let nvml = init(&driver).unwrap();
    let gpu = nvml.device_by_index(0).unwrap();
    assert!(matches!(
        gpu.fan_speed(0),
        Err(NvmlError::FailedToLoadSymbol(_))
    ));
    assert!(matches!(
        gpu.temperature_threshold(
            nvml_wrapper::enum_wrappers::device::TemperatureThreshold::Shutdown
        ),
        Err(NvmlError::FailedToLoadSymbol(_))
    ));
}

#[test]
fn copies_of_the_fake_in_one_process_keep_separate_state() {
    let h100 = FakeDriver::with_fixture_file("dgx-h100");
    let mixed = FakeDriver::with_fixture_file("mixed");
    let a = init(&h100).unwrap();
    let b = init(&mixed).unwrap();
    assert_eq!(
        a.device_by_index(7).unwrap().name().unwrap(),
        "NVIDIA H100 80GB HBM3"
    );
    assert_eq!(
        b.device_by_index(7).unwrap().name().unwrap(),
        "NVIDIA GeForce RTX 4090 D"
    );
    assert_eq!(a.sys_driver_version().unwrap(), "550.90.07");
    assert_eq!(b.sys_driver_version().unwrap(), "595.58.03");
    drop(a);
    assert_eq!(b.device_count().unwrap(), 8);
}

#[test]
fn init_and_shutdown_are_reference_counted() {
    let driver = FakeDriver::with_fixture_file("l40s-x4");
    let first = init(&driver).unwrap();
    let second = init(&driver).unwrap();
    first.shutdown().unwrap();
    // The library is still initialised once: the second handle still answers.
    assert_eq!(second.device_count().unwrap(), 4);
    second.shutdown().unwrap();
}
