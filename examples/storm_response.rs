//! Runs graphs/storm_response.toml: after hail, finds the likely damaged roofs, books
//! inspections on workable days, texts customers, plans outreach and alerts the office.
//!
//!     cargo run --release --example storm_response [-- --input storm.json]

mod common;

fn main() -> std::process::ExitCode {
    common::main(common::Business {
        graph: "storm_response",
        answers: &[],
        report: |s| {
            use common::text;
            let mut lines = vec![
                format!(
                    "Storm:     {}: {}",
                    text(s, "/storm/date"),
                    text(s, "/summary/summary")
                ),
                format!(
                    "Affected:  {} customers likely damaged",
                    text(s, "/affected/count")
                ),
            ];
            for c in s["affected"]["customers"].as_array().into_iter().flatten() {
                lines.push(format!(
                    "           {} ({}): {} likely, {} mi away",
                    c["name"].as_str().unwrap_or("?"),
                    c["id"],
                    c["level"].as_str().unwrap_or("?"),
                    c["distance_miles"]
                ));
            }
            for a in s["schedule"]["assignments"]
                .as_array()
                .into_iter()
                .flatten()
            {
                lines.push(format!(
                    "Booked:    {} with {} on {}",
                    a["job"], a["crew"], a["dates"]
                ));
            }
            for u in s["schedule"]["unscheduled"]
                .as_array()
                .into_iter()
                .flatten()
            {
                lines.push(format!(
                    "Waiting:   {}: {}",
                    u["job"],
                    u["reason"].as_str().unwrap_or("")
                ));
            }
            lines.push(format!(
                "Texts:     {}",
                s["texts"].as_array().map_or(0, Vec::len)
            ));
            lines.push(format!(
                "Campaign:  {} via {}",
                text(s, "/campaign/message"),
                text(s, "/campaign/channels")
            ));
            lines.push(format!("Status:    {}", text(s, "/status")));
            lines
        },
    })
}
