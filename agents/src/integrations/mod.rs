//! Integration tools: the business's outside services as graph tools.
//!
//! Stripe (customers, invoices, payment intents), SendGrid (email), Twilio (SMS), Slack
//! (incoming webhook), and task tools for ClickUp, Notion, Airtable and GitHub issues. Each
//! is configured by the variable names the backend already uses (`STRIPE_SECRET_KEY`,
//! `SENDGRID_API_KEY`, `TWILIO_ACCOUNT_SID`/`TWILIO_AUTH_TOKEN`, `SLACK_WEBHOOK_URL`, ...).
//!
//! **Modes** (`BRAINOPS_INTEGRATIONS`): `auto` (default) sends when a service's variables are
//! set and otherwise records what it would have sent; `live` makes missing variables an
//! error; `dry-run` never sends. A dry run returns `{"dry_run": true, "reason", "requests"}`
//! and adds the requests to the [`Outbox`], so a run on a laptop shows every email, text and
//! charge it would have made.
//!
//! **Idempotency:** Stripe requests carry an `Idempotency-Key` derived from the task's
//! idempotency key, which is the same when a task is retried or its run resumed, so a
//! resumed run never charges twice.
//!
//! Keys never appear in results, events, logs or errors; the Slack webhook URL (itself a
//! secret) is shown without its path.

mod vendors;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use engine::events::{IntegrationCall, Progress};
use engine::{Node, NodeContext, NodeError, Registry, ToolInfo};
use serde_json::{Value, json};
use tracing::Instrument;

use crate::llm::ApiKey;

/// Whether integration tools send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Send when configured, otherwise record.
    Auto,
    /// Always send; missing configuration is an error.
    Live,
    /// Never send; record.
    DryRun,
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" | "" => Ok(Mode::Auto),
            "live" => Ok(Mode::Live),
            "dry-run" | "dry_run" | "dryrun" => Ok(Mode::DryRun),
            other => Err(format!(
                "integration mode `{other}`: use auto, live or dry-run"
            )),
        }
    }
}

type Lookup = dyn Fn(&str) -> Option<String> + Send + Sync;

/// How integration tools are configured: mode, where variables come from, timeouts.
#[derive(Clone)]
pub struct IntegrationConfig {
    /// Live, or recording only.
    pub mode: Mode,
    vars: Arc<Lookup>,
    /// How long one vendor call may take.
    pub timeout: Duration,
    /// What dry runs recorded, in this process.
    pub outbox: Outbox,
}

impl std::fmt::Debug for IntegrationConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IntegrationConfig")
            .field("mode", &self.mode)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Default for IntegrationConfig {
    /// Mode from `BRAINOPS_INTEGRATIONS` (an unknown value is treated as `dry-run`, the
    /// safe choice, and logged); variables from the process environment.
    fn default() -> Self {
        let mode = match std::env::var("BRAINOPS_INTEGRATIONS") {
            Ok(v) => v.parse().unwrap_or_else(|e: String| {
                tracing::warn!("{e}; sending nothing (dry-run)");
                Mode::DryRun
            }),
            Err(_) => Mode::Auto,
        };
        IntegrationConfig::with_vars(mode, |name| {
            std::env::var(name).ok().filter(|v| !v.trim().is_empty())
        })
    }
}

impl IntegrationConfig {
    /// A configuration reading variables through `vars` (tests, or a backend's own secret
    /// store) instead of the environment.
    pub fn with_vars(
        mode: Mode,
        vars: impl Fn(&str) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        IntegrationConfig {
            mode,
            vars: Arc::new(vars),
            timeout: Duration::from_secs(30),
            outbox: Outbox::default(),
        }
    }

    fn var(&self, names: &[&str]) -> Option<String> {
        names.iter().find_map(|n| (self.vars)(n))
    }
}

/// The requests dry runs did not send, in order: the latest [`Outbox::CAPACITY`], so a
/// long-running backend without keys does not grow without bound. Each record is also in
/// the run's events and in the tool's result.
#[derive(Clone, Default, Debug)]
pub struct Outbox(Arc<Mutex<VecDeque<Value>>>);

impl Outbox {
    /// The most records kept.
    pub const CAPACITY: usize = 1000;

    /// The records kept, oldest first.
    pub fn records(&self) -> Vec<Value> {
        self.0
            .lock()
            .map(|r| r.iter().cloned().collect())
            .unwrap_or_default()
    }

    fn push(&self, record: Value) {
        if let Ok(mut r) = self.0.lock() {
            if r.len() == Self::CAPACITY {
                r.pop_front();
            }
            r.push_back(record);
        }
    }
}

/// How a request proves who sends it.
enum Auth {
    Bearer(ApiKey),
    /// The key as the whole `Authorization` header (ClickUp).
    Raw(ApiKey),
    Basic(String, ApiKey),
    /// The URL itself is the secret (Slack webhooks).
    None,
}

enum Body {
    Json(Value),
    Form(Vec<(String, String)>),
}

/// One HTTP request a tool makes.
struct Request {
    url: String,
    /// The URL as shown in results and errors (no secret path).
    shown_url: String,
    body: Body,
    headers: Vec<(&'static str, String)>,
}

/// What a tool's arguments and the configuration turn into.
struct Plan {
    auth: Auth,
    requests: Vec<Request>,
}

/// Why a tool cannot make its requests.
enum PlanError {
    /// Configuration is missing (which variables, by name): a dry run can still record.
    Missing(String),
    /// The arguments are wrong: an error in every mode.
    Invalid(String),
}

impl From<String> for PlanError {
    fn from(message: String) -> Self {
        PlanError::Invalid(message)
    }
}

impl From<&str> for PlanError {
    fn from(message: &str) -> Self {
        PlanError::Invalid(message.to_string())
    }
}

type Planner = fn(&Value, &Vars<'_>, &str) -> Result<Plan, PlanError>;

/// Variable lookup handed to planners.
struct Vars<'a>(&'a IntegrationConfig);

impl Vars<'_> {
    fn get(&self, names: &[&str]) -> Option<String> {
        self.0.var(names)
    }
    fn key(&self, names: &[&str]) -> Result<ApiKey, PlanError> {
        self.get(names)
            .map(ApiKey::new)
            .ok_or_else(|| PlanError::Missing(format!("{} is not set", names.join(" or "))))
    }
}

/// A tool that sends one or more requests to a vendor.
struct Integration {
    name: &'static str,
    vendor: &'static str,
    plan: Planner,
    config: IntegrationConfig,
    /// Shared by every integration; built on the first live call.
    client: Arc<OnceLock<reqwest::Client>>,
}

#[async_trait]
impl Node for Integration {
    async fn call(&self, input: Value, ctx: &NodeContext) -> Result<Value, NodeError> {
        let key = input
            .get("idempotency_key")
            .and_then(Value::as_str)
            .map_or_else(|| ctx.idempotency_key(), str::to_string);
        let span = tracing::info_span!(
            target: "brainops",
            "integration",
            otel.name = %format_args!("integration {}", self.name),
            otel.kind = "client",
            brainops.integration = self.name,
            brainops.vendor = self.vendor,
            brainops.idempotency_key = %key,
            brainops.mode = tracing::field::Empty,
            brainops.outcome = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
            otel.status_description = tracing::field::Empty,
        );
        let result = self
            .plan_and_send(input, key, ctx)
            .instrument(span.clone())
            .await;
        if !span.is_disabled() {
            let (mode, outcome) = match &result {
                Ok(v) if v.get("dry_run") == Some(&Value::Bool(true)) => ("dry-run", "recorded"),
                Ok(_) => ("live", "sent"),
                Err(NodeError::Interrupt(_)) => ("live", "interrupted"),
                Err(NodeError::Failed { message, .. }) => {
                    engine::trace::fail(&span, message);
                    (
                        if self.config.mode == Mode::DryRun {
                            "dry-run"
                        } else {
                            "live"
                        },
                        "failed",
                    )
                }
            };
            span.record("brainops.mode", mode);
            span.record("brainops.outcome", outcome);
        }
        result
    }
}

impl Integration {
    async fn plan_and_send(
        &self,
        input: Value,
        key: String,
        ctx: &NodeContext,
    ) -> Result<Value, NodeError> {
        let (plan, reason) = match (
            (self.plan)(&input, &Vars(&self.config), &key),
            self.config.mode,
        ) {
            (Err(PlanError::Invalid(e)), _) => {
                return Err(NodeError::permanent(format!("{}: {e}", self.name)));
            }
            (Ok(plan), Mode::DryRun) => (Some(plan), "BRAINOPS_INTEGRATIONS=dry-run".to_string()),
            (Ok(plan), _) => return self.send(plan, &key, ctx).await,
            (Err(PlanError::Missing(why)), Mode::Live) => {
                return Err(NodeError::permanent(format!(
                    "{}: {why}; set it, or run with BRAINOPS_INTEGRATIONS=dry-run",
                    self.name
                )));
            }
            (Err(PlanError::Missing(why)), _) => (None, why),
        };
        let requests: Vec<Value> = match &plan {
            Some(plan) => plan.requests.iter().map(shown).collect(),
            // Unconfigured: show what the arguments would have asked for.
            None => vec![json!({"arguments": input})],
        };
        let record = json!({
            "tool": self.name,
            "dry_run": true,
            "reason": reason,
            "idempotency_key": key,
            "requests": requests,
        });
        self.config.outbox.push(record.clone());
        ctx.progress(Progress::Integration {
            integration: self.name.to_string(),
            call: IntegrationCall::Recorded {
                reason: reason.to_string(),
            },
        });
        Ok(record)
    }
}

fn shown(r: &Request) -> Value {
    let body = match &r.body {
        Body::Json(v) => v.clone(),
        Body::Form(fields) => Value::Object(
            fields
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect(),
        ),
    };
    json!({"method": "POST", "url": r.shown_url, "body": body})
}

const MAX_RESPONSE_BYTES: usize = 1 << 20;

impl Integration {
    async fn send(&self, plan: Plan, key: &str, ctx: &NodeContext) -> Result<Value, NodeError> {
        let mut responses = Vec::with_capacity(plan.requests.len());
        let mut replayed = 0;
        for (i, request) in plan.requests.iter().enumerate() {
            // Each request is a side effect of its own in the thread's outbox: one the vendor
            // already accepted (before a crash, a failed sibling, a retry) is not sent again.
            let effect = format!("{key}/{}/{i}", self.name);
            let outbox = ctx.outbox();
            if let Some(outbox) = outbox
                && let Some(reply) = outbox.sent(&effect).await?
            {
                responses.push(reply);
                replayed += 1;
                continue;
            }
            if let Some(outbox) = outbox {
                outbox.record_pending(&effect).await?;
            }
            let body = self.send_one(&plan.auth, request).await?;
            if let Some(outbox) = outbox {
                outbox.record_sent(&effect, &body).await?;
            }
            responses.push(body);
        }
        ctx.progress(Progress::Integration {
            integration: self.name.to_string(),
            call: IntegrationCall::Sent {
                requests: responses.len(),
                replayed,
            },
        });
        let response = if responses.len() == 1 {
            responses.pop().unwrap_or(Value::Null)
        } else {
            Value::Array(responses)
        };
        Ok(json!({"dry_run": false, "response": response}))
    }

    /// Sends one request: the vendor's reply, or its refusal as an error.
    async fn send_one(&self, auth: &Auth, request: &Request) -> Result<Value, NodeError> {
        let client = self.client.get_or_init(|| {
            crate::llm::http_client_builder()
                .connect_timeout(Duration::from_secs(10))
                .build()
                .unwrap_or_default()
        });
        let mut builder = client.post(&request.url).timeout(self.config.timeout);
        builder = match auth {
            Auth::Bearer(k) => builder.bearer_auth(k.expose()),
            Auth::Raw(k) => builder.header("Authorization", k.expose()),
            Auth::Basic(user, k) => builder.basic_auth(user, Some(k.expose())),
            Auth::None => builder,
        };
        for (name, value) in &request.headers {
            builder = builder.header(*name, value);
        }
        builder = match &request.body {
            Body::Json(v) => builder.json(v),
            Body::Form(fields) => builder.form(fields),
        };
        let response = builder.send().await.map_err(|e| {
            // reqwest's message can include the URL; name the vendor's shown URL only.
            let what = if e.is_timeout() {
                "timed out"
            } else {
                "could not connect"
            };
            NodeError::transient(format!("{}: {} {what}", self.name, request.shown_url))
        })?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|_| {
            NodeError::transient(format!(
                "{}: the reply from {} broke off",
                self.name, self.vendor
            ))
        })?;
        if bytes.len() > MAX_RESPONSE_BYTES {
            return Err(NodeError::permanent(format!(
                "{}: {} replied with {} bytes, more than the {MAX_RESPONSE_BYTES} allowed",
                self.name,
                self.vendor,
                bytes.len()
            )));
        }
        let text = String::from_utf8_lossy(&bytes);
        let body: Value =
            serde_json::from_str(&text).unwrap_or(Value::String(text.trim().to_string()));
        if !status.is_success() {
            // A vendor may echo a credential back, in any form the request carried it;
            // none may reach errors, events, logs or the thread store.
            let message = scrub(&vendors::error_message(&body), &credentials(auth, request));
            let text = format!(
                "{}: {} refused the request (HTTP {}): {message}",
                self.name,
                self.vendor,
                status.as_u16()
            );
            // Stripe's 409 is another request holding the same idempotency key: retry.
            let retry = status.as_u16() == 429
                || status.is_server_error()
                || (status.as_u16() == 409 && self.vendor == "Stripe");
            return Err(if retry {
                NodeError::transient(text)
            } else {
                NodeError::permanent(text)
            });
        }
        Ok(body)
    }
}

/// Every form in which `request` carries a secret: the key itself, a Basic user:key pair
/// and its base64 header value, and a URL whose path is the secret (Slack webhooks).
fn credentials(auth: &Auth, request: &Request) -> Vec<String> {
    use base64::Engine;
    let mut secrets = Vec::new();
    match auth {
        Auth::Bearer(k) | Auth::Raw(k) => secrets.push(k.expose().to_string()),
        Auth::Basic(user, k) => {
            let pair = format!("{user}:{}", k.expose());
            secrets.push(base64::engine::general_purpose::STANDARD.encode(&pair));
            secrets.push(pair);
            secrets.push(k.expose().to_string());
        }
        Auth::None => {}
    }
    if request.url != request.shown_url {
        secrets.push(request.url.clone());
        // The path alone, as a server may echo it ("no such hook /services/T0/B0/XYZ").
        if let Some(path) = request
            .url
            .split_once("://")
            .and_then(|(_, rest)| rest.find('/').map(|i| &rest[i..]))
        {
            secrets.push(path.to_string());
        }
    }
    // Longest first, so a key inside a longer form does not leave the rest showing.
    secrets.retain(|s| s.len() >= 4);
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    secrets
}

fn scrub(text: &str, secrets: &[String]) -> String {
    let mut text = text.to_string();
    for secret in secrets {
        if text.contains(secret.as_str()) {
            text = text.replace(secret.as_str(), "***");
        }
    }
    text
}

/// Registers every integration tool with `config`.
pub fn register(registry: &mut Registry, config: &IntegrationConfig) {
    // Built on the first live call: reading the system's TLS roots takes milliseconds that
    // a command which sends nothing should not pay.
    let client = Arc::new(OnceLock::new());
    for tool in vendors::tools() {
        registry.register_described_tool(
            tool.name,
            ToolInfo::new(tool.description, (tool.parameters)()),
            Arc::new(Integration {
                name: tool.name,
                vendor: tool.vendor,
                plan: tool.plan,
                config: config.clone(),
                client: Arc::clone(&client),
            }),
        );
    }
}

/// An integration tool's description.
struct VendorTool {
    name: &'static str,
    vendor: &'static str,
    description: &'static str,
    parameters: fn() -> Value,
    plan: Planner,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_credential_form_is_scrubbed() {
        let request = |url: &str, shown: &str| Request {
            url: url.into(),
            shown_url: shown.into(),
            body: Body::Json(Value::Null),
            headers: Vec::new(),
        };
        let twilio = Auth::Basic("AC123".into(), ApiKey::new("tok-secret-9"));
        let r = request("https://api.twilio.com/x", "https://api.twilio.com/x");
        // base64("AC123:tok-secret-9")
        let echoed =
            "bad auth: Basic QUMxMjM6dG9rLXNlY3JldC05 for AC123:tok-secret-9 (tok-secret-9)";
        let clean = scrub(echoed, &credentials(&twilio, &r));
        assert!(!clean.contains("QUMxMjM6dG9rLXNlY3JldC05"), "{clean}");
        assert!(!clean.contains("tok-secret-9"), "{clean}");
        let slack = request(
            "https://hooks.slack.com/services/T0/B0/XYZsecret",
            "https://hooks.slack.com/services/***",
        );
        let clean = scrub(
            "no_service: /services/T0/B0/XYZsecret not found",
            &credentials(&Auth::None, &slack),
        );
        assert_eq!(clean, "no_service: *** not found");
    }

    #[test]
    fn the_outbox_keeps_the_latest_records() {
        let outbox = Outbox::default();
        for i in 0..=Outbox::CAPACITY {
            outbox.push(json!(i));
        }
        let records = outbox.records();
        assert_eq!(records.len(), Outbox::CAPACITY);
        assert_eq!(records[0], json!(1));
        assert_eq!(records[Outbox::CAPACITY - 1], json!(Outbox::CAPACITY));
    }
}
