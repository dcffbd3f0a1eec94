//! The systemd units in `deploy/systemd/` pass `systemd-analyze verify` with no warning. The
//! check needs each `ExecStart=` binary to exist, so the test writes copies of the real files
//! into a temporary folder with only `/usr/local/bin/` replaced by the folder the binaries were
//! built in, asserts that nothing else changed, and verifies those copies.

use std::path::PathBuf;
use std::process::Command;

use crate::support::{bin_dir, s, workspace_root};

const UNITS: [(&str, &str); 2] = [
    ("tppguard-verifier.service", "tppguard-verifier"),
    ("tppguard-agent.service", "tppguard-agent"),
];

fn systemd_analyze() -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("systemd-analyze"))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "systemd-analyze is not installed: the systemd unit test needs it. Install it with \
             `apt-get install -y systemd` (Debian/Ubuntu; .ci/run does this)"
        )
    })
}

fn unit_text(name: &str) -> String {
    let path = workspace_root().join("deploy").join("systemd").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

#[test]
fn units_carry_the_expected_settings() {
    for (unit, binary) in UNITS {
        let text = unit_text(unit);
        let exec = text
            .lines()
            .find(|l| l.starts_with("ExecStart="))
            .unwrap_or_else(|| panic!("{unit}: no ExecStart"));
        let sub = if binary == "tppguard-verifier" {
            "serve"
        } else {
            "run"
        };
        let config = if binary == "tppguard-verifier" {
            "verifier"
        } else {
            "agent"
        };
        assert_eq!(
            exec,
            format!("ExecStart=/usr/local/bin/{binary} {sub} --config /etc/tppguard/{config}.toml"),
            "{unit}"
        );
        for line in [
            "Type=simple",
            "StateDirectory=tppguard",
            "Restart=on-failure",
            "KillSignal=SIGTERM",
            "NoNewPrivileges=yes",
            "ProtectSystem=strict",
            "ProtectHome=yes",
            "PrivateTmp=yes",
            "Wants=network-online.target",
            "After=network-online.target",
        ] {
            assert!(text.lines().any(|l| l == line), "{unit}: no `{line}`");
        }
        assert!(
            text.lines().any(|l| l.starts_with("TimeoutStopSec=")),
            "{unit}: no TimeoutStopSec"
        );
    }
    // The agent opens the NVIDIA device nodes: a fixed user in the devices' group, and the
    // devices visible.
    let agent = unit_text("tppguard-agent.service");
    assert!(!agent.lines().any(|l| l.starts_with("DynamicUser=")));
    assert!(!agent.lines().any(|l| l.starts_with("PrivateDevices=")));
    assert!(agent.lines().any(|l| l.starts_with("User=")));
    assert!(agent.lines().any(|l| l.starts_with("SupplementaryGroups=")));
    let verifier = unit_text("tppguard-verifier.service");
    assert!(verifier.lines().any(|l| l == "DynamicUser=yes"));
}

#[test]
fn units_pass_systemd_analyze_verify() {
    let analyze = systemd_analyze();
    let bins = bin_dir();
    for (_, binary) in UNITS {
        assert!(bins.join(binary).is_file(), "{binary} was not built");
    }
    let tmp = tempfile::tempdir().expect("temp dir");
    let mut paths = Vec::new();
    for (unit, _) in UNITS {
        let original = unit_text(unit);
        // Only the ExecStart line differs from the real file: its binary's folder.
        let prefix = "ExecStart=/usr/local/bin/";
        let mut rewritten = String::new();
        let mut execs = 0;
        for line in original.lines() {
            if let Some(rest) = line.strip_prefix(prefix) {
                execs += 1;
                rewritten.push_str(&format!("ExecStart={}/{rest}", s(bins)));
            } else {
                rewritten.push_str(line);
            }
            rewritten.push('\n');
        }
        assert_eq!(execs, 1, "{unit}: one ExecStart running /usr/local/bin/...");
        let path = tmp.path().join(unit);
        std::fs::write(&path, rewritten).expect("write the unit copy");
        paths.push(path);
    }
    let out = Command::new(&analyze)
        .arg("verify")
        .args(&paths)
        .env("SYSTEMD_LOG_COLOR", "0")
        .output()
        .expect("systemd-analyze runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "systemd-analyze verify failed ({}):\n{stdout}{stderr}",
        out.status
    );
    // Warnings do not change the exit status: none may name these units.
    let about_ours: Vec<&str> = stderr
        .lines()
        .chain(stdout.lines())
        .filter(|l| l.contains("tppguard") || l.contains(s(tmp.path())))
        .collect();
    assert!(
        about_ours.is_empty(),
        "systemd-analyze verify warned about the units:\n{}",
        about_ours.join("\n")
    );
}
