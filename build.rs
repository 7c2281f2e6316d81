//! Link flags for the `brainops` binaries.
//!
//! The binary carries ~68,000 relative relocations (vtables, string tables); the dynamic
//! loader applied them one by one on every start, about a third of a short command's time.
//! Packed relative relocations (RELR, glibc 2.36+, binutils 2.38+) apply them from a bitmap.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let linux = std::env::var("CARGO_CFG_TARGET_OS").is_ok_and(|os| os == "linux");
    let gnu = std::env::var("CARGO_CFG_TARGET_ENV").is_ok_and(|env| env == "gnu");
    if linux && gnu {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}
