//! What a managed Redis asks of the fan-out, against real redis-servers the tests start: TLS
//! (`rediss://`) with a certificate authority the test makes, client certificates, ACL users,
//! and a subscription whose connection goes silent without closing (half-open).

mod common;

use std::time::{Duration, Instant};

use common::redis_server::RedisServer;
use common::tls::TestCa;
use common::*;
use serde_json::json;
use socketio_stack::fanout::{Emitter, FanoutError, RedisFanout, RedisOptions};
use socketio_stack::layers::{AuthLayer, RoomsLayer};
use socketio_stack::{OutboundMessage, SocketServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

async fn instance(options: RedisOptions) -> TestServer {
    fanout_instance(options).await
}

/// A send from `from` reaches a client of `to`, and the emitter's too.
async fn delivers_between(from: &TestServer, to: &TestServer, emitter: &Emitter) {
    let (mut c, _) = TestClient::authenticated(&to.url()).await;
    from.server
        .send(OutboundMessage::to("io-default", "news", json!({"n": 1})))
        .await
        .unwrap();
    assert_eq!(c.expect_event("news").await, json!({"n": 1}));
    emitter
        .to("io-default")
        .emit("work", &json!(2))
        .await
        .unwrap();
    assert_eq!(c.expect_event("work").await, json!(2));
}

/// The Redis error a fan-out error comes from.
fn redis_source(err: &FanoutError) -> &redis::RedisError {
    std::error::Error::source(err)
        .and_then(|s| s.downcast_ref())
        .unwrap_or_else(|| panic!("no Redis error as the source of {err:?}"))
}

#[tokio::test]
async fn rediss_with_a_private_authority_delivers_and_an_unknown_one_fails_connect() {
    let ca = TestCa::new("socketio-stack test CA");
    let redis = RedisServer::start_tls(&ca, &[]);
    let options = RedisOptions::new(redis.url()).root_certificates_pem(ca.pem());
    let (a, b) = (
        instance(options.clone()).await,
        instance(options.clone()).await,
    );
    let emitter = Emitter::connect_with_options(&options).await.unwrap();
    delivers_between(&a, &b, &emitter).await;
    delivers_between(&b, &a, &emitter).await;

    // The system's authorities do not know the test's, nor does another authority.
    let stranger = TestCa::new("another CA");
    for options in [
        RedisOptions::new(redis.url()),
        RedisOptions::new(redis.url()).root_certificates_pem(stranger.pem()),
    ] {
        let started = Instant::now();
        let err = RedisFanout::connect_with_options(options.clone())
            .await
            .unwrap_err();
        assert!(matches!(err, FanoutError::Unreachable(_)), "{err}");
        assert!(err.to_string().contains("UnknownIssuer"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(6), "{err}");
        let err = Emitter::connect_with_options(&options).await.unwrap_err();
        assert!(err.to_string().contains("UnknownIssuer"), "{err}");
    }
    // The certificate is for 127.0.0.1, not for another name of the same host.
    let err = RedisFanout::connect_with_options(
        RedisOptions::new(format!("rediss://localhost:{}", redis.port))
            .root_certificates_pem(ca.pem()),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, FanoutError::Unreachable(_)), "{err}");
    assert!(
        err.to_string().contains("not valid for name \"localhost\""),
        "{err}"
    );
    // Plain text to a TLS port is no Redis conversation: it fails within the deadline.
    let err = RedisFanout::connect_with_options(
        RedisOptions::new(format!("redis://127.0.0.1:{}", redis.port))
            .connect_timeout(Duration::from_secs(2)),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, FanoutError::Unreachable(_)), "{err}");
}

#[tokio::test]
async fn a_client_certificate_is_presented_when_redis_asks_for_one() {
    let ca = TestCa::new("socketio-stack test CA");
    let redis = RedisServer::start_tls(&ca, &["--tls-auth-clients", "yes"]);
    let without = RedisOptions::new(redis.url()).root_certificates_pem(ca.pem());
    let err = RedisFanout::connect_with_options(without.clone())
        .await
        .unwrap_err();
    assert!(matches!(err, FanoutError::Unreachable(_)), "{err}");

    let (cert, key) = ca.client_certificate();
    let with = without.client_certificate_pem(cert, key);
    let (a, b) = (instance(with.clone()).await, instance(with.clone()).await);
    let emitter = Emitter::connect_with_options(&with).await.unwrap();
    delivers_between(&a, &b, &emitter).await;
}

/// The least a fan-out needs from an ACL user: the commands it sends, on the channels of its
/// prefix (`socket.io`). A pattern subscription is allowed only for a pattern the user has
/// literally, hence `socket.io#/#*` (namespace `/`; each other namespace needs its own) and
/// `socket.io-response#*` (the answers of every namespace).
const FANOUT_ACL: &[&str] = &[
    "on",
    ">s3cret",
    "resetchannels",
    "&socket.io#/#*",
    "&socket.io-request#/#*",
    "&socket.io-response#*",
    "-@all",
    "+ping",
    "+publish",
    "+pubsub|numsub",
    "+subscribe",
    "+psubscribe",
    "+unsubscribe",
    "+punsubscribe",
];

#[tokio::test]
async fn acl_users_connect_with_least_privilege_and_refusals_fail_connect() {
    let mut args = vec!["--user", "default", "off", "--user", "fleet"];
    args.extend(FANOUT_ACL);
    let redis = RedisServer::start_with(&args);
    let url = |credentials: &str| format!("redis://{credentials}@127.0.0.1:{}", redis.port);
    let options = RedisOptions::new(url("fleet:s3cret"));
    let (a, b) = (
        instance(options.clone()).await,
        instance(options.clone()).await,
    );
    let emitter = Emitter::connect_with_options(&options).await.unwrap();
    delivers_between(&a, &b, &emitter).await;

    for credentials in ["fleet:wrong", "nobody:s3cret"] {
        let err = RedisFanout::connect(&url(credentials)).await.unwrap_err();
        assert!(matches!(err, FanoutError::Refused(_)), "{err}");
        assert_eq!(
            redis_source(&err).kind(),
            redis::ErrorKind::AuthenticationFailed,
            "{err}"
        );
        assert_eq!(
            err.to_string(),
            "Redis refused this client (its credentials or ACL permissions): Password authentication failed - AuthenticationFailed",
        );
    }
    // Without credentials the disabled default user is refused too.
    let err = RedisFanout::connect(&redis.url()).await.unwrap_err();
    assert!(matches!(err, FanoutError::Refused(_)), "{err}");
    assert!(err.to_string().contains("NOAUTH"), "{err}");
    // A prefix outside the user's channels fails at connect, not at the first send.
    let err = RedisFanout::connect_with_options(options.clone().key("elsewhere"))
        .await
        .unwrap_err();
    assert!(matches!(err, FanoutError::Refused(_)), "{err}");
    assert!(
        err.to_string()
            .contains("no permissions to access one of the channels"),
        "{err}"
    );
}

/// A TCP proxy to Redis that can stop forwarding without closing anything: the connections
/// stay open and nothing crosses them, as when Redis's host dies behind a NAT or a load
/// balancer that keeps the client's side open.
struct BlackHole {
    port: u16,
    forwarding: watch::Sender<bool>,
}

impl BlackHole {
    async fn start(redis_port: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (forwarding, _) = watch::channel(true);
        let gate = forwarding.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(("127.0.0.1", redis_port)).await else {
                    return;
                };
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                tokio::spawn(pipe(client_read, server_write, gate.subscribe()));
                tokio::spawn(pipe(server_read, client_write, gate.subscribe()));
            }
        });
        Self { port, forwarding }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// From now on nothing is read from either side, so nothing is forwarded or closed.
    fn swallow(&self) {
        self.forwarding.send_replace(false);
    }

    fn forward(&self) {
        self.forwarding.send_replace(true);
    }
}

async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut forwarding: watch::Receiver<bool>,
) {
    let mut buf = vec![0; 16 * 1024];
    loop {
        if forwarding.wait_for(|f| *f).await.is_err() {
            return;
        }
        let read = tokio::select! {
            read = from.read(&mut buf) => read,
            // Stop reading at once: bytes sent from now on wait in the kernel's buffers.
            _ = forwarding.wait_for(|f| !*f) => continue,
        };
        match read {
            Ok(0) | Err(_) => {
                to.shutdown().await.ok();
                return;
            }
            Ok(n) => {
                if to.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
}

#[tokio::test]
async fn a_half_open_subscription_is_noticed_within_the_keepalive_bound_then_delivery_resumes() {
    let redis = RedisServer::start();
    let hole = BlackHole::start(redis.port).await;
    // Short, but with a timeout no loaded machine's Redis takes to answer a PING.
    let (interval, timeout) = (Duration::from_millis(200), Duration::from_secs(1));
    let a = instance(
        RedisOptions::new(hole.url())
            .keepalive(interval, timeout)
            .connect_timeout(Duration::from_secs(1)),
    )
    .await;
    let (mut c, _) = TestClient::authenticated(&a.url()).await;
    a.server
        .send(OutboundMessage::broadcast("before", json!(1)))
        .await
        .unwrap();
    assert_eq!(c.expect_event("before").await, json!(1));

    hole.swallow();
    let swallowed = Instant::now();
    // Before the keepalive notices, a send fails on Redis's own deadlines (no answer to the
    // publish, or no pooled connection in time): it never hangs, nor succeeds.
    let err = a
        .server
        .send(OutboundMessage::broadcast("lost", json!(1)))
        .await
        .expect_err("nothing reaches Redis");
    let message = err.to_string();
    assert!(
        message.contains("Redis is unavailable") || message.contains("subscription is down"),
        "{err}"
    );
    // Once it has noticed, a send fails at once because the subscription is down (only the
    // keepalive says so). A send still waiting on Redis after 50 ms was made before that, so
    // it is given up and the next one tried: the moment is known to within 50 ms.
    let bound = interval + timeout;
    let margin = Duration::from_secs(5);
    let mut n = 1;
    let noticed = loop {
        n += 1;
        let attempt = tokio::time::timeout(
            Duration::from_millis(50),
            a.server.send(OutboundMessage::broadcast("lost", json!(n))),
        )
        .await;
        match attempt {
            Ok(Err(e)) if e.to_string().contains("subscription is down") => {
                break swallowed.elapsed();
            }
            Ok(Err(e)) => assert!(e.to_string().contains("Redis is unavailable"), "{e}"),
            Ok(Ok(sent)) => panic!("a send went through the black hole: {sent:?}"),
            Err(_) => {}
        }
        assert!(
            swallowed.elapsed() < bound + margin,
            "the half-open subscription went unnoticed for {:?}",
            swallowed.elapsed()
        );
    };
    // Not before a PING could have gone unanswered for the whole timeout: the last one
    // answered was sent at most one interval before the swallow.
    assert!(noticed + interval >= timeout, "noticed after {noticed:?}");
    // The outage stays visible, and fast, for as long as Redis is silent.
    for _ in 0..3 {
        let started = Instant::now();
        let err = a
            .server
            .send(OutboundMessage::broadcast("lost", json!(-1)))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("subscription is down"), "{err}");
        assert!(
            started.elapsed() < Duration::from_millis(250),
            "{:?}",
            started.elapsed()
        );
    }
    // The client is untouched by the outage.
    c.sync().await;

    hole.forward();
    // The fan-out reconnects by itself, and a send goes through again and arrives. A publish
    // that timed out in the hole may still reach Redis once the bytes move again (its outcome
    // was unknown, and reported as a failure): those arrive as `lost` and are skipped.
    let deadline = Instant::now() + WAIT;
    let mut m = 0;
    'resumed: loop {
        m += 1;
        if a.server
            .send(OutboundMessage::broadcast("back", json!(m)))
            .await
            .is_ok()
        {
            while let Ok(got) =
                tokio::time::timeout(Duration::from_millis(300), c.next_non_ping()).await
            {
                match got {
                    Received::Event(name, _) if name == "back" => break 'resumed,
                    Received::Event(name, _) if name == "lost" => {}
                    other => panic!("unexpected {other:?}"),
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "delivery did not resume (the outage was noticed after {noticed:?})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("half-open subscription noticed after {noticed:?} (bound {bound:?})");
}

#[tokio::test]
async fn a_keepalive_of_zero_fails_connect() {
    let redis = RedisServer::start();
    let err = RedisFanout::connect_with_options(
        RedisOptions::new(redis.url()).keepalive(Duration::ZERO, Duration::from_secs(1)),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, FanoutError::Config(_)), "{err}");
}

#[tokio::test]
async fn the_demo_takes_a_rediss_url_with_an_acl_user_and_redis_ca_file() {
    let ca = TestCa::new("socketio-stack test CA");
    let mut args = vec!["--user", "default", "off", "--user", "fleet"];
    args.extend(FANOUT_ACL);
    let redis = RedisServer::start_tls(&ca, &args);
    let url = format!("rediss://fleet:s3cret@127.0.0.1:{}", redis.port);
    let demo = |ca_file: Option<&str>| {
        let mut cmd = std::process::Command::new(example("demo"));
        cmd.env("REDIS_URL", &url).env_remove("REDIS_CA_FILE");
        if let Some(file) = ca_file {
            cmd.env("REDIS_CA_FILE", file);
        }
        cmd
    };
    let server = std::sync::Arc::new(ServerProcess::start(demo(Some(&ca.path("ca.pem")))));
    let (mut c, _) =
        TestClient::authenticated(&format!("http://127.0.0.1:{}/io/", server.port)).await;
    let body = json!({"destination": "io-default", "topic": "news", "data": {"tls": true}});
    // The demo's send is answered 204 once published; a blocking call, off the runtime (the
    // demo lives on here: it is killed when dropped).
    let sender = server.clone();
    let status = tokio::task::spawn_blocking(move || sender.send(&body))
        .await
        .unwrap();
    assert_eq!(status, 204);
    assert_eq!(c.expect_event("news").await, json!({"tls": true}));

    // Without the authority, or with a file that is not there, it refuses to start.
    for ca_file in [None, Some("/nonexistent/ca.pem")] {
        let out = demo(ca_file).env("PORT", "0").output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let expected = if ca_file.is_some() {
            "REDIS_CA_FILE /nonexistent/ca.pem"
        } else {
            "UnknownIssuer"
        };
        assert!(stderr.contains(expected), "{stderr}");
    }
}

#[tokio::test]
async fn a_namespace_the_acl_user_may_not_subscribe_is_refused_and_the_others_go_on() {
    // The least privilege above: namespace `/` only.
    let mut args = vec!["--user", "default", "off", "--user", "fleet"];
    args.extend(FANOUT_ACL);
    let redis = RedisServer::start_with(&args);
    let options = RedisOptions::new(format!("redis://fleet:s3cret@127.0.0.1:{}", redis.port));
    let server = |fanout| {
        SocketServer::builder()
            .fanout(fanout)
            .namespace("/admin")
            .dynamic_namespace("/tenant/{id}")
            .layer(AuthLayer::new(authenticate))
            .layer(RoomsLayer::new().validate(allow_public))
            .build()
            .unwrap()
    };
    let a = serve(server(
        RedisFanout::connect_with_options(options.clone())
            .await
            .unwrap(),
    ))
    .await;
    let b = serve(server(
        RedisFanout::connect_with_options(options.clone())
            .await
            .unwrap(),
    ))
    .await;

    // A CONNECT to a namespace whose channels the user lacks, static or dynamic (twice: the
    // second is refused without asking Redis again): refused, with why.
    for nsp in ["/tenant/1", "/admin", "/tenant/1"] {
        let mut ws = raw_ws(a.addr, None).await;
        let answer = raw_connect_answer(&mut ws, nsp, &json!({ "token": TOKEN })).await;
        assert!(
            answer.starts_with(&format!("44{nsp},"))
                && answer.contains("Redis refused to carry this namespace"),
            "{answer}"
        );
    }
    // The fan-out of `/` goes on.
    let emitter = Emitter::connect_with_options(&options).await.unwrap();
    delivers_between(&a, &b, &emitter).await;
}
