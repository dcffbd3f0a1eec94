//! The README's main command, `scripts/demo`, run as written (on the binaries built for this
//! test run): the whole flow from inventory to verdict, on the simulated node here.

use std::process::Command;

use crate::support::{bin_dir, workspace_root};

#[test]
fn scripts_demo_runs_the_whole_flow_to_a_verdict() {
    if std::path::Path::new("/dev/nvidiactl").exists() {
        // On a GPU machine the demo reads the real node; the figures below are the simulated one.
        return;
    }
    let out = Command::new(workspace_root().join("scripts").join("demo"))
        .env("TPPGUARD_BIN_DIR", bin_dir())
        .env_remove("RUST_LOG")
        .output()
        .expect("scripts/demo runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("SIMULATED DGX H100"), "{text}");
    assert!(
        text.contains("Node: 8 GPU(s), total TPP 126649.6 = 8.00 H100-equivalents"),
        "{text}"
    );
    // Step 6: compliant under the sample licence.
    assert!(
        text.contains("TPP      used     126649.6  cap     32500000"),
        "{text}"
    );
    // Step 7: the too-small licence, with used and cap figures.
    assert!(text.contains("OVER by 26649.6"), "{text}");
    assert!(
        text.contains("violation aggregate_tpp_above_cap [licence EXAMPLE-DE-2026-0143]"),
        "{text}"
    );
    assert!(
        text.contains("us-eccn-3a090 v2 [in force]: NOT COMPLIANT"),
        "{text}"
    );
    // Step 9: the service on loopback, the agent's push, the verdict read back from the API.
    assert!(text.contains("verifier: warning for "), "{text}");
    assert!(
        text.contains("licence EXAMPLE-DE-2026-0142: 8 devices, TPP 126649.6 of cap 32500000"),
        "{text}"
    );
    assert!(text.contains("API: http://127.0.0.1:"), "{text}");
    assert!(
        text.contains("Verdict under examples/licence.toml: unproven (exit 3)")
            && text.contains("simulated evidence is never"),
        "{text}"
    );
}
