//! Runs graphs/customer_swarm.toml: the front desk, billing desk and scheduling desk agents
//! hand a customer's message to each other until one of them answers.
//!
//!     cargo run --release --example customer_swarm [-- --input message.json]

mod common;

fn main() -> std::process::ExitCode {
    common::main(common::Business {
        graph: "customer_swarm",
        answers: &[],
        report: |s| {
            let mut lines = vec![format!("Message:  {}", common::text(s, "/message"))];
            lines.extend(common::conversation(s));
            lines
        },
    })
}
