//! GPU evidence: the checks that turn one GPU's signed SPDM measurement report and device
//! certificate chain into a [`GpuEvidenceReport`] of named checks.

#[doc(hidden)]
pub mod test_device;

#[cfg(test)]
mod tests;
