//! Runs graphs/support_triage.toml: recall the customer's history, triage the message,
//! answer it with an agent or escalate to a person, email the reply, remember the exchange.
//!
//!     cargo run --release --example support_triage [-- --input ticket.json --ask]

mod common;

fn main() -> std::process::ExitCode {
    common::main(common::Business {
        graph: "support_triage",
        answers: &[(
            "human",
            "Thanks for reaching out. A member of our team will call you within the hour.",
        )],
        report: |s| {
            use common::text;
            vec![
                format!(
                    "Message:   {}: {}",
                    text(s, "/customer/name"),
                    text(s, "/message")
                ),
                format!(
                    "Remembered before: {} notes",
                    s["history"].as_array().map_or(0, Vec::len)
                ),
                format!(
                    "Triage:    {} / {} (escalate: {}): {}",
                    text(s, "/triage/category"),
                    text(s, "/triage/urgency"),
                    text(s, "/triage/escalate"),
                    text(s, "/triage/summary")
                ),
                format!("Reply by {}: {}", text(s, "/handled_by"), text(s, "/reply")),
            ]
        },
    })
}
