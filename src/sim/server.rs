//! Serving: the listener, the router, and the request pipeline every business call goes
//! through (route → count → auth → tenant → fault → handler → envelope and headers).

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Map, Value, json};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use url::Url;

use super::api::FaultAction;
use super::control;
use super::handlers;
use super::lenient;
use super::model::Mode;
use super::state::Shared;
use super::wire::{Reply, Req};
use super::world::World;
use super::{SimConfig, System};

/// A TCP stream the request handler can cut: once its flag is set, every read and write fails,
/// so hyper drops the connection without writing the response (`commit_then_drop`).
pub(crate) struct KillableStream {
    inner: TcpStream,
    kill: Arc<AtomicBool>,
}

fn killed() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionReset,
        "connection dropped by fault rule",
    )
}

impl AsyncRead for KillableStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.kill.load(Ordering::SeqCst) {
            return Poll::Ready(Err(killed()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for KillableStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.kill.load(Ordering::SeqCst) {
            return Poll::Ready(Err(killed()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.kill.load(Ordering::SeqCst) {
            return Poll::Ready(Err(killed()));
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The listener handing out [`KillableStream`]s.
pub(crate) struct SimListener(TcpListener);

impl axum::serve::Listener for SimListener {
    type Io = KillableStream;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.0.accept().await {
                Ok((inner, addr)) => {
                    let _ = inner.set_nodelay(true);
                    return (
                        KillableStream {
                            inner,
                            kill: Arc::new(AtomicBool::new(false)),
                        },
                        addr,
                    );
                }
                // Out of file descriptors and the like: back off briefly, as axum does.
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

/// The per-connection kill switch, handed to handlers as connect info.
#[derive(Clone, Debug)]
pub(crate) struct ConnKill(Arc<AtomicBool>);

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, SimListener>>
    for ConnKill
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, SimListener>) -> Self {
        ConnKill(stream.io().kill.clone())
    }
}

/// Serves until `stop` is cancelled.
pub(crate) async fn serve(
    listener: TcpListener,
    config: SimConfig,
    base_url: Url,
    stop: CancellationToken,
) {
    let shared = Arc::new(Shared {
        config,
        base_url,
        world: Mutex::new(World::default()),
        stop: stop.clone(),
    });
    let app = Router::new()
        .route(
            "/_sim/faults",
            post(control::add_fault)
                .get(control::list_faults)
                .delete(control::clear_faults),
        )
        .route(
            "/_sim/behaviour",
            post(control::add_behaviour)
                .get(control::list_behaviours)
                .delete(control::clear_behaviours),
        )
        .route("/_sim/jobs", get(control::jobs))
        .route(
            "/_sim/jobs/{system}/{id}/{action}",
            post(control::job_action),
        )
        .route("/_sim/calls", get(control::calls))
        .route("/_sim/reset", post(control::reset))
        .fallback(business)
        .with_state(shared);
    let service = app.into_make_service_with_connect_info::<ConnKill>();
    let _ = axum::serve(SimListener(listener), service)
        .with_graceful_shutdown(stop.cancelled_owned())
        .await;
}

/// Sleeps, but wakes early when the simulator shuts down.
async fn sleep(shared: &Shared, d: Duration) {
    tokio::select! {
        _ = tokio::time::sleep(d) => {}
        _ = shared.stop.cancelled() => {}
    }
}

fn request_id() -> String {
    let n: u128 = rand::random();
    format!("{n:032x}")
}

/// The error answer the API gateway itself produces (`bk-core/errorx.lua`).
fn gateway_error(status: StatusCode, code: i64, code_name: &str, message: &str) -> Response {
    let body = json!({
        "code": code,
        "code_name": code_name,
        "message": message,
        "result": false,
        "data": null,
    });
    let mut resp = (status, axum::Json(body)).into_response();
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&code.to_string()) {
        h.insert(HeaderName::from_static("x-bkapi-error-code"), v);
    }
    if let Ok(v) = HeaderValue::from_str(message) {
        h.insert(HeaderName::from_static("x-bkapi-error-message"), v);
    }
    resp
}

/// The error answer legacy ESB itself produces (`esb/response.py`).
fn esb_error(status: StatusCode, code: i64, message: &str, rid: &str) -> Response {
    let body = json!({
        "result": false,
        "code": code,
        "message": message,
        "data": null,
        "request_id": rid,
    });
    (status, axum::Json(body)).into_response()
}

/// A gateway- or ESB-level error, rendered per mode.
struct EdgeError {
    status: StatusCode,
    gw_code: i64,
    gw_name: &'static str,
    esb_code: i64,
    message: String,
}

impl EdgeError {
    fn render(&self, mode: Mode, rid: &str) -> Response {
        match mode {
            Mode::Gateway => gateway_error(self.status, self.gw_code, self.gw_name, &self.message),
            // ESB answers its own errors with HTTP 200, except where the status itself carries
            // the meaning (429, 5xx).
            Mode::Esb => {
                let status = if self.status.is_server_error()
                    || self.status == StatusCode::TOO_MANY_REQUESTS
                {
                    self.status
                } else {
                    StatusCode::OK
                };
                esb_error(status, self.esb_code, &self.message, rid)
            }
        }
    }
}

fn not_found(mode: Mode, rid: &str, path: &str) -> Response {
    match mode {
        Mode::Gateway => gateway_error(
            StatusCode::NOT_FOUND,
            1640401,
            "API_NOT_FOUND",
            "API not found",
        ),
        Mode::Esb => esb_error(
            StatusCode::NOT_FOUND,
            1306404,
            &format!("Not found, component class not found: path={path}"),
            rid,
        ),
    }
}

/// Who the caller is, after auth.
struct Identity {
    app_code: String,
    user: Option<String>,
}

fn str_of(map: &Map<String, Value>, keys: &[&str]) -> Option<String> {
    keys.iter()
        .filter_map(|k| map.get(*k))
        .filter_map(|v| match v {
            Value::String(s) if !s.is_empty() => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        })
        .next()
}

/// Verifies app and user credentials the way the gateway (`bk-auth-verify`) and ESB do: the
/// `X-Bkapi-Authorization` header wins when present; otherwise query and body keys count where
/// the API allows them.
fn authenticate(
    config: &SimConfig,
    headers: &HeaderMap,
    params: &Map<String, Value>,
    params_allowed: bool,
    user_required: bool,
) -> Result<Identity, EdgeError> {
    let creds: Map<String, Value> = match headers.get("x-bkapi-authorization") {
        Some(raw) => {
            let parsed = raw
                .to_str()
                .ok()
                .and_then(|s| serde_json::from_str::<Value>(s).ok());
            match parsed {
                Some(Value::Object(m)) => m,
                _ => {
                    return Err(EdgeError {
                        status: StatusCode::BAD_REQUEST,
                        gw_code: 1640001,
                        gw_name: "INVALID_ARGS",
                        esb_code: 1306406,
                        message: "Parameters error [reason=\"request header X-Bkapi-Authorization is not a valid JSON\"]".into(),
                    });
                }
            }
        }
        None if params_allowed => params.clone(),
        None => Map::new(),
    };
    let app_code = str_of(&creds, &["bk_app_code", "app_code"]);
    let app_secret = str_of(&creds, &["bk_app_secret", "app_secret"]);
    let Some(app_code) = app_code else {
        return Err(EdgeError {
            status: StatusCode::UNAUTHORIZED,
            gw_code: 1640101,
            gw_name: "APP_VERIFY_FAILED",
            esb_code: 1306403,
            message: "App authentication failed [reason=\"app code cannot be empty\"]".into(),
        });
    };
    let ok = app_secret.as_deref().is_some_and(|secret| {
        config
            .apps
            .iter()
            .any(|a| a.app_code == app_code && a.app_secret == secret)
    });
    if !ok {
        return Err(EdgeError {
            status: StatusCode::UNAUTHORIZED,
            gw_code: 1640101,
            gw_name: "APP_VERIFY_FAILED",
            esb_code: 1306403,
            message:
                "App authentication failed [reason=\"bk_app_code or bk_app_secret is incorrect\"]"
                    .into(),
        });
    }
    let user = str_of(&creds, &["bk_username", "username"]).or_else(|| {
        str_of(&creds, &["bk_token", "access_token"]).map(|_| config.token_user.clone())
    });
    if user.is_none() && user_required {
        return Err(EdgeError {
            status: StatusCode::UNAUTHORIZED,
            gw_code: 1640102,
            gw_name: "USER_VERIFY_FAILED",
            esb_code: 1306401,
            message: "User authentication failed, please provide a valid user identity, such as bk_username, bk_token, access_token".into(),
        });
    }
    Ok(Identity { app_code, user })
}

fn fault_edge(action: &FaultAction) -> Option<EdgeError> {
    match action {
        FaultAction::HttpStatus { status, code } => {
            let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_GATEWAY);
            let (default_code, name) = match status.as_u16() {
                502 => (1650200, "BAD_GATEWAY"),
                503 => (1650300, "SERVICE_UNAVAILABLE"),
                504 => (1650401, "REQUEST_BACKEND_TIMEOUT"),
                _ => (1650001, "INTERNAL_SERVER_ERROR"),
            };
            Some(EdgeError {
                status,
                gw_code: code.unwrap_or(default_code),
                gw_name: name,
                esb_code: code.unwrap_or(1306201),
                message: format!("Simulated gateway error [status={}]", status.as_u16()),
            })
        }
        FaultAction::RateLimit => Some(EdgeError {
            status: StatusCode::TOO_MANY_REQUESTS,
            gw_code: 1642901,
            gw_name: "RATE_LIMIT_RESTRICTION",
            esb_code: 1306429,
            message: "API rate limit exceeded by stage global limit".into(),
        }),
        _ => None,
    }
}

fn query_map(uri: &Uri) -> Map<String, Value> {
    let mut m = Map::new();
    if let Some(q) = uri.query() {
        for (k, v) in url::form_urlencoded::parse(q.as_bytes()) {
            m.insert(k.into_owned(), Value::String(v.into_owned()));
        }
    }
    m
}

fn with_request_id(mut resp: Response, rid: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(rid) {
        resp.headers_mut()
            .insert(HeaderName::from_static("x-bkapi-request-id"), v);
    }
    resp
}

/// Every path that is not the control API.
async fn business(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(conn): ConnectInfo<ConnKill>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let rid = request_id();
    let resp = pipeline(&shared, &conn, method, uri, headers, body, &rid).await;
    with_request_id(resp, &rid)
}

async fn pipeline(
    shared: &Shared,
    conn: &ConnKill,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
    rid: &str,
) -> Response {
    let path = uri.path().to_string();
    let route = match handlers::route(&method, &path, &shared.config) {
        Ok(r) => r,
        Err(mode) => return not_found(mode, rid, &path),
    };
    let query = query_map(&uri);
    let (body, body_error) = match lenient::parse_body(&body) {
        Ok(v) => (v, None),
        Err(e) => (Value::Null, Some(e)),
    };
    let mut params = query.clone();
    if let Value::Object(b) = &body {
        for (k, v) in b {
            params.insert(k.clone(), v.clone());
        }
    }
    let system = route.op.system();
    let endpoint = route.op.endpoint(&route, &params);
    shared
        .world()
        .count(system, endpoint, method.as_str(), &path);

    let identity = match authenticate(
        &shared.config,
        &headers,
        &params,
        route.params_auth,
        route.user_required,
    ) {
        Ok(i) => i,
        Err(e) => return e.render(route.mode, rid),
    };

    if system == System::Job && shared.config.require_tenant {
        let has_tenant = headers
            .get("x-bk-tenant-id")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| !v.trim().is_empty());
        if !has_tenant {
            // job-gateway's CheckTenant filter answers a bare 401 before any JOB envelope.
            return StatusCode::UNAUTHORIZED.into_response();
        }
    }

    let fault = shared.world().take_fault(system, endpoint);
    let mut after: Option<FaultAction> = None;
    if let Some(rule) = fault {
        match &rule.action {
            FaultAction::DelayMs(ms) => sleep(shared, Duration::from_millis(*ms)).await,
            FaultAction::Reject { code, message } => {
                let msg = message
                    .clone()
                    .unwrap_or_else(|| "simulated rejection".to_string());
                let reply = handlers::error_reply(system, *code, &msg);
                return render(reply, route.mode, rid);
            }
            FaultAction::CommitThenTimeout { .. } | FaultAction::CommitThenDrop => {
                after = Some(rule.action.clone());
            }
            other => {
                if let Some(e) = fault_edge(other) {
                    return e.render(route.mode, rid);
                }
            }
        }
    }

    let req = Req {
        mode: route.mode,
        op: route.op,
        ids: route.ids.clone(),
        params,
        body,
        body_error,
        user: identity
            .user
            .unwrap_or_else(|| shared.config.token_user.clone()),
        app_code: identity.app_code,
        base_url: shared
            .config
            .job_url_host
            .clone()
            .unwrap_or_else(|| shared.base_url.clone()),
    };
    let reply = {
        let now = Instant::now();
        let mut w = shared.world();
        handlers::dispatch(&mut w, &shared.config, &req, now)
    };
    match after {
        Some(FaultAction::CommitThenDrop) => {
            conn.0.store(true, Ordering::SeqCst);
            StatusCode::OK.into_response()
        }
        Some(FaultAction::CommitThenTimeout { delay_ms }) => {
            sleep(shared, Duration::from_millis(delay_ms)).await;
            render(reply, route.mode, rid)
        }
        _ => render(reply, route.mode, rid),
    }
}

/// Turns a handler's reply into a response; ESB adds its `request_id` to the body.
fn render(reply: Reply, mode: Mode, rid: &str) -> Response {
    match reply {
        Reply::Json { status, mut body } => {
            if mode == Mode::Esb
                && let Value::Object(m) = &mut body
                && !m.contains_key("request_id")
            {
                m.insert("request_id".into(), Value::String(rid.to_string()));
            }
            (status, axum::Json(body)).into_response()
        }
        Reply::Html { status, body } => (
            status,
            [(http::header::CONTENT_TYPE, "text/html; charset=utf-8")],
            body,
        )
            .into_response(),
    }
}
