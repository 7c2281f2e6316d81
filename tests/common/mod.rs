//! What the CLI tests share: the `brainops` binary, run apart from the caller's settings.

use std::path::Path;
use std::process::{Command, Output};

/// `brainops` with `home` as `BRAINOPS_HOME`, run from the workspace root, with none of the
/// caller's settings that would change what it does: stores, embedder, integrations mode and
/// the integration keys the tests' graphs could reach.
pub(crate) fn command(home: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_brainops"));
    cmd.env("BRAINOPS_HOME", home)
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    for name in [
        "BRAINOPS_CHECKPOINT",
        "BRAINOPS_MEMORY",
        "BRAINOPS_EMBEDDER",
        "BRAINOPS_INTEGRATIONS",
        "RUST_LOG",
        "BRAINOPS_LOG",
        "BRAINOPS_LOG_FORMAT",
        "SLACK_WEBHOOK_URL",
        "GITHUB_TOKEN",
    ] {
        cmd.env_remove(name);
    }
    cmd
}

/// Runs `brainops ARGS` (see [`command`]).
#[allow(dead_code)] // not every test binary runs it this way
pub(crate) fn brainops(home: &Path, args: &[&str]) -> Output {
    command(home)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run brainops: {e}"))
}
