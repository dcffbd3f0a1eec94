//! Opening NVML: the installed driver's library, a library named by the user, or the bundled
//! simulated driver; and turning NVML's start-up failures into errors a user can act on.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use nvml_wrapper::Nvml;
use nvml_wrapper::error::NvmlError;

use crate::simulate::SimulatedDriver;

/// Library names tried, in order, when no path is given. Distributions ship the versioned
/// soname with the driver and the unversioned one only with development packages.
pub const DRIVER_LIBRARY_NAMES: [&str; 2] = ["libnvidia-ml.so.1", "libnvidia-ml.so"];

/// Where the NVML library comes from.
#[derive(Debug)]
pub enum LibrarySource {
    /// The installed driver, found by the dynamic loader.
    Driver,
    /// A library file the user named (`--nvml-lib`).
    Path(PathBuf),
    /// The bundled fake library serving a fixture.
    Simulated(SimulatedDriver),
}

/// Why NVML could not be started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// No NVML library could be loaded at all: no NVIDIA driver is installed.
    #[error(
        "no NVIDIA driver found (could not load {tried}); install the NVIDIA driver, \
         or run with --simulate to try tppguard on a simulated DGX H100 node"
    )]
    NoDriver {
        /// The library names or path tried.
        tried: String,
    },
    /// The library loaded but the kernel module is not.
    #[error(
        "the NVIDIA driver library is installed but its kernel module is not loaded; \
         load it (modprobe nvidia) or reboot after installing the driver"
    )]
    DriverNotLoaded,
    /// The user may not talk to the driver.
    #[error(
        "NVML refused access to the driver (no permission); run as a user with access to \
         /dev/nvidia*, or as root"
    )]
    NoPermission,
    /// User-space library and kernel module are from different driver versions.
    #[error(
        "the NVIDIA user-space library and kernel module are from different driver versions; \
         reboot, or reinstall the driver so that both match"
    )]
    VersionMismatch,
    /// Any other failure of `nvmlInit`.
    #[error("NVML failed to start: {source}")]
    Init {
        /// NVML's error.
        #[source]
        source: NvmlError,
    },
}

impl OpenError {
    fn from_init(err: NvmlError, tried: &str) -> Self {
        match err {
            NvmlError::LibloadingError(_) | NvmlError::LibraryNotFound => Self::NoDriver {
                tried: tried.to_owned(),
            },
            NvmlError::DriverNotLoaded => Self::DriverNotLoaded,
            NvmlError::NoPermission => Self::NoPermission,
            NvmlError::LibRmVersionMismatch => Self::VersionMismatch,
            source => Self::Init { source },
        }
    }
}

/// An initialised NVML, together with what keeps its library file alive.
pub struct Session {
    /// The NVML handle. Declared first so it is dropped (nvmlShutdown) before the library
    /// files of a simulated driver are removed.
    pub nvml: Nvml,
    /// Where the library came from.
    pub source: LibrarySource,
    /// The file or name that was loaded.
    pub library: String,
    /// True when the library that answered is tppguard's fake (`tests/fake-nvml`, bundled for
    /// `--simulate`), however it was chosen: no real GPU is read. See [`raw::is_fake`].
    pub simulated: bool,
}

impl Session {
    /// Loads and initialises NVML from `source`.
    pub fn open(source: LibrarySource) -> Result<Self, OpenError> {
        match &source {
            LibrarySource::Driver => {
                let mut last = None;
                for name in DRIVER_LIBRARY_NAMES {
                    match init(OsStr::new(name)) {
                        Ok(nvml) => {
                            return Ok(Self {
                                nvml,
                                source,
                                library: name.to_owned(),
                                simulated: loaded_fake(OsStr::new(name)),
                            });
                        }
                        // Only "could not load" moves on to the next name; a library that
                        // loaded and failed to start is the answer.
                        Err(NvmlError::LibloadingError(e)) => last = Some(e),
                        Err(e) => return Err(OpenError::from_init(e, name)),
                    }
                }
                tracing::debug!(error = ?last, "no NVML library could be loaded");
                Err(OpenError::NoDriver {
                    tried: DRIVER_LIBRARY_NAMES.join(" or "),
                })
            }
            LibrarySource::Path(path) => {
                let nvml = open_path(path)?;
                let library = path.display().to_string();
                let simulated = loaded_fake(path.as_os_str());
                Ok(Self {
                    nvml,
                    source,
                    library,
                    simulated,
                })
            }
            LibrarySource::Simulated(driver) => {
                let nvml = open_path(&driver.library())?;
                Ok(Self {
                    nvml,
                    library: "bundled simulated driver".to_owned(),
                    source,
                    // The bundled driver is the fake; it is labelled so whatever the probe says.
                    simulated: true,
                })
            }
        }
    }
}

/// Whether the NVML library loaded as `library` is tppguard's fake. A library the loader no
/// longer finds under that name (it cannot be: nvml-wrapper holds it) counts as real, with a
/// debug line.
fn loaded_fake(library: &OsStr) -> bool {
    match raw::is_fake(library) {
        Some(fake) => {
            if fake {
                tracing::debug!(library = ?library, "the NVML library is tppguard's fake: simulated");
            }
            fake
        }
        None => {
            tracing::debug!(library = ?library, "the loaded NVML library cannot be looked up again");
            false
        }
    }
}

fn open_path(path: &Path) -> Result<Nvml, OpenError> {
    init(path.as_os_str()).map_err(|e| OpenError::from_init(e, &path.display().to_string()))
}

fn init(lib: &OsStr) -> Result<Nvml, NvmlError> {
    Nvml::builder().lib_path(lib).init()
}

/// Gating's NVML calls ([`crate::gate::GpuControl`]): compute mode and the
/// confidential-computing GPUs-ready state, through nvml-wrapper (no `unsafe` here).
pub mod control {
    use nvml_wrapper::Nvml;
    use nvml_wrapper::enum_wrappers::device::ComputeMode as NvmlMode;
    use nvml_wrapper::error::NvmlError;
    use tppguard_proto::lease::{ComputeMode, GpuRef};

    use crate::gate::GpuControl;

    /// NVML's error as the snake_case code a gating report carries (the inventory's absence
    /// codes where they exist).
    pub fn error_code(err: &NvmlError) -> String {
        match err {
            NvmlError::NotSupported => "not_supported",
            NvmlError::NoPermission => "no_permission",
            NvmlError::FunctionNotFound => "driver_lacks_function",
            NvmlError::FailedToLoadSymbol(_) => "symbol_missing",
            NvmlError::GpuLost => "gpu_lost",
            NvmlError::InvalidArg => "invalid_argument",
            NvmlError::Uninitialized => "uninitialized",
            NvmlError::UnexpectedVariant(_) => "unexpected_value",
            NvmlError::InUse => "in_use",
            NvmlError::Timeout => "timeout",
            _ => "error",
        }
        .to_owned()
    }

    fn to_proto(mode: NvmlMode) -> ComputeMode {
        match mode {
            NvmlMode::Default => ComputeMode::Default,
            NvmlMode::ExclusiveProcess => ComputeMode::ExclusiveProcess,
            NvmlMode::Prohibited => ComputeMode::Prohibited,
            NvmlMode::ExclusiveThread => ComputeMode::Other,
        }
    }

    /// Gating through an initialised NVML.
    pub struct NvmlControl<'a> {
        nvml: &'a Nvml,
    }

    impl<'a> NvmlControl<'a> {
        /// Gating's calls on `nvml`.
        pub fn new(nvml: &'a Nvml) -> Self {
            Self { nvml }
        }
    }

    impl GpuControl for NvmlControl<'_> {
        fn gpus(&mut self) -> Result<Vec<GpuRef>, String> {
            let count = self.nvml.device_count().map_err(|e| error_code(&e))?;
            Ok((0..count)
                .map(|index| {
                    // A GPU without a handle or identities is still listed: the lease cannot
                    // name it, so it is gated like any GPU the lease does not allow.
                    let device = self.nvml.device_by_index(index).ok();
                    GpuRef {
                        index,
                        uuid: device.as_ref().and_then(|d| d.uuid().ok()),
                        serial: device.as_ref().and_then(|d| d.serial().ok()),
                        hardware_id: None,
                    }
                })
                .collect())
        }

        fn compute_mode(&mut self, index: u32) -> Result<ComputeMode, String> {
            self.nvml
                .device_by_index(index)
                .and_then(|d| d.compute_mode())
                .map(to_proto)
                .map_err(|e| error_code(&e))
        }

        fn set_compute_mode(&mut self, index: u32, mode: ComputeMode) -> Result<(), String> {
            let mode = match mode {
                ComputeMode::Default => NvmlMode::Default,
                ComputeMode::ExclusiveProcess => NvmlMode::ExclusiveProcess,
                ComputeMode::Prohibited => NvmlMode::Prohibited,
                ComputeMode::Other => return Err("invalid_argument".to_owned()),
            };
            self.nvml
                .device_by_index(index)
                .and_then(|mut d| d.set_compute_mode(mode))
                .map_err(|e| error_code(&e))
        }

        fn cc_on(&mut self) -> bool {
            // The CC calls are system-wide; nvml-wrapper hangs them on a device.
            self.nvml
                .device_by_index(0)
                .and_then(|d| d.is_cc_enabled())
                .unwrap_or(false)
        }

        fn cc_ready(&mut self) -> Result<bool, String> {
            self.nvml
                .device_by_index(0)
                .and_then(|d| d.get_confidential_compute_state())
                .map_err(|e| error_code(&e))
        }

        fn set_cc_ready(&mut self, ready: bool) -> Result<(), String> {
            self.nvml
                .device_by_index(0)
                .and_then(|d| d.set_confidential_compute_state(ready))
                .map_err(|e| error_code(&e))
        }
    }
}

/// NVML calls that nvml-wrapper does not wrap (or wraps with a slice that panics on a
/// driver's out-of-range size: the confidential-computing evidence calls), and the look-up of
/// the fake libraries' mark.
/// This is the agent's FFI corner for NVML (the CUDA backend has its own).
#[allow(unsafe_code)]
pub mod raw {
    use std::ffi::{OsStr, c_void};

    use nvml_wrapper::Device;
    use nvml_wrapper::Nvml;
    use nvml_wrapper::error::{NvmlError, nvml_sym, nvml_try};

    /// The symbol that tppguard's fake libraries export (`tests/fake-nvml`, `tests/fake-cuda`)
    /// and no NVIDIA library does. Keep in step with `TPPGUARD_SIMULATED` in both fakes.
    ///
    /// It is an honesty mark, not a defence: it labels the fakes this project ships, however
    /// they were chosen. A library written to pass as a driver simply does not export it;
    /// only hardware evidence (a GPU's signed measurement report) tells such a library apart.
    pub const SIMULATED_MARKER: &[u8] = b"TPPGUARD_SIMULATED\0";

    /// Whether `library` exports [`SIMULATED_MARKER`].
    pub fn exports_marker(library: &libloading::Library) -> bool {
        // SAFETY: the symbol is only resolved to an address, which is compared with nothing,
        // never read or called; a library that lacks it gives an error.
        unsafe { library.get::<*const c_void>(SIMULATED_MARKER) }.is_ok()
    }

    /// Whether the library already loaded in this process as `library` (the path or name
    /// nvml-wrapper was given) is one of tppguard's fakes; `None` when no library is loaded
    /// under that name. Never loads anything (`RTLD_NOLOAD`).
    pub fn is_fake(library: &OsStr) -> Option<bool> {
        // SAFETY: with RTLD_NOLOAD, dlopen only returns another reference to a library that is
        // already loaded (nvml-wrapper loaded it and keeps it), so no initialiser runs; the
        // reference is dropped (dlclose) at the end of this function, leaving the library as
        // loaded as it was.
        let handle = unsafe {
            libloading::os::unix::Library::open(Some(library), libc::RTLD_LAZY | libc::RTLD_NOLOAD)
        }
        .ok()?;
        Some(exports_marker(&libloading::Library::from(handle)))
    }

    /// `nvmlDeviceGetGpuInstanceId` for a MIG device handle.
    pub fn gpu_instance_id(nvml: &Nvml, device: &Device<'_>) -> Result<u32, NvmlError> {
        let sym = nvml_sym(nvml.lib().nvmlDeviceGetGpuInstanceId.as_ref())?;
        let mut id: std::os::raw::c_uint = 0;
        // SAFETY: `device.handle()` is a handle NVML gave out for this `Nvml`, which is still
        // initialised (the borrow of `nvml` outlives the call), and `id` is a valid out-pointer
        // for one `c_uint`, the signature NVML documents for this function.
        nvml_try(unsafe { sym(device.handle(), &mut id) })?;
        Ok(id)
    }

    /// Why a confidential-computing call gave no bytes.
    #[derive(Debug, thiserror::Error)]
    pub enum CcCallError {
        /// NVML answered an error (or lacks the function).
        #[error(transparent)]
        Nvml(#[from] NvmlError),
        /// The driver said it wrote more bytes than the buffer holds: nvml-wrapper would slice
        /// past the buffer and panic, so these calls are made here with the size checked.
        #[error("NVML said it wrote {size} bytes of {what} into a {buffer}-byte buffer")]
        SizeOutOfRange {
            /// What was asked.
            what: &'static str,
            /// The size the driver wrote.
            size: u32,
            /// The buffer's size.
            buffer: usize,
        },
    }

    /// The first `size` bytes of `buf`, refused when `size` is past its end.
    fn sized(what: &'static str, buf: &[u8], size: u32) -> Result<Vec<u8>, CcCallError> {
        usize::try_from(size)
            .ok()
            .and_then(|n| buf.get(..n))
            .map(<[u8]>::to_vec)
            .ok_or(CcCallError::SizeOutOfRange {
                what,
                size,
                buffer: buf.len(),
            })
    }

    /// `nvmlDeviceGetConfComputeGpuAttestationReport` for `nonce`: the report (SPDM
    /// GET_MEASUREMENTS request || MEASUREMENTS response) exactly as sized by the driver.
    pub fn gpu_attestation_report(
        nvml: &Nvml,
        device: &Device<'_>,
        nonce: [u8; 32],
    ) -> Result<Vec<u8>, CcCallError> {
        use nvml_wrapper_sys::bindings::nvmlConfComputeGpuAttestationReport_t;
        let sym = nvml_sym(
            nvml.lib()
                .nvmlDeviceGetConfComputeGpuAttestationReport
                .as_ref(),
        )?;
        let mut report = Box::new(nvmlConfComputeGpuAttestationReport_t {
            isCecAttestationReportPresent: 0,
            attestationReportSize: 0,
            cecAttestationReportSize: 0,
            nonce,
            attestationReport: [0; 8192],
            cecAttestationReport: [0; 4096],
        });
        // SAFETY: a live handle of this initialised `Nvml` (as in `gpu_instance_id`) and a
        // valid, exclusively borrowed `nvmlConfComputeGpuAttestationReport_t` (the layout of
        // nvml-wrapper-sys's bindings), the signature NVML documents for this function.
        nvml_try(unsafe { sym(device.handle(), &mut *report) })?;
        sized(
            "attestation report",
            &report.attestationReport,
            report.attestationReportSize,
        )
    }

    /// `nvmlDeviceGetConfComputeGpuCertificate`: the attestation certificate chain (PEM, leaf
    /// first) as sized by the driver.
    pub fn gpu_attestation_cert_chain(
        nvml: &Nvml,
        device: &Device<'_>,
    ) -> Result<Vec<u8>, CcCallError> {
        use nvml_wrapper_sys::bindings::nvmlConfComputeGpuCertificate_t;
        let sym = nvml_sym(nvml.lib().nvmlDeviceGetConfComputeGpuCertificate.as_ref())?;
        let mut cert = Box::new(nvmlConfComputeGpuCertificate_t {
            certChainSize: 0,
            attestationCertChainSize: 0,
            certChain: [0; 4096],
            attestationCertChain: [0; 5120],
        });
        // SAFETY: a live handle and a valid, exclusively borrowed
        // `nvmlConfComputeGpuCertificate_t`, as above.
        nvml_try(unsafe { sym(device.handle(), &mut *cert) })?;
        sized(
            "attestation certificate chain",
            &cert.attestationCertChain,
            cert.attestationCertChainSize,
        )
    }

    /// `nvmlDeviceGetComputeInstanceId` for a MIG device handle.
    pub fn compute_instance_id(nvml: &Nvml, device: &Device<'_>) -> Result<u32, NvmlError> {
        let sym = nvml_sym(nvml.lib().nvmlDeviceGetComputeInstanceId.as_ref())?;
        let mut id: std::os::raw::c_uint = 0;
        // SAFETY: as in `gpu_instance_id`: a live handle and a valid out-pointer.
        nvml_try(unsafe { sym(device.handle(), &mut id) })?;
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fake_is_simulated_however_it_is_named() {
        let driver = SimulatedDriver::install("dgx-h100").unwrap();
        // `--nvml-lib` pointed at the very library `--simulate` bundles: the mark decides.
        let by_path = Session::open(LibrarySource::Path(driver.library())).unwrap();
        assert!(by_path.simulated);
        assert_eq!(raw::is_fake(driver.library().as_os_str()), Some(true));
        drop(by_path);
        let bundled = Session::open(LibrarySource::Simulated(driver)).unwrap();
        assert!(bundled.simulated);
    }

    #[test]
    fn gating_calls_go_through_nvml_wrapper() {
        use crate::gate::GpuControl as _;
        use tppguard_proto::lease::ComputeMode;
        let driver = SimulatedDriver::install("dgx-h100").unwrap();
        let session = Session::open(LibrarySource::Simulated(driver)).unwrap();
        let mut control = control::NvmlControl::new(&session.nvml);
        let gpus = control.gpus().unwrap();
        assert_eq!(gpus.len(), 8);
        assert!(gpus.iter().all(|g| g.uuid.is_some()));
        assert_eq!(control.compute_mode(3), Ok(ComputeMode::Default));
        control
            .set_compute_mode(3, ComputeMode::Prohibited)
            .unwrap();
        assert_eq!(control.compute_mode(3), Ok(ComputeMode::Prohibited));
        assert_eq!(
            control.set_compute_mode(3, ComputeMode::Other),
            Err("invalid_argument".to_owned())
        );
        assert_eq!(control.compute_mode(99), Err("invalid_argument".to_owned()));
        // The DGX H100 fixture has CC off.
        assert!(!control.cc_on());
    }

    #[test]
    fn a_library_not_loaded_is_not_looked_at() {
        // RTLD_NOLOAD: nothing is loaded to answer the question.
        assert_eq!(
            raw::is_fake(OsStr::new("/nonexistent/libnvidia-ml.so.1")),
            None
        );
        assert_eq!(
            raw::is_fake(OsStr::new("libtppguard-never-loaded.so")),
            None
        );
    }
}
