//! tppguard's pure shared types: exact TPP and performance-density math ([`units`], [`tpp`]),
//! the accelerator spec table ([`spec`]), rule sets ([`ruleset`]) and classification
//! ([`classify`]). No I/O, no clock, no logging: callers read files and log.

#![forbid(unsafe_code)]

pub mod claims;
pub mod classify;
pub mod evidence;
pub mod gpu_evidence;
pub mod identity;
pub mod jws;
pub mod lease;
pub mod licence;
pub mod ruleset;
pub mod shipment;
pub mod site;
pub mod spec;
pub mod text;
pub mod tpp;
pub mod units;
