//! Runs graphs/security_incident.toml: detect login attacks, triage, alert Slack, open a
//! GitHub issue, draft the internal notice, and ask before locking an account.
//!
//!     cargo run --release --example security_incident [-- --input auth-log.json --ask]

mod common;

fn main() -> std::process::ExitCode {
    common::main(common::Business {
        graph: "security_incident",
        answers: &[("approve_lock", "lock")],
        report: |s| {
            use common::text;
            let mut lines = vec![format!("Events:    {}", text(s, "/detection/events"))];
            for f in s["detection"]["findings"].as_array().into_iter().flatten() {
                lines.push(format!(
                    "Finding:   {} ({}) from {} on {}",
                    f["kind"].as_str().unwrap_or("?"),
                    f["severity"].as_str().unwrap_or("?"),
                    f["ip"].as_str().unwrap_or("?"),
                    f["users"]
                ));
            }
            lines.push(format!(
                "Triage:    {} / {}: {}",
                text(s, "/triage/verdict"),
                text(s, "/triage/severity"),
                text(s, "/triage/summary")
            ));
            lines.push(format!("Notice:    {}", text(s, "/notice/subject")));
            lines.push(format!("Status:    {}", text(s, "/status")));
            lines
        },
    })
}
