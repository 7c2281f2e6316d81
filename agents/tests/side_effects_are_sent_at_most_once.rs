//! Every integration records its calls in the thread's outbox (in the checkpoint store):
//! pending before sending, sent with the reply after. A run killed after the vendors
//! accepted the calls and before the tasks' writes reached the store (simulated by a store
//! that refuses every write from that moment, as a dead process would) is resumed by a fresh
//! runner: every task runs again, finds its call sent, and returns the recorded reply. Each
//! vendor receives each request exactly once, on SQLite and on Postgres.
//!
//! Then the same with real SIGKILLs: a child process (this test binary, started with
//! `BRAINOPS_OUTBOX_CHILD` set) runs the integrations one after another and is killed the
//! moment each call is recorded as sent, before its task's writes are saved; a fresh
//! process continues the thread each time. Every integration is hit by one kill.
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
    /// A real kill instead: the process SIGKILLs itself as soon as a call is recorded sent.
    sigkill_on_sent: bool,
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
            if self.sigkill_on_sent {
                let pid = std::process::id().to_string();
                let _ = std::process::Command::new("kill")
                    .args(["-KILL", &pid])
                    .status();
                // The signal is on its way; nothing after the call may reach the store.
                std::future::pending::<()>().await;
            }
        }
        Ok(())
    }
}

/// Every integration live, each vendor's base URL pointing at `uri`.
fn live_registry(uri: &str) -> Registry {
    let uri = uri.to_string();
    let vars: HashMap<String, String> = [
        ("STRIPE_SECRET_KEY", "sk_test_outbox".to_string()),
        ("STRIPE_API_BASE", uri.clone()),
        ("SENDGRID_API_KEY", "SG.outbox".into()),
        ("SENDGRID_FROM_EMAIL", "office@weathercraft.test".into()),
        ("SENDGRID_API_BASE", uri.clone()),
        ("TWILIO_ACCOUNT_SID", "AC123".into()),
        ("TWILIO_AUTH_TOKEN", "twilio-token".into()),
        ("TWILIO_FROM_NUMBER", "+15550000".into()),
        ("TWILIO_API_BASE", uri.clone()),
        ("SLACK_WEBHOOK_URL", format!("{uri}/services/T0/B0/X")),
        ("CLICKUP_API_KEY", "pk_clickup".into()),
        ("CLICKUP_LIST_ID", "901".into()),
        ("CLICKUP_API_BASE", uri.clone()),
        ("NOTION_API_KEY", "secret_notion".into()),
        ("NOTION_DATABASE_ID", "db1".into()),
        ("NOTION_API_BASE", uri.clone()),
        ("AIRTABLE_API_KEY", "pat_airtable".into()),
        ("AIRTABLE_BASE_ID", "appBASE".into()),
        ("AIRTABLE_TABLE", "Leads".into()),
        ("AIRTABLE_API_BASE", uri.clone()),
        ("GITHUB_TOKEN", "ghp_token".into()),
        ("GITHUB_REPOSITORY", "weathercraft/erp".into()),
        ("GITHUB_API_URL", uri.clone()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let config = IntegrationConfig::with_vars(Mode::Live, move |name| vars.get(name).cloned());
    let mut registry = Registry::new();
    agents::integrations::register(&mut registry, &config);
    registry
}

async fn every_vendor_once(store: Arc<dyn Checkpointer>) {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(|r: &wiremock::Request| {
            ResponseTemplate::new(200).set_body_json(json!({"id": r.url.path()}))
        })
        .mount(&server)
        .await;
    let registry = live_registry(&server.uri());
    let graph = Arc::new(loader::load_str(&graph_toml(), "every_vendor.toml", &registry).unwrap());

    let dying = Arc::new(KilledAfterSend {
        inner: Arc::clone(&store),
        dead: AtomicBool::new(true),
        sent: AtomicUsize::new(0),
        sigkill_on_sent: false,
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

/// The nodes above, one after another: START, stripe, email, …, github, END.
fn chain_toml() -> String {
    let mut toml = GRAPH.replace("\"every_vendor\"", "\"every_vendor_in_turn\"");
    let mut from = "START";
    for n in NODES.iter().copied().chain(["END"]) {
        toml.push_str(&format!("[[edges]]\nfrom = \"{from}\"\nto = \"{n}\"\n"));
        from = n;
    }
    toml
}

/// The child process: continues the thread until it is done or killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbox_kill_child() {
    let (Ok(url), Ok(vendor)) = (
        std::env::var("BRAINOPS_OUTBOX_CHILD"),
        std::env::var("BRAINOPS_OUTBOX_VENDOR"),
    ) else {
        return; // Not started as a child: nothing to do.
    };
    let registry = live_registry(&vendor);
    let graph = Arc::new(loader::load_str(&chain_toml(), "in_turn.toml", &registry).unwrap());
    let store: Arc<dyn Checkpointer> =
        Arc::new(engine::PostgresSaver::connect(&url).await.unwrap());
    let fresh = store.list("in-turn").await.unwrap().is_empty();
    let dying = Arc::new(KilledAfterSend {
        inner: store,
        dead: AtomicBool::new(false),
        sent: AtomicUsize::new(0),
        sigkill_on_sent: true,
    });
    let mut request = RunRequest::new().thread("in-turn");
    request = if fresh {
        request.input(json!({}))
    } else {
        // The killed process still holds the thread's lease.
        request.takeover(true)
    };
    let outcome = Runner::new(graph)
        .with_checkpointer(dying)
        .invoke(request)
        .await;
    assert_eq!(outcome.status, RunStatus::Done, "{:?}", outcome.error);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_between_send_and_checkpoint_sends_every_integration_once() {
    use std::os::unix::process::ExitStatusExt;

    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(|r: &wiremock::Request| {
            ResponseTemplate::new(200).set_body_json(json!({"id": r.url.path()}))
        })
        .mount(&server)
        .await;
    let name = pg::fresh_database().await;
    let url = pg::with_database(&pg::admin_url(), &name);
    let exe = std::env::current_exe().unwrap();

    let mut kills = Vec::new();
    loop {
        let out = std::process::Command::new(&exe)
            .args([
                "--exact",
                "outbox_kill_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("BRAINOPS_OUTBOX_CHILD", &url)
            .env("BRAINOPS_OUTBOX_VENDOR", server.uri())
            .stdout(std::process::Stdio::null())
            .output()
            .unwrap();
        if out.status.success() {
            break;
        }
        assert_eq!(
            out.status.signal(),
            Some(9),
            "the child failed instead of being killed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let sent = server.received_requests().await.unwrap();
        kills.push(
            sent.last()
                .map(|r| r.url.path().to_string())
                .unwrap_or_default(),
        );
        assert!(
            kills.len() <= NODES.len(),
            "more kills than calls: {kills:?}"
        );
    }
    eprintln!("killed after: {kills:?}");
    // One kill per integration, each right after its call was answered and recorded.
    assert_eq!(kills.len(), NODES.len(), "{kills:?}");
    let requests = server.received_requests().await.unwrap();
    let mut by_path: HashMap<String, usize> = HashMap::new();
    for r in &requests {
        *by_path.entry(r.url.path().to_string()).or_default() += 1;
    }
    assert_eq!(
        requests.len(),
        NODES.len(),
        "nothing was sent twice: {by_path:?}"
    );
    assert!(by_path.values().all(|n| *n == 1), "{by_path:?}");

    // The finished thread holds every vendor's recorded reply.
    let registry = live_registry(&server.uri());
    let graph = Arc::new(loader::load_str(&chain_toml(), "in_turn.toml", &registry).unwrap());
    let store: Arc<dyn Checkpointer> =
        Arc::new(engine::PostgresSaver::connect(&url).await.unwrap());
    let state = Runner::new(graph)
        .with_checkpointer(store)
        .state("in-turn", None)
        .await
        .unwrap()
        .values;
    for n in NODES {
        assert!(
            state[n]["response"]["id"]
                .as_str()
                .is_some_and(|id| id.starts_with('/')),
            "{n}: {}",
            state[n]
        );
    }
    assert_eq!(
        state["sms"]["response"]["id"],
        "/2010-04-01/Accounts/AC123/Messages.json"
    );
}
