//! A Docker token server (the `auth: token` protocol) that distribution 2.8 really verifies: ES256
//! JWTs whose `x5c` header carries a self-signed certificate the registry trusts as `rootcertbundle`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use serde_json::json;

use super::http::{form_values, Request, Response, TestServer};
use super::{b64std, rfc3339, unix_now, Es256Key, TempDir};

/// What the token server accepts and how long its tokens live.
#[derive(Debug, Clone)]
pub struct TokenServerConfig {
    /// `service` the registry names in its challenge; becomes the token's `aud`.
    pub service: String,
    /// `iss` claim; the registry must be configured with the same issuer.
    pub issuer: String,
    /// The one user/password that gets push (and pull); `None` means nobody can log in.
    pub credentials: Option<(String, String)>,
    /// Whether requests without credentials get pull access.
    pub anonymous_pull: bool,
    /// Token lifetime in seconds (`expires_in`).
    pub expires_in: u64,
}

impl Default for TokenServerConfig {
    fn default() -> Self {
        TokenServerConfig {
            service: "breakwater-test-registry".to_owned(),
            issuer: "breakwater-test-issuer".to_owned(),
            credentials: Some(("tester".to_owned(), "s3cret".to_owned())),
            anonymous_pull: true,
            expires_in: 300,
        }
    }
}

/// One access grant inside a token (`{"type","name","actions"}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// Resource type, usually `repository`.
    pub kind: String,
    /// Resource name, e.g. `library/alpine`.
    pub name: String,
    /// Granted actions, e.g. `["pull"]`.
    pub actions: Vec<String>,
}

/// A request the token server answered, for assertions.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    /// HTTP method (`GET`, or `POST` for the OAuth form).
    pub method: String,
    /// User name when credentials were sent.
    pub user: Option<String>,
    /// Requested scopes as sent.
    pub scopes: Vec<String>,
    /// Status answered.
    pub status: u16,
    /// What the issued token grants (empty on failure).
    pub granted: Vec<Grant>,
}

struct State {
    config: TokenServerConfig,
    key: Es256Key,
    cert_der: Vec<u8>,
    log: Mutex<Vec<TokenRequest>>,
    delay: Mutex<Duration>,
    failure: Mutex<Option<u16>>,
}

/// A running token server; its realm is `http://127.0.0.1:PORT/token`.
pub struct TokenServer {
    state: Arc<State>,
    server: TestServer,
    cert_path: PathBuf,
    _dir: TempDir,
}

impl TokenServer {
    /// Starts with [`TokenServerConfig::default`] (user `tester`/`s3cret`, anonymous pull allowed).
    pub async fn start_default() -> TokenServer {
        TokenServer::start(TokenServerConfig::default()).await
    }

    /// Generates a signing key + self-signed certificate and starts serving `/token`.
    pub async fn start(config: TokenServerConfig) -> TokenServer {
        let key = Es256Key::generate();
        let mut params =
            rcgen::CertificateParams::new(Vec::<String>::new()).expect("certificate params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "breakwater test token signer");
        let cert = params
            .self_signed(&key.rcgen)
            .expect("self-sign token certificate");
        let dir = TempDir::new("token");
        let cert_path = dir.path().join("token-root.pem");
        std::fs::write(&cert_path, cert.pem()).expect("write token root certificate");

        let state = Arc::new(State {
            config,
            key,
            cert_der: cert.der().to_vec(),
            log: Mutex::new(Vec::new()),
            delay: Mutex::new(Duration::ZERO),
            failure: Mutex::new(None),
        });
        let handler_state = state.clone();
        let server = TestServer::start_async(move |req| {
            let state = handler_state.clone();
            async move {
                let delay = *state.delay.lock().expect("delay lock");
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                handle(&state, req)
            }
        })
        .await;
        TokenServer {
            state,
            server,
            cert_path,
            _dir: dir,
        }
    }

    /// The `realm` URL to configure in the registry.
    pub fn realm(&self) -> String {
        format!("{}/token", self.server.url())
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// The `service` (token audience).
    pub fn service(&self) -> &str {
        &self.state.config.service
    }

    /// The `issuer`.
    pub fn issuer(&self) -> &str {
        &self.state.config.issuer
    }

    /// PEM file with the signing certificate, for the registry's `rootcertbundle`.
    pub fn root_cert_path(&self) -> &Path {
        &self.cert_path
    }

    /// The configured push-capable credentials.
    pub fn credentials(&self) -> Option<(String, String)> {
        self.state.config.credentials.clone()
    }

    /// How many token requests arrived (any outcome), for single-flight assertions.
    pub fn token_requests(&self) -> usize {
        self.state.log.lock().expect("token log lock").len()
    }

    /// Every token request answered so far.
    pub fn token_log(&self) -> Vec<TokenRequest> {
        self.state.log.lock().expect("token log lock").clone()
    }

    /// Delays every answer (widens races so concurrent token fetches really overlap).
    pub fn set_delay(&self, delay: Duration) {
        *self.state.delay.lock().expect("delay lock") = delay;
    }

    /// Makes every token request fail with `status` until reset with `None`.
    pub fn set_failure(&self, status: Option<u16>) {
        *self.state.failure.lock().expect("failure lock") = status;
    }

    /// Signs a token directly (not counted). `lifetime_secs` below -60 (distribution's clock-skew
    /// leeway) yields a token the registry rejects as expired.
    pub fn mint(&self, subject: &str, grants: &[Grant], lifetime_secs: i64) -> String {
        mint(&self.state, subject, grants, lifetime_secs)
    }
}

fn handle(state: &State, req: Request) -> Response {
    if req.path() != "/token" {
        return Response::text(404, "token server only serves /token");
    }
    // GET carries service/scope in the query; the OAuth POST form carries them (space-separated
    // scopes) plus username/password in the body.
    let form = String::from_utf8_lossy(&req.body).into_owned();
    let (scopes, form_creds) = if req.method == "POST" {
        let scopes = form_values(&form, "scope")
            .iter()
            .flat_map(|s| s.split(' ').map(str::to_owned))
            .collect();
        let user = form_values(&form, "username").into_iter().next();
        let pass = form_values(&form, "password").into_iter().next();
        (scopes, user.zip(pass))
    } else {
        (req.query_all("scope"), None)
    };
    let creds = form_creds.or_else(|| basic_credentials(&req));
    let mut entry = TokenRequest {
        method: req.method.clone(),
        user: creds.as_ref().map(|(u, _)| u.clone()),
        scopes: scopes.clone(),
        status: 200,
        granted: Vec::new(),
    };
    let response = answer(state, &req, creds, &scopes, &mut entry);
    entry.status = response.status;
    state.log.lock().expect("token log lock").push(entry);
    response
}

fn answer(
    state: &State,
    req: &Request,
    creds: Option<(String, String)>,
    scopes: &[String],
    entry: &mut TokenRequest,
) -> Response {
    if let Some(status) = *state.failure.lock().expect("failure lock") {
        return Response::json(status, &json!({"details": "token server told to fail"}));
    }
    let service = req
        .query("service")
        .or_else(|| form_values(&String::from_utf8_lossy(&req.body), "service").pop());
    if service
        .as_deref()
        .is_some_and(|s| s != state.config.service)
    {
        return Response::json(400, &json!({"details": "unknown service"}));
    }
    let allowed: &[&str] = match (&creds, &state.config.credentials) {
        (Some(given), Some(known)) if given == known => &["pull", "push", "delete", "*"],
        (Some(_), _) => {
            return Response::json(401, &json!({"details": "incorrect username or password"}))
                .header("WWW-Authenticate", "Basic realm=\"breakwater-test\"");
        }
        (None, _) if state.config.anonymous_pull => &["pull"],
        // Like Docker Hub: an anonymous caller gets a token that grants nothing.
        (None, _) => &[],
    };
    entry.granted = scopes
        .iter()
        .filter_map(|s| grant_for(s, allowed))
        .collect();
    let subject = creds.map(|(u, _)| u).unwrap_or_default();
    let lifetime = i64::try_from(state.config.expires_in).unwrap_or(i64::MAX / 2);
    let token = mint(state, &subject, &entry.granted, lifetime);
    Response::json(
        200,
        &json!({
            "token": token,
            "access_token": token,
            "expires_in": state.config.expires_in,
            "issued_at": rfc3339(unix_now()),
        }),
    )
}

/// Parses `type:name:actions` (the name may itself contain `:` for `host:port`) and keeps only the
/// allowed actions; `None` when nothing is granted.
fn grant_for(scope: &str, allowed: &[&str]) -> Option<Grant> {
    let (kind, rest) = scope.split_once(':')?;
    let (name, actions) = rest.rsplit_once(':')?;
    let actions: Vec<String> = actions
        .split(',')
        .filter(|a| allowed.contains(a))
        .map(str::to_owned)
        .collect();
    (!actions.is_empty()).then(|| Grant {
        kind: kind.to_owned(),
        name: name.to_owned(),
        actions,
    })
}

fn basic_credentials(req: &Request) -> Option<(String, String)> {
    let value = req.header("authorization")?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, pass) = text.split_once(':')?;
    Some((user.to_owned(), pass.to_owned()))
}

fn mint(state: &State, subject: &str, grants: &[Grant], lifetime_secs: i64) -> String {
    let now = unix_now() as i64;
    let header = json!({"typ": "JWT", "alg": "ES256", "x5c": [b64std(&state.cert_der)]});
    let access: Vec<_> = grants
        .iter()
        .map(|g| json!({"type": g.kind, "name": g.name, "actions": g.actions}))
        .collect();
    let claims = json!({
        "iss": state.config.issuer,
        "sub": subject,
        "aud": state.config.service,
        "exp": now + lifetime_secs,
        // Backdated a little so a registry whose clock reads slightly behind still accepts it.
        "nbf": now.min(now + lifetime_secs) - 5,
        "iat": now,
        "jti": hex::encode(rand::random::<[u8; 16]>()),
        "access": access,
    });
    state.key.compact_jws(&header, &claims)
}
