//! The CUDA backend: dense square GEMMs through cuBLAS (`cublasGemmEx`: FP16, BF16, TF32, FP64,
//! INT8) and cuBLASLt (`cublasLtMatmul`: FP8), launched back to back on one stream and timed with
//! CUDA events.
//!
//! # Finding the libraries
//!
//! Nothing CUDA is linked at build time: cudarc `dlopen`s `libcuda`, `libcublas` and
//! `libcublasLt` by bare name on first use, through the dynamic loader's search (`LD_LIBRARY_PATH`
//! as the process started with it, `ld.so.cache`, the default folders). It honours no variable at
//! run time (`CUDA_PATH`, `CUDA_HOME` ... are read by its build script only), and the names it
//! tries come from its CUDA version feature. The agent builds it for CUDA 13.0 (`cuda-13000`), so
//! it tries `libcublas.so`, then `libcublas.so.13`, then `libcublas.so.12`, `.11` ...: the
//! libraries of a CUDA 12 or a CUDA 13 install on the loader's path are both found
//! ([`searched_names`] lists them).
//!
//! A folder outside the loader's path (PyTorch's `site-packages/nvidia/cublas/lib`, a toolkit in
//! `/usr/local/cuda/lib64` without an `ld.so.conf` entry) is named with `lib_dir`:
//! [`CudaBenchmark::open`] loads cuBLASLt and cuBLAS from it by full path first and keeps them
//! loaded. The dynamic loader answers a later lookup by bare name (cudarc's `libcublas.so.13`)
//! with an already loaded library whose `SONAME` it is, so cudarc uses those. An unversioned
//! `libcublas.so` on the loader's path still comes first in cudarc's order; `open` checks which
//! library cudarc ended up with and warns when it is not the one from `lib_dir`.
//!
//! # No panics without CUDA
//!
//! cudarc panics when a library or a symbol it needs cannot be loaded. `open` probes the driver,
//! cuBLASLt and cuBLAS first and returns [`BenchError::NoCudaDriver`] or
//! [`BenchError::MissingLibrary`]. The CUDA 13.0 bindings read CUDA events with
//! `cuEventElapsedTime_v2`, which drivers have from CUDA 12.8 (R570) on; on an older driver the
//! backend calls `cuEventElapsedTime` itself.
//!
//! # `unsafe`
//!
//! cudarc's GEMM, descriptor, library-probe and handle calls are `unsafe fn`s, even in its "safe"
//! `Gemm` / `Matmul` traits. Every one of them is in the private `ffi` module, behind a safe
//! function that checks what the call relies on (operand sizes, live handles, out-pointers), with
//! its own `#[allow(unsafe_code)]` and `// SAFETY:` comment. The rest of this file is safe code on
//! cudarc's `CudaContext`, `CudaStream`, `CudaSlice` and `CudaEvent`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use cudarc::cublas::sys as blas_sys;
use cudarc::driver::sys::{CUevent_flags, cudaError_enum};
use cudarc::driver::{CudaContext, CudaEvent, CudaSlice, CudaStream, DriverError};
use tppguard_proto::claims::measurement::MeasurementMethod;
use tppguard_proto::tpp::Precision;

use super::{BenchError, Benchmark};

/// Matrix sides are a multiple of this (FP8 and INT8 kernels need multiples of 16; 256 keeps
/// every kernel's tiles whole).
pub const SIZE_STEP: u32 = 256;

/// When device memory is short the side is halved, down to this and no further.
pub const MIN_SIZE: u32 = 1024;

/// Device memory left out of the operands' budget besides the FP8 workspace: cuBLAS's own
/// workspace (32 MiB on Hopper) and slack for the allocator.
const RESERVED_BYTES: u64 = 128 << 20;

/// cuBLASLt workspace for FP8 GEMMs: NVIDIA's recommendation for Hopper (4 MiB before it).
const LT_WORKSPACE_BYTES: usize = 32 << 20;

/// The operands take at most this share of free device memory, in tenths.
const FREE_MEMORY_TENTHS: u64 = 9;

/// Host buffer that fills the operands, copied to the device piece by piece.
const FILL_CHUNK_BYTES: usize = 16 << 20;

/// Compute capabilities whose FP64 rate is a full one (half the FP32 rate or better, or FP64
/// tensor cores): P100, V100, A100, H100/H200, B200. Other parts run FP64 at 1/32 or 1/64.
const FULL_RATE_FP64: [(i32, i32); 5] = [(6, 0), (7, 0), (8, 0), (9, 0), (10, 0)];

/// Whether a device of compute capability `cc` has dense GEMMs in `precision` worth measuring.
///
/// FP8 needs Ada or Hopper (8.9) on; BF16 and TF32 need Ampere (8.0) on (before it, a "TF32"
/// GEMM would silently run in FP32); INT8 GEMMs need `dp4a` (6.1); FP64 only on parts with a
/// full-rate FP64 unit. FP32 (vector), INT4 and FP4 have no GEMM here.
pub fn supported(cc: (i32, i32), precision: Precision) -> bool {
    match precision {
        Precision::Fp16 => cc >= (5, 3),
        Precision::Bf16 | Precision::Tf32 => cc >= (8, 0),
        Precision::Int8 => cc >= (6, 1),
        Precision::Fp8 => cc >= (8, 9),
        Precision::Fp64 => FULL_RATE_FP64.contains(&cc),
        Precision::Fp32 | Precision::Int4 | Precision::Fp4 => false,
    }
}

/// The host values `alpha` and `beta` point at: their type is the GEMM's scale type, which the
/// compute type fixes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scale {
    /// `float` (compute types 32F, 32F_FAST_TF32).
    F32,
    /// `double` (compute type 64F).
    F64,
    /// `int32_t` (compute type 32I).
    I32,
}

/// Which library call runs the GEMM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kernel {
    /// `cublasGemmEx` with these types.
    GemmEx {
        /// Type of A and B.
        input: blas_sys::cudaDataType,
        /// Type of C.
        output: blas_sys::cudaDataType,
        /// Compute type.
        compute: blas_sys::cublasComputeType_t,
        /// Scale type (of alpha and beta).
        scale: Scale,
    },
    /// `cublasLtMatmul`: E4M3 A and B, BF16 C and D, FP32 compute and scale, fast accumulation
    /// (Hopper's native FP8 mode, the one its peak is quoted for).
    LtFp8,
}

/// How the GEMM of one precision is run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct GemmSpec {
    /// Bytes per element of A and B.
    input_bytes: u64,
    /// Bytes per element of C.
    output_bytes: u64,
    /// A transposed ("TN"): what the FP8 kernels require, and the layout INT8 tensor-core
    /// (IMMA) kernels run in. The others run "NN" (all column-major, no transposes).
    transpose_a: bool,
    /// The call.
    kernel: Kernel,
}

impl GemmSpec {
    /// Bytes of A, B and C at side `n`, or `None` past `u64`.
    fn operand_bytes(&self, n: u32) -> Option<u64> {
        let elements = u64::from(n).checked_mul(u64::from(n))?;
        let per_element = self
            .input_bytes
            .checked_mul(2)?
            .checked_add(self.output_bytes)?;
        elements.checked_mul(per_element)
    }

    /// Device memory besides the operands.
    fn reserved_bytes(&self) -> u64 {
        match self.kernel {
            Kernel::LtFp8 => RESERVED_BYTES + LT_WORKSPACE_BYTES as u64,
            Kernel::GemmEx { .. } => RESERVED_BYTES,
        }
    }
}

/// The GEMM for `precision`, if the backend has one.
fn gemm_spec(precision: Precision) -> Option<GemmSpec> {
    use blas_sys::cublasComputeType_t as C;
    use blas_sys::cudaDataType as T;
    let gemm_ex = |input, output, compute, scale| Kernel::GemmEx {
        input,
        output,
        compute,
        scale,
    };
    let (input_bytes, output_bytes, transpose_a, kernel) = match precision {
        Precision::Fp16 => (
            2,
            2,
            false,
            gemm_ex(
                T::CUDA_R_16F,
                T::CUDA_R_16F,
                C::CUBLAS_COMPUTE_32F,
                Scale::F32,
            ),
        ),
        Precision::Bf16 => (
            2,
            2,
            false,
            gemm_ex(
                T::CUDA_R_16BF,
                T::CUDA_R_16BF,
                C::CUBLAS_COMPUTE_32F,
                Scale::F32,
            ),
        ),
        Precision::Tf32 => (
            4,
            4,
            false,
            gemm_ex(
                T::CUDA_R_32F,
                T::CUDA_R_32F,
                C::CUBLAS_COMPUTE_32F_FAST_TF32,
                Scale::F32,
            ),
        ),
        Precision::Fp64 => (
            8,
            8,
            false,
            gemm_ex(
                T::CUDA_R_64F,
                T::CUDA_R_64F,
                C::CUBLAS_COMPUTE_64F,
                Scale::F64,
            ),
        ),
        Precision::Int8 => (
            1,
            4,
            true,
            gemm_ex(
                T::CUDA_R_8I,
                T::CUDA_R_32I,
                C::CUBLAS_COMPUTE_32I,
                Scale::I32,
            ),
        ),
        Precision::Fp8 => (1, 2, true, Kernel::LtFp8),
        Precision::Fp32 | Precision::Int4 | Precision::Fp4 => return None,
    };
    Some(GemmSpec {
        input_bytes,
        output_bytes,
        transpose_a,
        kernel,
    })
}

/// The sides `prepare` tries, largest first: `requested` rounded down to a multiple of
/// [`SIZE_STEP`] (at least one step), then halves (kept multiples of the step) down to
/// [`MIN_SIZE`]. A request below `MIN_SIZE` is tried as it is, and only so.
pub fn size_candidates(requested: u32) -> Vec<u32> {
    let mut n = (requested / SIZE_STEP * SIZE_STEP).max(SIZE_STEP);
    let mut sizes = vec![n];
    while n > MIN_SIZE {
        n = (n / 2 / SIZE_STEP * SIZE_STEP).max(MIN_SIZE);
        sizes.push(n);
    }
    sizes
}

/// Whether `bytes` of operands and `reserved` bytes besides fit in 90 % of `free`.
pub fn fits(bytes: u64, reserved: u64, free: u64) -> bool {
    bytes
        .checked_add(reserved)
        .is_some_and(|needed| needed <= free / 10 * FREE_MEMORY_TENTHS)
}

/// A PCI address as CUDA reports it (`CU_DEVICE_ATTRIBUTE_PCI_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PciAddress {
    /// Domain (segment).
    pub domain: i32,
    /// Bus.
    pub bus: i32,
    /// Device (slot).
    pub device: i32,
}

/// Parses a PCI bus id as NVML (`00000000:18:00.0`), CUDA or lspci (`0000:18:00.0`, `18:00.0`)
/// write it. The function number is checked for form and ignored: CUDA devices are function 0.
pub fn parse_pci_bus_id(id: &str) -> Option<PciAddress> {
    let hex = |s: &str, max_len: usize| {
        (!s.is_empty() && s.len() <= max_len && s.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| i64::from_str_radix(s, 16).ok())
            .flatten()
            .and_then(|v| i32::try_from(v).ok())
    };
    let id = id.trim();
    let mut parts: Vec<&str> = id.split(':').collect();
    let slot = parts.pop()?;
    let bus = parts.pop()?;
    let domain = match parts.pop() {
        Some(domain) => hex(domain, 8)?,
        None => 0,
    };
    if !parts.is_empty() {
        return None;
    }
    let (device, function) = match slot.split_once('.') {
        Some((device, function)) => (device, Some(function)),
        None => (slot, None),
    };
    if let Some(function) = function {
        hex(function, 1)?;
    }
    Some(PciAddress {
        domain,
        bus: hex(bus, 2)?,
        device: hex(device, 2)?,
    })
}

/// The file names cudarc tries for `lib_name` (`cublas`), in its order, as the loader sees them
/// on Linux (cudarc's list also has Windows-style names, which cannot match there).
pub fn searched_names(lib_name: &str) -> Vec<String> {
    let prefix = format!("lib{lib_name}.so");
    let mut names: Vec<String> = Vec::new();
    for name in cudarc::get_lib_name_candidates(lib_name) {
        let versioned = name
            .strip_prefix(&prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'));
        if versioned && !names.contains(&name) {
            names.push(name);
        }
    }
    names
}

/// A small, varied value for element `i` of an operand: an integer in -4..=4 (floating-point
/// operands hold a quarter of it: -1..=1 in steps of 0.25, exact in every format, so a GEMM
/// neither overflows nor runs on all-equal data).
fn pattern_value(i: usize) -> i8 {
    // A 32-bit integer hash (the "lowbias32" mixer); the index wraps past 2^32, harmlessly.
    let mut x = (i as u32).wrapping_add(0x9e37_79b9);
    x ^= x >> 16;
    x = x.wrapping_mul(0x7feb_352d);
    x ^= x >> 15;
    x = x.wrapping_mul(0x846c_a68b);
    x ^= x >> 16;
    // x % 9 < 9, so the cast is exact.
    (x % 9) as i8 - 4
}

/// IEEE half-precision bits of `v`: exact for the normal values [`pattern_value`] gives (a few
/// mantissa bits, exponent -2..=0); extra mantissa bits are cut, and zero, subnormal and
/// out-of-range values (which the pattern never has) give zero.
fn f16_bits(v: f32) -> u16 {
    small_float_bits(v, 5, 10) as u16
}

/// bfloat16 bits of `v` (its top half as an `f32`: exact for the pattern's values).
fn bf16_bits(v: f32) -> u16 {
    (v.to_bits() >> 16) as u16
}

/// FP8 E4M3 bits of `v`, as [`f16_bits`].
fn e4m3_bits(v: f32) -> u8 {
    small_float_bits(v, 4, 3) as u8
}

/// The bits of `v` in a binary format with `exponent_bits` and `mantissa_bits` (bias
/// `2^(exponent_bits-1) - 1`), for normal values: the mantissa is cut, anything else is zero.
fn small_float_bits(v: f32, exponent_bits: u32, mantissa_bits: u32) -> u32 {
    let bits = v.to_bits();
    let bias = (1_i64 << (exponent_bits - 1)) - 1;
    let exponent = i64::from((bits >> 23) & 0xff) - 127 + bias;
    // The top exponent is infinity / NaN in IEEE formats (E4M3 uses it for normals, but the
    // pattern never needs it).
    let max_exponent = (1_i64 << exponent_bits) - 2;
    if v == 0.0 || !(1..=max_exponent).contains(&exponent) {
        return 0;
    }
    let sign = (bits >> 31) << (exponent_bits + mantissa_bits);
    let mantissa = (bits & 0x7f_ffff) >> (23 - mantissa_bits);
    // In range: 1 ..= max_exponent.
    let exponent = exponent as u32;
    sign | (exponent << mantissa_bits) | mantissa
}

/// `bytes` bytes (rounded down to whole elements) of the A/B fill for `precision`, in the
/// device's little-endian layout.
fn fill_pattern(precision: Precision, bytes: usize) -> Vec<u8> {
    let width = gemm_spec(precision).map_or(1, |s| s.input_bytes as usize);
    let mut out = Vec::with_capacity(bytes);
    for i in 0..bytes / width {
        let q = pattern_value(i);
        let v = f32::from(q) / 4.0;
        match precision {
            Precision::Fp16 => out.extend_from_slice(&f16_bits(v).to_le_bytes()),
            Precision::Bf16 => out.extend_from_slice(&bf16_bits(v).to_le_bytes()),
            Precision::Tf32 | Precision::Fp32 => out.extend_from_slice(&v.to_le_bytes()),
            Precision::Fp64 => out.extend_from_slice(&f64::from(v).to_le_bytes()),
            Precision::Fp8 => out.push(e4m3_bits(v)),
            Precision::Int8 | Precision::Int4 | Precision::Fp4 => {
                out.extend_from_slice(&q.to_le_bytes())
            }
        }
    }
    out
}

/// A `Duration` from an event time in milliseconds.
fn duration_from_ms(ms: f32) -> Result<Duration, BenchError> {
    Duration::try_from_secs_f64(f64::from(ms) / 1e3).map_err(|_| BenchError::Cuda {
        call: "cuEventElapsedTime",
        detail: format!("the driver measured {ms} ms"),
    })
}

/// `CUDA driver 13.0` from `cuDriverGetVersion`'s 13000.
fn driver_version_text(version: i32) -> String {
    format!("{}.{}", version / 1000, version % 1000 / 10)
}

/// Maps a driver error to [`BenchError::Cuda`].
fn driver_error(call: &'static str) -> impl FnOnce(DriverError) -> BenchError {
    move |e| BenchError::Cuda {
        call,
        detail: match e.error_string() {
            Ok(text) => format!("{:?} ({})", e.0, text.to_string_lossy()),
            Err(_) => format!("{:?}", e.0),
        },
    }
}

/// Maps a cuBLAS error to [`BenchError::Cuda`].
fn cublas_error(
    call: &'static str,
) -> impl FnOnce(cudarc::cublas::result::CublasError) -> BenchError {
    move |e| BenchError::Cuda {
        call,
        detail: format!("{:?}", e.0),
    }
}

/// Maps a cuBLASLt error to [`BenchError::Cuda`].
fn cublaslt_error(
    call: &'static str,
) -> impl FnOnce(cudarc::cublaslt::result::CublasError) -> BenchError {
    move |e| BenchError::Cuda {
        call,
        detail: format!("{:?}", e.0),
    }
}

fn is_out_of_memory(e: &DriverError) -> bool {
    e.0 == cudaError_enum::CUDA_ERROR_OUT_OF_MEMORY
}

/// The CUDA benchmark of one GPU: a context on it, one stream, cuBLAS and cuBLASLt handles, and
/// the operands of the precision last prepared.
///
/// Not `Send`: cuBLAS handles belong to the thread (and context) that made them.
pub struct CudaBenchmark {
    // Fields drop in order: the operands (and FP8 plan) before the handles; the stream and the
    // context last (every handle and buffer also holds them alive).
    operands: Option<Operands>,
    lt: ffi::LtHandle,
    blas: ffi::BlasHandle,
    start: CudaEvent,
    end: CudaEvent,
    elapsed: ffi::ElapsedTime,
    stream: Arc<CudaStream>,
    ctx: Arc<CudaContext>,
    ordinal: usize,
    compute_capability: (i32, i32),
    free_bytes: u64,
    total_bytes: u64,
    driver_version: i32,
    cublas_version: [i32; 3],
    /// The driver, cuBLAS or cuBLASLt that cudarc loaded is tppguard's fake
    /// (`tests/fake-cuda`): nothing real is measured, and the method says `simulated`.
    fake: bool,
}

/// The operands of one precision, and how to multiply them.
struct Operands {
    n: u32,
    spec: GemmSpec,
    a: CudaSlice<u8>,
    b: CudaSlice<u8>,
    c: CudaSlice<u8>,
    /// The cuBLASLt plan and workspace for FP8.
    lt: Option<(ffi::LtFp8Plan, CudaSlice<u8>)>,
}

/// Why allocating the operands failed.
enum AllocError {
    /// The device ran out of memory: try a smaller side.
    OutOfMemory,
    /// Anything else.
    Failed(BenchError),
}

impl From<BenchError> for AllocError {
    fn from(e: BenchError) -> Self {
        Self::Failed(e)
    }
}

impl CudaBenchmark {
    /// Opens the CUDA device with PCI bus id `pci_bus_id` (as NVML writes it:
    /// `00000000:18:00.0`): probes the driver, cuBLASLt and cuBLAS (from `lib_dir` first when
    /// given; see the module docs), then makes a context, a stream and the library handles.
    pub fn open(pci_bus_id: &str, lib_dir: Option<&Path>) -> Result<Self, BenchError> {
        if !ffi::driver_present() {
            return Err(BenchError::NoCudaDriver);
        }
        // An empty path (`--cuda-lib-dir ""`) names no folder.
        let lib_dir = lib_dir.filter(|dir| !dir.as_os_str().is_empty());
        load_blas_libraries(lib_dir)?;
        let wanted = parse_pci_bus_id(pci_bus_id).ok_or_else(|| BenchError::Cuda {
            call: "cuDeviceGet",
            detail: format!("{pci_bus_id:?} from NVML is not a PCI bus id"),
        })?;
        cudarc::driver::result::init().map_err(driver_error("cuInit"))?;
        let driver_version = ffi::driver_version().map_err(driver_error("cuDriverGetVersion"))?;
        let ordinal = find_device(wanted, pci_bus_id)?;

        let ctx = CudaContext::new(ordinal).map_err(driver_error("cuDevicePrimaryCtxRetain"))?;
        // The legacy default stream: cudarc tracks buffer use with events only once a second
        // stream exists, so the GEMMs go out with nothing between them.
        let stream = ctx.default_stream();
        let compute_capability = ctx
            .compute_capability()
            .map_err(driver_error("cuDeviceGetAttribute"))?;
        let (free, total) = ctx.mem_get_info().map_err(driver_error("cuMemGetInfo"))?;
        let elapsed = ffi::ElapsedTime::resolve()?;
        let fake = ffi::fake_libraries();
        if fake {
            tracing::debug!(
                "the CUDA libraries loaded are tppguard's fake (tests/fake-cuda): \
                 the measurement is recorded as simulated"
            );
        }
        let cublas_version = ffi::cublas_version().map_err(cublas_error("cublasGetProperty"))?;
        let blas = ffi::BlasHandle::new(stream.clone())
            .map_err(|e| newer_library_hint(e, "cuBLAS", cublas_version[0], driver_version))?;
        let lt = ffi::LtHandle::new(stream.clone())
            .map_err(|e| newer_library_hint(e, "cuBLASLt", cublas_version[0], driver_version))?;
        let timing = Some(CUevent_flags::CU_EVENT_DEFAULT);
        let start = ctx
            .new_event(timing)
            .map_err(driver_error("cuEventCreate"))?;
        let end = ctx
            .new_event(timing)
            .map_err(driver_error("cuEventCreate"))?;
        tracing::debug!(
            ordinal,
            pci_bus_id,
            ?compute_capability,
            free,
            total,
            driver = driver_version,
            cublas = ?cublas_version,
            "CUDA device opened"
        );
        Ok(Self {
            operands: None,
            lt,
            blas,
            start,
            end,
            elapsed,
            stream,
            ctx,
            ordinal,
            compute_capability,
            free_bytes: free as u64,
            total_bytes: total as u64,
            driver_version,
            cublas_version,
            fake,
        })
    }

    /// The device's CUDA ordinal (as this process numbers them).
    pub fn ordinal(&self) -> usize {
        self.ordinal
    }

    /// Compute capability, `(major, minor)`.
    pub fn compute_capability(&self) -> (i32, i32) {
        self.compute_capability
    }

    /// Free and total device memory when the device was opened, bytes.
    pub fn memory_bytes(&self) -> (u64, u64) {
        (self.free_bytes, self.total_bytes)
    }

    /// Allocates and fills A, B and C (and the FP8 plan) at side `n`.
    fn allocate(
        &self,
        precision: Precision,
        spec: GemmSpec,
        n: u32,
    ) -> Result<Operands, AllocError> {
        let alloc = |bytes: u64| -> Result<CudaSlice<u8>, AllocError> {
            let len = usize::try_from(bytes).map_err(|_| AllocError::OutOfMemory)?;
            self.stream.alloc_zeros::<u8>(len).map_err(|e| {
                if is_out_of_memory(&e) {
                    AllocError::OutOfMemory
                } else {
                    AllocError::Failed(driver_error("cuMemAlloc")(e))
                }
            })
        };
        let elements = u64::from(n) * u64::from(n);
        let mut a = alloc(elements * spec.input_bytes)?;
        let mut b = alloc(elements * spec.input_bytes)?;
        let c = alloc(elements * spec.output_bytes)?;
        let lt = match spec.kernel {
            Kernel::LtFp8 => {
                let workspace = alloc(LT_WORKSPACE_BYTES as u64)?;
                let plan = ffi::LtFp8Plan::new(&self.lt, n, LT_WORKSPACE_BYTES)?;
                Some((plan, workspace))
            }
            Kernel::GemmEx { .. } => None,
        };
        let chunk = fill_pattern(precision, FILL_CHUNK_BYTES);
        fill(&self.stream, &mut a, &chunk)?;
        fill(&self.stream, &mut b, &chunk)?;
        Ok(Operands {
            n,
            spec,
            a,
            b,
            c,
            lt,
        })
    }
}

/// Copies `chunk` over `dst` again and again (the last copy cut short).
fn fill(stream: &Arc<CudaStream>, dst: &mut CudaSlice<u8>, chunk: &[u8]) -> Result<(), BenchError> {
    let len = dst.len();
    let mut offset = 0;
    while offset < len {
        let take = chunk.len().min(len - offset);
        let (true, Some(src), Some(mut view)) = (
            take > 0,
            chunk.get(..take),
            dst.try_slice_mut(offset..offset + take),
        ) else {
            return Err(BenchError::Cuda {
                call: "cuMemcpyHtoDAsync",
                detail: format!("cannot fill bytes {offset}.. of {len}"),
            });
        };
        stream
            .memcpy_htod(src, &mut view)
            .map_err(driver_error("cuMemcpyHtoDAsync"))?;
        offset += take;
    }
    Ok(())
}

/// Launches one GEMM of the prepared operands on the handles' stream.
fn launch(
    ops: &mut Operands,
    blas: &ffi::BlasHandle,
    lt: &ffi::LtHandle,
) -> Result<(), BenchError> {
    match (&ops.spec.kernel, &mut ops.lt) {
        (Kernel::GemmEx { .. }, _) => {
            ffi::gemm_ex(blas, &ops.spec, ops.n, &ops.a, &ops.b, &mut ops.c)
        }
        (Kernel::LtFp8, Some((plan, workspace))) => {
            ffi::lt_matmul(lt, plan, &ops.a, &ops.b, &mut ops.c, workspace)
        }
        (Kernel::LtFp8, None) => Err(BenchError::NotPrepared),
    }
}

/// A cuBLAS handle that failed to start, with a hint when the library is newer than the driver
/// (cuBLAS 13 needs a driver for CUDA 13.0).
fn newer_library_hint(e: BenchError, library: &str, major: i32, driver_version: i32) -> BenchError {
    match e {
        BenchError::Cuda { call, detail } if major.saturating_mul(1000) > driver_version => {
            BenchError::Cuda {
                call,
                detail: format!(
                    "{detail}: {library} {major} needs a driver for CUDA {major}.0 or newer, this one \
                 is for CUDA {}; update the driver, or name CUDA {} libraries with --cuda-lib-dir",
                    driver_version_text(driver_version),
                    driver_version / 1000,
                ),
            }
        }
        e => e,
    }
}

/// The CUDA ordinal of the device at `wanted`.
fn find_device(wanted: PciAddress, pci_bus_id: &str) -> Result<usize, BenchError> {
    let count =
        cudarc::driver::result::device::get_count().map_err(driver_error("cuDeviceGetCount"))?;
    for ordinal in 0..count {
        let address = ffi::pci_address(ordinal).map_err(driver_error("cuDeviceGetAttribute"))?;
        if address == wanted {
            return usize::try_from(ordinal).map_err(|_| BenchError::Cuda {
                call: "cuDeviceGet",
                detail: format!("ordinal {ordinal}"),
            });
        }
    }
    Err(BenchError::DeviceNotFound {
        pci_bus_id: pci_bus_id.to_owned(),
        visible: usize::try_from(count).unwrap_or(0),
    })
}

/// Makes cuBLASLt and cuBLAS loadable for cudarc, or says what was searched.
fn load_blas_libraries(lib_dir: Option<&Path>) -> Result<(), BenchError> {
    let mut from_dir = None;
    if let Some(dir) = lib_dir {
        preload_from_dir(dir, "cublasLt", "cuBLASLt")?;
        from_dir = Some((dir, preload_from_dir(dir, "cublas", "cuBLAS")?));
    }
    let searched = |lib_name: &str| {
        let mut text = format!(
            "{} on the loader's path",
            searched_names(lib_name).join(", ")
        );
        if let Some(dir) = lib_dir {
            text.push_str(&format!(", and {}", dir.display()));
        }
        text
    };
    if !ffi::cublaslt_present() {
        return Err(BenchError::MissingLibrary {
            library: "cuBLASLt",
            searched: searched("cublasLt"),
        });
    }
    if !ffi::cublas_present() {
        return Err(BenchError::MissingLibrary {
            library: "cuBLAS",
            searched: searched("cublas"),
        });
    }
    if let Some((dir, (path, library))) = from_dir
        && ffi::cudarc_cublas_is(library) == Some(false)
    {
        tracing::warn!(
            preloaded = %path.display(),
            "cuBLAS from {} is loaded, but an unversioned libcublas.so on the loader's path \
             comes first in cudarc's search and is the one in use",
            dir.display()
        );
    }
    Ok(())
}

/// Loads `lib{lib_name}.so*` from `dir`, the first of cudarc's names that is there, and keeps
/// it loaded.
fn preload_from_dir(
    dir: &Path,
    lib_name: &str,
    library: &'static str,
) -> Result<(PathBuf, &'static libloading::Library), BenchError> {
    let names = searched_names(lib_name);
    let Some(path) = names
        .iter()
        .map(|name| dir.join(name))
        .find(|p| p.is_file())
    else {
        return Err(BenchError::MissingLibrary {
            library,
            searched: names
                .iter()
                .map(|name| dir.join(name).display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        });
    };
    match ffi::preload(&path) {
        Ok(lib) => Ok((path, lib)),
        Err(e) => Err(BenchError::MissingLibrary {
            library,
            searched: format!("{} ({e})", path.display()),
        }),
    }
}

impl Benchmark for CudaBenchmark {
    fn method(&self) -> MeasurementMethod {
        if self.fake {
            MeasurementMethod::Simulated
        } else {
            MeasurementMethod::CudaGemm
        }
    }

    fn describe(&self) -> String {
        let [major, minor, patch] = self.cublas_version;
        format!(
            "{}CUDA driver {}, cuBLAS {major}.{minor}.{patch}",
            if self.fake {
                "tppguard's fake (tests/fake-cuda, no real GPU): "
            } else {
                ""
            },
            driver_version_text(self.driver_version)
        )
    }

    fn supports(&self, precision: Precision) -> bool {
        supported(self.compute_capability, precision) && gemm_spec(precision).is_some()
    }

    fn prepare(&mut self, precision: Precision, n: u32) -> Result<u32, BenchError> {
        let spec = gemm_spec(precision)
            .filter(|_| self.supports(precision))
            .ok_or(BenchError::Unsupported { precision })?;
        // Free the last operands first; the sync returns their memory from the stream's pool.
        self.operands = None;
        self.stream
            .synchronize()
            .map_err(driver_error("cuStreamSynchronize"))?;
        let (free, _) = self
            .ctx
            .mem_get_info()
            .map_err(driver_error("cuMemGetInfo"))?;
        let free = free as u64;
        for size in size_candidates(n) {
            let Some(bytes) = spec.operand_bytes(size) else {
                continue;
            };
            if !fits(bytes, spec.reserved_bytes(), free) {
                continue;
            }
            let mut ops = match self.allocate(precision, spec, size) {
                Ok(ops) => ops,
                Err(AllocError::OutOfMemory) => {
                    // Someone else took memory since it was measured: a smaller side may fit.
                    self.stream
                        .synchronize()
                        .map_err(driver_error("cuStreamSynchronize"))?;
                    continue;
                }
                Err(AllocError::Failed(e)) => return Err(e),
            };
            // One GEMM now: a configuration the library rejects fails here rather than in the
            // measurement, and its kernel is loaded (CUDA loads modules lazily) before timing.
            self.ctx
                .bind_to_thread()
                .map_err(driver_error("cuCtxSetCurrent"))?;
            launch(&mut ops, &self.blas, &self.lt)?;
            self.stream
                .synchronize()
                .map_err(driver_error("cuStreamSynchronize"))?;
            self.operands = Some(ops);
            return Ok(size);
        }
        Err(BenchError::OutOfMemory {
            precision,
            free_bytes: free,
        })
    }

    fn time_gemms(&mut self, count: u32) -> Result<Duration, BenchError> {
        let ops = self.operands.as_mut().ok_or(BenchError::NotPrepared)?;
        self.ctx
            .bind_to_thread()
            .map_err(driver_error("cuCtxSetCurrent"))?;
        self.start
            .record(&self.stream)
            .map_err(driver_error("cuEventRecord"))?;
        for _ in 0..count {
            launch(ops, &self.blas, &self.lt)?;
        }
        self.end
            .record(&self.stream)
            .map_err(driver_error("cuEventRecord"))?;
        self.end
            .synchronize()
            .map_err(driver_error("cuEventSynchronize"))?;
        let ms = self
            .elapsed
            .between(&self.start, &self.end)
            .map_err(driver_error("cuEventElapsedTime"))?;
        duration_from_ms(ms)
    }
}

/// Every `unsafe` call of the backend, each behind a safe function.
mod ffi {
    use std::ffi::{c_int, c_void};
    use std::path::Path;
    use std::sync::Arc;

    use cudarc::cublas::sys as blas;
    use cudarc::cublaslt::result as lt_result;
    use cudarc::cublaslt::sys as lt;
    use cudarc::driver::sys::{CUdevice_attribute, CUevent, CUresult};
    use cudarc::driver::{CudaEvent, CudaSlice, CudaStream, DevicePtr, DevicePtrMut, DriverError};

    use super::{
        BenchError, GemmSpec, Kernel, PciAddress, Scale, cublas_error, cublaslt_error, driver_error,
    };

    /// Whether cudarc can load the driver library.
    #[allow(unsafe_code)]
    pub fn driver_present() -> bool {
        // SAFETY: cudarc's probe loads and unloads `libcuda` by the names its own loader tries;
        // what it runs is the library's initialisers, as any dlopen does. No Rust state is
        // involved.
        unsafe { cudarc::driver::sys::is_culib_present() }
    }

    /// Whether cudarc can load cuBLAS.
    #[allow(unsafe_code)]
    pub fn cublas_present() -> bool {
        // SAFETY: as in `driver_present`, for `libcublas`.
        unsafe { cudarc::cublas::sys::is_culib_present() }
    }

    /// Whether cudarc can load cuBLASLt.
    #[allow(unsafe_code)]
    pub fn cublaslt_present() -> bool {
        // SAFETY: as in `driver_present`, for `libcublasLt`.
        unsafe { cudarc::cublaslt::sys::is_culib_present() }
    }

    /// Loads the library at `path` and keeps it loaded for the rest of the process, so that the
    /// dynamic loader hands it to cudarc's lookup by its SONAME.
    #[allow(unsafe_code)]
    pub fn preload(path: &Path) -> Result<&'static libloading::Library, libloading::Error> {
        // SAFETY: loading a CUDA library runs its initialisers, as cudarc's own loading does.
        // The handle is leaked, never closed, so nothing resolved from it can dangle.
        let library = unsafe { libloading::Library::new(path) }?;
        Ok(Box::leak(Box::new(library)))
    }

    /// Whether the cuBLAS cudarc uses is `preloaded` (their `cublasGetProperty` are one);
    /// `None` when either lookup fails. Call only once `cublas_present()` holds.
    #[allow(unsafe_code)]
    pub fn cudarc_cublas_is(preloaded: &libloading::Library) -> Option<bool> {
        // SAFETY: cuBLAS is loadable (the caller probed it), so cudarc's `culib()` returns its
        // library instead of panicking. The symbols are read as plain addresses and compared,
        // never called or dereferenced.
        unsafe {
            let ours = preloaded.get::<*mut c_void>(b"cublasGetProperty\0").ok()?;
            let theirs = blas::culib()
                .get::<*mut c_void>(b"cublasGetProperty\0")
                .ok()?;
            Some(*ours == *theirs)
        }
    }

    /// Whether the CUDA driver, cuBLAS or cuBLASLt that cudarc loaded carries tppguard's fake
    /// mark ([`crate::nvml::raw::SIMULATED_MARKER`]). Call only once all three are present.
    #[allow(unsafe_code)]
    pub fn fake_libraries() -> bool {
        // SAFETY: the three libraries are loadable (the caller probed them), so cudarc's
        // `culib()` returns them instead of panicking; the mark is looked up, never read.
        let libraries = unsafe { [cudarc::driver::sys::culib(), blas::culib(), lt::culib()] };
        libraries.into_iter().any(crate::nvml::raw::exports_marker)
    }

    /// `cuDriverGetVersion`: 13000 for CUDA 13.0.
    #[allow(unsafe_code)]
    pub fn driver_version() -> Result<i32, DriverError> {
        let mut version: c_int = 0;
        // SAFETY: `version` is a valid out-pointer for one int; the driver library is present
        // (probed before) so the symbol loads.
        unsafe { cudarc::driver::sys::cuDriverGetVersion(&mut version) }.result()?;
        Ok(version)
    }

    /// The PCI address of the device with CUDA ordinal `ordinal`.
    #[allow(unsafe_code)]
    pub fn pci_address(ordinal: c_int) -> Result<PciAddress, DriverError> {
        let device = cudarc::driver::result::device::get(ordinal)?;
        let attribute = |attribute: CUdevice_attribute| {
            // SAFETY: `device` was just returned by cuDeviceGet (after cuInit), which is what
            // cuDeviceGetAttribute requires.
            unsafe { cudarc::driver::result::device::get_attribute(device, attribute) }
        };
        Ok(PciAddress {
            domain: attribute(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_PCI_DOMAIN_ID)?,
            bus: attribute(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_PCI_BUS_ID)?,
            device: attribute(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_PCI_DEVICE_ID)?,
        })
    }

    /// cuBLAS's major, minor and patch version.
    #[allow(unsafe_code)]
    pub fn cublas_version() -> Result<[i32; 3], cudarc::cublas::result::CublasError> {
        use blas::libraryPropertyType as P;
        let mut version = [0; 3];
        for (property, value) in [P::MAJOR_VERSION, P::MINOR_VERSION, P::PATCH_LEVEL]
            .into_iter()
            .zip(version.iter_mut())
        {
            // SAFETY: `value` is a valid out-pointer for one int; cuBLAS is present (probed).
            unsafe { blas::cublasGetProperty(property, value) }.result()?;
        }
        Ok(version)
    }

    /// How to read the time between two events.
    #[derive(Debug, Clone, Copy)]
    pub enum ElapsedTime {
        /// cudarc's `CudaEvent::elapsed_ms` (`cuEventElapsedTime_v2`, drivers for CUDA 12.8 on).
        Cudarc,
        /// The driver's `cuEventElapsedTime`, for older drivers.
        V1(unsafe extern "C" fn(*mut f32, CUevent, CUevent) -> CUresult),
    }

    impl ElapsedTime {
        /// The way this driver has. Call only once the driver is known to be present.
        #[allow(unsafe_code)]
        pub fn resolve() -> Result<Self, BenchError> {
            // SAFETY: the driver library is present, so cudarc's `culib()` returns it instead of
            // panicking; it is a static, never unloaded, so the function pointer taken from it
            // stays valid. The type is the CUDA header's signature of `cuEventElapsedTime`.
            unsafe {
                let driver = cudarc::driver::sys::culib();
                if driver
                    .get::<*mut c_void>(b"cuEventElapsedTime_v2\0")
                    .is_ok()
                {
                    return Ok(Self::Cudarc);
                }
                let v1 = driver
                    .get::<unsafe extern "C" fn(*mut f32, CUevent, CUevent) -> CUresult>(
                        b"cuEventElapsedTime\0",
                    )
                    .map_err(|e| BenchError::Cuda {
                        call: "cuEventElapsedTime",
                        detail: e.to_string(),
                    })?;
                Ok(Self::V1(*v1))
            }
        }

        /// Milliseconds from `start` to `end`, both recorded and of one context.
        #[allow(unsafe_code)]
        pub fn between(self, start: &CudaEvent, end: &CudaEvent) -> Result<f32, DriverError> {
            match self {
                Self::Cudarc => start.elapsed_ms(end),
                Self::V1(elapsed) => {
                    // Both waits bind the events' context to this thread.
                    start.synchronize()?;
                    end.synchronize()?;
                    let mut ms: f32 = 0.0;
                    // SAFETY: `elapsed` is the driver's cuEventElapsedTime (see `resolve`); both
                    // events are live (borrowed) and created in the current context; `ms` is a
                    // valid out-pointer.
                    unsafe { elapsed(&mut ms, start.cu_event(), end.cu_event()) }.result()?;
                    Ok(ms)
                }
            }
        }
    }

    /// A cuBLAS handle bound to a stream, destroyed on drop.
    pub struct BlasHandle {
        handle: blas::cublasHandle_t,
        stream: Arc<CudaStream>,
    }

    impl BlasHandle {
        /// `cublasCreate` in the stream's context, then `cublasSetStream`.
        #[allow(unsafe_code)]
        pub fn new(stream: Arc<CudaStream>) -> Result<Self, BenchError> {
            stream
                .context()
                .bind_to_thread()
                .map_err(driver_error("cuCtxSetCurrent"))?;
            let handle =
                cudarc::cublas::result::create_handle().map_err(cublas_error("cublasCreate"))?;
            // Owned from here: dropped (destroyed) on any error below.
            let this = Self { handle, stream };
            // SAFETY: the handle was just created; the stream is a live stream of the current
            // context, kept alive as long as the handle by `this.stream`.
            unsafe {
                cudarc::cublas::result::set_stream(
                    this.handle,
                    this.stream.cu_stream() as blas::cudaStream_t,
                )
            }
            .map_err(cublas_error("cublasSetStream"))?;
            Ok(this)
        }
    }

    impl Drop for BlasHandle {
        #[allow(unsafe_code)]
        fn drop(&mut self) {
            // cuBLAS frees its workspace in the current context: make it this one.
            let _ = self.stream.context().bind_to_thread();
            // SAFETY: the handle came from cublasCreate in `new` and is destroyed only here.
            // An error is ignored: there is nothing left to do with the handle.
            let _ = unsafe { cudarc::cublas::result::destroy_handle(self.handle) };
        }
    }

    /// A cuBLASLt handle, destroyed on drop; matmuls go to `stream`.
    pub struct LtHandle {
        handle: lt::cublasLtHandle_t,
        stream: Arc<CudaStream>,
    }

    impl LtHandle {
        /// `cublasLtCreate` in the stream's context.
        pub fn new(stream: Arc<CudaStream>) -> Result<Self, BenchError> {
            stream
                .context()
                .bind_to_thread()
                .map_err(driver_error("cuCtxSetCurrent"))?;
            let handle = lt_result::create_handle().map_err(cublaslt_error("cublasLtCreate"))?;
            Ok(Self { handle, stream })
        }
    }

    impl Drop for LtHandle {
        #[allow(unsafe_code)]
        fn drop(&mut self) {
            let _ = self.stream.context().bind_to_thread();
            // SAFETY: the handle came from cublasLtCreate in `new` and is destroyed only here.
            let _ = unsafe { lt_result::destroy_handle(self.handle) };
        }
    }

    /// A matmul descriptor, destroyed on drop.
    struct MatmulDesc(lt::cublasLtMatmulDesc_t);

    impl Drop for MatmulDesc {
        #[allow(unsafe_code)]
        fn drop(&mut self) {
            // SAFETY: created by cublasLtMatmulDescCreate, destroyed only here.
            let _ = unsafe { lt_result::destroy_matmul_desc(self.0) };
        }
    }

    impl MatmulDesc {
        /// Sets `attribute` to `value`, whose type must be the one cuBLASLt documents for it
        /// (it checks the size and rejects a wrong one).
        #[allow(unsafe_code)]
        fn set<T: Copy>(
            &self,
            attribute: lt::cublasLtMatmulDescAttributes_t,
            value: T,
        ) -> Result<(), BenchError> {
            // SAFETY: the descriptor is live (owned by `self`); the buffer is `value`, alive
            // and `size_of::<T>()` bytes long for the whole call, which copies it.
            unsafe {
                lt_result::set_matmul_desc_attribute(
                    self.0,
                    attribute,
                    (&raw const value).cast::<c_void>(),
                    std::mem::size_of::<T>(),
                )
            }
            .map_err(cublaslt_error("cublasLtMatmulDescSetAttribute"))
        }
    }

    /// A matrix layout, destroyed on drop.
    struct Layout(lt::cublasLtMatrixLayout_t);

    impl Layout {
        /// A column-major `rows`×`cols` layout of `data_type` with leading dimension `rows`.
        fn new(data_type: lt::cudaDataType, rows: u32, cols: u32) -> Result<Self, BenchError> {
            lt_result::create_matrix_layout(
                data_type,
                u64::from(rows),
                u64::from(cols),
                i64::from(rows),
            )
            .map(Self)
            .map_err(cublaslt_error("cublasLtMatrixLayoutCreate"))
        }
    }

    impl Drop for Layout {
        #[allow(unsafe_code)]
        fn drop(&mut self) {
            // SAFETY: created by cublasLtMatrixLayoutCreate, destroyed only here.
            let _ = unsafe { lt_result::destroy_matrix_layout(self.0) };
        }
    }

    /// A heuristic-preference descriptor, destroyed on drop.
    struct Preference(lt::cublasLtMatmulPreference_t);

    impl Drop for Preference {
        #[allow(unsafe_code)]
        fn drop(&mut self) {
            // SAFETY: created by cublasLtMatmulPreferenceCreate, destroyed only here.
            let _ = unsafe { lt_result::destroy_matmul_pref(self.0) };
        }
    }

    /// Everything one FP8 `cublasLtMatmul` of side `n` needs but the buffers: D = Aᵀ·B with A
    /// and B E4M3 (`n`×`n`, A transposed: the "TN" layout cuBLASLt's FP8 kernels require), C = D
    /// BF16, FP32 compute and scale, fast accumulation, and the algorithm cuBLASLt picked.
    pub struct LtFp8Plan {
        n: u32,
        workspace_bytes: usize,
        desc: MatmulDesc,
        a: Layout,
        b: Layout,
        d: Layout,
        algo: lt::cublasLtMatmulAlgo_t,
    }

    impl LtFp8Plan {
        /// Builds the descriptors and asks cuBLASLt for its best algorithm within
        /// `workspace_bytes` of workspace.
        #[allow(unsafe_code)]
        pub fn new(handle: &LtHandle, n: u32, workspace_bytes: usize) -> Result<Self, BenchError> {
            let desc = lt_result::create_matmul_desc(
                lt::cublasComputeType_t::CUBLAS_COMPUTE_32F,
                lt::cudaDataType::CUDA_R_32F,
            )
            .map(MatmulDesc)
            .map_err(cublaslt_error("cublasLtMatmulDescCreate"))?;
            use lt::cublasLtMatmulDescAttributes_t as A;
            // cublasOperation_t (int32_t) for the transposes, int8_t for fast accumulation.
            desc.set(
                A::CUBLASLT_MATMUL_DESC_TRANSA,
                blas::cublasOperation_t::CUBLAS_OP_T,
            )?;
            desc.set(
                A::CUBLASLT_MATMUL_DESC_TRANSB,
                blas::cublasOperation_t::CUBLAS_OP_N,
            )?;
            desc.set(A::CUBLASLT_MATMUL_DESC_FAST_ACCUM, 1_i8)?;
            // A is stored k×m (transposed), B k×n, D m×n; all n here.
            let a = Layout::new(lt::cudaDataType::CUDA_R_8F_E4M3, n, n)?;
            let b = Layout::new(lt::cudaDataType::CUDA_R_8F_E4M3, n, n)?;
            let d = Layout::new(lt::cudaDataType::CUDA_R_16BF, n, n)?;
            let preference = lt_result::create_matmul_pref()
                .map(Preference)
                .map_err(cublaslt_error("cublasLtMatmulPreferenceCreate"))?;
            let max_workspace = workspace_bytes as u64;
            // SAFETY: the preference is live; the buffer is a u64 (the documented type of
            // MAX_WORKSPACE_BYTES), alive and 8 bytes long for the call.
            unsafe {
                lt_result::set_matmul_pref_attribute(
                    preference.0,
                    lt::cublasLtMatmulPreferenceAttributes_t::CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                    (&raw const max_workspace).cast::<c_void>(),
                    std::mem::size_of::<u64>(),
                )
            }
            .map_err(cublaslt_error("cublasLtMatmulPreferenceSetAttribute"))?;
            // SAFETY: the handle and every descriptor are live (owned here or by the caller's
            // borrow); C and D share the layout `d`, as an in-place matmul must.
            let heuristic = unsafe {
                lt_result::get_matmul_algo_heuristic(
                    handle.handle,
                    desc.0,
                    a.0,
                    b.0,
                    d.0,
                    d.0,
                    preference.0,
                )
            }
            .map_err(cublaslt_error("cublasLtMatmulAlgoGetHeuristic"))?;
            if heuristic.workspaceSize > workspace_bytes {
                return Err(BenchError::Cuda {
                    call: "cublasLtMatmulAlgoGetHeuristic",
                    detail: format!(
                        "the algorithm wants {} bytes of workspace, {workspace_bytes} allowed",
                        heuristic.workspaceSize
                    ),
                });
            }
            Ok(Self {
                n,
                workspace_bytes,
                desc,
                a,
                b,
                d,
                algo: heuristic.algo,
            })
        }
    }

    /// An error for operands smaller than the GEMM would read or write.
    fn too_small(call: &'static str, what: &str) -> BenchError {
        BenchError::Cuda {
            call,
            detail: format!("{what} is smaller than the GEMM needs"),
        }
    }

    /// Whether a buffer of `len` bytes holds `n`×`n` elements of `width` bytes.
    fn holds(len: usize, n: u32, width: u64) -> bool {
        u64::from(n)
            .checked_mul(u64::from(n))
            .and_then(|e| e.checked_mul(width))
            .is_some_and(|needed| u64::try_from(len).is_ok_and(|len| len >= needed))
    }

    /// One `cublasGemmEx`: C = op(A)·B, every operand `n`×`n` column-major with leading
    /// dimension `n`, alpha 1, beta 0, types from `spec`; queued on the handle's stream.
    #[allow(unsafe_code)]
    pub fn gemm_ex(
        handle: &BlasHandle,
        spec: &GemmSpec,
        n: u32,
        a: &CudaSlice<u8>,
        b: &CudaSlice<u8>,
        c: &mut CudaSlice<u8>,
    ) -> Result<(), BenchError> {
        const CALL: &str = "cublasGemmEx";
        let Kernel::GemmEx {
            input,
            output,
            compute,
            scale,
        } = spec.kernel
        else {
            return Err(BenchError::Cuda {
                call: CALL,
                detail: "not a cublasGemmEx precision".into(),
            });
        };
        let dim = c_int::try_from(n).map_err(|_| too_small(CALL, "c_int"))?;
        if !holds(a.len(), n, spec.input_bytes) || !holds(b.len(), n, spec.input_bytes) {
            return Err(too_small(CALL, "an input"));
        }
        if !holds(c.len(), n, spec.output_bytes) {
            return Err(too_small(CALL, "the output"));
        }
        let (alpha_f32, beta_f32) = (1.0_f32, 0.0_f32);
        let (alpha_f64, beta_f64) = (1.0_f64, 0.0_f64);
        let (alpha_i32, beta_i32) = (1_i32, 0_i32);
        let (alpha, beta): (*const c_void, *const c_void) = match scale {
            Scale::F32 => ((&raw const alpha_f32).cast(), (&raw const beta_f32).cast()),
            Scale::F64 => ((&raw const alpha_f64).cast(), (&raw const beta_f64).cast()),
            Scale::I32 => ((&raw const alpha_i32).cast(), (&raw const beta_i32).cast()),
        };
        let transa = if spec.transpose_a {
            blas::cublasOperation_t::CUBLAS_OP_T
        } else {
            blas::cublasOperation_t::CUBLAS_OP_N
        };
        let stream = &handle.stream;
        let (a_ptr, _a_used) = a.device_ptr(stream);
        let (b_ptr, _b_used) = b.device_ptr(stream);
        let (c_ptr, _c_used) = c.device_ptr_mut(stream);
        // SAFETY: the handle is live and bound to `stream`, whose context allocated A, B and C.
        // A and B hold n·n elements of `input`, C n·n of `output` (checked above), so with
        // m = n = k = lda = ldb = ldc = n (op(A) square either way) every access is in bounds.
        // alpha and beta point to live host values of the scale type `compute` requires, and
        // the handle is in host pointer mode (cuBLAS's default; never changed); cuBLAS reads
        // them before returning. The buffers outlive the queued GEMM: `prepare` and `Drop` free
        // them only after the stream has finished or on the same stream (stream-ordered free).
        unsafe {
            cudarc::cublas::result::gemm_ex(
                handle.handle,
                transa,
                blas::cublasOperation_t::CUBLAS_OP_N,
                dim,
                dim,
                dim,
                alpha,
                a_ptr as *const c_void,
                input,
                dim,
                b_ptr as *const c_void,
                input,
                dim,
                beta,
                c_ptr as *mut c_void,
                output,
                dim,
                compute,
                blas::cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
            )
        }
        .map_err(cublas_error(CALL))
    }

    /// One FP8 `cublasLtMatmul` of `plan` (D = C, beta 0), queued on the handle's stream.
    #[allow(unsafe_code)]
    pub fn lt_matmul(
        handle: &LtHandle,
        plan: &LtFp8Plan,
        a: &CudaSlice<u8>,
        b: &CudaSlice<u8>,
        d: &mut CudaSlice<u8>,
        workspace: &mut CudaSlice<u8>,
    ) -> Result<(), BenchError> {
        const CALL: &str = "cublasLtMatmul";
        if !holds(a.len(), plan.n, 1) || !holds(b.len(), plan.n, 1) {
            return Err(too_small(CALL, "an input"));
        }
        if !holds(d.len(), plan.n, 2) {
            return Err(too_small(CALL, "the output"));
        }
        if workspace.len() < plan.workspace_bytes {
            return Err(too_small(CALL, "the workspace"));
        }
        let (alpha, beta) = (1.0_f32, 0.0_f32);
        let stream = &handle.stream;
        let (a_ptr, _a_used) = a.device_ptr(stream);
        let (b_ptr, _b_used) = b.device_ptr(stream);
        let (d_ptr, _d_used) = d.device_ptr_mut(stream);
        let (w_ptr, _w_used) = workspace.device_ptr_mut(stream);
        // SAFETY: the handle, the descriptor, the layouts and the algorithm are live and were
        // made for side `plan.n`: A and B hold n·n E4M3 bytes, D n·n BF16 (checked above), and
        // C is D with D's layout (beta is 0, so C is not read). The workspace holds the
        // `plan.workspace_bytes` the algorithm was chosen within. alpha and beta are live host
        // f32s (the FP32 scale type; pointer mode host, the default), read before returning.
        // `stream` belongs to the context that allocated every buffer; the buffers outlive the
        // queued matmul as in `gemm_ex`.
        unsafe {
            lt_result::matmul(
                handle.handle,
                plan.desc.0,
                (&raw const alpha).cast(),
                (&raw const beta).cast(),
                a_ptr as *const c_void,
                plan.a.0,
                b_ptr as *const c_void,
                plan.b.0,
                d_ptr as *const c_void,
                plan.d.0,
                d_ptr as *mut c_void,
                plan.d.0,
                &raw const plan.algo,
                w_ptr as *mut c_void,
                plan.workspace_bytes,
                stream.cu_stream() as lt::cudaStream_t,
            )
        }
        .map_err(cublaslt_error(CALL))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_without_a_driver_is_an_error_not_a_panic() {
        let result = CudaBenchmark::open("00000000:18:00.0", None);
        if ffi::driver_present() {
            // A machine with a driver: any outcome but a panic will do.
            return;
        }
        assert!(
            matches!(result, Err(BenchError::NoCudaDriver)),
            "{:?}",
            result.err()
        );
        // lib_dir does not change that the driver comes first.
        let dir = tempfile::tempdir().unwrap();
        let result = CudaBenchmark::open("00000000:18:00.0", Some(dir.path()));
        assert!(matches!(result, Err(BenchError::NoCudaDriver)));
    }

    #[test]
    fn an_empty_lib_dir_names_what_it_looked_for() {
        let dir = tempfile::tempdir().unwrap();
        let Err(BenchError::MissingLibrary { library, searched }) =
            preload_from_dir(dir.path(), "cublasLt", "cuBLASLt")
        else {
            panic!("expected MissingLibrary");
        };
        assert_eq!(library, "cuBLASLt");
        let wanted = dir.path().join("libcublasLt.so.13").display().to_string();
        assert!(searched.contains(&wanted), "{searched}");
    }

    #[test]
    fn a_lib_dir_file_that_is_not_a_library_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("libcublas.so.12"), b"not an ELF file").unwrap();
        let Err(BenchError::MissingLibrary { library, searched }) =
            preload_from_dir(dir.path(), "cublas", "cuBLAS")
        else {
            panic!("expected MissingLibrary");
        };
        assert_eq!(library, "cuBLAS");
        assert!(searched.contains("libcublas.so.12 ("), "{searched}");
    }

    #[test]
    fn cudarc_looks_for_cuda_13_and_cuda_12_libraries() {
        let names = searched_names("cublas");
        let position = |name: &str| names.iter().position(|n| n == name);
        assert_eq!(position("libcublas.so"), Some(0), "{names:?}");
        let (Some(v13), Some(v12)) = (position("libcublas.so.13"), position("libcublas.so.12"))
        else {
            panic!("{names:?}");
        };
        assert!(v13 < v12, "CUDA 13 first: {names:?}");
        assert!(searched_names("cublasLt").contains(&"libcublasLt.so.12".to_string()));
        assert!(searched_names("cuda").contains(&"libcuda.so.1".to_string()));
        // Only Linux names, once each.
        assert!(
            names.iter().all(|n| n.starts_with("libcublas.so")),
            "{names:?}"
        );
        let mut unique = names.clone();
        unique.dedup();
        assert_eq!(unique, names);
    }

    #[test]
    fn pci_bus_ids_parse_in_nvml_cuda_and_lspci_forms() {
        let h100 = PciAddress {
            domain: 0,
            bus: 0x18,
            device: 0,
        };
        assert_eq!(parse_pci_bus_id("00000000:18:00.0"), Some(h100));
        assert_eq!(parse_pci_bus_id("0000:18:00.0"), Some(h100));
        assert_eq!(parse_pci_bus_id("18:00.0"), Some(h100));
        assert_eq!(parse_pci_bus_id(" 18:00 "), Some(h100));
        assert_eq!(
            parse_pci_bus_id("00000001:DB:1f.0"),
            Some(PciAddress {
                domain: 1,
                bus: 0xdb,
                device: 0x1f,
            })
        );
        for bad in [
            "",
            "18",
            "0000:18:00.0:1",
            "zz:00.0",
            "00000000:180:00.0",
            "18:00.x",
            "18:.0",
            "000000000:18:00.0",
        ] {
            assert_eq!(parse_pci_bus_id(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn sizes_halve_in_steps_of_256_down_to_1024() {
        assert_eq!(size_candidates(16384), [16384, 8192, 4096, 2048, 1024]);
        assert_eq!(size_candidates(8192), [8192, 4096, 2048, 1024]);
        assert_eq!(size_candidates(10000), [9984, 4864, 2304, 1024]);
        assert_eq!(size_candidates(1792), [1792, 1024]);
        assert_eq!(size_candidates(1024), [1024]);
        assert_eq!(size_candidates(700), [512]);
        assert_eq!(size_candidates(0), [256]);
        for n in [0, 300, 1023, 1025, 5000, 65535, u32::MAX] {
            let sizes = size_candidates(n);
            assert!(
                sizes.iter().all(|s| s % SIZE_STEP == 0 && *s > 0),
                "{sizes:?}"
            );
            assert!(sizes.windows(2).all(|w| w[0] > w[1]), "{sizes:?}");
        }
    }

    #[test]
    fn operands_must_fit_in_ninety_percent_of_free_memory() {
        let fp16 = gemm_spec(Precision::Fp16).unwrap();
        // 8192² × (2 + 2 + 2) bytes = 384 MiB, plus 128 MiB reserved.
        assert_eq!(fp16.operand_bytes(8192), Some(384 << 20));
        let needed = (384 << 20) + fp16.reserved_bytes();
        assert!(fits(384 << 20, fp16.reserved_bytes(), needed * 10 / 9 + 10));
        assert!(!fits(384 << 20, fp16.reserved_bytes(), needed));
        assert!(!fits(u64::MAX, 1, u64::MAX));
        let fp8 = gemm_spec(Precision::Fp8).unwrap();
        assert_eq!(fp8.operand_bytes(1024), Some(4 << 20));
        assert_eq!(fp8.reserved_bytes(), (128 << 20) + (32 << 20));
        assert_eq!(
            gemm_spec(Precision::Fp64).unwrap().operand_bytes(u32::MAX),
            None
        );
        // An 80 GB H100 takes 16384² FP64 (6 GiB); 1 GiB free takes 4096².
        let fp64 = gemm_spec(Precision::Fp64).unwrap();
        let first_fit = |free: u64| {
            size_candidates(16384)
                .into_iter()
                .find(|&n| fits(fp64.operand_bytes(n).unwrap(), fp64.reserved_bytes(), free))
        };
        assert_eq!(first_fit(80 << 30), Some(16384));
        assert_eq!(first_fit(2 << 30), Some(8192));
        assert_eq!(first_fit(1 << 30), Some(4096));
        assert_eq!(first_fit(100 << 20), None);
    }

    #[test]
    fn precisions_by_compute_capability() {
        use Precision::*;
        let h100 = (9, 0);
        for p in [Fp8, Int8, Fp16, Bf16, Tf32, Fp64] {
            assert!(supported(h100, p), "{p}");
        }
        for p in [Fp32, Int4, Fp4] {
            assert!(!supported(h100, p), "{p}");
            assert!(gemm_spec(p).is_none());
        }
        // FP8 from Ada (8.9) on.
        assert!(supported((8, 9), Fp8));
        assert!(supported((10, 0), Fp8));
        assert!(supported((12, 0), Fp8));
        assert!(!supported((8, 6), Fp8));
        assert!(!supported((8, 0), Fp8));
        // FP64 only on the full-rate parts.
        for cc in [(6, 0), (7, 0), (8, 0), (9, 0), (10, 0)] {
            assert!(supported(cc, Fp64), "{cc:?}");
        }
        for cc in [(6, 1), (7, 5), (8, 6), (8, 9), (10, 3), (12, 0)] {
            assert!(!supported(cc, Fp64), "{cc:?}");
        }
        // TF32 and BF16 from Ampere on; FP16 and INT8 on a T4.
        assert!(!supported((7, 5), Tf32) && !supported((7, 5), Bf16));
        assert!(supported((7, 5), Fp16) && supported((7, 5), Int8));
    }

    #[test]
    fn gemm_types_agree() {
        use blas_sys::cublasComputeType_t as C;
        for p in Precision::ALL {
            let Some(spec) = gemm_spec(p) else { continue };
            match spec.kernel {
                Kernel::GemmEx { compute, scale, .. } => {
                    let want = match compute {
                        C::CUBLAS_COMPUTE_32F | C::CUBLAS_COMPUTE_32F_FAST_TF32 => Scale::F32,
                        C::CUBLAS_COMPUTE_64F => Scale::F64,
                        C::CUBLAS_COMPUTE_32I => Scale::I32,
                        other => panic!("{p}: {other:?}"),
                    };
                    assert_eq!(scale, want, "{p}");
                }
                Kernel::LtFp8 => assert_eq!(p, Precision::Fp8),
            }
            // The 8-bit kernels run "TN"; the others need no transpose.
            assert_eq!(
                spec.transpose_a,
                matches!(p, Precision::Fp8 | Precision::Int8),
                "{p}"
            );
            // A and B elements are the precision's bit length (TF32 in a 32-bit container).
            assert_eq!(spec.input_bytes * 8, u64::from(p.bit_length()), "{p}");
        }
        assert_eq!(
            gemm_spec(Precision::Int8).unwrap().kernel,
            Kernel::GemmEx {
                input: blas_sys::cudaDataType::CUDA_R_8I,
                output: blas_sys::cudaDataType::CUDA_R_32I,
                compute: C::CUBLAS_COMPUTE_32I,
                scale: Scale::I32,
            }
        );
    }

    #[test]
    fn fill_values_encode_exactly() {
        assert_eq!(f16_bits(1.0), 0x3c00);
        assert_eq!(f16_bits(-0.25), 0xb400);
        assert_eq!(f16_bits(0.75), 0x3a00);
        assert_eq!(f16_bits(0.0), 0);
        assert_eq!(bf16_bits(1.0), 0x3f80);
        assert_eq!(bf16_bits(-0.5), 0xbf00);
        assert_eq!(e4m3_bits(1.0), 0x38);
        assert_eq!(e4m3_bits(0.75), 0x34);
        assert_eq!(e4m3_bits(-0.25), 0xa8);
        assert_eq!(e4m3_bits(0.5), 0x30);
        // Outside what the pattern uses: zero, never a panic.
        for odd in [
            f32::MIN_POSITIVE,
            1e-30,
            1e30,
            f32::INFINITY,
            f32::NAN,
            -0.0,
        ] {
            assert_eq!(f16_bits(odd), 0, "{odd}");
            assert_eq!(e4m3_bits(odd), 0, "{odd}");
        }
        assert_eq!(f16_bits(65504.0), 0x7bff);
        assert_eq!(e4m3_bits(240.0), 0x77);
        // Every value the pattern gives, round-tripped through the formats' definitions.
        for q in -4_i8..=4 {
            let v = f32::from(q) / 4.0;
            let h = f16_bits(v);
            let e = i32::from((h >> 10) & 0x1f) - 15;
            let m = 1.0 + f32::from(h & 0x3ff) / 1024.0;
            let sign = if h & 0x8000 != 0 { -1.0 } else { 1.0 };
            let back = if h & 0x7fff == 0 {
                0.0
            } else {
                sign * m * 2f32.powi(e)
            };
            assert_eq!(back, v, "f16 {q}");
            assert_eq!(f32::from_bits(u32::from(bf16_bits(v)) << 16), v, "bf16 {q}");
            let f = e4m3_bits(v);
            let e = i32::from((f >> 3) & 0xf) - 7;
            let m = 1.0 + f32::from(f & 0x7) / 8.0;
            let sign = if f & 0x80 != 0 { -1.0 } else { 1.0 };
            let back = if f & 0x7f == 0 {
                0.0
            } else {
                sign * m * 2f32.powi(e)
            };
            assert_eq!(back, v, "e4m3 {q}");
        }
    }

    #[test]
    fn fill_patterns_are_whole_elements_of_small_varied_values() {
        let values: Vec<i8> = (0..10_000).map(pattern_value).collect();
        assert!(values.iter().all(|v| (-4..=4).contains(v)));
        for q in -4..=4 {
            let share = values.iter().filter(|&&v| v == q).count();
            assert!((800..1400).contains(&share), "{q}: {share}");
        }
        assert_eq!(fill_pattern(Precision::Fp64, 20).len(), 16);
        assert_eq!(fill_pattern(Precision::Int8, 20).len(), 20);
        assert_eq!(fill_pattern(Precision::Fp16, 4), {
            let mut v = f16_bits(f32::from(pattern_value(0)) / 4.0)
                .to_le_bytes()
                .to_vec();
            v.extend_from_slice(&f16_bits(f32::from(pattern_value(1)) / 4.0).to_le_bytes());
            v
        });
        assert_eq!(
            fill_pattern(Precision::Int8, 3),
            [0, 1, 2].map(|i| pattern_value(i) as u8)
        );
        assert_eq!(FILL_CHUNK_BYTES % 8, 0);
    }

    #[test]
    fn event_times_become_durations() {
        assert_eq!(
            duration_from_ms(1500.0).unwrap(),
            Duration::from_millis(1500)
        );
        assert_eq!(duration_from_ms(0.0).unwrap(), Duration::ZERO);
        assert!(duration_from_ms(-1.0).is_err());
        assert!(duration_from_ms(f32::NAN).is_err());
    }

    #[test]
    fn versions_read_as_cuda_writes_them() {
        assert_eq!(driver_version_text(13000), "13.0");
        assert_eq!(driver_version_text(12080), "12.8");
        assert_eq!(driver_version_text(12040), "12.4");
        let hint = newer_library_hint(
            BenchError::Cuda {
                call: "cublasCreate",
                detail: "CUBLAS_STATUS_NOT_INITIALIZED".into(),
            },
            "cuBLAS",
            13,
            12040,
        );
        assert!(
            hint.to_string().contains("needs a driver for CUDA 13.0"),
            "{hint}"
        );
        let same = newer_library_hint(
            BenchError::Cuda {
                call: "cublasCreate",
                detail: "x".into(),
            },
            "cuBLAS",
            12,
            13000,
        );
        assert_eq!(same.to_string(), "cublasCreate failed: x");
    }
}
