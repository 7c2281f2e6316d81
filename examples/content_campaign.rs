//! Runs graphs/content_campaign.toml: SEO brief and content calendar in parallel, one
//! social post per platform, approval, then a ClickUp publishing task.
//!
//!     cargo run --release --example content_campaign [-- --ask]

mod common;

fn main() -> std::process::ExitCode {
    common::main(common::Business {
        graph: "content_campaign",
        answers: &[("review", "approve")],
        report: |s| {
            use common::text;
            let mut lines = vec![
                format!(
                    "Brief:     {} [{}]",
                    text(s, "/brief/title"),
                    text(s, "/brief/target_keyword")
                ),
                format!("Meta:      {}", text(s, "/brief/meta_description")),
                format!("Calendar:  {}", text(s, "/calendar/posts")),
            ];
            for p in s["posts"].as_array().into_iter().flatten() {
                lines.push(format!(
                    "Post:      {}: {}",
                    p["platform"].as_str().unwrap_or("?"),
                    p["post"].as_str().unwrap_or("")
                ));
            }
            lines.push(format!("Status:    {}", text(s, "/status")));
            lines
        },
    })
}
