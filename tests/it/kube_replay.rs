//! A scripted Kubernetes API server on loopback for the Kubernetes backend's tests: it
//! replays one fixture of `tests/fixtures/kube/` (an ordered list of exchanges, in the API
//! server's wire format) and records every failed expectation: a request out of order or
//! unexpected, a request body that does not pass the exchange's checks, exchanges left unused.
//!
//! An exchange (JSON):
//! - `method`, `path`: the request line to expect; `query`: `[name, value]` pairs — for each
//!   name listed, the request's values of that name must be exactly these, in this order;
//! - `bind`: `{var: JSON pointer}` read from the request body (e.g. the pod name the client
//!   chose); `{var}` in any later string of the fixture, and of this exchange's checks and
//!   response, is replaced by its value (the test seeds more vars, such as `{owner}`);
//! - `checks`: `[{at, equals | differs | prefix | absent}]` on the request body;
//! - the response: `status`, then `body` (JSON), `events` (a watch stream: one JSON event a
//!   line; `hold: true` keeps the stream open after them) or `text` (`text/plain`, as pod logs);
//! - or `websocket`: a pods/exec upgrade answered with `protocol`; the client's stdin
//!   (channel 0, up to the v5 close of channel 0) must equal `stdin` when it is a string
//!   (`true` only records it, for [`Replay::stdin`]), then
//!   `frames` (`{channel, text}` or `{channel: 3, status}`) are sent and the socket closed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

/// One request the server received.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub query: Vec<(String, String)>,
    /// The JSON body (`Null` when there was none or it was not JSON).
    pub body: Value,
}

#[derive(Default)]
struct Script {
    exchanges: Vec<Value>,
    next: usize,
    vars: HashMap<String, String>,
    failures: Vec<String>,
    received: Vec<Received>,
    /// Stdin each websocket exchange received.
    stdin: Vec<Vec<u8>>,
}

type Shared = Arc<Mutex<Script>>;

/// The running server.
pub struct Replay {
    pub url: String,
    script: Shared,
}

impl Replay {
    /// Serves `tests/fixtures/kube/<fixture>` with `vars` seeded.
    pub async fn start(fixture: &str, vars: &[(&str, String)]) -> Replay {
        let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/kube")
            .join(fixture);
        let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{file:?}: {e}"));
        let doc: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{file:?}: {e}"));
        let script = Script {
            exchanges: doc["exchanges"].as_array().cloned().unwrap_or_default(),
            vars: vars
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect(),
            ..Default::default()
        };
        assert!(!script.exchanges.is_empty(), "{fixture} has no exchanges");
        let script = Arc::new(Mutex::new(script));
        let app = axum::Router::new()
            .fallback(answer)
            .with_state(script.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Replay { url, script }
    }

    /// A var's value (bound from a request, or seeded).
    pub fn var(&self, name: &str) -> Option<String> {
        self.script.lock().unwrap().vars.get(name).cloned()
    }

    /// Every request received, in order.
    pub fn received(&self) -> Vec<Received> {
        self.script.lock().unwrap().received.clone()
    }

    /// What each websocket exchange received on stdin.
    pub fn stdin(&self) -> Vec<Vec<u8>> {
        self.script.lock().unwrap().stdin.clone()
    }

    /// Fails the test on any failed expectation and on exchanges left unused.
    pub fn finish(&self) {
        let s = self.script.lock().unwrap();
        assert!(
            s.failures.is_empty(),
            "replay failures:\n{}",
            s.failures.join("\n")
        );
        assert_eq!(
            s.next,
            s.exchanges.len(),
            "exchanges left unused, from {}",
            s.exchanges
                .get(s.next)
                .map(|e| e.to_string())
                .unwrap_or_default()
        );
    }
}

/// `{var}` replaced in every string of `v`.
fn substitute(v: &Value, vars: &HashMap<String, String>) -> Value {
    match v {
        Value::String(s) => {
            let mut s = s.clone();
            for (k, val) in vars {
                s = s.replace(&format!("{{{k}}}"), val);
            }
            Value::String(s)
        }
        Value::Array(a) => Value::Array(a.iter().map(|x| substitute(x, vars)).collect()),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, x)| (k.clone(), substitute(x, vars)))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = s
            .get(i + 1..i + 3)
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
                continue;
            }
            (b'+', _) => out.push(b' '),
            (b, _) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_query(q: Option<&str>) -> Vec<(String, String)> {
    q.unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

/// Why `got` does not match the exchange's request line, if it does not.
fn mismatch(ex: &Value, got: &Received) -> Option<String> {
    if ex["method"].as_str() != Some(got.method.as_str())
        || ex["path"].as_str() != Some(got.path.as_str())
    {
        return Some(format!("expected {} {}", ex["method"], ex["path"]));
    }
    for pair in ex["query"].as_array().into_iter().flatten() {
        let name = pair[0].as_str().unwrap_or("");
        let want: Vec<&str> = ex["query"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p[0].as_str() == Some(name))
            .filter_map(|p| p[1].as_str())
            .collect();
        let sent: Vec<&str> = got
            .query
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect();
        if want != sent {
            return Some(format!("query {name}: expected {want:?}, sent {sent:?}"));
        }
    }
    None
}

/// The failed checks of the exchange on the request body.
fn check_body(ex: &Value, body: &Value) -> Vec<String> {
    let mut failed = Vec::new();
    for c in ex["checks"].as_array().into_iter().flatten() {
        let at = c["at"].as_str().unwrap_or("");
        let got = body.pointer(at);
        let ok = if let Some(want) = c.get("equals") {
            got == Some(want)
        } else if let Some(other) = c.get("differs") {
            got.is_some() && got != Some(other)
        } else if let Some(prefix) = c["prefix"].as_str() {
            got.and_then(Value::as_str)
                .is_some_and(|s| s.starts_with(prefix))
        } else if c.get("absent").is_some() {
            got.is_none()
        } else {
            false
        };
        if !ok {
            failed.push(format!("check {c} failed: body has {got:?}"));
        }
    }
    failed
}

fn status_body(code: u16, message: &str) -> Response {
    let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": "InternalError", "code": code});
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

async fn answer(State(script): State<Shared>, mut req: Request) -> Response {
    let upgrade = hyper::upgrade::on(&mut req);
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, 16 << 20)
        .await
        .unwrap_or_default();
    let got = Received {
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        query: parse_query(parts.uri.query()),
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    };
    let ex = {
        let mut s = script.lock().unwrap();
        s.received.push(got.clone());
        let Some(raw) = s.exchanges.get(s.next).cloned() else {
            let msg = format!(
                "unexpected request after the script: {} {}",
                got.method, got.path
            );
            s.failures.push(msg.clone());
            return status_body(500, &msg);
        };
        let ex = substitute(&raw, &s.vars);
        if let Some(why) = mismatch(&ex, &got) {
            let msg = format!(
                "request #{}: {} {} {:?}: {why}",
                s.next, got.method, got.path, got.query
            );
            s.failures.push(msg.clone());
            return status_body(500, &msg);
        }
        s.next += 1;
        for (var, at) in ex["bind"].as_object().into_iter().flatten() {
            match got
                .body
                .pointer(at.as_str().unwrap_or(""))
                .and_then(Value::as_str)
            {
                Some(v) => {
                    s.vars.insert(var.clone(), v.to_owned());
                }
                None => s
                    .failures
                    .push(format!("nothing to bind {var} from at {at}")),
            }
        }
        let ex = substitute(&raw, &s.vars);
        let failed = check_body(&ex, &got.body);
        s.failures.extend(failed);
        ex
    };
    if ex.get("websocket").is_some() {
        return websocket(script, ex, &parts.headers, upgrade);
    }
    let status = ex["status"].as_u64().unwrap_or(200) as u16;
    let (content_type, text) = if let Some(events) = ex["events"].as_array() {
        let lines: Vec<String> = events.iter().map(Value::to_string).collect();
        ("application/json", lines.join("\n") + "\n")
    } else if let Some(t) = ex["text"].as_str() {
        ("text/plain", t.to_owned())
    } else {
        ("application/json", ex["body"].to_string())
    };
    // `hold`: the stream stays open after the events, as a watch that sees nothing more.
    let body = if ex["hold"].as_bool() == Some(true) {
        let first = futures_util::stream::iter([Ok::<_, std::io::Error>(text)]);
        Body::from_stream(first.chain(futures_util::stream::pending()))
    } else {
        Body::from(text)
    };
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(body)
        .unwrap()
}

/// Answers a pods/exec upgrade and plays the exchange's channel frames.
fn websocket(
    script: Shared,
    ex: Value,
    headers: &http::HeaderMap,
    upgrade: hyper::upgrade::OnUpgrade,
) -> Response {
    let ws = &ex["websocket"];
    let protocol = ws["protocol"]
        .as_str()
        .unwrap_or("v4.channel.k8s.io")
        .to_owned();
    let offered = headers
        .get("sec-websocket-protocol")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    if !offered.split(',').any(|p| p.trim() == protocol) {
        let msg = format!("client did not offer {protocol} (offered {offered:?})");
        script.lock().unwrap().failures.push(msg.clone());
        return status_body(400, &msg);
    }
    let key = headers
        .get("sec-websocket-key")
        .map(|k| derive_accept_key(k.as_bytes()))
        .unwrap_or_default();
    let ws = ws.clone();
    tokio::spawn(async move {
        let upgraded = match upgrade.await {
            Ok(u) => u,
            Err(e) => {
                script
                    .lock()
                    .unwrap()
                    .failures
                    .push(format!("upgrade failed: {e}"));
                return;
            }
        };
        let io = hyper_util::rt::TokioIo::new(upgraded);
        let mut socket =
            tokio_tungstenite::WebSocketStream::from_raw_socket(io, Role::Server, None).await;
        let mut stdin = Vec::new();
        if !ws["stdin"].is_null() {
            // Up to the v5 close of channel 0 ([255, 0]), or the socket's close under v4.
            while let Some(Ok(msg)) = socket.next().await {
                match msg {
                    Message::Binary(b) if b.first() == Some(&0) => stdin.extend_from_slice(&b[1..]),
                    Message::Binary(b) if b[..] == [255, 0] => break,
                    Message::Close(_) => break,
                    _ => {}
                }
            }
            if let Some(want) = ws["stdin"].as_str()
                && stdin != want.as_bytes()
            {
                let msg = format!(
                    "stdin: expected {want:?}, got {:?}",
                    String::from_utf8_lossy(&stdin)
                );
                script.lock().unwrap().failures.push(msg);
            }
        }
        script.lock().unwrap().stdin.push(stdin);
        for frame in ws["frames"].as_array().into_iter().flatten() {
            let channel = frame["channel"].as_u64().unwrap_or(1) as u8;
            let payload = match frame.get("status") {
                Some(status) => status.to_string().into_bytes(),
                None => frame["text"].as_str().unwrap_or("").as_bytes().to_vec(),
            };
            let mut data = vec![channel];
            data.extend(payload);
            if socket.send(Message::binary(data)).await.is_err() {
                script
                    .lock()
                    .unwrap()
                    .failures
                    .push("client went away mid-exec".into());
                return;
            }
        }
        let _ = socket.close(None).await;
    });
    Response::builder()
        .status(101)
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-accept", key)
        .header("sec-websocket-protocol", protocol)
        .body(Body::empty())
        .unwrap()
}
