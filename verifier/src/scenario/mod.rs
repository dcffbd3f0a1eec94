//! What-if scenarios: changes applied to the rule sets and licences of an evaluation without
//! editing a file ([`Scenario`]: move a country to another group, evaluate under another rule
//! set such as a bill, change a licence's caps), and the comparison of the baseline verdict
//! with the scenario's ([`compare`]).
//!
//! A scenario never touches stored state or a signed document: it builds modified copies in
//! memory, marked as such ([`RuleSetPosture`]), and its verdict is hypothetical.
//!
//! [`RuleSetPosture`]: tppguard_proto::ruleset::RuleSetPosture

mod change;
mod compare;

pub use change::{Change, MAX_CHANGE_CHARS, MAX_CHANGES, Scenario, ScenarioError};
pub use compare::{
    ClassChange, Comparison, CountryComparison, CountrySide, DeviceChange, LicenceComparison,
    LicenceSide, MAX_DEVICE_CHANGES, NeedCounts, Side, VerdictChange, compare, grouped,
    write_comparison,
};
