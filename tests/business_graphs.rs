//! Every business graph in `graphs/` end to end with scripted models (deterministic test
//! doubles): the path each run takes, its final state, what integrations would have sent
//! (dry runs) and what was remembered.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::sync::Arc;

use agents::agent::ScriptedModels;
use agents::integrations::{IntegrationConfig, Mode};
use agents::llm::ScriptedModel;
use engine::{Event, MemorySaver, Registry, RunOutcome, RunRequest, RunStatus, Runner, loader};
use memory::{
    EmbeddedStore, HashingEmbedder, LazyMemories, Memories, MemoryStore, Namespace, Search,
};
use serde_json::{Value, json};

struct World {
    registry: Registry,
    outbox: agents::integrations::Outbox,
    store: Arc<EmbeddedStore>,
    runner: Option<Runner>,
    _dir: tempfile::TempDir,
}

/// Agents answer from `scripts` (agent name -> JSON answer); integrations have no
/// credentials, so they record instead of sending; memory is an embedded store.
fn world(scripts: &[(&str, Value)]) -> World {
    world_with(scripts, IntegrationConfig::with_vars(Mode::Auto, |_| None))
}

/// [`world`] with the integrations given (live ones, pointed at a local vendor server).
fn world_with(scripts: &[(&str, Value)], integrations: IntegrationConfig) -> World {
    let mut models = ScriptedModels::new();
    for (agent, answer) in scripts {
        models = models.agent(agent, ScriptedModel::new(agent).always_json(answer.clone()));
    }
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(
        EmbeddedStore::open(
            dir.path().join("memory.db"),
            Arc::new(HashingEmbedder::new(64)),
        )
        .unwrap(),
    );
    let outbox = integrations.outbox.clone();
    let (registry, _) = agents::Setup {
        models: Arc::new(models),
        memories: Some(LazyMemories::ready(Memories::new(
            Arc::clone(&store) as Arc<dyn MemoryStore>
        ))),
        integrations,
        ..agents::Setup::default()
    }
    .build()
    .unwrap();
    World {
        registry,
        outbox,
        store,
        runner: None,
        _dir: dir,
    }
}

impl World {
    fn load(&mut self, file: &str) {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("graphs")
            .join(file);
        let graph = loader::load_file(&path, &self.registry).unwrap_or_else(|e| panic!("{e}"));
        self.runner =
            Some(Runner::new(Arc::new(graph)).with_checkpointer(Arc::new(MemorySaver::new())));
    }

    /// Runs; returns the outcome and the steps it took (the nodes of each super-step).
    async fn run(&self, request: RunRequest) -> (RunOutcome, Vec<Vec<String>>) {
        let (sink, mut events) = engine::EventSink::channel();
        let outcome = self.runner.as_ref().unwrap().run(request, Some(sink)).await;
        let mut steps = Vec::new();
        while let Ok(Some(event)) =
            tokio::time::timeout(std::time::Duration::from_millis(20), events.next()).await
        {
            if let Event::StepStarted { mut nodes, .. } = event {
                nodes.sort();
                steps.push(nodes);
            }
        }
        if let Some(e) = &outcome.error {
            panic!("run failed: {e:?}");
        }
        (outcome, steps)
    }

    fn sent(&self, tool: &str) -> Vec<Value> {
        self.outbox
            .records()
            .into_iter()
            .filter(|r| r["tool"] == tool)
            .collect()
    }

    async fn memories(&self, namespace: &str) -> Vec<Value> {
        let hits = self
            .store
            .search(&Search::new(Namespace::parse(namespace).unwrap()).limit(10))
            .await
            .unwrap();
        hits.into_iter().map(|h| h.item.value).collect()
    }
}

fn steps(list: &[&[&str]]) -> Vec<Vec<String>> {
    list.iter()
        .map(|s| s.iter().map(|n| n.to_string()).collect())
        .collect()
}

async fn tool(world: &World, name: &str, args: Value) -> Value {
    world
        .registry
        .tool(name)
        .unwrap()
        .call(args, &engine::NodeContext::detached("check"))
        .await
        .unwrap()
}

fn ada() -> Value {
    json!({"lead": {
        "name": "Ada Park", "email": "ada@example.com", "source": "referral",
        "roof_age_years": 22, "damage_reported": true, "insurance_claim": true,
        "storm_hail_in": 1.25, "timeline_days": 21, "homeowner": true,
        "footprint_sqft": 2000, "pitch": 6, "roof_type": "gable"
    }})
}

fn lead_scripts(qualified: bool) -> Vec<(&'static str, Value)> {
    vec![
        (
            "revenue.lead_qualifier",
            json!({"qualified": qualified, "priority": if qualified { "hot" } else { "drop" },
            "reason": if qualified { "Hail damage on an old roof" } else { "Renter, cannot sign" }, "next_step": "Call today"}),
        ),
        (
            "revenue.proposal_writer",
            json!({"title": "Roof replacement proposal for Ada Park", "summary": "A new roof.",
            "scope_items": ["Tear-off", "New shingles"], "price_line": "See total", "call_to_action": "Reply YES"}),
        ),
        (
            "revenue.follow_up_writer",
            json!({"channel": "email", "subject": "Your proposal", "message": "Any questions?"}),
        ),
    ]
}

#[tokio::test]
async fn lead_to_proposal_prices_with_tools_waits_for_approval_then_sends() {
    let mut w = world(&lead_scripts(true));
    w.load("lead_to_proposal.toml");
    let (first, path) = w
        .run(RunRequest::new().thread("lead-ada").input(ada()))
        .await;
    assert_eq!(first.status, RunStatus::Interrupted);
    assert_eq!(
        path,
        steps(&[
            &["score"],
            &["qualify"],
            &["takeoff"],
            &["quote"],
            &["propose"],
            &["approve"]
        ])
    );
    // The numbers come from the tools, not the model.
    assert_eq!(first.state["score"]["grade"], "A");
    assert_eq!(first.state["takeoff"]["squares_with_waste"], 24.6);
    let quote = tool(&w, "roofing.quote", json!({"materials_usd": 24.6 * 150.0, "labor_usd": 24.6 * 210.0, "margin_pct": 30, "tax_rate_pct": 8.25})).await;
    assert_eq!(first.state["quote"], quote);
    assert!(
        w.sent("sendgrid.send_email").is_empty(),
        "nothing is sent before approval"
    );

    let (done, path) = w
        .run(
            RunRequest::new()
                .thread("lead-ada")
                .resume(json!("approve")),
        )
        .await;
    assert_eq!(done.status, RunStatus::Done);
    assert_eq!(
        path,
        steps(&[
            &["approve"],
            &["send"],
            &["follow_up"],
            &["sent"],
            &["remember"]
        ])
    );
    // No SENDGRID_API_KEY here: the e-mail is recorded, and the outcome does not claim it
    // went out.
    assert_eq!(
        done.state["outcome"],
        "proposal approved, e-mail not sent (dry run: SENDGRID_API_KEY is not set)"
    );
    assert_eq!(done.state["follow_up"]["channel"], "email");
    let emails = w.sent("sendgrid.send_email");
    assert_eq!(emails.len(), 1);
    assert_eq!(emails[0]["reason"], "SENDGRID_API_KEY is not set");
    assert_eq!(
        emails[0]["requests"][0]["arguments"]["to"],
        "ada@example.com"
    );
    assert_eq!(
        emails[0]["requests"][0]["arguments"]["subject"],
        "Roof replacement proposal for Ada Park"
    );
    let remembered = w.memories("tenant:weathercraft/customers").await;
    assert_eq!(remembered.len(), 1);
    let text = remembered[0]["text"].as_str().unwrap();
    assert!(
        text.starts_with("Ada Park: proposal approved, e-mail not sent (dry run: SENDGRID_API_KEY is not set) (quote $"),
        "{text}"
    );
    assert_eq!(remembered[0]["kind"], "episodic");
}

#[tokio::test]
async fn lead_to_proposal_says_sent_when_sendgrid_took_the_email() {
    use wiremock::matchers::{header, method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};
    // A local server speaking SendGrid's mail/send: 202 Accepted, empty body.
    let sendgrid = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v3/mail/send"))
        .and(header("authorization", "Bearer SG.test-key"))
        .respond_with(ResponseTemplate::new(202))
        .expect(1)
        .mount(&sendgrid)
        .await;
    let base = sendgrid.uri();
    let integrations = IntegrationConfig::with_vars(Mode::Live, move |name| match name {
        "SENDGRID_API_KEY" => Some("SG.test-key".into()),
        "SENDGRID_FROM_EMAIL" => Some("office@weathercraft.test".into()),
        "SENDGRID_API_BASE" => Some(base.clone()),
        _ => None,
    });
    let mut w = world_with(&lead_scripts(true), integrations);
    w.load("lead_to_proposal.toml");
    w.run(RunRequest::new().thread("lead-ada").input(ada()))
        .await;
    let (done, _) = w
        .run(
            RunRequest::new()
                .thread("lead-ada")
                .resume(json!("approve")),
        )
        .await;
    assert_eq!(done.state["email"]["dry_run"], false);
    assert_eq!(done.state["outcome"], "proposal sent");
    assert!(
        w.sent("sendgrid.send_email").is_empty(),
        "sent, not recorded"
    );
}

#[tokio::test]
async fn lead_to_proposal_archives_an_unqualified_lead() {
    let mut w = world(&lead_scripts(false));
    w.load("lead_to_proposal.toml");
    let mut renter = ada();
    renter["lead"]["homeowner"] = json!(false);
    renter["lead"]["damage_reported"] = json!(false);
    renter["lead"]["insurance_claim"] = json!(false);
    let (done, path) = w
        .run(RunRequest::new().thread("lead-x").input(renter))
        .await;
    assert_eq!(done.status, RunStatus::Done);
    assert_eq!(
        path,
        steps(&[&["score"], &["qualify"], &["not_qualified"], &["remember"]])
    );
    assert_eq!(done.state["score"]["grade"], "C");
    assert_eq!(
        done.state["outcome"],
        "not qualified (grade C): Renter, cannot sign"
    );
    assert!(w.outbox.records().is_empty());
}

fn storm(reports: Value) -> Value {
    json!({
        "storm": {"date": "2026-11-20", "reports": reports},
        "customers": [
            {"id": "c1", "name": "Ada Park", "phone": "+15550101", "lat": 39.75, "lon": -104.98, "roof_age_years": 22, "material": "asphalt"},
            {"id": "c2", "name": "Bo Chen", "phone": "+15550102", "lat": 39.74, "lon": -104.97, "roof_age_years": 2, "material": "architectural"},
            {"id": "c3", "name": "Cy Ruiz", "phone": "+15550103", "lat": 39.73, "lon": -105.00, "roof_age_years": 3, "material": "metal"},
            {"id": "c4", "name": "Di Far", "phone": "+15550104", "lat": 40.50, "lon": -105.27, "roof_age_years": 25, "material": "asphalt"}
        ],
        "crews": [{"id": "inspector-1", "lat": 39.70, "lon": -104.95, "skills": ["inspection"]}],
        "days": [{"date": "2026-11-21"}, {"date": "2026-11-22", "workable": false}, {"date": "2026-11-23"}]
    })
}

fn storm_scripts() -> Vec<(&'static str, Value)> {
    vec![
        (
            "industry.storm_report_summarizer",
            json!({"summary": "Golf-ball hail in central Denver.", "worst_areas": ["Capitol Hill"], "hail_max_in": 1.75}),
        ),
        (
            "marketing.storm_campaign_planner",
            json!({"audience": "Likely damaged roofs", "message": "Free inspections", "channels": ["sms"], "send_window": "48 hours"}),
        ),
    ]
}

#[tokio::test]
async fn storm_response_books_inspections_and_texts_each_booked_customer() {
    let mut w = world(&storm_scripts());
    w.load("storm_response.toml");
    let input = storm(
        json!([{"place": "Capitol Hill", "lat": 39.74, "lon": -104.99, "hail_in": 1.75, "wind_mph": 55}]),
    );
    let (done, path) = w.run(RunRequest::new().input(input)).await;
    assert_eq!(done.status, RunStatus::Done);
    assert_eq!(
        path,
        steps(&[
            &["find_affected", "summarize"],
            &["assess"],
            &["book_inspections"],
            &["plan_campaign", "text_customers"],
            &["alert_office"],
        ])
    );
    // c1 (old asphalt) and c2 (new architectural) are likely damaged; metal (0.5) makes
    // the 0.5 floor; c4 is 50 miles away.
    let ids: Vec<&str> = done.state["affected"]["customers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["c1", "c2", "c3"]);
    // One inspector, two workable days: two booked, one waits; nobody on the rain day.
    let assignments = done.state["schedule"]["assignments"].as_array().unwrap();
    assert_eq!(assignments.len(), 2);
    assert_eq!(assignments[0]["job"], "c1");
    assert_eq!(assignments[0]["dates"], json!(["2026-11-21"]));
    assert_eq!(assignments[1]["dates"], json!(["2026-11-23"]));
    assert_eq!(done.state["schedule"]["unscheduled"][0]["job"], "c3");
    let texts = w.sent("twilio.send_sms");
    assert_eq!(texts.len(), 2);
    let to: Vec<&str> = texts
        .iter()
        .map(|t| t["requests"][0]["arguments"]["to"].as_str().unwrap())
        .collect();
    assert!(
        to.contains(&"+15550101") && to.contains(&"+15550102"),
        "{to:?}"
    );
    assert!(
        texts[0]["requests"][0]["arguments"]["body"]
            .as_str()
            .unwrap()
            .contains("free roof inspection")
    );
    let alert = &w.sent("slack.post_message")[0]["requests"][0]["arguments"]["text"];
    assert_eq!(
        alert,
        "Storm 2026-11-20: 3 customers likely damaged, 2 inspections booked, 1 waiting. Golf-ball hail in central Denver."
    );
    assert_eq!(done.state["campaign"]["channels"], json!(["sms"]));
}

#[tokio::test]
async fn storm_response_gives_the_all_clear_when_no_roof_is_at_risk() {
    let mut w = world(&storm_scripts());
    w.load("storm_response.toml");
    let input = storm(json!([{"place": "Plains", "lat": 38.0, "lon": -103.0, "hail_in": 0.5}]));
    let (done, path) = w.run(RunRequest::new().input(input)).await;
    assert_eq!(
        path,
        steps(&[&["find_affected", "summarize"], &["assess"], &["all_clear"]])
    );
    assert_eq!(done.state["status"], "all clear");
    assert!(w.sent("twilio.send_sms").is_empty());
}

fn invoice(payments: Value) -> Value {
    json!({
        "customer": {"id": "c-17", "name": "Ada Park", "email": "ada@example.com", "stripe_id": "cus_Q1"},
        "job": {"id": "J-1042", "invoice_id": "INV-1042", "tax_rate_pct": 8, "deposit_usd": 3000, "days_overdue": 20,
            "line_items": [
                {"description": "Shingles, 30 squares", "quantity": 30, "unit_price_usd": 120},
                {"description": "Labour", "quantity": 30, "unit_price_usd": 180, "taxable": false},
                {"description": "Dumpster", "quantity": 1, "unit_price_usd": 450}
            ]},
        "payments": payments
    })
}

fn invoice_scripts() -> Vec<(&'static str, Value)> {
    vec![
        (
            "financial.invoice_drafter",
            json!({"memo": "Thank you.", "payment_terms": "Net 15", "line_summary": "roof replacement"}),
        ),
        (
            "financial.collections_follow_up",
            json!({"tone": "firm", "subject": "INV-1042 is overdue", "message": "Please pay the balance."}),
        ),
    ]
}

#[tokio::test]
async fn invoice_collections_bills_reconciles_and_reminds() {
    let mut w = world(&invoice_scripts());
    w.load("invoice_collections.toml");
    let (done, path) = w
        .run(RunRequest::new().input(invoice(
            json!([{"id": "p-1", "amount_usd": 1000, "invoice": "INV-1042"}]),
        )))
        .await;
    assert_eq!(
        path,
        steps(&[
            &["totals"],
            &["memo"],
            &["bill"],
            &["reconcile"],
            &["remind"],
            &["send_reminder"],
            &["reminded"]
        ])
    );
    // 9450 subtotal + 8% on 4050 taxable = 9774; less the 3000 deposit = 6774 due.
    assert_eq!(done.state["totals"]["balance_due_usd"], 6774.0);
    assert_eq!(
        done.state["reconciliation"]["invoices"][0]["balance_usd"],
        5774.0
    );
    assert_eq!(
        done.state["status"],
        "reminder sent (firm), $5774 outstanding"
    );
    let bill = &w.sent("stripe.create_invoice")[0];
    assert_eq!(
        bill["requests"][0]["arguments"]["items"][0]["amount_usd"],
        6774.0
    );
    assert_eq!(
        bill["requests"][0]["arguments"]["items"][0]["description"],
        "Roofing job J-1042: roof replacement"
    );
    assert_eq!(
        w.sent("sendgrid.send_email")[0]["requests"][0]["arguments"]["subject"],
        "INV-1042 is overdue"
    );
}

#[tokio::test]
async fn invoice_collections_stops_when_paid_in_full() {
    let mut w = world(&invoice_scripts());
    w.load("invoice_collections.toml");
    let (done, path) = w
        .run(RunRequest::new().input(invoice(json!([{"id": "p-1", "amount_usd": 6774}]))))
        .await;
    assert_eq!(
        path,
        steps(&[&["totals"], &["memo"], &["bill"], &["reconcile"], &["paid"]])
    );
    assert_eq!(done.state["status"], "paid in full");
    assert!(w.sent("sendgrid.send_email").is_empty());
}

fn ticket(message: &str) -> Value {
    json!({"customer": {"id": "c-17", "name": "Cy Ruiz", "email": "cy@example.com", "job": {"install_date": "2026-12-03"}}, "message": message})
}

#[tokio::test]
async fn support_triage_answers_routine_questions_with_the_agent() {
    let mut w = world(&[
        (
            "customer.support_triager",
            json!({"category": "scheduling", "urgency": "normal", "escalate": false, "summary": "Asks for the install date"}),
        ),
        (
            "customer.support_responder",
            json!({"reply": "Your install is on December 3.", "needs_human": false}),
        ),
    ]);
    w.load("support_triage.toml");
    let (done, path) = w
        .run(
            RunRequest::new()
                .thread("t-1")
                .input(ticket("When is my install?")),
        )
        .await;
    assert_eq!(
        path,
        steps(&[
            &["recall"],
            &["triage"],
            &["respond"],
            &["agent_answered"],
            &["send"],
            &["remember"]
        ])
    );
    assert_eq!(done.state["handled_by"], "agent");
    assert_eq!(
        w.sent("sendgrid.send_email")[0]["requests"][0]["arguments"]["text"],
        "Your install is on December 3."
    );
    let remembered = w.memories("tenant:weathercraft/customer:c-17").await;
    assert_eq!(
        remembered[0]["text"],
        "Asked: When is my install? Answered (agent): Your install is on December 3."
    );

    // The next message recalls that exchange and shows it to the triager.
    let (again, _) = w
        .run(
            RunRequest::new()
                .thread("t-2")
                .input(ticket("Is my install still December 3?")),
        )
        .await;
    assert_eq!(again.state["history"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn support_triage_escalates_an_emergency_to_a_person() {
    let mut w = world(&[
        (
            "customer.support_triager",
            json!({"category": "leak_emergency", "urgency": "emergency", "escalate": true, "summary": "Water through the ceiling"}),
        ),
        (
            "customer.support_responder",
            json!({"reply": "unused", "needs_human": false}),
        ),
    ]);
    w.load("support_triage.toml");
    let (paused, path) = w
        .run(
            RunRequest::new()
                .thread("t-9")
                .input(ticket("Water is coming through my ceiling!")),
        )
        .await;
    assert_eq!(paused.status, RunStatus::Interrupted);
    assert_eq!(
        path,
        steps(&[&["recall"], &["triage"], &["alert_office"], &["human"]])
    );
    let alert = &w.sent("slack.post_message")[0]["requests"][0]["arguments"]["text"];
    assert_eq!(
        alert,
        "Support escalation (emergency, leak_emergency) from Cy Ruiz: Water through the ceiling"
    );
    let (done, path) = w
        .run(
            RunRequest::new()
                .thread("t-9")
                .resume(json!("A crew is on its way with tarps.")),
        )
        .await;
    assert_eq!(
        path,
        steps(&[&["human"], &["human_answered"], &["send"], &["remember"]])
    );
    assert_eq!(done.state["handled_by"], "human");
    assert_eq!(
        w.sent("sendgrid.send_email")[0]["requests"][0]["arguments"]["text"],
        "A crew is on its way with tarps."
    );
}

fn logins(compromised: bool) -> Value {
    let mut events: Vec<Value> = (0..12)
        .map(|i| json!({"ts": 1_800_000_000 + i * 10, "ip": "203.0.113.9", "user": "ops@weathercraft.example", "success": false}))
        .collect();
    if compromised {
        events.push(json!({"ts": 1_800_000_130, "ip": "203.0.113.9", "user": "ops@weathercraft.example", "success": true}));
    }
    events.push(json!({"ts": 1_800_000_000, "ip": "198.51.100.4", "user": "ada", "success": true}));
    json!({"events": events})
}

fn security_scripts() -> Vec<(&'static str, Value)> {
    vec![
        (
            "security.suspicious_login_triager",
            json!({"verdict": "attack", "severity": "critical", "summary": "Account takeover likely on ops.", "actions": ["Lock ops", "Block 203.0.113.9"]}),
        ),
        (
            "security.incident_notifier",
            json!({"audience": "internal", "subject": "Login attack on ops", "message": "We blocked it."}),
        ),
    ]
}

#[tokio::test]
async fn security_incident_alerts_tickets_and_asks_before_locking() {
    let mut w = world(&security_scripts());
    w.load("security_incident.toml");
    let (paused, path) = w
        .run(RunRequest::new().thread("sec-1").input(logins(true)))
        .await;
    assert_eq!(paused.status, RunStatus::Interrupted);
    assert_eq!(
        path,
        steps(&[
            &["detect"],
            &["triage"],
            &["alert", "notify", "ticket"],
            &["contained"],
            &["approve_lock"]
        ])
    );
    let kinds: Vec<&str> = paused.state["detection"]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["possible_compromise", "brute_force"]);
    let issue = &w.sent("github.create_issue")[0]["requests"][0]["arguments"];
    assert_eq!(
        issue["title"],
        "Security: possible_compromise from 203.0.113.9"
    );
    assert_eq!(
        issue["body"],
        "Account takeover likely on ops.\n\nActions:\n- Lock ops\n- Block 203.0.113.9"
    );
    assert_eq!(issue["labels"], json!(["security", "critical"]));
    let (done, path) = w
        .run(RunRequest::new().thread("sec-1").resume(json!("lock")))
        .await;
    assert_eq!(path, steps(&[&["approve_lock"], &["locked"]]));
    assert_eq!(done.state["status"], "account locked on approval");
}

#[tokio::test]
async fn security_incident_is_quiet_without_an_attack() {
    let mut w = world(&security_scripts());
    w.load("security_incident.toml");
    let quiet = json!({"events": [{"ts": 1_800_000_000, "ip": "198.51.100.4", "user": "ada", "success": true}]});
    let (done, path) = w.run(RunRequest::new().thread("sec-2").input(quiet)).await;
    assert_eq!(path, steps(&[&["detect"], &["quiet"]]));
    assert_eq!(done.state["status"], "no attack in 1 login events");
    assert!(w.outbox.records().is_empty());
}

#[tokio::test]
async fn content_campaign_writes_in_parallel_then_publishes_on_approval() {
    let mut w = world(&[
        (
            "marketing.seo_brief_writer",
            json!({"title": "Spotting Hail Damage in Denver", "target_keyword": "hail damage denver",
            "outline": ["What hail does", "When to call"], "meta_description": "Learn to spot hail damage."}),
        ),
        (
            "marketing.content_calendar_planner",
            json!({"posts": ["Week 1: checklist"]}),
        ),
        (
            "marketing.social_post_writer",
            json!({"platform": "facebook", "post": "Free inspections!", "hashtags": ["#Denver"]}),
        ),
    ]);
    w.load("content_campaign.toml");
    let input = json!({"topic": "hail damage roof inspection", "city": "Denver", "month": "March"});
    let (paused, path) = w.run(RunRequest::new().thread("mkt-1").input(input)).await;
    assert_eq!(
        path,
        steps(&[&["brief", "calendar"], &["social"], &["review"]])
    );
    assert_eq!(
        paused.state["posts"].as_array().unwrap().len(),
        2,
        "one post per platform"
    );
    let (done, path) = w
        .run(RunRequest::new().thread("mkt-1").resume(json!("approve")))
        .await;
    assert_eq!(path, steps(&[&["review"], &["publish"], &["published"]]));
    assert_eq!(done.state["status"], "approved and queued for publishing");
    let task = &w.sent("clickup.create_task")[0]["requests"][0]["arguments"];
    assert_eq!(task["name"], "Publish: Spotting Hail Damage in Denver");
    assert_eq!(
        task["description"],
        "Keyword: hail damage denver\nOutline:\n- What hail does\n- When to call\n\nPosts: 2"
    );
}
