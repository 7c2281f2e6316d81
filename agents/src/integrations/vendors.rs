//! Each vendor's wire format: where requests go, how they authenticate, what they carry.

use serde_json::{Map, Value, json};

use super::{Auth, Body, Plan, PlanError, Request, Vars, VendorTool};

pub(super) fn tools() -> Vec<VendorTool> {
    vec![
        VendorTool {
            name: "stripe.create_customer",
            vendor: "Stripe",
            description: "Creates a Stripe customer (POST /v1/customers) with an idempotency key, so a retried or resumed task creates one customer.",
            parameters: || {
                json!({"type": "object", "required": ["email"], "properties": {
                "email": {"type": "string"}, "name": {"type": "string"}, "phone": {"type": "string"},
                "metadata": {"type": "object", "additionalProperties": {"type": "string"}}}})
            },
            plan: stripe_customer,
        },
        VendorTool {
            name: "stripe.create_invoice",
            vendor: "Stripe",
            description: "Creates a Stripe invoice for a customer: one invoice item per line (POST /v1/invoiceitems), then the invoice (POST /v1/invoices), sent for payment within days_until_due. Every request has its own idempotency key.",
            parameters: || {
                json!({"type": "object", "required": ["customer", "items"], "properties": {
                "customer": {"type": "string", "description": "Stripe customer id, cus_..."},
                "items": {"type": "array", "minItems": 1, "items": {"type": "object", "required": ["description", "amount_usd"], "properties": {
                    "description": {"type": "string"}, "amount_usd": {"type": "number", "exclusiveMinimum": 0}}}},
                "days_until_due": {"type": "integer", "minimum": 1, "description": "default 15"},
                "metadata": {"type": "object", "additionalProperties": {"type": "string"}}}})
            },
            plan: stripe_invoice,
        },
        VendorTool {
            name: "stripe.create_payment_intent",
            vendor: "Stripe",
            description: "Creates a Stripe PaymentIntent in USD (POST /v1/payment_intents) with an idempotency key, so a retried or resumed run never charges twice.",
            parameters: || {
                json!({"type": "object", "required": ["amount_usd"], "properties": {
                "amount_usd": {"type": "number", "exclusiveMinimum": 0}, "customer": {"type": "string"},
                "description": {"type": "string"}, "receipt_email": {"type": "string"},
                "metadata": {"type": "object", "additionalProperties": {"type": "string"}}}})
            },
            plan: stripe_payment_intent,
        },
        VendorTool {
            name: "sendgrid.send_email",
            vendor: "SendGrid",
            description: "Sends an email through SendGrid (POST /v3/mail/send). From SENDGRID_FROM_EMAIL unless `from` is given.",
            parameters: || {
                json!({"type": "object", "required": ["to", "subject", "text"], "properties": {
                "to": {"type": "string"}, "subject": {"type": "string"}, "text": {"type": "string"},
                "html": {"type": "string"}, "from": {"type": "string"}}})
            },
            plan: sendgrid_email,
        },
        VendorTool {
            name: "twilio.send_sms",
            vendor: "Twilio",
            description: "Sends a text message through Twilio (POST /2010-04-01/Accounts/{sid}/Messages.json). From TWILIO_FROM_NUMBER (or TWILIO_PHONE_NUMBER) unless `from` is given.",
            parameters: || {
                json!({"type": "object", "required": ["to", "body"], "properties": {
                "to": {"type": "string", "description": "E.164, e.g. +15550100"}, "body": {"type": "string", "maxLength": 1600},
                "from": {"type": "string"}}})
            },
            plan: twilio_sms,
        },
        VendorTool {
            name: "slack.post_message",
            vendor: "Slack",
            description: "Posts a message to the Slack channel behind SLACK_WEBHOOK_URL (an incoming webhook).",
            parameters: || {
                json!({"type": "object", "required": ["text"], "properties": {
                "text": {"type": "string"}, "blocks": {"type": "array"}}})
            },
            plan: slack_message,
        },
        VendorTool {
            name: "clickup.create_task",
            vendor: "ClickUp",
            description: "Creates a ClickUp task (POST /api/v2/list/{list_id}/task) in `list_id` or CLICKUP_LIST_ID.",
            parameters: || {
                json!({"type": "object", "required": ["name"], "properties": {
                "name": {"type": "string"}, "description": {"type": "string"}, "list_id": {"type": "string"},
                "priority": {"type": "integer", "minimum": 1, "maximum": 4, "description": "1 urgent .. 4 low"}}})
            },
            plan: clickup_task,
        },
        VendorTool {
            name: "notion.create_page",
            vendor: "Notion",
            description: "Creates a page in a Notion database (POST /v1/pages) given by `database_id` or NOTION_DATABASE_ID, titled `title`, with `content` as a paragraph.",
            parameters: || {
                json!({"type": "object", "required": ["title"], "properties": {
                "title": {"type": "string"}, "content": {"type": "string"}, "database_id": {"type": "string"}}})
            },
            plan: notion_page,
        },
        VendorTool {
            name: "airtable.create_record",
            vendor: "Airtable",
            description: "Creates a record (POST /v0/{base}/{table}) in `base_id`/`table` or AIRTABLE_BASE_ID/AIRTABLE_TABLE.",
            parameters: || {
                json!({"type": "object", "required": ["fields"], "properties": {
                "fields": {"type": "object"}, "base_id": {"type": "string"}, "table": {"type": "string"}}})
            },
            plan: airtable_record,
        },
        VendorTool {
            name: "github.create_issue",
            vendor: "GitHub",
            description: "Opens a GitHub issue (POST /repos/{owner}/{repo}/issues) in `repo` or GITHUB_REPOSITORY.",
            parameters: || {
                json!({"type": "object", "required": ["title"], "properties": {
                "title": {"type": "string"}, "body": {"type": "string"}, "repo": {"type": "string", "description": "owner/name"},
                "labels": {"type": "array", "items": {"type": "string"}}}})
            },
            plan: github_issue,
        },
    ]
}

/// A plan of one request whose URL is not secret.
fn one(auth: Auth, url: String, body: Body, headers: Vec<(&'static str, String)>) -> Planned {
    Ok(Plan {
        auth,
        requests: vec![Request {
            shown_url: url.clone(),
            url,
            body,
            headers,
        }],
    })
}

/// The vendor's own explanation from an error body.
pub(super) fn error_message(body: &Value) -> String {
    let pick = |v: &Value| v.as_str().map(str::to_string);
    body.pointer("/error/message")
        .and_then(pick)
        .or_else(|| body.pointer("/errors/0/message").and_then(pick))
        .or_else(|| body.get("message").and_then(pick))
        .or_else(|| body.get("err").and_then(pick))
        .or_else(|| body.pointer("/error/type").and_then(pick))
        .or_else(|| body.get("error").and_then(pick))
        .or_else(|| pick(body))
        .unwrap_or_else(|| crate::llm::cut_text(&body.to_string()))
}

fn text<'a>(input: &'a Value, field: &str) -> Result<&'a str, String> {
    input
        .get(field)
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| format!("`{field}` (a non-empty string) is required"))
}

fn optional<'a>(input: &'a Value, field: &str) -> Option<&'a str> {
    input
        .get(field)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

fn cents(input: &Value, field: &str) -> Result<i64, String> {
    match input.get(field).and_then(Value::as_f64) {
        Some(usd) if usd.is_finite() && usd > 0.0 => Ok((usd * 100.0).round() as i64),
        _ => Err(format!("`{field}` must be a positive amount in dollars")),
    }
}

fn base(vars: &Vars<'_>, name: &str, default: &str) -> String {
    vars.get(&[name])
        .unwrap_or_else(|| default.to_string())
        .trim_end_matches('/')
        .to_string()
}

/// Stripe's form encoding of `metadata[key]=value`.
fn metadata(form: &mut Vec<(String, String)>, input: &Value) -> Result<(), String> {
    if let Some(meta) = input.get("metadata") {
        let meta = meta
            .as_object()
            .ok_or("`metadata` must be an object of strings")?;
        for (k, v) in meta {
            let v = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            form.push((format!("metadata[{k}]"), v));
        }
    }
    Ok(())
}

/// A Stripe call: path, form fields, idempotency key.
type StripeCall = (String, Vec<(String, String)>, String);

fn stripe(vars: &Vars<'_>, requests: Vec<StripeCall>) -> Planned {
    let key = vars.key(&["STRIPE_SECRET_KEY", "STRIPE_API_KEY"])?;
    let base = base(vars, "STRIPE_API_BASE", "https://api.stripe.com");
    Ok(Plan {
        auth: Auth::Bearer(key),
        requests: requests
            .into_iter()
            .map(|(path, form, idempotency)| Request {
                url: format!("{base}{path}"),
                shown_url: format!("{base}{path}"),
                body: Body::Form(form),
                headers: vec![("Idempotency-Key", idempotency)],
            })
            .collect(),
    })
}

type Planned = Result<Plan, PlanError>;

fn stripe_customer(input: &Value, vars: &Vars<'_>, key: &str) -> Planned {
    let mut form = vec![("email".to_string(), text(input, "email")?.to_string())];
    for field in ["name", "phone"] {
        if let Some(v) = optional(input, field) {
            form.push((field.to_string(), v.to_string()));
        }
    }
    metadata(&mut form, input)?;
    stripe(vars, vec![("/v1/customers".into(), form, key.to_string())])
}

fn stripe_invoice(input: &Value, vars: &Vars<'_>, key: &str) -> Planned {
    let customer = text(input, "customer")?;
    let items = input
        .get("items")
        .and_then(Value::as_array)
        .filter(|i| !i.is_empty())
        .ok_or("`items` must list at least one {description, amount_usd}")?;
    let mut requests = Vec::with_capacity(items.len() + 1);
    for (i, item) in items.iter().enumerate() {
        let form = vec![
            ("customer".to_string(), customer.to_string()),
            (
                "amount".to_string(),
                cents(item, "amount_usd")
                    .map_err(|e| format!("items[{i}]: {e}"))?
                    .to_string(),
            ),
            ("currency".to_string(), "usd".to_string()),
            (
                "description".to_string(),
                text(item, "description")
                    .map_err(|e| format!("items[{i}]: {e}"))?
                    .to_string(),
            ),
        ];
        requests.push((
            "/v1/invoiceitems".to_string(),
            form,
            format!("{key}:item:{i}"),
        ));
    }
    let days = input
        .get("days_until_due")
        .and_then(Value::as_u64)
        .unwrap_or(15);
    let mut form = vec![
        ("customer".to_string(), customer.to_string()),
        ("collection_method".to_string(), "send_invoice".to_string()),
        ("days_until_due".to_string(), days.to_string()),
        (
            "pending_invoice_items_behavior".to_string(),
            "include".to_string(),
        ),
    ];
    metadata(&mut form, input)?;
    requests.push(("/v1/invoices".to_string(), form, format!("{key}:invoice")));
    stripe(vars, requests)
}

fn stripe_payment_intent(input: &Value, vars: &Vars<'_>, key: &str) -> Planned {
    let mut form = vec![
        (
            "amount".to_string(),
            cents(input, "amount_usd")?.to_string(),
        ),
        ("currency".to_string(), "usd".to_string()),
        (
            "automatic_payment_methods[enabled]".to_string(),
            "true".to_string(),
        ),
    ];
    for field in ["customer", "description", "receipt_email"] {
        if let Some(v) = optional(input, field) {
            form.push((field.to_string(), v.to_string()));
        }
    }
    metadata(&mut form, input)?;
    stripe(
        vars,
        vec![("/v1/payment_intents".into(), form, key.to_string())],
    )
}

fn sendgrid_email(input: &Value, vars: &Vars<'_>, _: &str) -> Planned {
    let to = text(input, "to")?;
    let subject = text(input, "subject")?;
    let body = text(input, "text")?;
    let from = optional(input, "from")
        .map(str::to_string)
        .or_else(|| vars.get(&["SENDGRID_FROM_EMAIL", "EMAIL_FROM"]));
    let mut content = vec![json!({"type": "text/plain", "value": body})];
    if let Some(html) = optional(input, "html") {
        content.push(json!({"type": "text/html", "value": html}));
    }
    let payload = json!({
        "personalizations": [{"to": [{"email": to}]}],
        "from": {"email": from.clone().unwrap_or_default()},
        "subject": subject,
        "content": content,
    });
    let key = vars.key(&["SENDGRID_API_KEY"])?;
    if from.is_none() {
        return Err(PlanError::Missing(
            "SENDGRID_FROM_EMAIL is not set and no `from` was given".into(),
        ));
    }
    let base = base(vars, "SENDGRID_API_BASE", "https://api.sendgrid.com");
    one(
        Auth::Bearer(key),
        format!("{base}/v3/mail/send"),
        Body::Json(payload),
        Vec::new(),
    )
}

fn twilio_sms(input: &Value, vars: &Vars<'_>, _: &str) -> Planned {
    let to = text(input, "to")?;
    let body = text(input, "body")?;
    let Some(sid) = vars.get(&["TWILIO_ACCOUNT_SID"]) else {
        return Err(PlanError::Missing("TWILIO_ACCOUNT_SID is not set".into()));
    };
    let token = vars.key(&["TWILIO_AUTH_TOKEN"])?;
    let Some(from) = optional(input, "from")
        .map(str::to_string)
        .or_else(|| vars.get(&["TWILIO_FROM_NUMBER", "TWILIO_PHONE_NUMBER"]))
    else {
        return Err(PlanError::Missing(
            "TWILIO_FROM_NUMBER is not set and no `from` was given".into(),
        ));
    };
    let base = base(vars, "TWILIO_API_BASE", "https://api.twilio.com");
    let url = format!("{base}/2010-04-01/Accounts/{sid}/Messages.json");
    one(
        Auth::Basic(sid, token),
        url,
        Body::Form(vec![
            ("To".into(), to.into()),
            ("From".into(), from),
            ("Body".into(), body.into()),
        ]),
        Vec::new(),
    )
}

fn slack_message(input: &Value, vars: &Vars<'_>, _: &str) -> Planned {
    let mut payload = Map::new();
    payload.insert("text".into(), json!(text(input, "text")?));
    if let Some(blocks) = input.get("blocks") {
        payload.insert("blocks".into(), blocks.clone());
    }
    let Some(url) = vars.get(&["SLACK_WEBHOOK_URL"]) else {
        return Err(PlanError::Missing("SLACK_WEBHOOK_URL is not set".into()));
    };
    // The webhook's path is its secret.
    let shown = url.splitn(4, '/').take(3).collect::<Vec<_>>().join("/") + "/***";
    Ok(Plan {
        auth: Auth::None,
        requests: vec![Request {
            url,
            shown_url: shown,
            body: Body::Json(Value::Object(payload)),
            headers: Vec::new(),
        }],
    })
}

fn clickup_task(input: &Value, vars: &Vars<'_>, _: &str) -> Planned {
    let mut payload = Map::new();
    payload.insert("name".into(), json!(text(input, "name")?));
    if let Some(d) = optional(input, "description") {
        payload.insert("markdown_description".into(), json!(d));
    }
    if let Some(p) = input.get("priority").and_then(Value::as_u64) {
        if !(1..=4).contains(&p) {
            return Err("`priority` is 1 (urgent) to 4 (low)".into());
        }
        payload.insert("priority".into(), json!(p));
    }
    let key = vars.key(&["CLICKUP_API_KEY", "CLICKUP_API_TOKEN"])?;
    let Some(list) = optional(input, "list_id")
        .map(str::to_string)
        .or_else(|| vars.get(&["CLICKUP_LIST_ID"]))
    else {
        return Err(PlanError::Missing(
            "CLICKUP_LIST_ID is not set and no `list_id` was given".into(),
        ));
    };
    let base = base(vars, "CLICKUP_API_BASE", "https://api.clickup.com");
    let url = format!("{base}/api/v2/list/{list}/task");
    one(
        Auth::Raw(key),
        url,
        Body::Json(Value::Object(payload)),
        Vec::new(),
    )
}

fn notion_page(input: &Value, vars: &Vars<'_>, _: &str) -> Planned {
    let title = text(input, "title")?;
    let key = vars.key(&["NOTION_API_KEY", "NOTION_TOKEN"])?;
    let Some(database) = optional(input, "database_id")
        .map(str::to_string)
        .or_else(|| vars.get(&["NOTION_DATABASE_ID"]))
    else {
        return Err(PlanError::Missing(
            "NOTION_DATABASE_ID is not set and no `database_id` was given".into(),
        ));
    };
    let mut payload = json!({
        "parent": {"database_id": database},
        "properties": {"Name": {"title": [{"text": {"content": title}}]}},
    });
    if let Some(content) = optional(input, "content") {
        payload["children"] = json!([{
            "object": "block", "type": "paragraph",
            "paragraph": {"rich_text": [{"type": "text", "text": {"content": content}}]}
        }]);
    }
    let base = base(vars, "NOTION_API_BASE", "https://api.notion.com");
    let url = format!("{base}/v1/pages");
    one(
        Auth::Bearer(key),
        url,
        Body::Json(payload),
        vec![("Notion-Version", "2022-06-28".into())],
    )
}

fn airtable_record(input: &Value, vars: &Vars<'_>, _: &str) -> Planned {
    let fields = input
        .get("fields")
        .filter(|f| f.is_object())
        .ok_or("`fields` must be an object of column -> value")?;
    let key = vars.key(&["AIRTABLE_API_KEY", "AIRTABLE_TOKEN"])?;
    let base_id = optional(input, "base_id")
        .map(str::to_string)
        .or_else(|| vars.get(&["AIRTABLE_BASE_ID"]));
    let table = optional(input, "table")
        .map(str::to_string)
        .or_else(|| vars.get(&["AIRTABLE_TABLE"]));
    let (Some(base_id), Some(table)) = (base_id, table) else {
        return Err(PlanError::Missing(
            "AIRTABLE_BASE_ID and AIRTABLE_TABLE (or `base_id` and `table`) are needed".into(),
        ));
    };
    let base = base(vars, "AIRTABLE_API_BASE", "https://api.airtable.com");
    // Table names may hold spaces: let the URL type encode the segments.
    let mut url = reqwest::Url::parse(&format!("{base}/v0"))
        .map_err(|e| format!("AIRTABLE_API_BASE is not a URL: {e}"))?;
    url.path_segments_mut()
        .map_err(|()| "AIRTABLE_API_BASE cannot take a path".to_string())?
        .push(&base_id)
        .push(&table);
    let url = url.to_string();
    one(
        Auth::Bearer(key),
        url,
        Body::Json(json!({"records": [{"fields": fields}], "typecast": true})),
        Vec::new(),
    )
}

fn github_issue(input: &Value, vars: &Vars<'_>, _: &str) -> Planned {
    let mut payload = Map::new();
    payload.insert("title".into(), json!(text(input, "title")?));
    if let Some(body) = optional(input, "body") {
        payload.insert("body".into(), json!(body));
    }
    if let Some(labels) = input.get("labels") {
        payload.insert("labels".into(), labels.clone());
    }
    let key = vars.key(&["GITHUB_TOKEN", "GH_TOKEN"])?;
    let Some(repo) = optional(input, "repo")
        .map(str::to_string)
        .or_else(|| vars.get(&["GITHUB_REPOSITORY"]))
    else {
        return Err(PlanError::Missing(
            "GITHUB_REPOSITORY is not set and no `repo` was given".into(),
        ));
    };
    if repo.split('/').count() != 2 {
        return Err(format!("`repo` is owner/name, not `{repo}`").into());
    }
    let base = base(vars, "GITHUB_API_URL", "https://api.github.com");
    let url = format!("{base}/repos/{repo}/issues");
    Ok(Plan {
        auth: Auth::Bearer(key),
        requests: vec![Request {
            shown_url: url.clone(),
            url,
            body: Body::Json(Value::Object(payload)),
            headers: vec![
                ("Accept", "application/vnd.github+json".into()),
                ("X-GitHub-Api-Version", "2022-11-28".into()),
                ("User-Agent", "brainops-engine".into()),
            ],
        }],
    })
}
