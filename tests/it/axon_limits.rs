//! Hostile requests and connections against our axon: header values that once panicked or
//! widened the nonce window, replays across a restart, slow clients, the connection cap, and
//! a dendrite's cap on a huge answer.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use agentao::subnet::{AxonConfig, AxonTarget, CodingTask, Dendrite, Keypair, Metagraph};

use crate::subnet::{neuron, our_axon};
/// Replaces header `name`'s value.
pub(crate) fn set(h: &mut [(String, String)], name: &str, value: &str) {
    for (k, v) in h.iter_mut() {
        if k == name {
            *v = value.to_owned();
        }
    }
}

/// A header's value.
pub(crate) fn get(h: &[(String, String)], name: &str) -> String {
    h.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
        .unwrap_or_default()
}

/// Re-signs signed headers `h` with another nonce.
pub(crate) fn resign(h: &mut [(String, String)], key: &Keypair, axon: &str, nonce: i64) {
    let msg = format!(
        "{nonce}.{}.{axon}.{}.{}",
        key.ss58(),
        get(h, "bt_header_dendrite_uuid"),
        get(h, "computed_body_hash")
    );
    set(h, "bt_header_dendrite_nonce", &nonce.to_string());
    set(
        h,
        "bt_header_dendrite_signature",
        &format!("0x{}", hex::encode(key.sign(msg.as_bytes()))),
    );
}

/// Posts a synapse body with `headers`; the status, or the transport error.
pub(crate) async fn post(
    port: u16,
    headers: &[(String, String)],
    body: &[u8],
) -> Result<u16, String> {
    let mut req = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/CodingTask"))
        .timeout(Duration::from_secs(10))
        .header("content-type", "application/json")
        .body(body.to_vec());
    for (k, v) in headers {
        req = req.header(k, v);
    }
    req.send()
        .await
        .map(|r| r.status().as_u16())
        .map_err(|e| format!("{e:?}"))
}

pub(crate) fn now_ns() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap()
}

/// Issue 13: the unsigned `timeout` header widened the nonce window (`1e9`), overflowed it
/// (`-1e12`) and panicked a connection (`1e300`). Any value now gets an answer; nonsense is a
/// 400, and the widening is capped at `max_window_timeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_header_value_panics_and_the_timeout_cannot_widen_the_nonce_window() {
    let (ours, _) = Keypair::generate();
    let (validator, _) = Keypair::generate();
    let metagraph = Metagraph {
        netuid: 62,
        neurons: vec![neuron(0, &validator.ss58(), true, 10.0)],
    };
    let (port, calls, server) =
        our_axon(ours.clone(), metagraph.clone(), AxonConfig::default()).await;
    let capped = AxonConfig {
        max_window_timeout: Duration::from_secs(1),
        ..AxonConfig::default()
    };
    let (capped_port, capped_calls, capped_server) =
        our_axon(ours.clone(), metagraph, capped).await;
    let started = now_ns();
    let target = AxonTarget {
        ip: "127.0.0.1".into(),
        port,
        hotkey: ours.ss58(),
    };
    let d = Dendrite::new(validator.clone());
    let task = CodingTask {
        repo: "pypi/x".into(),
        ..CodingTask::default()
    };
    let signed = || {
        let (s, h) = d.sign(&target, task.clone(), Duration::from_secs(10));
        (h, serde_json::to_vec(&s).unwrap())
    };

    let mut answered = 0;
    for (value, want) in [
        ("1e300", 200),
        ("1e400", 200),
        ("inf", 200),
        ("1e9", 200),
        ("-1e12", 400),
        ("-1", 400),
        ("-inf", 400),
        ("nan", 400),
        ("abc", 400),
        ("", 400),
        ("12 s", 400),
    ] {
        let (mut h, body) = signed();
        set(&mut h, "timeout", value);
        assert_eq!(post(port, &h, &body).await, Ok(want), "timeout: {value:?}");
        answered += usize::from(want == 200);
    }
    for (name, value) in [
        ("bt_header_dendrite_nonce", "99999999999999999999999"),
        ("bt_header_dendrite_nonce", "-9223372036854775808"),
        ("bt_header_dendrite_nonce", "1e18"),
        ("bt_header_dendrite_nonce", ""),
        ("bt_header_dendrite_version", "-99999999999999999999"),
        ("bt_header_dendrite_port", "1e300"),
        ("bt_header_axon_port", "99999999999999999999"),
        ("bt_header_axon_ip", "\u{7f}"),
        ("bt_header_dendrite_signature", "0x"),
        ("bt_header_dendrite_signature", "0xzz"),
        ("bt_header_dendrite_uuid", ""),
        ("computed_body_hash", ""),
        ("header_size", "-1e999"),
        ("total_size", "NaN"),
    ] {
        let (mut h, body) = signed();
        set(&mut h, name, value);
        let got = post(port, &h, &body).await;
        match got {
            Ok(200) => answered += 1,
            Ok(code) => assert!((400..500).contains(&code), "{name}: {value:?}: {code}"),
            // reqwest itself refuses a header value with a control character.
            Err(e) if value.contains('\u{7f}') && e.contains("Builder") => {}
            Err(e) => panic!("{name}: {value:?}: no answer: {e}"),
        }
    }
    // Still serving.
    let (h, body) = signed();
    assert_eq!(post(port, &h, &body).await, Ok(200));
    answered += 1;
    assert_eq!(calls.load(Ordering::SeqCst), answered);

    // A nonce 5.5 s old, never used, with `timeout: 1e9`: the capped axon's window is
    // 4 s + 1 s, the default one's 4 s + 60 s.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let old = started + 500_000_000;
    for (p, want) in [(capped_port, 401), (port, 200)] {
        let (mut h, body) = signed();
        set(&mut h, "bt_header_dendrite_uuid", &format!("fresh-{p}"));
        set(&mut h, "timeout", "1e9");
        resign(&mut h, &validator, &ours.ss58(), old);
        assert_eq!(post(p, &h, &body).await, Ok(want), "port {p}");
    }
    assert_eq!(capped_calls.load(Ordering::SeqCst), 0);
    server.abort();
    capped_server.abort();
}

/// Issue 13: nonces lived only in memory, so a request captured before a restart was taken
/// after it. A nonce older than the axon's start is refused now.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_signed_before_a_restart_is_refused_after_it() {
    let (ours, _) = Keypair::generate();
    let (validator, _) = Keypair::generate();
    let metagraph = Metagraph {
        netuid: 62,
        neurons: vec![neuron(0, &validator.ss58(), true, 10.0)],
    };
    let (port, _, before) = our_axon(ours.clone(), metagraph.clone(), AxonConfig::default()).await;
    let target = AxonTarget {
        ip: "127.0.0.1".into(),
        port,
        hotkey: ours.ss58(),
    };
    let d = Dendrite::new(validator.clone());
    let task = CodingTask {
        repo: "pypi/x".into(),
        ..CodingTask::default()
    };
    let (s, used) = d.sign(&target, task.clone(), Duration::from_secs(10));
    let used_body = serde_json::to_vec(&s).unwrap();
    let (s, unused) = d.sign(&target, task.clone(), Duration::from_secs(10));
    let unused_body = serde_json::to_vec(&s).unwrap();
    assert_eq!(post(port, &used, &used_body).await, Ok(200));
    assert_eq!(post(port, &used, &used_body).await, Ok(401), "replay");
    before.abort();

    // The same keys, a new process' axon.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let (port, calls, after) = our_axon(ours.clone(), metagraph, AxonConfig::default()).await;
    assert_eq!(post(port, &used, &used_body).await, Ok(401), "replay");
    assert_eq!(
        post(port, &unused, &unused_body).await,
        Ok(401),
        "signed before the start"
    );
    let target = AxonTarget { port, ..target };
    let (s, fresh) = d.sign(&target, task, Duration::from_secs(10));
    assert_eq!(
        post(port, &fresh, &serde_json::to_vec(&s).unwrap()).await,
        Ok(200)
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    after.abort();
}

/// Reads from `sock` until it closes or `limit` passes; what was read, and whether it closed.
async fn read_until_closed(sock: &mut tokio::net::TcpStream, limit: Duration) -> (Vec<u8>, bool) {
    use tokio::io::AsyncReadExt;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, sock.read(&mut buf)).await {
            Err(_) => return (out, false),
            Ok(Ok(0)) | Ok(Err(_)) => return (out, true),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// Issue 13: connections that never finished their headers or body stayed open forever, and
/// there was no cap on connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off_and_connections_are_capped() {
    use tokio::io::AsyncWriteExt;
    let (ours, _) = Keypair::generate();
    let (validator, _) = Keypair::generate();
    let metagraph = Metagraph {
        netuid: 62,
        neurons: vec![neuron(0, &validator.ss58(), true, 10.0)],
    };
    let cfg = AxonConfig {
        header_timeout: Duration::from_secs(1),
        body_timeout: Duration::from_secs(1),
        ..AxonConfig::default()
    };
    let (port, calls, server) = our_axon(ours.clone(), metagraph.clone(), cfg).await;
    let connect = || tokio::net::TcpStream::connect(("127.0.0.1", port));

    // Headers never finished; nothing sent at all.
    let mut half = connect().await.unwrap();
    half.write_all(b"POST /CodingTask HTTP/1.1\r\nhost: x\r\ntimeout: 12.0\r\n")
        .await
        .unwrap();
    let mut idle = connect().await.unwrap();
    // A body that never arrives.
    let mut slow = connect().await.unwrap();
    slow.write_all(
        b"POST /CodingTask HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{\"repo\":",
    )
    .await
    .unwrap();
    for (name, sock) in [("headers", &mut half), ("idle", &mut idle)] {
        let (_, closed) = read_until_closed(sock, Duration::from_secs(8)).await;
        assert!(closed, "{name}: still open after 8 s");
    }
    let (answer, closed) = read_until_closed(&mut slow, Duration::from_secs(8)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("application/json"), "{answer}");
    assert!(
        closed,
        "the slow body's connection is closed after the answer"
    );
    server.abort();

    // At most two connections: a third waits until one goes.
    let cfg = AxonConfig {
        max_connections: 2,
        header_timeout: Duration::from_secs(3),
        ..AxonConfig::default()
    };
    let (port, _, server) = our_axon(ours.clone(), metagraph, cfg).await;
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .unwrap(),
        );
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let target = AxonTarget {
        ip: "127.0.0.1".into(),
        port,
        hotkey: ours.ss58(),
    };
    let d = Dendrite::new(validator);
    let task = CodingTask {
        repo: "pypi/x".into(),
        ..CodingTask::default()
    };
    let r = d.call(&target, task.clone(), Duration::from_secs(1)).await;
    assert_eq!(r.status_code, 408, "{}", r.status_message);
    drop(held);
    let r = d.call(&target, task, Duration::from_secs(5)).await;
    assert_eq!(r.status_code, 200, "{}", r.status_message);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        0,
        "the first axon handled nothing"
    );
    server.abort();
}

/// A miner that answers 200 with a huge body, with or without its length announced;
/// counts the bytes it managed to send.
pub(crate) async fn hostile_axon(chunked: bool) -> (u16, Arc<AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let sent = Arc::new(AtomicUsize::new(0));
    let counter = sent.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                // Read the request's head and body.
                let mut buf = Vec::new();
                let mut chunk = [0u8; 65536];
                loop {
                    let n = sock.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_lowercase();
                    if let Some(i) = text.find("\r\n\r\n") {
                        let len: usize = text
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse().ok())
                            .unwrap_or(0);
                        if buf.len() >= i + 4 + len {
                            break;
                        }
                    }
                }
                let total: usize = 200 << 20;
                let head = if chunked {
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n".to_owned()
                } else {
                    format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {total}\r\n\r\n"
                    )
                };
                if sock.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let piece = vec![b'a'; 1 << 16];
                let mut written = 0;
                while written < total {
                    let frame = if chunked {
                        let mut f = format!("{:x}\r\n", piece.len()).into_bytes();
                        f.extend_from_slice(&piece);
                        f.extend_from_slice(b"\r\n");
                        f
                    } else {
                        piece.clone()
                    };
                    if sock.write_all(&frame).await.is_err() {
                        return;
                    }
                    written += piece.len();
                    counter.fetch_add(piece.len(), Ordering::SeqCst);
                }
                if chunked {
                    let _ = sock.write_all(b"0\r\n\r\n").await;
                }
            });
        }
    });
    (port, sent)
}

/// Issue 13: the dendrite read a miner's whole answer. It stops at the cap now, and says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_answer_is_dropped_at_the_cap() {
    for chunked in [false, true] {
        let (port, sent) = hostile_axon(chunked).await;
        let d = Dendrite::new(Keypair::generate().0);
        let target = AxonTarget {
            ip: "127.0.0.1".into(),
            port,
            hotkey: Keypair::generate().0.ss58(),
        };
        let r = d
            .call(&target, CodingTask::default(), Duration::from_secs(60))
            .await;
        assert!(r.synapse.is_none());
        assert_eq!(
            r.failure,
            Some(agentao::subnet::CallFailure::ProtocolError),
            "chunked {chunked}: {}",
            r.status_message
        );
        assert!(r.status_message.contains("cap"), "{}", r.status_message);
        // Give the writer a moment to notice the closed connection.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let sent = sent.load(Ordering::SeqCst);
        assert!(
            sent < 64 << 20,
            "chunked {chunked}: the miner sent {sent} bytes before the dendrite hung up"
        );
    }
}

/// Issue 17, item 1: a miner that takes the connection and never answers is a `timeout`
/// (status 408, as the SDK's dendrite sets it), not an answer and not `unreachable`; a port
/// nobody listens on is `unreachable`.
#[tokio::test]
async fn a_silent_axon_is_a_timeout_and_a_closed_port_is_unreachable() {
    use agentao::subnet::CallFailure;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            open.push(sock);
        }
    });
    let d = Dendrite::new(Keypair::generate().0);
    let hotkey = Keypair::generate().0.ss58();
    let target = |port| AxonTarget {
        ip: "127.0.0.1".into(),
        port,
        hotkey: hotkey.clone(),
    };
    let started = std::time::Instant::now();
    let r = d
        .call(&target(port), CodingTask::default(), Duration::from_secs(2))
        .await;
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(r.synapse.is_none());
    assert_eq!(
        r.failure,
        Some(CallFailure::Timeout),
        "{}",
        r.status_message
    );
    assert_eq!(r.status_code, 408);
    held.abort();
    let closed = crate::subnet::free_port();
    let r = d
        .call(
            &target(closed),
            CodingTask::default(),
            Duration::from_secs(2),
        )
        .await;
    assert_eq!(
        r.failure,
        Some(CallFailure::Unreachable),
        "{}",
        r.status_message
    );
}
