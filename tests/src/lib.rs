//! Test support for the tppguard workspace: the generator of the fake-NVML fixtures
//! (`tests/fixtures/nvml/*.json`), run by the `tppguard-fixtures` binary and checked by the
//! integration tests.
//!
//! Every fixture is generated, none is hand-written:
//! - `capture-<stem>.json` from each real `nvidia-smi -q -x` capture in
//!   `tests/fixtures/nvidia-smi/<stem>.xml` ([`smi`]);
//! - `<name>.json` from each recipe `tests/fixtures/nvml/recipes/<name>.toml` and the public
//!   figures in `tests/fixtures/nvml/recipes/accelerators.csv` ([`recipe`]).
//!
//! Fixtures with confidential-computing evidence hold keys made by each test, so they are
//! made at test time from those, in temporary folders ([`gpu_evidence`]).
#![forbid(unsafe_code)]

use std::fmt;
use std::path::{Path, PathBuf};

pub mod csv;
pub mod gpu_evidence;
pub mod model;
pub mod recipe;
pub mod smi;

/// Why generation failed: the file and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(pub String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

/// The workspace root this crate was built in.
pub fn default_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// `tests/fixtures/nvml` under `root`.
pub fn nvml_dir(root: &Path) -> PathBuf {
    root.join("tests").join("fixtures").join("nvml")
}

fn read(path: &Path) -> Result<String, Error> {
    std::fs::read_to_string(path).map_err(|e| Error(format!("{}: {e}", path.display())))
}

/// The files of `dir` ending in `.ext`, sorted, as (stem, path).
fn files(dir: &Path, ext: &str) -> Result<Vec<(String, PathBuf)>, Error> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error(format!("{}: {e}", dir.display())))?;
    let mut out = Vec::new();
    for entry in entries {
        let path = entry
            .map_err(|e| Error(format!("{}: {e}", dir.display())))?
            .path();
        if path.extension().and_then(|e| e.to_str()) == Some(ext)
            && let Some(stem) = path.file_stem().and_then(|s| s.to_str())
        {
            out.push((stem.to_owned(), path.clone()));
        }
    }
    out.sort();
    Ok(out)
}

/// Every fixture the generator produces, as (file name, contents), sorted by name.
pub fn generate(root: &Path) -> Result<Vec<(String, String)>, Error> {
    let mut out = Vec::new();
    let smi_dir = root.join("tests").join("fixtures").join("nvidia-smi");
    for (stem, path) in files(&smi_dir, "xml")? {
        let fixture = smi::convert(&stem, &read(&path)?)?;
        let json = model::to_json(&fixture).map_err(|e| Error(format!("{stem}: {e}")))?;
        out.push((format!("capture-{stem}.json"), json));
    }
    let recipes = nvml_dir(root).join("recipes");
    let rows = csv::records(&read(&recipes.join("accelerators.csv"))?)
        .map_err(|e| Error(format!("accelerators.csv: {e}")))?;
    for (name, path) in files(&recipes, "toml")? {
        let recipe: recipe::Recipe =
            toml::from_str(&read(&path)?).map_err(|e| Error(format!("{name}.toml: {e}")))?;
        let fixture = recipe::build(&name, &recipe, &rows)?;
        let json = model::to_json(&fixture).map_err(|e| Error(format!("{name}: {e}")))?;
        out.push((format!("{name}.json"), json));
    }
    out.sort();
    Ok(out)
}

/// Files in `tests/fixtures/nvml` that differ from the generator's output, are missing, or
/// are `.json` files the generator does not produce.
pub fn stale(root: &Path) -> Result<Vec<String>, Error> {
    let generated = generate(root)?;
    let dir = nvml_dir(root);
    let mut stale = Vec::new();
    for (name, json) in &generated {
        match std::fs::read_to_string(dir.join(name)) {
            Ok(on_disk) if on_disk == *json => {}
            Ok(_) => stale.push(format!("{name} (differs from the generator's output)")),
            Err(_) => stale.push(format!("{name} (missing)")),
        }
    }
    for (stem, _) in files(&dir, "json")? {
        let name = format!("{stem}.json");
        if !generated.iter().any(|(n, _)| *n == name) {
            stale.push(format!("{name} (not produced by the generator)"));
        }
    }
    Ok(stale)
}

/// Writes every fixture; returns the names written.
pub fn write(root: &Path) -> Result<Vec<String>, Error> {
    let dir = nvml_dir(root);
    let mut written = Vec::new();
    for (name, json) in generate(root)? {
        let path = dir.join(&name);
        if std::fs::read_to_string(&path).ok().as_deref() != Some(json.as_str()) {
            std::fs::write(&path, json).map_err(|e| Error(format!("{}: {e}", path.display())))?;
            written.push(name);
        }
    }
    Ok(written)
}
