//! Reference values: NVIDIA's reference integrity manifests (RIMs), read from a local folder
//! (`[vendor] reference_values` in trust.toml, or `gpu-evidence verify --rims DIR`), and the
//! `measurements` check.
//!
//! A RIM is an ISO/IEC 19770-2 SWID tag (XML): `SoftwareIdentity/Meta@colloquialVersion` is the
//! driver version (`550.90.07`) or VBIOS version (`96.00.9F.00.01`) it describes, and each
//! `SoftwareIdentity/Payload/Resource` is one reference measurement: `index` (0-based),
//! `active` (`True`/`False`), `alternatives` (N) and `Hash0` .. `Hash{N-1}` (hex SHA-384, in the
//! `http://www.w3.org/2001/04/xmlenc#sha384` namespace), `size` (bytes).
//!
//! As nvtrust's verifier does, the driver RIM is the one whose version is the report's driver
//! version and the VBIOS RIM the one whose version is the report's VBIOS version (several VBIOS
//! RIMs of one version are told apart by the `PROJECT_PROJECTSKU_CHIPSKU` prefix NVIDIA's file
//! names carry); RIM index `i` is compared with the report's measurement block `i + 1` (SPDM
//! indices start at 1); a reference matches when any alternative equals the block's value and
//! `size` its length. Unlike nvtrust (which compares the status byte with an enum and never
//! skips), index 35 is skipped only when the signed report says NVDEC0 is disabled (0x55).
//!
//! **Not verified**: the RIMs' XML signatures (XMLDSig, exclusive c14n) and their signing
//! chains. The folder is trusted as the verifier's own configuration, like trust.toml's roots:
//! put only RIMs you obtained from NVIDIA (and checked) there.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use tppguard_proto::gpu_evidence::opaque::Nvdec0Status;
use tppguard_proto::gpu_evidence::spdm::Report;
use tppguard_proto::text::escape;

use super::Outcome;

/// The largest RIM file read.
pub const MAX_RIM_FILE_BYTES: u64 = 1024 * 1024;
/// The most RIM files a folder may hold.
pub const MAX_RIM_FILES: usize = 1024;
/// The most XML nodes one RIM may hold.
pub const MAX_RIM_NODES: u32 = 100_000;
/// The most reference measurements (and alternatives per measurement) one RIM may hold.
pub const MAX_RIM_MEASUREMENTS: usize = 256;
/// The RIM index skipped when the report says NVDEC0 is disabled.
pub const NVDEC0_RIM_INDEX: u32 = 35;

const HASH_NAMESPACE: &str = "http://www.w3.org/2001/04/xmlenc#sha384";

/// One reference measurement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// Whether it is compared.
    pub active: bool,
    /// The accepted values.
    pub alternatives: Vec<Vec<u8>>,
    /// The value's length in bytes.
    pub size: usize,
}

/// One RIM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rim {
    /// Its file name.
    pub file: String,
    /// `Meta@colloquialVersion`, lower-case.
    pub version: String,
    /// Its references by RIM index (0-based).
    pub references: BTreeMap<u32, Reference>,
}

/// The RIMs of a folder.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReferenceValues {
    rims: Vec<Rim>,
}

/// Why a RIM folder or file could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RimError {
    /// The folder or a file could not be read.
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        /// The path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A file is larger than [`MAX_RIM_FILE_BYTES`].
    #[error("{}: more than the {max} bytes a RIM may have", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The limit.
        max: u64,
    },
    /// The folder holds more than [`MAX_RIM_FILES`] RIM files.
    #[error("{}: more than {max} RIM files", path.display())]
    TooMany {
        /// The folder.
        path: PathBuf,
        /// The limit.
        max: usize,
    },
    /// A file is not a RIM tppguard can read.
    #[error("RIM {file}: {detail}; put NVIDIA's SWID-tag RIMs (driver and VBIOS) in the folder")]
    Invalid {
        /// The file name, escaped.
        file: String,
        /// What is wrong.
        detail: String,
    },
}

impl RimError {
    /// A stable snake_case code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Read { .. } => "rim_unreadable",
            Self::TooLarge { .. } => "rim_too_large",
            Self::TooMany { .. } => "rim_too_many",
            Self::Invalid { .. } => "rim_invalid",
        }
    }
}

fn invalid(file: &str, detail: impl Into<String>) -> RimError {
    RimError::Invalid {
        file: escape(file).into_owned(),
        detail: detail.into(),
    }
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| {
            text.get(i..i + 2)
                .and_then(|b| u8::from_str_radix(b, 16).ok())
        })
        .collect()
}

impl Rim {
    /// Parses one RIM (DTDs refused, at most [`MAX_RIM_NODES`] nodes).
    pub fn parse(file: &str, xml: &str) -> Result<Self, RimError> {
        let options = roxmltree::ParsingOptions {
            allow_dtd: false,
            nodes_limit: MAX_RIM_NODES,
            ..roxmltree::ParsingOptions::default()
        };
        let doc = roxmltree::Document::parse_with_options(xml, options)
            .map_err(|e| invalid(file, format!("not XML ({e})")))?;
        let root = doc.root_element();
        if root.tag_name().name() != "SoftwareIdentity" {
            return Err(invalid(file, "the root element is not SoftwareIdentity"));
        }
        let child = |name: &str| root.children().find(|n| n.tag_name().name() == name);
        let version = child("Meta")
            .and_then(|m| m.attribute("colloquialVersion"))
            .filter(|v| !v.is_empty())
            .ok_or_else(|| invalid(file, "no Meta colloquialVersion"))?
            .to_ascii_lowercase();
        let payload = child("Payload").ok_or_else(|| invalid(file, "no Payload"))?;
        let mut references = BTreeMap::new();
        for resource in payload
            .children()
            .filter(|n| n.tag_name().name() == "Resource")
        {
            if references.len() >= MAX_RIM_MEASUREMENTS {
                return Err(invalid(file, "too many Resource elements"));
            }
            let (index, reference) = Self::resource(file, resource)?;
            if references.insert(index, reference).is_some() {
                return Err(invalid(file, format!("index {index} appears twice")));
            }
        }
        Ok(Self {
            file: file.to_owned(),
            version,
            references,
        })
    }

    fn resource(file: &str, node: roxmltree::Node<'_, '_>) -> Result<(u32, Reference), RimError> {
        let number = |name: &str| -> Result<usize, RimError> {
            node.attribute(name)
                .and_then(|v| v.parse::<usize>().ok())
                .ok_or_else(|| invalid(file, format!("a Resource has no numeric {name}")))
        };
        let index = u32::try_from(number("index")?)
            .map_err(|_| invalid(file, "a Resource index is too large"))?;
        let count = number("alternatives")?;
        if count > MAX_RIM_MEASUREMENTS {
            return Err(invalid(
                file,
                format!("index {index}: too many alternatives"),
            ));
        }
        let active = match node.attribute("active") {
            Some(v) if v.eq_ignore_ascii_case("true") => true,
            Some(v) if v.eq_ignore_ascii_case("false") => false,
            _ => {
                return Err(invalid(
                    file,
                    format!("index {index}: active is not True or False"),
                ));
            }
        };
        let mut alternatives = Vec::with_capacity(count);
        for i in 0..count {
            let name = format!("Hash{i}");
            let hash = node
                .attribute((HASH_NAMESPACE, name.as_str()))
                .and_then(unhex)
                .ok_or_else(|| {
                    invalid(file, format!("index {index}: {name} is missing or not hex"))
                })?;
            alternatives.push(hash);
        }
        Ok((
            index,
            Reference {
                active,
                alternatives,
                size: number("size")?,
            },
        ))
    }
}

impl ReferenceValues {
    /// The RIMs given (tests, embedders).
    pub fn from_rims(rims: Vec<Rim>) -> Self {
        Self { rims }
    }

    /// Every `*.xml` and `*.swidtag` file of `dir` (not its subfolders), by name order.
    pub fn load_dir(dir: &Path) -> Result<Self, RimError> {
        let read_err = |path: &Path| {
            let path = path.to_owned();
            move |source| RimError::Read { path, source }
        };
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(read_err(dir))? {
            let path = entry.map_err(read_err(dir))?.path();
            let is_rim = path.extension().and_then(|e| e.to_str()).is_some_and(|e| {
                e.eq_ignore_ascii_case("xml") || e.eq_ignore_ascii_case("swidtag")
            });
            if is_rim && path.is_file() {
                if files.len() >= MAX_RIM_FILES {
                    return Err(RimError::TooMany {
                        path: dir.to_owned(),
                        max: MAX_RIM_FILES,
                    });
                }
                files.push(path);
            }
        }
        files.sort();
        let mut rims = Vec::with_capacity(files.len());
        for path in files {
            use std::io::Read;
            let mut bytes = Vec::new();
            std::fs::File::open(&path)
                .and_then(|f| f.take(MAX_RIM_FILE_BYTES + 1).read_to_end(&mut bytes))
                .map_err(read_err(&path))?;
            if u64::try_from(bytes.len()).map_or(true, |n| n > MAX_RIM_FILE_BYTES) {
                return Err(RimError::TooLarge {
                    path,
                    max: MAX_RIM_FILE_BYTES,
                });
            }
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let text = String::from_utf8(bytes).map_err(|_| invalid(&name, "not UTF-8"))?;
            rims.push(Rim::parse(&name, &text)?);
        }
        Ok(Self { rims })
    }

    /// The RIMs held.
    pub fn rims(&self) -> &[Rim] {
        &self.rims
    }

    /// The RIM of `version` (case-insensitive); among several, the one whose file name begins
    /// with `hint` (NVIDIA's `PROJECT_PROJECTSKU_CHIPSKU_`). `Err` names why none was chosen.
    fn select(&self, version: &str, hint: Option<&str>) -> Result<&Rim, &'static str> {
        let version = version.to_ascii_lowercase();
        let found: Vec<&Rim> = self.rims.iter().filter(|r| r.version == version).collect();
        match found.as_slice() {
            [] => Err("none"),
            [one] => Ok(one),
            many => {
                let hinted: Vec<&Rim> = many
                    .iter()
                    .copied()
                    .filter(|r| hint.is_some_and(|h| r.file.starts_with(h)))
                    .collect();
                match hinted.as_slice() {
                    [one] => Ok(one),
                    _ => Err("several"),
                }
            }
        }
    }
}

/// `measurements`: the report's blocks against the active references of the driver and VBIOS
/// RIMs of its versions. Only called on a report whose signature verified.
pub fn check_measurements(
    refs: Option<&ReferenceValues>,
    report: &Report<'_>,
) -> (Outcome, &'static str, String) {
    const UNSIGNED: &str = "the RIMs' XML signatures are not verified: the reference-value folder \
                            is trusted as the verifier's own configuration";
    let Some(refs) = refs else {
        return (
            Outcome::NotChecked,
            "no_reference_values",
            "no reference-value folder is configured ([vendor] reference_values or --rims)"
                .to_owned(),
        );
    };
    let opaque = report.opaque();
    let (Some(driver), Some(vbios)) = (opaque.driver_version(), opaque.vbios_version()) else {
        return (
            Outcome::NotChecked,
            "report_without_version",
            "the report lacks its driver or VBIOS version, so no RIM can be chosen".to_owned(),
        );
    };
    let hint = match (opaque.project(), opaque.project_sku(), opaque.chip_sku()) {
        (Some(p), Some(ps), Some(cs)) => Some(format!("{p}_{ps}_{cs}_")),
        _ => None,
    };
    let chosen = (
        refs.select(&driver, None),
        refs.select(&vbios, hint.as_deref()),
    );
    let (driver_rim, vbios_rim) = match chosen {
        (Ok(d), Ok(v)) => (d, v),
        (d, v) => {
            let say = |what: &str, version: &str, r: Result<&Rim, &str>| match r {
                Ok(_) => None,
                Err(why) => Some(format!("{why} for {what} {}", escape(version))),
            };
            let missing: Vec<String> = [say("driver", &driver, d), say("VBIOS", &vbios, v)]
                .into_iter()
                .flatten()
                .collect();
            return (
                Outcome::NotChecked,
                "no_rim_for_version",
                format!(
                    "the reference-value folder holds no single RIM ({}) of {} RIM(s)",
                    missing.join("; "),
                    refs.rims.len()
                ),
            );
        }
    };
    let mut golden: BTreeMap<u32, &Reference> = BTreeMap::new();
    for rim in [driver_rim, vbios_rim] {
        for (index, reference) in rim.references.iter().filter(|(_, r)| r.active) {
            if golden.insert(*index, reference).is_some() {
                return (
                    Outcome::Failed,
                    "rim_index_conflict",
                    format!(
                        "the driver RIM {} and the VBIOS RIM {} both hold an active reference \
                         at index {index}",
                        escape(&driver_rim.file),
                        escape(&vbios_rim.file)
                    ),
                );
            }
        }
    }
    let nvdec0_disabled = opaque.nvdec0_status() == Some(Nvdec0Status::Disabled);
    let mut compared = 0usize;
    let mut mismatched = Vec::new();
    for (index, reference) in &golden {
        if *index == NVDEC0_RIM_INDEX && nvdec0_disabled {
            continue;
        }
        compared += 1;
        let block = index
            .checked_add(1)
            .and_then(|i| u8::try_from(i).ok())
            .and_then(|i| report.measurement(i));
        let matches = block.is_some_and(|b| {
            b.value.len() == reference.size && reference.alternatives.contains(&b.value)
        });
        if !matches {
            mismatched.push(index.to_string());
        }
    }
    let which = format!(
        "driver RIM {} and VBIOS RIM {}",
        escape(&driver_rim.file),
        escape(&vbios_rim.file)
    );
    let skipped = if nvdec0_disabled && golden.contains_key(&NVDEC0_RIM_INDEX) {
        "; index 35 skipped: the report says NVDEC0 is disabled"
    } else {
        ""
    };
    if mismatched.is_empty() {
        (
            Outcome::Passed,
            "passed",
            format!(
                "{compared} active reference measurements of the {which} match the report{skipped}; {UNSIGNED}"
            ),
        )
    } else {
        (
            Outcome::Failed,
            "measurement_mismatch",
            format!(
                "the report's measurements differ from the {which} at RIM index(es) {} (report \
                 block = index + 1){skipped}; {UNSIGNED}",
                mismatched.join(", ")
            ),
        )
    }
}
