//! Builds a synthetic node from a recipe (`tests/fixtures/nvml/recipes/<name>.toml`) and the
//! public figures in `accelerators.csv`. Identities (serials, UUIDs, PCI bus ids) are
//! synthetic and deterministic; a figure the CSV lacks stays absent.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::Error;
use crate::model::{
    self, Benchmark, ConfCompute, Device, Fixture, MaxClocks, Memory, MigDevice, MigMode, Pci,
    Process, Telemetry,
};

/// A recipe file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    /// The fixture's one-line description.
    pub description: String,
    /// Sentences appended to the fixture's `source` (where the recipe's own values come from).
    #[serde(default)]
    pub notes: Vec<String>,
    /// NVML init fails with this error.
    pub init_error: Option<String>,
    /// The driver: its version and, when sourced, the CUDA version it reports.
    pub driver: Option<Driver>,
    pub conf_compute: Option<ConfCompute>,
    /// Groups of identical GPUs, in index order.
    #[serde(default)]
    pub gpus: Vec<Group>,
    /// Per-GPU changes: faults and MIG.
    #[serde(default)]
    pub device: Vec<Override>,
}

/// `[driver]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Driver {
    pub version: String,
    /// "12.2": gives `cuda_driver_version` and `nvml_version`.
    pub cuda: Option<String>,
}

/// `[[gpus]]`: `count` GPUs of one `accelerators.csv` row (`model`), or of a part the CSV does
/// not list (`[gpus.part]`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Group {
    /// The CSV's `model` column, exactly. Exactly one of `model` and `part` is given.
    pub model: Option<String>,
    /// A part with no CSV row: its identity and figures come from the recipe.
    pub part: Option<Part>,
    pub count: u32,
    /// Short tag for serials (`SIM-<tag>-…`).
    pub tag: String,
    /// `NVML_BRAND_*` name (the CSV has none; the recipe's notes say why this one).
    pub brand: Option<String>,
    pub vbios_version: Option<String>,
    /// `mig_mode` for MIG-capable parts: `false` gives MIG off (current and pending).
    pub mig_mode: Option<bool>,
    /// How the simulated benchmark figures are made, when not the default (data-centre rows:
    /// their own spec figures at the usual efficiencies; other parts: none).
    pub benchmark: Option<BenchmarkRecipe>,
}

/// `[gpus.part]`: a GPU the spec table does not list (a prototype, a relabelled or unknown
/// part). Figures use the CSV's units and architecture names.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Part {
    /// What NVML reports as the name.
    pub name: String,
    /// PCI device id (vendor 0x10DE is implied), `0xNNNN`.
    pub pci_device_id: String,
    pub architecture: Option<String>,
    pub memory_gib: Option<u64>,
    pub tdp_w: Option<u32>,
    pub boost_clock_mhz: Option<u32>,
    pub sm_count: Option<u32>,
}

/// `[gpus.benchmark]`: the simulated benchmark's figures for a group.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BenchmarkRecipe {
    /// The CSV model whose dense figures the benchmark derives from (default: the group's).
    pub like: Option<String>,
    /// One flat percentage of those figures, instead of the usual GEMM efficiencies.
    pub percent_of_spec: Option<u32>,
    /// Explicit figures per precision code (at most one decimal); excludes the fields above.
    pub dense_tops: Option<BTreeMap<String, f64>>,
}

/// `[device.telemetry]`: readings that replace the generated ones.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryOverride {
    pub sm_clock_mhz: Option<u32>,
    pub memory_clock_mhz: Option<u32>,
    pub temperature_c: Option<u32>,
    pub power_usage_mw: Option<u32>,
    pub throttle_reasons: Option<u64>,
}

/// `[[device]]`: changes to the GPU at `index`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Override {
    pub index: usize,
    #[serde(default)]
    pub lost: bool,
    #[serde(default)]
    pub errors: BTreeMap<String, String>,
    pub mig: Option<Mig>,
    /// Readings replacing the generated telemetry.
    pub telemetry: Option<TelemetryOverride>,
    /// Running compute processes (default: none); their memory is added to `used_bytes`.
    pub compute_processes: Option<Vec<Process>>,
}

/// `[device.mig]`: MIG enabled with `count` identical instances.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mig {
    /// Profile name, e.g. "1g.10gb".
    pub profile: String,
    pub count: u32,
    pub max_mig_devices: u32,
    /// SMs per instance.
    pub multiprocessor_count: u32,
    /// Memory per instance as a fraction of the GPU's (numerator, denominator).
    pub memory_fraction: [u64; 2],
    /// GPU instance id of the first instance; the others follow.
    pub first_gpu_instance_id: u32,
}

/// FNV-1a, 64-bit.
fn fnv1a(data: &[u8], seed: u64) -> u64 {
    data.iter().fold(seed, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01B3)
    })
}

/// splitmix64's finaliser, so that similar keys give unrelated-looking UUIDs.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A deterministic UUID (RFC 9562 version 8, "custom") from a key: FNV-1a, then splitmix64's
/// finaliser.
pub fn synthetic_uuid(key: &str) -> String {
    let h = fnv1a(key.as_bytes(), 0xCBF2_9CE4_8422_2325);
    let hi = mix(h);
    let lo = mix(h ^ 0x9E37_79B9_7F4A_7C15);
    let hi = (hi & !0xF000) | 0x8000; // version 8
    let lo = (lo & !(0b11 << 62)) | (0b10 << 62); // RFC variant
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        hi >> 32,
        (hi >> 16) & 0xFFFF,
        hi & 0xFFFF,
        lo >> 48,
        lo & 0xFFFF_FFFF_FFFF
    )
}

fn field<'a>(row: &'a BTreeMap<String, String>, name: &str) -> Option<&'a str> {
    row.get(name).map(|v| v.trim()).filter(|v| !v.is_empty())
}

fn number<T: std::str::FromStr>(
    row: &BTreeMap<String, String>,
    name: &str,
    model: &str,
) -> Result<Option<T>, Error> {
    field(row, name)
        .map(|v| {
            v.parse()
                .map_err(|_| Error(format!("accelerators.csv {model:?}: {name} {v:?}")))
        })
        .transpose()
}

/// The usual dense-GEMM efficiencies of cuBLAS on data-centre parts, in percent of the
/// spec-sheet dense peak, per precision code. FP32 (vector units) is not benchmarked.
pub const EFFICIENCY_PERCENT: &[(&str, u64)] = &[
    ("fp64", 85),
    ("tf32", 70),
    ("fp16", 72),
    ("bf16", 72),
    ("fp8", 65),
    ("int8", 70),
];

/// The CSV columns that give each benchmarked precision's dense figure, as the spec table
/// (`tppguard_proto::spec`, proto's build script) reads them: where two feed one precision the
/// higher wins.
const SPEC_COLUMNS: &[(&str, &[&str])] = &[
    ("fp64", &["fp64", "fp64_tensor"]),
    ("tf32", &["tf32_tensor"]),
    ("fp16", &["fp16_tensor"]),
    ("bf16", &["bf16_tensor"]),
    ("fp8", &["fp8_tensor"]),
    ("int8", &["int8_tensor"]),
];

/// The precision codes a benchmark figure may be given for.
const PRECISION_CODES: &[&str] = &["fp64", "fp32", "tf32", "fp16", "bf16", "fp8", "int8"];

/// A plain decimal (`989.4`, `0.0947`) in ten-thousandths, exactly.
pub fn ten_thousandths(text: &str) -> Option<u64> {
    let (int, frac) = text.split_once('.').unwrap_or((text, ""));
    if int.is_empty()
        || frac.len() > 4
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let int: u64 = int.parse().ok()?;
    let frac: u64 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<4}").parse().ok()?
    };
    int.checked_mul(10_000)?.checked_add(frac)
}

/// A row's dense figures (ten-thousandths of a TOPS) for the benchmarked precisions it lists.
pub fn spec_dense(row: &BTreeMap<String, String>) -> Result<BTreeMap<&'static str, u64>, String> {
    let mut out = BTreeMap::new();
    for (precision, columns) in SPEC_COLUMNS {
        for column in *columns {
            if let Some(v) = field(row, column) {
                let raw = ten_thousandths(v).ok_or_else(|| format!("{column} {v:?}"))?;
                let slot = out.entry(*precision).or_insert(raw);
                *slot = (*slot).max(raw);
            }
        }
    }
    Ok(out)
}

/// `spec` x `percent` (all precisions) or x the usual efficiencies, in tenths, rounded half up.
fn scaled_tenths(
    spec: &BTreeMap<&'static str, u64>,
    percent: Option<u32>,
) -> BTreeMap<String, u64> {
    spec.iter()
        .filter_map(|(precision, raw)| {
            let pct = match percent {
                Some(p) => u64::from(p),
                None => EFFICIENCY_PERCENT
                    .iter()
                    .find(|(p, _)| p == precision)
                    .map(|(_, e)| *e)?,
            };
            // ten-thousandths x percent / 100 = ten-thousandths; / 1000 = tenths.
            let tenths = raw.checked_mul(pct)?.checked_add(50_000)? / 100_000;
            Some(((*precision).to_owned(), tenths))
        })
        .collect()
}

/// Explicit benchmark figures in tenths; each must have at most one decimal.
fn explicit_tenths(figures: &BTreeMap<String, f64>) -> Result<BTreeMap<String, u64>, String> {
    let mut out = BTreeMap::new();
    for (precision, tops) in figures {
        if !PRECISION_CODES.contains(&precision.as_str()) {
            return Err(format!("benchmark precision {precision:?}"));
        }
        let scaled = tops * 10.0;
        let rounded = scaled.round();
        if !(tops.is_finite() && *tops > 0.0 && (scaled - rounded).abs() < 1e-6 && rounded < 1e9) {
            return Err(format!(
                "benchmark {precision} = {tops}: a positive figure with at most one decimal"
            ));
        }
        // Exact: `rounded` is a whole number below 10^9.
        let tenths = format!("{rounded:.0}")
            .parse()
            .map_err(|e| format!("benchmark {precision}: {e}"))?;
        out.insert(precision.clone(), tenths);
    }
    Ok(out)
}

/// What one `[[gpus]]` group's GPUs report, from its CSV row or its `[gpus.part]`.
struct Figures<'a> {
    nvml_name: Option<String>,
    /// `(device << 16) | 0x10DE`, as `0x…` text.
    pci_id: Option<String>,
    architecture: Option<String>,
    memory_gib: Option<u64>,
    tdp_w: Option<u32>,
    boost: Option<u32>,
    sms: Option<u32>,
    /// The CSV row, for a default benchmark.
    row: Option<&'a BTreeMap<String, String>>,
}

fn pci_id(id: &str) -> Option<String> {
    id.strip_prefix("0x")
        .filter(|h| h.len() == 4)
        .and_then(|h| u32::from_str_radix(h, 16).ok())
        .map(|dev| format!("0x{:08X}", (dev << 16) | 0x10DE))
}

fn csv_architecture(a: &str) -> Result<String, String> {
    crate::smi::architecture(a)
        .map(str::to_owned)
        .ok_or_else(|| format!("unknown architecture {a:?}"))
}

fn row_of<'a>(
    rows: &'a [BTreeMap<String, String>],
    model: &str,
) -> Result<&'a BTreeMap<String, String>, String> {
    rows.iter()
        .find(|r| r.get("model").map(String::as_str) == Some(model))
        .ok_or_else(|| format!("no accelerators.csv row has model {model:?}"))
}

fn figures<'a>(
    group: &Group,
    rows: &'a [BTreeMap<String, String>],
) -> Result<(Figures<'a>, String), String> {
    match (&group.model, &group.part) {
        (Some(model), None) => {
            let row = row_of(rows, model)?;
            if field(row, "vendor") != Some("NVIDIA") {
                return Err(format!("{model:?} is not an NVIDIA part"));
            }
            let pci_id = field(row, "pci_device_ids")
                .and_then(|n| n.split(';').next())
                .map(|id| pci_id(id).ok_or_else(|| format!("bad PCI id {id:?}")))
                .transpose()?;
            Ok((
                Figures {
                    nvml_name: field(row, "nvml_names")
                        .and_then(|n| n.split(';').next())
                        .map(str::to_owned),
                    pci_id,
                    architecture: field(row, "architecture")
                        .map(csv_architecture)
                        .transpose()?,
                    memory_gib: number(row, "memory_gib", model).map_err(|e| e.0)?,
                    tdp_w: number(row, "tdp_w", model).map_err(|e| e.0)?,
                    boost: number(row, "boost_clock_mhz", model).map_err(|e| e.0)?,
                    sms: number(row, "sm_count", model).map_err(|e| e.0)?,
                    row: Some(row),
                },
                format!("{}x {model:?}", group.count),
            ))
        }
        (None, Some(part)) => {
            if part.name.trim().is_empty() {
                return Err("[gpus.part] needs a name".into());
            }
            Ok((
                Figures {
                    nvml_name: Some(part.name.clone()),
                    pci_id: Some(
                        pci_id(&part.pci_device_id)
                            .ok_or_else(|| format!("bad PCI id {:?}", part.pci_device_id))?,
                    ),
                    architecture: part
                        .architecture
                        .as_deref()
                        .map(csv_architecture)
                        .transpose()?,
                    memory_gib: part.memory_gib,
                    tdp_w: part.tdp_w,
                    boost: part.boost_clock_mhz,
                    sms: part.sm_count,
                    row: None,
                },
                format!(
                    "{}x {:?} (no accelerators.csv row; figures from the recipe's [gpus.part])",
                    group.count, part.name
                ),
            ))
        }
        _ => Err("each [[gpus]] needs exactly one of model and [gpus.part]".into()),
    }
}

/// The benchmark a group's GPUs report: `[gpus.benchmark]` when given, else a data-centre
/// row's own figures at the usual efficiencies, else none.
fn benchmark(
    group: &Group,
    figures: &Figures<'_>,
    rows: &[BTreeMap<String, String>],
) -> Result<Option<Benchmark>, String> {
    let dense_tops = match &group.benchmark {
        Some(BenchmarkRecipe {
            dense_tops: Some(explicit),
            like: None,
            percent_of_spec: None,
        }) => explicit_tenths(explicit)?,
        Some(BenchmarkRecipe {
            dense_tops: Some(_),
            ..
        }) => {
            return Err("[gpus.benchmark] dense_tops excludes like and percent_of_spec".into());
        }
        Some(BenchmarkRecipe {
            like,
            percent_of_spec,
            dense_tops: None,
        }) => {
            let row = match like {
                Some(model) => row_of(rows, model)?,
                None => figures
                    .row
                    .ok_or("[gpus.benchmark] on a [gpus.part] needs like or dense_tops")?,
            };
            scaled_tenths(&spec_dense(row)?, *percent_of_spec)
        }
        None => match figures.row {
            Some(row) if field(row, "datacenter") == Some("yes") => {
                scaled_tenths(&spec_dense(row)?, None)
            }
            _ => BTreeMap::new(),
        },
    };
    Ok((!dense_tops.is_empty()).then_some(Benchmark { dense_tops }))
}

/// Synthetic, deterministic readings of a GPU at work: SM clock 0-30 MHz under the max
/// (15 MHz steps), 48-67 C, 70-90 % of the power limit, no throttle reasons.
fn telemetry(key: &str, boost: Option<u32>, limit_mw: Option<u32>) -> Telemetry {
    let h = mix(fnv1a(key.as_bytes(), 0xCBF2_9CE4_8422_2325));
    let pick = |shift: u32, modulo: u64| u32::try_from((h >> shift) % modulo).unwrap_or(0);
    Telemetry {
        sm_clock_mhz: boost.map(|b| b.saturating_sub(15 * pick(0, 3))),
        memory_clock_mhz: None,
        temperature_c: Some(48 + pick(8, 20)),
        power_usage_mw: limit_mw.map(|l| {
            let share = u64::from(l) * u64::from(70 + pick(16, 20)) / 100;
            u32::try_from(share + u64::from(pick(32, 1000)))
                .unwrap_or(l)
                .min(l)
        }),
        throttle_reasons: Some(0),
    }
}

/// Builds fixture `name` from its recipe and the CSV rows.
pub fn build(
    name: &str,
    recipe: &Recipe,
    rows: &[BTreeMap<String, String>],
) -> Result<Fixture, Error> {
    let err = |m: String| Error(format!("recipes/{name}.toml: {m}"));
    // Serials: SIM-<tag>-<5 digits from the fixture name><2-digit index>, unique across fixtures.
    let node_number = fnv1a(name.as_bytes(), 0xCBF2_9CE4_8422_2325) % 100_000;
    let mut devices = Vec::new();
    let mut models = Vec::new();
    let mut parts = false;
    let mut default_benchmarks = false;
    for group in &recipe.gpus {
        let (figures, what) = figures(group, rows).map_err(err)?;
        parts |= group.part.is_some();
        default_benchmarks |= group.benchmark.is_none();
        models.push(what);
        let benchmark = benchmark(group, &figures, rows).map_err(err)?;
        let power_limit_mw = figures
            .tdp_w
            .map(|w| {
                w.checked_mul(1000)
                    .ok_or_else(|| err("power overflows".into()))
            })
            .transpose()?;
        for _ in 0..group.count {
            let index = devices.len();
            let bus = u32::try_from(index + 1)
                .ok()
                .and_then(|i| i.checked_mul(0x10))
                .filter(|b| *b <= 0xFF)
                .ok_or_else(|| err("too many GPUs for synthetic bus numbers".into()))?;
            devices.push(Device {
                name: figures.nvml_name.clone(),
                uuid: Some(format!(
                    "GPU-{}",
                    synthetic_uuid(&format!("{name}/gpu/{index}"))
                )),
                serial: Some(format!(
                    "SIM-{}-{node_number:05}{:02}",
                    group.tag,
                    index + 1
                )),
                brand: group.brand.clone(),
                pci: Some(Pci {
                    bus_id: format!("00000000:{bus:02X}:00.0"),
                    domain: 0,
                    bus,
                    device: 0,
                    pci_device_id: figures.pci_id.clone(),
                    pci_subsystem_id: None,
                }),
                architecture: figures.architecture.clone(),
                multiprocessor_count: figures.sms,
                memory: figures
                    .memory_gib
                    .map(|g| {
                        g.checked_mul(1 << 30)
                            .map(|total_bytes| Memory {
                                total_bytes,
                                reserved_bytes: Some(0),
                                used_bytes: 0,
                            })
                            .ok_or_else(|| err("memory overflows".into()))
                    })
                    .transpose()?,
                max_clocks_mhz: figures.boost.map(|b| MaxClocks {
                    sm: Some(b),
                    memory: None,
                }),
                power_limit_mw,
                vbios_version: group.vbios_version.clone(),
                mig_mode: group.mig_mode.map(|on| MigMode {
                    current: on,
                    pending: on,
                }),
                telemetry: Some(telemetry(
                    &format!("{name}/gpu/{index}/telemetry"),
                    figures.boost,
                    power_limit_mw,
                )),
                compute_processes: Some(Vec::new()),
                benchmark: benchmark.clone(),
                ..Device::default()
            });
        }
    }

    for o in &recipe.device {
        let d = devices
            .get_mut(o.index)
            .ok_or_else(|| err(format!("[[device]] index {} has no GPU", o.index)))?;
        d.lost = o.lost;
        d.errors.extend(o.errors.clone());
        if let Some(t) = o.telemetry {
            let g = d.telemetry.get_or_insert_with(Telemetry::default);
            g.sm_clock_mhz = t.sm_clock_mhz.or(g.sm_clock_mhz);
            g.memory_clock_mhz = t.memory_clock_mhz.or(g.memory_clock_mhz);
            g.temperature_c = t.temperature_c.or(g.temperature_c);
            g.power_usage_mw = t.power_usage_mw.or(g.power_usage_mw);
            g.throttle_reasons = t.throttle_reasons.or(g.throttle_reasons);
        }
        if let Some(list) = &o.compute_processes {
            let in_use = list
                .iter()
                .filter_map(|p| p.used_gpu_memory_bytes)
                .try_fold(0u64, u64::checked_add)
                .ok_or_else(|| err("process memory overflows".into()))?;
            if let Some(m) = d.memory.as_mut() {
                m.used_bytes = m
                    .used_bytes
                    .checked_add(in_use)
                    .filter(|u| *u <= m.total_bytes)
                    .ok_or_else(|| {
                        err(format!(
                            "GPU {}: processes use more than its memory",
                            o.index
                        ))
                    })?;
            }
            d.compute_processes = Some(list.clone());
        }
        if let Some(mig) = &o.mig {
            let gpu_memory = d
                .memory
                .ok_or_else(|| err("MIG on a GPU with no memory figure".into()))?;
            let [num, den] = mig.memory_fraction;
            let per_instance = gpu_memory
                .total_bytes
                .checked_mul(num)
                .and_then(|v| v.checked_div(den))
                .ok_or_else(|| err("bad memory_fraction".into()))?;
            let gpu_name = d.name.clone().unwrap_or_default();
            d.mig_mode = Some(MigMode {
                current: true,
                pending: true,
            });
            d.max_mig_devices = Some(mig.max_mig_devices);
            d.mig_devices = (0..mig.count)
                .map(|i| MigDevice {
                    uuid: Some(format!(
                        "MIG-{}",
                        synthetic_uuid(&format!("{name}/gpu/{}/mig/{i}", o.index))
                    )),
                    name: Some(format!("{gpu_name} MIG {}", mig.profile)),
                    gpu_instance_id: Some(mig.first_gpu_instance_id + i),
                    compute_instance_id: Some(0),
                    multiprocessor_count: Some(mig.multiprocessor_count),
                    memory: Some(Memory {
                        total_bytes: per_instance,
                        reserved_bytes: Some(0),
                        used_bytes: 0,
                    }),
                })
                .collect();
        }
    }

    let mut source = format!("Synthetic node from tests/fixtures/nvml/recipes/{name}.toml.");
    if !models.is_empty() {
        source.push_str(&format!(
            " GPUs: {}. Per-GPU figures are those rows of shared/data/accelerators.csv (copied \
             to tests/fixtures/nvml/recipes/accelerators.csv): name = first nvml_names entry, \
             PCI id = first pci_device_ids entry with vendor 0x10DE, architecture, \
             multiprocessor count = sm_count, memory total = memory_gib x 2^30 bytes (nominal; \
             a real driver reports slightly less) with none reserved or used, power limit = \
             tdp_w, max SM clock = boost_clock_mhz; a figure the row lacks is absent, as are \
             the max memory clock, compute capability, board part number and PCI subsystem id. \
             Serials (SIM-...), UUIDs (RFC 9562 v8, hashed from fixture name and index) and PCI \
             bus ids are synthetic.",
            models.join(", ")
        ));
        if parts {
            source.push_str(
                " A [gpus.part] has no CSV row: its name, PCI id and figures are the recipe's \
                 own, illustrative values.",
            );
        }
        source.push_str(
            " Telemetry is synthetic, hashed from fixture name and index: SM clock 0-30 MHz \
             under the max SM clock (absent with it), temperature 48-67 C, power 70-90 % of the \
             power limit, throttle reasons 0; no compute processes are running.",
        );
        if default_benchmarks {
            source.push_str(&format!(
                " benchmark (data-centre rows only): the row's dense figures as the spec table \
                 reads them (fp64 the higher of fp64 and fp64_tensor, the *_tensor columns for \
                 the others; fp32 is not benchmarked) x typical cuBLAS GEMM efficiencies ({}), \
                 rounded half up to 0.1; only precisions the row lists.",
                EFFICIENCY_PERCENT
                    .iter()
                    .map(|(p, e)| format!("{p} {e} %"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    for n in &recipe.notes {
        source.push(' ');
        source.push_str(n);
    }
    let driver = recipe.driver.as_ref();
    let cuda = driver.and_then(|d| d.cuda.as_deref());
    if cuda.is_some() {
        source.push_str(
            " nvml_version is derived as <CUDA major>.<driver version>, the form NVML reports.",
        );
    }
    Ok(Fixture {
        schema: model::SCHEMA,
        description: recipe.description.clone(),
        source,
        init_error: recipe.init_error.clone(),
        driver_version: driver.map(|d| d.version.clone()),
        nvml_version: match (cuda, driver) {
            (Some(c), Some(d)) => model::nvml_version(c, &d.version),
            _ => None,
        },
        cuda_driver_version: cuda
            .map(|c| model::cuda_version_int(c).ok_or_else(|| err(format!("cuda {c:?}"))))
            .transpose()?,
        conf_compute: recipe.conf_compute,
        errors: BTreeMap::new(),
        devices,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::Value;
    use tppguard_proto::spec::{SpecMatch, by_model, lookup, spec_table};
    use tppguard_proto::tpp::Precision;

    use super::*;

    fn rows() -> Vec<BTreeMap<String, String>> {
        let path = crate::nvml_dir(&crate::default_root())
            .join("recipes")
            .join("accelerators.csv");
        crate::csv::records(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    /// The generator reads the CSV copy as proto's build script does: every row's
    /// benchmarked precisions and figures are exactly the spec table's.
    #[test]
    fn spec_figures_are_the_spec_tables() {
        let rows = rows();
        assert_eq!(rows.len(), spec_table().len());
        for row in &rows {
            let model = row["model"].as_str();
            let spec = by_model(model).unwrap();
            let ours = spec_dense(row).unwrap();
            let theirs: BTreeMap<&str, u64> = spec
                .dense_tops
                .iter()
                .filter(|(p, _)| EFFICIENCY_PERCENT.iter().any(|(c, _)| *c == p.code()))
                .map(|(p, t)| (p.code(), t.raw()))
                .collect();
            assert_eq!(ours, theirs, "{model}");
        }
    }

    #[test]
    fn efficiencies_round_half_up_to_tenths() {
        let h100 = rows()
            .into_iter()
            .find(|r| r["model"] == "H100 SXM5 80GB")
            .unwrap();
        let spec = spec_dense(&h100).unwrap();
        let usual = scaled_tenths(&spec, None);
        // 989.4 x 0.72 = 712.368; 66.9 x 0.85 = 56.865 (exactly, so half up); 1978.9 x 0.65 =
        // 1286.285; 494.7 x 0.70 = 346.29.
        assert_eq!(usual["fp16"], 7124);
        assert_eq!(usual["fp64"], 569);
        assert_eq!(usual["fp8"], 12863);
        assert_eq!(usual["tf32"], 3463);
        assert_eq!(usual["int8"], 13852);
        assert!(!usual.contains_key("fp32"), "FP32 is not benchmarked");
        let flat = scaled_tenths(&spec, Some(40));
        assert_eq!(flat["fp16"], 3958);
        assert_eq!(flat["fp8"], 7916);
        assert_eq!(ten_thousandths("0.0947"), Some(947));
        assert_eq!(ten_thousandths("1978.9"), Some(19_789_000));
        assert_eq!(ten_thousandths("1.23456"), None);
        assert_eq!(ten_thousandths(".5"), None);
    }

    #[test]
    fn explicit_figures_have_one_decimal_and_known_codes() {
        let ok = BTreeMap::from([("fp16".to_owned(), 498.6), ("fp8".to_owned(), 1000.0)]);
        let tenths = explicit_tenths(&ok).unwrap();
        assert_eq!((tenths["fp16"], tenths["fp8"]), (4986, 10_000));
        for bad in [
            ("fp16", 498.65),
            ("fp16", 0.0),
            ("fp16", -1.0),
            ("FP16", 1.0),
            ("fp4", 1.0),
        ] {
            let figures = BTreeMap::from([(bad.0.to_owned(), bad.1)]);
            assert!(explicit_tenths(&figures).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn telemetry_is_deterministic_and_below_the_limits() {
        for i in 0..64 {
            let key = format!("t/gpu/{i}/telemetry");
            let t = telemetry(&key, Some(1980), Some(700_000));
            assert_eq!(t, telemetry(&key, Some(1980), Some(700_000)));
            let clock = t.sm_clock_mhz.unwrap();
            assert!(
                (1950..=1980).contains(&clock) && clock.is_multiple_of(15),
                "{t:?}"
            );
            assert!((48..=67).contains(&t.temperature_c.unwrap()), "{t:?}");
            let mw = t.power_usage_mw.unwrap();
            assert!((490_000..700_000).contains(&mw), "{t:?}");
            assert_eq!(t.throttle_reasons, Some(0));
        }
        let none = telemetry("t", None, None);
        assert!(none.sm_clock_mhz.is_none() && none.power_usage_mw.is_none());
    }

    fn generated(name: &str) -> Value {
        let all = crate::generate(&crate::default_root()).unwrap();
        let (_, json) = all
            .iter()
            .find(|(n, _)| *n == format!("{name}.json"))
            .unwrap();
        serde_json::from_str(json).unwrap()
    }

    fn tops(device: &Value, precision: Precision) -> Option<f64> {
        device["benchmark"]["dense_tops"][precision.code()].as_f64()
    }

    fn spec_tops(model: &str, precision: Precision) -> f64 {
        by_model(model)
            .unwrap()
            .dense_tops
            .iter()
            .find(|(p, _)| *p == precision)
            .map(|(_, t)| t.as_f64())
            .unwrap()
    }

    #[test]
    fn data_centre_fixtures_benchmark_near_spec_and_others_do_not() {
        for name in [
            "dgx-h100", "dgx-a100", "dgx-b200", "hgx-h200", "hgx-h20", "l40s-x4",
        ] {
            let f = generated(name);
            for d in f["devices"].as_array().unwrap() {
                let model = d["name"].as_str().unwrap();
                let fp16 = tops(d, Precision::Fp16).unwrap();
                let ratio = fp16 / spec_tops(model, Precision::Fp16);
                assert!((0.71..0.73).contains(&ratio), "{name}: {ratio}");
                assert_eq!(d["compute_processes"], Value::Array(vec![]), "{name}");
                assert_eq!(d["telemetry"]["throttle_reasons"], 0, "{name}");
            }
        }
        // The A100 has no FP8.
        assert_eq!(
            tops(&generated("dgx-a100")["devices"][0], Precision::Fp8),
            None
        );
        // GeForce is not a data-centre part: telemetry, but no benchmark.
        let geforce = &generated("rtx-4090d-x8")["devices"][0];
        assert!(geforce.get("benchmark").is_none());
        assert!(geforce["telemetry"]["sm_clock_mhz"].is_u64());
        // A real capture states no throughput.
        assert!(
            generated("capture-a100-sxm4-v12")["devices"][0]
                .get("benchmark")
                .is_none()
        );
    }

    #[test]
    fn the_measurement_scenarios_are_what_their_names_say() {
        let busy = generated("busy-h100");
        let gpus = busy["devices"].as_array().unwrap();
        assert_eq!(gpus.len(), 8);
        let pids: Vec<u64> = gpus[0]["compute_processes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["pid"].as_u64().unwrap())
            .collect();
        assert_eq!(pids, [4242, 4243]);
        assert_eq!(gpus[0]["memory"]["used_bytes"], 7_516_192_768u64);
        assert!(
            gpus[1..]
                .iter()
                .all(|g| g["compute_processes"] == Value::Array(vec![]))
        );

        let derated = &generated("derated-h100")["devices"][0];
        let ratio =
            tops(derated, Precision::Fp8).unwrap() / spec_tops("H100 SXM5 80GB", Precision::Fp8);
        assert!((0.39..0.41).contains(&ratio), "{ratio}");
        let t = &derated["telemetry"];
        assert!(t["sm_clock_mhz"].as_u64().unwrap() < 1980 * 6 / 10);
        assert_eq!(t["power_usage_mw"], derated["power_limit_mw"]);
        assert_eq!(t["throttle_reasons"], 0x4 | 0x8);

        let relabelled = &generated("relabelled-h20")["devices"][0];
        assert_eq!(relabelled["name"], "NVIDIA H20");
        assert_eq!(relabelled["pci"]["pci_device_id"], "0x232910DE");
        let fp8 = tops(relabelled, Precision::Fp8).unwrap();
        assert_eq!(
            Some(fp8),
            tops(&generated("dgx-h100")["devices"][0], Precision::Fp8)
        );
        assert!(fp8 > 4.0 * spec_tops("H20", Precision::Fp8));

        let unlisted = &generated("unlisted-gpu")["devices"][0];
        let id = u32::from_str_radix(
            unlisted["pci"]["pci_device_id"]
                .as_str()
                .unwrap()
                .trim_start_matches("0x"),
            16,
        )
        .unwrap();
        assert_eq!(id & 0xFFFF, 0x10DE, "an NVIDIA vendor id");
        assert!(matches!(
            lookup(Some(id), unlisted["name"].as_str()),
            SpecMatch::Unknown { .. }
        ));
        let fp16 = tops(unlisted, Precision::Fp16).unwrap();
        let fp8 = tops(unlisted, Precision::Fp8).unwrap();
        assert!((450.0..550.0).contains(&fp16) && (900.0..1100.0).contains(&fp8));
    }

    #[test]
    fn uuids_are_deterministic_v8() {
        let a = super::synthetic_uuid("dgx-h100/gpu/0");
        assert_eq!(a, super::synthetic_uuid("dgx-h100/gpu/0"));
        assert_ne!(a, super::synthetic_uuid("dgx-h100/gpu/1"));
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "8");
        assert!(matches!(&a[19..20], "8" | "9" | "a" | "b"));
    }
}
