//! Gives the library a placeholder SONAME. The tests install copies of the one library file as
//! `libcuda.so.1`, `libcublas.so.13` and `libcublasLt.so.13` and overwrite the placeholder with
//! the matching name, as the real libraries carry: the dynamic loader answers a lookup by bare
//! name (cudarc's `libcublas.so.13`) with an already loaded library whose SONAME it is, which is
//! how the agent's `--cuda-lib-dir` works.

/// Keep in step with `SONAME_PLACEHOLDER` in `tests/integration/support.rs`; longer than every
/// name written over it.
const SONAME_PLACEHOLDER: &str = "libtppguard_fake_cuda.so#SONAME-PLACEHOLDER";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,{SONAME_PLACEHOLDER}");
}
