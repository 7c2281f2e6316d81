//! Runs graphs/customer_supervisor.toml: a supervisor agent hands a customer's message to
//! the support, billing or scheduling agent, reads the reply, and hands on or answers.
//!
//!     cargo run --release --example customer_supervisor [-- --input message.json]

mod common;

fn main() -> std::process::ExitCode {
    common::main(common::Business {
        graph: "customer_supervisor",
        answers: &[],
        report: |s| {
            let mut lines = vec![format!("Message:  {}", common::text(s, "/message"))];
            lines.extend(common::conversation(s));
            lines.push(format!(
                "Specialist replies: {}",
                s["replies"].as_array().map_or(0, Vec::len)
            ));
            lines
        },
    })
}
