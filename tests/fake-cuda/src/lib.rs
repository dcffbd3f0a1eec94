//! A fake CUDA stack in one library file: the driver API (`libcuda.so.1`), cuBLAS
//! (`libcublas.so.13`) and cuBLASLt (`libcublasLt.so.13`), so that tests run the agent's real
//! CUDA benchmark backend (cudarc, loaded at run time) on machines with no GPU and no CUDA.
//!
//! Tests install copies of the file under those names (with the matching SONAME written over
//! the placeholder `build.rs` gives it) and put the folder on `LD_LIBRARY_PATH`. Each copy is a
//! library of its own with its own state; the cuBLAS copies reach the driver copy's state
//! (allocations, the stream's queued work) through [`driver::TPPGUARD_FAKE_CUDA_DRIVER`],
//! looked up in the already loaded `libcuda.so.1`, as real cuBLAS uses the driver the process
//! has loaded.
//!
//! # What is simulated
//!
//! One device ([`model::Config`], from the environment at `cuInit`): compute capability 9.0,
//! the PCI bus id of GPU 0 of the `dgx-h100` NVML fixture, 80 GiB, a CUDA 13.0 driver and
//! cuBLAS 13.0.2. Device memory is bookkeeping only: allocations get addresses that are never
//! dereferenced, and every access (memset, copy, GEMM operand, workspace) is checked against
//! them. GEMMs compute nothing; each adds `2·m·n·k / rate` to the device time of the legacy
//! default stream (the only stream modelled), with the rates of [`model::HOPPER`] or
//! [`model::AMPERE`]; events record that time, so `cuEventElapsedTime` gives the rate back.
//!
//! # What is checked
//!
//! Every argument, as the real libraries document them: initialisation and the current
//! context, handles (live, of the right kind and context), flags, type combinations and scale
//! types, transposes, leading dimensions, shapes, alignment, operand bounds, the FP8 rules of
//! cuBLASLt (TN layout, compute capability 8.9 on, multiples of 16), heuristics' algorithms
//! and workspaces, event timing flags. A call that breaks a rule returns the error status the
//! real library would and prints why on stderr, prefixed `tppguard-fake-cuda:`; layouts and
//! modes the real libraries accept but run slowly (INT8 outside TN, FP8 without fast
//! accumulation) run at half rate with a note. No call aborts the process, and no panic
//! crosses the C boundary.
//!
//! This crate is, with `tests/fake-nvml`, the workspace's exception to
//! `#![forbid(unsafe_code)]`: every `unsafe` block reads or writes through a pointer the caller
//! passed, or looks up the driver library, and says why that is sound.
#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]

pub mod blas;
pub mod driver;
pub mod lt;
pub mod model;

/// The mark of a tppguard fake, as in `tests/fake-nvml`: the agent looks it up in the CUDA
/// libraries it loaded and records any measurement they give as `simulated`. No NVIDIA library
/// exports it. Keep it in step with `SIMULATED_MARKER` in `agent/src/nvml.rs`.
#[unsafe(no_mangle)]
pub static TPPGUARD_SIMULATED: [u8; 19] = *b"tppguard-fake-cuda\0";

use std::collections::HashSet;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Mutex, MutexGuard};

/// A refused call: the status to return and why, for stderr.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The status code (`CUresult` or `cublasStatus_t`).
    pub code: u32,
    /// Why.
    pub why: String,
}

/// A refusal with status `code`.
pub fn refuse<T>(code: u32, why: impl Into<String>) -> Result<T, Refusal> {
    Err(Refusal {
        code,
        why: why.into(),
    })
}

/// Runs an entry point: its status, with a refusal printed on stderr and a panic turned into
/// `internal` instead of unwinding into C.
fn run_entry(call: &str, internal: u32, f: impl FnOnce() -> Result<(), Refusal>) -> u32 {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => 0,
        Ok(Err(refusal)) => {
            eprintln!("tppguard-fake-cuda: {call}: {}", refusal.why);
            refusal.code
        }
        Err(_) => {
            eprintln!("tppguard-fake-cuda: {call}: panicked");
            internal
        }
    }
}

/// Prints `text` on stderr once per process (per library copy).
fn note_once(text: &'static str) {
    static SEEN: Mutex<Option<HashSet<&'static str>>> = Mutex::new(None);
    let mut seen = lock(&SEEN);
    if seen.get_or_insert_with(HashSet::new).insert(text) {
        eprintln!("tppguard-fake-cuda: note: {text}");
    }
}

/// Locks `m`, past a poisoning panic (entry points catch panics; the state stays usable).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Writes `value` through the caller's out-pointer `p`, or refuses a null one with `code`.
///
/// # Safety
/// `p` is null or valid for a write of a `T` (alignment is not required).
unsafe fn put<T>(p: *mut T, value: T, code: u32, what: &str) -> Result<(), Refusal> {
    if p.is_null() {
        return refuse(code, format!("{what} is a null pointer"));
    }
    // SAFETY: `p` is non-null and, by this function's contract, valid for writing a `T`.
    unsafe { p.write_unaligned(value) };
    Ok(())
}

/// Reads a `T` the caller passed by pointer, or refuses a null one with `code`.
///
/// # Safety
/// `p` is null or valid for a read of a `T` (alignment is not required).
unsafe fn get<T>(p: *const T, code: u32, what: &str) -> Result<T, Refusal> {
    if p.is_null() {
        return refuse(code, format!("{what} is a null pointer"));
    }
    // SAFETY: `p` is non-null and, by this function's contract, valid for reading a `T`.
    Ok(unsafe { p.read_unaligned() })
}

/// Hands out handle values: distinct, non-null, never dereferenced (by the fake or anyone).
#[derive(Debug)]
struct Handles {
    next: usize,
}

impl Handles {
    const fn new(base: usize) -> Self {
        Self { next: base }
    }

    fn take(&mut self) -> usize {
        self.next += 0x10;
        self.next
    }
}
