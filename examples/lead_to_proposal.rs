//! Runs graphs/lead_to_proposal.toml: a roofing lead is scored, qualified, measured,
//! priced, written up, approved, emailed (a dry run without SENDGRID_API_KEY) and followed up.
//!
//!     cargo run --release --example lead_to_proposal [-- --input lead.json --model ...]

mod common;

fn main() -> std::process::ExitCode {
    common::main(common::Business {
        graph: "lead_to_proposal",
        answers: &[("approve", "approve")],
        report: |s| {
            use common::text;
            vec![
                format!(
                    "Lead:      {} ({}), score {} grade {}",
                    text(s, "/lead/name"),
                    text(s, "/lead/source"),
                    text(s, "/score/score"),
                    text(s, "/score/grade")
                ),
                // The score's grade decides (graphs/lead_to_proposal.toml); the agent's own
                // verdict is shown beside it, since a small model may disagree.
                format!(
                    "Qualified: {} (grade {}); the qualifier agent says {}, priority {}: {}",
                    if matches!(s["score"]["grade"].as_str(), Some("A" | "B")) {
                        "yes"
                    } else {
                        "no"
                    },
                    text(s, "/score/grade"),
                    match s["qualification"]["qualified"].as_bool() {
                        Some(true) => "qualified",
                        Some(false) => "not qualified",
                        None => "-",
                    },
                    text(s, "/qualification/priority"),
                    text(s, "/qualification/reason")
                ),
                format!(
                    "Roof:      {} squares with waste, {} bundles, {} ridge-cap bundles",
                    text(s, "/takeoff/squares_with_waste"),
                    text(s, "/takeoff/shingle_bundles"),
                    text(s, "/takeoff/ridge_cap_bundles")
                ),
                format!(
                    "Quote:     ${} (price ${} + tax ${}, margin {}%)",
                    text(s, "/quote/total_usd"),
                    text(s, "/quote/price_usd"),
                    text(s, "/quote/tax_usd"),
                    text(s, "/quote/margin_pct")
                ),
                format!("Proposal:  {}", text(s, "/proposal/title")),
                format!("           {}", text(s, "/proposal/summary")),
                format!(
                    "Email:     {}",
                    match s["email"]["dry_run"].as_bool() {
                        Some(true) => format!("recorded, not sent ({})", text(s, "/email/reason")),
                        Some(false) => "sent".into(),
                        None => "-".into(),
                    }
                ),
                format!(
                    "Follow-up: by {}: {}",
                    text(s, "/follow_up/channel"),
                    text(s, "/follow_up/message")
                ),
                format!("Outcome:   {}", text(s, "/outcome")),
            ]
        },
    })
}
