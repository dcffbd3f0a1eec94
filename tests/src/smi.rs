//! Converts an `nvidia-smi -q -x` capture into a fixture. Only what the capture states is
//! kept: a value it gives as `N/A`, `[N/A]`, `Not Supported` or a contributor's redaction, or
//! does not have at all, is left absent.

use std::collections::BTreeMap;

use roxmltree::Node;

use crate::Error;
use crate::model::{
    self, Device, Fixture, MaxClocks, Memory, MigDevice, MigMode, Pci, Process, Telemetry,
    cuda_version_int,
};

/// Where the captures come from (`shared/data/SOURCES.md`).
const PROVENANCE: &str = "a real `nvidia-smi -q -x` capture from \
    github.com/influxdata/telegraf@b27263146617cefe16c0b300107b58b111a7fa57 \
    plugins/inputs/nvidia_smi/testdata (MIT, tests/fixtures/nvidia-smi/LICENSE-telegraf-MIT)";

/// What a capture says about itself that its values alone do not.
fn note(stem: &str) -> Option<&'static str> {
    match stem {
        "gtx-1660-ti" => Some(
            "the file is named for a GTX 1660 Ti but reports PCI id 0x2184 and the name \
             \"Graphics Device\" (driver 418 did not know the part): 0x2184 is the GeForce GTX \
             1660 (non-Ti) in NVIDIA's table and pci.ids; name and PCI id are kept exactly as \
             captured",
        ),
        "rtx-3060-v12" => Some("a GA104-based RTX 3060 (PCI id 0x2487)"),
        "rtx-3090-v12" => Some(
            "the contributor anonymised the UUID (kept as captured) and redacted the PCI ids \
             (absent)",
        ),
        "a10g" => Some(
            "a cloud VM: the capture reports PCI device id 000000DE and serial 0000000000000, \
             kept as captured",
        ),
        "tesla-t4" => Some("a cloud VM: serial 0000000000000 kept as captured"),
        "a100-sxm4-v12" => Some(
            "MIG enabled with four instances; the capture names no MIG UUIDs or names, and no \
             maximum MIG device count (so the fake answers the number of instances)",
        ),
        _ => None,
    }
}

/// A child element's trimmed text, if it states a value.
fn text<'a>(node: Node<'a, '_>, path: &[&str]) -> Option<&'a str> {
    let mut n = node;
    for tag in path {
        n = n.children().find(|c| c.has_tag_name(*tag))?;
    }
    let t = n.text()?.trim();
    let unstated = matches!(
        t,
        "" | "N/A" | "[N/A]" | "Not Supported" | "[Not Supported]"
    ) || t.contains("REDACTED")
        || t.starts_with("Requested functionality has been deprecated");
    (!unstated).then_some(t)
}

/// Whether the element at `path` held a redaction (reported in the source line).
fn redacted(node: Node<'_, '_>, path: &[&str]) -> bool {
    let mut n = node;
    for tag in path {
        match n.children().find(|c| c.has_tag_name(*tag)) {
            Some(c) => n = c,
            None => return false,
        }
    }
    n.text().is_some_and(|t| t.contains("REDACTED"))
}

fn owned(node: Node<'_, '_>, path: &[&str]) -> Option<String> {
    text(node, path).map(str::to_owned)
}

fn bad(file: &str, what: &str, value: &str) -> Error {
    Error(format!("{file}: cannot read {what} {value:?}"))
}

/// "81920 MiB" in bytes.
fn mib(file: &str, value: &str) -> Result<u64, Error> {
    value
        .strip_suffix(" MiB")
        .and_then(|v| v.trim().parse::<u64>().ok())
        .and_then(|v| v.checked_mul(1 << 20))
        .ok_or_else(|| bad(file, "memory", value))
}

/// "1410 MHz" in MHz.
fn mhz(file: &str, value: &str) -> Result<u32, Error> {
    value
        .strip_suffix(" MHz")
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| bad(file, "clock", value))
}

/// "500.00 W" in milliwatts, exactly (decimal arithmetic, no floats).
fn milliwatts(file: &str, value: &str) -> Result<u32, Error> {
    let err = || bad(file, "power", value);
    let watts = value.strip_suffix(" W").ok_or_else(err)?.trim();
    let (int, frac) = watts.split_once('.').unwrap_or((watts, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return Err(err());
    }
    let int: u32 = int.parse().map_err(|_| err())?;
    let frac: u32 = format!("{frac:0<3}").parse().map_err(|_| err())?;
    int.checked_mul(1000)
        .and_then(|v| v.checked_add(frac))
        .ok_or_else(err)
}

/// "27 C" in degrees C.
fn celsius(file: &str, value: &str) -> Result<u32, Error> {
    value
        .strip_suffix(" C")
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| bad(file, "temperature", value))
}

/// nvidia-smi's clock event (v12+) / throttle reason names and NVML's
/// `nvmlClocksEventReason*` / `nvmlClocksThrottleReason*` bits.
const CLOCK_REASONS: &[(&str, u64)] = &[
    ("gpu_idle", 0x1),
    ("applications_clocks_setting", 0x2),
    ("sw_power_cap", 0x4),
    ("hw_slowdown", 0x8),
    ("sync_boost", 0x10),
    ("sw_thermal_slowdown", 0x20),
    ("hw_thermal_slowdown", 0x40),
    ("hw_power_brake_slowdown", 0x80),
    ("display_clocks_setting", 0x100),
];

/// The clock event / throttle reasons as NVML's bitmask: the bits of the reasons marked
/// `Active`; absent when the capture states none of them.
fn clock_reasons(file: &str, gpu: Node<'_, '_>) -> Result<Option<u64>, Error> {
    let Some(list) = gpu.children().find(|c| {
        c.has_tag_name("clocks_event_reasons") || c.has_tag_name("clocks_throttle_reasons")
    }) else {
        return Ok(None);
    };
    let mut bits = 0;
    let mut stated = false;
    for e in list.children().filter(Node::is_element) {
        let tag = e.tag_name().name();
        let bit = tag
            .strip_prefix("clocks_event_reason_")
            .or_else(|| tag.strip_prefix("clocks_throttle_reason_"))
            .and_then(|r| CLOCK_REASONS.iter().find(|(n, _)| *n == r))
            .map(|(_, b)| *b)
            .ok_or_else(|| bad(file, "clock reason", tag))?;
        match text(e, &[]) {
            Some("Active") => {
                bits |= bit;
                stated = true;
            }
            Some("Not Active") => stated = true,
            None => {}
            Some(other) => return Err(bad(file, tag, other)),
        }
    }
    Ok(stated.then_some(bits))
}

fn telemetry(file: &str, gpu: Node<'_, '_>) -> Result<Option<Telemetry>, Error> {
    // nvmlDeviceGetPowerUsage is nvidia-smi's power_draw; the v13 format splits it, and the
    // average is what the call answers on these newer drivers.
    let power = text(gpu, &["power_readings", "power_draw"])
        .or_else(|| text(gpu, &["gpu_power_readings", "power_draw"]))
        .or_else(|| text(gpu, &["gpu_power_readings", "average_power_draw"]));
    let t = Telemetry {
        sm_clock_mhz: text(gpu, &["clocks", "sm_clock"])
            .map(|v| mhz(file, v))
            .transpose()?,
        memory_clock_mhz: text(gpu, &["clocks", "mem_clock"])
            .map(|v| mhz(file, v))
            .transpose()?,
        temperature_c: text(gpu, &["temperature", "gpu_temp"])
            .map(|v| celsius(file, v))
            .transpose()?,
        power_usage_mw: power.map(|p| milliwatts(file, p)).transpose()?,
        throttle_reasons: clock_reasons(file, gpu)?,
    };
    Ok((!t.is_empty()).then_some(t))
}

/// The capture's compute processes (types `C` and `C+G`; `G` is graphics only, which NVML's
/// compute list leaves out); absent when the capture has no process list.
fn processes(file: &str, gpu: Node<'_, '_>) -> Result<Option<Vec<Process>>, Error> {
    let Some(list) = gpu.children().find(|c| c.has_tag_name("processes")) else {
        return Ok(None);
    };
    let infos: Vec<Node<'_, '_>> = list
        .children()
        .filter(|c| c.has_tag_name("process_info"))
        .collect();
    if infos.is_empty() && text(list, &[]).is_some() {
        return Err(bad(file, "processes", list.text().unwrap_or_default()));
    }
    let mut out = Vec::new();
    for p in infos {
        let kind = text(p, &["type"]).unwrap_or_default();
        let compute = match kind {
            "C" | "C+G" => true,
            "G" => false,
            other => return Err(bad(file, "process type", other)),
        };
        if !compute {
            continue;
        }
        let pid = text(p, &["pid"]).unwrap_or_default();
        out.push(Process {
            pid: pid.parse().map_err(|_| bad(file, "pid", pid))?,
            used_gpu_memory_bytes: text(p, &["used_memory"])
                .map(|m| mib(file, m))
                .transpose()?,
        });
    }
    Ok(Some(out))
}

fn hex(file: &str, what: &str, value: &str) -> Result<u32, Error> {
    u32::from_str_radix(value, 16).map_err(|_| bad(file, what, value))
}

/// nvidia-smi's `product_brand` as an `NVML_BRAND_*` name.
fn brand(file: &str, value: &str) -> Result<String, Error> {
    let name = match value {
        "Tesla" => "TESLA",
        "GeForce" => "GEFORCE",
        "Quadro" => "QUADRO",
        "NVIDIA" => "NVIDIA",
        "NVIDIA RTX" => "NVIDIA_RTX",
        "Quadro RTX" => "QUADRO_RTX",
        "GeForce RTX" => "GEFORCE_RTX",
        "Titan" | "TITAN" => "TITAN",
        "NVS" => "NVS",
        "Grid" | "GRID" => "GRID",
        _ => return Err(bad(file, "product_brand", value)),
    };
    Ok(name.to_owned())
}

/// nvidia-smi's `product_architecture` as an `NVML_DEVICE_ARCH_*` name.
pub fn architecture(value: &str) -> Option<&'static str> {
    Some(match value {
        "Kepler" => "KEPLER",
        "Maxwell" => "MAXWELL",
        "Pascal" => "PASCAL",
        "Volta" => "VOLTA",
        "Turing" => "TURING",
        "Ampere" => "AMPERE",
        "Ada Lovelace" | "Ada" => "ADA",
        "Hopper" => "HOPPER",
        "Blackwell" => "BLACKWELL",
        _ => return None,
    })
}

fn enabled(file: &str, value: &str) -> Result<bool, Error> {
    match value {
        "Enabled" => Ok(true),
        "Disabled" => Ok(false),
        _ => Err(bad(file, "MIG mode", value)),
    }
}

fn memory(file: &str, node: Node<'_, '_>) -> Result<Option<Memory>, Error> {
    let Some(total) = text(node, &["fb_memory_usage", "total"]) else {
        return Ok(None);
    };
    let Some(used) = text(node, &["fb_memory_usage", "used"]) else {
        return Ok(None);
    };
    Ok(Some(Memory {
        total_bytes: mib(file, total)?,
        reserved_bytes: text(node, &["fb_memory_usage", "reserved"])
            .map(|r| mib(file, r))
            .transpose()?,
        used_bytes: mib(file, used)?,
    }))
}

fn pci(file: &str, gpu: Node<'_, '_>) -> Result<Option<Pci>, Error> {
    let (Some(bus_id), Some(domain), Some(bus), Some(device)) = (
        text(gpu, &["pci", "pci_bus_id"]),
        text(gpu, &["pci", "pci_domain"]),
        text(gpu, &["pci", "pci_bus"]),
        text(gpu, &["pci", "pci_device"]),
    ) else {
        return Ok(None);
    };
    let id = |tag: &str| -> Result<Option<String>, Error> {
        text(gpu, &["pci", tag])
            .map(|v| hex(file, tag, v).map(|n| format!("0x{n:08X}")))
            .transpose()
    };
    Ok(Some(Pci {
        bus_id: bus_id.to_owned(),
        domain: hex(file, "pci_domain", domain)?,
        bus: hex(file, "pci_bus", bus)?,
        device: hex(file, "pci_device", device)?,
        pci_device_id: id("pci_device_id")?,
        pci_subsystem_id: id("pci_sub_system_id")?,
    }))
}

fn device(file: &str, gpu: Node<'_, '_>) -> Result<Device, Error> {
    let max_clocks = MaxClocks {
        sm: text(gpu, &["max_clocks", "sm_clock"])
            .or_else(|| text(gpu, &["max_clocks", "graphics_clock"]))
            .map(|v| mhz(file, v))
            .transpose()?,
        memory: text(gpu, &["max_clocks", "mem_clock"])
            .map(|v| mhz(file, v))
            .transpose()?,
    };
    let power = text(gpu, &["power_readings", "power_limit"])
        .or_else(|| text(gpu, &["gpu_power_readings", "current_power_limit"]));
    let mig_mode = match (
        text(gpu, &["mig_mode", "current_mig"]),
        text(gpu, &["mig_mode", "pending_mig"]),
    ) {
        (Some(c), Some(p)) => Some(MigMode {
            current: enabled(file, c)?,
            pending: enabled(file, p)?,
        }),
        _ => None,
    };
    let mut mig_devices = Vec::new();
    if let Some(list) = gpu.children().find(|c| c.has_tag_name("mig_devices")) {
        for m in list.children().filter(|c| c.has_tag_name("mig_device")) {
            let number = |tag: &str| -> Result<Option<u32>, Error> {
                text(m, &[tag])
                    .map(|v| v.parse().map_err(|_| bad(file, tag, v)))
                    .transpose()
            };
            let sms = text(m, &["device_attributes", "shared", "multiprocessor_count"])
                .map(|v| v.parse().map_err(|_| bad(file, "multiprocessor_count", v)))
                .transpose()?;
            mig_devices.push(MigDevice {
                uuid: owned(m, &["uuid"]),
                name: owned(m, &["name"]),
                gpu_instance_id: number("gpu_instance_id")?,
                compute_instance_id: number("compute_instance_id")?,
                multiprocessor_count: sms,
                memory: memory(file, m)?,
            });
        }
    }
    Ok(Device {
        name: owned(gpu, &["product_name"]),
        uuid: owned(gpu, &["uuid"]),
        serial: owned(gpu, &["serial"]),
        brand: text(gpu, &["product_brand"])
            .map(|b| brand(file, b))
            .transpose()?,
        board_part_number: owned(gpu, &["board_part_number"]),
        pci: pci(file, gpu)?,
        architecture: text(gpu, &["product_architecture"])
            .map(|a| {
                architecture(a)
                    .map(str::to_owned)
                    .ok_or_else(|| bad(file, "product_architecture", a))
            })
            .transpose()?,
        memory: memory(file, gpu)?,
        max_clocks_mhz: (max_clocks.sm.is_some() || max_clocks.memory.is_some())
            .then_some(max_clocks),
        power_limit_mw: power.map(|p| milliwatts(file, p)).transpose()?,
        vbios_version: owned(gpu, &["vbios_version"]),
        mig_mode,
        mig_devices,
        telemetry: telemetry(file, gpu)?,
        compute_processes: processes(file, gpu)?,
        compute_mode: text(gpu, &["compute_mode"])
            .map(|m| compute_mode(m).ok_or_else(|| bad(file, "compute_mode", m)))
            .transpose()?,
        ..Device::default()
    })
}

/// nvidia-smi's `<compute_mode>` as the fake's `NVML_COMPUTEMODE_*` suffix.
fn compute_mode(text: &str) -> Option<String> {
    match text {
        "Default" => Some("DEFAULT"),
        "Exclusive_Thread" => Some("EXCLUSIVE_THREAD"),
        "Prohibited" => Some("PROHIBITED"),
        "Exclusive_Process" => Some("EXCLUSIVE_PROCESS"),
        _ => None,
    }
    .map(str::to_owned)
}

/// Converts the capture `<stem>.xml` into the fixture `capture-<stem>`.
pub fn convert(stem: &str, xml: &str) -> Result<Fixture, Error> {
    let file = format!("{stem}.xml");
    let options = roxmltree::ParsingOptions {
        allow_dtd: true,
        ..roxmltree::ParsingOptions::default()
    };
    let doc = roxmltree::Document::parse_with_options(xml, options)
        .map_err(|e| Error(format!("{file}: {e}")))?;
    let root = doc.root_element();
    if !root.has_tag_name("nvidia_smi_log") {
        return Err(Error(format!("{file}: not an nvidia_smi_log")));
    }
    let gpus: Vec<Node<'_, '_>> = root.children().filter(|c| c.has_tag_name("gpu")).collect();
    let devices = gpus
        .iter()
        .map(|g| device(&file, *g))
        .collect::<Result<Vec<_>, _>>()?;

    let driver = owned(root, &["driver_version"]);
    let cuda = text(root, &["cuda_version"]);
    let nvml_version = match (cuda, &driver) {
        (Some(c), Some(d)) => model::nvml_version(c, d),
        _ => None,
    };
    let cuda_driver_version = cuda
        .map(|c| cuda_version_int(c).ok_or_else(|| bad(&file, "cuda_version", c)))
        .transpose()?;

    let names: Vec<&str> = devices.iter().filter_map(|d| d.name.as_deref()).collect();
    let what = match names.as_slice() {
        [] => format!("{} GPU(s)", devices.len()),
        [one] if devices.len() == 1 => format!("1x {one}"),
        _ => format!("{}x {}", devices.len(), names.join(" + ")),
    };
    let driver_text = driver.as_deref().map_or_else(
        || "driver not reported".to_owned(),
        |d| format!("driver {d}"),
    );
    let mut description = format!("{what} (real nvidia-smi capture {stem}, {driver_text})");
    if stem == "gtx-1660-ti" {
        description = format!(
            "1x GeForce GTX 1660 reported as \"Graphics Device\", PCI id 0x2184 (real \
             nvidia-smi capture {stem}, {driver_text}; the file name says 1660 Ti)"
        );
    }

    let mut source = format!("tests/fixtures/nvidia-smi/{file}: {PROVENANCE}.");
    let redactions: Vec<&str> = [
        ("serial", &["serial"][..]),
        ("uuid", &["uuid"]),
        ("pci_device_id", &["pci", "pci_device_id"]),
        ("pci_subsystem_id", &["pci", "pci_sub_system_id"]),
    ]
    .into_iter()
    .filter(|(_, path)| gpus.iter().any(|g| redacted(*g, path)))
    .map(|(name, _)| name)
    .collect();
    if !redactions.is_empty() {
        source.push_str(&format!(
            " Redacted by the contributor, so absent: {}.",
            redactions.join(", ")
        ));
    }
    source.push_str(
        " Values the capture gives as N/A or Not Supported, or lacks, are absent; memory is \
         fb_memory_usage (MiB x 2^20), the power limit the enforced/current limit (W x 1000), \
         max clocks the max_clocks sm/mem entries. Telemetry is the capture's own readings: \
         current clocks (clocks sm/mem), gpu_temp, power draw (power_draw, else \
         average_power_draw, which nvmlDeviceGetPowerUsage answers on the newer drivers) and \
         the clock event/throttle reasons marked Active as NVML's bitmask; compute_processes \
         are its processes of type C or C+G (graphics-only ones are not in NVML's compute \
         list). No benchmark: a capture states no throughput.",
    );
    if nvml_version.is_some() {
        source.push_str(
            " nvml_version is derived as <CUDA major>.<driver version>, the form NVML reports.",
        );
    }
    if let Some(n) = note(stem) {
        source.push_str(&format!(" Note: {n}."));
    }

    Ok(Fixture {
        schema: model::SCHEMA,
        description,
        source,
        init_error: None,
        driver_version: driver,
        nvml_version,
        cuda_driver_version,
        conf_compute: None,
        errors: BTreeMap::new(),
        devices,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_convert_exactly() {
        assert_eq!(milliwatts("f", "500.00 W").unwrap(), 500_000);
        assert_eq!(milliwatts("f", "70.5 W").unwrap(), 70_500);
        assert_eq!(milliwatts("f", "336 W").unwrap(), 336_000);
        assert!(milliwatts("f", "1.2345 W").is_err());
        assert_eq!(mib("f", "81920 MiB").unwrap(), 81920 << 20);
        assert_eq!(mhz("f", "1410 MHz").unwrap(), 1410);
        assert_eq!(cuda_version_int("12.2"), Some(12020));
        assert_eq!(cuda_version_int("13.2"), Some(13020));
        assert_eq!(cuda_version_int("10.1"), Some(10010));
        assert_eq!(compute_mode("Default").as_deref(), Some("DEFAULT"));
        assert_eq!(
            compute_mode("Exclusive_Process").as_deref(),
            Some("EXCLUSIVE_PROCESS")
        );
        assert_eq!(compute_mode("Prohibited").as_deref(), Some("PROHIBITED"));
        assert_eq!(compute_mode("Shared"), None);
        assert_eq!(
            model::nvml_version("12.2", "535.54.03").as_deref(),
            Some("12.535.54.03")
        );
    }

    #[test]
    fn unstated_values_stay_absent() {
        let xml = r#"<?xml version="1.0" ?>
<!DOCTYPE nvidia_smi_log SYSTEM "nvsmi_device_v12.dtd">
<nvidia_smi_log>
  <driver_version>535.54.03</driver_version>
  <cuda_version>N/A</cuda_version>
  <gpu id="00000000:01:00.0">
    <product_name>NVIDIA Test</product_name>
    <product_brand>Tesla</product_brand>
    <serial>N/A</serial>
    <uuid>REDACTED</uuid>
    <board_part_number>[N/A]</board_part_number>
    <mig_mode><current_mig>N/A</current_mig><pending_mig>N/A</pending_mig></mig_mode>
    <power_readings><power_limit>Not Supported</power_limit></power_readings>
  </gpu>
  <gpu id="00000000:02:00.0"><product_name>Second</product_name></gpu>
</nvidia_smi_log>"#;
        let f = convert("t", xml).unwrap();
        assert_eq!(f.devices.len(), 2);
        let d = &f.devices[0];
        assert_eq!(d.brand.as_deref(), Some("TESLA"));
        assert!(d.serial.is_none() && d.uuid.is_none() && d.board_part_number.is_none());
        assert!(d.mig_mode.is_none() && d.power_limit_mw.is_none() && d.pci.is_none());
        assert!(f.cuda_driver_version.is_none() && f.nvml_version.is_none());
        assert!(
            f.source
                .contains("Redacted by the contributor, so absent: uuid")
        );
        assert!(d.telemetry.is_none() && d.compute_processes.is_none());
    }

    #[test]
    fn readings_and_compute_processes_are_converted() {
        let xml = r#"<?xml version="1.0" ?>
<nvidia_smi_log>
  <gpu id="00000000:01:00.0">
    <clocks_event_reasons>
      <clocks_event_reason_gpu_idle>Not Active</clocks_event_reason_gpu_idle>
      <clocks_event_reason_sw_power_cap>Active</clocks_event_reason_sw_power_cap>
      <clocks_event_reason_hw_slowdown>Active</clocks_event_reason_hw_slowdown>
      <clocks_event_reason_sync_boost>N/A</clocks_event_reason_sync_boost>
    </clocks_event_reasons>
    <temperature><gpu_temp>61 C</gpu_temp></temperature>
    <gpu_power_readings>
      <average_power_draw>139.62 W</average_power_draw>
      <instant_power_draw>142.33 W</instant_power_draw>
    </gpu_power_readings>
    <clocks><sm_clock>1950 MHz</sm_clock><mem_clock>9251 MHz</mem_clock></clocks>
    <processes>
      <process_info><pid>10</pid><type>G</type><used_memory>5 MiB</used_memory></process_info>
      <process_info><pid>11</pid><type>C</type><used_memory>2 MiB</used_memory></process_info>
      <process_info><pid>12</pid><type>C+G</type><used_memory>N/A</used_memory></process_info>
    </processes>
  </gpu>
  <gpu id="00000000:02:00.0">
    <clocks_throttle_reasons>
      <clocks_throttle_reason_gpu_idle>Active</clocks_throttle_reason_gpu_idle>
    </clocks_throttle_reasons>
    <power_readings><power_draw>N/A</power_draw></power_readings>
    <processes />
  </gpu>
</nvidia_smi_log>"#;
        let f = convert("t", xml).unwrap();
        let t = f.devices[0].telemetry.unwrap();
        assert_eq!(
            (
                t.sm_clock_mhz,
                t.memory_clock_mhz,
                t.temperature_c,
                t.power_usage_mw,
                t.throttle_reasons
            ),
            (Some(1950), Some(9251), Some(61), Some(139_620), Some(0xC))
        );
        assert_eq!(
            f.devices[0].compute_processes.as_deref().unwrap(),
            [
                Process {
                    pid: 11,
                    used_gpu_memory_bytes: Some(2 << 20)
                },
                Process {
                    pid: 12,
                    used_gpu_memory_bytes: None
                }
            ]
        );
        let second = &f.devices[1];
        assert_eq!(second.telemetry.unwrap().throttle_reasons, Some(1));
        assert_eq!(second.telemetry.unwrap().power_usage_mw, None);
        assert_eq!(second.compute_processes.as_deref(), Some(&[][..]));

        let unknown = xml.replace("sync_boost", "warp_drive");
        assert!(
            convert("t", &unknown).is_err(),
            "an unknown reason is an error"
        );
        let odd = xml.replace("<type>G</type>", "<type>X</type>");
        assert!(
            convert("t", &odd).is_err(),
            "an unknown process type is an error"
        );
    }
}
