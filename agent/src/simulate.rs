//! The simulated driver: the workspace's fake `libnvidia-ml.so` and its fixtures, bundled into
//! the agent so that a machine with no NVIDIA driver can run the whole real code path.
//!
//! A simulated driver is a temporary folder holding the fake library and the chosen fixture as
//! `fixture.json` beside it, which is where the fake looks for it.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

include!(concat!(env!("OUT_DIR"), "/bundled_fixtures.rs"));

/// The fake NVML library, built from `tests/fake-nvml` by the build script.
static FAKE_NVML_SO: &[u8] = include_bytes!(env!("TPPGUARD_FAKE_NVML_SO"));

/// The fixture `--simulate` uses when given no name.
pub const DEFAULT_FIXTURE: &str = "dgx-h100";

/// The largest fixture file accepted from the user.
pub const MAX_FIXTURE_BYTES: u64 = 4 << 20;

/// A bundled fixture.
#[derive(Debug, Clone, Copy)]
pub struct Fixture {
    /// Its name, as given to `--simulate`.
    pub name: &'static str,
    /// The fixture's own one-line description.
    pub description: &'static str,
}

/// Why a simulated driver could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SimulateError {
    /// The name is neither a bundled fixture nor a JSON file.
    #[error(
        "no bundled fixture is named {name:?}; `--simulate list` shows them, or give a path to a fixture .json file"
    )]
    UnknownFixture {
        /// What the user asked for.
        name: String,
    },
    /// A fixture file could not be read.
    #[error("cannot read fixture {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A fixture file is larger than [`MAX_FIXTURE_BYTES`].
    #[error("fixture {path} is {len} bytes, more than the {max} accepted")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// The temporary driver folder could not be written.
    #[error("cannot set up the simulated driver in a temporary folder")]
    Install(#[source] io::Error),
}

/// The bundled fixtures, sorted by name.
pub fn bundled() -> Vec<Fixture> {
    BUNDLED
        .iter()
        .map(|&(name, json)| Fixture {
            name,
            description: describe(json),
        })
        .collect()
}

/// A fixture's `description`, read without a full parse (the fake library validates it).
fn describe(json: &'static str) -> &'static str {
    serde_json::from_str::<Described<'static>>(json)
        .map(|d| d.description)
        .unwrap_or("(no description)")
}

#[derive(serde::Deserialize)]
struct DescribedOwned {
    description: String,
}

#[derive(serde::Deserialize)]
struct Described<'a> {
    #[serde(borrow)]
    description: &'a str,
}

/// A simulated driver installed in a temporary folder, removed on drop.
#[derive(Debug)]
pub struct SimulatedDriver {
    dir: tempfile::TempDir,
    /// The fixture's name (bundled) or path (user file).
    pub fixture: String,
    /// The fixture's description.
    pub description: String,
}

impl SimulatedDriver {
    /// Installs the fake library with the fixture named `name` (a bundled fixture, or a path
    /// to a fixture file).
    pub fn install(name: &str) -> Result<Self, SimulateError> {
        if let Some(fixture) = BUNDLED.iter().find(|(n, _)| *n == name) {
            return Self::install_json(name.to_owned(), describe(fixture.1).to_owned(), fixture.1);
        }
        let path = Path::new(name);
        if !(name.ends_with(".json") || path.is_file()) {
            return Err(SimulateError::UnknownFixture {
                name: name.to_owned(),
            });
        }
        let read_err = |source| SimulateError::Read {
            path: path.to_path_buf(),
            source,
        };
        let len = fs::metadata(path).map_err(read_err)?.len();
        if len > MAX_FIXTURE_BYTES {
            return Err(SimulateError::TooLarge {
                path: path.to_path_buf(),
                len,
                max: MAX_FIXTURE_BYTES,
            });
        }
        let json = fs::read_to_string(path).map_err(read_err)?;
        // A user's description may hold JSON escapes, which a borrowed `&str` cannot take.
        let description = serde_json::from_str::<DescribedOwned>(&json)
            .map(|d| d.description)
            .unwrap_or_else(|_| "(no description)".to_owned());
        Self::install_json(path.display().to_string(), description, &json)
    }

    fn install_json(
        fixture: String,
        description: String,
        json: &str,
    ) -> Result<Self, SimulateError> {
        let dir = tempfile::Builder::new()
            .prefix("tppguard-simulated-driver-")
            .tempdir()
            .map_err(SimulateError::Install)?;
        fs::write(dir.path().join("libnvidia-ml.so"), FAKE_NVML_SO)
            .map_err(SimulateError::Install)?;
        fs::write(dir.path().join("fixture.json"), json).map_err(SimulateError::Install)?;
        Ok(Self {
            dir,
            fixture,
            description,
        })
    }

    /// The library file to load.
    pub fn library(&self) -> PathBuf {
        self.dir.path().join("libnvidia-ml.so")
    }

    /// The fixture the library serves (the simulated benchmark reads its figures there).
    pub fn fixture_json(&self) -> PathBuf {
        self.dir.path().join("fixture.json")
    }
}
