//! The metrics and health endpoint over real HTTP on 127.0.0.1.

use std::net::SocketAddr;
use std::time::Duration;

use cantilever::telemetry::{
    EventKind, Exporter, Health, Metrics, MetricsServer, Registry, SharedHistograms, Stage,
    StageHistograms, TelemetryError,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A minimal HTTP/1.1 client: status code, headers and body of one request.
async fn http(addr: SocketAddr, method: &str, path: &str) -> (u16, String, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let raw = String::from_utf8(raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head.to_owned(), body.to_owned())
}

async fn fetch_health(addr: SocketAddr) -> (u16, serde_json::Value) {
    let (status, head, body) = http(addr, "GET", "/health").await;
    assert!(head.to_ascii_lowercase().contains("content-type: application/json"), "{head}");
    (status, serde_json::from_str(&body).unwrap())
}

#[tokio::test]
async fn health_follows_connected_stale_halted_over_http() {
    let registry = Registry::new();
    let metrics = Metrics::new(&registry).unwrap();
    let health = Health::new([("chain138", 2), ("alltra", 2)]);
    let histograms = SharedHistograms::new();
    let exporter = Exporter {
        registry,
        health: health.clone(),
        histograms: vec![("chain138".to_owned(), histograms.clone())],
    };
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let server = MetricsServer::bind(addr, false, exporter).await.unwrap();
    let addr = server.local_addr();
    assert!(addr.ip().is_loopback() && addr.port() != 0);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.serve(async move {
        let _ = stopped.await;
    }));

    // Start: nothing connected.
    let (status, body) = fetch_health(addr).await;
    assert_eq!(status, 503);
    assert_eq!(body["ready"], false);
    let reasons = body["reasons"].as_array().unwrap();
    assert!(reasons.contains(&"chain138: not connected".into()), "{body}");
    assert!(reasons.contains(&"alltra: state cache stale".into()), "{body}");

    // Connected, at head, fresh: ready.
    for name in ["chain138", "alltra"] {
        let c = health.chain(name).unwrap();
        c.set_connected(true);
        c.set_head_lag_blocks(1);
        c.set_cache_fresh(true);
    }
    let (status, body) = fetch_health(addr).await;
    assert_eq!((status, &body["ready"], &body["halted"]), (200, &true.into(), &false.into()));
    assert_eq!(body["reasons"], serde_json::json!([]));
    assert_eq!(body["chains"][0]["head_lag_blocks"], 1);

    // One chain's cache goes stale and it falls behind: 503 naming both.
    let alltra = health.chain("alltra").unwrap();
    alltra.set_cache_fresh(false);
    alltra.set_head_lag_blocks(5);
    let (status, body) = fetch_health(addr).await;
    assert_eq!(status, 503);
    assert_eq!(
        body["reasons"],
        serde_json::json!(["alltra: 5 blocks behind head (budget 2)", "alltra: state cache stale"])
    );

    // Recovered, then halted: 503 for the halt alone.
    alltra.set_cache_fresh(true);
    alltra.set_head_lag_blocks(0);
    health.set_halted(true);
    let (status, body) = fetch_health(addr).await;
    assert_eq!(status, 503);
    assert_eq!(body["halted"], true);
    assert_eq!(body["reasons"], serde_json::json!(["halted: the kill switch is engaged"]));
    health.set_halted(false);
    assert_eq!(fetch_health(addr).await.0, 200);

    // /metrics: the exposition with the engine's published histograms.
    metrics.candidates.add(5);
    let mut h = StageHistograms::new().unwrap();
    h.record(EventKind::Head, Stage::EndToEnd, 250_000);
    assert!(histograms.publish(&mut h, true));
    let (status, head, body) = http(addr, "GET", "/metrics").await;
    assert_eq!(status, 200);
    assert!(head.contains("text/plain; version=0.0.4"), "{head}");
    assert!(body.contains("\ncantilever_candidates_total 5\n"), "{body}");
    assert!(body.contains("cantilever_ready 1\n"), "{body}");
    assert!(
        body.contains(
            "cantilever_stage_latency_seconds_count{chain=\"chain138\",kind=\"head\",stage=\"end_to_end\"} 1\n"
        ),
        "{body}"
    );

    assert_eq!(http(addr, "GET", "/nope").await.0, 404);
    let (status, head, _) = http(addr, "POST", "/health").await;
    assert_eq!(status, 405);
    assert!(head.to_ascii_lowercase().contains("allow: get, head"), "{head}");

    // Graceful stop: the server returns and the port closes.
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(30), task).await.unwrap().unwrap();
    assert!(TcpStream::connect(addr).await.is_err(), "still listening after shutdown");
}

#[tokio::test]
async fn a_public_bind_is_refused_unless_allowed() {
    let exporter = || Exporter {
        registry: Registry::new(),
        health: Health::new([]),
        histograms: vec![("chain138".to_owned(), SharedHistograms::new())],
    };
    for addr in ["0.0.0.0:0", "[::]:0", "192.0.2.1:9464"] {
        let addr: SocketAddr = addr.parse().unwrap();
        let e = MetricsServer::bind(addr, false, exporter()).await.unwrap_err();
        assert!(matches!(e, TelemetryError::PublicBind { .. }), "{addr}: {e}");
        let text = e.to_string();
        assert!(
            text.contains(&addr.to_string()) && text.contains("allow_public_metrics"),
            "{text}"
        );
    }
    for addr in ["127.0.0.1:0", "[::1]:0"] {
        let addr: SocketAddr = addr.parse().unwrap();
        if let Err(e) = MetricsServer::bind(addr, false, exporter()).await {
            // Only an OS without IPv6 loopback may refuse [::1]; the policy must not.
            assert!(matches!(e, TelemetryError::Bind { .. }), "{addr}: {e}");
        }
    }
    // With the flag the policy lets a public address through to the OS (which cannot bind this
    // documentation-only address here; nothing is exposed by the test).
    let addr: SocketAddr = "192.0.2.1:9464".parse().unwrap();
    let e = MetricsServer::bind(addr, true, exporter()).await.unwrap_err();
    assert!(matches!(e, TelemetryError::Bind { .. }), "{e}");
}
