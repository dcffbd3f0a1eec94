//! Kubernetes hook (issue 15): marks the node the agent runs on so the scheduler stops placing
//! GPU work on a node whose GPUs are gated.
//!
//! This module owns the node's marks and nothing else: the labels
//! `tppguard.dev/gpus-gated=<n>` and `tppguard.dev/gpus-allowed=<n>`, and one taint,
//! `tppguard.dev/gpus-gated=true:NoSchedule`, present while any GPU is gated and removed when
//! none is. In `observe` mode nothing is gated, so the node is never tainted: the GPUs that
//! would be are counted in `tppguard.dev/gpus-would-gate=<n>` instead ([`mark`]). It talks to the API server with the pod's service-account token (re-read on every
//! call: the kubelet rotates projected tokens) over rustls on ring, as [`crate::push`] does.
//!
//! Why labels and a taint rather than the NVIDIA device plugin's health: the device plugin
//! decides a GPU's health from NVML XID events and its own checks; it reads no file or
//! annotation tppguard could set, so a gated GPU would keep being advertised as
//! `nvidia.com/gpu`. Labels and a taint are plain API objects any cluster has, visible to
//! `kubectl` and to scheduling rules (`nodeAffinity` on the labels), and a taint keeps new
//! GPU pods off the node unless they tolerate it. Gating itself is NVML's compute mode
//! ([`crate::nvml`]); the marks only tell the scheduler.
//!
//! Labels go in one JSON merge patch. The taint list is shared with the node controller and
//! every other operator: it is read, edited (tppguard's taint alone added or removed, everyone
//! else's kept as they were) and written back with the `metadata.resourceVersion` read, so a
//! concurrent edit makes the API server answer 409 instead of being overwritten; the hook then
//! reads again and retries once.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};
use tppguard_proto::lease::GatingMode;
use tppguard_proto::text::Escaped;

/// The label counting the node's gated GPUs.
pub const LABEL_GATED: &str = "tppguard.dev/gpus-gated";
/// The label counting the node's GPUs the lease allows.
pub const LABEL_ALLOWED: &str = "tppguard.dev/gpus-allowed";
/// The label counting the GPUs `observe` mode would gate (absent in `enforce` mode).
pub const LABEL_WOULD_GATE: &str = "tppguard.dev/gpus-would-gate";
/// The taint's key (its value is `true`, its effect [`TAINT_EFFECT`]).
pub const TAINT_KEY: &str = "tppguard.dev/gpus-gated";
/// The taint's effect: new pods that do not tolerate it are not scheduled on the node; pods
/// already running stay (the gated GPUs themselves refuse new CUDA contexts).
pub const TAINT_EFFECT: &str = "NoSchedule";

/// The folder Kubernetes mounts a pod's service-account credentials in.
const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// How long connecting to the API server may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one call may take in all.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest answer read: a Node object lists its container images and can reach a few
/// hundred kilobytes; anything far larger is not a Node.
const MAX_ANSWER_BYTES: u64 = 4 << 20;
/// The largest token file read (a service-account token is a JWT of one or two kilobytes).
const MAX_TOKEN_BYTES: u64 = 64 << 10;
/// The most characters of the API server's text quoted in an error.
const MAX_QUOTED_CHARS: usize = 300;
/// The longest Kubernetes object name (a DNS subdomain).
const MAX_NODE_NAME: usize = 253;

/// `[gating.kubernetes]` in the agent's configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubeConfig {
    /// The Kubernetes node name. Leave empty and set [`Self::node_name_env`] when one
    /// configuration serves every node (a DaemonSet's ConfigMap).
    #[serde(default)]
    pub node_name: String,
    /// An environment variable holding the node name; the DaemonSet sets `NODE_NAME` from
    /// `spec.nodeName` (the downward API). Exactly one of `node_name` and `node_name_env`.
    #[serde(default)]
    pub node_name_env: Option<String>,
    /// The API server's base URL. Unset: `https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT`,
    /// as inside any pod. `http://` only to a loopback address (tests, `kubectl proxy`).
    #[serde(default)]
    pub api_url: Option<String>,
    /// The bearer token file (the pod's service-account token by default).
    #[serde(default = "default_token_file")]
    pub token_file: PathBuf,
    /// The CA certificates (PEM) the API server's certificate must chain to (the cluster's CA
    /// by default). Not read for an `http://` loopback `api_url`.
    #[serde(default = "default_ca_file")]
    pub ca_file: PathBuf,
}

fn default_token_file() -> PathBuf {
    Path::new(SERVICE_ACCOUNT_DIR).join("token")
}

fn default_ca_file() -> PathBuf {
    Path::new(SERVICE_ACCOUNT_DIR).join("ca.crt")
}

impl KubeConfig {
    /// The configuration for the node `name` with every other key at its default (the
    /// in-cluster API server and service account).
    pub fn for_node(name: &str) -> Self {
        Self {
            node_name: name.to_owned(),
            node_name_env: None,
            api_url: None,
            token_file: default_token_file(),
            ca_file: default_ca_file(),
        }
    }

    /// Checks what can be checked before the first call (the node name, the API URL), with
    /// `env` standing for the process environment: the agent calls it at start so a wrong
    /// key stops the start rather than the first gating cycle.
    pub fn check(&self, env: &dyn Fn(&str) -> Option<String>) -> Result<(), KubeError> {
        self.node(env)?;
        self.api_base(env)?;
        Ok(())
    }

    /// The node name, from `node_name` or the variable `node_name_env` names.
    fn node(&self, env: &dyn Fn(&str) -> Option<String>) -> Result<String, KubeError> {
        let name = match (self.node_name.is_empty(), &self.node_name_env) {
            (false, None) => self.node_name.clone(),
            (true, Some(var)) => {
                env(var).ok_or_else(|| KubeError::NodeNameUnset { var: quoted(var) })?
            }
            (true, None) => return Err(KubeError::NoNodeName),
            (false, Some(_)) => return Err(KubeError::TwoNodeNames),
        };
        if is_node_name(&name) {
            Ok(name)
        } else {
            Err(KubeError::BadNodeName {
                name: quoted(&name),
            })
        }
    }

    /// The API server's base URL, without a trailing `/`.
    fn api_base(&self, env: &dyn Fn(&str) -> Option<String>) -> Result<String, KubeError> {
        let url = match &self.api_url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => {
                let host = env("KUBERNETES_SERVICE_HOST").filter(|h| !h.is_empty());
                let port = env("KUBERNETES_SERVICE_PORT").filter(|p| !p.is_empty());
                let (Some(host), Some(port)) = (host, port) else {
                    return Err(KubeError::NotInCluster);
                };
                // A host and a port, nothing that could add a path, user or query.
                let host_ok = host
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':'));
                if !host_ok || !port.chars().all(|c| c.is_ascii_digit()) {
                    return Err(KubeError::BadServiceAddress {
                        address: quoted(&format!("{host}:{port}")),
                    });
                }
                // An IPv6 service address goes in brackets.
                if host.contains(':') {
                    format!("https://[{host}]:{port}")
                } else {
                    format!("https://{host}:{port}")
                }
            }
        };
        if url.starts_with("https://") || is_loopback_http(&url) {
            Ok(url)
        } else {
            Err(KubeError::InsecureUrl { url: quoted(&url) })
        }
    }
}

/// Whether `url` is `http://` to a loopback address, the one plain-HTTP target allowed: the
/// token never crosses a network in clear.
fn is_loopback_http(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("http://") else {
        return false;
    };
    // The authority ends at the first `/`, `?` or `#`. Userinfo (`user@`), a backslash or
    // any other character a host and port cannot hold is refused: parsers disagree on
    // them (`http://localhost:1@evil.example/` goes to evil.example).
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = rest.get(..end).unwrap_or_default();
    if !authority
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
    {
        return false;
    }
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((host, after)) => match after {
                "" => (host, None),
                _ => match after.strip_prefix(':') {
                    Some(port) => (host, Some(port)),
                    None => return false,
                },
            },
            None => return false,
        },
        None => match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        },
    };
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.parse::<u16>().is_ok());
    let host_ok = host.eq_ignore_ascii_case("localhost")
        || (!host.contains('[')
            && !host.contains(']')
            && host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback()));
    port_ok && host_ok
}

/// A Kubernetes node name: a DNS subdomain (lower-case letters, digits, `-` and `.`, starting
/// and ending alphanumeric, at most 253 characters). Checked because it goes into the URL's
/// path: `../` or `?` would address another object.
fn is_node_name(name: &str) -> bool {
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    !name.is_empty()
        && name.len() <= MAX_NODE_NAME
        && name.chars().all(|c| alnum(c) || c == '-' || c == '.')
        && name.starts_with(alnum)
        && name.ends_with(alnum)
}

/// Outside text for an error message: escaped and cut to [`MAX_QUOTED_CHARS`].
fn quoted(text: &str) -> String {
    let cut: String = text.chars().take(MAX_QUOTED_CHARS).collect();
    Escaped(&cut).to_string()
}

/// The node could not be marked. Every string from outside (the API server's message, a node
/// name, a URL) is already escaped.
#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    /// Neither `node_name` nor `node_name_env`.
    #[error(
        "[gating.kubernetes] names no node: set node_name = \"NODE\", or node_name_env = \
         \"NODE_NAME\" with the DaemonSet's env NODE_NAME from spec.nodeName"
    )]
    NoNodeName,
    /// Both `node_name` and `node_name_env`.
    #[error("[gating.kubernetes] sets both node_name and node_name_env: keep one")]
    TwoNodeNames,
    /// `node_name_env` names an unset variable.
    #[error(
        "[gating.kubernetes] node_name_env = \"{var}\" but {var} is not set: give the pod \
         env {var} from fieldRef spec.nodeName (deploy/kubernetes/daemonset.yaml does)"
    )]
    NodeNameUnset {
        /// The variable (escaped).
        var: String,
    },
    /// Not a Kubernetes node name.
    #[error(
        "the node name \"{name}\" is not a Kubernetes node name (lower-case letters, digits, \
         '-' and '.'); give the name `kubectl get nodes` shows"
    )]
    BadNodeName {
        /// The name (escaped).
        name: String,
    },
    /// No `api_url` and no `KUBERNETES_SERVICE_HOST`/`_PORT`.
    #[error(
        "the agent is not in a Kubernetes pod (KUBERNETES_SERVICE_HOST and \
         KUBERNETES_SERVICE_PORT are unset): run it from the DaemonSet, set api_url in \
         [gating.kubernetes], or remove [gating.kubernetes]"
    )]
    NotInCluster,
    /// `KUBERNETES_SERVICE_HOST`/`_PORT` are not a host and a port.
    #[error(
        "KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT give \"{address}\", not a host \
         and a port: set api_url in [gating.kubernetes] to the API server's https:// URL"
    )]
    BadServiceAddress {
        /// What the variables gave (escaped).
        address: String,
    },
    /// Plain HTTP to anything but loopback.
    #[error(
        "api_url \"{url}\": the API server is reached over https:// only (http:// is allowed \
         to a loopback address alone, where the token does not cross a network)"
    )]
    InsecureUrl {
        /// The URL (escaped).
        url: String,
    },
    /// A credential file (the token or the CA) is unusable.
    #[error("the Kubernetes {what} {path}: {reason}; {fix}")]
    Credential {
        /// `token file` or `CA file`.
        what: &'static str,
        /// The file.
        path: String,
        /// Why.
        reason: String,
        /// What to do.
        fix: &'static str,
    },
    /// No answer (connection, TLS, timeout, an answer too large).
    #[error("marking node {node}: the API server at {url} could not be reached: {reason}")]
    Unreachable {
        /// The node (escaped).
        node: String,
        /// The URL called (escaped).
        url: String,
        /// What went wrong (escaped).
        reason: String,
    },
    /// The API server answered an error status.
    #[error("marking node {node}: {action} answered HTTP {status}: {message}; {fix}")]
    Answered {
        /// The node (escaped).
        node: String,
        /// What was asked (`PATCH labels`, `GET node`, `PATCH taints`).
        action: &'static str,
        /// The HTTP status.
        status: u16,
        /// The API server's message (its Status object's `message`, or the body; escaped).
        message: String,
        /// What to do.
        fix: &'static str,
    },
    /// The node object read is not what a Kubernetes API server returns.
    #[error(
        "marking node {node}: the answer to GET node is not a Node object ({reason}); is \
         api_url the Kubernetes API server?"
    )]
    NotANode {
        /// The node (escaped).
        node: String,
        /// Why (escaped).
        reason: String,
    },
}

impl KubeError {
    /// A stable snake_case code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NoNodeName => "kube_no_node_name",
            Self::TwoNodeNames => "kube_two_node_names",
            Self::NodeNameUnset { .. } => "kube_node_name_unset",
            Self::BadNodeName { .. } => "kube_bad_node_name",
            Self::NotInCluster => "kube_not_in_cluster",
            Self::BadServiceAddress { .. } => "kube_bad_service_address",
            Self::InsecureUrl { .. } => "kube_insecure_url",
            Self::Credential { .. } => "kube_credential",
            Self::Unreachable { .. } => "kube_unreachable",
            Self::Answered { status: 409, .. } => "kube_conflict",
            Self::Answered { status: 401, .. } => "kube_unauthorized",
            Self::Answered { status: 403, .. } => "kube_forbidden",
            Self::Answered { status: 404, .. } => "kube_node_not_found",
            Self::Answered { .. } => "kube_refused",
            Self::NotANode { .. } => "kube_not_a_node",
        }
    }
}

/// What to do about an error status.
fn fix_for(status: u16) -> &'static str {
    match status {
        401 => {
            "the API server refused the token: check token_file (by default the pod's \
             service-account token; automountServiceAccountToken must not be false)"
        }
        403 => {
            "the service account needs get and patch on nodes: apply \
             deploy/kubernetes/clusterrole.yaml and clusterrolebinding.yaml (or install the \
             Helm chart with rbac.create=true)"
        }
        404 => {
            "no such node: the node name must be the one `kubectl get nodes` shows (the \
             DaemonSet passes spec.nodeName in NODE_NAME)"
        }
        409 => {
            "the node's taints changed again while the agent edited them; the next gating \
             cycle tries again"
        }
        _ => "see the API server's message; the next gating cycle tries again",
    }
}

/// Marks the node `config` names, with `env` standing for the process environment:
/// `left_out` counts the GPUs the lease leaves out, `allowed` the usable ones. In `enforce`
/// mode they are gated (label and taint); in `observe` mode nothing is gated, so no taint (and
/// any left from `enforce` mode removed), and `left_out` goes in the would-gate label.
pub fn mark(
    config: &KubeConfig,
    env: &dyn Fn(&str) -> Option<String>,
    mode: GatingMode,
    left_out: usize,
    allowed: usize,
) -> Result<(), KubeError> {
    let api = Api::new(config, env)?;
    let (gated, would_gate) = match mode {
        // A JSON merge patch deletes a key set to null.
        GatingMode::Enforce => (left_out, Value::Null),
        GatingMode::Observe => (0, Value::String(left_out.to_string())),
    };
    // The taint first: it is what keeps new GPU pods off; the labels only describe.
    api.set_taint(gated > 0)?;
    api.patch(
        "PATCH labels",
        &json!({"metadata": {"labels": {
            LABEL_GATED: gated.to_string(),
            LABEL_ALLOWED: allowed.to_string(),
            LABEL_WOULD_GATE: would_gate,
        }}}),
    )?;
    Ok(())
}

/// One node on one API server, with the token read for this call.
struct Api {
    http: ureq::Agent,
    node: String,
    url: String,
    authorization: String,
}

impl Api {
    fn new(config: &KubeConfig, env: &dyn Fn(&str) -> Option<String>) -> Result<Self, KubeError> {
        let node = config.node(env)?;
        let base = config.api_base(env)?;
        let token = read_token(&config.token_file)?;
        let mut builder = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .timeout_global(Some(CALL_TIMEOUT))
            .user_agent(concat!("tppguard-agent/", env!("CARGO_PKG_VERSION")));
        if base.starts_with("https://") {
            let certs = read_ca(&config.ca_file)?;
            let tls = ureq::tls::TlsConfig::builder()
                .root_certs(ureq::tls::RootCerts::new_with_certs(&certs))
                .build();
            builder = builder.tls_config(tls);
        }
        Ok(Self {
            http: builder.build().into(),
            url: format!("{base}/api/v1/nodes/{node}"),
            node,
            authorization: format!("Bearer {token}"),
        })
    }

    /// Adds tppguard's taint (`on`) or removes it, keeping every other taint; retries once
    /// when another writer changed the node in between (409).
    fn set_taint(&self, on: bool) -> Result<(), KubeError> {
        match self.try_set_taint(on) {
            Err(KubeError::Answered { status: 409, .. }) => self.try_set_taint(on),
            other => other,
        }
    }

    fn try_set_taint(&self, on: bool) -> Result<(), KubeError> {
        let node = self.get_node()?;
        let Some(taints) = retainted(&node.taints, on) else {
            return Ok(());
        };
        self.patch(
            "PATCH taints",
            &json!({
                "metadata": {"resourceVersion": node.resource_version},
                "spec": {"taints": taints},
            }),
        )
    }

    fn get_node(&self) -> Result<NodeTaints, KubeError> {
        let answer = self
            .http
            .get(&self.url)
            .header("Authorization", &self.authorization)
            .header("Accept", "application/json")
            .call();
        let body = self.answer("GET node", answer)?;
        NodeTaints::parse(&body).map_err(|reason| KubeError::NotANode {
            node: quoted(&self.node),
            reason: quoted(&reason),
        })
    }

    fn patch(&self, action: &'static str, body: &Value) -> Result<(), KubeError> {
        let answer = self
            .http
            .patch(&self.url)
            .header("Authorization", &self.authorization)
            .header("Accept", "application/json")
            .header("Content-Type", "application/merge-patch+json")
            .send(body.to_string());
        self.answer(action, answer).map(drop)
    }

    /// The body of a 2xx answer, read up to [`MAX_ANSWER_BYTES`]; any other status as
    /// [`KubeError::Answered`] with the API server's message.
    fn answer(
        &self,
        action: &'static str,
        answer: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<String, KubeError> {
        let unreachable = |reason: String| KubeError::Unreachable {
            node: quoted(&self.node),
            url: quoted(&self.url),
            reason: quoted(&reason),
        };
        let mut answer = answer.map_err(|e| unreachable(e.to_string()))?;
        let status = answer.status().as_u16();
        let body = answer
            .body_mut()
            .with_config()
            .limit(MAX_ANSWER_BYTES)
            .read_to_string()
            .map_err(|e| unreachable(format!("reading the answer to {action}: {e}")))?;
        if (200..300).contains(&status) {
            return Ok(body);
        }
        // A Kubernetes error is a Status object; its `message` says what was refused.
        let message = serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|v| v.get("message")?.as_str().map(str::to_owned))
            .unwrap_or(body);
        Err(KubeError::Answered {
            node: quoted(&self.node),
            action,
            status,
            message: quoted(&message),
            fix: fix_for(status),
        })
    }
}

/// What the hook reads of a Node: its version and its taints, each kept whole.
#[derive(Debug)]
struct NodeTaints {
    resource_version: String,
    taints: Vec<Value>,
}

impl NodeTaints {
    fn parse(body: &str) -> Result<Self, String> {
        let node: Value = serde_json::from_str(body).map_err(|e| e.to_string())?;
        if node.get("kind").and_then(Value::as_str) != Some("Node") {
            return Err("its kind is not Node".to_owned());
        }
        let resource_version = node
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty())
            .ok_or("it has no metadata.resourceVersion")?
            .to_owned();
        let taints = match node.pointer("/spec/taints") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(list)) => list.clone(),
            Some(_) => return Err("its spec.taints is not a list".to_owned()),
        };
        Ok(Self {
            resource_version,
            taints,
        })
    }
}

/// The taint list with tppguard's taint present (`on`) or absent, every other taint kept in
/// its place; `None` when `taints` already is that list.
fn retainted(taints: &[Value], on: bool) -> Option<Vec<Value>> {
    let ours = json!({"key": TAINT_KEY, "value": "true", "effect": TAINT_EFFECT});
    let is_ours = |t: &Value| t.get("key").and_then(Value::as_str) == Some(TAINT_KEY);
    let present: Vec<&Value> = taints.iter().filter(|t| is_ours(t)).collect();
    let settled = if on {
        present.len() == 1 && present.first().is_some_and(|t| **t == ours)
    } else {
        present.is_empty()
    };
    if settled {
        return None;
    }
    let mut list: Vec<Value> = taints.iter().filter(|t| !is_ours(t)).cloned().collect();
    if on {
        list.push(ours);
    }
    Some(list)
}

/// The bearer token in `path`: at most [`MAX_TOKEN_BYTES`], trimmed, visible ASCII. Its
/// content is never quoted.
fn read_token(path: &Path) -> Result<String, KubeError> {
    let fix = "mount the pod's service-account token (automountServiceAccountToken), or point \
               token_file at a file holding one token";
    let credential = |reason: String| KubeError::Credential {
        what: "token file",
        path: quoted(&path.display().to_string()),
        reason,
        fix,
    };
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| {
            f.take(MAX_TOKEN_BYTES.saturating_add(1))
                .read_to_end(&mut bytes)
        })
        .map_err(|e| credential(format!("cannot be read ({e})")))?;
    if u64::try_from(bytes.len()).map_or(true, |len| len > MAX_TOKEN_BYTES) {
        return Err(credential(format!("larger than {MAX_TOKEN_BYTES} bytes")));
    }
    let token = std::str::from_utf8(&bytes).unwrap_or_default().trim();
    if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(credential(
            "not one token (empty, or with spaces, controls or non-ASCII characters)".to_owned(),
        ));
    }
    Ok(token.to_owned())
}

/// The certificates of the PEM file `path`.
fn read_ca(path: &Path) -> Result<Vec<ureq::tls::Certificate<'static>>, KubeError> {
    let fix = "mount the pod's service-account CA (ca.crt), or point ca_file at the cluster's \
               CA certificate in PEM";
    let credential = |reason: String| KubeError::Credential {
        what: "CA file",
        path: quoted(&path.display().to_string()),
        reason,
        fix,
    };
    let mut pem = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_ANSWER_BYTES).read_to_end(&mut pem))
        .map_err(|e| credential(format!("cannot be read ({e})")))?;
    let certs: Vec<_> = ureq::tls::parse_pem(&pem)
        .filter_map(|item| match item {
            Ok(ureq::tls::PemItem::Certificate(c)) => Some(c.to_owned()),
            _ => None,
        })
        .collect();
    if certs.is_empty() {
        return Err(credential("holds no PEM certificate".to_owned()));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::io::{BufRead, BufReader, Write};
    use std::sync::mpsc;

    use super::*;

    /// One request the fake API server received.
    #[derive(Debug)]
    struct Seen {
        method: String,
        path: String,
        headers: HashMap<String, String>,
        body: String,
    }

    /// A fake API server on loopback answering the scripted `(status, body)` answers in
    /// order, one request per connection; the requests come out of the channel.
    fn fake_api(answers: Vec<(u16, String)>) -> (String, mpsc::Receiver<Seen>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for (status, body) in answers {
                let (stream, _) = listener.accept().unwrap();
                let mut reader = BufReader::new(stream);
                let mut request_line = String::new();
                reader.read_line(&mut request_line).unwrap();
                let mut headers = HashMap::new();
                loop {
                    let mut line = String::new();
                    reader.read_line(&mut line).unwrap();
                    if line == "\r\n" {
                        break;
                    }
                    let (name, value) = line.split_once(':').unwrap();
                    headers.insert(name.to_ascii_lowercase(), value.trim().to_owned());
                }
                let length = headers
                    .get("content-length")
                    .map_or(0, |l| l.parse().unwrap());
                let mut bytes = vec![0; length];
                reader.read_exact(&mut bytes).unwrap();
                let mut parts = request_line.split_whitespace();
                let seen = Seen {
                    method: parts.next().unwrap().to_owned(),
                    path: parts.next().unwrap().to_owned(),
                    headers,
                    body: String::from_utf8(bytes).unwrap(),
                };
                let _ = tx.send(seen);
                let mut stream = reader.into_inner();
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        (url, rx)
    }

    fn node_json(resource_version: &str, taints: Value) -> String {
        json!({
            "kind": "Node", "apiVersion": "v1",
            "metadata": {"name": "gpu-node-1", "resourceVersion": resource_version,
                         "labels": {"kubernetes.io/hostname": "gpu-node-1"}},
            "spec": {"taints": taints},
        })
        .to_string()
    }

    fn foreign_taint() -> Value {
        json!({"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule",
               "timeAdded": "2026-12-06T10:00:00Z"})
    }

    fn ours() -> Value {
        json!({"key": TAINT_KEY, "value": "true", "effect": TAINT_EFFECT})
    }

    /// A configuration for `url` with a token file; the folder must outlive the calls.
    fn config(url: &str) -> (KubeConfig, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "sa-token-123\n").unwrap();
        let config = KubeConfig {
            node_name: "gpu-node-1".to_owned(),
            node_name_env: None,
            api_url: Some(url.to_owned()),
            token_file: token,
            ca_file: dir.path().join("absent-ca.crt"),
        };
        (config, dir)
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    const OK: (u16, String) = (200, String::new());

    fn ok_node() -> (u16, String) {
        (200, node_json("1", json!([])))
    }

    /// The JSON merge patch of the labels in `enforce` mode, exactly: nothing but the labels,
    /// `observe` mode's deleted.
    fn labels_patch(gated: usize, allowed: usize) -> Value {
        json!({"metadata": {"labels": {
            "tppguard.dev/gpus-gated": gated.to_string(),
            "tppguard.dev/gpus-allowed": allowed.to_string(),
            "tppguard.dev/gpus-would-gate": null,
        }}})
    }

    #[test]
    fn observing_never_taints_and_counts_what_would_be_gated() {
        // A taint left from enforce mode goes; foreign taints stay.
        let node = node_json("5", json!([ours(), foreign_taint()]));
        let (url, seen) = fake_api(vec![(200, node), OK, OK]);
        let (config, _dir) = config(&url);
        mark(&config, &no_env, GatingMode::Observe, 3, 5).unwrap();
        seen.recv().unwrap();
        assert_eq!(
            body(&seen.recv().unwrap())["spec"]["taints"],
            json!([foreign_taint()])
        );
        assert_eq!(
            body(&seen.recv().unwrap()),
            json!({"metadata": {"labels": {
                "tppguard.dev/gpus-gated": "0",
                "tppguard.dev/gpus-allowed": "5",
                "tppguard.dev/gpus-would-gate": "3",
            }}})
        );
    }

    /// A request's body as JSON (compared whole: key order aside, the exact patch).
    fn body(seen: &Seen) -> Value {
        serde_json::from_str(&seen.body).unwrap()
    }

    #[test]
    fn gating_adds_the_taint_keeps_foreign_ones_and_sets_both_labels() {
        let node = node_json("41", json!([foreign_taint()]));
        let (url, seen) = fake_api(vec![(200, node), OK, OK]);
        let (config, _dir) = config(&url);
        mark(&config, &no_env, GatingMode::Enforce, 2, 6).unwrap();

        let get = seen.recv().unwrap();
        assert_eq!(
            (get.method.as_str(), get.path.as_str()),
            ("GET", "/api/v1/nodes/gpu-node-1")
        );
        assert_eq!(get.headers["authorization"], "Bearer sa-token-123");

        let taints = seen.recv().unwrap();
        assert_eq!(taints.method, "PATCH");
        assert_eq!(taints.path, "/api/v1/nodes/gpu-node-1");
        assert_eq!(
            taints.headers["content-type"],
            "application/merge-patch+json"
        );
        assert_eq!(
            body(&taints),
            json!({"metadata": {"resourceVersion": "41"},
            "spec": {"taints": [
                {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule",
                 "timeAdded": "2026-12-06T10:00:00Z"},
                {"key": "tppguard.dev/gpus-gated", "value": "true", "effect": "NoSchedule"},
            ]}})
        );

        let labels = seen.recv().unwrap();
        assert_eq!(labels.method, "PATCH");
        assert_eq!(
            labels.headers["content-type"],
            "application/merge-patch+json"
        );
        assert_eq!(labels.headers["authorization"], "Bearer sa-token-123");
        assert_eq!(body(&labels), labels_patch(2, 6));
    }

    #[test]
    fn nothing_gated_removes_only_tppguards_taint() {
        let node = node_json("7", json!([ours(), foreign_taint()]));
        let (url, seen) = fake_api(vec![(200, node), OK, OK]);
        let (config, _dir) = config(&url);
        mark(&config, &no_env, GatingMode::Enforce, 0, 8).unwrap();
        seen.recv().unwrap();
        assert_eq!(
            body(&seen.recv().unwrap()),
            json!({"metadata": {"resourceVersion": "7"},
            "spec": {"taints": [
                {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule",
                 "timeAdded": "2026-12-06T10:00:00Z"},
            ]}})
        );
        assert_eq!(body(&seen.recv().unwrap()), labels_patch(0, 8));
    }

    #[test]
    fn taints_already_right_are_not_written_again() {
        let node = node_json("9", json!([foreign_taint(), ours()]));
        let (url, seen) = fake_api(vec![(200, node), OK]);
        let (config, _dir) = config(&url);
        mark(&config, &no_env, GatingMode::Enforce, 1, 3).unwrap();
        assert_eq!(seen.recv().unwrap().method, "GET");
        // The next request is already the labels' patch.
        assert_eq!(body(&seen.recv().unwrap()), labels_patch(1, 3));
    }

    #[test]
    fn a_conflict_reads_the_node_again_and_retries_once() {
        let conflict = json!({"kind": "Status", "code": 409, "reason": "Conflict",
            "message": "the object has been modified"})
        .to_string();
        let (url, seen) = fake_api(vec![
            (200, node_json("41", json!([]))),
            (409, conflict),
            (200, node_json("42", json!([foreign_taint()]))),
            OK,
            OK,
        ]);
        let (config, _dir) = config(&url);
        mark(&config, &no_env, GatingMode::Enforce, 1, 0).unwrap();
        let methods: Vec<_> = (0..5).map(|_| seen.recv().unwrap()).collect();
        let order: Vec<_> = methods.iter().map(|s| s.method.as_str()).collect();
        assert_eq!(order, ["GET", "PATCH", "GET", "PATCH", "PATCH"]);
        let retried = body(&methods[3]);
        assert_eq!(retried["metadata"]["resourceVersion"], "42");
        assert_eq!(retried["spec"]["taints"], json!([foreign_taint(), ours()]));
    }

    #[test]
    fn two_conflicts_are_an_error_and_the_labels_are_not_written() {
        let conflict = (409, json!({"message": "modified"}).to_string());
        let (url, seen) = fake_api(vec![ok_node(), conflict.clone(), ok_node(), conflict]);
        let (config, _dir) = config(&url);
        let err = mark(&config, &no_env, GatingMode::Enforce, 1, 0).unwrap_err();
        assert_eq!(err.code(), "kube_conflict");
        assert_eq!(seen.iter().count(), 4);
    }

    #[test]
    fn forbidden_names_the_node_the_status_and_the_rbac_fix() {
        let forbidden = json!({"kind": "Status", "code": 403, "reason": "Forbidden",
            "message": "nodes \"gpu-node-1\" is forbidden: User \"system:serviceaccount:tppguard:tppguard-agent\" cannot get resource \"nodes\""})
        .to_string();
        let (url, _seen) = fake_api(vec![(403, forbidden)]);
        let (config, _dir) = config(&url);
        let err = mark(&config, &no_env, GatingMode::Enforce, 1, 0).unwrap_err();
        assert_eq!(err.code(), "kube_forbidden");
        assert_eq!(
            err.to_string(),
            "marking node gpu-node-1: GET node answered HTTP 403: nodes \"gpu-node-1\" is \
             forbidden: User \"system:serviceaccount:tppguard:tppguard-agent\" cannot get \
             resource \"nodes\"; the service account needs get and patch on nodes: apply \
             deploy/kubernetes/clusterrole.yaml and clusterrolebinding.yaml (or install the \
             Helm chart with rbac.create=true)"
        );
    }

    #[test]
    fn the_api_servers_words_are_escaped_in_the_error() {
        let hostile =
            json!({"message": "no\ntppguard-agent: all GPUs allowed\u{1b}[2J\u{202e}"}).to_string();
        let (url, _seen) = fake_api(vec![(500, hostile)]);
        let (config, _dir) = config(&url);
        let text = mark(&config, &no_env, GatingMode::Enforce, 0, 1)
            .unwrap_err()
            .to_string();
        assert!(!text.contains('\n') && !text.contains('\u{1b}') && !text.contains('\u{202e}'));
        assert!(text.contains("no\\ntppguard-agent"), "{text}");
    }

    #[test]
    fn an_answer_that_is_not_a_node_is_refused() {
        let cases = [
            json!({"kind": "Pod", "metadata": {"resourceVersion": "1"}}).to_string(),
            json!({"kind": "Node", "metadata": {}}).to_string(),
            json!({"kind": "Node", "metadata": {"resourceVersion": "1"}, "spec": {"taints": 5}})
                .to_string(),
            "not json".to_owned(),
        ];
        for body in cases {
            let (url, _seen) = fake_api(vec![(200, body.clone())]);
            let (config, _dir) = config(&url);
            let err = mark(&config, &no_env, GatingMode::Enforce, 1, 0).unwrap_err();
            assert_eq!(err.code(), "kube_not_a_node", "{body}");
        }
    }

    #[test]
    fn an_oversized_answer_is_cut_off_not_read_whole() {
        let huge = format!(
            r#"{{"kind":"Node","metadata":{{"resourceVersion":"1","x":"{}"}}}}"#,
            "a".repeat(usize::try_from(MAX_ANSWER_BYTES).unwrap() + 1)
        );
        let (url, _seen) = fake_api(vec![(200, huge)]);
        let (config, _dir) = config(&url);
        let err = mark(&config, &no_env, GatingMode::Enforce, 1, 0).unwrap_err();
        assert_eq!(err.code(), "kube_unreachable");
    }

    #[test]
    fn the_node_name_comes_from_the_named_variable() {
        let (url, seen) = fake_api(vec![ok_node(), OK]);
        let (mut config, _dir) = config(&url);
        config.node_name = String::new();
        config.node_name_env = Some("NODE_NAME".to_owned());
        let env = |var: &str| (var == "NODE_NAME").then(|| "gpu-node-7".to_owned());
        mark(&config, &env, GatingMode::Enforce, 0, 1).unwrap();
        assert_eq!(seen.recv().unwrap().path, "/api/v1/nodes/gpu-node-7");

        let err = config.check(&no_env).unwrap_err();
        assert_eq!(err.code(), "kube_node_name_unset");
        assert!(err.to_string().contains("spec.nodeName"), "{err}");
    }

    #[test]
    fn node_names_that_would_address_another_object_are_refused() {
        for name in [
            "../namespaces/kube-system",
            "node?x=1",
            "Node-A",
            "-a",
            "a-",
            "",
            "a/b",
        ] {
            let env = |_: &str| Some(name.to_owned());
            let config = KubeConfig {
                node_name_env: Some("NODE_NAME".to_owned()),
                ..KubeConfig::for_node("")
            };
            let code = config.check(&env).unwrap_err().code();
            assert_eq!(code, "kube_bad_node_name", "{name:?}");
        }
        assert!(is_node_name("ip-10-0-1-7.eu-central-1.compute.internal"));
        assert!(!is_node_name(&"a".repeat(254)));
    }

    #[test]
    fn one_node_name_key_exactly() {
        let both = KubeConfig {
            node_name_env: Some("NODE_NAME".to_owned()),
            ..KubeConfig::for_node("n1")
        };
        let env = |_: &str| Some("n1".to_owned());
        assert_eq!(both.check(&env).unwrap_err().code(), "kube_two_node_names");
        let neither = KubeConfig::for_node("");
        assert_eq!(neither.check(&env).unwrap_err().code(), "kube_no_node_name");
    }

    #[test]
    fn the_api_server_comes_from_the_pods_environment() {
        let config = KubeConfig::for_node("n1");
        let env = |var: &str| match var {
            "KUBERNETES_SERVICE_HOST" => Some("10.96.0.1".to_owned()),
            "KUBERNETES_SERVICE_PORT" => Some("443".to_owned()),
            _ => None,
        };
        assert_eq!(config.api_base(&env).unwrap(), "https://10.96.0.1:443");
        let v6 = |var: &str| match var {
            "KUBERNETES_SERVICE_HOST" => Some("fd00::1".to_owned()),
            "KUBERNETES_SERVICE_PORT" => Some("6443".to_owned()),
            _ => None,
        };
        assert_eq!(config.api_base(&v6).unwrap(), "https://[fd00::1]:6443");
        let err = config.api_base(&no_env).unwrap_err();
        assert_eq!(err.code(), "kube_not_in_cluster");
        let odd = |var: &str| match var {
            "KUBERNETES_SERVICE_HOST" => Some("evil.example/x?".to_owned()),
            "KUBERNETES_SERVICE_PORT" => Some("443".to_owned()),
            _ => None,
        };
        assert_eq!(
            config.api_base(&odd).unwrap_err().code(),
            "kube_bad_service_address"
        );
        assert_eq!(
            config.token_file,
            Path::new(SERVICE_ACCOUNT_DIR).join("token")
        );
        assert_eq!(
            config.ca_file,
            Path::new(SERVICE_ACCOUNT_DIR).join("ca.crt")
        );
    }

    #[test]
    fn plain_http_is_allowed_to_loopback_only() {
        for url in [
            "http://127.0.0.1:8001",
            "http://localhost:8001/",
            "http://[::1]:8001",
        ] {
            let config = KubeConfig {
                api_url: Some(url.to_owned()),
                ..KubeConfig::for_node("n1")
            };
            assert!(config.check(&no_env).is_ok(), "{url}");
        }
        for url in [
            "http://10.96.0.1:443",
            "http://127.0.0.1.evil.example:80",
            "http://localhost.evil.example",
            "ftp://127.0.0.1",
            "127.0.0.1:8001",
            // Userinfo: every parser but a naive split sends these to evil.example.
            "http://localhost:1@evil.example/",
            "http://127.0.0.1@evil.example",
            "http://user:pw@127.0.0.1:8001/",
            "http://localhost\\@evil.example/",
            "http://[::1]@evil.example/",
            "http://[::1]x:80/",
            "http://localhost:99999/",
            "http://localhost:/",
        ] {
            let config = KubeConfig {
                api_url: Some(url.to_owned()),
                ..KubeConfig::for_node("n1")
            };
            assert_eq!(
                config.check(&no_env).unwrap_err().code(),
                "kube_insecure_url",
                "{url}"
            );
        }
    }

    #[test]
    fn an_https_api_needs_a_readable_ca_and_a_token() {
        let (mut config, dir) = config("https://10.96.0.1:443");
        let err = mark(&config, &no_env, GatingMode::Enforce, 0, 1).unwrap_err();
        assert_eq!(err.code(), "kube_credential");
        assert!(err.to_string().contains("CA file"), "{err}");
        std::fs::write(dir.path().join("absent-ca.crt"), "not a certificate").unwrap();
        let err = mark(&config, &no_env, GatingMode::Enforce, 0, 1).unwrap_err();
        assert!(err.to_string().contains("no PEM certificate"), "{err}");
        config.token_file = dir.path().join("missing-token");
        let err = mark(&config, &no_env, GatingMode::Enforce, 0, 1).unwrap_err();
        assert!(err.to_string().contains("token file"), "{err}");
    }

    #[test]
    fn a_token_file_that_is_not_one_token_is_refused_without_quoting_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        for content in ["", "two words", "secret\u{7}"] {
            std::fs::write(&path, content).unwrap();
            let err = read_token(&path).unwrap_err().to_string();
            assert!(err.contains("not one token"), "{err}");
            if !content.is_empty() {
                assert!(!err.contains(content), "{err}");
            }
        }
        std::fs::write(
            &path,
            "a".repeat(usize::try_from(MAX_TOKEN_BYTES).unwrap() + 1),
        )
        .unwrap();
        assert!(
            read_token(&path)
                .unwrap_err()
                .to_string()
                .contains("larger than")
        );
    }

    #[test]
    fn a_closed_port_is_unreachable_and_names_the_node() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let (config, _dir) = config(&format!("http://127.0.0.1:{port}"));
        let err = mark(&config, &no_env, GatingMode::Enforce, 1, 0).unwrap_err();
        assert_eq!(err.code(), "kube_unreachable");
        assert!(
            err.to_string().starts_with("marking node gpu-node-1: "),
            "{err}"
        );
    }

    #[test]
    fn retainting_is_idempotent_and_normalises_a_changed_taint_of_ours() {
        assert_eq!(retainted(&[], false), None);
        assert_eq!(retainted(&[ours()], true), None);
        assert_eq!(retainted(&[], true), Some(vec![ours()]));
        // Someone edited tppguard's taint to PreferNoSchedule, or added it twice.
        let soft = json!({"key": TAINT_KEY, "value": "true", "effect": "PreferNoSchedule"});
        assert_eq!(
            retainted(std::slice::from_ref(&soft), true),
            Some(vec![ours()])
        );
        assert_eq!(retainted(&[ours(), ours()], true), Some(vec![ours()]));
        assert_eq!(
            retainted(&[soft, foreign_taint()], false),
            Some(vec![foreign_taint()])
        );
    }

    #[test]
    fn the_config_table_reads_with_defaults_and_refuses_unknown_keys() {
        let config: KubeConfig = toml::from_str("node_name_env = \"NODE_NAME\"").unwrap();
        assert_eq!(config.node_name, "");
        assert_eq!(config.node_name_env.as_deref(), Some("NODE_NAME"));
        assert_eq!(config.api_url, None);
        assert!(toml::from_str::<KubeConfig>("node = \"x\"").is_err());
    }
}
