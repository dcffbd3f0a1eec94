#![cfg(test)]
//! Workspace integration tests: the real binaries, run as a user would.

mod classify;
mod fixtures;
mod inventory;
mod pki;
mod support;
