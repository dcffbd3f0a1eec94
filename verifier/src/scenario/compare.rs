//! The comparison of a baseline verdict with a scenario's: per licence, per country and per
//! device that changes class, side by side.

use std::io::Write;

use serde::Serialize;

use crate::error::Error;
use crate::policy::FleetVerdict;

/// One side of a comparison row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Side;

/// One licence, baseline against scenario.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LicenceComparison;

/// One destination country, baseline against scenario.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CountryComparison;

/// One device whose class changes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeviceChange;

/// Baseline against scenario.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison;

/// Compares a baseline verdict with a scenario verdict.
pub fn compare(_baseline: &FleetVerdict, _scenario: &FleetVerdict) -> Comparison {
    Comparison
}

/// Writes a comparison for a terminal.
pub fn write_comparison(_c: &Comparison, _out: &mut dyn Write) -> Result<(), Error> {
    Ok(())
}
