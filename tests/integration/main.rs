#![cfg(test)]
//! Workspace integration tests: the real binaries, run as a user would.

mod attest;
mod classify;
mod fixtures;
mod inventory;
mod licence;
mod pki;
mod support;
