//! Inventory speed and footprint on the simulated DGX H100 (8 GPUs), through the real NVML path.
//!
//! `cargo bench -p tppguard-agent --bench inventory` prints, over many runs in one process:
//! - `inventory`: load + init NVML, enumerate every GPU, read the host, classify: what one
//!   `tppguard-agent inventory` does after process start;
//! - `enumerate+classify`: the same on an NVML already initialised (what a daemon repeats);
//!
//! and the peak RSS of one `tppguard-agent inventory --simulate --json` process.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::time::{Duration, Instant};

use tppguard_agent::host::Host;
use tppguard_agent::inventory;
use tppguard_agent::nvml::{LibrarySource, Session};
use tppguard_agent::report::Report;
use tppguard_agent::simulate::SimulatedDriver;

const RUNS: usize = 300;

fn main() {
    let full = sample(|| {
        let driver = SimulatedDriver::install("dgx-h100").unwrap();
        let session = Session::open(LibrarySource::Simulated(driver)).unwrap();
        let gpus = inventory::collect(&session.nvml).unwrap();
        let report = Report::new(&session, Host::read(), gpus).unwrap();
        assert_eq!(report.gpus.len(), 8);
    });
    report(
        "inventory (install simulated driver, init, enumerate, host, classify)",
        &full,
    );

    let driver = SimulatedDriver::install("dgx-h100").unwrap();
    let session = Session::open(LibrarySource::Simulated(driver)).unwrap();
    let host = Host::read();
    let warm = sample(|| {
        let gpus = inventory::collect(&session.nvml).unwrap();
        let report = Report::new(&session, host.clone(), gpus).unwrap();
        assert_eq!(report.gpus.len(), 8);
    });
    report("enumerate+classify (NVML already initialised)", &warm);

    peak_rss();
}

fn sample(mut f: impl FnMut()) -> Vec<Duration> {
    for _ in 0..10 {
        f();
    }
    let mut times: Vec<Duration> = (0..RUNS)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    times.sort();
    times
}

fn report(what: &str, sorted: &[Duration]) {
    let at = |q: usize| sorted[(sorted.len() - 1) * q / 100];
    println!(
        "{what}: median {:.3} ms, p10 {:.3} ms, p90 {:.3} ms ({} runs)",
        ms(at(50)),
        ms(at(10)),
        ms(at(90)),
        sorted.len()
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Peak RSS of one agent process, through GNU time (`%M`, KiB).
fn peak_rss() {
    let agent = env!("CARGO_BIN_EXE_tppguard-agent");
    let out = Command::new("/usr/bin/time")
        .args(["-f", "%M", agent, "inventory", "--simulate", "--json"])
        .output();
    match out {
        Ok(out) if out.status.success() => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let kib: u64 = stderr.lines().last().unwrap().trim().parse().unwrap();
            println!(
                "peak RSS of `tppguard-agent inventory --simulate --json`: {:.1} MiB",
                kib as f64 / 1024.0
            );
        }
        Ok(out) => println!(
            "peak RSS: not measured, /usr/bin/time failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => println!(
            "peak RSS: not measured, /usr/bin/time unavailable ({e}); install the `time` package"
        ),
    }
}
