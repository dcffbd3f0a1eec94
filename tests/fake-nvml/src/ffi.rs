//! The exported NVML functions. Signatures are NVML's (as in `nvml-wrapper-sys` 0.10's
//! bindings); the contract on every pointer argument is NVML's own: null or valid for what
//! the documented C type says. Each entry point catches panics and answers
//! `NVML_ERROR_UNKNOWN` instead, so no unwind crosses the C boundary.
#![expect(non_snake_case, reason = "NVML's C symbol names")]
#![expect(
    clippy::missing_safety_doc,
    reason = "the safety contract of every function is NVML's, stated once in the module docs"
)]

use std::ffi::{CStr, OsStr, c_char, c_int, c_uint, c_ulonglong, c_void};
use std::os::unix::ffi::OsStrExt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};

use crate::fixture::{
    ARGUMENT_VERSION_MISMATCH, ATTESTATION_CERT_CHAIN_SIZE, ATTESTATION_REPORT_SIZE, CallRecord,
    Code, Fixture, INSUFFICIENT_SIZE, INVALID_ARGUMENT, ListAnswer, NOT_FOUND, NOT_SUPPORTED, Node,
    SUCCESS, Slot, Target, UNINITIALIZED, UNKNOWN, architecture_value, brand_value, current_clock,
    error_code, error_text, fits, legacy_bus_id, list_answer, max_clock, present, temperature,
};

/// The environment variable naming the fixture file.
pub const FIXTURE_ENV: &str = "TPPGUARD_FAKE_NVML_FIXTURE";
/// The environment variable naming the calls record: every set call is appended to it as one
/// JSON line ([`CallRecord`]), and at init the calls already in it are replayed, so that what
/// one process set holds in the next (as a real driver keeps it).
pub const CALLS_ENV: &str = "TPPGUARD_FAKE_NVML_CALLS";

/// `struct nvmlDevice_st`: opaque. A handle is the address of one of the node's [`Slot`]s.
#[repr(C)]
pub struct NvmlDeviceSt {
    _unused: [u8; 0],
}

/// `nvmlDevice_t`.
pub type NvmlDevice = *mut NvmlDeviceSt;

/// `nvmlPciInfo_t` (v3).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct NvmlPciInfo {
    pub bus_id_legacy: [c_char; 16],
    pub domain: c_uint,
    pub bus: c_uint,
    pub device: c_uint,
    pub pci_device_id: c_uint,
    pub pci_sub_system_id: c_uint,
    pub bus_id: [c_char; 32],
}

/// `nvmlMemory_v2_t`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct NvmlMemoryV2 {
    pub version: c_uint,
    pub total: c_ulonglong,
    pub reserved: c_ulonglong,
    pub free: c_ulonglong,
    pub used: c_ulonglong,
}

/// `nvmlDeviceAttributes_t`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct NvmlDeviceAttributes {
    pub multiprocessor_count: c_uint,
    pub shared_copy_engine_count: c_uint,
    pub shared_decoder_count: c_uint,
    pub shared_encoder_count: c_uint,
    pub shared_jpeg_count: c_uint,
    pub shared_ofa_count: c_uint,
    pub gpu_instance_slice_count: c_uint,
    pub compute_instance_slice_count: c_uint,
    pub memory_size_mb: c_ulonglong,
}

/// `nvmlSystemConfComputeSettings_v1_t`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct NvmlSystemConfComputeSettings {
    pub version: c_uint,
    pub environment: c_uint,
    pub cc_feature: c_uint,
    pub dev_tools_mode: c_uint,
    pub multi_gpu_mode: c_uint,
}

/// `nvmlConfComputeSystemState_t`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct NvmlConfComputeSystemState {
    pub environment: c_uint,
    pub cc_feature: c_uint,
    pub dev_tools_mode: c_uint,
}

/// `nvmlProcessInfo_t` (`nvmlProcessInfo_v2_t`), as `nvmlDeviceGetComputeRunningProcesses_v3`
/// fills it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NvmlProcessInfo {
    pub pid: c_uint,
    pub used_gpu_memory: c_ulonglong,
    pub gpu_instance_id: c_uint,
    pub compute_instance_id: c_uint,
}

/// `nvmlConfComputeGpuCertificate_t`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct NvmlConfComputeGpuCertificate {
    pub cert_chain_size: c_uint,
    pub attestation_cert_chain_size: c_uint,
    pub cert_chain: [u8; 4096],
    pub attestation_cert_chain: [u8; ATTESTATION_CERT_CHAIN_SIZE],
}

/// `nvmlConfComputeGpuAttestationReport_t`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct NvmlConfComputeGpuAttestationReport {
    pub is_cec_attestation_report_present: c_uint,
    pub attestation_report_size: c_uint,
    pub cec_attestation_report_size: c_uint,
    pub nonce: [u8; 32],
    pub attestation_report: [u8; ATTESTATION_REPORT_SIZE],
    pub cec_attestation_report: [u8; 4096],
}

const _: () = assert!(size_of::<NvmlConfComputeGpuCertificate>() == 9224);
const _: () = assert!(size_of::<NvmlConfComputeGpuAttestationReport>() == 12332);
const _: () = assert!(size_of::<NvmlPciInfo>() == 68);
const _: () = assert!(size_of::<NvmlProcessInfo>() == 24);
const _: () = assert!(size_of::<NvmlMemoryV2>() == 40);
const _: () = assert!(size_of::<NvmlDeviceAttributes>() == 40);
const _: () = assert!(size_of::<NvmlSystemConfComputeSettings>() == 20);

/// `NVML_STRUCT_VERSION(Memory, 2)`.
pub const MEMORY_V2_VERSION: c_uint = size_of::<NvmlMemoryV2>() as c_uint | (2 << 24);
/// `NVML_STRUCT_VERSION(SystemConfComputeSettings, 1)`.
pub const CONF_COMPUTE_SETTINGS_V1_VERSION: c_uint =
    size_of::<NvmlSystemConfComputeSettings>() as c_uint | (1 << 24);

/// The instance ids of a process not running in a MIG instance (nvml-wrapper reads it as
/// "none").
const NO_INSTANCE_ID: c_uint = 0xFFFF_FFFF;

/// `NVML_CC_SYSTEM_ENVIRONMENT_UNAVAILABLE`: the fixture format has no environment field.
const CC_ENVIRONMENT_UNAVAILABLE: c_uint = 0;

/// The library's state: NVML's init reference count and the loaded node.
struct State {
    refs: u32,
    node: Option<Box<Node>>,
}

static STATE: Mutex<State> = Mutex::new(State {
    refs: 0,
    node: None,
});

fn lock() -> MutexGuard<'static, State> {
    STATE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Runs `f` without letting a panic unwind into C.
fn guarded(f: impl FnOnce() -> Code) -> Code {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(UNKNOWN)
}

/// An entry point needing an initialised library.
fn entry(f: impl FnOnce(&Node) -> Result<(), Code>) -> Code {
    guarded(|| {
        let state = lock();
        match state.node.as_deref() {
            None => UNINITIALIZED,
            Some(node) => f(node).err().unwrap_or(SUCCESS),
        }
    })
}

/// An entry point that changes the driver state (a set call).
fn entry_mut(f: impl FnOnce(&mut Node) -> Code) -> Code {
    guarded(|| {
        let mut state = lock();
        match state.node.as_deref_mut() {
            None => UNINITIALIZED,
            Some(node) => f(node),
        }
    })
}

/// Appends `call` to the calls record, when `$TPPGUARD_FAKE_NVML_CALLS` names one. One
/// `write` per line, in append mode, so processes writing at once do not interleave lines.
fn record(call: &CallRecord) {
    let Some(path) = std::env::var_os(CALLS_ENV).filter(|p| !p.is_empty()) else {
        return;
    };
    let written = serde_json::to_string(call)
        .map_err(|e| e.to_string())
        .and_then(|line| {
            use std::io::Write as _;
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .and_then(|mut f| f.write_all(format!("{line}\n").as_bytes()))
                .map_err(|e| e.to_string())
        });
    if let Err(e) = written {
        eprintln!(
            "tppguard-fake-nvml: cannot append to the calls record {}: {e}",
            PathBuf::from(path).display()
        );
    }
}

/// The calls record's text, for replay at init (none, or unreadable: nothing to replay).
fn recorded_calls() -> String {
    std::env::var_os(CALLS_ENV)
        .filter(|p| !p.is_empty())
        .and_then(|p| std::fs::read_to_string(p).ok())
        .unwrap_or_default()
}

/// The slot a handle designates, if it is one of this node's.
fn slot(node: &Node, device: NvmlDevice) -> Option<Slot> {
    node.slot_at(device.cast_const().cast::<Slot>())
}

/// The handle of a slot.
fn handle(node: &Node, slot: Slot) -> Result<NvmlDevice, Code> {
    node.handle_of(slot)
        .map(|p| p.cast_mut().cast::<NvmlDeviceSt>())
        .ok_or(UNKNOWN)
}

fn nonnull<T>(p: *mut T) -> Result<(), Code> {
    if p.is_null() {
        Err(INVALID_ARGUMENT)
    } else {
        Ok(())
    }
}

/// Writes `value` through `p`.
///
/// # Safety
/// `p` is null or valid for a write of a `T` (alignment is not required).
unsafe fn put<T>(p: *mut T, value: T) -> Result<(), Code> {
    nonnull(p)?;
    // SAFETY: `p` is non-null and, by this function's contract, valid for writing a `T`.
    unsafe { p.write_unaligned(value) };
    Ok(())
}

/// Writes `value` and a NUL into the caller's buffer of `length` bytes.
///
/// # Safety
/// `buf` is null or valid for writes of `length` bytes.
unsafe fn put_str(buf: *mut c_char, length: c_uint, value: &str) -> Result<(), Code> {
    nonnull(buf)?;
    fits(value, length)?;
    let dst = buf.cast::<u8>();
    // SAFETY: `buf` is valid for `length` bytes (contract) and `fits` checked that
    // `value.len() + 1 <= length`; a Rust `&str` cannot overlap the caller's buffer.
    unsafe {
        std::ptr::copy_nonoverlapping(value.as_ptr(), dst, value.len());
        dst.add(value.len()).write(0);
    }
    Ok(())
}

/// A NUL-terminated C char array holding `value` (already validated to fit).
fn c_array<const N: usize>(value: &str) -> Result<[c_char; N], Code> {
    let mut out = [0 as c_char; N];
    if value.len() >= N {
        return Err(UNKNOWN);
    }
    for (o, b) in out.iter_mut().zip(value.bytes()) {
        *o = b as c_char;
    }
    Ok(out)
}

/// The path this library file was loaded from, from `dladdr` on one of its own statics.
fn own_path() -> Result<PathBuf, String> {
    let mut info = libc::Dl_info {
        dli_fname: std::ptr::null(),
        dli_fbase: std::ptr::null_mut(),
        dli_sname: std::ptr::null(),
        dli_saddr: std::ptr::null_mut(),
    };
    let addr = std::ptr::from_ref(&STATE).cast::<c_void>();
    // SAFETY: `dladdr` only reads the address (one inside this library) and fills `info`, a
    // valid, exclusively borrowed `Dl_info`.
    let found = unsafe { libc::dladdr(addr, &mut info) };
    if found == 0 || info.dli_fname.is_null() {
        return Err("dladdr could not name the file this library was loaded from".into());
    }
    // SAFETY: `dli_fname` is non-null and points to the loader's NUL-terminated copy of the
    // library's path, which lives as long as the library stays loaded (this call included).
    let name = unsafe { CStr::from_ptr(info.dli_fname) };
    Ok(PathBuf::from(OsStr::from_bytes(name.to_bytes())))
}

fn fixture_path() -> Result<PathBuf, String> {
    match std::env::var_os(FIXTURE_ENV) {
        Some(p) if !p.is_empty() => Ok(PathBuf::from(p)),
        _ => Ok(own_path()?.with_file_name("fixture.json")),
    }
}

fn load_fixture() -> Result<Fixture, String> {
    let path = fixture_path()?;
    let json = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    Fixture::parse(&json).map_err(|e| format!("{}: {e}", path.display()))
}

fn init() -> Code {
    guarded(|| {
        let mut state = lock();
        if state.refs > 0 {
            state.refs = state.refs.saturating_add(1);
            return SUCCESS;
        }
        let fixture = match load_fixture() {
            Ok(f) => f,
            Err(reason) => {
                eprintln!("tppguard-fake-nvml: cannot load the fixture: {reason}");
                return UNKNOWN;
            }
        };
        if let Some(name) = &fixture.init_error {
            return error_code(name).unwrap_or(UNKNOWN);
        }
        let mut node = Node::new(fixture);
        node.replay(&recorded_calls());
        state.node = Some(Box::new(node));
        state.refs = 1;
        SUCCESS
    })
}

#[unsafe(no_mangle)]
pub extern "C" fn nvmlInit_v2() -> Code {
    init()
}

#[unsafe(no_mangle)]
pub extern "C" fn nvmlInitWithFlags(_flags: c_uint) -> Code {
    init()
}

#[unsafe(no_mangle)]
pub extern "C" fn nvmlShutdown() -> Code {
    guarded(|| {
        let mut state = lock();
        match state.refs {
            0 => UNINITIALIZED,
            1 => {
                state.refs = 0;
                state.node = None;
                SUCCESS
            }
            n => {
                state.refs = n - 1;
                SUCCESS
            }
        }
    })
}

#[unsafe(no_mangle)]
pub extern "C" fn nvmlErrorString(result: Code) -> *const c_char {
    error_text(result).as_ptr().cast::<c_char>()
}

/// A system string call.
///
/// # Safety
/// `buf` is null or valid for writes of `length` bytes.
unsafe fn system_string(
    symbol: &str,
    buf: *mut c_char,
    length: c_uint,
    get: impl FnOnce(&Fixture) -> Option<&str>,
) -> Code {
    entry(|node| {
        node.system_call(symbol)?;
        nonnull(buf)?;
        let value = present(get(&node.fixture))?;
        // SAFETY: `buf` is valid for `length` bytes (this function's contract).
        unsafe { put_str(buf, length, value) }
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlSystemGetDriverVersion(version: *mut c_char, length: c_uint) -> Code {
    // SAFETY: NVML's contract: `version` holds `length` bytes.
    unsafe {
        system_string("nvmlSystemGetDriverVersion", version, length, |f| {
            f.driver_version.as_deref()
        })
    }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlSystemGetNVMLVersion(version: *mut c_char, length: c_uint) -> Code {
    // SAFETY: NVML's contract: `version` holds `length` bytes.
    unsafe {
        system_string("nvmlSystemGetNVMLVersion", version, length, |f| {
            f.nvml_version.as_deref()
        })
    }
}

/// # Safety
/// `out` is null or valid for a write of a `c_int`.
unsafe fn cuda_driver_version(symbol: &str, out: *mut c_int) -> Code {
    entry(|node| {
        node.system_call(symbol)?;
        nonnull(out)?;
        let v = present(node.fixture.cuda_driver_version)?;
        // SAFETY: `out` is valid for a `c_int` (this function's contract).
        unsafe { put(out, v) }
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlSystemGetCudaDriverVersion(cudaDriverVersion: *mut c_int) -> Code {
    // SAFETY: NVML's contract: the pointer is null or points to an int.
    unsafe { cuda_driver_version("nvmlSystemGetCudaDriverVersion", cudaDriverVersion) }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlSystemGetCudaDriverVersion_v2(cudaDriverVersion: *mut c_int) -> Code {
    // SAFETY: NVML's contract: the pointer is null or points to an int.
    unsafe { cuda_driver_version("nvmlSystemGetCudaDriverVersion_v2", cudaDriverVersion) }
}

// Not exported by the `old-driver` build, as by drivers older than the function.
#[cfg_attr(not(feature = "old-driver"), unsafe(no_mangle))]
pub unsafe extern "C" fn nvmlSystemGetConfComputeSettings(
    settings: *mut NvmlSystemConfComputeSettings,
) -> Code {
    entry(|node| {
        node.system_call("nvmlSystemGetConfComputeSettings")?;
        nonnull(settings)?;
        // SAFETY: `settings` is non-null and NVML's contract makes it point to an
        // `nvmlSystemConfComputeSettings_t`, whose first field is the version word.
        let version = unsafe { (&raw const (*settings).version).read_unaligned() };
        if version != CONF_COMPUTE_SETTINGS_V1_VERSION {
            return Err(ARGUMENT_VERSION_MISMATCH);
        }
        let cc = present(node.fixture.conf_compute.as_ref())?;
        let value = NvmlSystemConfComputeSettings {
            version,
            environment: CC_ENVIRONMENT_UNAVAILABLE,
            cc_feature: present(cc.cc_feature)?.into(),
            dev_tools_mode: present(cc.dev_tools_mode)?.into(),
            multi_gpu_mode: present(cc.multi_gpu_mode)?.into(),
        };
        // SAFETY: as above, `settings` is valid for the whole v1 struct.
        unsafe { put(settings, value) }
    })
}

// Not exported by the `old-driver` build, as by drivers older than the function.
#[cfg_attr(not(feature = "old-driver"), unsafe(no_mangle))]
pub unsafe extern "C" fn nvmlSystemGetConfComputeGpusReadyState(
    isAcceptingWork: *mut c_uint,
) -> Code {
    entry(|node| {
        node.system_call("nvmlSystemGetConfComputeGpusReadyState")?;
        nonnull(isAcceptingWork)?;
        present(node.fixture.conf_compute.as_ref())?;
        // What the last set left, else the fixture's.
        let ready: c_uint = present(node.driver.gpus_ready)?.into();
        // SAFETY: NVML's contract: the pointer is valid for an unsigned int.
        unsafe { put(isAcceptingWork, ready) }
    })
}

// Not exported by the `old-driver` build, as by drivers older than the function.
#[cfg_attr(not(feature = "old-driver"), unsafe(no_mangle))]
pub extern "C" fn nvmlSystemSetConfComputeGpusReadyState(isAcceptingWork: c_uint) -> Code {
    entry_mut(|node| {
        if node.fixture.conf_compute.is_none() {
            return NOT_SUPPORTED;
        }
        let (code, call) = node.set_gpus_ready(isAcceptingWork);
        record(&call);
        code
    })
}

// Not exported by the `old-driver` build, as by drivers older than the function.
#[cfg_attr(not(feature = "old-driver"), unsafe(no_mangle))]
pub unsafe extern "C" fn nvmlSystemGetConfComputeState(
    state: *mut NvmlConfComputeSystemState,
) -> Code {
    entry(|node| {
        node.system_call("nvmlSystemGetConfComputeState")?;
        nonnull(state)?;
        let cc = present(node.fixture.conf_compute.as_ref())?;
        let value = NvmlConfComputeSystemState {
            environment: CC_ENVIRONMENT_UNAVAILABLE,
            cc_feature: present(cc.cc_feature)?.into(),
            dev_tools_mode: present(cc.dev_tools_mode)?.into(),
        };
        // SAFETY: NVML's contract: the pointer is valid for an `nvmlConfComputeSystemState_t`.
        unsafe { put(state, value) }
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetComputeMode(device: NvmlDevice, mode: *mut c_uint) -> Code {
    device_call(device, "nvmlDeviceGetComputeMode", mode, |node, target| {
        let Target::Gpu(index, _) = target else {
            return Err(NOT_SUPPORTED);
        };
        let value = node.compute_mode(index)?;
        // SAFETY: NVML's contract: `mode` is valid for an `nvmlComputeMode_t` (an unsigned int).
        unsafe { put(mode, value) }
    })
}

#[unsafe(no_mangle)]
pub extern "C" fn nvmlDeviceSetComputeMode(device: NvmlDevice, mode: c_uint) -> Code {
    entry_mut(|node| {
        let target = slot(node, device);
        let (code, call) = node.set_compute_mode(target, mode);
        if let Some(call) = call {
            record(&call);
        }
        code
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetCount_v2(deviceCount: *mut c_uint) -> Code {
    entry(|node| {
        node.system_call("nvmlDeviceGetCount_v2")?;
        nonnull(deviceCount)?;
        let n = c_uint::try_from(node.fixture.devices.len()).map_err(|_| UNKNOWN)?;
        // SAFETY: NVML's contract: the pointer is valid for an unsigned int.
        unsafe { put(deviceCount, n) }
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetHandleByIndex_v2(
    index: c_uint,
    device: *mut NvmlDevice,
) -> Code {
    entry(|node| {
        node.system_call("nvmlDeviceGetHandleByIndex_v2")?;
        nonnull(device)?;
        let index = usize::try_from(index).map_err(|_| INVALID_ARGUMENT)?;
        if index >= node.fixture.devices.len() {
            return Err(INVALID_ARGUMENT);
        }
        let h = handle(node, Slot::Gpu { index })?;
        // SAFETY: NVML's contract: the pointer is valid for an `nvmlDevice_t`.
        unsafe { put(device, h) }
    })
}

/// A device call: resolves the handle (unknown, lost, forced error), checks `out` is
/// non-null, then lets `f` answer.
fn device_call<T>(
    device: NvmlDevice,
    symbol: &str,
    out: *mut T,
    f: impl FnOnce(&Node, Target<'_>) -> Result<(), Code>,
) -> Code {
    entry(|node| {
        let target = node.resolve(slot(node, device), symbol)?;
        nonnull(out)?;
        f(node, target)
    })
}

/// A device string call.
///
/// # Safety
/// `buf` is null or valid for writes of `length` bytes.
unsafe fn device_string(
    device: NvmlDevice,
    symbol: &str,
    buf: *mut c_char,
    length: c_uint,
    get: impl for<'a> FnOnce(Target<'a>) -> Option<&'a str>,
) -> Code {
    device_call(device, symbol, buf, |_, target| {
        let value = present(get(target))?;
        // SAFETY: `buf` is valid for `length` bytes (this function's contract).
        unsafe { put_str(buf, length, value) }
    })
}

/// A GPU's own field; MIG handles answer NOT_SUPPORTED.
fn gpu_only<'a, T>(
    target: Target<'a>,
    f: impl FnOnce(&'a crate::fixture::Device) -> Option<T>,
) -> Option<T> {
    match target {
        Target::Gpu(_, d) => f(d),
        Target::Mig { .. } => None,
    }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetName(
    device: NvmlDevice,
    name: *mut c_char,
    length: c_uint,
) -> Code {
    // SAFETY: NVML's contract: `name` holds `length` bytes.
    unsafe {
        device_string(device, "nvmlDeviceGetName", name, length, |t| match t {
            Target::Gpu(_, d) => d.name.as_deref(),
            Target::Mig { mig, .. } => mig.name.as_deref(),
        })
    }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetUUID(
    device: NvmlDevice,
    uuid: *mut c_char,
    length: c_uint,
) -> Code {
    // SAFETY: NVML's contract: `uuid` holds `length` bytes.
    unsafe {
        device_string(device, "nvmlDeviceGetUUID", uuid, length, |t| match t {
            Target::Gpu(_, d) => d.uuid.as_deref(),
            Target::Mig { mig, .. } => mig.uuid.as_deref(),
        })
    }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetSerial(
    device: NvmlDevice,
    serial: *mut c_char,
    length: c_uint,
) -> Code {
    // SAFETY: NVML's contract: `serial` holds `length` bytes.
    unsafe {
        device_string(device, "nvmlDeviceGetSerial", serial, length, |t| {
            gpu_only(t, |d| d.serial.as_deref())
        })
    }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetBoardPartNumber(
    device: NvmlDevice,
    partNumber: *mut c_char,
    length: c_uint,
) -> Code {
    // SAFETY: NVML's contract: `partNumber` holds `length` bytes.
    unsafe {
        device_string(
            device,
            "nvmlDeviceGetBoardPartNumber",
            partNumber,
            length,
            |t| gpu_only(t, |d| d.board_part_number.as_deref()),
        )
    }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetVbiosVersion(
    device: NvmlDevice,
    version: *mut c_char,
    length: c_uint,
) -> Code {
    // SAFETY: NVML's contract: `version` holds `length` bytes.
    unsafe {
        device_string(device, "nvmlDeviceGetVbiosVersion", version, length, |t| {
            gpu_only(t, |d| d.vbios_version.as_deref())
        })
    }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetBrand(device: NvmlDevice, type_: *mut c_uint) -> Code {
    device_call(device, "nvmlDeviceGetBrand", type_, |_, t| {
        let brand = present(gpu_only(t, |d| d.brand.as_deref()))?;
        let value = brand_value(brand).ok_or(UNKNOWN)?;
        // SAFETY: NVML's contract: `type_` is valid for an `nvmlBrandType_t` (a C enum).
        unsafe { put(type_, value) }
    })
}

// Not exported by the `old-driver` build, as by drivers older than the function.
#[cfg_attr(not(feature = "old-driver"), unsafe(no_mangle))]
pub unsafe extern "C" fn nvmlDeviceGetArchitecture(device: NvmlDevice, arch: *mut c_uint) -> Code {
    device_call(device, "nvmlDeviceGetArchitecture", arch, |_, t| {
        let name = present(gpu_only(t, |d| d.architecture.as_deref()))?;
        let value = architecture_value(name).ok_or(UNKNOWN)?;
        // SAFETY: NVML's contract: `arch` is valid for an `nvmlDeviceArchitecture_t`.
        unsafe { put(arch, value) }
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetPciInfo_v3(
    device: NvmlDevice,
    pci: *mut NvmlPciInfo,
) -> Code {
    device_call(device, "nvmlDeviceGetPciInfo_v3", pci, |_, t| {
        let p = present(gpu_only(t, |d| d.pci.as_ref()))?;
        let legacy = legacy_bus_id(&p.bus_id).ok_or(UNKNOWN)?;
        let value = NvmlPciInfo {
            bus_id_legacy: c_array(&legacy)?,
            domain: p.domain,
            bus: p.bus,
            device: p.device,
            pci_device_id: p.device_id(),
            pci_sub_system_id: p.subsystem_id(),
            bus_id: c_array(&p.bus_id)?,
        };
        // SAFETY: NVML's contract: `pci` is valid for an `nvmlPciInfo_t`.
        unsafe { put(pci, value) }
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetCudaComputeCapability(
    device: NvmlDevice,
    major: *mut c_int,
    minor: *mut c_int,
) -> Code {
    device_call(
        device,
        "nvmlDeviceGetCudaComputeCapability",
        major,
        |_, t| {
            nonnull(minor)?;
            let [ma, mi] = present(gpu_only(t, |d| d.cuda_compute_capability))?;
            // SAFETY: NVML's contract: `major` and `minor` are each valid for an int.
            unsafe {
                put(major, ma)?;
                put(minor, mi)
            }
        },
    )
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetAttributes_v2(
    device: NvmlDevice,
    attributes: *mut NvmlDeviceAttributes,
) -> Code {
    device_call(device, "nvmlDeviceGetAttributes_v2", attributes, |_, t| {
        let sms = present(match t {
            Target::Gpu(_, d) => d.multiprocessor_count,
            Target::Mig { mig, .. } => mig.multiprocessor_count,
        })?;
        let value = NvmlDeviceAttributes {
            multiprocessor_count: sms,
            ..NvmlDeviceAttributes::default()
        };
        // SAFETY: NVML's contract: `attributes` is valid for an `nvmlDeviceAttributes_t`.
        unsafe { put(attributes, value) }
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetMemoryInfo_v2(
    device: NvmlDevice,
    memory: *mut NvmlMemoryV2,
) -> Code {
    device_call(device, "nvmlDeviceGetMemoryInfo_v2", memory, |_, t| {
        // SAFETY: `memory` is non-null (checked by `device_call`) and NVML's contract makes it
        // point to an `nvmlMemory_v2_t`, whose first field is the version word.
        let version = unsafe { (&raw const (*memory).version).read_unaligned() };
        if version != MEMORY_V2_VERSION {
            return Err(ARGUMENT_VERSION_MISMATCH);
        }
        let m = present(match t {
            Target::Gpu(_, d) => d.memory,
            Target::Mig { mig, .. } => mig.memory,
        })?;
        let value = NvmlMemoryV2 {
            version,
            total: m.total_bytes,
            reserved: m.reserved_bytes,
            free: m.free_bytes(),
            used: m.used_bytes,
        };
        // SAFETY: as above, `memory` is valid for the whole v2 struct.
        unsafe { put(memory, value) }
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetMaxClockInfo(
    device: NvmlDevice,
    type_: c_uint,
    clock: *mut c_uint,
) -> Code {
    device_call(device, "nvmlDeviceGetMaxClockInfo", clock, |_, t| {
        let mhz = max_clock(gpu_only(t, |d| d.max_clocks_mhz), type_)?;
        // SAFETY: NVML's contract: `clock` is valid for an unsigned int.
        unsafe { put(clock, mhz) }
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetPowerManagementLimit(
    device: NvmlDevice,
    limit: *mut c_uint,
) -> Code {
    device_call(
        device,
        "nvmlDeviceGetPowerManagementLimit",
        limit,
        |_, t| {
            let mw = present(gpu_only(t, |d| d.power_limit_mw))?;
            // SAFETY: NVML's contract: `limit` is valid for an unsigned int.
            unsafe { put(limit, mw) }
        },
    )
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetMigMode(
    device: NvmlDevice,
    currentMode: *mut c_uint,
    pendingMode: *mut c_uint,
) -> Code {
    device_call(device, "nvmlDeviceGetMigMode", currentMode, |_, t| {
        nonnull(pendingMode)?;
        let mode = present(gpu_only(t, |d| d.mig_mode))?;
        // SAFETY: NVML's contract: both pointers are valid for an unsigned int.
        unsafe {
            put(currentMode, c_uint::from(mode.current))?;
            put(pendingMode, c_uint::from(mode.pending))
        }
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetMaxMigDeviceCount(
    device: NvmlDevice,
    count: *mut c_uint,
) -> Code {
    device_call(device, "nvmlDeviceGetMaxMigDeviceCount", count, |_, t| {
        let n = match t {
            Target::Gpu(_, d) => d.max_mig_devices()?,
            Target::Mig { .. } => return Err(NOT_SUPPORTED),
        };
        // SAFETY: NVML's contract: `count` is valid for an unsigned int.
        unsafe { put(count, n) }
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetMigDeviceHandleByIndex(
    device: NvmlDevice,
    index: c_uint,
    migDevice: *mut NvmlDevice,
) -> Code {
    device_call(
        device,
        "nvmlDeviceGetMigDeviceHandleByIndex",
        migDevice,
        |node, t| {
            let Target::Gpu(parent, d) = t else {
                return Err(NOT_SUPPORTED);
            };
            if d.mig_mode.is_none() {
                return Err(NOT_SUPPORTED);
            }
            let index = usize::try_from(index).map_err(|_| NOT_FOUND)?;
            if index >= d.mig_devices.len() {
                return Err(NOT_FOUND);
            }
            let h = handle(node, Slot::Mig { parent, index })?;
            // SAFETY: NVML's contract: `migDevice` is valid for an `nvmlDevice_t`.
            unsafe { put(migDevice, h) }
        },
    )
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetGpuInstanceId(device: NvmlDevice, id: *mut c_uint) -> Code {
    device_call(device, "nvmlDeviceGetGpuInstanceId", id, |_, t| {
        let Target::Mig { mig, .. } = t else {
            return Err(NOT_SUPPORTED);
        };
        let v = present(mig.gpu_instance_id)?;
        // SAFETY: NVML's contract: `id` is valid for an unsigned int.
        unsafe { put(id, v) }
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetComputeInstanceId(
    device: NvmlDevice,
    id: *mut c_uint,
) -> Code {
    device_call(device, "nvmlDeviceGetComputeInstanceId", id, |_, t| {
        let Target::Mig { mig, .. } = t else {
            return Err(NOT_SUPPORTED);
        };
        let v = present(mig.compute_instance_id)?;
        // SAFETY: NVML's contract: `id` is valid for an unsigned int.
        unsafe { put(id, v) }
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceIsMigDeviceHandle(
    device: NvmlDevice,
    isMigDevice: *mut c_uint,
) -> Code {
    device_call(
        device,
        "nvmlDeviceIsMigDeviceHandle",
        isMigDevice,
        |_, t| {
            let is_mig = c_uint::from(matches!(t, Target::Mig { .. }));
            // SAFETY: NVML's contract: `isMigDevice` is valid for an unsigned int.
            unsafe { put(isMigDevice, is_mig) }
        },
    )
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetDeviceHandleFromMigDeviceHandle(
    migDevice: NvmlDevice,
    device: *mut NvmlDevice,
) -> Code {
    device_call(
        migDevice,
        "nvmlDeviceGetDeviceHandleFromMigDeviceHandle",
        device,
        |node, t| {
            let Target::Mig { parent, .. } = t else {
                return Err(INVALID_ARGUMENT);
            };
            let h = handle(node, Slot::Gpu { index: parent })?;
            // SAFETY: NVML's contract: `device` is valid for an `nvmlDevice_t`.
            unsafe { put(device, h) }
        },
    )
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetClockInfo(
    device: NvmlDevice,
    type_: c_uint,
    clock: *mut c_uint,
) -> Code {
    device_call(device, "nvmlDeviceGetClockInfo", clock, |_, t| {
        let mhz = current_clock(gpu_only(t, |d| d.telemetry), type_)?;
        // SAFETY: NVML's contract: `clock` is valid for an unsigned int.
        unsafe { put(clock, mhz) }
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetTemperature(
    device: NvmlDevice,
    sensorType: c_uint,
    temp: *mut c_uint,
) -> Code {
    device_call(device, "nvmlDeviceGetTemperature", temp, |_, t| {
        let celsius = temperature(gpu_only(t, |d| d.telemetry), sensorType)?;
        // SAFETY: NVML's contract: `temp` is valid for an unsigned int.
        unsafe { put(temp, celsius) }
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetPowerUsage(device: NvmlDevice, power: *mut c_uint) -> Code {
    device_call(device, "nvmlDeviceGetPowerUsage", power, |_, t| {
        let mw = present(gpu_only(t, |d| d.telemetry.and_then(|x| x.power_usage_mw)))?;
        // SAFETY: NVML's contract: `power` is valid for an unsigned int.
        unsafe { put(power, mw) }
    })
}

/// Both names of the current clock-limiting reasons (`...ThrottleReasons`, and
/// `...EventReasons` from driver 535); each has its own forced error.
///
/// # Safety
/// `reasons` is null or valid for a write of an `unsigned long long`.
unsafe fn clock_reasons(device: NvmlDevice, symbol: &str, reasons: *mut c_ulonglong) -> Code {
    device_call(device, symbol, reasons, |_, t| {
        let bits = present(gpu_only(t, |d| {
            d.telemetry.and_then(|x| x.throttle_reasons)
        }))?;
        // SAFETY: `reasons` is valid for an unsigned long long (this function's contract).
        unsafe { put(reasons, bits) }
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetCurrentClocksThrottleReasons(
    device: NvmlDevice,
    clocksThrottleReasons: *mut c_ulonglong,
) -> Code {
    // SAFETY: NVML's contract: the pointer is null or valid for an unsigned long long.
    unsafe {
        clock_reasons(
            device,
            "nvmlDeviceGetCurrentClocksThrottleReasons",
            clocksThrottleReasons,
        )
    }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetCurrentClocksEventReasons(
    device: NvmlDevice,
    clocksEventReasons: *mut c_ulonglong,
) -> Code {
    // SAFETY: NVML's contract: the pointer is null or valid for an unsigned long long.
    unsafe {
        clock_reasons(
            device,
            "nvmlDeviceGetCurrentClocksEventReasons",
            clocksEventReasons,
        )
    }
}

/// Count-then-fill: `*infoCount` is the caller's array size on entry. Too small (a count query
/// passes 0, with `infos` null or not) sets it to the number running and answers
/// `INSUFFICIENT_SIZE`; large enough fills `infos` and sets it to the number written. `infos`
/// may be null only when nothing is written.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetComputeRunningProcesses_v3(
    device: NvmlDevice,
    infoCount: *mut c_uint,
    infos: *mut NvmlProcessInfo,
) -> Code {
    device_call(
        device,
        "nvmlDeviceGetComputeRunningProcesses_v3",
        infoCount,
        |_, t| {
            let running = present(gpu_only(t, |d| d.compute_processes.as_deref()))?;
            // SAFETY: `infoCount` is non-null (checked by `device_call`) and NVML's contract
            // makes it valid for an unsigned int, read here and written below.
            let capacity = unsafe { infoCount.read_unaligned() };
            match list_answer(running.len(), capacity)? {
                ListAnswer::TooSmall(needed) => {
                    // SAFETY: as above.
                    unsafe { put(infoCount, needed)? };
                    Err(INSUFFICIENT_SIZE)
                }
                ListAnswer::Fill(n) => {
                    if n > 0 {
                        nonnull(infos)?;
                    }
                    for (i, p) in running.iter().enumerate() {
                        let entry = NvmlProcessInfo {
                            pid: p.pid,
                            used_gpu_memory: p.used_gpu_memory(),
                            gpu_instance_id: NO_INSTANCE_ID,
                            compute_instance_id: NO_INSTANCE_ID,
                        };
                        // SAFETY: `infos` is non-null (n > 0 when this loop runs) and, by
                        // NVML's contract, an array of `capacity` entries; `i < n <= capacity`,
                        // so `infos + i` is in bounds and valid for one `nvmlProcessInfo_t`.
                        unsafe { put(infos.add(i), entry)? };
                    }
                    // SAFETY: as above.
                    unsafe { put(infoCount, n) }
                }
            }
        },
    )
}

/// Sleeps for the GPU's `conf_compute.delay_ms`, if any, with the library's lock released so
/// that other calls still answer, as a driver stuck on one GPU does.
fn conf_compute_delay(device: NvmlDevice) {
    let delay = guarded_value(|| {
        let state = lock();
        let node = state.node.as_deref()?;
        let slot = slot(node, device)?;
        let Slot::Gpu { index } = slot else {
            return None;
        };
        node.fixture
            .devices
            .get(index)?
            .conf_compute
            .as_ref()?
            .delay_ms
    });
    if let Some(ms) = delay {
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
}

/// [`guarded`] for a value: a panic gives `None`.
fn guarded_value<T>(f: impl FnOnce() -> Option<T>) -> Option<T> {
    catch_unwind(AssertUnwindSafe(f)).ok().flatten()
}

/// Copies `bytes` into the start of `buf`, refusing what does not fit.
fn fill(buf: &mut [u8], bytes: &[u8]) -> Result<c_uint, Code> {
    let dst = buf.get_mut(..bytes.len()).ok_or(UNKNOWN)?;
    dst.copy_from_slice(bytes);
    c_uint::try_from(bytes.len()).map_err(|_| UNKNOWN)
}

// Not exported by the `old-driver` build, as by drivers older than the function.
#[cfg_attr(not(feature = "old-driver"), unsafe(no_mangle))]
pub unsafe extern "C" fn nvmlDeviceGetConfComputeGpuCertificate(
    device: NvmlDevice,
    gpuCert: *mut NvmlConfComputeGpuCertificate,
) -> Code {
    conf_compute_delay(device);
    device_call(
        device,
        "nvmlDeviceGetConfComputeGpuCertificate",
        gpuCert,
        |_, t| {
            let cc = present(gpu_only(t, |d| d.conf_compute.as_ref()))?;
            let mut value = NvmlConfComputeGpuCertificate {
                cert_chain_size: 0,
                attestation_cert_chain_size: 0,
                cert_chain: [0; 4096],
                attestation_cert_chain: [0; ATTESTATION_CERT_CHAIN_SIZE],
            };
            value.attestation_cert_chain_size = fill(
                &mut value.attestation_cert_chain,
                cc.cert_chain_pem.as_bytes(),
            )?;
            // SAFETY: NVML's contract: the pointer is valid for an
            // `nvmlConfComputeGpuCertificate_t` (non-null was checked by `device_call`).
            unsafe { put(gpuCert, value) }
        },
    )
}

// Not exported by the `old-driver` build, as by drivers older than the function.
#[cfg_attr(not(feature = "old-driver"), unsafe(no_mangle))]
pub unsafe extern "C" fn nvmlDeviceGetConfComputeGpuAttestationReport(
    device: NvmlDevice,
    gpuAtstReport: *mut NvmlConfComputeGpuAttestationReport,
) -> Code {
    conf_compute_delay(device);
    device_call(
        device,
        "nvmlDeviceGetConfComputeGpuAttestationReport",
        gpuAtstReport,
        |_, t| {
            let cc = present(gpu_only(t, |d| d.conf_compute.as_ref()))?;
            // SAFETY: `gpuAtstReport` is non-null (checked by `device_call`) and NVML's
            // contract makes it point to an `nvmlConfComputeGpuAttestationReport_t`, whose
            // `nonce` the caller filled.
            let nonce = unsafe { (&raw const (*gpuAtstReport).nonce).read_unaligned() };
            let report = cc.report(nonce)?;
            let mut value = NvmlConfComputeGpuAttestationReport {
                is_cec_attestation_report_present: 0,
                attestation_report_size: 0,
                cec_attestation_report_size: 0,
                nonce,
                attestation_report: [0; ATTESTATION_REPORT_SIZE],
                cec_attestation_report: [0; 4096],
            };
            let size = fill(&mut value.attestation_report, &report)?;
            value.attestation_report_size = cc.report_size_override.unwrap_or(size);
            // SAFETY: as above, the pointer is valid for the whole struct.
            unsafe { put(gpuAtstReport, value) }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture::{GPU_IS_LOST, INSUFFICIENT_SIZE};

    const FIXTURE: &str = r#"{
      "schema": "tppguard-fake-nvml/v1", "description": "d", "source": "s",
      "driver_version": "550.90.07",
      "conf_compute": { "cc_feature": false, "dev_tools_mode": false,
                        "multi_gpu_mode": false, "gpus_ready": false },
      "devices": [
        { "name": "NVIDIA H100 80GB HBM3",
          "memory": { "total_bytes": 100, "reserved_bytes": 10, "used_bytes": 5 },
          "mig_mode": { "current": true, "pending": true },
          "mig_devices": [ { "gpu_instance_id": 7 } ],
          "telemetry": { "sm_clock_mhz": 1965, "temperature_c": 61,
                         "power_usage_mw": 612345, "throttle_reasons": 12 },
          "compute_processes": [ { "pid": 4242, "used_gpu_memory_bytes": 4831838208 },
                                 { "pid": 4243 } ],
          "benchmark": { "dense_tops": { "fp16": 712.4, "fp8": 1286.3 } },
          "conf_compute": { "cert_chain_pem": "PEM\n", "report": { "fixed_hex": "11e0ff" } } },
        { "lost": true, "telemetry": { "sm_clock_mhz": 1980 }, "compute_processes": [] },
        { "name": "bare", "compute_processes": [] }
      ]
    }"#;

    /// Installs (or removes) a node as if `nvmlInit` had loaded it.
    fn install(fixture: Option<&str>) {
        let mut state = lock();
        state.node = fixture.map(|f| Box::new(Node::new(Fixture::parse(f).unwrap())));
        state.refs = u32::from(state.node.is_some());
    }

    fn handle_at(index: c_uint) -> NvmlDevice {
        let mut h: NvmlDevice = std::ptr::null_mut();
        // SAFETY: `h` is a valid `nvmlDevice_t` to write.
        let rc = unsafe { nvmlDeviceGetHandleByIndex_v2(index, &mut h) };
        assert_eq!(rc, SUCCESS);
        h
    }

    // One test only touches the library's global state, so tests cannot race on it.
    #[test]
    fn the_c_contract() {
        install(None);
        let mut count: c_uint = 0;
        // SAFETY: `count` is a valid `unsigned int`.
        assert_eq!(unsafe { nvmlDeviceGetCount_v2(&mut count) }, UNINITIALIZED);
        assert_eq!(nvmlShutdown(), UNINITIALIZED);

        install(Some(FIXTURE));
        // SAFETY: null is allowed by the contract and must be refused.
        let rc = unsafe { nvmlDeviceGetCount_v2(std::ptr::null_mut()) };
        assert_eq!(rc, INVALID_ARGUMENT);
        // SAFETY: `count` is a valid `unsigned int`.
        assert_eq!(unsafe { nvmlDeviceGetCount_v2(&mut count) }, SUCCESS);
        assert_eq!(count, 3);
        let mut h: NvmlDevice = std::ptr::null_mut();
        // SAFETY: `h` is a valid `nvmlDevice_t`.
        let rc = unsafe { nvmlDeviceGetHandleByIndex_v2(3, &mut h) };
        assert_eq!(rc, INVALID_ARGUMENT);
        let gpu = handle_at(0);
        let lost = handle_at(1);

        // Strings: exact fit, one byte short, null buffer.
        let mut buf = [0 as c_char; 96];
        let name_len = c_uint::try_from("NVIDIA H100 80GB HBM3".len()).unwrap();
        // SAFETY: `buf` holds 96 bytes, more than each length passed.
        unsafe {
            assert_eq!(
                nvmlDeviceGetName(gpu, buf.as_mut_ptr(), name_len),
                INSUFFICIENT_SIZE
            );
            assert_eq!(
                nvmlDeviceGetName(gpu, buf.as_mut_ptr(), name_len + 1),
                SUCCESS
            );
            assert_eq!(
                nvmlDeviceGetName(gpu, std::ptr::null_mut(), 96),
                INVALID_ARGUMENT
            );
            assert_eq!(nvmlDeviceGetName(lost, buf.as_mut_ptr(), 96), GPU_IS_LOST);
            assert_eq!(
                nvmlDeviceGetSerial(gpu, buf.as_mut_ptr(), 30),
                NOT_SUPPORTED
            );
        }
        // SAFETY: NUL-terminated by the successful call above.
        let name = unsafe { CStr::from_ptr(buf.as_ptr()) };
        assert_eq!(name.to_str().unwrap(), "NVIDIA H100 80GB HBM3");

        // An address that is not one of the node's handles.
        let mut stranger = 0u64;
        let unknown = (&raw mut stranger).cast::<NvmlDeviceSt>();
        // SAFETY: `buf` holds 96 bytes; the fake never reads through the handle.
        let rc = unsafe { nvmlDeviceGetName(unknown, buf.as_mut_ptr(), 96) };
        assert_eq!(rc, INVALID_ARGUMENT);

        // Versioned structs.
        let mut memory = NvmlMemoryV2 {
            version: 1,
            total: 0,
            reserved: 0,
            free: 0,
            used: 0,
        };
        // SAFETY: `memory` is a valid `nvmlMemory_v2_t`.
        unsafe {
            assert_eq!(
                nvmlDeviceGetMemoryInfo_v2(gpu, &mut memory),
                ARGUMENT_VERSION_MISMATCH
            );
            memory.version = MEMORY_V2_VERSION;
            assert_eq!(nvmlDeviceGetMemoryInfo_v2(gpu, &mut memory), SUCCESS);
        }
        assert_eq!(
            (memory.total, memory.reserved, memory.used, memory.free),
            (100, 10, 5, 85)
        );
        let mut cc = NvmlSystemConfComputeSettings {
            version: 0,
            environment: 9,
            cc_feature: 9,
            dev_tools_mode: 9,
            multi_gpu_mode: 9,
        };
        // SAFETY: `cc` is a valid `nvmlSystemConfComputeSettings_v1_t`.
        unsafe {
            assert_eq!(
                nvmlSystemGetConfComputeSettings(&mut cc),
                ARGUMENT_VERSION_MISMATCH
            );
            cc.version = CONF_COMPUTE_SETTINGS_V1_VERSION;
            assert_eq!(nvmlSystemGetConfComputeSettings(&mut cc), SUCCESS);
        }
        assert_eq!(cc.version, 0x0100_0014);
        assert_eq!(
            (cc.cc_feature, cc.dev_tools_mode, cc.multi_gpu_mode),
            (0, 0, 0)
        );

        // MIG handles are distinct from GPU handles and lead back to their GPU.
        let mut mig: NvmlDevice = std::ptr::null_mut();
        let mut parent: NvmlDevice = std::ptr::null_mut();
        let mut id: c_uint = 0;
        // SAFETY: every out-pointer is a valid local.
        unsafe {
            assert_eq!(
                nvmlDeviceGetMigDeviceHandleByIndex(gpu, 0, &mut mig),
                SUCCESS
            );
            assert_eq!(
                nvmlDeviceGetMigDeviceHandleByIndex(gpu, 1, &mut mig),
                NOT_FOUND
            );
            assert_eq!(
                nvmlDeviceGetMigDeviceHandleByIndex(gpu, 0, &mut mig),
                SUCCESS
            );
            assert_eq!(
                nvmlDeviceGetDeviceHandleFromMigDeviceHandle(mig, &mut parent),
                SUCCESS
            );
            assert_eq!(
                nvmlDeviceGetDeviceHandleFromMigDeviceHandle(gpu, &mut parent),
                INVALID_ARGUMENT
            );
            assert_eq!(nvmlDeviceGetGpuInstanceId(mig, &mut id), SUCCESS);
            assert_eq!(nvmlDeviceGetGpuInstanceId(gpu, &mut id), NOT_SUPPORTED);
        }
        assert_ne!(mig, gpu);
        assert_eq!(parent, gpu);
        assert_eq!(id, 7);

        telemetry_calls(gpu, lost, handle_at(2), mig);
        compute_processes(gpu, lost, handle_at(2), mig);
        conf_compute_calls(gpu, lost, handle_at(2), mig);

        // Reference counting: a second init needs no fixture lookup, two shutdowns end it.
        assert_eq!(nvmlInit_v2(), SUCCESS);
        assert_eq!(nvmlShutdown(), SUCCESS);
        // SAFETY: `count` is a valid `unsigned int`.
        assert_eq!(unsafe { nvmlDeviceGetCount_v2(&mut count) }, SUCCESS);
        assert_eq!(nvmlShutdown(), SUCCESS);
        // SAFETY: as above.
        assert_eq!(unsafe { nvmlDeviceGetCount_v2(&mut count) }, UNINITIALIZED);

        // SAFETY: `nvmlErrorString` returns a static NUL-terminated string.
        let text = unsafe { CStr::from_ptr(nvmlErrorString(GPU_IS_LOST)) };
        assert_eq!(text.to_str().unwrap(), "GPU is lost");

        // Uninitialised again: the new calls refuse before looking at the handle.
        let mut mw: c_uint = 0;
        let mut n: c_uint = 0;
        // SAFETY: the out-pointers are valid locals; a null handle is never read.
        unsafe {
            assert_eq!(
                nvmlDeviceGetPowerUsage(std::ptr::null_mut(), &mut mw),
                UNINITIALIZED
            );
            assert_eq!(
                nvmlDeviceGetComputeRunningProcesses_v3(
                    std::ptr::null_mut(),
                    &mut n,
                    std::ptr::null_mut()
                ),
                UNINITIALIZED
            );
        }
    }

    /// Clock, temperature, power and throttle reasons: values, absent values, bad enums,
    /// null out-pointers, lost GPUs and MIG handles.
    fn telemetry_calls(gpu: NvmlDevice, lost: NvmlDevice, bare: NvmlDevice, mig: NvmlDevice) {
        let mut v: c_uint = 0;
        let mut bits: c_ulonglong = 0;
        // SAFETY: every out-pointer is a valid local or null (which must be refused).
        unsafe {
            assert_eq!(nvmlDeviceGetClockInfo(gpu, 1, &mut v), SUCCESS);
            assert_eq!(v, 1965);
            v = 0;
            assert_eq!(nvmlDeviceGetClockInfo(gpu, 0, &mut v), SUCCESS);
            assert_eq!(v, 1965, "GRAPHICS answers the SM clock");
            assert_eq!(nvmlDeviceGetClockInfo(gpu, 2, &mut v), NOT_SUPPORTED);
            assert_eq!(nvmlDeviceGetClockInfo(gpu, 3, &mut v), NOT_SUPPORTED);
            assert_eq!(nvmlDeviceGetClockInfo(gpu, 4, &mut v), INVALID_ARGUMENT);
            assert_eq!(
                nvmlDeviceGetClockInfo(gpu, 1, std::ptr::null_mut()),
                INVALID_ARGUMENT
            );
            assert_eq!(nvmlDeviceGetClockInfo(lost, 1, &mut v), GPU_IS_LOST);
            assert_eq!(nvmlDeviceGetClockInfo(bare, 1, &mut v), NOT_SUPPORTED);
            assert_eq!(nvmlDeviceGetClockInfo(mig, 1, &mut v), NOT_SUPPORTED);

            assert_eq!(nvmlDeviceGetTemperature(gpu, 0, &mut v), SUCCESS);
            assert_eq!(v, 61);
            assert_eq!(nvmlDeviceGetTemperature(gpu, 1, &mut v), INVALID_ARGUMENT);
            assert_eq!(nvmlDeviceGetTemperature(bare, 0, &mut v), NOT_SUPPORTED);
            assert_eq!(
                nvmlDeviceGetTemperature(gpu, 0, std::ptr::null_mut()),
                INVALID_ARGUMENT
            );

            assert_eq!(nvmlDeviceGetPowerUsage(gpu, &mut v), SUCCESS);
            assert_eq!(v, 612_345);
            assert_eq!(nvmlDeviceGetPowerUsage(bare, &mut v), NOT_SUPPORTED);
            assert_eq!(nvmlDeviceGetPowerUsage(lost, &mut v), GPU_IS_LOST);
            assert_eq!(
                nvmlDeviceGetPowerUsage(gpu, std::ptr::null_mut()),
                INVALID_ARGUMENT
            );

            assert_eq!(
                nvmlDeviceGetCurrentClocksThrottleReasons(gpu, &mut bits),
                SUCCESS
            );
            assert_eq!(bits, 0xC);
            bits = 0;
            assert_eq!(
                nvmlDeviceGetCurrentClocksEventReasons(gpu, &mut bits),
                SUCCESS
            );
            assert_eq!(bits, 0xC);
            assert_eq!(
                nvmlDeviceGetCurrentClocksThrottleReasons(bare, &mut bits),
                NOT_SUPPORTED
            );
            assert_eq!(
                nvmlDeviceGetCurrentClocksEventReasons(gpu, std::ptr::null_mut()),
                INVALID_ARGUMENT
            );
        }
    }

    /// The two CC evidence calls: the chain and report written with their sizes, the caller's
    /// nonce kept, NOT_SUPPORTED without `conf_compute` or on a MIG handle.
    fn conf_compute_calls(gpu: NvmlDevice, lost: NvmlDevice, bare: NvmlDevice, mig: NvmlDevice) {
        let mut cert = Box::new(NvmlConfComputeGpuCertificate {
            cert_chain_size: 9,
            attestation_cert_chain_size: 9,
            cert_chain: [1; 4096],
            attestation_cert_chain: [1; ATTESTATION_CERT_CHAIN_SIZE],
        });
        let mut report = Box::new(NvmlConfComputeGpuAttestationReport {
            is_cec_attestation_report_present: 9,
            attestation_report_size: 9,
            cec_attestation_report_size: 9,
            nonce: [7; 32],
            attestation_report: [1; ATTESTATION_REPORT_SIZE],
            cec_attestation_report: [1; 4096],
        });
        // SAFETY: the out-pointers are valid boxed structs, or null (which must be refused).
        unsafe {
            assert_eq!(
                nvmlDeviceGetConfComputeGpuCertificate(gpu, &mut *cert),
                SUCCESS
            );
            assert_eq!(
                nvmlDeviceGetConfComputeGpuAttestationReport(gpu, &mut *report),
                SUCCESS
            );
            for device in [bare, mig] {
                assert_eq!(
                    nvmlDeviceGetConfComputeGpuCertificate(device, &mut *cert),
                    NOT_SUPPORTED
                );
                assert_eq!(
                    nvmlDeviceGetConfComputeGpuAttestationReport(device, &mut *report),
                    NOT_SUPPORTED
                );
            }
            assert_eq!(
                nvmlDeviceGetConfComputeGpuCertificate(lost, &mut *cert),
                GPU_IS_LOST
            );
            assert_eq!(
                nvmlDeviceGetConfComputeGpuAttestationReport(gpu, std::ptr::null_mut()),
                INVALID_ARGUMENT
            );
        }
        assert_eq!(
            (cert.cert_chain_size, cert.attestation_cert_chain_size),
            (0, 4)
        );
        assert_eq!(&cert.attestation_cert_chain[..5], b"PEM\n\0");
        assert_eq!(report.attestation_report_size, 3);
        assert_eq!(&report.attestation_report[..4], &[0x11, 0xe0, 0xff, 0]);
        assert_eq!(report.nonce, [7; 32], "the caller's nonce is kept");
        assert_eq!(report.is_cec_attestation_report_present, 0);
    }

    /// `nvmlDeviceGetComputeRunningProcesses_v3`'s count-then-fill protocol, as nvml-wrapper
    /// drives it (count query with 0 and null, then a larger array).
    fn compute_processes(gpu: NvmlDevice, lost: NvmlDevice, bare: NvmlDevice, mig: NvmlDevice) {
        let null = std::ptr::null_mut::<NvmlProcessInfo>();
        let marker = NvmlProcessInfo {
            pid: 9,
            used_gpu_memory: 9,
            gpu_instance_id: 9,
            compute_instance_id: 9,
        };
        let mut infos = [marker; 7];
        let mut n: c_uint = 0;
        // SAFETY: `n` is a valid `unsigned int`; `infos` holds 7 entries and each count
        // passed with it is at most 7.
        unsafe {
            // The count query.
            assert_eq!(
                nvmlDeviceGetComputeRunningProcesses_v3(gpu, &mut n, null),
                INSUFFICIENT_SIZE
            );
            assert_eq!(n, 2);
            // An array one short: the count needed, nothing written.
            n = 1;
            assert_eq!(
                nvmlDeviceGetComputeRunningProcesses_v3(gpu, &mut n, infos.as_mut_ptr()),
                INSUFFICIENT_SIZE
            );
            assert_eq!(n, 2);
            assert_eq!(infos[0], marker);
            // Room to spare (nvml-wrapper asks for count + 5): two written, count 2.
            n = 7;
            assert_eq!(
                nvmlDeviceGetComputeRunningProcesses_v3(gpu, &mut n, infos.as_mut_ptr()),
                SUCCESS
            );
            assert_eq!(n, 2);
            // Room but no array.
            n = 7;
            assert_eq!(
                nvmlDeviceGetComputeRunningProcesses_v3(gpu, &mut n, null),
                INVALID_ARGUMENT
            );
            assert_eq!(
                nvmlDeviceGetComputeRunningProcesses_v3(gpu, std::ptr::null_mut(), null),
                INVALID_ARGUMENT
            );
            // Nothing running: the count query succeeds with 0.
            n = 0;
            assert_eq!(
                nvmlDeviceGetComputeRunningProcesses_v3(bare, &mut n, null),
                SUCCESS
            );
            assert_eq!(n, 0);
            assert_eq!(
                nvmlDeviceGetComputeRunningProcesses_v3(lost, &mut n, null),
                GPU_IS_LOST
            );
            assert_eq!(
                nvmlDeviceGetComputeRunningProcesses_v3(mig, &mut n, null),
                NOT_SUPPORTED
            );
        }
        let none = 0xFFFF_FFFF;
        assert_eq!(
            infos[0],
            NvmlProcessInfo {
                pid: 4242,
                used_gpu_memory: 4_831_838_208,
                gpu_instance_id: none,
                compute_instance_id: none,
            }
        );
        assert_eq!(
            infos[1],
            NvmlProcessInfo {
                pid: 4243,
                used_gpu_memory: u64::MAX,
                gpu_instance_id: none,
                compute_instance_id: none,
            },
            "an absent figure is NVML_VALUE_NOT_AVAILABLE"
        );
        assert_eq!(infos[2], marker, "nothing past the count is written");
    }
}
