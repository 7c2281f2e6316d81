//! Runs graphs/invoice_collections.toml: invoice totals in exact cents, a Stripe invoice
//! (idempotent), payment reconciliation, and a reminder when money is still owed.
//!
//!     cargo run --release --example invoice_collections [-- --input invoice.json]

mod common;

fn main() -> std::process::ExitCode {
    common::main(common::Business {
        graph: "invoice_collections",
        answers: &[],
        report: |s| {
            use common::text;
            vec![
                format!(
                    "Invoice:   {} for {}: subtotal ${}, tax ${}, total ${}, due ${}",
                    text(s, "/job/invoice_id"),
                    text(s, "/customer/name"),
                    text(s, "/totals/subtotal_usd"),
                    text(s, "/totals/tax_usd"),
                    text(s, "/totals/total_usd"),
                    text(s, "/totals/balance_due_usd")
                ),
                format!(
                    "Memo:      {} ({})",
                    text(s, "/memo/memo"),
                    text(s, "/memo/payment_terms")
                ),
                format!(
                    "Stripe:    {}",
                    match s["stripe_invoice"]["dry_run"].as_bool() {
                        Some(true) =>
                            format!("recorded, not sent ({})", text(s, "/stripe_invoice/reason")),
                        _ => text(s, "/stripe_invoice/response"),
                    }
                ),
                format!(
                    "Payments:  {} -> {}",
                    text(s, "/reconciliation/invoices/0/paid_usd"),
                    text(s, "/reconciliation/invoices/0/status")
                ),
                format!(
                    "Reminder:  {}: {}",
                    text(s, "/reminder/tone"),
                    text(s, "/reminder/subject")
                ),
                format!("Status:    {}", text(s, "/status")),
            ]
        },
    })
}
