//! The cuBLAS functions cudarc and the agent call (`cublas_api.h`, CUDA 13.0), and what they
//! share with cuBLASLt: the driver lookup, operand and scale checks, and queuing a GEMM.
#![expect(non_snake_case, reason = "cuBLAS's C names")]
#![expect(
    clippy::missing_safety_doc,
    reason = "the safety contract of every function is cuBLAS's, stated in the module docs"
)]

use std::collections::BTreeMap;
use std::ffi::{c_int, c_uint, c_void};
use std::sync::Mutex;

use crate::driver::{self, DeviceInfo, Hooks, Opaque};
use crate::model::{self, CUBLAS_MIN_DRIVER, CUBLAS_VERSION, Scale, Unit, dtype};
use crate::{Handles, Refusal, get, lock, note_once, put, refuse, run_entry};

/// `cublasStatus_t` (cuBLASLt's too).
pub type Status = c_uint;
pub const SUCCESS: Status = 0;
pub const NOT_INITIALIZED: Status = 1;
pub const INVALID_VALUE: Status = 7;
pub const ARCH_MISMATCH: Status = 8;
pub const EXECUTION_FAILED: Status = 13;
pub const INTERNAL_ERROR: Status = 14;
pub const NOT_SUPPORTED: Status = 15;

/// The driver copy's state, found in the loaded `libcuda.so.1` as real cuBLAS uses the driver
/// the process has loaded.
#[cfg(not(test))]
pub(crate) fn driver() -> Result<&'static Hooks, Refusal> {
    use std::sync::OnceLock;
    static FOUND: OnceLock<&'static Hooks> = OnceLock::new();
    if let Some(hooks) = FOUND.get() {
        return Ok(hooks);
    }
    for name in [c"libcuda.so.1", c"libcuda.so"] {
        // SAFETY: with RTLD_NOLOAD, dlopen only looks for a library already loaded (nothing is
        // loaded, no initialiser runs); the name is a NUL-terminated literal.
        let lib = unsafe { libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_NOLOAD) };
        if lib.is_null() {
            continue;
        }
        // SAFETY: `lib` is a live handle; the symbol name is a NUL-terminated literal.
        let symbol = unsafe { libc::dlsym(lib, c"TPPGUARD_FAKE_CUDA_DRIVER".as_ptr()) };
        if symbol.is_null() {
            return refuse(
                NOT_INITIALIZED,
                "the loaded libcuda.so.1 is not tppguard's fake; the fake cuBLAS needs the fake \
                 driver",
            );
        }
        // SAFETY: the symbol is the `Hooks` static of a copy of this very library (same build,
        // same layout). The handle from dlopen is never closed, so that copy stays loaded and
        // the reference valid for the rest of the process.
        let hooks: &'static Hooks = unsafe { &*symbol.cast::<Hooks>() };
        return Ok(FOUND.get_or_init(|| hooks));
    }
    refuse(
        NOT_INITIALIZED,
        "the CUDA driver (libcuda.so.1) is not loaded in this process",
    )
}

/// In unit tests the driver is this very library.
#[cfg(test)]
pub(crate) fn driver() -> Result<&'static Hooks, Refusal> {
    Ok(&driver::TPPGUARD_FAKE_CUDA_DRIVER)
}

/// The device, once the driver is initialised and new enough for cuBLAS 13.
pub(crate) fn device(hooks: &Hooks) -> Result<DeviceInfo, Refusal> {
    let info = (hooks.device)();
    if info.initialized == 0 {
        return refuse(NOT_INITIALIZED, "cuInit has not been called");
    }
    if info.driver_version < CUBLAS_MIN_DRIVER {
        return refuse(
            NOT_INITIALIZED,
            format!(
                "cuBLAS {} needs a driver for CUDA {}.0 or newer; this one reports {}",
                CUBLAS_VERSION[0], CUBLAS_VERSION[0], info.driver_version
            ),
        );
    }
    Ok(info)
}

/// The calling thread's current context, which a GEMM runs in.
pub(crate) fn context(hooks: &Hooks) -> Result<usize, Refusal> {
    match (hooks.current_context)() {
        0 => refuse(NOT_INITIALIZED, "no current CUDA context on this thread"),
        ctx => Ok(ctx),
    }
}

/// Checks that the stream is one the fake models, as a cuBLAS status.
pub(crate) fn check_stream(stream: Opaque) -> Result<(), Refusal> {
    driver::check_stream(stream).or_else(|r| refuse(INVALID_VALUE, r.why))
}

/// Checks that operand `what`, `rows`×`cols` (as stored) with leading dimension `ld` and
/// `element`-byte elements, lies in one device allocation, starting at a multiple of `align`.
pub(crate) fn check_operand(
    hooks: &Hooks,
    what: &str,
    ptr: *const c_void,
    (rows, cols, ld): (u64, u64, u64),
    element: u64,
    align: u64,
) -> Result<(), Refusal> {
    let Some(bytes) = model::span_bytes(rows, cols, ld, element) else {
        return refuse(INVALID_VALUE, format!("{what}: its size overflows"));
    };
    if bytes == 0 {
        return Ok(());
    }
    let address = ptr as u64;
    if !address.is_multiple_of(align) {
        return refuse(
            NOT_SUPPORTED,
            format!("{what}: {address:#x} is not aligned to {align} bytes"),
        );
    }
    let span = (hooks.allocation)(address);
    if span.len == 0 {
        return refuse(
            INVALID_VALUE,
            format!("{what}: {address:#x} is not device memory of this context"),
        );
    }
    let offset = address - span.start;
    if bytes > span.len - offset {
        return refuse(
            INVALID_VALUE,
            format!(
                "{what}: {rows}×{cols} with leading dimension {ld} spans {bytes} bytes, past the \
                 end of its allocation ({} bytes from offset {offset})",
                span.len - offset
            ),
        );
    }
    Ok(())
}

/// IEEE half-precision bits as an `f64`.
fn half(bits: u16) -> f64 {
    let sign = if bits & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exponent = i32::from((bits >> 10) & 0x1f);
    let mantissa = f64::from(bits & 0x3ff);
    sign * match exponent {
        0 => mantissa * 2f64.powi(-24),
        31 => f64::NAN,
        e => (1.0 + mantissa / 1024.0) * 2f64.powi(e - 15),
    }
}

/// Checks `alpha` and `beta` (host pointers to the scale type): the fake models
/// `C = op(A)·op(B)` only, so they must be 1 and 0. A scalar of another type than the scale type
/// reads as something else and is refused.
///
/// # Safety
/// `alpha` and `beta` are null or point to host values of type `scale` (cuBLAS's host pointer
/// mode contract).
pub(crate) unsafe fn check_scalars(
    scale: Scale,
    alpha: *const c_void,
    beta: *const c_void,
) -> Result<(), Refusal> {
    // SAFETY: this function's contract.
    let read = |p: *const c_void, what: &str| unsafe {
        Ok::<f64, Refusal>(match scale {
            Scale::F16 => half(get(p.cast::<u16>(), INVALID_VALUE, what)?),
            Scale::F32 => f64::from(get(p.cast::<f32>(), INVALID_VALUE, what)?),
            Scale::F64 => get(p.cast::<f64>(), INVALID_VALUE, what)?,
            Scale::I32 => f64::from(get(p.cast::<i32>(), INVALID_VALUE, what)?),
        })
    };
    let (a, b) = (read(alpha, "alpha")?, read(beta, "beta")?);
    if (a, b) != (1.0, 0.0) {
        return refuse(
            NOT_SUPPORTED,
            format!(
                "alpha {a:?} and beta {b:?} read as {scale:?} (the compute type's scale type); the \
                 fake models C = op(A)·op(B) only (alpha 1, beta 0)"
            ),
        );
    }
    Ok(())
}

/// Queues a GEMM of `2·m·n·k` operations on `unit` (at half rate when `slow` says why).
pub(crate) fn launch(
    hooks: &Hooks,
    info: &DeviceInfo,
    ctx: usize,
    stream: Opaque,
    (m, n, k): (u64, u64, u64),
    unit: Unit,
    slow: Option<&'static str>,
) -> Result<(), Refusal> {
    let cc = (info.cc_major, info.cc_minor);
    let Some(tflops) = unit.tflops(cc) else {
        return refuse(
            ARCH_MISMATCH,
            format!("compute capability {}.{} has no {unit:?} GEMMs", cc.0, cc.1),
        );
    };
    let factor = match slow {
        Some(why) => {
            note_once(why);
            0.5
        }
        None => 1.0,
    };
    let operations = 2.0 * m as f64 * n as f64 * k as f64;
    let seconds = operations / (tflops * factor * 1e12);
    match (hooks.launch)(ctx, stream, seconds) {
        0 => Ok(()),
        _ => refuse(EXECUTION_FAILED, "the driver refused the kernel launch"),
    }
}

/// A cuBLAS handle: the context it was created in and its stream.
#[derive(Debug, Clone, Copy)]
struct Handle {
    context: usize,
    stream: usize,
}

#[derive(Debug)]
struct Blas {
    handles: BTreeMap<usize, Handle>,
    ids: Handles,
}

static BLAS: Mutex<Blas> = Mutex::new(Blas {
    handles: BTreeMap::new(),
    ids: Handles::new(0xB1A5_0000),
});

impl Blas {
    fn handle(&self, h: Opaque) -> Result<Handle, Refusal> {
        match self.handles.get(&(h as usize)) {
            Some(handle) => Ok(*handle),
            None => refuse(
                NOT_INITIALIZED,
                format!("{h:p} is not a live cuBLAS handle"),
            ),
        }
    }
}

fn entry(call: &str, f: impl FnOnce(&mut Blas) -> Result<(), Refusal>) -> Status {
    run_entry(call, INTERNAL_ERROR, || f(&mut lock(&BLAS)))
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn cublasCreate_v2(handle: *mut Opaque) -> Status {
    entry("cublasCreate_v2", |b| {
        let hooks = driver()?;
        device(hooks)?;
        let context = context(hooks)?;
        let id = b.ids.take();
        // SAFETY: cuBLAS's contract: a valid `cublasHandle_t*`.
        unsafe { put(handle, id as Opaque, INVALID_VALUE, "handle")? };
        b.handles.insert(id, Handle { context, stream: 0 });
        Ok(())
    })
}

#[unsafe(no_mangle)]
pub extern "C" fn cublasDestroy_v2(handle: Opaque) -> Status {
    entry("cublasDestroy_v2", |b| {
        b.handle(handle)?;
        b.handles.remove(&(handle as usize));
        Ok(())
    })
}

#[unsafe(no_mangle)]
pub extern "C" fn cublasSetStream_v2(handle: Opaque, streamId: Opaque) -> Status {
    entry("cublasSetStream_v2", |b| {
        b.handle(handle)?;
        check_stream(streamId)?;
        if let Some(h) = b.handles.get_mut(&(handle as usize)) {
            h.stream = streamId as usize;
        }
        Ok(())
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn cublasGetStream_v2(handle: Opaque, streamId: *mut Opaque) -> Status {
    entry("cublasGetStream_v2", |b| {
        let h = b.handle(handle)?;
        // SAFETY: cuBLAS's contract: a valid `cudaStream_t*`.
        unsafe { put(streamId, h.stream as Opaque, INVALID_VALUE, "streamId") }
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn cublasGetProperty(type_: c_int, value: *mut c_int) -> Status {
    entry("cublasGetProperty", |_| {
        let Some(&v) = usize::try_from(type_)
            .ok()
            .and_then(|t| CUBLAS_VERSION.get(t))
        else {
            return refuse(INVALID_VALUE, format!("libraryPropertyType {type_}"));
        };
        // SAFETY: cuBLAS's contract: a valid `int*`.
        unsafe { put(value, v, INVALID_VALUE, "value") }
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn cublasGetVersion_v2(handle: Opaque, version: *mut c_int) -> Status {
    entry("cublasGetVersion_v2", |b| {
        b.handle(handle)?;
        let [major, minor, patch] = CUBLAS_VERSION;
        // SAFETY: cuBLAS's contract: a valid `int*`.
        unsafe {
            put(
                version,
                major * 10000 + minor * 100 + patch,
                INVALID_VALUE,
                "version",
            )
        }
    })
}

/// A dimension, refused when negative.
fn dim(value: c_int, what: &str) -> Result<u64, Refusal> {
    u64::try_from(value).or_else(|_| refuse(INVALID_VALUE, format!("{what} = {value} < 0")))
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn cublasGemmEx(
    handle: Opaque,
    transa: c_int,
    transb: c_int,
    m: c_int,
    n: c_int,
    k: c_int,
    alpha: *const c_void,
    A: *const c_void,
    Atype: c_int,
    lda: c_int,
    B: *const c_void,
    Btype: c_int,
    ldb: c_int,
    beta: *const c_void,
    C: *mut c_void,
    Ctype: c_int,
    ldc: c_int,
    computeType: c_int,
    algo: c_int,
) -> Status {
    entry("cublasGemmEx", |b| {
        let handle = b.handle(handle)?;
        let hooks = driver()?;
        let info = device(hooks)?;
        let ctx = context(hooks)?;
        if ctx != handle.context {
            return refuse(
                EXECUTION_FAILED,
                "the handle's context is not current on this thread",
            );
        }
        if !model::is_op(transa) || !model::is_op(transb) {
            return refuse(INVALID_VALUE, format!("transa {transa}, transb {transb}"));
        }
        let (m, n, k) = (dim(m, "m")?, dim(n, "n")?, dim(k, "k")?);
        let (a_rows, a_cols) = model::stored(transa, m, k);
        let (b_rows, b_cols) = model::stored(transb, k, n);
        let (lda, ldb, ldc) = (dim(lda, "lda")?, dim(ldb, "ldb")?, dim(ldc, "ldc")?);
        for (what, ld, rows) in [("lda", lda, a_rows), ("ldb", ldb, b_rows), ("ldc", ldc, m)] {
            if ld < rows.max(1) {
                return refuse(
                    INVALID_VALUE,
                    format!("{what} = {ld} < max(1, {rows}) rows of the stored matrix"),
                );
            }
        }
        if Atype != Btype {
            return refuse(
                NOT_SUPPORTED,
                format!("Atype {Atype} and Btype {Btype} differ"),
            );
        }
        let Some(unit) = model::gemm_unit(Atype, Ctype, computeType) else {
            return refuse(
                NOT_SUPPORTED,
                format!(
                    "A/B type {Atype}, C type {Ctype} and compute type {computeType}: not a \
                     combination cublasGemmEx supports"
                ),
            );
        };
        if !(algo == -1 || (0..=23).contains(&algo) || (99..=115).contains(&algo)) {
            return refuse(INVALID_VALUE, format!("algo {algo}"));
        }
        let Some(scale) = Scale::of(computeType) else {
            return refuse(INVALID_VALUE, format!("compute type {computeType}"));
        };
        // SAFETY: cuBLAS's contract (host pointer mode, the default, never changed through
        // this fake): alpha and beta point to host values of the compute type's scale type.
        unsafe { check_scalars(scale, alpha, beta)? };
        let integer = scale == Scale::I32;
        if integer && !(lda.is_multiple_of(4) && ldb.is_multiple_of(4)) {
            return refuse(
                NOT_SUPPORTED,
                format!(
                    "INT8 with CUBLAS_COMPUTE_32I needs lda and ldb multiples of 4: {lda}, {ldb}"
                ),
            );
        }
        let (ab_size, c_size) = match (dtype::size(Atype), dtype::size(Ctype)) {
            (Some(a), Some(c)) => (a, c),
            _ => return refuse(NOT_SUPPORTED, "an unknown data type"),
        };
        let ab_align = if integer { 4 } else { ab_size };
        check_operand(hooks, "A", A, (a_rows, a_cols, lda), ab_size, ab_align)?;
        check_operand(hooks, "B", B, (b_rows, b_cols, ldb), ab_size, ab_align)?;
        check_operand(hooks, "C", C.cast_const(), (m, n, ldc), c_size, c_size)?;
        let slow = (unit == Unit::Int8 && (transa == model::OP_N || transb != model::OP_N)).then_some(
            "an INT8 GEMM outside the TN layout (A transposed, B not) runs at half rate: cuBLAS's \
             integer tensor-core kernels are TN",
        );
        launch(
            hooks,
            &info,
            ctx,
            handle.stream as Opaque,
            (m, n, k),
            unit,
            slow,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::tests as drv;
    use crate::model::{HOPPER, compute};

    fn gemm(
        h: Opaque,
        (transa, transb): (c_int, c_int),
        n: c_int,
        (a, b, c): (u64, u64, u64),
        (ab, ct, ctype): (c_int, c_int, c_int),
        ld: c_int,
        scalars: (*const c_void, *const c_void),
    ) -> Status {
        // SAFETY: the scalars point to live host values; the fake never dereferences device
        // addresses.
        unsafe {
            cublasGemmEx(
                h,
                transa,
                transb,
                n,
                n,
                n,
                scalars.0,
                a as *const c_void,
                ab,
                ld,
                b as *const c_void,
                ab,
                ld,
                scalars.1,
                c as *mut c_void,
                ct,
                ld,
                ctype,
                -1,
            )
        }
    }

    // One test only touches the libraries' global state (the driver's, cuBLAS's and
    // cuBLASLt's), so tests cannot race on it.
    #[test]
    fn the_c_contract() {
        drv::the_driver_contract();
        drv::open();
        let mut h: Opaque = std::ptr::null_mut();
        // SAFETY: `h` is a valid `cublasHandle_t`.
        assert_eq!(unsafe { cublasCreate_v2(&mut h) }, SUCCESS);
        assert_eq!(cublasSetStream_v2(h, 0x99 as Opaque), INVALID_VALUE);
        assert_eq!(cublasSetStream_v2(h, std::ptr::null_mut()), SUCCESS);

        let n = 256;
        let bytes = |e: usize| 256 * 256 * e;
        let (a, b, c) = (
            drv::alloc(bytes(2)),
            drv::alloc(bytes(2)),
            drv::alloc(bytes(2)),
        );
        // alpha 1 and beta 0, with room behind each for a wider read.
        let f32_scalars = [1.0f32, 0.0, 0.0, 0.0];
        let f32s = (
            f32_scalars.as_ptr().cast(),
            f32_scalars[2..].as_ptr().cast(),
        );
        let fp16 = (dtype::R_16F, dtype::R_16F, compute::C_32F);
        let nn = (model::OP_N, model::OP_N);

        let t0 = drv::stream_seconds();
        assert_eq!(gemm(h, nn, n, (a, b, c), fp16, n, f32s), SUCCESS);
        let took = drv::stream_seconds() - t0;
        let want = 2.0 * 256f64.powi(3) / (HOPPER.fp16 * 1e12);
        assert!((took / want - 1.0).abs() < 1e-9, "{took} vs {want}");

        // Leading dimension short of the rows, operands past their allocation, types, scalars.
        assert_eq!(gemm(h, nn, n, (a, b, c), fp16, n - 1, f32s), INVALID_VALUE);
        assert_eq!(gemm(h, nn, n, (a + 2, b, c), fp16, n, f32s), INVALID_VALUE);
        assert_eq!(gemm(h, nn, n, (a, b, c + 8), fp16, n, f32s), INVALID_VALUE);
        let fp32_into_fp16 = (dtype::R_16F, dtype::R_16F, compute::C_32F_FAST_TF32);
        assert_eq!(
            gemm(h, nn, n, (a, b, c), fp32_into_fp16, n, f32s),
            NOT_SUPPORTED
        );
        let (one64, zero64) = (1.0f64, 0.0f64);
        let f64s = ((&raw const one64).cast(), (&raw const zero64).cast());
        assert_eq!(gemm(h, nn, n, (a, b, c), fp16, n, f64s), NOT_SUPPORTED);
        let fp64 = (dtype::R_64F, dtype::R_64F, compute::C_64F);
        assert_eq!(gemm(h, nn, n, (a, b, c), fp64, n, f32s), NOT_SUPPORTED);
        // FP64 operands need 8 bytes an element: these allocations hold a quarter.
        assert_eq!(gemm(h, nn, n, (a, b, c), fp64, n, f64s), INVALID_VALUE);
        assert_eq!(gemm(h, (3, 0), n, (a, b, c), fp16, n, f32s), INVALID_VALUE);

        // INT8 runs at full rate in TN only.
        let (one_i, zero_i) = (1i32, 0i32);
        let i32s = ((&raw const one_i).cast(), (&raw const zero_i).cast());
        let int8 = (dtype::R_8I, dtype::R_32I, compute::C_32I);
        let tn = (model::OP_T, model::OP_N);
        let c32 = drv::alloc(bytes(4));
        assert_eq!(gemm(h, tn, n, (a, b, c), int8, n, i32s), INVALID_VALUE);
        let t0 = drv::stream_seconds();
        assert_eq!(gemm(h, tn, n, (a, b, c32), int8, n, i32s), SUCCESS);
        let t1 = drv::stream_seconds();
        assert_eq!(gemm(h, nn, n, (a, b, c32), int8, n, i32s), SUCCESS);
        let t2 = drv::stream_seconds();
        assert!(((t2 - t1) / (t1 - t0) - 2.0).abs() < 1e-9);

        // Another thread has no current context.
        let handle = h as usize;
        let other = std::thread::spawn(move || {
            gemm(
                handle as Opaque,
                nn,
                256,
                (a, b, c),
                fp16,
                256,
                (std::ptr::null(), std::ptr::null()),
            )
        });
        assert_eq!(other.join().unwrap(), NOT_INITIALIZED);

        crate::lt::tests::the_lt_contract(a, b, c);

        assert_eq!(cublasDestroy_v2(h), SUCCESS);
        assert_eq!(cublasDestroy_v2(h), NOT_INITIALIZED);
        assert_eq!(gemm(h, nn, n, (a, b, c), fp16, n, f32s), NOT_INITIALIZED);
    }
}
