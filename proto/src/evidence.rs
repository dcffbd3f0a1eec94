//! Evidence tiers: how a device's figures are backed, weakest first. Shared by licences (the
//! minimum tier a licence accepts) and claims (the tier a claim reaches).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// How a device's identity and figures are backed. Ordered weakest first, so
/// `Hardware > Measured > Declared` and the strongest of several is their `max`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum EvidenceTier {
    /// The agent reports the device (NVML inventory) and nothing checks the figures.
    #[default]
    Declared,
    /// The agent also measured the device's throughput.
    Measured,
    /// The device's identity is rooted in its hardware (a signed device attestation).
    Hardware,
}

impl EvidenceTier {
    /// Every tier, weakest first.
    pub const ALL: [Self; 3] = [Self::Declared, Self::Measured, Self::Hardware];

    /// The stable snake_case code, as in licence files and claims: `declared`.
    pub const fn code(self) -> &'static str {
        match self {
            Self::Declared => "declared",
            Self::Measured => "measured",
            Self::Hardware => "hardware",
        }
    }

    /// Whether this tier is at least `minimum` (a licence's `min_evidence_tier`).
    pub fn meets(self, minimum: Self) -> bool {
        self >= minimum
    }
}

impl fmt::Display for EvidenceTier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.code())
    }
}

/// An evidence tier name that is not `declared`, `measured` or `hardware`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("evidence tier {text:?} is unknown; use `declared`, `measured` or `hardware`")]
pub struct UnknownEvidenceTier {
    /// The text given.
    pub text: String,
}

impl FromStr for EvidenceTier {
    type Err = UnknownEvidenceTier;

    /// Parses a code exactly (`measured`); no other spelling.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|tier| tier.code() == text)
            .ok_or_else(|| UnknownEvidenceTier {
                text: text.to_owned(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_is_weakest_first() {
        assert!(EvidenceTier::Hardware > EvidenceTier::Measured);
        assert!(EvidenceTier::Measured > EvidenceTier::Declared);
        assert!(EvidenceTier::Hardware.meets(EvidenceTier::Measured));
        assert!(!EvidenceTier::Declared.meets(EvidenceTier::Measured));
        assert_eq!(
            EvidenceTier::ALL.iter().max(),
            Some(&EvidenceTier::Hardware)
        );
    }

    #[test]
    fn codes_round_trip_through_text_and_serde() {
        for tier in EvidenceTier::ALL {
            assert_eq!(tier.code().parse::<EvidenceTier>(), Ok(tier));
            assert_eq!(tier.to_string(), tier.code());
            let json = serde_json::to_string(&tier).unwrap();
            assert_eq!(json, format!("\"{}\"", tier.code()));
            assert_eq!(serde_json::from_str::<EvidenceTier>(&json).unwrap(), tier);
        }
        for bad in ["", "Declared", "HARDWARE", "hw", " measured"] {
            let e = bad.parse::<EvidenceTier>().unwrap_err().to_string();
            assert!(e.contains("declared"), "{e}");
        }
    }
}
