//! Every integration records its calls in the thread's outbox (in the checkpoint store):
//! pending before sending, sent with the reply after. A run killed after the vendors
//! accepted the calls and before the tasks' writes reached the store (simulated by a store
//! that refuses every write from that moment, as a dead process would) is resumed by a fresh
//! runner: every task runs again, finds its call sent, and returns the recorded reply. Each
//! vendor receives each request exactly once, on SQLite and on Postgres.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../engine/tests/common/pg.rs"]
#[allow(dead_code)]
mod pg;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use agents::integrations::{IntegrationConfig, Mode};
use async_trait::async_trait;
use engine::checkpoint::{
    CheckpointError, CheckpointRecord, CheckpointSource, CheckpointSummary, Checkpointer, Lease,
    SideEffect, TaskWrites, ThreadInfo,
};
use engine::{Registry, RunRequest, RunStatus, Runner, SqliteSaver, loader};
use serde_json::{Map, Value, json};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

const GRAPH: &str = r#"
[graph]
name = "every_vendor"
[state]
stripe = { type = "object" }
email = { type = "object" }
sms = { type = "object" }
slack = { type = "object" }
clickup = { type = "object" }
notion = { type = "object" }
airtable = { type = "object" }
github = { type = "object" }
[nodes.stripe]
tool = "stripe.create_payment_intent"
args = { amount_usd = "4500", customer = "'cus_ada'" }
output = "stripe"
[nodes.email]
tool = "sendgrid.send_email"
args = { to = "'ada@example.test'", subject = "'Your proposal'", text = "'Hi Ada'" }
output = "email"
[nodes.sms]
tool = "twilio.send_sms"
args = { to = "'+15550100'", body = "'Crew arrives at 8'" }
output = "sms"
[nodes.slack]
tool = "slack.post_message"
args = { text = "'Hail alert'" }
output = "slack"
[nodes.clickup]
tool = "clickup.create_task"
args = { name = "'Inspect 12 Elm St'" }
output = "clickup"
[nodes.notion]
tool = "notion.create_page"
args = { title = "'Storm Nov 20'", content = "'42 customers'" }
output = "notion"
[nodes.airtable]
tool = "airtable.create_record"
args = { fields = "{'Name': 'Ada'}" }
output = "airtable"
[nodes.github]
tool = "github.create_issue"
args = { title = "'Invoice total is off'" }
output = "github"
"#;

const NODES: [&str; 8] = [
    "stripe", "email", "sms", "slack", "clickup", "notion", "airtable", "github",
];

/// The nodes above, all in one step: START to each, each to END.
fn graph_toml() -> String {
    let mut toml = GRAPH.to_string();
    for n in NODES {
        toml.push_str(&format!(
            "[[edges]]\nfrom = \"START\"\nto = \"{n}\"\n[[edges]]\nfrom = \"{n}\"\nto = \"END\"\n"
        ));
    }
    toml
}

/// The store as a process killed right after its tasks' calls were answered leaves it:
/// while `dead`, no task writes and no checkpoint reach it. The outbox and the thread rows
/// (which the dying run would also fail to write, harmlessly) pass through.
struct KilledAfterSend {
    inner: Arc<dyn Checkpointer>,
    dead: AtomicBool,
    /// Calls recorded as sent: the kill comes once every vendor has answered.
    sent: AtomicUsize,
}

impl KilledAfterSend {
    /// Holds the first task write until all eight calls were answered and recorded, so
    /// the kill falls between send and checkpoint for every integration.
    async fn until_all_sent(&self) {
        for _ in 0..400 {
            if self.sent.load(Ordering::SeqCst) >= NODES.len() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
    }
}

fn killed() -> CheckpointError {
    CheckpointError::Store("the process was killed".into())
}

#[async_trait]
impl Checkpointer for KilledAfterSend {
    async fn put(
        &self,
        r: &CheckpointRecord,
        lease: Option<&Lease>,
    ) -> Result<(), CheckpointError> {
        if self.dead.load(Ordering::SeqCst) && r.source != CheckpointSource::Input {
            return Err(killed());
        }
        self.inner.put(r, lease).await
    }
    async fn chain(
        &self,
        t: &str,
        upto: Option<u64>,
    ) -> Result<Vec<CheckpointRecord>, CheckpointError> {
        self.inner.chain(t, upto).await
    }
    async fn list(&self, t: &str) -> Result<Vec<CheckpointSummary>, CheckpointError> {
        self.inner.list(t).await
    }
    async fn put_writes(
        &self,
        t: &str,
        cp: u64,
        w: &TaskWrites,
        lease: Option<&Lease>,
    ) -> Result<(), CheckpointError> {
        if self.dead.load(Ordering::SeqCst) {
            self.until_all_sent().await;
            return Err(killed());
        }
        self.inner.put_writes(t, cp, w, lease).await
    }
    async fn writes(&self, t: &str, cp: u64) -> Result<Vec<TaskWrites>, CheckpointError> {
        self.inner.writes(t, cp).await
    }
    async fn put_thread(
        &self,
        info: &ThreadInfo,
        lease: Option<&Lease>,
    ) -> Result<(), CheckpointError> {
        self.inner.put_thread(info, lease).await
    }
    async fn claim(
        &self,
        t: &str,
        g: &str,
        expected: Option<&str>,
        lease: &Lease,
    ) -> Result<ThreadInfo, CheckpointError> {
        self.inner.claim(t, g, expected, lease).await
    }
    async fn renew(&self, t: &str, lease: &Lease) -> Result<(), CheckpointError> {
        self.inner.renew(t, lease).await
    }
    async fn thread(&self, t: &str) -> Result<Option<ThreadInfo>, CheckpointError> {
        self.inner.thread(t).await
    }
    async fn threads(&self) -> Result<Vec<ThreadInfo>, CheckpointError> {
        self.inner.threads().await
    }
    async fn delete_thread(&self, t: &str) -> Result<(), CheckpointError> {
        self.inner.delete_thread(t).await
    }
    async fn put_snapshot(
        &self,
        t: &str,
        cp: u64,
        s: &Map<String, Value>,
    ) -> Result<(), CheckpointError> {
        self.inner.put_snapshot(t, cp, s).await
    }
    async fn prune(&self, t: &str, keep: usize) -> Result<u64, CheckpointError> {
        self.inner.prune(t, keep).await
    }
    async fn expire(&self, before: u64) -> Result<Vec<String>, CheckpointError> {
        self.inner.expire(before).await
    }
    async fn side_effect(&self, t: &str, key: &str) -> Result<Option<SideEffect>, CheckpointError> {
        self.inner.side_effect(t, key).await
    }
    async fn put_side_effect(
        &self,
        t: &str,
        key: &str,
        e: &SideEffect,
    ) -> Result<(), CheckpointError> {
        self.inner.put_side_effect(t, key, e).await?;
        if e.status == engine::checkpoint::EffectStatus::Sent {
            self.sent.fetch_add(1, Ordering::SeqCst);
        }
        Ok(())
    }
}

async fn every_vendor_once(store: Arc<dyn Checkpointer>) {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(|r: &wiremock::Request| {
            ResponseTemplate::new(200).set_body_json(json!({"id": r.url.path()}))
        })
        .mount(&server)
        .await;
    let vars: HashMap<String, String> = [
        ("STRIPE_SECRET_KEY", "sk_test_outbox".to_string()),
        ("STRIPE_API_BASE", server.uri()),
        ("SENDGRID_API_KEY", "SG.outbox".into()),
        ("SENDGRID_FROM_EMAIL", "office@weathercraft.test".into()),
        ("SENDGRID_API_BASE", server.uri()),
        ("TWILIO_ACCOUNT_SID", "AC123".into()),
        ("TWILIO_AUTH_TOKEN", "twilio-token".into()),
        ("TWILIO_FROM_NUMBER", "+15550000".into()),
        ("TWILIO_API_BASE", server.uri()),
        (
            "SLACK_WEBHOOK_URL",
            format!("{}/services/T0/B0/X", server.uri()),
        ),
        ("CLICKUP_API_KEY", "pk_clickup".into()),
        ("CLICKUP_LIST_ID", "901".into()),
        ("CLICKUP_API_BASE", server.uri()),
        ("NOTION_API_KEY", "secret_notion".into()),
        ("NOTION_DATABASE_ID", "db1".into()),
        ("NOTION_API_BASE", server.uri()),
        ("AIRTABLE_API_KEY", "pat_airtable".into()),
        ("AIRTABLE_BASE_ID", "appBASE".into()),
        ("AIRTABLE_TABLE", "Leads".into()),
        ("AIRTABLE_API_BASE", server.uri()),
        ("GITHUB_TOKEN", "ghp_token".into()),
        ("GITHUB_REPOSITORY", "weathercraft/erp".into()),
        ("GITHUB_API_URL", server.uri()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let config = IntegrationConfig::with_vars(Mode::Live, move |name| vars.get(name).cloned());
    let mut registry = Registry::new();
    agents::integrations::register(&mut registry, &config);
    let graph = Arc::new(loader::load_str(&graph_toml(), "every_vendor.toml", &registry).unwrap());

    let dying = Arc::new(KilledAfterSend {
        inner: Arc::clone(&store),
        dead: AtomicBool::new(true),
        sent: AtomicUsize::new(0),
    });
    let first = Runner::new(Arc::clone(&graph))
        .with_checkpointer(dying)
        .invoke(RunRequest::new().thread("outbox-1").input(json!({})))
        .await;
    assert_eq!(first.status, RunStatus::Failed, "{first:?}");
    let sent_before = server.received_requests().await.unwrap().len();
    assert_eq!(
        sent_before, 8,
        "every vendor was called once before the kill"
    );

    let resumed = Runner::new(graph)
        .with_checkpointer(Arc::clone(&store))
        .invoke(RunRequest::new().thread("outbox-1").takeover(true))
        .await;
    assert_eq!(resumed.status, RunStatus::Done, "{:?}", resumed.error);
    let requests = server.received_requests().await.unwrap();
    let mut by_path: HashMap<String, usize> = HashMap::new();
    for r in &requests {
        *by_path.entry(r.url.path().to_string()).or_default() += 1;
    }
    assert_eq!(requests.len(), 8, "nothing was sent twice: {by_path:?}");
    // The resumed tasks return the replies recorded before the kill.
    assert_eq!(
        resumed.state["sms"]["response"]["id"],
        "/2010-04-01/Accounts/AC123/Messages.json"
    );
    assert_eq!(
        resumed.state["github"]["response"]["id"],
        "/repos/weathercraft/erp/issues"
    );
    assert_eq!(resumed.state["stripe"]["dry_run"], false);
}

#[tokio::test]
async fn every_integration_sends_once_across_a_kill_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Checkpointer> =
        Arc::new(SqliteSaver::open(dir.path().join("t.db")).unwrap());
    every_vendor_once(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_integration_sends_once_across_a_kill_on_postgres() {
    let name = pg::fresh_database().await;
    let url = pg::with_database(&pg::admin_url(), &name);
    let store: Arc<dyn Checkpointer> =
        Arc::new(engine::PostgresSaver::connect(&url).await.unwrap());
    every_vendor_once(store).await;
}
