//! The CUDA driver API functions cudarc and the agent call, with the signatures of `cuda.h`
//! (CUDA 13.0), and [`TPPGUARD_FAKE_CUDA_DRIVER`], the driver's state as the cuBLAS copies of
//! the library reach it. Pointer arguments follow the driver's contract: null or valid for what
//! the C type says.
#![expect(non_snake_case, reason = "the CUDA driver API's C names")]
#![expect(
    clippy::missing_safety_doc,
    reason = "the safety contract of every function is the CUDA driver API's, stated in the module docs"
)]

use std::cell::Cell;
use std::collections::BTreeMap;
use std::ffi::{CStr, c_char, c_int, c_uint, c_void};
use std::sync::Mutex;

use crate::model::{Config, TOTAL_BYTES};
use crate::{Handles, Refusal, lock, put, refuse, run_entry};

/// `CUresult`.
pub type CuResult = c_uint;
pub const SUCCESS: CuResult = 0;
pub const INVALID_VALUE: CuResult = 1;
pub const OUT_OF_MEMORY: CuResult = 2;
pub const NOT_INITIALIZED: CuResult = 3;
pub const INVALID_DEVICE: CuResult = 101;
pub const INVALID_CONTEXT: CuResult = 201;
pub const INVALID_HANDLE: CuResult = 400;
pub const UNKNOWN: CuResult = 999;

/// `CUdeviceptr`.
pub type DevicePtr = u64;
/// `CUcontext`, `CUstream`, `CUevent`: opaque pointers; the fake's are never dereferenced.
pub type Opaque = *mut c_void;

/// `CU_EVENT_BLOCKING_SYNC`.
const EVENT_BLOCKING_SYNC: c_uint = 0x1;
/// `CU_EVENT_DISABLE_TIMING`.
pub const EVENT_DISABLE_TIMING: c_uint = 0x2;
/// `CU_EVENT_INTERPROCESS`.
const EVENT_INTERPROCESS: c_uint = 0x4;
/// `CU_STREAM_LEGACY`: the legacy default stream, by name.
const STREAM_LEGACY: usize = 0x1;

/// The device's primary context, as a handle value.
const PRIMARY_CONTEXT: usize = 0xC0_0000;
/// Where device addresses start, and the gap left after each allocation (so that an access
/// running past one never lands in the next).
const HEAP_BASE: u64 = 0x7f00_0000_0000;
const ALLOCATION_GAP: u64 = 2 << 20;
/// Allocation alignment (cuMemAlloc's is at least 256 bytes).
const ALIGNMENT: u64 = 256;

/// An event: its context, flags, and the device time of the stream when last recorded.
#[derive(Debug)]
struct Event {
    context: usize,
    flags: c_uint,
    recorded_at: Option<f64>,
}

/// The driver's state.
#[derive(Debug)]
struct Driver {
    /// Set by `cuInit`.
    config: Option<Config>,
    /// `cuDevicePrimaryCtxRetain` count.
    primary_refs: u32,
    /// Live allocations: address → bytes.
    allocations: BTreeMap<DevicePtr, u64>,
    allocated: u64,
    next_address: DevicePtr,
    events: BTreeMap<usize, Event>,
    handles: Handles,
    /// Seconds of device time the work queued on the legacy default stream takes.
    stream_seconds: f64,
}

static DRIVER: Mutex<Driver> = Mutex::new(Driver {
    config: None,
    primary_refs: 0,
    allocations: BTreeMap::new(),
    allocated: 0,
    next_address: HEAP_BASE,
    events: BTreeMap::new(),
    handles: Handles::new(0xE0_0000),
    stream_seconds: 0.0,
});

thread_local! {
    /// The calling thread's current context (0: none).
    static CURRENT: Cell<usize> = const { Cell::new(0) };
}

fn current() -> usize {
    CURRENT.with(Cell::get)
}

impl Driver {
    fn config(&self) -> Result<Config, Refusal> {
        match self.config {
            Some(c) => Ok(c),
            None => refuse(NOT_INITIALIZED, "cuInit has not been called"),
        }
    }

    /// The current context, which must be the (retained) primary context.
    fn context(&self) -> Result<usize, Refusal> {
        self.config()?;
        match current() {
            0 => refuse(INVALID_CONTEXT, "no current context on this thread"),
            c if c == PRIMARY_CONTEXT && self.primary_refs > 0 => Ok(c),
            c => refuse(
                INVALID_CONTEXT,
                format!("the current context {c:#x} was released"),
            ),
        }
    }

    fn device(&self, dev: c_int) -> Result<Config, Refusal> {
        let config = self.config()?;
        if dev != 0 {
            return refuse(INVALID_DEVICE, format!("no device {dev} (there is one: 0)"));
        }
        Ok(config)
    }

    /// The allocation holding `ptr`: its start and length.
    fn allocation(&self, ptr: DevicePtr) -> Option<(DevicePtr, u64)> {
        let (&start, &len) = self.allocations.range(..=ptr).next_back()?;
        (ptr < start.saturating_add(len)).then_some((start, len))
    }

    /// Checks that `bytes` from `ptr` lie in one allocation.
    fn check_range(&self, ptr: DevicePtr, bytes: u64, what: &str) -> Result<(), Refusal> {
        match self.allocation(ptr) {
            Some((start, len)) if ptr - start <= len && bytes <= len - (ptr - start) => Ok(()),
            Some((start, len)) => refuse(
                INVALID_VALUE,
                format!(
                    "{what}: {bytes} bytes at offset {} of a {len}-byte allocation",
                    ptr - start
                ),
            ),
            None => refuse(
                INVALID_VALUE,
                format!("{what}: {ptr:#x} is not in any allocation"),
            ),
        }
    }

    fn alloc(&mut self, out: *mut DevicePtr, bytes: usize) -> Result<(), Refusal> {
        let config = self.config()?;
        self.context()?;
        let bytes = bytes as u64;
        if bytes == 0 {
            return refuse(INVALID_VALUE, "a 0-byte allocation");
        }
        let free = config.free_bytes.saturating_sub(self.allocated);
        if bytes > free {
            return refuse(
                OUT_OF_MEMORY,
                format!("out of memory: {bytes} bytes asked, {free} free"),
            );
        }
        let address = self.next_address;
        let end = address
            .checked_add(bytes)
            .and_then(|e| e.checked_add(ALLOCATION_GAP + ALIGNMENT - 1))
            .ok_or(Refusal {
                code: OUT_OF_MEMORY,
                why: "address space exhausted".into(),
            })?;
        // SAFETY: the caller passes a valid `CUdeviceptr*` (the driver's contract).
        unsafe { put(out, address, INVALID_VALUE, "dptr")? };
        self.next_address = end / ALIGNMENT * ALIGNMENT;
        self.allocations.insert(address, bytes);
        self.allocated += bytes;
        Ok(())
    }

    fn free(&mut self, ptr: DevicePtr) -> Result<(), Refusal> {
        self.context()?;
        match self.allocations.remove(&ptr) {
            Some(bytes) => {
                self.allocated -= bytes;
                Ok(())
            }
            None => refuse(
                INVALID_VALUE,
                format!("{ptr:#x} is not the start of a live allocation"),
            ),
        }
    }

    fn event(&self, e: Opaque) -> Result<&Event, Refusal> {
        self.config()?;
        match self.events.get(&(e as usize)) {
            Some(event) => Ok(event),
            None => refuse(INVALID_HANDLE, format!("{e:p} is not a live event")),
        }
    }

    fn elapsed(&self, ms: *mut f32, start: Opaque, end: Opaque) -> Result<(), Refusal> {
        let (a, b) = (self.event(start)?, self.event(end)?);
        if (a.flags | b.flags) & EVENT_DISABLE_TIMING != 0 {
            return refuse(
                INVALID_HANDLE,
                "an event created with CU_EVENT_DISABLE_TIMING cannot be timed",
            );
        }
        if a.context != b.context {
            return refuse(INVALID_CONTEXT, "the events belong to different contexts");
        }
        let (Some(t0), Some(t1)) = (a.recorded_at, b.recorded_at) else {
            return refuse(INVALID_HANDLE, "an event has not been recorded");
        };
        let millis = ((t1 - t0) * 1e3) as f32;
        // SAFETY: the caller passes a valid `float*` (the driver's contract).
        unsafe { put(ms, millis, INVALID_VALUE, "pMilliseconds") }
    }
}

/// Checks that `stream` is the legacy default stream (null or `CU_STREAM_LEGACY`), the only
/// stream the fake models.
pub fn check_stream(stream: Opaque) -> Result<(), Refusal> {
    match stream as usize {
        0 | STREAM_LEGACY => Ok(()),
        other => refuse(
            INVALID_HANDLE,
            format!(
                "stream {other:#x}: only the legacy default stream is modelled (tppguard's \
                 backend queues its GEMMs and events there)"
            ),
        ),
    }
}

/// A driver entry point.
fn entry(call: &str, f: impl FnOnce(&mut Driver) -> Result<(), Refusal>) -> CuResult {
    run_entry(call, UNKNOWN, || f(&mut lock(&DRIVER)))
}

#[unsafe(no_mangle)]
pub extern "C" fn cuInit(Flags: c_uint) -> CuResult {
    entry("cuInit", |d| {
        if Flags != 0 {
            return refuse(INVALID_VALUE, format!("flags {Flags:#x}: must be 0"));
        }
        if d.config.is_none() {
            d.config = Some(Config::from_env().or_else(|why| refuse(INVALID_VALUE, why))?);
        }
        Ok(())
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuDriverGetVersion(driverVersion: *mut c_int) -> CuResult {
    entry("cuDriverGetVersion", |d| {
        // Works before cuInit, as the real one does.
        let version = match d.config {
            Some(c) => c.driver_version,
            None => {
                Config::from_env()
                    .or_else(|why| refuse(INVALID_VALUE, why))?
                    .driver_version
            }
        };
        // SAFETY: the driver's contract: a valid `int*`.
        unsafe { put(driverVersion, version, INVALID_VALUE, "driverVersion") }
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuDeviceGetCount(count: *mut c_int) -> CuResult {
    entry("cuDeviceGetCount", |d| {
        d.config()?;
        // SAFETY: the driver's contract: a valid `int*`.
        unsafe { put(count, 1, INVALID_VALUE, "count") }
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuDeviceGet(device: *mut c_int, ordinal: c_int) -> CuResult {
    entry("cuDeviceGet", |d| {
        d.device(ordinal)?;
        // SAFETY: the driver's contract: a valid `CUdevice*`.
        unsafe { put(device, ordinal, INVALID_VALUE, "device") }
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuDeviceGetAttribute(
    pi: *mut c_int,
    attrib: c_uint,
    dev: c_int,
) -> CuResult {
    entry("cuDeviceGetAttribute", |d| {
        let c = d.device(dev)?;
        let value = match attrib {
            16 => 132,     // MULTIPROCESSOR_COUNT
            33 => c.pci.1, // PCI_BUS_ID
            34 => c.pci.2, // PCI_DEVICE_ID
            50 => c.pci.0, // PCI_DOMAIN_ID
            75 => c.cc.0,  // COMPUTE_CAPABILITY_MAJOR
            76 => c.cc.1,  // COMPUTE_CAPABILITY_MINOR
            115 => 1,      // MEMORY_POOLS_SUPPORTED
            _ => {
                return refuse(
                    INVALID_VALUE,
                    format!("attribute {attrib} is not modelled (add it to the fake)"),
                );
            }
        };
        // SAFETY: the driver's contract: a valid `int*`.
        unsafe { put(pi, value, INVALID_VALUE, "pi") }
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuDeviceGetName(name: *mut c_char, len: c_int, dev: c_int) -> CuResult {
    entry("cuDeviceGetName", |d| {
        d.device(dev)?;
        let text = b"tppguard fake CUDA device";
        let len = usize::try_from(len).unwrap_or(0);
        if name.is_null() || len == 0 {
            return refuse(INVALID_VALUE, "no buffer for the name");
        }
        let n = text.len().min(len - 1);
        // SAFETY: the driver's contract: `name` holds `len` bytes; `n + 1 <= len`.
        unsafe {
            std::ptr::copy_nonoverlapping(text.as_ptr(), name.cast::<u8>(), n);
            name.add(n).write(0);
        }
        Ok(())
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuDeviceTotalMem_v2(bytes: *mut usize, dev: c_int) -> CuResult {
    entry("cuDeviceTotalMem_v2", |d| {
        d.device(dev)?;
        // SAFETY: the driver's contract: a valid `size_t*`.
        unsafe { put(bytes, TOTAL_BYTES as usize, INVALID_VALUE, "bytes") }
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuDevicePrimaryCtxRetain(pctx: *mut Opaque, dev: c_int) -> CuResult {
    entry("cuDevicePrimaryCtxRetain", |d| {
        d.device(dev)?;
        // SAFETY: the driver's contract: a valid `CUcontext*`.
        unsafe { put(pctx, PRIMARY_CONTEXT as Opaque, INVALID_VALUE, "pctx")? };
        d.primary_refs += 1;
        Ok(())
    })
}

#[unsafe(no_mangle)]
pub extern "C" fn cuDevicePrimaryCtxRelease_v2(dev: c_int) -> CuResult {
    entry("cuDevicePrimaryCtxRelease_v2", |d| {
        d.device(dev)?;
        if d.primary_refs == 0 {
            return refuse(INVALID_CONTEXT, "the primary context is not retained");
        }
        d.primary_refs -= 1;
        if d.primary_refs == 0 {
            // The context goes, and with it what it held; what is left was leaked.
            if !d.allocations.is_empty() || !d.events.is_empty() {
                eprintln!(
                    "tppguard-fake-cuda: cuDevicePrimaryCtxRelease_v2: the context is destroyed \
                     with {} allocation(s) and {} event(s) still live",
                    d.allocations.len(),
                    d.events.len()
                );
            }
            d.allocations.clear();
            d.allocated = 0;
            d.events.clear();
        }
        Ok(())
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuCtxGetCurrent(pctx: *mut Opaque) -> CuResult {
    entry("cuCtxGetCurrent", |d| {
        d.config()?;
        // SAFETY: the driver's contract: a valid `CUcontext*`.
        unsafe { put(pctx, current() as Opaque, INVALID_VALUE, "pctx") }
    })
}

#[unsafe(no_mangle)]
pub extern "C" fn cuCtxSetCurrent(ctx: Opaque) -> CuResult {
    entry("cuCtxSetCurrent", |d| {
        d.config()?;
        match ctx as usize {
            0 => {}
            PRIMARY_CONTEXT if d.primary_refs > 0 => {}
            other => {
                return refuse(INVALID_CONTEXT, format!("{other:#x} is not a live context"));
            }
        }
        CURRENT.with(|c| c.set(ctx as usize));
        Ok(())
    })
}

#[unsafe(no_mangle)]
pub extern "C" fn cuCtxSynchronize() -> CuResult {
    entry("cuCtxSynchronize", |d| d.context().map(drop))
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuMemGetInfo_v2(free: *mut usize, total: *mut usize) -> CuResult {
    entry("cuMemGetInfo_v2", |d| {
        let config = d.config()?;
        d.context()?;
        let left = config.free_bytes.saturating_sub(d.allocated) as usize;
        // SAFETY: the driver's contract: two valid `size_t*`.
        unsafe {
            put(free, left, INVALID_VALUE, "free")?;
            put(total, TOTAL_BYTES as usize, INVALID_VALUE, "total")
        }
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuMemAlloc_v2(dptr: *mut DevicePtr, bytesize: usize) -> CuResult {
    entry("cuMemAlloc_v2", |d| d.alloc(dptr, bytesize))
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuMemAllocAsync(
    dptr: *mut DevicePtr,
    bytesize: usize,
    hStream: Opaque,
) -> CuResult {
    entry("cuMemAllocAsync", |d| {
        check_stream(hStream)?;
        d.alloc(dptr, bytesize)
    })
}

#[unsafe(no_mangle)]
pub extern "C" fn cuMemFree_v2(dptr: DevicePtr) -> CuResult {
    entry("cuMemFree_v2", |d| d.free(dptr))
}

#[unsafe(no_mangle)]
pub extern "C" fn cuMemFreeAsync(dptr: DevicePtr, hStream: Opaque) -> CuResult {
    entry("cuMemFreeAsync", |d| {
        check_stream(hStream)?;
        d.free(dptr)
    })
}

#[unsafe(no_mangle)]
pub extern "C" fn cuMemsetD8Async(
    dstDevice: DevicePtr,
    _uc: u8,
    N: usize,
    hStream: Opaque,
) -> CuResult {
    entry("cuMemsetD8Async", |d| {
        d.context()?;
        check_stream(hStream)?;
        d.check_range(dstDevice, N as u64, "dstDevice")
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuMemcpyHtoDAsync_v2(
    dstDevice: DevicePtr,
    srcHost: *const c_void,
    ByteCount: usize,
    hStream: Opaque,
) -> CuResult {
    entry("cuMemcpyHtoDAsync_v2", |d| {
        d.context()?;
        check_stream(hStream)?;
        d.check_range(dstDevice, ByteCount as u64, "dstDevice")?;
        if ByteCount == 0 {
            return Ok(());
        }
        if srcHost.is_null() {
            return refuse(INVALID_VALUE, "srcHost is a null pointer");
        }
        // SAFETY: the driver's contract: `srcHost` is valid for reads of `ByteCount` bytes.
        // Reading them all is what the copy does (nothing is kept: device memory is
        // bookkeeping only), and shows a short host buffer as a fault here.
        let src = unsafe { std::slice::from_raw_parts(srcHost.cast::<u8>(), ByteCount) };
        std::hint::black_box(src.iter().fold(0u8, |a, b| a ^ b));
        Ok(())
    })
}

#[unsafe(no_mangle)]
pub extern "C" fn cuStreamSynchronize(hStream: Opaque) -> CuResult {
    entry("cuStreamSynchronize", |d| {
        d.context()?;
        check_stream(hStream)
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuEventCreate(phEvent: *mut Opaque, Flags: c_uint) -> CuResult {
    entry("cuEventCreate", |d| {
        let context = d.context()?;
        let known = EVENT_BLOCKING_SYNC | EVENT_DISABLE_TIMING | EVENT_INTERPROCESS;
        if Flags & !known != 0 {
            return refuse(INVALID_VALUE, format!("unknown flags {Flags:#x}"));
        }
        if Flags & EVENT_INTERPROCESS != 0 && Flags & EVENT_DISABLE_TIMING == 0 {
            return refuse(
                INVALID_VALUE,
                "CU_EVENT_INTERPROCESS needs CU_EVENT_DISABLE_TIMING",
            );
        }
        let handle = d.handles.take();
        // SAFETY: the driver's contract: a valid `CUevent*`.
        unsafe { put(phEvent, handle as Opaque, INVALID_VALUE, "phEvent")? };
        d.events.insert(
            handle,
            Event {
                context,
                flags: Flags,
                recorded_at: None,
            },
        );
        Ok(())
    })
}

#[unsafe(no_mangle)]
pub extern "C" fn cuEventRecord(hEvent: Opaque, hStream: Opaque) -> CuResult {
    entry("cuEventRecord", |d| {
        let context = d.context()?;
        check_stream(hStream)?;
        let now = d.stream_seconds;
        let event = d.event(hEvent)?;
        if event.context != context {
            return refuse(
                INVALID_CONTEXT,
                "the event belongs to another context than the stream",
            );
        }
        if let Some(event) = d.events.get_mut(&(hEvent as usize)) {
            event.recorded_at = Some(now);
        }
        Ok(())
    })
}

#[unsafe(no_mangle)]
pub extern "C" fn cuEventQuery(hEvent: Opaque) -> CuResult {
    // Work completes as it is queued.
    entry("cuEventQuery", |d| d.event(hEvent).map(drop))
}

#[unsafe(no_mangle)]
pub extern "C" fn cuEventSynchronize(hEvent: Opaque) -> CuResult {
    entry("cuEventSynchronize", |d| d.event(hEvent).map(drop))
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuEventElapsedTime(
    pMilliseconds: *mut f32,
    hStart: Opaque,
    hEnd: Opaque,
) -> CuResult {
    entry("cuEventElapsedTime", |d| {
        d.elapsed(pMilliseconds, hStart, hEnd)
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuEventElapsedTime_v2(
    pMilliseconds: *mut f32,
    hStart: Opaque,
    hEnd: Opaque,
) -> CuResult {
    entry("cuEventElapsedTime_v2", |d| {
        d.elapsed(pMilliseconds, hStart, hEnd)
    })
}

#[unsafe(no_mangle)]
pub extern "C" fn cuEventDestroy_v2(hEvent: Opaque) -> CuResult {
    entry("cuEventDestroy_v2", |d| {
        d.event(hEvent)?;
        d.events.remove(&(hEvent as usize));
        Ok(())
    })
}

/// The name and description of a `CUresult` the fake returns.
fn error_text(error: CuResult) -> Option<(&'static CStr, &'static CStr)> {
    Some(match error {
        SUCCESS => (c"CUDA_SUCCESS", c"no error"),
        INVALID_VALUE => (c"CUDA_ERROR_INVALID_VALUE", c"invalid argument"),
        OUT_OF_MEMORY => (c"CUDA_ERROR_OUT_OF_MEMORY", c"out of memory"),
        NOT_INITIALIZED => (c"CUDA_ERROR_NOT_INITIALIZED", c"initialization error"),
        INVALID_DEVICE => (c"CUDA_ERROR_INVALID_DEVICE", c"invalid device ordinal"),
        INVALID_CONTEXT => (c"CUDA_ERROR_INVALID_CONTEXT", c"invalid device context"),
        INVALID_HANDLE => (c"CUDA_ERROR_INVALID_HANDLE", c"invalid resource handle"),
        UNKNOWN => (c"CUDA_ERROR_UNKNOWN", c"unknown error"),
        _ => return None,
    })
}

/// `cuGetErrorName` / `cuGetErrorString`.
///
/// # Safety
/// `p_str` is null or valid for a write of a `const char*`.
unsafe fn error_string(
    call: &str,
    error: CuResult,
    p_str: *mut *const c_char,
    name: bool,
) -> CuResult {
    run_entry(call, UNKNOWN, || {
        let text = error_text(error).map(|(n, s)| if name { n } else { s });
        let ptr = text.map_or(std::ptr::null(), CStr::as_ptr);
        // SAFETY: this function's contract.
        unsafe { put(p_str, ptr, INVALID_VALUE, "pStr")? };
        match text {
            Some(_) => Ok(()),
            None => refuse(INVALID_VALUE, format!("unknown CUresult {error}")),
        }
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuGetErrorString(error: CuResult, pStr: *mut *const c_char) -> CuResult {
    // SAFETY: the driver's contract: a valid `const char**`.
    unsafe { error_string("cuGetErrorString", error, pStr, false) }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuGetErrorName(error: CuResult, pStr: *mut *const c_char) -> CuResult {
    // SAFETY: the driver's contract: a valid `const char**`.
    unsafe { error_string("cuGetErrorName", error, pStr, true) }
}

/// What the cuBLAS copies learn of the device.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceInfo {
    /// 0 before `cuInit`.
    pub initialized: c_int,
    pub cc_major: c_int,
    pub cc_minor: c_int,
    pub driver_version: c_int,
}

/// An allocation: start and length (`len` 0: none).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub start: DevicePtr,
    pub len: u64,
}

/// The driver's state as the cuBLAS and cuBLASLt copies of the library use it.
#[repr(C)]
pub struct Hooks {
    /// The device, as `cuInit` configured it.
    pub device: extern "C" fn() -> DeviceInfo,
    /// The calling thread's current context (0: none).
    pub current_context: extern "C" fn() -> usize,
    /// The allocation holding an address.
    pub allocation: extern "C" fn(DevicePtr) -> Span,
    /// Queues `seconds` of work on `stream` in context `ctx`: a `CUresult`.
    pub launch: extern "C" fn(ctx: usize, stream: Opaque, seconds: f64) -> CuResult,
}

extern "C" fn hook_device() -> DeviceInfo {
    let d = lock(&DRIVER);
    match d.config {
        Some(c) => DeviceInfo {
            initialized: 1,
            cc_major: c.cc.0,
            cc_minor: c.cc.1,
            driver_version: c.driver_version,
        },
        None => DeviceInfo {
            initialized: 0,
            cc_major: 0,
            cc_minor: 0,
            driver_version: 0,
        },
    }
}

extern "C" fn hook_current_context() -> usize {
    current()
}

extern "C" fn hook_allocation(ptr: DevicePtr) -> Span {
    let d = lock(&DRIVER);
    let (start, len) = d.allocation(ptr).unwrap_or((0, 0));
    Span { start, len }
}

extern "C" fn hook_launch(ctx: usize, stream: Opaque, seconds: f64) -> CuResult {
    entry("kernel launch", |d| {
        let current = d.context()?;
        if ctx != current {
            return refuse(
                INVALID_CONTEXT,
                format!("a kernel for context {ctx:#x} launched in {current:#x}"),
            );
        }
        check_stream(stream)?;
        if !(seconds.is_finite() && seconds >= 0.0) {
            return refuse(INVALID_VALUE, format!("a kernel of {seconds} s"));
        }
        d.stream_seconds += seconds;
        Ok(())
    })
}

/// Looked up by name (`dlsym`) in the loaded `libcuda.so.1` by the cuBLAS copies.
#[unsafe(no_mangle)]
pub static TPPGUARD_FAKE_CUDA_DRIVER: Hooks = Hooks {
    device: hook_device,
    current_context: hook_current_context,
    allocation: hook_allocation,
    launch: hook_launch,
};

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Initialises the driver, retains the context and makes it current on this thread.
    pub(crate) fn open() {
        assert_eq!(cuInit(0), SUCCESS);
        let mut ctx: Opaque = std::ptr::null_mut();
        // SAFETY: `ctx` is a valid `CUcontext`.
        assert_eq!(unsafe { cuDevicePrimaryCtxRetain(&mut ctx, 0) }, SUCCESS);
        assert_eq!(cuCtxSetCurrent(ctx), SUCCESS);
    }

    /// Allocates `bytes` of device memory.
    pub(crate) fn alloc(bytes: usize) -> DevicePtr {
        let mut p = 0;
        // SAFETY: `p` is a valid `CUdeviceptr`.
        let rc = unsafe { cuMemAllocAsync(&mut p, bytes, std::ptr::null_mut()) };
        assert_eq!(rc, SUCCESS);
        p
    }

    /// Queued device time, seconds.
    pub(crate) fn stream_seconds() -> f64 {
        lock(&DRIVER).stream_seconds
    }

    pub(crate) fn event(flags: c_uint) -> Opaque {
        let mut e: Opaque = std::ptr::null_mut();
        // SAFETY: `e` is a valid `CUevent`.
        assert_eq!(unsafe { cuEventCreate(&mut e, flags) }, SUCCESS);
        e
    }

    /// The driver half of the one test that touches the library's global state (see
    /// `blas::tests`).
    pub(crate) fn the_driver_contract() {
        let null: Opaque = std::ptr::null_mut();
        assert_eq!(cuInit(1), INVALID_VALUE);
        open();
        let mut pi = 0;
        // SAFETY: `pi` is a valid `int`.
        unsafe {
            assert_eq!(cuDeviceGetAttribute(&mut pi, 33, 0), SUCCESS);
            assert_eq!(pi, 0x10);
            assert_eq!(cuDeviceGetAttribute(&mut pi, 33, 1), INVALID_DEVICE);
            assert_eq!(cuDeviceGetAttribute(&mut pi, 9999, 0), INVALID_VALUE);
            assert_eq!(cuDeviceGetAttribute(null.cast(), 33, 0), INVALID_VALUE);
        }
        assert_eq!(cuCtxSetCurrent(0x1234 as Opaque), INVALID_CONTEXT);

        // Bounds.
        let p = alloc(1000);
        let host = [0u8; 1001];
        // SAFETY: `host` holds 1001 bytes, more than each count passed.
        unsafe {
            assert_eq!(
                cuMemcpyHtoDAsync_v2(p, host.as_ptr().cast(), 1000, null),
                SUCCESS
            );
            assert_eq!(
                cuMemcpyHtoDAsync_v2(p + 1, host.as_ptr().cast(), 999, null),
                SUCCESS
            );
            assert_eq!(
                cuMemcpyHtoDAsync_v2(p + 1, host.as_ptr().cast(), 1000, null),
                INVALID_VALUE
            );
            assert_eq!(
                cuMemcpyHtoDAsync_v2(p + 5000, host.as_ptr().cast(), 1, null),
                INVALID_VALUE
            );
            assert_eq!(
                cuMemcpyHtoDAsync_v2(p, host.as_ptr().cast(), 1, 0x77 as Opaque),
                INVALID_HANDLE
            );
        }
        assert_eq!(cuMemsetD8Async(p, 0, 1001, null), INVALID_VALUE);
        assert_eq!(cuMemFreeAsync(p + 1, null), INVALID_VALUE);
        assert_eq!(cuMemFreeAsync(p, null), SUCCESS);
        assert_eq!(cuMemFreeAsync(p, null), INVALID_VALUE);
        let mut too_big = 0;
        // SAFETY: `too_big` is a valid `CUdeviceptr`.
        let rc = unsafe { cuMemAllocAsync(&mut too_big, TOTAL_BYTES as usize, null) };
        assert_eq!(rc, OUT_OF_MEMORY);

        // Timing: only events created with timing, recorded, can be timed.
        let (start, end, untimed) = (event(0), event(0), event(EVENT_DISABLE_TIMING));
        let mut ms = -1.0f32;
        // SAFETY: `ms` is a valid `float`.
        unsafe {
            assert_eq!(cuEventElapsedTime_v2(&mut ms, start, end), INVALID_HANDLE);
            assert_eq!(cuEventRecord(start, null), SUCCESS);
            assert_eq!(cuEventRecord(untimed, null), SUCCESS);
            assert_eq!(hook_launch(PRIMARY_CONTEXT, null, 0.25), SUCCESS);
            assert_eq!(cuEventRecord(end, null), SUCCESS);
            assert_eq!(cuEventElapsedTime_v2(&mut ms, start, end), SUCCESS);
            assert_eq!(ms, 250.0);
            assert_eq!(cuEventElapsedTime(&mut ms, start, untimed), INVALID_HANDLE);
            assert_eq!(cuEventElapsedTime(&mut ms, untimed, end), INVALID_HANDLE);
        }
        let mut e: Opaque = null;
        // SAFETY: `e` is a valid `CUevent`.
        assert_eq!(unsafe { cuEventCreate(&mut e, 0x4) }, INVALID_VALUE);
        assert_eq!(cuEventDestroy_v2(untimed), SUCCESS);
        assert_eq!(cuEventDestroy_v2(untimed), INVALID_HANDLE);
        assert_eq!(cuEventDestroy_v2(start), SUCCESS);
        assert_eq!(cuEventDestroy_v2(end), SUCCESS);

        let mut text: *const c_char = std::ptr::null();
        // SAFETY: `text` is a valid `const char*`.
        unsafe {
            assert_eq!(cuGetErrorName(INVALID_HANDLE, &mut text), SUCCESS);
            assert_eq!(CStr::from_ptr(text), c"CUDA_ERROR_INVALID_HANDLE");
            assert_eq!(cuGetErrorString(12345, &mut text), INVALID_VALUE);
            assert!(text.is_null());
        }
    }
}
