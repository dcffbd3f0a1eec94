//! The verifier's errors. Each reads `<thing>: <reason>` and has a hint for the fix.

use std::path::PathBuf;

use tppguard_proto::ruleset::RuleSetError;
use tppguard_proto::tpp::Precision;

/// An error of a verifier command (all map to exit code 2).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `--model` names no row of the spec table.
    #[error("--model: no model {name:?} in the spec table")]
    UnknownModel {
        /// The name given.
        name: String,
        /// Close model names.
        suggestions: Vec<&'static str>,
    },
    /// `--tops` gives one precision twice.
    #[error("--tops: {precision} given more than once")]
    DuplicateTops {
        /// The precision.
        precision: Precision,
    },
    /// `--rule-set` is neither a shipped id nor an existing file.
    #[error("--rule-set: {arg:?} is neither a shipped rule set nor a file")]
    UnknownRuleSet {
        /// The argument.
        arg: String,
        /// Shipped ids, comma-separated.
        known: String,
    },
    /// A rule-set file could not be read.
    #[error("{}: cannot read rule set: {source}", path.display())]
    ReadRuleSet {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A rule-set file is invalid.
    #[error("{}: invalid rule set: {source}", path.display())]
    InvalidRuleSet {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: RuleSetError,
    },
    /// The shipped rule sets failed to load (a packaging bug).
    #[error("shipped rule sets: {0}")]
    Shipped(#[source] RuleSetError),
    /// Writing the output failed.
    #[error("output: {0}")]
    Output(#[from] std::io::Error),
    /// Encoding JSON failed.
    #[error("output: cannot encode JSON: {0}")]
    Json(#[from] serde_json::Error),
}

impl Error {
    /// A hint for the fix, printed under the message.
    pub fn hint(&self) -> Option<String> {
        match self {
            Self::UnknownModel { suggestions, .. } if !suggestions.is_empty() => Some(format!(
                "did you mean {}? `tppguard-verifier classify --list-models` lists every model",
                suggestions
                    .iter()
                    .map(|s| format!("{s:?}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            Self::UnknownModel { .. } => Some(
                "`tppguard-verifier classify --list-models` lists every model; or give the \
                 figures with --tops and --die-area"
                    .to_owned(),
            ),
            Self::DuplicateTops { .. } => Some("give each precision's rate once".to_owned()),
            Self::UnknownRuleSet { known, .. } => Some(format!(
                "shipped rule sets: {known}; or give the path of a rule-set TOML file \
                 (format: rules/README.md)"
            )),
            Self::ReadRuleSet { .. } => Some("check the path and its permissions".to_owned()),
            Self::InvalidRuleSet { .. } => {
                Some("the format is documented in rules/README.md".to_owned())
            }
            Self::Shipped(_) => Some("this is a bug in the build; please report it".to_owned()),
            Self::Output(_) | Self::Json(_) => None,
        }
    }
}
