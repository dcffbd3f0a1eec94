//! The opaque data of NVIDIA's SPDM MEASUREMENTS response: a list of TLVs `{type u16 LE,
//! size u16 LE, value}` carrying the driver and VBIOS versions, board and SKU identifiers, the
//! FWID and the confidential-computing modes. This module owns their parsing and the typed
//! reading of the known ids; ids it does not know are kept in order and reported, never fatal,
//! so a newer driver's additions do not break verification.
//!
//! Known values are validated once, at parse time (a fixed-size field of the wrong length, a
//! count list not a multiple of 4, a version string that is not printable ASCII are errors),
//! so the accessors return plain `Option`s.

/// A known opaque-data id (nvtrust's `OpaqueDataType` numbering).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum OpaqueId {
    /// 1: the certificate issuer name.
    CertIssuerName,
    /// 2: the certificate authority key id.
    CertAuthorityKeyId,
    /// 3: the driver version, NUL-terminated ASCII ("550.90.07").
    DriverVersion,
    /// 4: GPU info.
    GpuInfo,
    /// 5: SKU.
    Sku,
    /// 6: the VBIOS version, 8 bytes.
    VbiosVersion,
    /// 7: the manufacturer id.
    ManufacturerId,
    /// 8: tamper detection.
    TamperDetection,
    /// 9: SMC.
    Smc,
    /// 10: VPR.
    Vpr,
    /// 11: NVDEC0 status, 1 byte (0xAA enabled, 0x55 disabled).
    Nvdec0Status,
    /// 12: measurement counts, u32 LE each.
    MeasurementCounts,
    /// 13: CPR info.
    CprInfo,
    /// 14: board id, u32 LE.
    BoardId,
    /// 15: chip SKU, NUL-padded ASCII.
    ChipSku,
    /// 16: chip SKU mod, NUL-padded ASCII.
    ChipSkuMod,
    /// 17: project, NUL-padded ASCII.
    Project,
    /// 18: project SKU, NUL-padded ASCII.
    ProjectSku,
    /// 19: project SKU mod, NUL-padded ASCII.
    ProjectSkuMod,
    /// 20: FWID, 48 bytes (SHA-384).
    Fwid,
    /// 21: protected PCIe status, 1 byte.
    ProtectedPcieStatus,
    /// 22: switch PDI, n x 8 bytes.
    SwitchPdi,
    /// 23: floorswept ports.
    FloorsweptPorts,
    /// 24: position id.
    PositionId,
    /// 25: lock switch status.
    LockSwitchStatus,
    /// 32: GPU link connection.
    GpuLinkConn,
    /// 33: system enable status.
    SysEnableStatus,
    /// 34: opaque data version, u32 LE.
    OpaqueDataVersion,
    /// 35: chip info, NUL-terminated ASCII.
    ChipInfo,
    /// 36: feature flag, u32 LE (0 SPT, 1 MPT, 2 PPCIE).
    FeatureFlag,
    /// 255: invalid.
    Invalid,
}

impl OpaqueId {
    /// The known id of `id`, if any.
    pub fn from_u16(id: u16) -> Option<Self> {
        Some(match id {
            1 => Self::CertIssuerName,
            2 => Self::CertAuthorityKeyId,
            3 => Self::DriverVersion,
            4 => Self::GpuInfo,
            5 => Self::Sku,
            6 => Self::VbiosVersion,
            7 => Self::ManufacturerId,
            8 => Self::TamperDetection,
            9 => Self::Smc,
            10 => Self::Vpr,
            11 => Self::Nvdec0Status,
            12 => Self::MeasurementCounts,
            13 => Self::CprInfo,
            14 => Self::BoardId,
            15 => Self::ChipSku,
            16 => Self::ChipSkuMod,
            17 => Self::Project,
            18 => Self::ProjectSku,
            19 => Self::ProjectSkuMod,
            20 => Self::Fwid,
            21 => Self::ProtectedPcieStatus,
            22 => Self::SwitchPdi,
            23 => Self::FloorsweptPorts,
            24 => Self::PositionId,
            25 => Self::LockSwitchStatus,
            32 => Self::GpuLinkConn,
            33 => Self::SysEnableStatus,
            34 => Self::OpaqueDataVersion,
            35 => Self::ChipInfo,
            36 => Self::FeatureFlag,
            255 => Self::Invalid,
            _ => return None,
        })
    }

    /// The numeric id.
    pub fn as_u16(self) -> u16 {
        match self {
            Self::CertIssuerName => 1,
            Self::CertAuthorityKeyId => 2,
            Self::DriverVersion => 3,
            Self::GpuInfo => 4,
            Self::Sku => 5,
            Self::VbiosVersion => 6,
            Self::ManufacturerId => 7,
            Self::TamperDetection => 8,
            Self::Smc => 9,
            Self::Vpr => 10,
            Self::Nvdec0Status => 11,
            Self::MeasurementCounts => 12,
            Self::CprInfo => 13,
            Self::BoardId => 14,
            Self::ChipSku => 15,
            Self::ChipSkuMod => 16,
            Self::Project => 17,
            Self::ProjectSku => 18,
            Self::ProjectSkuMod => 19,
            Self::Fwid => 20,
            Self::ProtectedPcieStatus => 21,
            Self::SwitchPdi => 22,
            Self::FloorsweptPorts => 23,
            Self::PositionId => 24,
            Self::LockSwitchStatus => 25,
            Self::GpuLinkConn => 32,
            Self::SysEnableStatus => 33,
            Self::OpaqueDataVersion => 34,
            Self::ChipInfo => 35,
            Self::FeatureFlag => 36,
            Self::Invalid => 255,
        }
    }

    /// The snake_case name, as reports and errors print it.
    pub fn name(self) -> &'static str {
        match self {
            Self::CertIssuerName => "cert_issuer_name",
            Self::CertAuthorityKeyId => "cert_authority_key_id",
            Self::DriverVersion => "driver_version",
            Self::GpuInfo => "gpu_info",
            Self::Sku => "sku",
            Self::VbiosVersion => "vbios_version",
            Self::ManufacturerId => "manufacturer_id",
            Self::TamperDetection => "tamper_detection",
            Self::Smc => "smc",
            Self::Vpr => "vpr",
            Self::Nvdec0Status => "nvdec0_status",
            Self::MeasurementCounts => "measurement_counts",
            Self::CprInfo => "cpr_info",
            Self::BoardId => "board_id",
            Self::ChipSku => "chip_sku",
            Self::ChipSkuMod => "chip_sku_mod",
            Self::Project => "project",
            Self::ProjectSku => "project_sku",
            Self::ProjectSkuMod => "project_sku_mod",
            Self::Fwid => "fwid",
            Self::ProtectedPcieStatus => "protected_pcie_status",
            Self::SwitchPdi => "switch_pdi",
            Self::FloorsweptPorts => "floorswept_ports",
            Self::PositionId => "position_id",
            Self::LockSwitchStatus => "lock_switch_status",
            Self::GpuLinkConn => "gpu_link_conn",
            Self::SysEnableStatus => "sys_enable_status",
            Self::OpaqueDataVersion => "opaque_data_version",
            Self::ChipInfo => "chip_info",
            Self::FeatureFlag => "feature_flag",
            Self::Invalid => "invalid",
        }
    }

    /// What a value of this id must look like, checked at parse time.
    fn shape(self) -> Shape {
        match self {
            Self::DriverVersion
            | Self::ChipSku
            | Self::ChipSkuMod
            | Self::Project
            | Self::ProjectSku
            | Self::ProjectSkuMod
            | Self::ChipInfo => Shape::Text,
            Self::VbiosVersion => Shape::Fixed(VBIOS_VERSION_LEN),
            Self::Nvdec0Status | Self::ProtectedPcieStatus => Shape::Fixed(1),
            Self::BoardId | Self::OpaqueDataVersion | Self::FeatureFlag => Shape::Fixed(4),
            Self::Fwid => Shape::Fixed(FWID_LEN),
            Self::MeasurementCounts => Shape::U32List,
            _ => Shape::Raw,
        }
    }
}

/// The length of the VBIOS version value.
pub const VBIOS_VERSION_LEN: usize = 8;
/// The length of the FWID value (a SHA-384 digest).
pub const FWID_LEN: usize = 48;

enum Shape {
    /// Printable ASCII, optionally followed by NUL padding.
    Text,
    /// Exactly this many bytes.
    Fixed(usize),
    /// A list of u32 LE: a multiple of 4 bytes.
    U32List,
    /// Anything (kept as bytes, no typed accessor).
    Raw,
}

/// One opaque-data TLV, as found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpaqueField {
    /// The type id.
    pub id: u16,
    /// The value bytes.
    pub value: Vec<u8>,
}

/// NVDEC0 status (opaque id 11).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nvdec0Status {
    /// 0xAA.
    Enabled,
    /// 0x55.
    Disabled,
    /// Any other byte.
    Other(u8),
}

/// The confidential-computing feature flag (opaque id 36).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeatureFlag {
    /// 0: single-GPU passthrough.
    Spt,
    /// 1: multi-GPU passthrough.
    Mpt,
    /// 2: protected PCIe.
    Ppcie,
    /// Any other value.
    Other(u32),
}

/// Why opaque data could not be parsed. Offsets count from the start of the opaque data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OpaqueError {
    /// A TLV header or value runs past the end of the opaque data.
    #[error(
        "opaque data {what} at offset {offset} needs {need} bytes but only {have} are left; \
         the report is truncated or its opaque-data lengths are corrupt: collect it again"
    )]
    Truncated {
        /// `field header` or `field value`.
        what: &'static str,
        /// Where it starts.
        offset: usize,
        /// Bytes it needs.
        need: usize,
        /// Bytes left.
        have: usize,
    },
    /// A known id appears twice.
    #[error(
        "opaque data field `{name}` (id {id}) appears twice (again at offset {offset}); a \
         genuine report carries each known field once: treat the report as forged"
    )]
    DuplicateField {
        /// The id.
        id: u16,
        /// Its name.
        name: &'static str,
        /// The second occurrence's offset.
        offset: usize,
    },
    /// A fixed-size known field has the wrong length.
    #[error(
        "opaque data field `{name}` (id {id}) at offset {offset} is {len} bytes, not the \
         {expected} its format fixes: the report is malformed"
    )]
    WrongLength {
        /// The id.
        id: u16,
        /// Its name.
        name: &'static str,
        /// Where its value starts.
        offset: usize,
        /// Its length.
        len: usize,
        /// The length required.
        expected: usize,
    },
    /// A list of u32 values is not a multiple of 4 bytes.
    #[error(
        "opaque data field `{name}` (id {id}) at offset {offset} is {len} bytes, not a \
         multiple of 4 (a list of u32 values): the report is malformed"
    )]
    CountListLength {
        /// The id.
        id: u16,
        /// Its name.
        name: &'static str,
        /// Where its value starts.
        offset: usize,
        /// Its length.
        len: usize,
    },
    /// A text field holds a byte that is not printable ASCII (before its NUL padding).
    #[error(
        "opaque data field `{name}` (id {id}) at offset {offset} holds byte 0x{byte:02x} at \
         position {position}, not printable ASCII followed by NUL padding: the report is \
         malformed"
    )]
    NotAscii {
        /// The id.
        id: u16,
        /// Its name.
        name: &'static str,
        /// Where its value starts.
        offset: usize,
        /// The offending position within the value.
        position: usize,
        /// The offending byte.
        byte: u8,
    },
}

impl OpaqueError {
    /// The stable snake_case code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Truncated { .. } => "opaque_truncated",
            Self::DuplicateField { .. } => "opaque_duplicate_field",
            Self::WrongLength { .. } => "opaque_wrong_length",
            Self::CountListLength { .. } => "opaque_count_list_length",
            Self::NotAscii { .. } => "opaque_not_ascii",
        }
    }
}

/// Parsed opaque data: every TLV in order, the known ones validated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpaqueData {
    fields: Vec<OpaqueField>,
}

const TLV_HEADER_LEN: usize = 4;

impl OpaqueData {
    /// Parses and validates the TLVs of `bytes` (the whole opaque data, nothing after it).
    pub fn parse(bytes: &[u8]) -> Result<Self, OpaqueError> {
        let mut fields = Vec::new();
        let mut seen = [false; 256];
        let mut offset = 0usize;
        let mut rest = bytes;
        while !rest.is_empty() {
            let ([a, b, c, d], after) =
                rest.split_first_chunk::<TLV_HEADER_LEN>()
                    .ok_or(OpaqueError::Truncated {
                        what: "field header",
                        offset,
                        need: TLV_HEADER_LEN,
                        have: rest.len(),
                    })?;
            let id = u16::from_le_bytes([*a, *b]);
            let size = usize::from(u16::from_le_bytes([*c, *d]));
            let value_offset = offset + TLV_HEADER_LEN;
            let (value, after) = after.split_at_checked(size).ok_or(OpaqueError::Truncated {
                what: "field value",
                offset: value_offset,
                need: size,
                have: after.len(),
            })?;
            if let Some(known) = OpaqueId::from_u16(id) {
                let slot = usize::from(known.as_u16() & 0xff);
                if seen.get(slot).copied().unwrap_or(false) {
                    return Err(OpaqueError::DuplicateField {
                        id,
                        name: known.name(),
                        offset,
                    });
                }
                if let Some(flag) = seen.get_mut(slot) {
                    *flag = true;
                }
                validate(known, value, value_offset)?;
            }
            fields.push(OpaqueField {
                id,
                value: value.to_vec(),
            });
            offset = value_offset + size;
            rest = after;
        }
        Ok(Self { fields })
    }

    /// Every field, in the order found.
    pub fn fields(&self) -> &[OpaqueField] {
        &self.fields
    }

    /// The value of the first field with `id`.
    pub fn get(&self, id: u16) -> Option<&[u8]> {
        self.fields
            .iter()
            .find(|field| field.id == id)
            .map(|field| field.value.as_slice())
    }

    fn known(&self, id: OpaqueId) -> Option<&[u8]> {
        self.get(id.as_u16())
    }

    fn text(&self, id: OpaqueId) -> Option<String> {
        self.known(id).map(trim_text)
    }

    fn u32_of(&self, id: OpaqueId) -> Option<u32> {
        let bytes: [u8; 4] = self.known(id)?.try_into().ok()?;
        Some(u32::from_le_bytes(bytes))
    }

    fn byte_of(&self, id: OpaqueId) -> Option<u8> {
        match self.known(id)? {
            [byte] => Some(*byte),
            _ => None,
        }
    }

    /// The driver version ("550.90.07").
    pub fn driver_version(&self) -> Option<String> {
        self.text(OpaqueId::DriverVersion)
    }

    /// The VBIOS version as NVIDIA's tools print it ("96.00.9F.00.01").
    pub fn vbios_version(&self) -> Option<String> {
        let bytes: [u8; VBIOS_VERSION_LEN] = self.known(OpaqueId::VbiosVersion)?.try_into().ok()?;
        Some(format_vbios(&bytes))
    }

    /// The FWID (48 bytes).
    pub fn fwid(&self) -> Option<&[u8]> {
        self.known(OpaqueId::Fwid)
    }

    /// The board id.
    pub fn board_id(&self) -> Option<u32> {
        self.u32_of(OpaqueId::BoardId)
    }

    /// The chip SKU ("882").
    pub fn chip_sku(&self) -> Option<String> {
        self.text(OpaqueId::ChipSku)
    }

    /// The chip SKU mod.
    pub fn chip_sku_mod(&self) -> Option<String> {
        self.text(OpaqueId::ChipSkuMod)
    }

    /// The project ("1010").
    pub fn project(&self) -> Option<String> {
        self.text(OpaqueId::Project)
    }

    /// The project SKU ("0200").
    pub fn project_sku(&self) -> Option<String> {
        self.text(OpaqueId::ProjectSku)
    }

    /// The project SKU mod.
    pub fn project_sku_mod(&self) -> Option<String> {
        self.text(OpaqueId::ProjectSkuMod)
    }

    /// The chip info (a chip name).
    pub fn chip_info(&self) -> Option<String> {
        self.text(OpaqueId::ChipInfo)
    }

    /// The NVDEC0 status.
    pub fn nvdec0_status(&self) -> Option<Nvdec0Status> {
        self.byte_of(OpaqueId::Nvdec0Status).map(|byte| match byte {
            0xAA => Nvdec0Status::Enabled,
            0x55 => Nvdec0Status::Disabled,
            other => Nvdec0Status::Other(other),
        })
    }

    /// The protected PCIe status byte.
    pub fn protected_pcie_status(&self) -> Option<u8> {
        self.byte_of(OpaqueId::ProtectedPcieStatus)
    }

    /// The feature flag.
    pub fn feature_flag(&self) -> Option<FeatureFlag> {
        self.u32_of(OpaqueId::FeatureFlag).map(|value| match value {
            0 => FeatureFlag::Spt,
            1 => FeatureFlag::Mpt,
            2 => FeatureFlag::Ppcie,
            other => FeatureFlag::Other(other),
        })
    }

    /// The measurement counts.
    pub fn measurement_counts(&self) -> Option<Vec<u32>> {
        self.known(OpaqueId::MeasurementCounts).map(|bytes| {
            bytes
                .chunks_exact(4)
                .filter_map(|chunk| <[u8; 4]>::try_from(chunk).ok())
                .map(u32::from_le_bytes)
                .collect()
        })
    }

    /// The opaque data version.
    pub fn opaque_data_version(&self) -> Option<u32> {
        self.u32_of(OpaqueId::OpaqueDataVersion)
    }

    /// The ids not known to this parser, in the order found (each once).
    pub fn unknown_ids(&self) -> Vec<u16> {
        let mut ids: Vec<u16> = Vec::new();
        for field in &self.fields {
            if OpaqueId::from_u16(field.id).is_none() && !ids.contains(&field.id) {
                ids.push(field.id);
            }
        }
        ids
    }
}

fn validate(id: OpaqueId, value: &[u8], offset: usize) -> Result<(), OpaqueError> {
    let (num, name) = (id.as_u16(), id.name());
    match id.shape() {
        Shape::Text => {
            // Printable ASCII, then only NULs.
            let end = value.iter().position(|b| *b == 0).unwrap_or(value.len());
            let bad = value.iter().enumerate().find(|(i, b)| {
                if *i < end {
                    !(0x20..=0x7e).contains(*b)
                } else {
                    **b != 0
                }
            });
            match bad {
                Some((position, byte)) => Err(OpaqueError::NotAscii {
                    id: num,
                    name,
                    offset,
                    position,
                    byte: *byte,
                }),
                None => Ok(()),
            }
        }
        Shape::Fixed(expected) if value.len() != expected => Err(OpaqueError::WrongLength {
            id: num,
            name,
            offset,
            len: value.len(),
            expected,
        }),
        Shape::U32List if !value.len().is_multiple_of(4) => Err(OpaqueError::CountListLength {
            id: num,
            name,
            offset,
            len: value.len(),
        }),
        _ => Ok(()),
    }
}

fn trim_text(value: &[u8]) -> String {
    let end = value.iter().position(|b| *b == 0).unwrap_or(value.len());
    value
        .get(..end)
        .map(|text| String::from_utf8_lossy(text).into_owned())
        .unwrap_or_default()
}

/// The VBIOS version's text form: bytes 3, 2, 1, 0 and 4 as upper-case hex joined by dots
/// (`00 9f 00 96 01 00 00 00` is "96.00.9F.00.01"), as NVIDIA's tools print it.
pub fn format_vbios(bytes: &[u8; VBIOS_VERSION_LEN]) -> String {
    let [b0, b1, b2, b3, b4, ..] = *bytes;
    format!("{b3:02X}.{b2:02X}.{b1:02X}.{b0:02X}.{b4:02X}")
}
