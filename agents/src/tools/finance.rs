//! Invoice totals and payment reconciliation, in integer cents.

use serde::Deserialize;
use serde_json::{Value, json};

use super::{DomainTool, args, bad, cents, usd};
use engine::NodeError;

pub(super) fn tools() -> Vec<DomainTool> {
    vec![
        DomainTool {
            name: "financial.invoice_totals",
            description: "Invoice arithmetic in exact cents: line amounts, subtotal, a discount spread over taxable and untaxed lines, sales tax on taxable lines, total, deposit, balance due.",
            parameters: || {
                json!({"type": "object", "required": ["line_items"], "properties": {
                    "line_items": {"type": "array", "minItems": 1, "items": {"type": "object", "required": ["description", "quantity", "unit_price_usd"], "properties": {
                        "description": {"type": "string"}, "quantity": {"type": "number", "minimum": 0},
                        "unit_price_usd": {"type": "number", "minimum": 0}, "taxable": {"type": "boolean", "description": "default true"}}}},
                    "tax_rate_pct": {"type": "number", "minimum": 0, "maximum": 25},
                    "discount_usd": {"type": "number", "minimum": 0},
                    "deposit_paid_usd": {"type": "number", "minimum": 0}}})
            },
            run: invoice_totals,
        },
        DomainTool {
            name: "financial.reconcile_payments",
            description: "Matches payments to invoices: by the invoice a payment names, else by an open invoice of exactly that amount, else to the customer's only open invoice. Reports each invoice's paid amount, balance and status, and the payments it could not place, with why.",
            parameters: || {
                json!({"type": "object", "required": ["invoices", "payments"], "properties": {
                    "invoices": {"type": "array", "items": {"type": "object", "required": ["id", "total_usd"], "properties": {
                        "id": {"type": "string"}, "total_usd": {"type": "number", "minimum": 0}, "customer": {"type": "string"}}}},
                    "payments": {"type": "array", "items": {"type": "object", "required": ["id", "amount_usd"], "properties": {
                        "id": {"type": "string"}, "amount_usd": {"type": "number", "exclusiveMinimum": 0},
                        "invoice": {"type": "string"}, "customer": {"type": "string"}}}}}})
            },
            run: reconcile,
        },
    ]
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    description: String,
    quantity: f64,
    unit_price_usd: f64,
    #[serde(default = "yes")]
    taxable: bool,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InvoiceArgs {
    line_items: Vec<Line>,
    #[serde(default)]
    tax_rate_pct: f64,
    #[serde(default)]
    discount_usd: f64,
    #[serde(default)]
    deposit_paid_usd: f64,
}

fn invoice_totals(input: Value) -> Result<Value, NodeError> {
    const TOOL: &str = "financial.invoice_totals";
    let a: InvoiceArgs = args(TOOL, input)?;
    if a.line_items.is_empty() {
        return Err(bad(TOOL, "an invoice needs at least one line item"));
    }
    if !(0.0..=25.0).contains(&a.tax_rate_pct) {
        return Err(bad(TOOL, "`tax_rate_pct` must be 0 to 25"));
    }
    let mut lines = Vec::with_capacity(a.line_items.len());
    let (mut subtotal, mut taxable) = (0i64, 0i64);
    for (i, line) in a.line_items.iter().enumerate() {
        if !(line.quantity >= 0.0 && line.unit_price_usd >= 0.0) {
            return Err(bad(
                TOOL,
                format!("line {}: quantity and price must be zero or more", i + 1),
            ));
        }
        let amount = (line.quantity * line.unit_price_usd * 100.0).round() as i64;
        subtotal += amount;
        if line.taxable {
            taxable += amount;
        }
        lines.push(json!({"description": line.description, "amount_usd": usd(amount), "taxable": line.taxable}));
    }
    let discount = cents(a.discount_usd);
    if discount > subtotal {
        return Err(bad(TOOL, "the discount is larger than the subtotal"));
    }
    // The discount lowers taxable and untaxed lines in proportion to their amounts.
    let taxable_discount = if subtotal == 0 {
        0
    } else {
        (discount as f64 * taxable as f64 / subtotal as f64).round() as i64
    };
    let taxable_after = taxable - taxable_discount;
    let tax = (taxable_after as f64 * a.tax_rate_pct / 100.0).round() as i64;
    let total = subtotal - discount + tax;
    let deposit = cents(a.deposit_paid_usd);
    Ok(json!({
        "lines": lines,
        "subtotal_usd": usd(subtotal),
        "discount_usd": usd(discount),
        "taxable_usd": usd(taxable_after),
        "tax_usd": usd(tax),
        "total_usd": usd(total),
        "deposit_paid_usd": usd(deposit),
        "balance_due_usd": usd(total - deposit),
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Invoice {
    id: String,
    total_usd: f64,
    customer: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Payment {
    id: String,
    amount_usd: f64,
    invoice: Option<String>,
    customer: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReconcileArgs {
    invoices: Vec<Invoice>,
    payments: Vec<Payment>,
}

fn reconcile(input: Value) -> Result<Value, NodeError> {
    const TOOL: &str = "financial.reconcile_payments";
    let a: ReconcileArgs = args(TOOL, input)?;
    let totals: Vec<i64> = a.invoices.iter().map(|i| cents(i.total_usd)).collect();
    let mut paid = vec![0i64; a.invoices.len()];
    let mut applied: Vec<Vec<&str>> = vec![Vec::new(); a.invoices.len()];
    let mut unmatched = Vec::new();
    let index = |id: &str| a.invoices.iter().position(|i| i.id == id);

    // Payments that name their invoice go first, so amount matching sees true balances.
    let (named, anonymous): (Vec<&Payment>, Vec<&Payment>) =
        a.payments.iter().partition(|p| p.invoice.is_some());
    for p in named.into_iter().chain(anonymous) {
        let amount = cents(p.amount_usd);
        if amount <= 0 {
            return Err(bad(
                TOOL,
                format!("payment {} has no positive amount", p.id),
            ));
        }
        let target = match &p.invoice {
            Some(id) => match index(id) {
                Some(i) => Ok(i),
                None => Err(format!("names invoice {id}, which is not in the list")),
            },
            None => {
                let open = |i: &usize| paid[*i] < totals[*i];
                let same_customer =
                    |i: &usize| p.customer.is_none() || a.invoices[*i].customer == p.customer;
                let exact = (0..a.invoices.len())
                    .filter(open)
                    .filter(same_customer)
                    .find(|&i| totals[i] - paid[i] == amount);
                let only_open: Vec<usize> = match &p.customer {
                    Some(_) => (0..a.invoices.len())
                        .filter(open)
                        .filter(same_customer)
                        .collect(),
                    None => Vec::new(),
                };
                match (exact, only_open.as_slice()) {
                    (Some(i), _) => Ok(i),
                    (None, [i]) => Ok(*i),
                    (None, []) => Err("no open invoice of that amount or customer".to_string()),
                    (None, _) => Err(
                        "the customer has several open invoices and none matches the amount"
                            .to_string(),
                    ),
                }
            }
        };
        match target {
            Ok(i) => {
                paid[i] += amount;
                applied[i].push(&p.id);
            }
            Err(reason) => {
                unmatched.push(json!({"id": p.id, "amount_usd": usd(amount), "reason": reason}))
            }
        }
    }
    let invoices: Vec<Value> = a
        .invoices
        .iter()
        .enumerate()
        .map(|(i, inv)| {
            let balance = totals[i] - paid[i];
            let status = match (paid[i], balance) {
                (_, 0) => "paid",
                (_, b) if b < 0 => "overpaid",
                (0, _) => "open",
                _ => "partial",
            };
            json!({"id": inv.id, "total_usd": usd(totals[i]), "paid_usd": usd(paid[i]),
                   "balance_usd": usd(balance), "status": status, "payments": applied[i]})
        })
        .collect();
    let outstanding: i64 = (0..totals.len())
        .map(|i| (totals[i] - paid[i]).max(0))
        .sum();
    Ok(
        json!({"invoices": invoices, "unmatched_payments": unmatched, "outstanding_usd": usd(outstanding)}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invoice_with_a_discount_tax_on_materials_and_a_deposit() {
        let out = invoice_totals(json!({
            "line_items": [
                {"description": "Shingles, 30 squares", "quantity": 30, "unit_price_usd": 120},
                {"description": "Labour", "quantity": 30, "unit_price_usd": 180, "taxable": false},
                {"description": "Dumpster", "quantity": 1, "unit_price_usd": 450}
            ],
            "tax_rate_pct": 8, "discount_usd": 500, "deposit_paid_usd": 3000
        }))
        .unwrap();
        // taxable 4050 less its share of the discount (500 * 4050 / 9450 = 214.29) = 3835.71
        assert_eq!(out["subtotal_usd"], 9450.0);
        assert_eq!(out["taxable_usd"], 3835.71);
        assert_eq!(out["tax_usd"], 306.86);
        assert_eq!(out["total_usd"], 9256.86);
        assert_eq!(out["balance_due_usd"], 6256.86);
    }

    #[test]
    fn cents_do_not_drift() {
        let out = invoice_totals(json!({
            "line_items": [{"description": "nails", "quantity": 3, "unit_price_usd": 0.1}]
        }))
        .unwrap();
        assert_eq!(out["total_usd"], 0.3);
    }

    #[test]
    fn payments_are_matched_by_reference_amount_and_customer() {
        let out = reconcile(json!({
            "invoices": [
                {"id": "INV-1", "total_usd": 1000, "customer": "ada"},
                {"id": "INV-2", "total_usd": 2500, "customer": "bob"},
                {"id": "INV-3", "total_usd": 800, "customer": "cy"}
            ],
            "payments": [
                {"id": "p1", "amount_usd": 2500},
                {"id": "p2", "amount_usd": 400, "invoice": "INV-1"},
                {"id": "p3", "amount_usd": 100, "customer": "cy"},
                {"id": "p4", "amount_usd": 75},
                {"id": "p5", "amount_usd": 10, "invoice": "INV-9"}
            ]
        }))
        .unwrap();
        let inv = out["invoices"].as_array().unwrap();
        assert_eq!(inv[0]["status"], "partial");
        assert_eq!(inv[0]["balance_usd"], 600.0);
        assert_eq!(inv[1]["status"], "paid");
        assert_eq!(inv[1]["payments"], json!(["p1"]));
        assert_eq!(inv[2]["paid_usd"], 100.0);
        let un: Vec<&str> = out["unmatched_payments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["id"].as_str().unwrap())
            .collect();
        assert_eq!(un, ["p5", "p4"]);
        assert_eq!(out["outstanding_usd"], 1300.0);
    }
}
