//! A fake `libnvidia-ml.so` serving one node described by a JSON fixture
//! (`tests/fixtures/nvml/SCHEMA.md`), so that tests and `tppguard-agent --simulate` drive the
//! real `nvml-wrapper` code path on machines with no NVIDIA driver.
//!
//! The library exports a small set of NVML's C functions with their exact signatures
//! ([`ffi`]); any other NVML function is simply not exported, as on an old driver. The
//! fixture is read at `nvmlInit_v2` / `nvmlInitWithFlags` time from
//! `$TPPGUARD_FAKE_NVML_FIXTURE`, else from `fixture.json` beside the library file as it was
//! loaded. Each copy of the library file is a separate library with its own state, so one
//! process may load several copies serving different fixtures.
//!
//! This crate is the workspace's one exception to `#![forbid(unsafe_code)]`: every `unsafe`
//! block writes through a pointer the NVML caller passed, and says why that is sound.
#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]

pub mod ffi;
pub mod fixture;

/// The mark of a tppguard fake: the agent looks this symbol up in the NVML library it loaded
/// and, when it is there, labels the inventory, the attestation and any measurement simulated,
/// however the library was chosen (`--simulate`, `--nvml-lib`, the dynamic loader). No NVIDIA
/// library exports it. The same name marks `tests/fake-cuda`; keep it in step with
/// `SIMULATED_MARKER` in `agent/src/nvml.rs`.
#[unsafe(no_mangle)]
pub static TPPGUARD_SIMULATED: [u8; 19] = *b"tppguard-fake-nvml\0";
