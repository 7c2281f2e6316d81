//! Embeds the agent catalog (`catalog/<category>/<name>.toml`) into the library, so the
//! `brainops` binary carries its agents wherever it is copied.

use std::fmt::Write as _;
use std::path::Path;

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let catalog = root.join("catalog");
    println!("cargo:rerun-if-changed=catalog");
    let mut files = Vec::new();
    if let Ok(categories) = std::fs::read_dir(&catalog) {
        for category in categories.flatten() {
            if let Ok(specs) = std::fs::read_dir(category.path()) {
                for spec in specs.flatten() {
                    let path = spec.path();
                    if path.extension().is_some_and(|e| e == "toml") {
                        files.push(path);
                    }
                }
            }
        }
    }
    files.sort();
    let mut out = String::from(
        "/// The built-in agent specs: (path under `agents/`, TOML text).\npub const BUILTIN_SPECS: &[(&str, &str)] = &[\n",
    );
    for path in &files {
        let relative = path
            .strip_prefix(root)
            .unwrap_or(path)
            .display()
            .to_string();
        // Resolved against the manifest directory when the crate compiles, not written out
        // as an absolute path: clones at other paths share one target directory (CI's
        // cache), and a build script's output outlives the clone that ran it.
        let _ = writeln!(
            out,
            "    ({relative:?}, include_str!(concat!(env!(\"CARGO_MANIFEST_DIR\"), \"/\", {relative:?}))),"
        );
    }
    out.push_str("];\n");
    let dest = Path::new(&std::env::var("OUT_DIR").unwrap_or_default()).join("catalog.rs");
    if let Err(e) = std::fs::write(&dest, out) {
        println!("cargo:warning=cannot write {}: {e}", dest.display());
        std::process::exit(1);
    }
}
