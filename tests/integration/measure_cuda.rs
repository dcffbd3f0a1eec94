//! `tppguard-agent measure` through its real CUDA backend (cudarc, cuBLAS, cuBLASLt), against
//! the fake CUDA stack of `tests/fake-cuda`: one library file installed as `libcuda.so.1`,
//! `libcublas.so.13` and `libcublasLt.so.13`, which checks every argument the backend passes
//! (types, scale types, layouts, leading dimensions, operand bounds, streams, event flags) and
//! times each GEMM at a fixed rate per precision. A wrong argument fails the call, and with it
//! the run; a slow layout or mode shows as a rate off by half. The identity of the GPU comes
//! from the fake NVML library, as in `measure.rs`.

use std::path::Path;
use std::process::Output;

use serde_json::Value;

use crate::support::{
    FakeDriver, bin, install_fake_cuda, jws_payload, node_with_chain, ok, s, stderr,
};

/// The fake's rates (`tests/fake-cuda/src/model.rs`), TFLOPS: its Hopper table (compute
/// capability 9.x) and its table for every other part.
const HOPPER: [(&str, f64); 6] = [
    ("fp8", 1300.0),
    ("int8", 1300.0),
    ("fp16", 700.0),
    ("bf16", 700.0),
    ("tf32", 350.0),
    ("fp64", 55.0),
];
const AMPERE: [(&str, f64); 4] = [
    ("int8", 280.0),
    ("fp16", 140.0),
    ("bf16", 140.0),
    ("tf32", 70.0),
];

const DRIVER: &str = "libcuda.so.1";
const CUBLAS: &str = "libcublas.so.13";
const CUBLASLT: &str = "libcublasLt.so.13";

/// A folder holding the fake CUDA libraries `names`.
fn cuda_dir(names: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    install_fake_cuda(dir.path(), names);
    dir
}

/// `measure --json --repeats 3` of GPU 0 of the `dgx-h100` fixture (1024² matrices unless
/// `extra` names a size), with `ld_path` as the loader's path and the fake's configuration in
/// `env`.
fn measure(ld_path: &Path, env: &[(&str, &str)], extra: &[&str]) -> Output {
    let nvml = FakeDriver::with_fixture_file("dgx-h100");
    let mut cmd = bin("tppguard-agent");
    cmd.args([
        "measure",
        "--nvml-lib",
        s(&nvml.lib_path()),
        "--gpu",
        "0",
        "--json",
    ])
    .args(["--repeats", "3"])
    .args(extra)
    .env("LD_LIBRARY_PATH", ld_path);
    if !extra.contains(&"--matrix-size") {
        cmd.args(["--matrix-size", "1024"]);
    }
    for var in [
        "TPPGUARD_FAKE_CUDA_CC",
        "TPPGUARD_FAKE_CUDA_PCI_BUS_ID",
        "TPPGUARD_FAKE_CUDA_DRIVER_VERSION",
        "TPPGUARD_FAKE_CUDA_FREE_BYTES",
    ] {
        cmd.env_remove(var);
    }
    cmd.envs(env.iter().copied());
    cmd.output().expect("tppguard-agent runs")
}

/// The one GPU of a successful run's report; the fake must have had nothing to say.
fn measured(out: &Output) -> Value {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        !err.contains("tppguard-fake-cuda") && !err.contains("panicked"),
        "{err}"
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    let gpus = report["gpus"].as_array().expect("gpus");
    assert_eq!(gpus.len(), 1, "{report}");
    let gpu = gpus[0].clone();
    assert_eq!(gpu["status"], "measured", "{gpu}");
    // The fake CUDA stack carries tppguard's mark: whatever it times is no real GPU's rate.
    assert_eq!(gpu["measurement"]["method"], "simulated", "{gpu}");
    gpu
}

/// Checks that each of `rates` was measured at its rate, within 1 %.
fn assert_rates(gpu: &Value, rates: &[(&str, f64)], size: u64) {
    let results = gpu["results"].as_array().expect("results");
    for (precision, tflops) in rates {
        let Some(r) = results.iter().find(|r| r["precision"] == *precision) else {
            panic!("{precision} not measured: {gpu}");
        };
        let median = r["tops_median"].as_f64().expect("tops_median");
        assert!(
            (median / tflops - 1.0).abs() < 0.01,
            "{precision}: {median} TOPS, the fake runs it at {tflops} (half: a slow layout or \
             mode, see the fake's notes)"
        );
        assert_eq!(r["matrix_size"].as_u64(), Some(size), "{r}");
    }
    assert_eq!(results.len(), rates.len(), "{gpu}");
}

#[test]
fn an_h100_is_measured_through_cuda_cublas_and_cublaslt() {
    let cuda = cuda_dir(&[DRIVER, CUBLAS, CUBLASLT]);
    let out = measure(cuda.path(), &[], &[]);
    let gpu = measured(&out);
    assert_rates(&gpu, &HOPPER, 1024);
    assert_eq!(gpu["skipped"], serde_json::json!([]), "{gpu}");
    assert_eq!(
        gpu["measurement"]["backend"],
        "tppguard's fake (tests/fake-cuda, no real GPU): CUDA driver 13.0, cuBLAS 13.0.2",
        "{gpu}"
    );
    assert_eq!(gpu["measurement"]["repeats"], 3);
}

#[test]
fn cuda_lib_dir_finds_cublas_off_the_loader_path() {
    // The driver on the loader's path, cuBLAS and cuBLASLt only in the folder named.
    let driver = cuda_dir(&[DRIVER]);
    let cublas = cuda_dir(&[CUBLAS, CUBLASLT]);
    let out = measure(
        driver.path(),
        &[],
        &[
            "--cuda-lib-dir",
            s(cublas.path()),
            "--precision",
            "fp8",
            "--precision",
            "int8",
        ],
    );
    let gpu = measured(&out);
    assert_rates(&gpu, &HOPPER[..2], 1024);
}

#[test]
fn missing_cublas_exits_5_naming_what_was_searched() {
    let driver = cuda_dir(&[DRIVER]);
    let out = measure(driver.path(), &[], &[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(5), "{err}");
    assert!(err.contains("cuBLASLt could not be loaded"), "{err}");
    assert!(err.contains("libcublasLt.so.13"), "{err}");
    assert!(err.contains("--cuda-lib-dir"), "{err}");
    assert!(!err.contains("panicked"), "{err}");

    // cuBLASLt there, cuBLAS not.
    let lt_only = cuda_dir(&[DRIVER, CUBLASLT]);
    let out = measure(lt_only.path(), &[], &[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(5), "{err}");
    assert!(err.contains("cuBLAS could not be loaded"), "{err}");
    assert!(err.contains("libcublas.so.13"), "{err}");

    // A folder named that lacks them: its paths are named.
    let empty = tempfile::tempdir().expect("temp dir");
    let out = measure(driver.path(), &[], &["--cuda-lib-dir", s(empty.path())]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(5), "{err}");
    let wanted = empty.path().join(CUBLASLT);
    assert!(err.contains(s(&wanted)), "{err}");
}

#[test]
fn an_ampere_part_skips_fp8_and_fp64_with_reasons() {
    let cuda = cuda_dir(&[DRIVER, CUBLAS, CUBLASLT]);
    let out = measure(cuda.path(), &[("TPPGUARD_FAKE_CUDA_CC", "8.6")], &[]);
    let gpu = measured(&out);
    assert_rates(&gpu, &AMPERE, 1024);
    let skipped = gpu["skipped"].as_array().expect("skipped");
    let reasons: Vec<(&str, &str)> = skipped
        .iter()
        .map(|s| {
            (
                s["precision"].as_str().unwrap_or(""),
                s["reason"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(reasons.len(), 2, "{gpu}");
    for (precision, (skipped, reason)) in ["fp8", "fp64"].iter().zip(&reasons) {
        assert_eq!(skipped, precision, "{gpu}");
        assert!(reason.contains("not supported"), "{reason}");
    }
}

#[test]
fn short_device_memory_shrinks_the_matrices() {
    // 1 GiB free: 8192² FP64 operands (1.5 GiB) do not fit, 4096² (384 MiB) do.
    let cuda = cuda_dir(&[DRIVER, CUBLAS, CUBLASLT]);
    let out = measure(
        cuda.path(),
        &[("TPPGUARD_FAKE_CUDA_FREE_BYTES", "1073741824")],
        &["--matrix-size", "8192", "--precision", "fp64"],
    );
    let gpu = measured(&out);
    assert_rates(&gpu, &HOPPER[5..], 4096);
}

#[test]
fn a_gpu_cuda_does_not_see_is_named() {
    let cuda = cuda_dir(&[DRIVER, CUBLAS, CUBLASLT]);
    let out = measure(
        cuda.path(),
        &[("TPPGUARD_FAKE_CUDA_PCI_BUS_ID", "00000000:99:00.0")],
        &[],
    );
    let err = stderr(&out);
    assert_ne!(out.status.code(), Some(0), "{err}");
    // NVML's bus id of GPU 0, which CUDA does not have.
    assert!(err.contains("00000000:10:00.0"), "{err}");
    assert!(err.contains("CUDA_VISIBLE_DEVICES"), "{err}");
}

#[test]
fn a_driver_older_than_cublas_13_is_named_with_the_way_out() {
    let cuda = cuda_dir(&[DRIVER, CUBLAS, CUBLASLT]);
    let out = measure(
        cuda.path(),
        &[("TPPGUARD_FAKE_CUDA_DRIVER_VERSION", "12040")],
        &[],
    );
    let err = stderr(&out);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("needs a driver for CUDA 13.0"), "{err}");
    assert!(err.contains("--cuda-lib-dir"), "{err}");
}

#[test]
fn a_fake_cuda_measurement_is_signed_as_simulated() {
    // cuBLAS named with --cuda-lib-dir, the GPUs from the fake NVML named with --nvml-lib:
    // neither is chosen as "simulated", both carry the fakes' mark, and the signed claims say so.
    let driver = cuda_dir(&[DRIVER]);
    let cublas = cuda_dir(&[CUBLAS, CUBLASLT]);
    let tmp = tempfile::tempdir().expect("temp dir");
    let (node, _) = node_with_chain(tmp.path(), "gpu-node-01");
    let out = measure(
        driver.path(),
        &[],
        &[
            "--cuda-lib-dir",
            s(cublas.path()),
            "--precision",
            "fp8",
            "--dir",
            s(&node),
        ],
    );
    let gpu = measured(&out);
    assert!(
        gpu["measurement"]["backend"]
            .as_str()
            .is_some_and(|b| b.starts_with("tppguard's fake")),
        "{gpu}"
    );
    // The same run in text: it says so plainly.
    let nvml = FakeDriver::with_fixture_file("dgx-h100");
    let text = bin("tppguard-agent")
        .args(["measure", "--nvml-lib", s(&nvml.lib_path()), "--gpu", "0"])
        .args([
            "--repeats",
            "3",
            "--matrix-size",
            "1024",
            "--precision",
            "fp8",
        ])
        .args(["--cuda-lib-dir", s(cublas.path())])
        .env("LD_LIBRARY_PATH", driver.path())
        .output()
        .expect("tppguard-agent runs");
    let stdout = String::from_utf8_lossy(&text.stdout);
    assert!(
        stdout.starts_with("SIMULATED MEASUREMENT: no real GPU was measured"),
        "{stdout}{}",
        stderr(&text)
    );

    let jws = tmp.path().join("a.jws");
    ok(
        "tppguard-agent",
        &[
            "attest",
            "--dir",
            s(&node),
            "--nvml-lib",
            s(&nvml.lib_path()),
            "--nonce",
            "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
            "--out",
            s(&jws),
        ],
    );
    let claims = jws_payload(&std::fs::read_to_string(&jws).expect("attestation"));
    assert_eq!(claims["tppguard.simulated"], true, "{claims}");
    let gpu0 = &claims["submods"]["gpu0"];
    assert_eq!(gpu0["measurement"]["method"], "simulated", "{gpu0}");
}
