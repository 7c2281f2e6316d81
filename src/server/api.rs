//! The HTTP routes, with the reference server's paths, bodies, status codes and
//! `{"detail": …}` errors.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use engine::{InterruptKind, ThreadStatus};
use serde_json::{Map, Value, json};

use super::auth::{caller, may_see};
use super::control::{RunRow, RunState, ThreadRow, ThreadTtl, TtlStrategy};
use super::runs::{self, CancelAction, RunLog};
use super::wire::{self, checkpoint_parse, checkpoint_wire, iso, now_ms};
use super::{App, Assistant};

type Shared = State<Arc<App>>;

/// An error answered as `{"detail": …}` with its status.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    detail: String,
}

impl ApiError {
    pub(crate) fn detail(&self) -> &str {
        &self.detail
    }
    pub(crate) fn status(&self) -> StatusCode {
        self.status
    }
    pub(crate) fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        ApiError {
            status,
            detail: detail.into(),
        }
    }
    pub(crate) fn unprocessable(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, detail)
    }
    pub(crate) fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, detail)
    }
    pub(crate) fn internal(detail: impl Into<String>) -> Self {
        let detail = detail.into();
        tracing::error!("{detail}");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, detail)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(json!({"detail": self.detail}))).into_response()
    }
}

pub(crate) type ApiResult<T = Response> = Result<T, ApiError>;

pub(crate) fn ok_json(value: Value) -> Response {
    axum::Json(value).into_response()
}

/// A JSON request body as an object; an empty body is an empty object.
pub(crate) fn body_object(bytes: &Bytes) -> ApiResult<Map<String, Value>> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(other) => Err(ApiError::unprocessable(format!(
            "the request body must be a JSON object, not {}",
            type_name(&other)
        ))),
        Err(e) => Err(ApiError::unprocessable(format!(
            "the request body is not valid JSON: {e} (at line {}, column {})",
            e.line(),
            e.column()
        ))),
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// `config` (`recursion_limit`, `configurable`, `tags`) and `context`, as LangGraph
/// takes them: a run gets its context from one or the other, not both.
fn check_run_config(f: &Fields<'_>) -> ApiResult<()> {
    let config = f.object("config")?;
    if let Some(limit) = config.and_then(|c| c.get("recursion_limit"))
        && !limit
            .as_u64()
            .is_some_and(|n| (1..=u64::from(u32::MAX)).contains(&n))
    {
        return Err(ApiError::unprocessable(format!(
            "config.recursion_limit: expected a positive integer, got {limit}"
        )));
    }
    match config.and_then(|c| c.get("tags")) {
        None | Some(Value::Null) => {}
        Some(Value::Array(tags)) if tags.iter().all(Value::is_string) => {}
        Some(v) => {
            return Err(ApiError::unprocessable(format!(
                "config.tags: expected a list of strings, got {v}"
            )));
        }
    }
    let configurable = match config.and_then(|c| c.get("configurable")) {
        None | Some(Value::Null) => None,
        Some(Value::Object(m)) => Some(m),
        Some(v) => {
            return Err(ApiError::unprocessable(format!(
                "config.configurable: expected an object, got {}",
                type_name(v)
            )));
        }
    };
    let context = f.object("context")?;
    let own = |m: &Map<String, Value>| m.keys().any(|k| !super::runs::reserved_configurable(k));
    if configurable.is_some_and(own) && context.is_some_and(|m| !m.is_empty()) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "context: give the run's context either as `context` or as `config.configurable`, not both (LangGraph 0.6 and later prefer `context`)",
        ));
    }
    Ok(())
}

/// Typed reads of body fields, each error naming the field.
struct Fields<'a>(&'a Map<String, Value>);

impl Fields<'_> {
    fn get(&self, key: &str) -> Option<&Value> {
        self.0.get(key).filter(|v| !v.is_null())
    }
    fn str(&self, key: &str) -> ApiResult<Option<&str>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(v) => Err(ApiError::unprocessable(format!(
                "{key}: expected a string, got {}",
                type_name(v)
            ))),
        }
    }
    fn object(&self, key: &str) -> ApiResult<Option<&Map<String, Value>>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Object(m)) => Ok(Some(m)),
            Some(v) => Err(ApiError::unprocessable(format!(
                "{key}: expected an object, got {}",
                type_name(v)
            ))),
        }
    }
    fn usize(&self, key: &str, default: usize) -> ApiResult<usize> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v.as_u64().map(|n| n as usize).ok_or_else(|| {
                ApiError::unprocessable(format!(
                    "{key}: expected a non-negative integer, got {}",
                    type_name(v)
                ))
            }),
        }
    }
    fn one_of(&self, key: &str, allowed: &[&str], default: &'static str) -> ApiResult<String> {
        match self.str(key)? {
            None => Ok(default.to_string()),
            Some(s) if allowed.contains(&s) => Ok(s.to_string()),
            Some(s) => Err(ApiError::unprocessable(format!(
                "{key}: `{s}` is not one of {}",
                allowed.join(", ")
            ))),
        }
    }
    /// A string or a list of strings.
    fn strings(&self, key: &str) -> ApiResult<Option<Vec<String>>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(vec![s.clone()])),
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| {
                    v.as_str().map(String::from).ok_or_else(|| {
                        ApiError::unprocessable(format!("{key}: expected strings in the list"))
                    })
                })
                .collect::<ApiResult<Vec<_>>>()
                .map(Some),
            Some(v) => Err(ApiError::unprocessable(format!(
                "{key}: expected a string or a list of strings, got {}",
                type_name(v)
            ))),
        }
    }
}

/// Query parameters, repeated ones kept in order.
pub(super) fn query_pairs(raw: &Option<String>) -> Vec<(String, String)> {
    raw.as_deref()
        .map(|q| {
            form_urlencoded::parse(q.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        })
        .unwrap_or_default()
}

fn query_get<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn query_bool(pairs: &[(String, String)], key: &str) -> bool {
    matches!(query_get(pairs, key), Some("1" | "true" | "True" | "yes"))
}

fn check_uuid(id: &str, what: &str) -> ApiResult<()> {
    uuid::Uuid::parse_str(id)
        .map(|_| ())
        .map_err(|_| ApiError::unprocessable(format!("Invalid {what} ID: must be a UUID")))
}

pub(crate) fn store_err(e: String) -> ApiError {
    ApiError::internal(e)
}

pub(crate) fn router(app: Arc<App>) -> Router {
    let cors = cors_layer(&app.options.cors_origins);
    let limit = app.options.body_limit;
    Router::new()
        .route("/ok", get(ok))
        .route("/metrics", get(super::metrics::scrape))
        .route("/info", get(info))
        .route("/assistants/search", post(assistants_search))
        .route("/assistants/count", post(assistants_count))
        .route("/assistants", post(assistants_create))
        .route("/assistants/{id}", get(assistant_get))
        .route("/assistants/{id}/graph", get(assistant_graph))
        .route("/assistants/{id}/schemas", get(assistant_schemas))
        .route("/assistants/{id}/subgraphs", get(assistant_subgraphs))
        .route("/threads", post(threads_create))
        .route("/threads/search", post(threads_search))
        .route("/threads/count", post(threads_count))
        .route(
            "/threads/{tid}",
            get(thread_get).patch(thread_patch).delete(thread_delete),
        )
        .route("/threads/{tid}/copy", post(thread_copy))
        .route(
            "/threads/{tid}/stream",
            get(super::thread_stream::thread_stream),
        )
        .route("/threads/{tid}/commands", post(super::protocol::commands))
        .route(
            "/threads/{tid}/stream/events",
            get(super::protocol::events).post(super::protocol::events),
        )
        .route("/threads/{tid}/state", get(state_get).post(state_update))
        .route("/threads/{tid}/state/checkpoint", post(state_at_checkpoint))
        .route("/threads/{tid}/state/{cid}", get(state_at))
        .route(
            "/threads/{tid}/history",
            post(history_post).get(history_get),
        )
        .route("/threads/{tid}/runs", post(runs_create).get(runs_list))
        .route("/threads/{tid}/runs/stream", post(runs_stream))
        .route("/threads/{tid}/runs/wait", post(runs_wait))
        .route("/threads/{tid}/runs/{rid}", get(run_get).delete(run_delete))
        .route("/threads/{tid}/runs/{rid}/join", get(run_join))
        .route("/threads/{tid}/runs/{rid}/stream", get(run_join_stream))
        .route("/threads/{tid}/runs/{rid}/cancel", post(run_cancel))
        .route("/runs", post(stateless_create))
        .route("/runs/batch", post(stateless_batch))
        .route("/threads/prune", post(threads_prune))
        .route("/runs/stream", post(stateless_stream))
        .route("/runs/wait", post(stateless_wait))
        .route("/runs/cancel", post(runs_cancel_many))
        .route("/runs/{rid}/stream", get(stateless_join_stream))
        .route("/runs/search", post(runs_search))
        .route("/agents", get(super::console::agents))
        .route("/agents/{name}", get(super::console::agent))
        .route("/runs/crons", post(super::crons::create))
        .route("/runs/crons/search", post(super::crons::search))
        .route("/runs/crons/count", post(super::crons::count))
        .route(
            "/runs/crons/{cron_id}",
            get(super::crons::get)
                .patch(super::crons::update)
                .delete(super::crons::delete),
        )
        .route(
            "/threads/{tid}/runs/crons",
            post(super::crons::create_for_thread),
        )
        .route(
            "/store/items",
            axum::routing::put(store_put)
                .get(store_get)
                .delete(store_delete),
        )
        .route("/store/items/search", post(store_search))
        .route("/store/namespaces", post(store_namespaces))
        .merge(super::console::routes())
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            super::auth::authenticate,
        ))
        .layer(axum::middleware::from_fn(continue_callers_trace))
        .layer(cors)
        .layer(axum::extract::DefaultBodyLimit::max(limit))
        .with_state(app)
}

/// A request that carries a W3C `traceparent` is handled in a server span of that trace,
/// so a run it queues belongs to the caller's trace. Others get no span: a console polling
/// every few seconds would otherwise fill the trace store.
async fn continue_callers_trace(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    use tracing::Instrument;
    let Some(parent) = crate::telemetry::exporting()
        .then(|| request.headers().get("traceparent"))
        .flatten()
        .and_then(|v| v.to_str().ok())
    else {
        return next.run(request).await;
    };
    let mut carrier = std::collections::BTreeMap::new();
    carrier.insert("traceparent".to_string(), parent.to_string());
    if let Some(state) = request
        .headers()
        .get("tracestate")
        .and_then(|v| v.to_str().ok())
    {
        carrier.insert("tracestate".to_string(), state.to_string());
    }
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(
            || request.uri().path().to_string(),
            |p| p.as_str().to_string(),
        );
    let span = tracing::info_span!(
        target: "brainops",
        "http.request",
        otel.name = %format_args!("{} {route}", request.method()),
        otel.kind = "server",
        http.request.method = %request.method(),
        http.route = %route,
        http.response.status_code = tracing::field::Empty,
    );
    crate::telemetry::continue_trace(&span, &carrier);
    let response = next.run(request).instrument(span.clone()).await;
    span.record(
        "http.response.status_code",
        i64::from(response.status().as_u16()),
    );
    response
}

/// A worker's only routes: `/ok` and `/metrics`.
pub(crate) fn metrics_router(app: Arc<App>) -> Router {
    Router::new()
        .route("/ok", get(ok))
        .route("/metrics", get(super::metrics::scrape))
        .with_state(app)
}

fn cors_layer(origins: &[String]) -> tower_http::cors::CorsLayer {
    use tower_http::cors::{AllowHeaders, AllowOrigin, CorsLayer};
    let allowed: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(allowed))
        .allow_methods(tower_http::cors::Any)
        .allow_headers(AllowHeaders::mirror_request())
        .expose_headers([
            header::CONTENT_LOCATION,
            header::LOCATION,
            header::HeaderName::from_static("x-pagination-total"),
            header::HeaderName::from_static("x-pagination-next"),
        ])
}

async fn not_found() -> ApiError {
    ApiError::not_found("Not Found")
}

// ---------------------------------------------------------------------------- meta

async fn ok() -> Response {
    ok_json(json!({"ok": true, "services": {}}))
}

async fn info(State(app): Shared) -> Response {
    ok_json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "brainops_version": env!("CARGO_PKG_VERSION"),
        "flags": {"assistants": true, "crons": true, "langsmith": false},
        "host": {"kind": "self-hosted", "project_id": null},
        "started_at": iso(app.started_ms),
    }))
}

// ---------------------------------------------------------------------- assistants

fn assistant_json(app: &App, a: &Assistant) -> Value {
    json!({
        "assistant_id": a.assistant_id,
        "graph_id": a.graph_id,
        "config": {},
        "context": {},
        "metadata": {"created_by": "system"},
        "name": a.graph_id,
        "description": a.graph.description(),
        "version": 1,
        "created_at": iso(app.started_ms),
        "updated_at": iso(app.started_ms),
    })
}

fn find_assistant<'a>(app: &'a App, id: &str) -> ApiResult<&'a Assistant> {
    app.assistant(id).ok_or_else(|| {
        if uuid::Uuid::parse_str(id).is_ok() {
            ApiError::not_found(format!("Assistant {id} not found"))
        } else {
            let names: Vec<&str> = app.assistants.iter().map(|a| a.graph_id.as_str()).collect();
            ApiError::unprocessable(format!(
                "Invalid assistant: '{id}'. Must be either:\n- A valid assistant UUID, or\n- One of the registered graphs: {}",
                names.join(", ")
            ))
        }
    })
}

fn assistant_matches(a: &Assistant, f: &Fields<'_>) -> ApiResult<bool> {
    if let Some(g) = f.str("graph_id")?
        && g != a.graph_id
    {
        return Ok(false);
    }
    if let Some(n) = f.str("name")?
        && !a.graph_id.to_lowercase().contains(&n.to_lowercase())
    {
        return Ok(false);
    }
    if let Some(m) = f.object("metadata")? {
        let own = json!({"created_by": "system"});
        if m.iter().any(|(k, v)| own.get(k) != Some(v)) {
            return Ok(false);
        }
    }
    Ok(true)
}

async fn assistants_search(State(app): Shared, body: Bytes) -> ApiResult {
    let body = body_object(&body)?;
    let f = Fields(&body);
    let limit = f.usize("limit", 10)?;
    let offset = f.usize("offset", 0)?;
    let mut found = Vec::new();
    for a in &app.assistants {
        if assistant_matches(a, &f)? {
            found.push(assistant_json(&app, a));
        }
    }
    let sort_by = f.one_of(
        "sort_by",
        &[
            "assistant_id",
            "graph_id",
            "name",
            "created_at",
            "updated_at",
        ],
        "created_at",
    )?;
    let desc = f.one_of("sort_order", &["asc", "desc"], "desc")? == "desc";
    let key = if sort_by == "name" {
        "graph_id".to_string()
    } else {
        sort_by
    };
    found.sort_by(|x, y| {
        let o = x[&key].as_str().cmp(&y[&key].as_str());
        if desc { o.reverse() } else { o }
    });
    Ok(paged(found, limit, offset, f.strings("select")?))
}

/// A page of `items` with the pagination headers, keeping only `select` fields if given.
pub(crate) fn paged(
    items: Vec<Value>,
    limit: usize,
    offset: usize,
    select: Option<Vec<String>>,
) -> Response {
    let total = items.len();
    let page: Vec<Value> = items
        .into_iter()
        .skip(offset)
        .take(limit)
        .map(|v| match (&select, v) {
            (Some(fields), Value::Object(m)) => Value::Object(
                m.into_iter()
                    .filter(|(k, _)| fields.iter().any(|f| f == k))
                    .collect(),
            ),
            (_, v) => v,
        })
        .collect();
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&total.to_string()) {
        headers.insert("x-pagination-total", v);
    }
    if offset + page.len() < total
        && let Ok(v) = HeaderValue::from_str(&(offset + page.len()).to_string())
    {
        headers.insert("x-pagination-next", v);
    }
    (headers, axum::Json(Value::Array(page))).into_response()
}

async fn assistants_count(State(app): Shared, body: Bytes) -> ApiResult {
    let body = body_object(&body)?;
    let f = Fields(&body);
    let mut n = 0;
    for a in &app.assistants {
        if assistant_matches(a, &f)? {
            n += 1;
        }
    }
    Ok(ok_json(json!(n)))
}

async fn assistants_create(State(app): Shared, body: Bytes) -> ApiResult {
    let body = body_object(&body)?;
    let f = Fields(&body);
    let graph = f
        .str("graph_id")?
        .ok_or_else(|| ApiError::unprocessable("graph_id: required"))?;
    let a = find_assistant(&app, graph)?;
    // Assistants are the graphs in --graphs; one with the same graph answers, so
    // `if_exists="do_nothing"` callers and graph-name callers both work.
    if f.str("if_exists")? == Some("raise") && f.str("assistant_id")?.is_some() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "assistants are the graphs this server loaded; one exists for this graph",
        ));
    }
    Ok(ok_json(assistant_json(&app, a)))
}

async fn assistant_get(State(app): Shared, Path(id): Path<String>) -> ApiResult {
    let a = find_assistant(&app, &id)?;
    Ok(ok_json(assistant_json(&app, a)))
}

async fn assistant_graph(
    State(app): Shared,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let a = find_assistant(&app, &id)?;
    // `xray`: draw subgraphs' insides (true: all levels; a number: that many levels).
    let pairs = query_pairs(&q);
    let depth = match query_get(&pairs, "xray") {
        None | Some("false" | "False" | "0") => 0,
        Some("true" | "True") => u32::MAX,
        Some(n) => n.parse().map_err(|_| {
            ApiError::unprocessable(format!("xray: expected true, false or a depth, got `{n}`"))
        })?,
    };
    let (nodes, edges) = graph_drawing(&a.graph, "", depth);
    Ok(ok_json(json!({"nodes": nodes, "edges": edges})))
}

/// A graph's nodes and edges as LangGraph's `get_graph().to_json()` gives them, ids under
/// `prefix`. With `depth` > 0 a subgraph node is replaced by its inside, as LangGraph's
/// `xray` does: its nodes become `NODE:inner`, edges into it go to the inner nodes its start
/// leads to, and edges out of it leave from the inner nodes that lead to its end.
fn graph_drawing(g: &engine::Graph, prefix: &str, depth: u32) -> (Vec<Value>, Vec<Value>) {
    let wire_name = |n: &str| match n {
        "START" => "__start__".to_string(),
        "END" => "__end__".to_string(),
        other => format!("{prefix}{other}"),
    };
    let mut nodes = Vec::new();
    let mut inside = std::collections::BTreeMap::<String, Vec<Value>>::new();
    if prefix.is_empty() {
        nodes.push(json!({"id": "__start__", "type": "schema", "data": "__start__"}));
    }
    for name in g.node_names() {
        if depth > 0
            && let Some(child) = g.subgraph(name)
        {
            let (child_nodes, child_edges) =
                graph_drawing(child, &format!("{prefix}{name}:"), depth - 1);
            nodes.extend(child_nodes);
            inside.insert(name.to_string(), child_edges);
            continue;
        }
        let id = format!("{prefix}{name}");
        nodes.push(json!({
            "id": id,
            "type": "runnable",
            "data": {"id": ["brainops", g.node_kind(name).unwrap_or("node")], "name": id},
            "metadata": node_metadata(g, name),
        }));
    }
    if prefix.is_empty() {
        nodes.push(json!({"id": "__end__", "type": "schema", "data": "__end__"}));
    }
    let mut edges = Vec::new();
    for e in g.edges() {
        for from in &e.from {
            let mut edge = json!({"source": wire_name(from), "target": wire_name(&e.to)});
            if e.from.len() > 1 {
                // An extension: the target waits for every source (the console draws it).
                edge["join"] = json!(true);
            }
            // A route chosen at run time is conditional, as LangGraph draws a Command's.
            let conditional = e.label.is_some() || e.default || e.goto;
            if conditional {
                edge["conditional"] = json!(true);
                let data = match (&e.label, e.goto) {
                    (Some(label), _) => label.clone(),
                    (None, true) => "goto".into(),
                    (None, false) => "default".into(),
                };
                edge["data"] = json!(data);
            }
            edges.push(edge);
        }
    }
    if inside.is_empty() {
        return (nodes, edges);
    }
    // Rewire the edges of each drawn-inside subgraph node through its inner start and end.
    let mut rewired = Vec::new();
    for (name, child_edges) in &inside {
        let id = format!("{prefix}{name}");
        let entries: Vec<&Value> = child_edges
            .iter()
            .filter(|c| c["source"] == "__start__")
            .collect();
        let exits: Vec<&Value> = child_edges
            .iter()
            .filter(|c| c["target"] == "__end__")
            .collect();
        for c in child_edges {
            if c["source"] != "__start__" && c["target"] != "__end__" {
                rewired.push(c.clone());
            }
        }
        for e in edges.iter_mut() {
            if e["target"] == id.as_str() {
                for (k, entry) in entries.iter().enumerate() {
                    let mut copy = e.clone();
                    copy["target"] = entry["target"].clone();
                    if k == 0 {
                        *e = copy;
                    } else {
                        rewired.push(copy);
                    }
                }
            }
        }
        let mut outgoing = Vec::new();
        edges.retain(|e| {
            if e["source"] == id.as_str() {
                outgoing.push(e.clone());
                false
            } else {
                true
            }
        });
        for e in outgoing {
            for exit in &exits {
                let mut copy = e.clone();
                copy["source"] = exit["source"].clone();
                if exit.get("conditional").is_some() && copy.get("conditional").is_none() {
                    copy["conditional"] = json!(true);
                    copy["data"] = exit["data"].clone();
                }
                rewired.push(copy);
            }
        }
    }
    edges.extend(rewired);
    (nodes, edges)
}

/// What the drawing of a node shows beyond its name (LangGraph's node `metadata`).
fn node_metadata(g: &engine::Graph, name: &str) -> Value {
    let Some(view) = g.node_view(name) else {
        return json!({});
    };
    let mut meta = Map::new();
    meta.insert("kind".into(), json!(view.kind));
    let optional = [
        ("for_each", view.for_each),
        ("agent", view.agent),
        ("subgraph", view.subgraph),
    ];
    for (key, value) in optional {
        if let Some(v) = value {
            meta.insert(key.into(), json!(v));
        }
    }
    let flags = [
        ("defer", view.deferred),
        ("interrupt_before", view.interrupt_before),
        ("interrupt_after", view.interrupt_after),
    ];
    for (key, on) in flags {
        if on {
            meta.insert(key.into(), json!(true));
        }
    }
    Value::Object(meta)
}

fn state_schema(g: &engine::Graph) -> Value {
    let mut props = Map::new();
    let mut required = Vec::new();
    for ch in g.channels() {
        let ty = serde_json::to_value(ch.ty).unwrap_or(Value::Null);
        let mut p = match ty.as_str() {
            Some("messages" | "array") => json!({"type": "array"}),
            Some("any") | None => json!({}),
            Some(t) => json!({"type": t}),
        };
        if !ch.default.is_null()
            && let Value::Object(m) = &mut p
        {
            m.insert("default".into(), ch.default.clone());
        }
        if let (Some(engine::channel::Required::Fields(fields)), Value::Object(m)) =
            (&ch.required, &mut p)
        {
            m.insert("required".into(), json!(fields));
        }
        if ch.required.is_some() {
            required.push(ch.name.clone());
        }
        props.insert(ch.name.clone(), p);
    }
    let mut schema = json!({"title": g.name(), "type": "object", "properties": props});
    if !required.is_empty() {
        schema["required"] = json!(required);
    }
    schema
}

async fn assistant_schemas(State(app): Shared, Path(id): Path<String>) -> ApiResult {
    let a = find_assistant(&app, &id)?;
    let schema = state_schema(&a.graph);
    Ok(ok_json(json!({
        "graph_id": a.graph_id,
        "input_schema": schema,
        "output_schema": schema,
        "state_schema": schema,
        "config_schema": null,
        "context_schema": null,
    })))
}

async fn assistant_subgraphs(State(app): Shared, Path(id): Path<String>) -> ApiResult {
    find_assistant(&app, &id)?;
    Ok(ok_json(json!({})))
}

// ------------------------------------------------------------------------- threads

/// A thread's status by the reference's rule: busy while a run is pending or running, else
/// error when its last run failed, else interrupted when it waits, else idle.
async fn thread_json(app: &App, row: &ThreadRow, with_values: bool) -> ApiResult<Value> {
    let runs = app
        .control
        .runs_of(&row.thread_id)
        .await
        .map_err(store_err)?;
    let busy = runs.iter().any(|r| r.status.is_active());
    let info = app
        .checkpointer
        .thread(&row.thread_id)
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let status = if busy {
        "busy"
    } else {
        match info.as_ref().map(|i| i.status) {
            Some(ThreadStatus::Interrupted) => "interrupted",
            Some(ThreadStatus::Failed) => "error",
            _ if row.error.is_some() => "error",
            _ => "idle",
        }
    };
    let mut values = Value::Null;
    let mut interrupts = Map::new();
    if with_values
        && let Some(info) = &info
        && info.last_checkpoint.is_some()
        && let Some(a) = app.assistant(&info.graph)
        && let Ok(snap) = a.runner.state(&row.thread_id, None).await
    {
        values = snap.values;
        // One entry per waiting task (parallel interrupts: the first and its siblings).
        for i in snap
            .interrupt
            .iter()
            .flat_map(|i| i.all())
            .filter(|i| i.kind == InterruptKind::Ask)
        {
            interrupts.insert(
                wire::task_id(&row.thread_id, snap.step + 1, &i.task),
                json!([wire::interrupt_json(&row.thread_id, snap.checkpoint_id, i)]),
            );
        }
    }
    let mut out = json!({
        "thread_id": row.thread_id,
        "created_at": iso(row.created_at_ms),
        "updated_at": iso(row.updated_at_ms),
        "state_updated_at": iso(info.as_ref().map_or(row.updated_at_ms, |i| i.updated_at_ms)),
        "metadata": row.metadata,
        "config": {"configurable": {}},
        "status": status,
        "error": row.error,
    });
    if let Some(ttl) = &row.ttl {
        out["ttl"] = json!(ttl);
    }
    if with_values {
        out["values"] = values;
        out["interrupts"] = Value::Object(interrupts);
    }
    Ok(out)
}

pub(super) async fn load_thread(app: &App, tid: &str) -> ApiResult<ThreadRow> {
    check_uuid(tid, "thread")?;
    app.control
        .thread(tid)
        .await
        .map_err(store_err)?
        .filter(|t| may_see(t.owner.as_deref()))
        .ok_or_else(|| ApiError::not_found(format!("Thread with ID {tid} not found")))
}

async fn threads_create(State(app): Shared, body: Bytes) -> ApiResult {
    let body = body_object(&body)?;
    let f = Fields(&body);
    let tid = match f.str("thread_id")? {
        Some(t) => {
            check_uuid(t, "thread")?;
            t.to_string()
        }
        None => uuid::Uuid::now_v7().to_string(),
    };
    let if_exists = f.one_of("if_exists", &["raise", "do_nothing"], "raise")?;
    if let Some(existing) = app.control.thread(&tid).await.map_err(store_err)? {
        if !may_see(existing.owner.as_deref()) {
            // Another user's thread: say nothing about it.
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!("Thread with ID {tid} already exists"),
            ));
        }
        if if_exists == "do_nothing" {
            return Ok(ok_json(thread_json(&app, &existing, true).await?));
        }
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("Thread with ID {tid} already exists"),
        ));
    }
    let mut metadata = f.object("metadata")?.cloned().unwrap_or_default();
    let mut row = runs::new_thread_row(&tid, Map::new());
    // langgraph-sdk folds `graph_id` into the metadata, where other clients may keep any
    // label: there it names the thread's graph only when it is one.
    let assistant = match f.str("graph_id")? {
        Some(g) => Some(find_assistant(&app, g)?),
        None => metadata
            .get("graph_id")
            .and_then(Value::as_str)
            .and_then(|g| app.assistant(g)),
    };
    if let Some(a) = assistant {
        row.graph_id = Some(a.graph_id.clone());
        metadata.insert("graph_id".into(), json!(a.graph_id));
    }
    let supersteps = supersteps(f.get("supersteps"), assistant)?;
    row.ttl = thread_ttl(f.get("ttl"))?;
    row.metadata = metadata;
    row.owner = caller().map(|c| c.user);
    app.control.put_thread(&row).await.map_err(store_err)?;
    if let (Some(a), false) = (assistant, supersteps.is_empty())
        && let Err(e) = seed(a, &tid, &supersteps).await
    {
        // Nothing half-written: the thread goes with its partial history.
        runs::delete_thread_everywhere(&app, &tid).await;
        return Err(e);
    }
    Ok(ok_json(thread_json(&app, &row, true).await?))
}

/// A thread's `ttl`: minutes, or `{"ttl": MINUTES, "strategy": "delete" | "keep_latest"}`
/// (`delete` by default); `null` for none.
fn thread_ttl(given: Option<&Value>) -> ApiResult<Option<ThreadTtl>> {
    let (minutes, strategy) = match given {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Number(n)) => (n.as_f64(), None),
        Some(Value::Object(m)) => (
            match m.get("ttl") {
                Some(Value::Number(n)) => n.as_f64(),
                _ => None,
            },
            m.get("strategy"),
        ),
        Some(other) => {
            return Err(ApiError::unprocessable(format!(
                "ttl: expected minutes or {{\"ttl\": minutes, \"strategy\": \"delete\"}}, got {}",
                type_name(other)
            )));
        }
    };
    let ttl = minutes
        .filter(|m| *m > 0.0 && m.is_finite())
        .ok_or_else(|| ApiError::unprocessable("ttl.ttl: expected a number of minutes above 0"))?;
    let strategy = match strategy {
        None | Some(Value::Null) => TtlStrategy::Delete,
        Some(Value::String(s)) if s == "delete" => TtlStrategy::Delete,
        Some(Value::String(s)) if s == "keep_latest" => TtlStrategy::KeepLatest,
        Some(other) => {
            return Err(ApiError::unprocessable(format!(
                "ttl.strategy: {other} is not one of delete, keep_latest"
            )));
        }
    };
    Ok(Some(ThreadTtl { ttl, strategy }))
}

/// One update of a thread's seeded history: values written as a node (or as the input).
struct Seed {
    values: Value,
    as_node: Option<String>,
}

/// `supersteps: [{"updates": [{"values", "as_node"}]}]` on thread create (LangGraph's
/// bulk `update_state`), checked against the graph before anything is written.
fn supersteps(given: Option<&Value>, assistant: Option<&Assistant>) -> ApiResult<Vec<Seed>> {
    let steps = match given {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(steps)) => steps,
        Some(other) => {
            return Err(ApiError::unprocessable(format!(
                "supersteps: expected a list, got {}",
                type_name(other)
            )));
        }
    };
    let Some(a) = assistant else {
        return Err(ApiError::unprocessable(
            "supersteps: give the thread's graph_id too, so the updates know their graph",
        ));
    };
    let mut seeds = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        let updates = step
            .get("updates")
            .and_then(Value::as_array)
            .ok_or_else(|| {
                ApiError::unprocessable(format!("supersteps[{i}].updates: expected a list"))
            })?;
        for (j, update) in updates.iter().enumerate() {
            let at = format!("supersteps[{i}].updates[{j}]");
            if update.get("command").is_some_and(|c| !c.is_null()) {
                return Err(ApiError::unprocessable(format!(
                    "{at}.command: not supported here; give `values` and `as_node`"
                )));
            }
            let values = match update.get("values") {
                None | Some(Value::Null) => json!({}),
                Some(v @ Value::Object(_)) => v.clone(),
                Some(other) => {
                    return Err(ApiError::unprocessable(format!(
                        "{at}.values: expected an object, got {}",
                        type_name(other)
                    )));
                }
            };
            let as_node = match update.get("as_node") {
                None | Some(Value::Null) => None,
                Some(Value::String(n)) if matches!(n.as_str(), "__start__" | "__input__") => None,
                Some(Value::String(n)) if a.graph.node_id(n).is_some() => Some(n.clone()),
                Some(other) => {
                    return Err(ApiError::unprocessable(format!(
                        "{at}.as_node: graph `{}` has no node {other}",
                        a.graph_id
                    )));
                }
            };
            seeds.push(Seed { values, as_node });
        }
    }
    Ok(seeds)
}

/// Writes the seeded history of a new thread, update by update.
async fn seed(a: &Assistant, tid: &str, seeds: &[Seed]) -> ApiResult<()> {
    for (i, s) in seeds.iter().enumerate() {
        let as_node = s.as_node.as_deref();
        let written = if i == 0 {
            a.runner.create_state(tid, &s.values, as_node).await
        } else {
            a.runner.update_state_as(tid, &s.values, as_node).await
        };
        written
            .map_err(|e| ApiError::unprocessable(format!("supersteps: update {}: {e}", i + 1)))?;
    }
    Ok(())
}

/// Whether `value` holds every key of `filter` with an equal (or containing) value.
fn contains(value: &Value, filter: &Value) -> bool {
    match (value, filter) {
        (Value::Object(v), Value::Object(f)) => f
            .iter()
            .all(|(k, fv)| v.get(k).is_some_and(|vv| contains(vv, fv))),
        (a, b) => a == b,
    }
}

async fn matching_threads(app: &App, f: &Fields<'_>) -> ApiResult<Vec<Value>> {
    let metadata = f.object("metadata")?.cloned().map(Value::Object);
    let values = f.object("values")?.cloned().map(Value::Object);
    let status = f.str("status")?;
    let ids = f.strings("ids")?;
    let mut out = Vec::new();
    for row in app.control.threads().await.map_err(store_err)? {
        if !may_see(row.owner.as_deref()) {
            continue;
        }
        if let Some(ids) = &ids
            && !ids.contains(&row.thread_id)
        {
            continue;
        }
        if let Some(m) = &metadata
            && !contains(&Value::Object(row.metadata.clone()), m)
        {
            continue;
        }
        let t = thread_json(app, &row, true).await?;
        if let Some(s) = status
            && t["status"] != s
        {
            continue;
        }
        if let Some(v) = &values
            && !contains(&t["values"], v)
        {
            continue;
        }
        out.push(t);
    }
    Ok(out)
}

async fn threads_search(State(app): Shared, body: Bytes) -> ApiResult {
    let body = body_object(&body)?;
    let f = Fields(&body);
    let limit = f.usize("limit", 10)?;
    let offset = f.usize("offset", 0)?;
    let mut found = matching_threads(&app, &f).await?;
    let sort_by = f.one_of(
        "sort_by",
        &[
            "thread_id",
            "status",
            "created_at",
            "updated_at",
            "state_updated_at",
        ],
        "created_at",
    )?;
    let desc = f.one_of("sort_order", &["asc", "desc"], "desc")? == "desc";
    found.sort_by(|x, y| {
        let o = x[&sort_by].as_str().cmp(&y[&sort_by].as_str());
        if desc { o.reverse() } else { o }
    });
    Ok(paged(found, limit, offset, f.strings("select")?))
}

async fn threads_count(State(app): Shared, body: Bytes) -> ApiResult {
    let body = body_object(&body)?;
    Ok(ok_json(json!(
        matching_threads(&app, &Fields(&body)).await?.len()
    )))
}

/// `POST /threads/prune`: `delete` removes the threads, `keep_latest` keeps only each
/// thread's latest checkpoint. Answers how many threads were pruned.
async fn threads_prune(State(app): Shared, body: Bytes) -> ApiResult {
    let body = body_object(&body)?;
    let f = Fields(&body);
    let ids = f
        .strings("thread_ids")?
        .ok_or_else(|| ApiError::unprocessable("thread_ids: required (a list of thread ids)"))?;
    let strategy = f.one_of("strategy", &["delete", "keep_latest"], "delete")?;
    let mut pruned = 0;
    for tid in &ids {
        let Ok(row) = load_thread(&app, tid).await else {
            continue;
        };
        let active = app
            .control
            .runs_of(tid)
            .await
            .map_err(store_err)?
            .iter()
            .any(|r| r.status.is_active());
        if active {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!("thread {tid} has a pending or running run; cancel it first"),
            ));
        }
        if strategy == "delete" {
            runs::delete_thread_everywhere(&app, tid).await;
        } else if let Some(a) = thread_assistant(&app, &row).await? {
            a.runner
                .prune(tid, 1)
                .await
                .map_err(|e| ApiError::internal(e.to_string()))?;
        }
        pruned += 1;
    }
    Ok(ok_json(json!({"pruned_count": pruned})))
}

async fn thread_get(State(app): Shared, Path(tid): Path<String>) -> ApiResult {
    let row = load_thread(&app, &tid).await?;
    Ok(ok_json(thread_json(&app, &row, true).await?))
}

async fn thread_patch(
    State(app): Shared,
    Path(tid): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let mut row = load_thread(&app, &tid).await?;
    let body = body_object(&body)?;
    let f = Fields(&body);
    if let Some(m) = f.object("metadata")? {
        for (k, v) in m {
            row.metadata.insert(k.clone(), v.clone());
        }
    }
    if body.contains_key("ttl") {
        row.ttl = thread_ttl(body.get("ttl"))?;
    }
    row.updated_at_ms = now_ms();
    app.control.put_thread(&row).await.map_err(store_err)?;
    let minimal = headers
        .get("prefer")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("return=minimal"));
    if minimal {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    Ok(ok_json(thread_json(&app, &row, true).await?))
}

async fn thread_delete(State(app): Shared, Path(tid): Path<String>) -> ApiResult {
    load_thread(&app, &tid).await?;
    for r in app.control.runs_of(&tid).await.map_err(store_err)? {
        if r.status.is_active() {
            cancel_run(&app, r, CancelAction::Interrupt).await?;
        }
    }
    runs::delete_thread_everywhere(&app, &tid).await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn thread_copy(State(app): Shared, Path(tid): Path<String>) -> ApiResult {
    let row = load_thread(&app, &tid).await?;
    let new_id = uuid::Uuid::now_v7().to_string();
    if let Some(info) = app
        .checkpointer
        .thread(&tid)
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        && let (Some(cp), Some(a)) = (info.last_checkpoint, app.assistant(&info.graph))
    {
        a.runner
            .fork(&tid, cp, Some(new_id.clone()))
            .await
            .map_err(|e| ApiError::internal(e.to_string()))?;
    }
    let mut copy = runs::new_thread_row(&new_id, row.metadata.clone());
    copy.graph_id = row.graph_id.clone();
    copy.owner = row.owner.clone();
    app.control.put_thread(&copy).await.map_err(store_err)?;
    let mut out = thread_json(&app, &copy, false).await?;
    if let Some(m) = out.as_object_mut() {
        m.remove("values");
        m.remove("interrupts");
    }
    Ok(ok_json(out))
}

// --------------------------------------------------------------------------- state

/// The assistant whose graph a thread runs, once a run (or the creator) named it.
async fn thread_assistant<'a>(app: &'a App, row: &ThreadRow) -> ApiResult<Option<&'a Assistant>> {
    let graph = match app
        .checkpointer
        .thread(&row.thread_id)
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
    {
        Some(info) => Some(info.graph),
        None => row.graph_id.clone(),
    };
    Ok(graph.and_then(|g| app.assistant(&g)))
}

fn empty_state(tid: &str) -> Value {
    json!({
        "values": {}, "next": [], "tasks": [], "metadata": {}, "created_at": null,
        "checkpoint": {"thread_id": tid, "checkpoint_ns": "", "checkpoint_id": null},
        "parent_checkpoint": null, "interrupts": [], "checkpoint_id": null,
        "parent_checkpoint_id": null,
    })
}

/// A ThreadState at `checkpoint` (the latest when `None`), as RemoteGraph reads it.
async fn thread_state(app: &App, tid: &str, checkpoint: Option<u64>) -> ApiResult<Value> {
    let row = load_thread(app, tid).await?;
    let Some(a) = thread_assistant(app, &row).await? else {
        return Ok(empty_state(tid));
    };
    let has_checkpoints = app
        .checkpointer
        .thread(tid)
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .is_some_and(|i| i.last_checkpoint.is_some());
    if !has_checkpoints && checkpoint.is_none() {
        return Ok(empty_state(tid));
    }
    let history = a
        .runner
        .history(tid)
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let snap = a.runner.state(tid, checkpoint).await.map_err(|e| {
        ApiError::not_found(format!(
            "Thread {tid} has no checkpoint {}: {e}",
            checkpoint.map(checkpoint_wire).unwrap_or_default()
        ))
    })?;
    let summary = history
        .iter()
        .find(|s| Some(s.checkpoint_id) == snap.checkpoint_id);
    let is_head = checkpoint.is_none() || history.last().map(|s| s.checkpoint_id) == checkpoint;
    let waiting = snap.interrupt.as_ref().filter(|_| is_head);
    let ask = waiting.filter(|i| i.kind == InterruptKind::Ask);
    let interrupts = wire::interrupts(tid, snap.checkpoint_id, ask);
    let tasks: Vec<Value> = snap
        .next
        .iter()
        .map(|n| {
            // The questions this node's tasks wait on (several for a fan-out).
            let mine: Vec<&engine::InterruptInfo> = ask
                .into_iter()
                .flat_map(|i| i.all())
                .filter(|i| i.kind == InterruptKind::Ask && &i.node == n)
                .collect();
            let task = mine.first().map_or(n.as_str(), |i| i.task.as_str());
            json!({
                "id": wire::task_id(tid, snap.step + 1, task),
                "name": n,
                "path": ["__pregel_pull", n],
                "error": null,
                "interrupts": mine
                    .iter()
                    .map(|i| wire::interrupt_json(tid, snap.checkpoint_id, i))
                    .collect::<Vec<_>>(),
                "checkpoint": null,
                "state": null,
                "result": null,
            })
        })
        .collect();
    let cp = snap.checkpoint_id.map(checkpoint_wire);
    let parent = summary.and_then(|s| s.parent).map(checkpoint_wire);
    let source = summary.map_or("loop", |s| s.source.as_str());
    Ok(json!({
        "values": snap.values,
        "next": snap.next,
        "tasks": tasks,
        "metadata": {
            "source": source,
            "step": snap.step as i64 - 1,
            "parents": {},
            "graph_id": a.graph_id,
            "thread_id": tid,
            "writes": null,
        },
        "created_at": summary.map(|s| iso(s.created_at_ms)),
        "checkpoint": {"thread_id": tid, "checkpoint_ns": "", "checkpoint_id": cp},
        "parent_checkpoint": parent.as_ref().map(|p| json!({"thread_id": tid, "checkpoint_ns": "", "checkpoint_id": p})),
        "interrupts": interrupts,
        "checkpoint_id": cp,
        "parent_checkpoint_id": parent,
    }))
}

/// The thread's latest state (the v2 protocol's `state.get`).
pub(crate) async fn thread_state_value(app: &App, tid: &str) -> ApiResult<Value> {
    thread_state(app, tid, None).await
}

/// Refuses a thread id that is not a UUID.
pub(crate) fn check_thread_id(tid: &str) -> ApiResult<()> {
    check_uuid(tid, "thread")
}

/// Whether the caller can see a thread with this id.
pub(crate) async fn thread_exists(app: &App, tid: &str) -> ApiResult<bool> {
    Ok(app
        .control
        .thread(tid)
        .await
        .map_err(store_err)?
        .is_some_and(|t| may_see(t.owner.as_deref())))
}

async fn state_get(State(app): Shared, Path(tid): Path<String>) -> ApiResult {
    Ok(ok_json(thread_state(&app, &tid, None).await?))
}

fn parse_cp(text: &str) -> ApiResult<u64> {
    checkpoint_parse(text).ok_or_else(|| {
        ApiError::unprocessable(format!(
            "checkpoint_id: `{text}` is not a checkpoint id of this server"
        ))
    })
}

async fn state_at(State(app): Shared, Path((tid, cid)): Path<(String, String)>) -> ApiResult {
    let cp = parse_cp(&cid)?;
    Ok(ok_json(thread_state(&app, &tid, Some(cp)).await?))
}

async fn state_at_checkpoint(
    State(app): Shared,
    Path(tid): Path<String>,
    body: Bytes,
) -> ApiResult {
    let body = body_object(&body)?;
    let f = Fields(&body);
    let checkpoint = f.object("checkpoint")?;
    let cp = match checkpoint
        .and_then(|c| c.get("checkpoint_id"))
        .and_then(Value::as_str)
    {
        Some(c) => Some(parse_cp(c)?),
        None => None,
    };
    Ok(ok_json(thread_state(&app, &tid, cp).await?))
}

async fn state_update(State(app): Shared, Path(tid): Path<String>, body: Bytes) -> ApiResult {
    let row = load_thread(&app, &tid).await?;
    let body = body_object(&body)?;
    let f = Fields(&body);
    let Some(a) = thread_assistant(&app, &row).await? else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("Thread {tid} has no graph yet: run it once, or create it with graph_id"),
        ));
    };
    if app
        .control
        .runs_of(&tid)
        .await
        .map_err(store_err)?
        .iter()
        .any(|r| r.status.is_active())
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "Thread is busy: a run is pending or running on it",
        ));
    }
    let values = match f.get("values") {
        None => json!({}),
        Some(Value::Object(m)) => Value::Object(m.clone()),
        Some(Value::Array(items)) => {
            // A list of updates applies them in order; the last object wins per key.
            let mut merged = Map::new();
            for v in items {
                if let Value::Object(m) = v {
                    merged.extend(m.clone());
                }
            }
            Value::Object(merged)
        }
        Some(v) => {
            return Err(ApiError::unprocessable(format!(
                "values: expected an object, got {}",
                type_name(v)
            )));
        }
    };
    // `__start__`/`__input__` write as the input would: the thread stays where it is.
    let as_node = f
        .str("as_node")?
        .filter(|n| !matches!(*n, "__start__" | "__input__"));
    if let Some(as_node) = as_node
        && a.graph.node_id(as_node).is_none()
    {
        return Err(ApiError::unprocessable(format!(
            "as_node: graph `{}` has no node `{as_node}`",
            a.graph_id
        )));
    }
    let has_checkpoints = app
        .checkpointer
        .thread(&tid)
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .is_some_and(|i| i.last_checkpoint.is_some());
    let id = if has_checkpoints {
        a.runner.update_state_as(&tid, &values, as_node).await
    } else {
        // A thread with no state yet: the values become its first checkpoint, and no node
        // runs (LangGraph's update_state on an empty thread).
        a.runner.create_state(&tid, &values, as_node).await
    }
    .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.to_string()))?;
    let cp = checkpoint_wire(id);
    let conf = json!({"thread_id": tid, "checkpoint_ns": "", "checkpoint_id": cp});
    Ok(ok_json(json!({
        "checkpoint": conf,
        "configurable": conf,
        "checkpoint_id": cp,
    })))
}

async fn history(app: &App, tid: &str, limit: usize, before: Option<u64>) -> ApiResult<Value> {
    let row = load_thread(app, tid).await?;
    let Some(a) = thread_assistant(app, &row).await? else {
        return Ok(json!([]));
    };
    let list = match a.runner.history(tid).await {
        Ok(l) => l,
        Err(_) => return Ok(json!([])),
    };
    let mut out = Vec::new();
    for s in list.iter().rev() {
        if before.is_some_and(|b| s.checkpoint_id >= b) {
            continue;
        }
        if out.len() >= limit {
            break;
        }
        out.push(thread_state(app, tid, Some(s.checkpoint_id)).await?);
    }
    Ok(Value::Array(out))
}

/// The thread's checkpoints, newest first, as the v2 protocol's `state.listCheckpoints`
/// lists them (`{id, timestamp, step, node_name?, metadata}`), before `before` if given.
pub(crate) async fn checkpoint_list(
    app: &App,
    tid: &str,
    limit: usize,
    before: Option<&str>,
) -> ApiResult<Value> {
    let before = before.map(parse_cp).transpose()?;
    let row = load_thread(app, tid).await?;
    let Some(a) = thread_assistant(app, &row).await? else {
        return Ok(json!({"checkpoints": []}));
    };
    let list = a
        .runner
        .history(tid)
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let checkpoints: Vec<Value> = list
        .iter()
        .rev()
        .filter(|s| before.is_none_or(|b| s.checkpoint_id < b))
        .take(limit)
        .map(|s| {
            let step = s.step as i64 - 1;
            let mut c = json!({
                "id": checkpoint_wire(s.checkpoint_id),
                "timestamp": iso(s.created_at_ms),
                "step": step,
                "metadata": {
                    "source": s.source.as_str(),
                    "step": step,
                    "parent_id": s.parent.map(checkpoint_wire),
                    "next": s.next,
                },
            });
            if let Some(node) = s.nodes.first() {
                c["node_name"] = json!(node);
            }
            c
        })
        .collect();
    Ok(json!({ "checkpoints": checkpoints }))
}

async fn history_post(State(app): Shared, Path(tid): Path<String>, body: Bytes) -> ApiResult {
    let body = body_object(&body)?;
    let f = Fields(&body);
    let limit = f.usize("limit", 10)?;
    let before = match f.get("before") {
        Some(Value::String(s)) => Some(parse_cp(s)?),
        Some(Value::Object(c)) => match c.get("checkpoint_id").and_then(Value::as_str) {
            Some(s) => Some(parse_cp(s)?),
            None => None,
        },
        _ => None,
    };
    Ok(ok_json(history(&app, &tid, limit, before).await?))
}

async fn history_get(
    State(app): Shared,
    Path(tid): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let pairs = query_pairs(&q);
    let limit = query_get(&pairs, "limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(1);
    let before = match query_get(&pairs, "before") {
        Some(b) => Some(parse_cp(b)?),
        None => None,
    };
    Ok(ok_json(history(&app, &tid, limit, before).await?))
}

// ---------------------------------------------------------------------------- runs

pub(crate) fn run_json(row: &RunRow) -> Value {
    let mut run = run_json_reference(row);
    // An extension (clients ignore fields they do not know): what its models cost.
    if let Some(usage) = &row.usage {
        run["usage"] = usage.clone();
    }
    run
}

/// A run as the reference server answers it.
fn run_json_reference(row: &RunRow) -> Value {
    json!({
        "run_id": row.run_id,
        "thread_id": row.thread_id,
        "assistant_id": row.assistant_id,
        "created_at": iso(row.created_at_ms),
        "updated_at": iso(row.updated_at_ms),
        "status": row.status.as_str(),
        "metadata": row.metadata,
        "kwargs": row.kwargs,
        "multitask_strategy": row.multitask_strategy,
    })
}

/// Unwraps `{interrupt_id: value}` into the value when it answers the one pending question.
fn resume_value(resume: Value) -> Value {
    match resume {
        Value::Object(m)
            if m.len() == 1
                && m.keys()
                    .all(|k| k.len() == 32 && k.bytes().all(|b| b.is_ascii_hexdigit())) =>
        {
            m.into_iter().next().map(|(_, v)| v).unwrap_or(Value::Null)
        }
        other => other,
    }
}

/// Validates a run request, applies the double-texting strategy, stores the run and queues it.
/// What a run request asks, checked.
struct RunAsk {
    assistant_id: String,
    graph_id: String,
    resume: Option<Value>,
    modes: Vec<String>,
    strategy: String,
    if_not_exists: String,
    after_ms: u64,
    metadata: Map<String, Value>,
    checkpoint_id: Option<String>,
}

/// Checks a run request without making anything (crons check theirs when created).
pub(crate) fn check_run_body(app: &App, body: &Map<String, Value>) -> ApiResult<()> {
    read_run_request(app, body).map(|_| ())
}

fn read_run_request(app: &App, body: &Map<String, Value>) -> ApiResult<RunAsk> {
    let f = Fields(body);
    let assistant_id = f
        .str("assistant_id")?
        .ok_or_else(|| ApiError::unprocessable("assistant_id: required"))?;
    let a = find_assistant(app, assistant_id)?;
    let (assistant_id, graph_id) = (a.assistant_id.clone(), a.graph_id.clone());
    let command = f.object("command")?.cloned();
    let resume = command
        .as_ref()
        .and_then(|c| c.get("resume"))
        .filter(|v| !v.is_null())
        .cloned();
    if resume.is_some() && f.get("input").is_some() {
        return Err(ApiError::unprocessable(
            "give either input (a new run) or command.resume (an answer), not both",
        ));
    }
    if let Some(input) = f.get("input")
        && !input.is_object()
    {
        return Err(ApiError::unprocessable(format!(
            "input: expected an object of channel values, got {}",
            type_name(input)
        )));
    }
    if let Some(goto) = command.as_ref().and_then(|c| c.get("goto")) {
        super::runs::gotos(goto)
            .map_err(|e| ApiError::unprocessable(format!("command.goto: {e}")))?;
    }
    let modes = f
        .strings("stream_mode")?
        .unwrap_or_else(|| vec!["values".into()]);
    for m in &modes {
        if !wire::KNOWN_MODES.contains(&m.as_str()) {
            return Err(ApiError::unprocessable(format!(
                "stream_mode: unknown mode `{m}`; use one of {}",
                wire::KNOWN_MODES.join(", ")
            )));
        }
    }
    for key in ["interrupt_before", "interrupt_after"] {
        for n in f.strings(key)?.unwrap_or_default() {
            if n != "*" && a.graph.node_id(&n).is_none() {
                return Err(ApiError::unprocessable(format!(
                    "{key}: graph `{graph_id}` has no node `{n}`"
                )));
            }
        }
    }
    if let Some(url) = f.str("webhook")?
        && !(url.starts_with('/') || url.starts_with("http://") || url.starts_with("https://"))
    {
        return Err(ApiError::unprocessable(
            "webhook: give an http(s) URL or a path on this server",
        ));
    }
    check_run_config(&f)?;
    let strategy = f.one_of(
        "multitask_strategy",
        &["reject", "interrupt", "rollback", "enqueue"],
        "enqueue",
    )?;
    let if_not_exists = f.one_of("if_not_exists", &["create", "reject"], "reject")?;
    f.one_of("on_disconnect", &["cancel", "continue"], "continue")?;
    f.one_of("on_completion", &["delete", "keep"], "delete")?;
    // Every run checkpoints each step before the next starts, the strongest of the three:
    // a weaker choice is accepted and gets that guarantee.
    f.one_of("durability", &["sync", "async", "exit"], "async")?;
    let after_ms = match f.get("after_seconds") {
        None => 0,
        Some(v) => v
            .as_f64()
            .filter(|s| *s >= 0.0)
            .map(|s| (s * 1000.0) as u64)
            .ok_or_else(|| {
                ApiError::unprocessable("after_seconds: expected a non-negative number")
            })?,
    };
    let metadata = f.object("metadata")?.cloned().unwrap_or_default();
    let checkpoint_id = match f.get("checkpoint_id") {
        Some(Value::String(c)) => Some(c.clone()),
        _ => f
            .object("checkpoint")?
            .and_then(|c| c.get("checkpoint_id"))
            .and_then(Value::as_str)
            .map(String::from),
    };
    if let Some(c) = &checkpoint_id {
        parse_cp(c)?;
    }
    Ok(RunAsk {
        assistant_id,
        graph_id,
        resume,
        modes,
        strategy,
        if_not_exists,
        after_ms,
        metadata,
        checkpoint_id,
    })
}

pub(crate) async fn create_run(
    app: &Arc<App>,
    thread: Option<String>,
    body: Bytes,
) -> ApiResult<RunRow> {
    create_run_with_id(app, thread, body, None).await
}

/// [`create_run`] with the run's id given (a cron tick's, so that queueing the tick again
/// finds its run instead of making a second one).
pub(crate) async fn create_run_with_id(
    app: &Arc<App>,
    thread: Option<String>,
    body: Bytes,
    run_id: Option<String>,
) -> ApiResult<RunRow> {
    let mut body = body_object(&body)?;
    let RunAsk {
        assistant_id,
        graph_id,
        resume,
        modes,
        strategy,
        if_not_exists,
        after_ms,
        metadata,
        checkpoint_id,
    } = read_run_request(app, &body)?;
    let now = now_ms();
    let (thread_id, temporary) = match thread {
        None => {
            if resume.is_some() {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "You must provide a thread_id when resuming.",
                ));
            }
            let tid = uuid::Uuid::now_v7().to_string();
            let mut row = runs::new_thread_row(&tid, Map::new());
            row.graph_id = Some(graph_id.clone());
            row.owner = caller().map(|c| c.user);
            app.control.put_thread(&row).await.map_err(store_err)?;
            (tid, true)
        }
        Some(tid) => {
            check_uuid(&tid, "thread")?;
            match app.control.thread(&tid).await.map_err(store_err)? {
                Some(t) if !may_see(t.owner.as_deref()) => {
                    return Err(ApiError::not_found(format!(
                        "Thread with ID {tid} not found"
                    )));
                }
                Some(_) => {}
                None if if_not_exists != "create" => {
                    return Err(ApiError::not_found(format!(
                        "Thread with ID {tid} not found"
                    )));
                }
                None => {
                    let mut row = runs::new_thread_row(&tid, Map::new());
                    row.graph_id = Some(graph_id.clone());
                    row.owner = caller().map(|c| c.user);
                    app.control.put_thread(&row).await.map_err(store_err)?;
                }
            }
            (tid, false)
        }
    };
    let active: Vec<RunRow> = app
        .control
        .runs_of(&thread_id)
        .await
        .map_err(store_err)?
        .into_iter()
        .filter(|r| r.status.is_active())
        .collect();
    if !active.is_empty() {
        match strategy.as_str() {
            "reject" => {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "Thread is already running a task. Wait for it to finish or choose a different multitask strategy.",
                ));
            }
            "interrupt" | "rollback" => {
                let action = if strategy == "rollback" {
                    CancelAction::Rollback
                } else {
                    CancelAction::Interrupt
                };
                for r in &active {
                    cancel_run(app, r.clone(), action).await?;
                }
            }
            _ => {}
        }
    } else if resume.is_some() {
        let waiting = app
            .checkpointer
            .thread(&thread_id)
            .await
            .map_err(|e| ApiError::internal(e.to_string()))?
            .is_some_and(|t| t.status == ThreadStatus::Interrupted);
        if !waiting {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!(
                    "Thread {thread_id} is not interrupted: there is no question to resume; send input instead"
                ),
            ));
        }
    }
    if let Some(Value::Object(cmd)) = body.get_mut("command")
        && let Some(r) = cmd.remove("resume")
    {
        cmd.insert("resume".into(), resume_value(r));
    }
    body.insert("stream_mode".into(), json!(modes));
    if let Some(c) = checkpoint_id {
        body.insert("checkpoint_id".into(), json!(c));
    }
    let run_id = run_id.unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    // Ended at once; whichever process executes the run continues its trace.
    let enqueued = tracing::info_span!(
        target: "brainops",
        "run.enqueue",
        otel.name = %format_args!("enqueue {graph_id}"),
        otel.kind = "producer",
        run_id = %run_id,
        thread = %thread_id,
        assistant_id = %assistant_id,
        graph = %graph_id,
    );
    let trace = crate::telemetry::carrier(&enqueued);
    drop(enqueued);
    // A process executing the run elsewhere feeds this one's thread subscribers.
    let watched_from = (app.control.shared() && app.buses.get(&thread_id).is_some())
        .then(|| app.runs.worker_id.clone());
    let row = RunRow {
        run_id,
        thread_id,
        assistant_id,
        graph_id,
        status: RunState::Pending,
        metadata,
        kwargs: Value::Object(body),
        multitask_strategy: strategy,
        temporary,
        attempt: 0,
        not_before_ms: now + after_ms,
        owner: caller().map(|c| c.user),
        worker: None,
        error: None,
        started_at_ms: None,
        start_checkpoint: None,
        usage: None,
        trace,
        watched_from,
        watchers: Vec::new(),
        created_at_ms: now,
        updated_at_ms: now,
    };
    app.control.put_run(&row).await.map_err(store_err)?;
    // A delayed run is relayed once it is about to start (`protocol::watch_threads`), not
    // followed through the store while it waits.
    if row.watched_from.is_some() && after_ms == 0 {
        super::protocol::spawn_relay(app, row.thread_id.clone(), row.run_id.clone());
    }
    // A stream sees the run's `metadata` first even while it waits in the queue. With a
    // shared store the process that executes the run writes it (and no log is made for a
    // run nobody streams: each would follow the store).
    if !app.control.shared() {
        runs::log(app, &row.run_id).push("metadata", &json!({"run_id": row.run_id, "attempt": 1}));
    }
    app.runs.poke();
    if app.control.shared() {
        let app = app.clone();
        tokio::spawn(async move { app.tell("run").await });
    }
    Ok(row)
}

/// Cancels a run: a pending one never starts; a running one stops at its next await, here
/// or in the process executing it (told through the store, at its next heartbeat, or at
/// once when it listens).
async fn cancel_run(app: &Arc<App>, row: RunRow, action: CancelAction) -> ApiResult<()> {
    let rollback = action == CancelAction::Rollback;
    if row.status == RunState::Pending
        && app
            .control
            .cancel_pending(&row.run_id, rollback, now_ms())
            .await
            .map_err(store_err)?
    {
        let log = runs::log(app, &row.run_id);
        log.push(
            "metadata",
            &json!({"status": "cancelled", "run_id": row.run_id}),
        );
        app.runs.finish_pending(&row.run_id);
        app.runs
            .forget_later(&row.run_id, app.options.stream_retention);
        return Ok(());
    }
    if app.runs.cancel(&row.run_id, action) {
        return Ok(());
    }
    // Not here (or it started a moment ago): the process holding it reads the request.
    if app
        .control
        .request_cancel(&row.run_id, action.as_str())
        .await
        .map_err(store_err)?
    {
        if app.runs.cancel(&row.run_id, action) {
            return Ok(());
        }
        if app.control.shared() {
            app.tell(&format!("cancel:{}:{}", action.as_str(), row.run_id))
                .await;
        }
    }
    Ok(())
}

/// Cancels a run that is still active (a cron's overlap policy), logging a failure.
pub(crate) async fn cancel_active(app: &Arc<App>, row: RunRow) {
    let run_id = row.run_id.clone();
    if let Err(e) = cancel_run(app, row, CancelAction::Interrupt).await {
        tracing::warn!(run = %run_id, "cannot cancel: {}", e.detail());
    }
}

fn run_location(row: &RunRow) -> String {
    if row.temporary {
        format!("/runs/{}", row.run_id)
    } else {
        format!("/threads/{}/runs/{}", row.thread_id, row.run_id)
    }
}

async fn runs_create(State(app): Shared, Path(tid): Path<String>, body: Bytes) -> ApiResult {
    let row = create_run(&app, Some(tid), body).await?;
    Ok(created_response(&row))
}

async fn stateless_create(State(app): Shared, body: Bytes) -> ApiResult {
    let row = create_run(&app, None, body).await?;
    Ok(created_response(&row))
}

/// `POST /runs/batch`: thread-less runs, one per body. Every body is checked before any run
/// is created, so a bad one creates nothing.
async fn stateless_batch(State(app): Shared, body: Bytes) -> ApiResult {
    let items = match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Array(items)) => items,
        Ok(other) => {
            return Err(ApiError::unprocessable(format!(
                "the request body must be a list of run requests, not {}",
                type_name(&other)
            )));
        }
        Err(e) => {
            return Err(ApiError::unprocessable(format!(
                "the request body is not valid JSON: {e}"
            )));
        }
    };
    for (i, item) in items.iter().enumerate() {
        let f = item.as_object().ok_or_else(|| {
            ApiError::unprocessable(format!("[{i}]: expected a run request object"))
        })?;
        let fields = Fields(f);
        let assistant = fields
            .str("assistant_id")
            .map_err(|e| ApiError::unprocessable(format!("[{i}].{}", e.detail)))?
            .ok_or_else(|| ApiError::unprocessable(format!("[{i}].assistant_id: required")))?;
        find_assistant(&app, assistant)
            .map_err(|e| ApiError::new(e.status, format!("[{i}].assistant_id: {}", e.detail)))?;
    }
    let mut runs = Vec::with_capacity(items.len());
    for item in items {
        let row = create_run(&app, None, Bytes::from(item.to_string())).await?;
        runs.push(run_json(&row));
    }
    Ok(ok_json(Value::Array(runs)))
}

fn created_response(row: &RunRow) -> Response {
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&run_location(row)) {
        headers.insert(header::CONTENT_LOCATION, v);
    }
    (headers, axum::Json(run_json(row))).into_response()
}

async fn runs_stream(State(app): Shared, Path(tid): Path<String>, body: Bytes) -> ApiResult {
    let on_disconnect = disconnect_policy(&body);
    let row = create_run(&app, Some(tid), body).await?;
    let log = runs::log(&app, &row.run_id);
    Ok(stream_response(
        &app,
        &row,
        log,
        0,
        None,
        on_disconnect,
        true,
    ))
}

async fn stateless_stream(State(app): Shared, body: Bytes) -> ApiResult {
    let on_disconnect = disconnect_policy(&body);
    let row = create_run(&app, None, body).await?;
    let log = runs::log(&app, &row.run_id);
    Ok(stream_response(
        &app,
        &row,
        log,
        0,
        None,
        on_disconnect,
        true,
    ))
}

fn disconnect_policy(body: &Bytes) -> bool {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| {
            v.get("on_disconnect")
                .and_then(Value::as_str)
                .map(|s| s == "cancel")
        })
        .unwrap_or(false)
}

/// Cancels the run when the client goes away before it ended (`on_disconnect: cancel`).
struct CancelOnDrop {
    app: Arc<App>,
    row: Option<RunRow>,
    log: Arc<RunLog>,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let Some(row) = self.row.take()
            && !self.log.is_finished()
        {
            let app = self.app.clone();
            tokio::spawn(async move {
                let current = app
                    .control
                    .run(&row.run_id)
                    .await
                    .ok()
                    .flatten()
                    .unwrap_or(row);
                let _ = cancel_run(&app, current, CancelAction::Interrupt).await;
            });
        }
    }
}

/// The SSE stream of a run's log from position `from`, filtered to `modes` (prefix match).
fn stream_response(
    app: &Arc<App>,
    row: &RunRow,
    log: Arc<RunLog>,
    from: usize,
    modes: Option<Vec<String>>,
    cancel_on_disconnect: bool,
    created: bool,
) -> Response {
    let resumable = row.kwargs.get("stream_resumable").and_then(Value::as_bool) == Some(true);
    let guard = CancelOnDrop {
        app: app.clone(),
        row: cancel_on_disconnect.then(|| row.clone()),
        log: log.clone(),
    };
    let rx = log.subscribe();
    let state = (
        log,
        rx,
        from,
        Vec::<runs::LogEvent>::new().into_iter(),
        guard,
    );
    let events =
        futures_util::stream::unfold(state, move |(log, mut rx, mut cursor, mut batch, guard)| {
            let modes = modes.clone();
            async move {
                loop {
                    if let Some(e) = batch.next() {
                        if e.is_relayed() {
                            continue;
                        }
                        if let Some(modes) = &modes
                            && !modes.iter().any(|m| mode_matches(&e.event, m))
                        {
                            continue;
                        }
                        let mut ev = SseEvent::default().event(&*e.event).data(&*e.data);
                        if resumable {
                            ev = ev.id(e.seq.to_string());
                        }
                        return Some((Ok::<_, Infallible>(ev), (log, rx, cursor, batch, guard)));
                    }
                    let (events, done) = log.since(cursor);
                    if !events.is_empty() {
                        cursor += events.len();
                        batch = events.into_iter();
                        continue;
                    }
                    if done {
                        return None;
                    }
                    if rx.changed().await.is_err() {
                        return None;
                    }
                }
            }
        });
    let mut headers = HeaderMap::new();
    let location = run_location(row);
    if let Ok(v) = HeaderValue::from_str(&format!("{location}/stream")) {
        headers.insert(header::LOCATION, v);
    }
    if created && let Ok(v) = HeaderValue::from_str(&location) {
        headers.insert(header::CONTENT_LOCATION, v);
    }
    sse_response(app, events, headers)
}

/// `events` as an SSE response with `headers`: a `heartbeat` comment every 5 s, neither
/// cached nor buffered by a proxy, and counted as an open stream until the client goes.
pub(crate) fn sse_response<S>(app: &App, events: S, mut headers: HeaderMap) -> Response
where
    S: futures_util::Stream<Item = Result<SseEvent, Infallible>> + Send + 'static,
{
    let open = app.options.metrics.as_ref().map(|m| m.stream_opened());
    let events = futures_util::StreamExt::map(events, move |e| {
        let _open = &open;
        e
    });
    let sse = Sse::new(events).keep_alive(
        KeepAlive::new()
            .interval(Duration::from_secs(5))
            .text("heartbeat"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    (headers, sse).into_response()
}

fn mode_matches(event: &str, mode: &str) -> bool {
    if event == "metadata" || event == "error" {
        return true;
    }
    let mode = if mode == "messages-tuple" {
        "messages"
    } else {
        mode
    };
    event == mode
        || event.starts_with(&format!("{mode}|"))
        || (mode == "messages" && event.starts_with("messages"))
}

/// A run's final body (`/wait`, `/join`): what its log recorded, else the thread's state.
async fn final_body(app: &App, row: &RunRow) -> Value {
    if let Some(r) = app.runs.existing_log(&row.run_id).and_then(|l| l.result()) {
        return r;
    }
    match thread_state(app, &row.thread_id, None).await {
        Ok(state) => {
            let mut values = state["values"].as_object().cloned().unwrap_or_default();
            if let Some(i) = state["interrupts"].as_array().filter(|a| !a.is_empty()) {
                values.insert("__interrupt__".into(), Value::Array(i.clone()));
            }
            Value::Object(values)
        }
        Err(_) => json!({}),
    }
}

/// Waits for the run to end, writing a newline every 5 s meanwhile, then its final body.
fn wait_response(
    app: &Arc<App>,
    row: &RunRow,
    location: String,
    cancel_on_disconnect: bool,
) -> Response {
    let log = runs::log(app, &row.run_id);
    let app2 = app.clone();
    let row2 = row.clone();
    let guard = CancelOnDrop {
        app: app.clone(),
        row: cancel_on_disconnect.then(|| row.clone()),
        log: log.clone(),
    };
    let stream = futures_util::stream::unfold(Some((log, guard)), move |state| {
        let app = app2.clone();
        let row = row2.clone();
        async move {
            let (log, guard) = state?;
            let mut rx = log.subscribe();
            let done = async {
                while !rx.borrow_and_update().1 {
                    if rx.changed().await.is_err() {
                        break;
                    }
                }
            };
            match tokio::time::timeout(Duration::from_secs(5), done).await {
                Ok(()) => {
                    let body = final_body(&app, &row).await;
                    drop(guard);
                    Some((
                        Ok::<_, Infallible>(Bytes::from(
                            serde_json::to_vec(&body).unwrap_or_default(),
                        )),
                        None,
                    ))
                }
                Err(_) => Some((Ok(Bytes::from_static(b"\n")), Some((log, guard)))),
            }
        }
    });
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Ok(v) = HeaderValue::from_str(&location) {
        headers.insert(header::CONTENT_LOCATION, v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!("{location}/join")) {
        headers.insert(header::LOCATION, v);
    }
    (headers, Body::from_stream(stream)).into_response()
}

async fn runs_wait(State(app): Shared, Path(tid): Path<String>, body: Bytes) -> ApiResult {
    let on_disconnect = disconnect_policy(&body);
    let row = create_run(&app, Some(tid), body).await?;
    Ok(wait_response(&app, &row, run_location(&row), on_disconnect))
}

async fn stateless_wait(State(app): Shared, body: Bytes) -> ApiResult {
    let on_disconnect = disconnect_policy(&body);
    let row = create_run(&app, None, body).await?;
    Ok(wait_response(&app, &row, run_location(&row), on_disconnect))
}

async fn load_run(app: &App, tid: &str, rid: &str) -> ApiResult<RunRow> {
    check_uuid(tid, "thread")?;
    check_uuid(rid, "run")?;
    app.control
        .run(rid)
        .await
        .map_err(store_err)?
        .filter(|r| r.thread_id == tid && may_see(r.owner.as_deref()))
        .ok_or_else(|| ApiError::not_found(format!("Run {rid} not found")))
}

async fn run_get(State(app): Shared, Path((tid, rid)): Path<(String, String)>) -> ApiResult {
    Ok(ok_json(run_json(&load_run(&app, &tid, &rid).await?)))
}

/// How many of the latest threads `/runs/search` reads the runs of, when it asks for more
/// than the queue.
const RUNS_SEARCH_THREADS: usize = 500;

/// Runs of every thread the caller may see (an extension for the console's queue page):
/// `status` (one or a list), newest first, paged; each with its attempts, worker and error.
async fn runs_search(State(app): Shared, body: Bytes) -> ApiResult {
    let body = body_object(&body)?;
    let f = Fields(&body);
    let statuses = f.strings("status")?.unwrap_or_default();
    let limit = f.usize("limit", 50)?;
    let offset = f.usize("offset", 0)?;
    let only_active =
        !statuses.is_empty() && statuses.iter().all(|s| s == "pending" || s == "running");
    let mut rows = if only_active {
        app.control.active_runs().await.map_err(store_err)?
    } else {
        // The runs of the most recently updated threads: one query per thread.
        let mut all = Vec::new();
        let threads = app.control.threads().await.map_err(store_err)?;
        for t in threads.iter().take(RUNS_SEARCH_THREADS) {
            if may_see(t.owner.as_deref()) {
                all.extend(app.control.runs_of(&t.thread_id).await.map_err(store_err)?);
            }
        }
        all
    };
    rows.retain(|r| {
        may_see(r.owner.as_deref())
            && (statuses.is_empty() || statuses.iter().any(|s| s == r.status.as_str()))
    });
    rows.sort_by_key(|r| std::cmp::Reverse(r.created_at_ms));
    let runs: Vec<Value> = rows
        .iter()
        .map(|r| {
            let mut v = run_json(r);
            v["graph_id"] = json!(r.graph_id);
            v["attempt"] = json!(r.attempt);
            v["worker"] = json!(r.worker);
            v["error"] = r.error.clone().unwrap_or(Value::Null);
            v["started_at"] = r.started_at_ms.map_or(Value::Null, |ms| json!(iso(ms)));
            v
        })
        .collect();
    Ok(paged(runs, limit, offset, None))
}

async fn runs_list(
    State(app): Shared,
    Path(tid): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult {
    load_thread(&app, &tid).await?;
    let pairs = query_pairs(&q);
    let limit = query_get(&pairs, "limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(10);
    let offset = query_get(&pairs, "offset")
        .and_then(|l| l.parse().ok())
        .unwrap_or(0);
    let status = query_get(&pairs, "status");
    let select: Vec<String> = pairs
        .iter()
        .filter(|(k, _)| k == "select")
        .map(|(_, v)| v.clone())
        .collect();
    let runs: Vec<Value> = app
        .control
        .runs_of(&tid)
        .await
        .map_err(store_err)?
        .iter()
        .filter(|r| status.is_none_or(|s| r.status.as_str() == s))
        .map(run_json)
        .collect();
    let select = (!select.is_empty()).then_some(select);
    Ok(paged(runs, limit, offset, select))
}

async fn run_delete(State(app): Shared, Path((tid, rid)): Path<(String, String)>) -> ApiResult {
    let row = load_run(&app, &tid, &rid).await?;
    if row.status.is_active() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "the run is pending or running; cancel it first",
        ));
    }
    app.control.delete_run(&rid).await.map_err(store_err)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn run_join(
    State(app): Shared,
    Path((tid, rid)): Path<(String, String)>,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let row = load_run(&app, &tid, &rid).await?;
    let cancel = query_bool(&query_pairs(&q), "cancel_on_disconnect");
    if !row.status.is_active() {
        return Ok(ok_json(final_body(&app, &row).await));
    }
    Ok(wait_response(&app, &row, run_location(&row), cancel))
}

/// `stream_mode` on a join: absent, repeated, comma-separated or one JSON array.
pub(super) fn join_modes(pairs: &[(String, String)]) -> Option<Vec<String>> {
    let mut modes = Vec::new();
    for (k, v) in pairs {
        if k != "stream_mode" && k != "stream_modes" {
            continue;
        }
        if let Ok(Value::Array(list)) = serde_json::from_str::<Value>(v) {
            modes.extend(list.iter().filter_map(|m| m.as_str().map(String::from)));
        } else {
            modes.extend(
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from),
            );
        }
    }
    (!modes.is_empty()).then_some(modes)
}

/// Where a join starts: after `Last-Event-ID` (`-1`, `-` or `0`: from the start); without
/// one, live events only.
fn join_start(headers: &HeaderMap, log: &RunLog) -> usize {
    match headers.get("last-event-id").and_then(|v| v.to_str().ok()) {
        Some(id) => id
            .split('-')
            .next()
            .and_then(|n| n.parse::<usize>().ok())
            .filter(|_| !id.starts_with('-'))
            .unwrap_or(0),
        None => log.len(),
    }
}

/// The log a join reads. A run that ended with no log here (dropped after its retention,
/// or from before a restart) has nothing left to stream: the join is empty, as the
/// reference's.
pub(super) fn joined_log(app: &Arc<App>, row: &RunRow) -> Arc<RunLog> {
    match app.runs.existing_log(&row.run_id) {
        Some(log) => log,
        None if !row.status.is_active() => RunLog::ended(),
        None => runs::log(app, &row.run_id),
    }
}

async fn join_stream(
    app: &Arc<App>,
    row: RunRow,
    headers: &HeaderMap,
    q: &Option<String>,
) -> Response {
    let pairs = query_pairs(q);
    let log = joined_log(app, &row);
    let from = join_start(headers, &log);
    let cancel = query_bool(&pairs, "cancel_on_disconnect");
    stream_response(app, &row, log, from, join_modes(&pairs), cancel, false)
}

async fn run_join_stream(
    State(app): Shared,
    Path((tid, rid)): Path<(String, String)>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let row = load_run(&app, &tid, &rid).await?;
    Ok(join_stream(&app, row, &headers, &q).await)
}

async fn stateless_join_stream(
    State(app): Shared,
    Path(rid): Path<String>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> ApiResult {
    check_uuid(&rid, "run")?;
    let row = app
        .control
        .run(&rid)
        .await
        .map_err(store_err)?
        .filter(|r| may_see(r.owner.as_deref()))
        .ok_or_else(|| ApiError::not_found(format!("Run {rid} not found")))?;
    Ok(join_stream(&app, row, &headers, &q).await)
}

fn cancel_action(pairs: &[(String, String)]) -> ApiResult<CancelAction> {
    match query_get(pairs, "action") {
        None | Some("interrupt") => Ok(CancelAction::Interrupt),
        Some("rollback") => Ok(CancelAction::Rollback),
        Some(other) => Err(ApiError::unprocessable(format!(
            "action: `{other}` is not one of interrupt, rollback"
        ))),
    }
}

async fn run_cancel(
    State(app): Shared,
    Path((tid, rid)): Path<(String, String)>,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let row = load_run(&app, &tid, &rid).await?;
    let pairs = query_pairs(&q);
    let action = cancel_action(&pairs)?;
    let wait = query_bool(&pairs, "wait");
    if row.status.is_active() {
        cancel_run(&app, row.clone(), action).await?;
    }
    if wait {
        let log = runs::log(&app, &row.run_id);
        let mut rx = log.subscribe();
        if row.status.is_active() {
            while !rx.borrow_and_update().1 {
                if rx.changed().await.is_err() {
                    break;
                }
            }
        }
        return Ok(ok_json(final_body(&app, &row).await));
    }
    Ok(StatusCode::ACCEPTED.into_response())
}

async fn runs_cancel_many(State(app): Shared, RawQuery(q): RawQuery, body: Bytes) -> ApiResult {
    let action = cancel_action(&query_pairs(&q))?;
    let body = body_object(&body)?;
    let f = Fields(&body);
    let mut targets = Vec::new();
    if let Some(status) = f.str("status")? {
        let want: &[RunState] = match status {
            "pending" => &[RunState::Pending],
            "running" => &[RunState::Running],
            "all" => &[RunState::Pending, RunState::Running],
            other => {
                return Err(ApiError::unprocessable(format!(
                    "status: `{other}` is not one of pending, running, all"
                )));
            }
        };
        targets = app
            .control
            .active_runs()
            .await
            .map_err(store_err)?
            .into_iter()
            .filter(|r| want.contains(&r.status))
            .collect();
    } else if let Some(ids) = f.strings("run_ids")? {
        for id in ids {
            if let Some(r) = app.control.run(&id).await.map_err(store_err)? {
                targets.push(r);
            }
        }
    } else {
        return Err(ApiError::unprocessable(
            "give either status, or thread_id and run_ids",
        ));
    }
    for r in targets
        .into_iter()
        .filter(|r| r.status.is_active() && may_see(r.owner.as_deref()))
    {
        cancel_run(&app, r, action).await?;
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

// --------------------------------------------------------------------------- store

fn namespace(value: Option<&Value>, field: &str) -> ApiResult<memory::Namespace> {
    let segments: Vec<String> = match value {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str().map(String::from).ok_or_else(|| {
                    ApiError::unprocessable(format!("{field}: expected a list of strings"))
                })
            })
            .collect::<ApiResult<_>>()?,
        Some(v) => {
            return Err(ApiError::unprocessable(format!(
                "{field}: expected a list of strings, got {}",
                type_name(v)
            )));
        }
    };
    if let Some(bad) = segments.iter().find(|s| s.is_empty() || s.contains('.')) {
        return Err(ApiError::unprocessable(format!(
            "{field}: namespace labels must be non-empty and contain no `.` (got `{bad}`)"
        )));
    }
    if segments.is_empty() {
        return Ok(memory::Namespace::root());
    }
    memory::Namespace::new(segments).map_err(|e| ApiError::unprocessable(format!("{field}: {e}")))
}

/// The memory store and a namespace as the caller may use them: under its tenant (the first
/// segment) when requests are authenticated, through a handle limited to that tenant.
async fn scoped(
    app: &App,
    ns: memory::Namespace,
) -> ApiResult<(Arc<dyn memory::MemoryStore>, memory::Namespace)> {
    let store = app.memory().await.map_err(mem_err)?.clone();
    let Some(who) = caller() else {
        return Ok((store, ns));
    };
    let scoped = memory::TenantScoped::new(&store, &who.tenant).map_err(mem_err)?;
    let mut segments = vec![who.tenant.clone()];
    segments.extend(ns.segments().iter().cloned());
    let ns = memory::Namespace::new(segments)
        .map_err(|e| ApiError::unprocessable(format!("namespace: {e}")))?;
    Ok((Arc::new(scoped), ns))
}

/// A namespace as the caller sees it (without its tenant segment when authenticated).
fn visible_namespace(ns: &memory::Namespace) -> &[String] {
    let segments = ns.segments();
    match caller() {
        Some(_) => segments.get(1..).unwrap_or_default(),
        None => segments,
    }
}

fn item_json(item: &memory::Item) -> Value {
    json!({
        "namespace": visible_namespace(&item.namespace),
        "key": item.key,
        "value": item.value,
        "created_at": iso(item.created_at.max(0) as u64),
        "updated_at": iso(item.updated_at.max(0) as u64),
    })
}

fn mem_err(e: impl std::fmt::Display) -> ApiError {
    ApiError::internal(format!("memory store: {e}"))
}

async fn store_put(State(app): Shared, body: Bytes) -> ApiResult {
    let body = body_object(&body)?;
    let f = Fields(&body);
    let ns = namespace(f.get("namespace"), "namespace")?;
    if ns.is_root() {
        return Err(ApiError::unprocessable(
            "namespace: required (a non-empty list of strings)",
        ));
    }
    let key = f
        .str("key")?
        .ok_or_else(|| ApiError::unprocessable("key: required"))?;
    let value = f
        .object("value")?
        .ok_or_else(|| ApiError::unprocessable("value: required (an object)"))?;
    let index = match f.get("index") {
        None => memory::Index::Whole,
        Some(Value::Bool(false)) => memory::Index::Off,
        Some(Value::Array(paths)) => memory::Index::Fields(
            paths
                .iter()
                .filter_map(|p| p.as_str().map(String::from))
                .collect(),
        ),
        Some(v) => {
            return Err(ApiError::unprocessable(format!(
                "index: expected false or a list of field paths, got {}",
                type_name(v)
            )));
        }
    };
    let ttl = match f.get("ttl") {
        None => None,
        Some(v) => Some(Duration::from_secs_f64(
            v.as_f64().filter(|m| *m > 0.0).ok_or_else(|| {
                ApiError::unprocessable("ttl: expected minutes, a positive number")
            })? * 60.0,
        )),
    };
    let (store, ns) = scoped(&app, ns).await?;
    store
        .put(
            &ns,
            key,
            Value::Object(value.clone()),
            memory::PutOptions { index, ttl },
        )
        .await
        .map_err(mem_err)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn store_get(State(app): Shared, RawQuery(q): RawQuery) -> ApiResult {
    let pairs = query_pairs(&q);
    let key = query_get(&pairs, "key")
        .ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, "key: required"))?;
    let ns: Vec<Value> = query_get(&pairs, "namespace")
        .map(|n| n.split('.').map(|s| json!(s)).collect())
        .unwrap_or_default();
    let ns = namespace(Some(&Value::Array(ns)), "namespace")?;
    let (store, ns) = scoped(&app, ns).await?;
    let item = store.get(&ns, key).await.map_err(mem_err)?;
    Ok(ok_json(item.as_ref().map_or(Value::Null, item_json)))
}

async fn store_delete(State(app): Shared, body: Bytes) -> ApiResult {
    let body = body_object(&body)?;
    let f = Fields(&body);
    let ns = namespace(f.get("namespace"), "namespace")?;
    let key = f
        .str("key")?
        .ok_or_else(|| ApiError::unprocessable("key: required"))?;
    let (store, ns) = scoped(&app, ns).await?;
    store.delete(&ns, key).await.map_err(mem_err)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn store_search(State(app): Shared, body: Bytes) -> ApiResult {
    let body = body_object(&body)?;
    let f = Fields(&body);
    let prefix = namespace(f.get("namespace_prefix"), "namespace_prefix")?;
    let (store, prefix) = scoped(&app, prefix).await?;
    let mut search = memory::Search::new(prefix)
        .limit(f.usize("limit", 10)?)
        .offset(f.usize("offset", 0)?);
    if let Some(q) = f.str("query")? {
        search = search.query(q);
    }
    if let Some(filter) = f.object("filter")? {
        search = search.filter(filter.clone());
    }
    let hits = store.search(&search).await.map_err(mem_err)?;
    let items: Vec<Value> = hits
        .iter()
        .map(|h| {
            let mut v = item_json(&h.item);
            v["score"] = json!(h.score);
            // An extension: the cosine similarity behind the score, for the console.
            if let Some(similarity) = h.similarity {
                v["similarity"] = json!(similarity);
            }
            v
        })
        .collect();
    Ok(ok_json(json!({"items": items})))
}

async fn store_namespaces(State(app): Shared, body: Bytes) -> ApiResult {
    let body = body_object(&body)?;
    let f = Fields(&body);
    let prefix = namespace(f.get("prefix"), "prefix")?;
    let suffix: Option<Vec<String>> = f.strings("suffix")?;
    let max_depth = f
        .get("max_depth")
        .and_then(Value::as_u64)
        .map(|d| d as usize);
    let limit = f.usize("limit", 100)?;
    let offset = f.usize("offset", 0)?;
    let (store, prefix) = scoped(&app, prefix).await?;
    let depth = max_depth.map(|d| d + usize::from(caller().is_some()));
    let list: Vec<Value> = store
        .list_namespaces(&prefix, depth)
        .await
        .map_err(mem_err)?
        .iter()
        .filter(|n| suffix.as_ref().is_none_or(|s| n.segments().ends_with(s)))
        .skip(offset)
        .take(limit)
        .map(|n| json!(visible_namespace(n)))
        .collect();
    Ok(ok_json(json!({"namespaces": list})))
}
