//! The simulated device: its configuration (from the environment), its GEMM rates, and the
//! GEMM type combinations cuBLAS and cuBLASLt accept.

use std::ffi::c_int;

/// Compute capability, `MAJOR.MINOR` (default `9.0`, Hopper).
pub const CC_ENV: &str = "TPPGUARD_FAKE_CUDA_CC";
/// The device's PCI bus id (default `00000000:10:00.0`, GPU 0 of the `dgx-h100` NVML fixture).
pub const PCI_BUS_ID_ENV: &str = "TPPGUARD_FAKE_CUDA_PCI_BUS_ID";
/// `cuDriverGetVersion`'s answer (default 13000).
pub const DRIVER_VERSION_ENV: &str = "TPPGUARD_FAKE_CUDA_DRIVER_VERSION";
/// Free device memory before any allocation, bytes (default: 79 GiB).
pub const FREE_BYTES_ENV: &str = "TPPGUARD_FAKE_CUDA_FREE_BYTES";

/// Device memory, bytes (an 80 GB H100).
pub const TOTAL_BYTES: u64 = 80 << 30;
/// cuBLAS and cuBLASLt version: major, minor, patch.
pub const CUBLAS_VERSION: [c_int; 3] = [13, 0, 2];
/// The oldest driver cuBLAS 13 starts on (`cuDriverGetVersion` of CUDA 13.0).
pub const CUBLAS_MIN_DRIVER: c_int = 13000;

/// The simulated device, read from the environment at `cuInit`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Config {
    /// `(major, minor)`.
    pub cc: (c_int, c_int),
    /// PCI domain, bus, device.
    pub pci: (c_int, c_int, c_int),
    /// As `cuDriverGetVersion` gives it.
    pub driver_version: c_int,
    /// Free device memory with nothing allocated.
    pub free_bytes: u64,
}

impl Config {
    /// The configuration the environment asks for; an error names the variable at fault.
    pub fn from_env() -> Result<Self, String> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let bad = |name: &str, value: &str| format!("{name}={value:?} is not valid");
        let cc = match var(CC_ENV) {
            None => (9, 0),
            Some(v) => v
                .split_once('.')
                .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)))
                .filter(|&(a, b): &(c_int, c_int)| (1..=20).contains(&a) && (0..=9).contains(&b))
                .ok_or_else(|| bad(CC_ENV, &v))?,
        };
        let pci = match var(PCI_BUS_ID_ENV) {
            None => (0, 0x10, 0),
            Some(v) => parse_pci_bus_id(&v).ok_or_else(|| bad(PCI_BUS_ID_ENV, &v))?,
        };
        let driver_version = match var(DRIVER_VERSION_ENV) {
            None => 13000,
            Some(v) => v
                .parse()
                .ok()
                .filter(|&d: &c_int| d >= 1000)
                .ok_or_else(|| bad(DRIVER_VERSION_ENV, &v))?,
        };
        let free_bytes = match var(FREE_BYTES_ENV) {
            None => TOTAL_BYTES - (1 << 30),
            Some(v) => v
                .parse()
                .ok()
                .filter(|&f| f <= TOTAL_BYTES)
                .ok_or_else(|| bad(FREE_BYTES_ENV, &v))?,
        };
        Ok(Self {
            cc,
            pci,
            driver_version,
            free_bytes,
        })
    }
}

/// The dense GEMM rates of a device of compute capability `cc`.
pub fn rates(cc: (c_int, c_int)) -> Rates {
    if cc.0 >= 9 { HOPPER } else { AMPERE }
}

/// `DOMAIN:BUS:DEVICE.FUNCTION` in hex, as NVML writes it (the domain may be left out).
fn parse_pci_bus_id(id: &str) -> Option<(c_int, c_int, c_int)> {
    let hex = |s: &str| c_int::from_str_radix(s, 16).ok().filter(|v| *v >= 0);
    let (rest, _function) = id.rsplit_once('.')?;
    let mut parts = rest.rsplit(':');
    let device = hex(parts.next()?)?;
    let bus = hex(parts.next()?)?;
    let domain = parts.next().map_or(Some(0), hex)?;
    parts.next().is_none().then_some((domain, bus, device))
}

/// Dense GEMM rates in TFLOPS (TOPS for INT8). `None`: the device has no such GEMM.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rates {
    /// E4M3/E5M2 inputs, FP32 accumulation (fast accumulation on: Hopper's quoted mode).
    pub fp8: Option<f64>,
    /// INT8 inputs, INT32 accumulation, in the TN layout the integer tensor-core kernels run.
    pub int8: f64,
    /// FP16 inputs.
    pub fp16: f64,
    /// BF16 inputs.
    pub bf16: Option<f64>,
    /// FP32 data on the tensor cores (`CUBLAS_COMPUTE_32F_FAST_TF32`).
    pub tf32: Option<f64>,
    /// FP32 on the SIMT units (`CUBLAS_COMPUTE_32F` with FP32 data).
    pub fp32: f64,
    /// FP64.
    pub fp64: f64,
}

/// An H100 SXM-like part (compute capability 9.x).
pub const HOPPER: Rates = Rates {
    fp8: Some(1300.0),
    int8: 1300.0,
    fp16: 700.0,
    bf16: Some(700.0),
    tf32: Some(350.0),
    fp32: 60.0,
    fp64: 55.0,
};

/// An Ampere workstation-like part (every other compute capability; FP8 from 8.9 on, at the
/// INT8 rate).
pub const AMPERE: Rates = Rates {
    fp8: None,
    int8: 280.0,
    fp16: 140.0,
    bf16: Some(140.0),
    tf32: Some(70.0),
    fp32: 35.0,
    fp64: 0.55,
};

/// The units a GEMM runs on, which fix its rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Unit {
    Fp8,
    Int8,
    Fp16,
    Bf16,
    Tf32,
    Fp32,
    Fp64,
}

impl Unit {
    /// The rate of this unit on a device of compute capability `cc`, TFLOPS; `None` where
    /// it has none.
    pub fn tflops(self, cc: (c_int, c_int)) -> Option<f64> {
        let rates = rates(cc);
        match self {
            // Ada (8.9) runs FP8 at its INT8 rate.
            Self::Fp8 => (cc >= (8, 9)).then(|| rates.fp8.unwrap_or(rates.int8)),
            Self::Int8 => Some(rates.int8),
            Self::Fp16 => Some(rates.fp16),
            Self::Bf16 => rates.bf16.filter(|_| cc >= (8, 0)),
            Self::Tf32 => rates.tf32.filter(|_| cc >= (8, 0)),
            Self::Fp32 => Some(rates.fp32),
            Self::Fp64 => Some(rates.fp64),
        }
    }
}

/// `cudaDataType_t` values.
pub mod dtype {
    use std::ffi::c_int;
    pub const R_32F: c_int = 0;
    pub const R_64F: c_int = 1;
    pub const R_16F: c_int = 2;
    pub const R_8I: c_int = 3;
    pub const R_32I: c_int = 10;
    pub const R_16BF: c_int = 14;
    pub const R_8F_E4M3: c_int = 28;
    pub const R_8F_E5M2: c_int = 29;

    /// Bytes per element, for the types the fake knows.
    pub fn size(t: c_int) -> Option<u64> {
        match t {
            R_8I | R_8F_E4M3 | R_8F_E5M2 => Some(1),
            R_16F | R_16BF => Some(2),
            R_32F | R_32I => Some(4),
            R_64F => Some(8),
            _ => None,
        }
    }
}

/// `cublasComputeType_t` values.
pub mod compute {
    use std::ffi::c_int;
    pub const C_16F: c_int = 64;
    pub const C_16F_PEDANTIC: c_int = 65;
    pub const C_32F: c_int = 68;
    pub const C_32F_PEDANTIC: c_int = 69;
    pub const C_64F: c_int = 70;
    pub const C_64F_PEDANTIC: c_int = 71;
    pub const C_32I: c_int = 72;
    pub const C_32I_PEDANTIC: c_int = 73;
    pub const C_32F_FAST_16F: c_int = 74;
    pub const C_32F_FAST_16BF: c_int = 75;
    pub const C_32F_FAST_TF32: c_int = 77;
}

/// The type of `alpha` and `beta` (the scale type), which the compute type fixes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    /// `__half`.
    F16,
    /// `float`.
    F32,
    /// `double`.
    F64,
    /// `int32_t`.
    I32,
}

impl Scale {
    /// The scale type of a compute type.
    pub fn of(compute_type: c_int) -> Option<Self> {
        use compute::*;
        match compute_type {
            C_16F | C_16F_PEDANTIC => Some(Self::F16),
            C_32F | C_32F_PEDANTIC | C_32F_FAST_16F | C_32F_FAST_16BF | C_32F_FAST_TF32 => {
                Some(Self::F32)
            }
            C_64F | C_64F_PEDANTIC => Some(Self::F64),
            C_32I | C_32I_PEDANTIC => Some(Self::I32),
            _ => None,
        }
    }

    /// Its `cudaDataType_t`, as cuBLASLt's scale type names it.
    pub fn data_type(self) -> c_int {
        match self {
            Self::F16 => dtype::R_16F,
            Self::F32 => dtype::R_32F,
            Self::F64 => dtype::R_64F,
            Self::I32 => dtype::R_32I,
        }
    }
}

/// The unit running a real-valued GEMM of A/B type `ab`, C type `c` and `compute_type`, if
/// cuBLAS has that combination (the table under `cublasGemmEx` in the cuBLAS docs, real types
/// only; FP8 only through cuBLASLt).
pub fn gemm_unit(ab: c_int, c: c_int, compute_type: c_int) -> Option<Unit> {
    use compute::*;
    use dtype::*;
    match (compute_type, ab, c) {
        (C_16F | C_16F_PEDANTIC, R_16F, R_16F) => Some(Unit::Fp16),
        (C_32F | C_32F_PEDANTIC, R_16F, R_16F | R_32F) => Some(Unit::Fp16),
        (C_32F | C_32F_PEDANTIC, R_16BF, R_16BF | R_32F) => Some(Unit::Bf16),
        (C_32F | C_32F_PEDANTIC, R_8I, R_32F) => Some(Unit::Int8),
        (C_32F | C_32F_PEDANTIC, R_32F, R_32F) => Some(Unit::Fp32),
        (C_32F_FAST_16F, R_32F, R_32F) => Some(Unit::Fp16),
        (C_32F_FAST_16BF, R_32F, R_32F) => Some(Unit::Bf16),
        (C_32F_FAST_TF32, R_32F, R_32F) => Some(Unit::Tf32),
        (C_64F | C_64F_PEDANTIC, R_64F, R_64F) => Some(Unit::Fp64),
        (C_32I | C_32I_PEDANTIC, R_8I, R_32I) => Some(Unit::Int8),
        _ => None,
    }
}

/// `cublasOperation_t`: `CUBLAS_OP_N`.
pub const OP_N: c_int = 0;
/// `CUBLAS_OP_T`.
pub const OP_T: c_int = 1;
/// `CUBLAS_OP_C` (a transpose, for real types).
pub const OP_C: c_int = 2;

/// Whether `op` is a `cublasOperation_t`.
pub fn is_op(op: c_int) -> bool {
    matches!(op, OP_N | OP_T | OP_C)
}

/// Rows and columns of a matrix as stored, when `op` of it is `rows`×`cols`.
pub fn stored(op: c_int, rows: u64, cols: u64) -> (u64, u64) {
    if op == OP_N {
        (rows, cols)
    } else {
        (cols, rows)
    }
}

/// Bytes a column-major `rows`×`cols` matrix with leading dimension `ld` spans (0 when empty),
/// or `None` past `u64`.
pub fn span_bytes(rows: u64, cols: u64, ld: u64, element: u64) -> Option<u64> {
    if rows == 0 || cols == 0 {
        return Some(0);
    }
    (cols - 1)
        .checked_mul(ld)?
        .checked_add(rows)?
        .checked_mul(element)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bus_ids_and_spans() {
        assert_eq!(parse_pci_bus_id("00000000:10:00.0"), Some((0, 0x10, 0)));
        assert_eq!(parse_pci_bus_id("0001:DB:1f.0"), Some((1, 0xdb, 0x1f)));
        assert_eq!(parse_pci_bus_id("18:00.0"), Some((0, 0x18, 0)));
        assert_eq!(parse_pci_bus_id("10:00"), None);
        assert_eq!(parse_pci_bus_id("0:0:10:00.0"), None);
        assert_eq!(span_bytes(4, 3, 5, 2), Some((2 * 5 + 4) * 2));
        assert_eq!(span_bytes(0, 3, 5, 2), Some(0));
        assert_eq!(span_bytes(u64::MAX, 3, u64::MAX, 1), None);
        assert_eq!(stored(OP_T, 2, 3), (3, 2));
    }

    #[test]
    fn units_by_compute_capability() {
        assert_eq!(Unit::Fp8.tflops((9, 0)), Some(1300.0));
        assert_eq!(Unit::Fp64.tflops((9, 0)), Some(55.0));
        assert_eq!(Unit::Fp8.tflops((8, 6)), None);
        assert_eq!(Unit::Fp8.tflops((8, 9)), Some(280.0));
        assert_eq!(Unit::Tf32.tflops((8, 6)), Some(70.0));
        assert_eq!(Unit::Bf16.tflops((7, 5)), None);
        assert_eq!(
            gemm_unit(dtype::R_8I, dtype::R_32I, compute::C_32I),
            Some(Unit::Int8)
        );
        assert_eq!(gemm_unit(dtype::R_8I, dtype::R_8I, compute::C_32I), None);
        assert_eq!(
            gemm_unit(dtype::R_32F, dtype::R_32F, compute::C_32F),
            Some(Unit::Fp32)
        );
    }
}
