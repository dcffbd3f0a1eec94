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
                Ok(Self {
                    nvml,
                    source,
                    library,
                })
            }
            LibrarySource::Simulated(driver) => {
                let nvml = open_path(&driver.library())?;
                Ok(Self {
                    nvml,
                    library: "bundled simulated driver".to_owned(),
                    source,
                })
            }
        }
    }
}

fn open_path(path: &Path) -> Result<Nvml, OpenError> {
    init(path.as_os_str()).map_err(|e| OpenError::from_init(e, &path.display().to_string()))
}

fn init(lib: &OsStr) -> Result<Nvml, NvmlError> {
    Nvml::builder().lib_path(lib).init()
}

/// NVML calls that nvml-wrapper does not wrap. This is the agent's only FFI corner.
#[allow(unsafe_code)]
pub mod raw {
    use nvml_wrapper::Device;
    use nvml_wrapper::Nvml;
    use nvml_wrapper::error::{NvmlError, nvml_sym, nvml_try};

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

    /// `nvmlDeviceGetComputeInstanceId` for a MIG device handle.
    pub fn compute_instance_id(nvml: &Nvml, device: &Device<'_>) -> Result<u32, NvmlError> {
        let sym = nvml_sym(nvml.lib().nvmlDeviceGetComputeInstanceId.as_ref())?;
        let mut id: std::os::raw::c_uint = 0;
        // SAFETY: as in `gpu_instance_id`: a live handle and a valid out-pointer.
        nvml_try(unsafe { sym(device.handle(), &mut id) })?;
        Ok(id)
    }
}
