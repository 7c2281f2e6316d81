//! Link flags for the `brainops` binaries.
//!
//! The binary carries ~68,000 relative relocations (vtables, string tables). As a
//! position-independent executable, the dynamic loader applies them on every start, and
//! each page of `.data.rel.ro` it writes is a copy-on-write fault: ~300 faults, about 2 ms
//! of a 5 ms `brainops validate`. Linked as a fixed-address executable (`-no-pie`) the
//! linker resolves them once, at build time. The cost: the executable's own code is not
//! address-randomised (its libraries, heap and stacks still are). `BRAINOPS_PIE=1` at build
//! time keeps a PIE, with the relocations packed (RELR, glibc 2.36+, binutils 2.38+).

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=BRAINOPS_PIE");
    let linux = std::env::var("CARGO_CFG_TARGET_OS").is_ok_and(|os| os == "linux");
    let gnu = std::env::var("CARGO_CFG_TARGET_ENV").is_ok_and(|env| env == "gnu");
    if linux && gnu {
        if std::env::var("BRAINOPS_PIE").is_ok_and(|v| v == "1") {
            println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
        } else {
            println!("cargo:rustc-link-arg-bins=-no-pie");
        }
    }
}
