#![cfg(test)]
//! Workspace integration tests: the real binaries, run as a user would.

mod agent_gpu_evidence;
mod attacks;
mod attest;
mod check;
mod check_scenario;
mod classify;
mod crypto;
mod demo;
mod docs;
mod escape;
mod fixtures;
mod fuzz_corpus;
mod interop;
mod inventory;
mod licence;
mod measure;
mod measure_cuda;
mod pki;
mod push;
mod schema;
mod serve;
mod serve_auth;
mod serve_fleet;
mod serve_gpu_evidence;
mod serve_kill;
mod serve_lifecycle;
mod serve_limits;
mod serve_reads;
mod serve_scenario;
mod serve_time;
mod serve_tls;
mod support;
mod systemd;
mod verifier_errors;
mod webhooks;
