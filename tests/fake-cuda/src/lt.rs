//! The cuBLASLt functions cudarc and the agent call (`cublasLt.h`, CUDA 13.0).
#![expect(non_snake_case, reason = "cuBLASLt's C names")]
#![expect(
    clippy::missing_safety_doc,
    reason = "the safety contract of every function is cuBLASLt's, stated in the module docs"
)]

use std::collections::BTreeMap;
use std::ffi::{c_int, c_void};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Mutex;

use crate::blas::{
    self, INTERNAL_ERROR, INVALID_VALUE, NOT_INITIALIZED, NOT_SUPPORTED, Status, check_operand,
    check_scalars, check_stream, context, device, driver, launch,
};
use crate::driver::Opaque;
use crate::model::{self, CUBLAS_VERSION, OP_N, OP_T, Scale, Unit, compute, dtype};
use crate::{Handles, Refusal, get, lock, put, refuse, run_entry};

/// Marks an algorithm the fake's heuristic chose (`cublasLtMatmulAlgo_t.data[0]`).
const ALGO_MAGIC: u64 = 0x7470_7067_7561_7264;
/// Workspace the fake's algorithms ask for, at most.
const ALGO_WORKSPACE: u64 = 4 << 20;

/// `cublasLtMatmulHeuristicResult_t`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct HeuristicResult {
    pub algo: [u64; 8],
    pub workspace_size: usize,
    pub state: Status,
    pub waves_count: f32,
    pub reserved: [c_int; 4],
}

const _: () = assert!(size_of::<HeuristicResult>() == 96);

/// A matmul descriptor.
#[derive(Debug, Clone, Copy, Hash)]
struct Desc {
    compute: c_int,
    scale: c_int,
    transa: c_int,
    transb: c_int,
    fast_accum: i8,
}

/// A matrix layout (column-major, the default order; the only one the fake models).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Layout {
    dtype: c_int,
    rows: u64,
    cols: u64,
    ld: u64,
}

#[derive(Debug)]
struct Lt {
    handles: BTreeMap<usize, ()>,
    descs: BTreeMap<usize, Desc>,
    layouts: BTreeMap<usize, Layout>,
    prefs: BTreeMap<usize, u64>,
    ids: Handles,
}

static LT: Mutex<Lt> = Mutex::new(Lt {
    handles: BTreeMap::new(),
    descs: BTreeMap::new(),
    layouts: BTreeMap::new(),
    prefs: BTreeMap::new(),
    ids: Handles::new(0x17_0000),
});

impl Lt {
    fn id(&mut self) -> usize {
        self.ids.take()
    }

    fn handle(&self, h: Opaque) -> Result<(), Refusal> {
        match self.handles.get(&(h as usize)) {
            Some(()) => Ok(()),
            None => refuse(
                NOT_INITIALIZED,
                format!("{h:p} is not a live cuBLASLt handle"),
            ),
        }
    }

    fn desc(&self, d: Opaque) -> Result<Desc, Refusal> {
        match self.descs.get(&(d as usize)) {
            Some(desc) => Ok(*desc),
            None => refuse(
                INVALID_VALUE,
                format!("{d:p} is not a live matmul descriptor"),
            ),
        }
    }

    fn layout(&self, l: Opaque, what: &str) -> Result<Layout, Refusal> {
        match self.layouts.get(&(l as usize)) {
            Some(layout) => Ok(*layout),
            None => refuse(
                INVALID_VALUE,
                format!("{what}: {l:p} is not a live matrix layout"),
            ),
        }
    }
}

fn entry(call: &str, f: impl FnOnce(&mut Lt) -> Result<(), Refusal>) -> Status {
    run_entry(call, INTERNAL_ERROR, || f(&mut lock(&LT)))
}

/// One matmul as the descriptors describe it.
#[derive(Debug)]
struct Problem {
    m: u64,
    n: u64,
    k: u64,
    unit: Unit,
    /// Why it runs at half rate, if it does.
    slow: Option<&'static str>,
    /// Ties an algorithm to the problem it was chosen for.
    fingerprint: u64,
}

fn is_fp8(t: c_int) -> bool {
    matches!(t, dtype::R_8F_E4M3 | dtype::R_8F_E5M2)
}

/// Checks a matmul's descriptors against what cuBLASLt supports on compute capability `cc`.
fn problem(cc: (c_int, c_int), desc: &Desc, [a, b, c, d]: [Layout; 4]) -> Result<Problem, Refusal> {
    let (m, k) = match desc.transa {
        OP_N => (a.rows, a.cols),
        _ => (a.cols, a.rows),
    };
    let (k2, n) = match desc.transb {
        OP_N => (b.rows, b.cols),
        _ => (b.cols, b.rows),
    };
    if k != k2 || (d.rows, d.cols) != (m, n) || (c.rows, c.cols) != (m, n) {
        return refuse(
            INVALID_VALUE,
            format!(
                "shapes do not chain: op(A) {m}×{k}, op(B) {k2}×{n}, C {}×{}, D {}×{}",
                c.rows, c.cols, d.rows, d.cols
            ),
        );
    }
    let (unit, slow) = if is_fp8(a.dtype) || is_fp8(b.dtype) {
        if cc < (8, 9) {
            return refuse(
                NOT_SUPPORTED,
                format!(
                    "FP8 matmuls need compute capability 8.9 or later, not {}.{}",
                    cc.0, cc.1
                ),
            );
        }
        let both_e5m2 = a.dtype == dtype::R_8F_E5M2 && b.dtype == dtype::R_8F_E5M2;
        if !is_fp8(a.dtype) || !is_fp8(b.dtype) || both_e5m2 {
            return refuse(
                NOT_SUPPORTED,
                format!("FP8 A/B types {} and {}", a.dtype, b.dtype),
            );
        }
        if desc.compute != compute::C_32F || desc.scale != dtype::R_32F {
            return refuse(
                NOT_SUPPORTED,
                format!(
                    "FP8 needs CUBLAS_COMPUTE_32F with a CUDA_R_32F scale type, not {}/{}",
                    desc.compute, desc.scale
                ),
            );
        }
        use dtype::{R_8F_E4M3, R_16BF, R_16F, R_32F};
        if !matches!(
            (c.dtype, d.dtype),
            (R_16BF, R_16BF | R_8F_E4M3) | (R_16F, R_16F | R_8F_E4M3) | (R_32F, R_32F)
        ) {
            return refuse(
                NOT_SUPPORTED,
                format!("FP8 with C type {} and D type {}", c.dtype, d.dtype),
            );
        }
        if desc.transa != OP_T || desc.transb != OP_N {
            return refuse(
                NOT_SUPPORTED,
                format!(
                    "FP8 matmuls need the TN layout (A transposed, B not) on Ada and Hopper: \
                     transa {}, transb {}",
                    desc.transa, desc.transb
                ),
            );
        }
        for (what, l) in [("A", a), ("B", b), ("C", c), ("D", d)] {
            let row_bytes = l.ld * dtype::size(l.dtype).unwrap_or(1);
            if !row_bytes.is_multiple_of(16) {
                return refuse(
                    NOT_SUPPORTED,
                    format!(
                        "FP8: {what}'s leading dimension {} is not a multiple of 16 bytes",
                        l.ld
                    ),
                );
            }
        }
        let slow = (desc.fast_accum == 0).then_some(
            "an FP8 matmul without CUBLASLT_MATMUL_DESC_FAST_ACCUM runs at half rate (Hopper's \
             quoted FP8 rate is with fast accumulation)",
        );
        (Unit::Fp8, slow)
    } else {
        if a.dtype != b.dtype || c.dtype != d.dtype {
            return refuse(
                NOT_SUPPORTED,
                format!(
                    "A/B types {}/{}, C/D types {}/{}",
                    a.dtype, b.dtype, c.dtype, d.dtype
                ),
            );
        }
        let Some(unit) = model::gemm_unit(a.dtype, c.dtype, desc.compute) else {
            return refuse(
                NOT_SUPPORTED,
                format!(
                    "A/B type {}, C type {}, compute type {}: not supported",
                    a.dtype, c.dtype, desc.compute
                ),
            );
        };
        let slow = (unit == Unit::Int8 && (desc.transa != OP_T || desc.transb != OP_N))
            .then_some("an INT8 matmul outside the TN layout runs at half rate");
        (unit, slow)
    };
    if unit.tflops(cc).is_none() {
        return refuse(
            NOT_SUPPORTED,
            format!(
                "compute capability {}.{} has no {unit:?} matmuls",
                cc.0, cc.1
            ),
        );
    }
    let mut hasher = DefaultHasher::new();
    (desc, [a, b, c, d]).hash(&mut hasher);
    Ok(Problem {
        m,
        n,
        k,
        unit,
        slow,
        fingerprint: hasher.finish(),
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn cublasLtCreate(lightHandle: *mut Opaque) -> Status {
    entry("cublasLtCreate", |lt| {
        device(driver()?)?;
        let id = lt.id();
        // SAFETY: cuBLASLt's contract: a valid `cublasLtHandle_t*`.
        unsafe { put(lightHandle, id as Opaque, INVALID_VALUE, "lightHandle")? };
        lt.handles.insert(id, ());
        Ok(())
    })
}

#[unsafe(no_mangle)]
pub extern "C" fn cublasLtDestroy(lightHandle: Opaque) -> Status {
    entry("cublasLtDestroy", |lt| {
        lt.handle(lightHandle)?;
        lt.handles.remove(&(lightHandle as usize));
        Ok(())
    })
}

#[unsafe(no_mangle)]
pub extern "C" fn cublasLtGetVersion() -> usize {
    let [major, minor, patch] = CUBLAS_VERSION;
    usize::try_from(major * 10000 + minor * 100 + patch).unwrap_or(0)
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn cublasLtMatmulDescCreate(
    matmulDesc: *mut Opaque,
    computeType: c_int,
    scaleType: c_int,
) -> Status {
    entry("cublasLtMatmulDescCreate", |lt| {
        let Some(scale) = Scale::of(computeType) else {
            return refuse(INVALID_VALUE, format!("compute type {computeType}"));
        };
        if scale.data_type() != scaleType {
            return refuse(
                INVALID_VALUE,
                format!("scale type {scaleType} with compute type {computeType}"),
            );
        }
        let id = lt.id();
        // SAFETY: cuBLASLt's contract: a valid `cublasLtMatmulDesc_t*`.
        unsafe { put(matmulDesc, id as Opaque, INVALID_VALUE, "matmulDesc")? };
        let desc = Desc {
            compute: computeType,
            scale: scaleType,
            transa: OP_N,
            transb: OP_N,
            fast_accum: 0,
        };
        lt.descs.insert(id, desc);
        Ok(())
    })
}

#[unsafe(no_mangle)]
pub extern "C" fn cublasLtMatmulDescDestroy(matmulDesc: Opaque) -> Status {
    entry("cublasLtMatmulDescDestroy", |lt| {
        lt.desc(matmulDesc)?;
        lt.descs.remove(&(matmulDesc as usize));
        Ok(())
    })
}

/// Reads an attribute value of the documented type `T`, refusing a buffer of another size.
///
/// # Safety
/// `buf` is null or valid for reads of `size` bytes.
unsafe fn attribute<T: Copy>(buf: *const c_void, size: usize, name: &str) -> Result<T, Refusal> {
    if size != size_of::<T>() {
        return refuse(
            INVALID_VALUE,
            format!(
                "{name}: {size} bytes, the attribute's type has {}",
                size_of::<T>()
            ),
        );
    }
    // SAFETY: `buf` holds `size == size_of::<T>()` bytes (this function's contract).
    unsafe { get(buf.cast::<T>(), INVALID_VALUE, name) }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn cublasLtMatmulDescSetAttribute(
    matmulDesc: Opaque,
    attr: c_int,
    buf: *const c_void,
    sizeInBytes: usize,
) -> Status {
    entry("cublasLtMatmulDescSetAttribute", |lt| {
        let mut desc = lt.desc(matmulDesc)?;
        // SAFETY: cuBLASLt's contract: `buf` holds `sizeInBytes` bytes.
        let int32 = |name| unsafe { attribute::<i32>(buf, sizeInBytes, name) };
        // SAFETY: as above.
        let int8 = |name| unsafe { attribute::<i8>(buf, sizeInBytes, name) };
        match attr {
            3 | 4 => {
                let op = int32("TRANSA/TRANSB (int32_t)")?;
                if !model::is_op(op) {
                    return refuse(INVALID_VALUE, format!("cublasOperation_t {op}"));
                }
                if attr == 3 {
                    desc.transa = op;
                } else {
                    desc.transb = op;
                }
            }
            25 => {
                desc.fast_accum = int8("FAST_ACCUM (int8_t)")?;
            }
            2 | 7 => {
                let (name, default) = if attr == 2 {
                    ("POINTER_MODE (int32_t)", 0)
                } else {
                    ("EPILOGUE (uint32_t)", 1)
                };
                let value = int32(name)?;
                if value != default {
                    return refuse(
                        NOT_SUPPORTED,
                        format!("{name} {value}: only the default is modelled"),
                    );
                }
            }
            _ => {
                return refuse(
                    NOT_SUPPORTED,
                    format!(
                        "matmul descriptor attribute {attr} is not modelled (add it to the fake)"
                    ),
                );
            }
        }
        lt.descs.insert(matmulDesc as usize, desc);
        Ok(())
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn cublasLtMatrixLayoutCreate(
    matLayout: *mut Opaque,
    type_: c_int,
    rows: u64,
    cols: u64,
    ld: i64,
) -> Status {
    entry("cublasLtMatrixLayoutCreate", |lt| {
        if dtype::size(type_).is_none() {
            return refuse(INVALID_VALUE, format!("data type {type_}"));
        }
        let ld = u64::try_from(ld).unwrap_or(0);
        if ld < rows.max(1) {
            return refuse(
                INVALID_VALUE,
                format!("ld {ld} < {rows} rows (column-major)"),
            );
        }
        let id = lt.id();
        // SAFETY: cuBLASLt's contract: a valid `cublasLtMatrixLayout_t*`.
        unsafe { put(matLayout, id as Opaque, INVALID_VALUE, "matLayout")? };
        let layout = Layout {
            dtype: type_,
            rows,
            cols,
            ld,
        };
        lt.layouts.insert(id, layout);
        Ok(())
    })
}

#[unsafe(no_mangle)]
pub extern "C" fn cublasLtMatrixLayoutDestroy(matLayout: Opaque) -> Status {
    entry("cublasLtMatrixLayoutDestroy", |lt| {
        lt.layout(matLayout, "matLayout")?;
        lt.layouts.remove(&(matLayout as usize));
        Ok(())
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn cublasLtMatmulPreferenceCreate(pref: *mut Opaque) -> Status {
    entry("cublasLtMatmulPreferenceCreate", |lt| {
        let id = lt.id();
        // SAFETY: cuBLASLt's contract: a valid `cublasLtMatmulPreference_t*`.
        unsafe { put(pref, id as Opaque, INVALID_VALUE, "pref")? };
        lt.prefs.insert(id, 0);
        Ok(())
    })
}

#[unsafe(no_mangle)]
pub extern "C" fn cublasLtMatmulPreferenceDestroy(pref: Opaque) -> Status {
    entry("cublasLtMatmulPreferenceDestroy", |lt| {
        match lt.prefs.remove(&(pref as usize)) {
            Some(_) => Ok(()),
            None => refuse(INVALID_VALUE, format!("{pref:p} is not a live preference")),
        }
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn cublasLtMatmulPreferenceSetAttribute(
    pref: Opaque,
    attr: c_int,
    buf: *const c_void,
    sizeInBytes: usize,
) -> Status {
    entry("cublasLtMatmulPreferenceSetAttribute", |lt| {
        let Some(max_workspace) = lt.prefs.get_mut(&(pref as usize)) else {
            return refuse(INVALID_VALUE, format!("{pref:p} is not a live preference"));
        };
        if attr != 1 {
            return refuse(
                NOT_SUPPORTED,
                format!("preference attribute {attr} is not modelled (add it to the fake)"),
            );
        }
        // SAFETY: cuBLASLt's contract: `buf` holds `sizeInBytes`.
        *max_workspace = unsafe { attribute(buf, sizeInBytes, "MAX_WORKSPACE_BYTES (uint64_t)")? };
        Ok(())
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn cublasLtMatmulAlgoGetHeuristic(
    lightHandle: Opaque,
    operationDesc: Opaque,
    Adesc: Opaque,
    Bdesc: Opaque,
    Cdesc: Opaque,
    Ddesc: Opaque,
    preference: Opaque,
    requestedAlgoCount: c_int,
    heuristicResultsArray: *mut HeuristicResult,
    returnAlgoCount: *mut c_int,
) -> Status {
    entry("cublasLtMatmulAlgoGetHeuristic", |lt| {
        lt.handle(lightHandle)?;
        let info = device(driver()?)?;
        let desc = lt.desc(operationDesc)?;
        let layouts = [
            lt.layout(Adesc, "Adesc")?,
            lt.layout(Bdesc, "Bdesc")?,
            lt.layout(Cdesc, "Cdesc")?,
            lt.layout(Ddesc, "Ddesc")?,
        ];
        let Some(&max_workspace) = lt.prefs.get(&(preference as usize)) else {
            return refuse(
                INVALID_VALUE,
                format!("{preference:p} is not a live preference"),
            );
        };
        if requestedAlgoCount < 1 || heuristicResultsArray.is_null() {
            return refuse(
                INVALID_VALUE,
                format!("{requestedAlgoCount} algorithms asked for, or no array for them"),
            );
        }
        let problem = problem((info.cc_major, info.cc_minor), &desc, layouts)?;
        let workspace = max_workspace.min(ALGO_WORKSPACE);
        let mut algo = [0u64; 8];
        algo[0] = ALGO_MAGIC;
        algo[1] = problem.fingerprint;
        algo[2] = workspace;
        let result = HeuristicResult {
            algo,
            workspace_size: usize::try_from(workspace).unwrap_or(usize::MAX),
            state: blas::SUCCESS,
            waves_count: 1.0,
            reserved: [0; 4],
        };
        // SAFETY: cuBLASLt's contract: the array holds `requestedAlgoCount >= 1` results, and
        // `returnAlgoCount` is a valid `int*`.
        unsafe {
            put(
                heuristicResultsArray,
                result,
                INVALID_VALUE,
                "heuristicResultsArray",
            )?;
            put(returnAlgoCount, 1, INVALID_VALUE, "returnAlgoCount")
        }
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn cublasLtMatmul(
    lightHandle: Opaque,
    computeDesc: Opaque,
    alpha: *const c_void,
    A: *const c_void,
    Adesc: Opaque,
    B: *const c_void,
    Bdesc: Opaque,
    beta: *const c_void,
    C: *const c_void,
    Cdesc: Opaque,
    D: *mut c_void,
    Ddesc: Opaque,
    algo: *const [u64; 8],
    workspace: *mut c_void,
    workspaceSizeInBytes: usize,
    stream: Opaque,
) -> Status {
    entry("cublasLtMatmul", |lt| {
        lt.handle(lightHandle)?;
        let hooks = driver()?;
        let info = device(hooks)?;
        let ctx = context(hooks)?;
        let desc = lt.desc(computeDesc)?;
        let [a, b, c, d] = [
            lt.layout(Adesc, "Adesc")?,
            lt.layout(Bdesc, "Bdesc")?,
            lt.layout(Cdesc, "Cdesc")?,
            lt.layout(Ddesc, "Ddesc")?,
        ];
        let problem = problem((info.cc_major, info.cc_minor), &desc, [a, b, c, d])?;
        let needed = if algo.is_null() {
            0
        } else {
            // SAFETY: cuBLASLt's contract: `algo` points to a `cublasLtMatmulAlgo_t`.
            let data = unsafe { get(algo, INVALID_VALUE, "algo")? };
            if data[0] != ALGO_MAGIC || data[1] != problem.fingerprint {
                return refuse(
                    INVALID_VALUE,
                    "the algorithm was not chosen by cublasLtMatmulAlgoGetHeuristic for these \
                     descriptors",
                );
            }
            data[2]
        };
        if (workspaceSizeInBytes as u64) < needed {
            return refuse(
                INVALID_VALUE,
                format!(
                    "the algorithm needs {needed} bytes of workspace, {workspaceSizeInBytes} given"
                ),
            );
        }
        check_stream(stream)?;
        // SAFETY: cuBLASLt's contract (host pointer mode, the default): alpha and beta point to
        // host values of the scale type.
        unsafe { check_scalars(Scale::of(desc.compute).unwrap_or(Scale::F32), alpha, beta)? };
        if C == D.cast_const() && c != d {
            return refuse(
                INVALID_VALUE,
                "in place (C == D) needs Cdesc and Ddesc to describe the same layout",
            );
        }
        let fp8 = problem.unit == Unit::Fp8;
        for (what, ptr, l) in [
            ("A", A, a),
            ("B", B, b),
            ("C", C, c),
            ("D", D.cast_const(), d),
        ] {
            let element = dtype::size(l.dtype).unwrap_or(1);
            let align = if fp8 { 16 } else { element };
            check_operand(hooks, what, ptr, (l.rows, l.cols, l.ld), element, align)?;
        }
        if workspaceSizeInBytes > 0 {
            let size = workspaceSizeInBytes as u64;
            check_operand(
                hooks,
                "workspace",
                workspace.cast_const(),
                (size, 1, size),
                1,
                1,
            )?;
        }
        launch(
            hooks,
            &info,
            ctx,
            stream,
            (problem.m, problem.n, problem.k),
            problem.unit,
            problem.slow,
        )
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::driver::tests as drv;
    use crate::model::HOPPER;

    fn layout(t: c_int, rows: u64, cols: u64, ld: i64) -> Opaque {
        let mut l: Opaque = std::ptr::null_mut();
        // SAFETY: `l` is a valid `cublasLtMatrixLayout_t`.
        let rc = unsafe { cublasLtMatrixLayoutCreate(&mut l, t, rows, cols, ld) };
        assert_eq!(rc, 0);
        l
    }

    fn set(desc: Opaque, attr: c_int, value: &[u8]) -> Status {
        // SAFETY: `value` holds `value.len()` bytes.
        unsafe { cublasLtMatmulDescSetAttribute(desc, attr, value.as_ptr().cast(), value.len()) }
    }

    /// The cuBLASLt part of `blas::tests::the_c_contract`, with three 256×256×2-byte
    /// allocations.
    pub(crate) fn the_lt_contract(a: u64, b: u64, d: u64) {
        let null = std::ptr::null_mut();
        let mut h: Opaque = null;
        let mut desc: Opaque = null;
        let mut pref: Opaque = null;
        // SAFETY: each is a valid out-pointer.
        unsafe {
            assert_eq!(cublasLtCreate(&mut h), 0);
            assert_eq!(
                cublasLtMatmulDescCreate(&mut desc, compute::C_32F, dtype::R_64F),
                INVALID_VALUE
            );
            assert_eq!(
                cublasLtMatmulDescCreate(&mut desc, compute::C_32F, dtype::R_32F),
                0
            );
            assert_eq!(cublasLtMatmulPreferenceCreate(&mut pref), 0);
        }
        let ws_bytes = 8u64 << 20;
        let ws = drv::alloc(ws_bytes as usize);
        // SAFETY: a valid u64 of the right size.
        let rc = unsafe {
            cublasLtMatmulPreferenceSetAttribute(pref, 1, (&raw const ws_bytes).cast(), 8)
        };
        assert_eq!(rc, 0);
        // Attribute sizes: TRANSA is an int32_t, FAST_ACCUM an int8_t.
        assert_eq!(set(desc, 3, &[1]), INVALID_VALUE);
        assert_eq!(set(desc, 25, &1i32.to_ne_bytes()), INVALID_VALUE);
        assert_eq!(set(desc, 9999, &[0]), NOT_SUPPORTED);

        let n = 256;
        let (la, lb, ld) = (
            layout(dtype::R_8F_E4M3, n, n, 256),
            layout(dtype::R_8F_E4M3, n, n, 256),
            layout(dtype::R_16BF, n, n, 256),
        );
        let heuristic = |desc: Opaque| {
            let mut result = HeuristicResult {
                algo: [0; 8],
                workspace_size: 0,
                state: 99,
                waves_count: 0.0,
                reserved: [0; 4],
            };
            let mut count = 0;
            // SAFETY: valid out-pointers for one result and its count.
            let rc = unsafe {
                cublasLtMatmulAlgoGetHeuristic(
                    h,
                    desc,
                    la,
                    lb,
                    ld,
                    ld,
                    pref,
                    1,
                    &mut result,
                    &mut count,
                )
            };
            (rc, result)
        };
        // NN is refused for FP8.
        assert_eq!(heuristic(desc).0, NOT_SUPPORTED);
        assert_eq!(set(desc, 3, &OP_T.to_ne_bytes()), 0);
        let (rc, chosen) = heuristic(desc);
        assert_eq!(rc, 0);
        assert_eq!(chosen.workspace_size, 4 << 20);

        let f32_scalars = [1.0f32, 0.0];
        let (alpha, beta) = (
            f32_scalars.as_ptr().cast(),
            f32_scalars[1..].as_ptr().cast(),
        );
        let matmul = |algo: &[u64; 8], dd: u64, ws_size: usize| {
            // SAFETY: host scalars and the algorithm are live; device addresses are never
            // dereferenced.
            unsafe {
                cublasLtMatmul(
                    h, desc, alpha, a as _, la, b as _, lb, beta, dd as _, ld, dd as _, ld, algo,
                    ws as _, ws_size, null,
                )
            }
        };
        let t0 = drv::stream_seconds();
        assert_eq!(matmul(&chosen.algo, d, 4 << 20), 0);
        let took = drv::stream_seconds() - t0;
        // No fast accumulation: half rate.
        let want = 2.0 * 256f64.powi(3) / (HOPPER.fp8.unwrap() * 1e12);
        assert!((took / want - 2.0).abs() < 1e-9, "{took} vs {want}");
        assert_eq!(set(desc, 25, &[1]), 0);
        // The descriptor changed: the algorithm was chosen for another problem.
        assert_eq!(matmul(&chosen.algo, d, 4 << 20), INVALID_VALUE);
        let (_, chosen) = heuristic(desc);
        let t0 = drv::stream_seconds();
        assert_eq!(matmul(&chosen.algo, d, 4 << 20), 0);
        assert!(((drv::stream_seconds() - t0) / want - 1.0).abs() < 1e-9);
        // Short workspace; D misaligned (FP8 needs 16 bytes); D past its allocation.
        assert_eq!(matmul(&chosen.algo, d, 1 << 20), INVALID_VALUE);
        assert_eq!(matmul(&chosen.algo, d + 8, 4 << 20), NOT_SUPPORTED);
        assert_eq!(matmul(&chosen.algo, d + 16, 4 << 20), INVALID_VALUE);
        assert_eq!(matmul(&chosen.algo, d, 16 << 20), INVALID_VALUE);

        assert_eq!(cublasLtMatmulPreferenceDestroy(pref), 0);
        assert_eq!(cublasLtMatmulDescDestroy(desc), 0);
        for l in [la, lb, ld] {
            assert_eq!(cublasLtMatrixLayoutDestroy(l), 0);
        }
        assert_eq!(cublasLtDestroy(h), 0);
        assert_eq!(cublasLtDestroy(h), NOT_INITIALIZED);
    }
}
