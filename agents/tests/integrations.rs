//! Integration tools against local servers speaking each vendor's wire format: requests
//! (paths, auth, bodies, idempotency keys), replies, errors, dry runs, and Stripe
//! idempotency across a resumed run.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agents::integrations::{IntegrationConfig, Mode};
use engine::{NodeContext, NodeError, Registry, RunRequest, Runner, SqliteSaver, loader};
use serde_json::{Value, json};
use wiremock::matchers::{body_string_contains, header, method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const STRIPE_KEY: &str = "sk_test_integration_4eC39HqLyjWDarjtT1zdp7dc";

fn config(mode: Mode, vars: &[(&str, String)]) -> IntegrationConfig {
    let vars: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    IntegrationConfig::with_vars(mode, move |name| vars.get(name).cloned())
}

fn registry(config: &IntegrationConfig) -> Registry {
    let mut registry = Registry::new();
    agents::integrations::register(&mut registry, config);
    registry
}

async fn call(registry: &Registry, tool: &str, args: Value) -> Result<Value, NodeError> {
    registry
        .tool(tool)
        .unwrap()
        .call(args, &NodeContext::detached("t"))
        .await
}

fn form(request: &Request) -> HashMap<String, String> {
    url_pairs(&String::from_utf8_lossy(&request.body))
}

fn url_pairs(body: &str) -> HashMap<String, String> {
    reqwest::Url::parse(&format!("http://x/?{body}"))
        .unwrap()
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// Stripe's idempotency: a key seen before gets the first reply again, and nothing new is
/// created.
#[derive(Clone, Default)]
struct StripeIntents {
    by_key: Arc<Mutex<HashMap<String, Value>>>,
}

impl Respond for StripeIntents {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let key = request
            .headers
            .get("Idempotency-Key")
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        let mut by_key = self.by_key.lock().unwrap();
        if let Some(first) = by_key.get(&key) {
            return ResponseTemplate::new(200)
                .insert_header("Idempotent-Replayed", "true")
                .set_body_json(first.clone());
        }
        let fields = form(request);
        let intent = json!({
            "id": format!("pi_{}", by_key.len() + 1),
            "object": "payment_intent",
            "amount": fields["amount"].parse::<i64>().unwrap(),
            "currency": fields["currency"],
            "status": "requires_payment_method",
        });
        by_key.insert(key, intent.clone());
        ResponseTemplate::new(200).set_body_json(intent)
    }
}

#[tokio::test]
async fn stripe_payment_intent_speaks_stripes_wire_format() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/payment_intents"))
        .and(header(
            "authorization",
            format!("Bearer {STRIPE_KEY}").as_str(),
        ))
        .and(header("content-type", "application/x-www-form-urlencoded"))
        .respond_with(StripeIntents::default())
        .expect(1)
        .mount(&server)
        .await;
    let config = config(
        Mode::Auto,
        &[
            ("STRIPE_SECRET_KEY", STRIPE_KEY.into()),
            ("STRIPE_API_BASE", server.uri()),
        ],
    );
    let registry = registry(&config);
    let out = call(
        &registry,
        "stripe.create_payment_intent",
        json!({
            "amount_usd": 1499.99, "customer": "cus_123", "metadata": {"job": "J-1042"}
        }),
    )
    .await
    .unwrap();
    assert_eq!(out["dry_run"], false);
    assert_eq!(out["response"]["id"], "pi_1");
    assert_eq!(out["response"]["amount"], 149999);
    let request = &server.received_requests().await.unwrap()[0];
    let fields = form(request);
    assert_eq!(fields["amount"], "149999");
    assert_eq!(fields["currency"], "usd");
    assert_eq!(fields["automatic_payment_methods[enabled]"], "true");
    assert_eq!(fields["metadata[job]"], "J-1042");
    assert_eq!(request.headers["idempotency-key"], "detached:0:t");
    assert!(!out.to_string().contains(STRIPE_KEY));
}

#[tokio::test]
async fn stripe_invoice_sends_items_then_the_invoice_each_with_its_own_key() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/invoiceitems"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"id": "ii_1", "object": "invoiceitem"})),
        )
        .expect(2)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/invoices"))
        .and(body_string_contains("collection_method=send_invoice"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"id": "in_1", "object": "invoice", "status": "draft"})),
        )
        .expect(1)
        .mount(&server)
        .await;
    let config = config(
        Mode::Auto,
        &[
            ("STRIPE_SECRET_KEY", STRIPE_KEY.into()),
            ("STRIPE_API_BASE", server.uri()),
        ],
    );
    let out = call(&registry(&config), "stripe.create_invoice", json!({
        "customer": "cus_123",
        "items": [{"description": "Roof replacement", "amount_usd": 14285.71}, {"description": "Sales tax", "amount_usd": 707.14}],
        "days_until_due": 30
    }))
    .await
    .unwrap();
    assert_eq!(out["response"][2]["id"], "in_1");
    let requests = server.received_requests().await.unwrap();
    let keys: Vec<&str> = requests
        .iter()
        .map(|r| r.headers["idempotency-key"].to_str().unwrap())
        .collect();
    assert_eq!(
        keys,
        [
            "detached:0:t:item:0",
            "detached:0:t:item:1",
            "detached:0:t:invoice"
        ]
    );
    assert_eq!(form(&requests[0])["amount"], "1428571");
    assert_eq!(form(&requests[2])["days_until_due"], "30");
}

#[tokio::test]
async fn stripe_errors_are_classified_and_never_show_the_key() {
    let server = MockServer::start().await;
    Mock::given(path("/v1/customers"))
        .and(body_string_contains("declined"))
        .respond_with(ResponseTemplate::new(402).set_body_json(json!({"error": {
            "type": "card_error", "code": "card_declined", "message": "Your card was declined."}})))
        .mount(&server)
        .await;
    Mock::given(path("/v1/customers"))
        .and(body_string_contains("busy"))
        .respond_with(ResponseTemplate::new(429).set_body_json(json!({"error": {
            "type": "rate_limit_error", "message": "Too many requests"}})))
        .mount(&server)
        .await;
    Mock::given(path("/v1/customers"))
        .and(body_string_contains("echo"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({"error": {
            "type": "invalid_request_error", "message": format!("Invalid API Key provided: {STRIPE_KEY}")}})))
        .mount(&server)
        .await;
    let config = config(
        Mode::Live,
        &[
            ("STRIPE_SECRET_KEY", STRIPE_KEY.into()),
            ("STRIPE_API_BASE", server.uri()),
        ],
    );
    let registry = registry(&config);
    let err = call(
        &registry,
        "stripe.create_customer",
        json!({"email": "declined@x.test"}),
    )
    .await
    .unwrap_err();
    assert_eq!(
        err,
        NodeError::permanent(
            "stripe.create_customer: Stripe refused the request (HTTP 402): Your card was declined."
        )
    );
    let err = call(
        &registry,
        "stripe.create_customer",
        json!({"email": "busy@x.test"}),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            err,
            NodeError::Failed {
                retryable: true,
                ..
            }
        ),
        "{err:?}"
    );
    let err = call(
        &registry,
        "stripe.create_customer",
        json!({"email": "echo@x.test"}),
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string().contains("Invalid API Key provided: ***"),
        "{err}"
    );
    assert!(!err.to_string().contains(STRIPE_KEY));
}

#[tokio::test]
async fn sendgrid_twilio_and_slack_speak_their_wire_formats() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v3/mail/send"))
        .and(header("authorization", "Bearer SG.test-key"))
        .respond_with(ResponseTemplate::new(202))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/2010-04-01/Accounts/AC123/Messages.json"))
        // Basic base64("AC123:twilio-token")
        .and(header("authorization", "Basic QUMxMjM6dHdpbGlvLXRva2Vu"))
        .respond_with(
            ResponseTemplate::new(201).set_body_json(json!({"sid": "SM1", "status": "queued"})),
        )
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/services/T000/B000/XXXX"))
        .respond_with(ResponseTemplate::new(200).set_body_string("ok"))
        .expect(1)
        .mount(&server)
        .await;
    let config = config(
        Mode::Auto,
        &[
            ("SENDGRID_API_KEY", "SG.test-key".into()),
            ("SENDGRID_FROM_EMAIL", "office@weathercraft.test".into()),
            ("SENDGRID_API_BASE", server.uri()),
            ("TWILIO_ACCOUNT_SID", "AC123".into()),
            ("TWILIO_AUTH_TOKEN", "twilio-token".into()),
            ("TWILIO_FROM_NUMBER", "+15550000".into()),
            ("TWILIO_API_BASE", server.uri()),
            (
                "SLACK_WEBHOOK_URL",
                format!("{}/services/T000/B000/XXXX", server.uri()),
            ),
        ],
    );
    let registry = registry(&config);
    let out = call(
        &registry,
        "sendgrid.send_email",
        json!({
            "to": "ada@example.test", "subject": "Your proposal", "text": "Hi Ada"
        }),
    )
    .await
    .unwrap();
    assert_eq!(out["dry_run"], false);
    let out = call(
        &registry,
        "twilio.send_sms",
        json!({"to": "+15550100", "body": "Crew arrives at 8"}),
    )
    .await
    .unwrap();
    assert_eq!(out["response"]["sid"], "SM1");
    let out = call(
        &registry,
        "slack.post_message",
        json!({"text": "Hail alert: 42 customers"}),
    )
    .await
    .unwrap();
    assert_eq!(out["response"], "ok");

    let requests = server.received_requests().await.unwrap();
    let mail: Value = serde_json::from_slice(&requests[0].body).unwrap();
    assert_eq!(
        mail,
        json!({
            "personalizations": [{"to": [{"email": "ada@example.test"}]}],
            "from": {"email": "office@weathercraft.test"},
            "subject": "Your proposal",
            "content": [{"type": "text/plain", "value": "Hi Ada"}]
        })
    );
    let sms = form(&requests[1]);
    assert_eq!(
        (
            sms["To"].as_str(),
            sms["From"].as_str(),
            sms["Body"].as_str()
        ),
        ("+15550100", "+15550000", "Crew arrives at 8")
    );
    let slack: Value = serde_json::from_slice(&requests[2].body).unwrap();
    assert_eq!(slack, json!({"text": "Hail alert: 42 customers"}));
}

#[tokio::test]
async fn vendor_errors_carry_the_vendors_message() {
    let server = MockServer::start().await;
    Mock::given(path("/v3/mail/send"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({"errors": [{
            "message": "The provided authorization grant is invalid, expired, or revoked", "field": null}]})))
        .mount(&server)
        .await;
    Mock::given(path("/2010-04-01/Accounts/AC123/Messages.json"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "code": 21211, "message": "The 'To' number 555 is not a valid phone number.", "status": 400})))
        .mount(&server)
        .await;
    Mock::given(path("/services/T/B/X"))
        .respond_with(ResponseTemplate::new(404).set_body_string("no_service"))
        .mount(&server)
        .await;
    let config = config(
        Mode::Live,
        &[
            ("SENDGRID_API_KEY", "SG.k".into()),
            ("SENDGRID_FROM_EMAIL", "o@x.test".into()),
            ("SENDGRID_API_BASE", server.uri()),
            ("TWILIO_ACCOUNT_SID", "AC123".into()),
            ("TWILIO_AUTH_TOKEN", "tok".into()),
            ("TWILIO_FROM_NUMBER", "+1".into()),
            ("TWILIO_API_BASE", server.uri()),
            (
                "SLACK_WEBHOOK_URL",
                format!("{}/services/T/B/X", server.uri()),
            ),
        ],
    );
    let registry = registry(&config);
    let err = call(
        &registry,
        "sendgrid.send_email",
        json!({"to": "a@x.test", "subject": "s", "text": "t"}),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().ends_with("SendGrid refused the request (HTTP 401): The provided authorization grant is invalid, expired, or revoked"), "{err}");
    let err = call(
        &registry,
        "twilio.send_sms",
        json!({"to": "555", "body": "hi"}),
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("(HTTP 400): The 'To' number 555 is not a valid phone number."),
        "{err}"
    );
    let err = call(&registry, "slack.post_message", json!({"text": "x"}))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .ends_with("Slack refused the request (HTTP 404): no_service"),
        "{err}"
    );
    assert!(!err.to_string().contains("/services/T/B/X"), "{err}");
}

#[tokio::test]
async fn task_tools_reach_clickup_notion_airtable_and_github() {
    let server = MockServer::start().await;
    for (p, auth) in [
        ("/api/v2/list/901/task", "pk_clickup"),
        ("/v1/pages", "Bearer secret_notion"),
        ("/v0/appBASE/Storm%20Leads", "Bearer pat_airtable"),
        ("/repos/weathercraft/erp/issues", "Bearer ghp_token"),
    ] {
        Mock::given(method("POST"))
            .and(path(p))
            .and(header("authorization", auth))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": p})))
            .expect(1)
            .mount(&server)
            .await;
    }
    let config = config(
        Mode::Auto,
        &[
            ("CLICKUP_API_KEY", "pk_clickup".into()),
            ("CLICKUP_LIST_ID", "901".into()),
            ("CLICKUP_API_BASE", server.uri()),
            ("NOTION_API_KEY", "secret_notion".into()),
            ("NOTION_DATABASE_ID", "db1".into()),
            ("NOTION_API_BASE", server.uri()),
            ("AIRTABLE_API_KEY", "pat_airtable".into()),
            ("AIRTABLE_BASE_ID", "appBASE".into()),
            ("AIRTABLE_TABLE", "Storm Leads".into()),
            ("AIRTABLE_API_BASE", server.uri()),
            ("GITHUB_TOKEN", "ghp_token".into()),
            ("GITHUB_REPOSITORY", "weathercraft/erp".into()),
            ("GITHUB_API_URL", server.uri()),
        ],
    );
    let registry = registry(&config);
    call(
        &registry,
        "clickup.create_task",
        json!({"name": "Inspect 12 Elm St", "priority": 2}),
    )
    .await
    .unwrap();
    call(
        &registry,
        "notion.create_page",
        json!({"title": "Storm Nov 20", "content": "42 customers"}),
    )
    .await
    .unwrap();
    call(
        &registry,
        "airtable.create_record",
        json!({"fields": {"Name": "Ada", "Hail": 1.5}}),
    )
    .await
    .unwrap();
    call(
        &registry,
        "github.create_issue",
        json!({"title": "Invoice total is NaN", "labels": ["bug"]}),
    )
    .await
    .unwrap();
    let requests = server.received_requests().await.unwrap();
    let bodies: Vec<Value> = requests
        .iter()
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect();
    assert_eq!(
        bodies[0],
        json!({"name": "Inspect 12 Elm St", "priority": 2})
    );
    assert_eq!(bodies[1]["parent"]["database_id"], "db1");
    assert_eq!(
        bodies[1]["properties"]["Name"]["title"][0]["text"]["content"],
        "Storm Nov 20"
    );
    assert_eq!(requests[1].headers["notion-version"], "2022-06-28");
    assert_eq!(
        bodies[2],
        json!({"records": [{"fields": {"Name": "Ada", "Hail": 1.5}}], "typecast": true})
    );
    assert_eq!(
        bodies[3],
        json!({"title": "Invoice total is NaN", "labels": ["bug"]})
    );
    assert_eq!(requests[3].headers["x-github-api-version"], "2022-11-28");
    assert!(requests[3].headers.contains_key("user-agent"));
}

#[tokio::test]
async fn dry_runs_record_what_would_be_sent_and_live_mode_needs_the_variables() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(&server)
        .await;

    // Auto without variables: recorded, with the reason.
    let auto = config(Mode::Auto, &[]);
    let out = call(
        &registry(&auto),
        "twilio.send_sms",
        json!({"to": "+15550100", "body": "hi"}),
    )
    .await
    .unwrap();
    assert_eq!(out["dry_run"], true);
    assert_eq!(out["reason"], "TWILIO_ACCOUNT_SID is not set");
    assert_eq!(auto.outbox.records().len(), 1);

    // Dry-run with every variable set: the full request is recorded, nothing is sent, and
    // neither the key nor the webhook's secret path appears.
    let dry = config(
        Mode::DryRun,
        &[
            ("STRIPE_SECRET_KEY", STRIPE_KEY.into()),
            ("STRIPE_API_BASE", server.uri()),
            (
                "SLACK_WEBHOOK_URL",
                format!("{}/services/T/B/SECRETPATH", server.uri()),
            ),
        ],
    );
    let dry_registry = registry(&dry);
    let out = call(
        &dry_registry,
        "stripe.create_payment_intent",
        json!({"amount_usd": 20}),
    )
    .await
    .unwrap();
    assert_eq!(
        out["requests"][0]["url"],
        format!("{}/v1/payment_intents", server.uri())
    );
    assert_eq!(out["requests"][0]["body"]["amount"], "2000");
    assert_eq!(out["idempotency_key"], "detached:0:t");
    let out = call(&dry_registry, "slack.post_message", json!({"text": "x"}))
        .await
        .unwrap();
    assert_eq!(out["requests"][0]["url"], format!("{}/***", server.uri()));
    let records = serde_json::to_string(&dry.outbox.records()).unwrap();
    assert!(
        !records.contains(STRIPE_KEY) && !records.contains("SECRETPATH"),
        "{records}"
    );

    // Live without variables: an error naming the variable and the way out.
    let live = config(Mode::Live, &[]);
    let err = call(
        &registry(&live),
        "stripe.create_customer",
        json!({"email": "a@x.test"}),
    )
    .await
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "stripe.create_customer: STRIPE_SECRET_KEY or STRIPE_API_KEY is not set; set it, or run with BRAINOPS_INTEGRATIONS=dry-run"
    );

    // Bad arguments are refused before anything is planned.
    let err = call(
        &registry(&live),
        "stripe.create_payment_intent",
        json!({"amount_usd": -5}),
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("`amount_usd` must be a positive amount"),
        "{err}"
    );
}

/// The charge's reply is slow; the run is dropped while it is in flight (as a killed process
/// would be) after Stripe created the intent. The resumed run calls again with the same
/// idempotency key, Stripe replays its first reply, and one intent exists.
#[tokio::test]
async fn a_resumed_run_never_charges_twice() {
    let server = MockServer::start().await;
    let intents = StripeIntents::default();
    Mock::given(method("POST"))
        .and(path("/v1/payment_intents"))
        .respond_with(SlowFirst {
            inner: intents.clone(),
            calls: Arc::default(),
        })
        .mount(&server)
        .await;
    let config = config(
        Mode::Live,
        &[
            ("STRIPE_SECRET_KEY", STRIPE_KEY.into()),
            ("STRIPE_API_BASE", server.uri()),
        ],
    );
    let registry = registry(&config);
    let graph = Arc::new(
        loader::load_str(
            r#"
[graph]
name = "deposit"
[state]
job = { type = "object" }
charge = { type = "object" }
[nodes.charge]
tool = "stripe.create_payment_intent"
args = { amount_usd = "state.job.deposit_usd", customer = "state.job.customer" }
output = "charge"
[[edges]]
from = "START"
to = "charge"
[[edges]]
from = "charge"
to = "END"
"#,
            "deposit.toml",
            &registry,
        )
        .unwrap(),
    );
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("checkpoints.db");
    let saver = Arc::new(SqliteSaver::open(&db).unwrap());
    let first = Runner::new(Arc::clone(&graph)).with_checkpointer(saver);
    let request = RunRequest::new()
        .thread("job-1042")
        .input(json!({"job": {"deposit_usd": 4500, "customer": "cus_ada"}}));
    let crashed = tokio::time::timeout(Duration::from_millis(400), first.invoke(request)).await;
    assert!(
        crashed.is_err(),
        "the first run should still be waiting on Stripe"
    );
    drop(first);

    let saver = Arc::new(SqliteSaver::open(&db).unwrap());
    let resumed = Runner::new(graph).with_checkpointer(saver);
    let outcome = resumed
        .invoke(RunRequest::new().thread("job-1042").takeover(true))
        .await;
    assert_eq!(
        outcome.state["charge"]["response"]["id"], "pi_1",
        "{outcome:?}"
    );

    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests.len(), 2, "the resumed task calls Stripe again");
    let keys: Vec<&str> = requests
        .iter()
        .map(|r| r.headers["idempotency-key"].to_str().unwrap())
        .collect();
    assert_eq!(
        keys[0], keys[1],
        "both calls carry the task's idempotency key"
    );
    assert!(keys[0].starts_with("job-1042:"), "{}", keys[0]);
    assert_eq!(
        intents.by_key.lock().unwrap().len(),
        1,
        "Stripe created one intent"
    );
}

/// Creates the intent at once but answers the first call only after 5 s.
struct SlowFirst {
    inner: StripeIntents,
    calls: Arc<Mutex<usize>>,
}

impl Respond for SlowFirst {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let mut calls = self.calls.lock().unwrap();
        *calls += 1;
        let response = self.inner.respond(request);
        if *calls == 1 {
            response.set_delay(Duration::from_secs(5))
        } else {
            response
        }
    }
}

#[tokio::test]
async fn task_tool_errors_carry_each_vendors_message() {
    let server = MockServer::start().await;
    let errors = [
        (
            "/api/v2/list/901/task",
            401,
            json!({"err": "Team not authorized", "ECODE": "OAUTH_027"}),
        ),
        (
            "/v1/pages",
            400,
            json!({"object": "error", "status": 400, "code": "validation_error",
            "message": "body failed validation: body.parent.database_id should be a valid uuid"}),
        ),
        (
            "/v0/appBASE/Leads",
            403,
            json!({"error": {"type": "INVALID_PERMISSIONS_OR_MODEL_NOT_FOUND",
            "message": "Invalid permissions, or the requested model was not found."}}),
        ),
        (
            "/repos/weathercraft/erp/issues",
            422,
            json!({"message": "Validation Failed",
            "errors": [{"resource": "Issue", "code": "missing_field", "field": "title"}],
            "documentation_url": "https://docs.github.com/rest/issues/issues#create-an-issue"}),
        ),
    ];
    for (p, status, body) in &errors {
        Mock::given(path(*p))
            .respond_with(ResponseTemplate::new(*status).set_body_json(body.clone()))
            .mount(&server)
            .await;
    }
    let config = config(
        Mode::Live,
        &[
            ("CLICKUP_API_KEY", "pk".into()),
            ("CLICKUP_LIST_ID", "901".into()),
            ("CLICKUP_API_BASE", server.uri()),
            ("NOTION_API_KEY", "secret_n".into()),
            ("NOTION_DATABASE_ID", "db1".into()),
            ("NOTION_API_BASE", server.uri()),
            ("AIRTABLE_API_KEY", "pat".into()),
            ("AIRTABLE_BASE_ID", "appBASE".into()),
            ("AIRTABLE_TABLE", "Leads".into()),
            ("AIRTABLE_API_BASE", server.uri()),
            ("GITHUB_TOKEN", "ghp".into()),
            ("GITHUB_REPOSITORY", "weathercraft/erp".into()),
            ("GITHUB_API_URL", server.uri()),
        ],
    );
    let registry = registry(&config);
    let cases = [
        (
            "clickup.create_task",
            json!({"name": "x"}),
            "ClickUp refused the request (HTTP 401): Team not authorized",
        ),
        (
            "notion.create_page",
            json!({"title": "x"}),
            "Notion refused the request (HTTP 400): body failed validation: body.parent.database_id should be a valid uuid",
        ),
        (
            "airtable.create_record",
            json!({"fields": {"Name": "x"}}),
            "Airtable refused the request (HTTP 403): Invalid permissions, or the requested model was not found.",
        ),
        (
            "github.create_issue",
            json!({"title": "x"}),
            "GitHub refused the request (HTTP 422): Validation Failed",
        ),
    ];
    for (tool, args, expected) in cases {
        let err = call(&registry, tool, args).await.unwrap_err();
        assert_eq!(err, NodeError::permanent(format!("{tool}: {expected}")));
    }
}
