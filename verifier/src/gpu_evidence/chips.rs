//! The chips tppguard can name from a GPU's certificate, their architecture and the model
//! names sold with them: the table behind the `model` check.
//!
//! Sources (public data only; a chip outside this table is `not_checked`, never passed):
//! - NVIDIA H100 Tensor Core GPU Architecture whitepaper (Hopper): GH100 is the Hopper die of
//!   H100; NVIDIA's H200, H800 and H20 product pages and datasheets name the same Hopper GPU
//!   (H200: GH100 with HBM3e; H800 and H20: export variants of H100).
//! - NVIDIA Blackwell Architecture Technical Brief / whitepaper: GB100 (and its GB102
//!   variant) is the data-center Blackwell die of B100 and B200; GB202 is the die of the RTX
//!   PRO 6000 Blackwell.
//! - Chip names in certificates: the real H100 sample's leaf and device certificates are named
//!   `GH100 A01 GSP FMC LF` and `GH100 A01 GSP BROM` (nvtrust's samples); the chip is the first
//!   word.

/// One chip: its name as certificates write it, its architecture, and model-name prefixes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chip {
    /// As in the certificate subject (`GH100`).
    pub name: &'static str,
    /// The architecture (`Hopper`), as tppguard's inventory names it.
    pub architecture: &'static str,
    /// Model names (NVML's, without the `NVIDIA ` prefix) begin with one of these words.
    pub models: &'static [&'static str],
}

/// Every chip tppguard can name.
pub const CHIPS: &[Chip] = &[
    Chip {
        name: "GH100",
        architecture: "Hopper",
        models: &["H100", "H200", "H800", "H20"],
    },
    Chip {
        name: "GB100",
        architecture: "Blackwell",
        models: &["B100", "B200"],
    },
    Chip {
        name: "GB102",
        architecture: "Blackwell",
        models: &["B100", "B200"],
    },
    Chip {
        name: "GB202",
        architecture: "Blackwell",
        models: &["RTX PRO 6000 Blackwell"],
    },
];

/// The chip named `name` (case-insensitive).
pub fn chip(name: &str) -> Option<&'static Chip> {
    CHIPS.iter().find(|c| c.name.eq_ignore_ascii_case(name))
}

/// The chip word of a certificate common name (`GH100 A01 GSP FMC LF` -> `GH100`).
pub fn chip_of_common_name(cn: &str) -> Option<&str> {
    cn.split_whitespace().next()
}

impl Chip {
    /// Whether `model` (NVML's name, `NVIDIA H100 80GB HBM3`, with or without the `NVIDIA `
    /// prefix) is one of this chip's models: it begins with a listed name followed by the end
    /// or a space (so `H20` does not admit `H2000`).
    pub fn admits_model(&self, model: &str) -> bool {
        let model = model.trim();
        let model = model
            .get(..7)
            .filter(|p| p.eq_ignore_ascii_case("NVIDIA "))
            .and_then(|_| model.get(7..))
            .unwrap_or(model);
        self.models.iter().any(|prefix| {
            model
                .get(..prefix.len())
                .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
                && model
                    .get(prefix.len()..)
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with(' '))
        })
    }
}
