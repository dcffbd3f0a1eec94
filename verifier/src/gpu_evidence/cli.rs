//! The `gpu-evidence` command.
