//! Who is calling: API keys (`x-api-key` or a bearer token, as the SDKs send them) or a
//! Supabase session (its JWT, HS256 with the project's secret or ES256/RS256 with its JWKS).
//! Every authenticated request runs with its caller's [`Identity`]: threads and runs are
//! visible only to the user who created them, and `/store` namespaces live under the
//! caller's tenant.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::App;

/// How requests are authenticated.
#[derive(Debug, Clone, Default)]
pub enum Auth {
    /// None: the server binds to loopback only, unless told `--insecure`.
    #[default]
    None,
    /// Keys from `BRAINOPS_API_KEYS`: `user:key` pairs (or bare keys, each its own user),
    /// separated by commas.
    ApiKeys(Vec<(String, String)>),
    /// Supabase Auth session tokens.
    Supabase(SupabaseAuth),
}

/// How Supabase tokens are verified.
#[derive(Debug, Clone, Default)]
pub struct SupabaseAuth {
    /// The project's JWT secret (`SUPABASE_JWT_SECRET`), for HS256 tokens.
    pub secret: Option<String>,
    /// The project's JWKS (`SUPABASE_JWKS_URL`, else `$SUPABASE_URL/auth/v1/.well-known/jwks.json`),
    /// for asymmetric (ES256, RS256) tokens.
    pub jwks_url: Option<String>,
    /// The audience tokens must carry (Supabase's is `authenticated`).
    pub audience: String,
}

impl Auth {
    /// API keys from `BRAINOPS_API_KEYS`; an error names what is wrong, never a key.
    pub fn api_keys_from_env() -> Result<Auth, String> {
        let raw = std::env::var("BRAINOPS_API_KEYS").unwrap_or_default();
        let mut keys = Vec::new();
        for (i, entry) in raw
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .enumerate()
        {
            let (user, key) = match entry.split_once(':') {
                Some((u, k)) => (u.trim().to_string(), k.trim().to_string()),
                None => (format!("key-{}", i + 1), entry.to_string()),
            };
            if key.len() < 16 {
                return Err(format!(
                    "BRAINOPS_API_KEYS: key {} (user `{user}`) is shorter than 16 characters; use long random keys",
                    i + 1
                ));
            }
            keys.push((user, key));
        }
        if keys.is_empty() {
            return Err(
                "--auth api-key needs BRAINOPS_API_KEYS: `user:key` pairs separated by commas"
                    .into(),
            );
        }
        Ok(Auth::ApiKeys(keys))
    }

    /// Supabase verification from `SUPABASE_JWT_SECRET` and/or the project's JWKS.
    pub fn supabase_from_env() -> Result<Auth, String> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let secret = var("SUPABASE_JWT_SECRET");
        let jwks_url = var("SUPABASE_JWKS_URL").or_else(|| {
            var("SUPABASE_URL")
                .map(|u| format!("{}/auth/v1/.well-known/jwks.json", u.trim_end_matches('/')))
        });
        if secret.is_none() && jwks_url.is_none() {
            return Err("--auth supabase needs SUPABASE_JWT_SECRET (HS256) or SUPABASE_URL / SUPABASE_JWKS_URL (the project's signing keys)".into());
        }
        Ok(Auth::Supabase(SupabaseAuth {
            secret,
            jwks_url,
            audience: var("SUPABASE_JWT_AUDIENCE").unwrap_or_else(|| "authenticated".into()),
        }))
    }

    /// Whether requests are checked at all.
    pub fn is_on(&self) -> bool {
        !matches!(self, Auth::None)
    }
}

/// The authenticated caller.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Identity {
    /// Owns the threads and runs it creates.
    pub(crate) user: String,
    /// The memory tenant: the first segment of its `/store` namespaces.
    pub(crate) tenant: String,
}

tokio::task_local! {
    /// The caller of the request being handled. A task-local keeps the ~40 handlers'
    /// signatures as the protocol is, and reaches the few helpers that scope by owner.
    static CALLER: Option<Identity>;
}

/// The caller of the current request (`None` without auth).
pub(crate) fn caller() -> Option<Identity> {
    CALLER.try_with(Clone::clone).ok().flatten()
}

/// Runs `work` as `identity` (a WebSocket's session outlives the request that opened it).
pub(crate) async fn as_caller<F: std::future::Future>(
    identity: Option<Identity>,
    work: F,
) -> F::Output {
    CALLER.scope(identity, work).await
}

/// Whether the current caller may see a record owned by `owner`.
pub(crate) fn may_see(owner: Option<&str>) -> bool {
    match caller() {
        None => true,
        Some(who) => owner == Some(who.user.as_str()),
    }
}

fn unauthorized(detail: &str) -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        axum::Json(json!({ "detail": detail })),
    )
        .into_response()
}

fn presented(headers: &HeaderMap) -> Option<&str> {
    headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .or_else(|| {
            headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| {
                    v.strip_prefix("Bearer ")
                        .or_else(|| v.strip_prefix("bearer "))
                })
        })
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// Compares in time independent of where the strings differ.
fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        diff |= usize::from(a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0));
    }
    diff == 0
}

/// The middleware: identifies the caller or answers 401. `/ok` stays open for health checks,
/// and `/ui` for the console's files.
pub(crate) async fn authenticate(
    State(app): State<Arc<App>>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path();
    // The console's files hold no data: the page asks for a key and sends it with every
    // API call, as any client does.
    let open = path == "/ok" || path == "/ui" || path.starts_with("/ui/");
    if !app.options.auth.is_on() || open {
        return CALLER.scope(None, next.run(request)).await;
    }
    let Some(token) = presented(request.headers()).map(String::from) else {
        return unauthorized(
            "authentication required: send an API key as `x-api-key` or `Authorization: Bearer`",
        );
    };
    let identity = match &app.options.auth {
        Auth::None => None,
        Auth::ApiKeys(keys) => {
            let mut found = None;
            for (user, key) in keys {
                if same(&token, key) {
                    found = Some(user.clone());
                }
            }
            match found {
                Some(user) => Some(Identity {
                    tenant: user.clone(),
                    user,
                }),
                None => return unauthorized("invalid API key"),
            }
        }
        Auth::Supabase(s) => match verify_supabase(&app, s, &token).await {
            Ok(identity) => Some(identity),
            Err(reason) => return unauthorized(&format!("invalid session token: {reason}")),
        },
    };
    CALLER.scope(identity, next.run(request)).await
}

/// Verifies a Supabase access token; the reason on failure names no secret.
async fn verify_supabase(app: &App, s: &SupabaseAuth, token: &str) -> Result<Identity, String> {
    use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
    let head = decode_header(token).map_err(|e| format!("not a JWT ({e})"))?;
    let key = match head.alg {
        Algorithm::HS256 => {
            let secret = s
                .secret
                .as_ref()
                .ok_or("HS256 tokens need SUPABASE_JWT_SECRET on the server")?;
            DecodingKey::from_secret(secret.as_bytes())
        }
        Algorithm::ES256 | Algorithm::RS256 => {
            let kid = head.kid.clone().unwrap_or_default();
            let jwk = app.signing_key(s, &kid).await?;
            DecodingKey::from_jwk(&jwk).map_err(|e| format!("signing key `{kid}`: {e}"))?
        }
        other => return Err(format!("algorithm {other:?} is not accepted")),
    };
    let mut validation = Validation::new(head.alg);
    // Clock skew between the auth server and this one; an expired session stays refused.
    validation.leeway = 10;
    validation.set_audience(&[s.audience.as_str()]);
    validation.set_required_spec_claims(&["exp", "sub", "aud"]);
    let data = decode::<Value>(token, &key, &validation).map_err(|e| e.to_string())?;
    let claims = data.claims;
    let user = claims["sub"].as_str().ok_or("no `sub` claim")?.to_string();
    let tenant = claims["app_metadata"]["tenant_id"]
        .as_str()
        .or_else(|| claims["tenant_id"].as_str())
        .unwrap_or(&user)
        .to_string();
    Ok(Identity { user, tenant })
}

impl App {
    /// The project's signing key `kid`, from its JWKS (fetched once, again for an unknown kid).
    async fn signing_key(
        &self,
        s: &SupabaseAuth,
        kid: &str,
    ) -> Result<jsonwebtoken::jwk::Jwk, String> {
        let find = |set: &jsonwebtoken::jwk::JwkSet| {
            set.keys
                .iter()
                .find(|k| kid.is_empty() || k.common.key_id.as_deref() == Some(kid))
                .cloned()
        };
        if let Some(set) = self.jwks.read().await.as_ref()
            && let Some(key) = find(set)
        {
            return Ok(key);
        }
        let url = s
            .jwks_url
            .as_ref()
            .ok_or("asymmetric tokens need SUPABASE_URL or SUPABASE_JWKS_URL")?;
        let client = agents::llm::http_client_builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| format!("no HTTP client: {e}"))?;
        let set: jsonwebtoken::jwk::JwkSet = client
            .get(url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| {
                format!(
                    "cannot fetch the project's signing keys: {}",
                    e.without_url()
                )
            })?
            .json()
            .await
            .map_err(|e| {
                format!(
                    "the project's signing keys are not a JWKS: {}",
                    e.without_url()
                )
            })?;
        let key =
            find(&set).ok_or_else(|| format!("no signing key `{kid}` in the project's JWKS"))?;
        *self.jwks.write().await = Some(set);
        Ok(key)
    }
}

#[cfg(test)]
mod tests {
    use super::same;

    #[test]
    fn keys_compare_whole() {
        assert!(same("abcdefghijklmnop", "abcdefghijklmnop"));
        assert!(!same("abcdefghijklmnop", "abcdefghijklmnoq"));
        assert!(!same("abcdefghijklmnop", "abcdefghijklmno"));
        assert!(!same("", "a"));
    }
}
