//! Tests of the GPU evidence module.
