//! Bundles the simulated driver into the agent.
//!
//! `tppguard-agent --simulate` runs the real NVML code path (nvml-wrapper, dlopen) against the
//! workspace's fake `libnvidia-ml.so` (`tests/fake-nvml`), so the shipped binary carries that
//! library and the fixtures it serves. Cargo cannot depend on a `cdylib` artifact on stable, so
//! this script builds the fake with a nested `cargo build` into its own target folder (no lock
//! contention with the outer build) and embeds the result with `include_bytes!`.

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn main() -> Result<()> {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let root = manifest_dir
        .parent()
        .ok_or("agent/ has no parent folder")?
        .to_path_buf();
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);

    let fake = build_fake_nvml(&root, &out_dir)?;
    println!("cargo:rustc-env=TPPGUARD_FAKE_NVML_SO={}", fake.display());

    let fixtures = root.join("tests").join("fixtures").join("nvml");
    fs::write(
        out_dir.join("bundled_fixtures.rs"),
        fixture_table(&fixtures)?,
    )?;
    println!("cargo:rerun-if-changed={}", fixtures.display());
    Ok(())
}

fn build_fake_nvml(root: &Path, out_dir: &Path) -> Result<PathBuf> {
    // The fake writes signed reports with proto's `gpu_evidence::encode`.
    for watched in [
        "tests/fake-nvml/src",
        "tests/fake-nvml/Cargo.toml",
        "proto/src",
        "proto/Cargo.toml",
        "Cargo.lock",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    let target = env::var("TARGET")?;
    let release = env::var("PROFILE")? == "release";
    let target_dir = out_dir.join("fake-nvml");
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());

    let mut cmd = Command::new(cargo);
    cmd.current_dir(root)
        .args([
            "build",
            "--locked",
            "-p",
            "tppguard-fake-nvml",
            "--target",
            &target,
        ])
        .arg("--target-dir")
        .arg(&target_dir)
        // Lint wrappers (clippy) and coverage wrappers belong to the outer build only.
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("CARGO_TARGET_DIR");
    if release {
        cmd.arg("--release");
    }
    let status = cmd.status()?;
    if !status.success() {
        return Err(format!("building tests/fake-nvml failed ({status})").into());
    }
    let profile = if release { "release" } else { "debug" };
    let lib = target_dir
        .join(&target)
        .join(profile)
        .join("libtppguard_fake_nvml.so");
    if !lib.is_file() {
        return Err(format!("{} was not produced", lib.display()).into());
    }
    Ok(lib)
}

/// `static BUNDLED: &[(&str, &str)]`: (fixture name, JSON text), sorted by name.
fn fixture_table(dir: &Path) -> Result<String> {
    let mut entries = Vec::new();
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "json") {
            let name = path
                .file_stem()
                .and_then(|s| s.to_str())
                .ok_or_else(|| format!("{}: fixture name is not UTF-8", path.display()))?
                .to_owned();
            entries.push((name, path));
        }
    }
    entries.sort();
    let mut src = String::from("static BUNDLED: &[(&str, &str)] = &[\n");
    for (name, path) in entries {
        writeln!(
            src,
            "    ({name:?}, include_str!({:?})),",
            path.display().to_string()
        )?;
    }
    src.push_str("];\n");
    Ok(src)
}
