//! Who is asking: the roles a credential grants and the principal a request authenticated as.
//!
//! Every route but `/healthz` and `/readyz` requires a principal; which roles a route admits is
//! the router's business, what a role may see is the read views' business.

use serde::{Deserialize, Serialize};

/// What a credential may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// A GPU node: asks for challenges and posts attestations.
    Node,
    /// The operator: reads everything.
    Operator,
    /// A regulator: reads, through the redactions the configuration names.
    Regulator,
    /// A vendor: reads only what concerns the licences its credential names.
    Vendor,
    /// Administration: licences, revocation, node retirement.
    Admin,
    /// Scrapes `/metrics` only.
    Metrics,
}

/// The authenticated caller of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The credential's name (as issued; for logs and records).
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// For [`Role::Vendor`]: the licence ids it may see; empty for every other role.
    pub licences: Vec<String>,
}
