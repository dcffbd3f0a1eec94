//! Kubernetes hook (issue 15): marks the node the agent runs on so the scheduler stops placing
//! GPU work on gated GPUs.

use serde::Deserialize;
use tppguard_proto::lease::GpuRef;

/// `[gating.kubernetes]` in the agent's configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubeConfig {
    /// The Kubernetes node name (the DaemonSet passes `spec.nodeName`).
    pub node_name: String,
}

/// Marks `config.node_name` with what the agent gated: `gated` GPUs gated, `allowed` usable.
pub fn mark_node(config: &KubeConfig, gated: &[GpuRef], allowed: usize) -> anyhow::Result<()> {
    let _ = (config, gated, allowed);
    anyhow::bail!("the Kubernetes hook is being built")
}
