//! The live console at `/ui`: pages to watch, steer and debug runs, built only on the
//! server's own API and its thread event stream.
//!
//! The page's files are compiled into the binary (no CDN, nothing fetched at run time). They
//! carry no data, so they are served without credentials; every datum the page shows comes
//! through the API with the caller's key or session, as any other client's would.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use super::App;
use super::api::{ApiError, ApiResult, ok_json};

/// The console's files: (path under `/ui`, content type, bytes).
const FILES: &[(&str, &str, &str)] = &[
    (
        "",
        "text/html; charset=utf-8",
        include_str!("console/index.html"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("console/app.js"),
    ),
    (
        "app.css",
        "text/css; charset=utf-8",
        include_str!("console/app.css"),
    ),
    (
        "vendor/dagre.min.js",
        "text/javascript; charset=utf-8",
        include_str!("console/vendor/dagre.min.js"),
    ),
    (
        "vendor/LICENSES.txt",
        "text/plain; charset=utf-8",
        include_str!("console/vendor/LICENSES.txt"),
    ),
];

/// Scripts and styles only from the server itself, and no framing by other sites.
const POLICY: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; \
                      script-src 'self'; connect-src 'self'; frame-ancestors 'none'";

pub(crate) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/ui", get(|| async { file("") }))
        .route("/ui/", get(|| async { file("") }))
        .route(
            "/ui/{*path}",
            get(|Path(path): Path<String>| async move { file(&path) }),
        )
}

fn file(path: &str) -> Response {
    let Some((_, kind, body)) = FILES.iter().find(|(p, _, _)| *p == path) else {
        return ApiError::not_found(format!("no console file `/ui/{path}`")).into_response();
    };
    let mut response = (*body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    // A new binary may bring new files under the same names.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// `GET /agents`: the catalog, each agent in full, grouped by nothing (the page groups by
/// category).
pub(crate) async fn agents(State(app): State<Arc<App>>) -> ApiResult {
    Ok(ok_json(json!({"agents": app.options.agents.as_slice()})))
}

/// `GET /agents/{name}`: one agent's spec.
pub(crate) async fn agent(State(app): State<Arc<App>>, Path(name): Path<String>) -> ApiResult {
    app.options
        .agents
        .iter()
        .find(|a| a["name"].as_str() == Some(name.as_str()))
        .map(|a| ok_json(a.clone()))
        .ok_or_else(|| {
            let names: Vec<&str> = app
                .options
                .agents
                .iter()
                .filter_map(|a| a["name"].as_str())
                .collect();
            ApiError::not_found(format!(
                "no agent `{name}`; {}",
                engine::graph::suggest("agents", &name, &names)
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_console_file_is_served_with_its_type_and_policy() {
        for (path, kind, _) in FILES {
            let r = file(path);
            assert_eq!(r.status(), 200, "{path}");
            assert_eq!(r.headers()[header::CONTENT_TYPE], *kind);
            assert!(r.headers().contains_key(header::CONTENT_SECURITY_POLICY));
        }
        assert_eq!(file("../Cargo.toml").status(), 404);
    }

    #[test]
    fn the_page_loads_only_files_the_server_has() {
        let (_, _, page) = FILES[0];
        for src in page
            .split("src=\"")
            .skip(1)
            .chain(page.split("href=\"").skip(1))
        {
            let target = src.split('"').next().unwrap_or_default();
            // In-page links, and the empty icon that keeps the browser from asking for one.
            if target.starts_with('#') || target == "data:," {
                continue;
            }
            let Some(rel) = target.strip_prefix("/ui/") else {
                panic!("the page refers to `{target}`, outside the console");
            };
            assert!(
                FILES.iter().any(|(p, _, _)| *p == rel),
                "{target} is not served"
            );
        }
    }
}
