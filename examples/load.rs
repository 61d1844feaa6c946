//! The load tool: thousands of real WebSocket Socket.IO clients against any server honouring
//! the demo's contract (`shared/DESIGN.md`), one JSON line per run and one summary line per
//! scenario (median, min and max of every figure).
//!
//! ```text
//! cargo run --release --example demo &                   # or bare_socketioxide, or Node
//! cargo run --release --example load -- --scenario connect --clients 5000
//! cargo run --release --example load -- --scenario fanout --clients 1000 --messages 200 --rate 200
//! cargo run --release --example load -- --url http://127.0.0.1:3000 --url http://127.0.0.1:3001 --scenario fanout
//! ```
//!
//! Scenarios (`--scenario all` runs the four in turn):
//! - `connect`: `--clients` connect and authenticate, `--concurrency` at a time; handshakes/s,
//!   handshake latency (TCP connect to `authenticated`), failures, and the servers' resident
//!   memory per authenticated idle client (from `/stats`).
//! - `fanout`: `--clients` authenticated clients, `--messages` `POST /send` to `io-default`
//!   at `--rate` per second; deliveries/s, end-to-end latency, lost, duplicates. With
//!   `--flood N`, one more client emits N events in a burst meanwhile (the others' figures
//!   show what a flooder costs them).
//! - `rooms`: `--clients` spread over `--rooms` rooms (`public-load-<k>`), `--messages` sent
//!   round-robin to the rooms; misdeliveries (a message for a room the client is not in)
//!   must be 0.
//! - `churn`: `--workers` loops of connect, authenticate, disconnect for `--duration-ms`;
//!   cycles/s, clients still tracked after the loops (leaked), resident memory growth.
//! - `fleet` (not in `all`): `--clients` held by `--processes` load processes (each process
//!   may hold no more open files than the machine allows, 20,000 here), process p on the
//!   p-th `--url`; `--messages` broadcasts to `io-default` at `--rate`, spread over the
//!   instances, each reaching every client through the Redis they share; deliveries/s,
//!   latency, lost, the servers' CPU per delivery and, with `--redis redis://host:port`, the
//!   Redis CPU per publish (its idle rate, measured first, taken off).
//! - `hold` (not in `all`): `--clients` authenticated clients held idle for `--duration-ms`,
//!   answering Engine.IO's heartbeat; the servers' CPU over the hold (in cores: what the
//!   seeds' `ping` interval and the heartbeat cost at that scale), the clients the servers
//!   dropped meanwhile, and the `ping` events each client received.
//!
//! With several `--url`s (instances sharing a Redis), clients and sends are spread
//! round-robin over them and `/stats` figures are summed. `--runs K` repeats each scenario.
//! Progress goes to stderr; stdout holds only the JSON lines. `load --summarize FILE` reads
//! such lines (from separate invocations, say one fresh server per run) and prints one
//! summary line per scenario, label and instance count. `scripts/bench-load.sh` runs the
//! whole comparison of BENCHMARKS.md.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Map, Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::{Notify, Semaphore, watch};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;
type Error = Box<dyn std::error::Error + Send + Sync>;

/// Handshake deadline per client; a client slower than this counts as a failure.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);
/// How long deliveries may still arrive after the last send was answered.
const DELIVERY_GRACE: Duration = Duration::from_secs(5);

#[derive(Clone)]
struct Options {
    urls: Vec<String>,
    path: String,
    token: String,
    label: String,
    scenario: String,
    clients: usize,
    concurrency: usize,
    messages: usize,
    rate: f64,
    rooms: usize,
    workers: usize,
    duration: Duration,
    flood: usize,
    runs: usize,
    /// `fleet`: how many load processes hold the clients.
    processes: usize,
    /// `fleet`: the Redis the instances share, for its CPU time per publish.
    redis: Option<String>,
}

const USAGE: &str = "usage: load [--url http://host:port]... [--path /io] [--token T] [--label L] \
[--scenario connect|fanout|rooms|churn|hold|all] [--clients N] [--concurrency C] [--messages M] \
[--rate R] [--rooms K] [--workers W] [--duration-ms D] [--flood N] [--runs K] \
[--processes P] [--redis redis://host:port]";

fn options() -> Result<Options, String> {
    let mut o = Options {
        urls: Vec::new(),
        path: "/io".into(),
        token: "demo-token".into(),
        label: String::new(),
        scenario: "all".into(),
        clients: 1000,
        concurrency: 200,
        messages: 200,
        rate: 200.0,
        rooms: 10,
        workers: 200,
        duration: Duration::from_secs(5),
        flood: 0,
        runs: 1,
        processes: 1,
        redis: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "--help" || flag == "-h" {
            return Err(USAGE.into());
        }
        let value = args
            .next()
            .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        let number = |v: &str| {
            v.parse::<usize>()
                .map_err(|_| format!("{flag} takes a whole number, got {v:?}"))
        };
        match flag.as_str() {
            "--url" => o.urls.push(value.trim_end_matches('/').to_owned()),
            "--path" => o.path = value,
            "--token" => o.token = value,
            "--label" => o.label = value,
            "--scenario" => o.scenario = value,
            "--clients" => o.clients = number(&value)?,
            "--concurrency" => o.concurrency = number(&value)?.max(1),
            "--messages" => o.messages = number(&value)?,
            "--rate" => {
                o.rate = value
                    .parse()
                    .ok()
                    .filter(|r: &f64| *r > 0.0 && r.is_finite())
                    .ok_or_else(|| format!("--rate takes a positive number, got {value:?}"))?
            }
            "--rooms" => o.rooms = number(&value)?.max(1),
            "--workers" => o.workers = number(&value)?.max(1),
            "--duration-ms" => o.duration = Duration::from_millis(number(&value)? as u64),
            "--flood" => o.flood = number(&value)?,
            "--runs" => o.runs = number(&value)?.max(1),
            "--processes" => o.processes = number(&value)?.max(1),
            "--redis" => {
                if !value.starts_with("redis://") {
                    return Err(format!("--redis must start with redis://, got {value:?}"));
                }
                o.redis = Some(value)
            }
            _ => return Err(format!("unknown option {flag}\n{USAGE}")),
        }
    }
    if o.urls.is_empty() {
        o.urls.push("http://127.0.0.1:3000".into());
    }
    for url in &o.urls {
        if !url.starts_with("http://") {
            return Err(format!("--url must start with http://, got {url:?}"));
        }
    }
    if !matches!(
        o.scenario.as_str(),
        "connect" | "fanout" | "rooms" | "churn" | "hold" | "fleet" | "fleet-member" | "all"
    ) {
        return Err(format!("unknown scenario {:?}\n{USAGE}", o.scenario));
    }
    Ok(o)
}

fn main() {
    let mut args = std::env::args().skip(1);
    if args.next().as_deref() == Some("--summarize") {
        let Some(file) = args.next() else {
            eprintln!("--summarize needs a file of JSON lines");
            std::process::exit(2);
        };
        if let Err(e) = summarize(&file) {
            eprintln!("load: {e}");
            std::process::exit(1);
        }
        return;
    }
    let options = match options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    socketio_stack::serve::raise_open_file_limit().ok();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    if let Err(e) = runtime.block_on(run(options)) {
        eprintln!("load: {e}");
        std::process::exit(1);
    }
}

async fn run(o: Options) -> Result<(), Error> {
    let scenarios: Vec<&str> = match o.scenario.as_str() {
        "all" => vec!["connect", "fanout", "rooms", "churn"],
        one => vec![one],
    };
    if o.scenario == "fleet-member" {
        return fleet_member(&o).await;
    }
    for scenario in scenarios {
        let mut results = Vec::new();
        for run in 1..=o.runs {
            eprintln!("load: {scenario} run {run}/{}", o.runs);
            let mut figures = match scenario {
                "connect" => connect_scenario(&o).await?,
                "fanout" => fanout_scenario(&o, false).await?,
                "rooms" => fanout_scenario(&o, true).await?,
                "hold" => hold_scenario(&o).await?,
                "fleet" => fleet_scenario(&o).await?,
                _ => churn_scenario(&o).await?,
            };
            figures.insert("run".into(), json!(run));
            println!("{}", Value::Object(line(&o, scenario, figures.clone())));
            results.push(figures);
            wait_for_clients(&o, 0, Duration::from_secs(30)).await;
        }
        println!("{}", Value::Object(line(&o, scenario, summary(&results))));
    }
    Ok(())
}

/// One summary line per (scenario, label, instances) of the per-run lines in `file`.
fn summarize(file: &str) -> Result<(), Error> {
    let text = std::fs::read_to_string(file)?;
    let mut groups: BTreeMap<(String, String, u64), Vec<Map<String, Value>>> = BTreeMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let Value::Object(mut run) = serde_json::from_str(line)? else {
            return Err(format!("not a JSON object: {line}").into());
        };
        if run.contains_key("runs") {
            continue; // already a summary
        }
        let key = (
            run.remove("scenario")
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            run.remove("label")
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            run.remove("instances")
                .and_then(|v| v.as_u64())
                .unwrap_or(1),
        );
        groups.entry(key).or_default().push(run);
    }
    for ((scenario, label, instances), runs) in groups {
        let mut out = Map::new();
        out.insert("scenario".into(), json!(scenario));
        out.insert("label".into(), json!(label));
        out.insert("instances".into(), json!(instances));
        out.extend(summary(&runs));
        println!("{}", Value::Object(out));
    }
    Ok(())
}

/// `{scenario, label, ...figures}`.
fn line(o: &Options, scenario: &str, figures: Map<String, Value>) -> Map<String, Value> {
    let mut out = Map::new();
    out.insert("scenario".into(), json!(scenario));
    out.insert("label".into(), json!(o.label));
    out.insert("instances".into(), json!(o.urls.len()));
    out.extend(figures);
    out
}

/// Median, min and max of every numeric figure over the runs.
fn summary(runs: &[Map<String, Value>]) -> Map<String, Value> {
    let mut columns: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for run in runs {
        for (k, v) in run {
            if let (Some(x), true) = (v.as_f64(), k != "run") {
                columns.entry(k).or_default().push(x);
            }
        }
    }
    let mut out = Map::new();
    out.insert("runs".into(), json!(runs.len()));
    for (k, mut xs) in columns {
        xs.sort_by(f64::total_cmp);
        let median = if xs.len() % 2 == 1 {
            xs[xs.len() / 2]
        } else {
            (xs[xs.len() / 2 - 1] + xs[xs.len() / 2]) / 2.0
        };
        out.insert(
            k.into(),
            json!({"median": round(median), "min": round(xs[0]), "max": round(xs[xs.len() - 1])}),
        );
    }
    out
}

fn round(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// p50, p99 and max of latencies in microseconds, as milliseconds.
fn percentiles(out: &mut Map<String, Value>, mut micros: Vec<u64>) {
    micros.sort_unstable();
    let at = |q: f64| {
        if micros.is_empty() {
            0.0
        } else {
            let i = ((micros.len() as f64 * q).ceil() as usize).clamp(1, micros.len()) - 1;
            micros[i] as f64 / 1000.0
        }
    };
    out.insert("p50_ms".into(), json!(round(at(0.50))));
    out.insert("p99_ms".into(), json!(round(at(0.99))));
    out.insert("max_ms".into(), json!(round(at(1.0))));
}

fn unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

// ---------------------------------------------------------------- the Socket.IO client

/// One client: the WebSocket after `authenticated`.
struct Client {
    ws: Ws,
}

/// Connects, joins the namespace with `auth.token`, sends `authenticate` and waits for
/// `authenticated`, answering Engine.IO pings meanwhile.
async fn connect(o: &Options, url: &str) -> Result<Client, Error> {
    tokio::time::timeout(HANDSHAKE_TIMEOUT, async {
        let ws_url = format!(
            "ws{}{}/?EIO=4&transport=websocket",
            url.trim_start_matches("http"),
            o.path.trim_end_matches('/')
        );
        // The default 128 KiB read buffer per client would make the tool, not the server,
        // the memory bound of a 5,000-client run.
        let config = WebSocketConfig::default().read_buffer_size(4096);
        let (mut ws, _) =
            tokio_tungstenite::connect_async_with_config(ws_url, Some(config), true).await?;
        let open = next_text(&mut ws).await?;
        if !open.starts_with('0') {
            return Err(format!("expected the Engine.IO open packet, got {open:?}").into());
        }
        let auth = json!({ "token": o.token }).to_string();
        ws.send(Message::text(format!("40{auth}"))).await?;
        loop {
            let text = next_text(&mut ws).await?;
            if text.starts_with("40") {
                break;
            }
            if text.starts_with("44") {
                return Err(format!("connect_error: {text}").into());
            }
        }
        ws.send(Message::text(r#"42["authenticate"]"#)).await?;
        loop {
            let text = next_text(&mut ws).await?;
            if text.starts_with(r#"42["authenticated""#) {
                return Ok(Client { ws });
            }
            if text.starts_with(r#"42["unauthenticated""#) {
                return Err(format!("refused: {text}").into());
            }
        }
    })
    .await
    .map_err(|_| "handshake timed out")?
}

/// The next text frame, answering Engine.IO pings on the way.
async fn next_text(ws: &mut Ws) -> Result<String, Error> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) if text.as_str() == "2" => {
                ws.send(Message::text("3")).await?;
            }
            Some(Ok(Message::Text(text))) => return Ok(text.as_str().to_owned()),
            Some(Ok(Message::Close(_))) | None => return Err("closed by the server".into()),
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.into()),
        }
    }
}

impl Client {
    async fn emit(&mut self, event: &str, data: &Value) -> Result<(), Error> {
        let packet = json!([event, data]).to_string();
        self.ws.send(Message::text(format!("42{packet}"))).await?;
        Ok(())
    }

    /// Hands the data of every event named `topic` to `on_message` until `stop` turns true
    /// or the connection ends.
    async fn read_until(
        &mut self,
        topic: &str,
        mut stop: watch::Receiver<bool>,
        mut on_message: impl FnMut(&Value),
    ) {
        let prefix = format!(r#"42["{topic}","#);
        loop {
            let text = tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                text = next_text(&mut self.ws) => match text { Ok(t) => t, Err(_) => return },
            };
            if let Some(rest) = text.strip_prefix(&prefix) {
                // `rest` is `{...}]`: the data, then the array's end.
                if let Ok(data) = serde_json::from_str::<Value>(rest.trim_end_matches(']')) {
                    on_message(&data);
                }
            }
        }
    }

    async fn close(mut self) {
        if self.ws.close(None).await.is_ok() {
            while let Some(Ok(_)) = self.ws.next().await {}
        }
    }
}

/// Connects `n` clients, `concurrency` at a time, spread over the urls. Returns the clients
/// in order (a failed one is `None`), each successful handshake's latency, and when the last
/// success came (a failure's timeout, reported apart, does not stretch the rate).
async fn connect_many(o: &Options, n: usize) -> (Vec<Option<Client>>, Vec<u64>, Duration) {
    let gate = Arc::new(Semaphore::new(o.concurrency));
    let started = Instant::now();
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let o = o.clone();
            let gate = gate.clone();
            tokio::spawn(async move {
                let _permit = gate.acquire_owned().await.ok()?;
                let t0 = Instant::now();
                let url = &o.urls[i % o.urls.len()];
                match connect(&o, url).await {
                    Ok(client) => Some((client, t0.elapsed().as_micros() as u64, Instant::now())),
                    Err(e) => {
                        eprintln!("load: client {i}: {e}");
                        None
                    }
                }
            })
        })
        .collect();
    let mut clients = Vec::with_capacity(n);
    let mut latencies = Vec::with_capacity(n);
    let mut last_success = Duration::ZERO;
    for task in tasks {
        match task.await.ok().flatten() {
            Some((client, micros, done)) => {
                clients.push(Some(client));
                latencies.push(micros);
                last_success = last_success.max(done.duration_since(started));
            }
            None => clients.push(None),
        }
    }
    (clients, latencies, last_success)
}

// ---------------------------------------------------------------- HTTP (the contract's routes)

/// One HTTP/1.1 request on a kept-alive connection; returns the status and the body.
async fn http(
    conn: &mut BufReader<TcpStream>,
    method: &str,
    path: &str,
    body: &str,
) -> Result<(u16, String), Error> {
    let head = format!(
        "{method} {path} HTTP/1.1\r\nhost: load\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    conn.get_mut()
        .write_all(format!("{head}{body}").as_bytes())
        .await?;
    let mut line = String::new();
    conn.read_line(&mut line).await?;
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("not an HTTP response: {line:?}"))?;
    let mut length = 0usize;
    loop {
        line.clear();
        if conn.read_line(&mut line).await? == 0 {
            return Err("connection closed mid-response".into());
        }
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse()?;
        }
    }
    let mut body = vec![0; length];
    conn.read_exact(&mut body).await?;
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

async fn http_connect(url: &str) -> Result<BufReader<TcpStream>, Error> {
    let stream = TcpStream::connect(url.trim_start_matches("http://")).await?;
    stream.set_nodelay(true)?;
    Ok(BufReader::new(stream))
}

/// What `/stats` reports, summed over the instances.
#[derive(Clone, Copy, Default)]
struct Stats {
    clients: u64,
    rss: u64,
    /// The servers' CPU time (`cpu_us`, an extension of the contract; 0 when absent).
    cpu_us: u64,
}

/// `/stats` summed over the instances.
async fn stats(o: &Options) -> Result<Stats, Error> {
    let mut sum = Stats::default();
    for url in &o.urls {
        let mut conn = http_connect(url).await?;
        let (status, body) = http(&mut conn, "GET", "/stats", "").await?;
        if status != 200 {
            return Err(format!("GET /stats answered {status}").into());
        }
        let v: Value = serde_json::from_str(&body)?;
        sum.clients += v["clients"].as_u64().unwrap_or(0);
        sum.rss += v["rss"].as_u64().unwrap_or(0);
        sum.cpu_us += v["cpu_us"].as_u64().unwrap_or(0);
    }
    Ok(sum)
}

/// The servers' CPU time between two readings, per `count` (none when not reported).
fn cpu_per(out: &mut Map<String, Value>, key: &str, before: Stats, after: Stats, count: u64) {
    if after.cpu_us > 0 && count > 0 {
        let per = after.cpu_us.saturating_sub(before.cpu_us) as f64 / count as f64;
        out.insert(key.into(), json!(round(per)));
    }
}

/// Waits until the servers track `target` clients (or the deadline); returns the last count.
async fn wait_for_clients(o: &Options, target: u64, deadline: Duration) -> u64 {
    let until = Instant::now() + deadline;
    loop {
        let count = stats(o).await.map_or(u64::MAX, |s| s.clients);
        if count == target || Instant::now() >= until {
            return count;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---------------------------------------------------------------- scenarios

async fn connect_scenario(o: &Options) -> Result<Map<String, Value>, Error> {
    let before = stats(o).await?;
    let (clients, latencies, elapsed) = connect_many(o, o.clients).await;
    let connected = stats(o).await?;
    let ok = latencies.len();
    // Let the servers settle (timers armed, buffers shrunk) before reading their memory.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = stats(o).await?;
    let mut out = Map::new();
    out.insert("clients".into(), json!(o.clients));
    out.insert("concurrency".into(), json!(o.concurrency));
    out.insert("failures".into(), json!(o.clients - ok));
    out.insert("tracked".into(), json!(after.clients));
    out.insert(
        "handshakes_per_s".into(),
        json!(round(ok as f64 / elapsed.as_secs_f64())),
    );
    percentiles(&mut out, latencies);
    out.insert(
        "rss_per_client_bytes".into(),
        json!((after.rss.saturating_sub(before.rss)) / (ok.max(1) as u64)),
    );
    cpu_per(
        &mut out,
        "server_cpu_us_per_handshake",
        before,
        connected,
        ok as u64,
    );
    close_all(clients).await;
    Ok(out)
}

async fn close_all(clients: Vec<Option<Client>>) {
    let tasks: Vec<_> = clients
        .into_iter()
        .flatten()
        .map(|c| tokio::spawn(c.close()))
        .collect();
    for task in tasks {
        task.await.ok();
    }
}

/// `hold`: the clients connect, then idle for `--duration-ms` while the servers keep them
/// alive; every figure is read over the hold alone, after the last handshake.
async fn hold_scenario(o: &Options) -> Result<Map<String, Value>, Error> {
    let (clients, _, _) = connect_many(o, o.clients).await;
    let connected = clients.iter().flatten().count() as u64;
    let (stop, stopped) = watch::channel(false);
    let pings = Arc::new(AtomicU64::new(0));
    let readers: Vec<_> = clients
        .into_iter()
        .flatten()
        .map(|mut client| {
            let (stopped, pings) = (stopped.clone(), pings.clone());
            tokio::spawn(async move {
                client
                    .read_until("ping", stopped, |_| {
                        pings.fetch_add(1, Ordering::Relaxed);
                    })
                    .await;
                client
            })
        })
        .collect();
    // The first `ping`, sent at authentication, is behind us: only the interval's count.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let first_pings = pings.load(Ordering::Relaxed);
    let before = stats(o).await?;
    let started = Instant::now();
    tokio::time::sleep(o.duration).await;
    let after = stats(o).await?;
    let held = started.elapsed();
    stop.send(true).ok();
    let mut kept = Vec::with_capacity(readers.len());
    for reader in readers {
        kept.push(reader.await.ok());
    }
    let mut out = Map::new();
    out.insert("clients".into(), json!(o.clients));
    out.insert("connected".into(), json!(connected));
    out.insert("held_s".into(), json!(round(held.as_secs_f64())));
    out.insert(
        "dropped".into(),
        json!(connected.saturating_sub(after.clients)),
    );
    if after.cpu_us > 0 {
        let cpu = after.cpu_us.saturating_sub(before.cpu_us) as f64;
        out.insert(
            "server_cores".into(),
            json!((cpu / held.as_micros() as f64 * 1000.0).round() / 1000.0),
        );
    }
    let interval_pings = pings.load(Ordering::Relaxed) - first_pings;
    out.insert(
        "pings_per_client".into(),
        json!(round(interval_pings as f64 / connected.max(1) as f64)),
    );
    close_all(kept).await;
    Ok(out)
}

/// What one receiving client saw.
#[derive(Default)]
struct Received {
    counts: Vec<u8>,
    latencies: Vec<u64>,
    misdelivered: u64,
}

/// `fanout` (every client in `io-default`) or `rooms` (client i in room i % rooms).
async fn fanout_scenario(o: &Options, rooms: bool) -> Result<Map<String, Value>, Error> {
    let room_count = if rooms { o.rooms } else { 1 };
    let (clients, _, _) = connect_many(o, o.clients).await;
    let failures = clients.iter().filter(|c| c.is_none()).count();
    let mut clients: Vec<(usize, Client)> = clients
        .into_iter()
        .enumerate()
        .filter_map(|(i, c)| Some((i % room_count, c?)))
        .collect();
    let room_name = |k: usize| {
        if rooms {
            format!("public-load-{k}")
        } else {
            "io-default".to_owned()
        }
    };
    if rooms {
        for (k, client) in &mut clients {
            client
                .emit("join", &json!({ "rooms": [room_name(*k)] }))
                .await?;
        }
        wait_until_rooms_are_joined(o, &mut clients, room_count).await?;
    }

    // Who expects what: message j goes to room j % room_count.
    let expected: u64 = clients
        .iter()
        .map(|(k, _)| (0..o.messages).filter(|j| j % room_count == *k).count() as u64)
        .sum();
    let deliveries = Arc::new(Deliveries::expecting(expected));
    let (stop_tx, stop_rx) = watch::channel(false);
    let readers: Vec<_> = clients
        .into_iter()
        .map(|(k, client)| {
            let reading =
                read_deliveries(k, client, o.messages, deliveries.clone(), stop_rx.clone());
            tokio::spawn(reading)
        })
        .collect();

    let flooder = if o.flood > 0 {
        Some(flood(o).await?)
    } else {
        None
    };
    let first_send = unix_micros();
    let send_failures = send_all(o, room_count, rooms).await;
    deliveries.settle(stop_tx).await;
    let mut tally = Tally::default();
    for reader in readers {
        tally.add(reader.await?, room_count);
    }

    let mut out = Map::new();
    let delivered = deliveries.delivered.load(Ordering::Relaxed);
    let span = deliveries
        .last
        .load(Ordering::Relaxed)
        .saturating_sub(first_send)
        .max(1);
    out.insert("clients".into(), json!(o.clients));
    if rooms {
        out.insert("rooms".into(), json!(room_count));
    }
    out.insert("messages".into(), json!(o.messages));
    out.insert("rate".into(), json!(o.rate));
    out.insert("failures".into(), json!(failures));
    out.insert("send_failures".into(), json!(send_failures));
    out.insert("expected".into(), json!(expected));
    out.insert("delivered".into(), json!(delivered));
    out.insert("lost".into(), json!(tally.lost));
    out.insert("duplicates".into(), json!(tally.duplicates));
    out.insert("misdeliveries".into(), json!(tally.misdeliveries));
    out.insert(
        "deliveries_per_s".into(),
        json!(round(delivered as f64 / (span as f64 / 1e6))),
    );
    percentiles(&mut out, tally.latencies);
    if let Some(flooder) = flooder {
        let (emitted, disconnected) = flooder.await?;
        out.insert("flood_emitted".into(), json!(emitted));
        out.insert("flooder_disconnected".into(), json!(u8::from(disconnected)));
    }
    close_all(tally.clients).await;
    Ok(out)
}

/// The deliveries of one fan-out, counted by all its readers.
struct Deliveries {
    expected: u64,
    delivered: AtomicU64,
    /// When the last first delivery of a message came (Unix µs).
    last: AtomicU64,
    all: Notify,
}

impl Deliveries {
    fn expecting(expected: u64) -> Self {
        Deliveries {
            expected,
            delivered: AtomicU64::new(0),
            last: AtomicU64::new(0),
            all: Notify::new(),
        }
    }

    /// Waits for every expected delivery, or until none came for `DELIVERY_GRACE` (a slow
    /// fan-out still delivering is waited for; a lost message is not), then stops the readers.
    async fn settle(&self, stop: watch::Sender<bool>) {
        let mut progress = self.delivered.load(Ordering::Relaxed);
        loop {
            tokio::select! {
                _ = self.all.notified() => break,
                _ = tokio::time::sleep(DELIVERY_GRACE) => {}
            }
            let now = self.delivered.load(Ordering::Relaxed);
            if now == progress {
                break;
            }
            progress = now;
        }
        stop.send(true).ok();
    }
}

/// Reads client `k`'s `load` events (message j is for room j % rooms, and client k is in room
/// k) until `stop`, recording the first delivery of each message and its latency.
async fn read_deliveries(
    k: usize,
    mut client: Client,
    messages: usize,
    deliveries: Arc<Deliveries>,
    stop: watch::Receiver<bool>,
) -> (usize, Received, Client) {
    let mut seen = Received {
        counts: vec![0; messages],
        ..Received::default()
    };
    client
        .read_until("load", stop, |data| {
            let now = unix_micros();
            let seq = data["seq"].as_u64().unwrap_or(u64::MAX) as usize;
            if data["room"].as_u64() != Some(k as u64) {
                seen.misdelivered += 1;
            } else if let Some(count) = seen.counts.get_mut(seq) {
                *count = count.saturating_add(1);
                if *count == 1 {
                    seen.latencies
                        .push(now.saturating_sub(data["t"].as_u64().unwrap_or(now)));
                    deliveries.last.fetch_max(now, Ordering::Relaxed);
                    let d = &deliveries.delivered;
                    if d.fetch_add(1, Ordering::Relaxed) + 1 == deliveries.expected {
                        deliveries.all.notify_one();
                    }
                }
            }
        })
        .await;
    (k, seen, client)
}

/// What the readers of one fan-out saw, added up.
#[derive(Default)]
struct Tally {
    lost: u64,
    duplicates: u64,
    misdeliveries: u64,
    latencies: Vec<u64>,
    clients: Vec<Option<Client>>,
}

impl Tally {
    /// Adds what client `k` saw, of messages spread over `room_count` rooms.
    fn add(&mut self, (k, seen, client): (usize, Received, Client), room_count: usize) {
        for (j, count) in seen.counts.iter().enumerate() {
            if j % room_count == k {
                match count {
                    0 => self.lost += 1,
                    n => self.duplicates += u64::from(n - 1),
                }
            } else {
                self.misdeliveries += u64::from(*count);
            }
        }
        self.misdeliveries += seen.misdelivered;
        self.latencies.extend(seen.latencies);
        self.clients.push(Some(client));
    }
}

/// Probes every room until each client has seen a probe for its own room, so that the
/// measured sends start after every `join` took effect.
async fn wait_until_rooms_are_joined(
    o: &Options,
    clients: &mut [(usize, Client)],
    rooms: usize,
) -> Result<(), Error> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut ready = vec![false; clients.len()];
    let mut conn = http_connect(&o.urls[0]).await?;
    while ready.contains(&false) {
        if Instant::now() > deadline {
            return Err("clients' joins did not take effect within 30 s".into());
        }
        for k in 0..rooms {
            let body = json!({"destination": format!("public-load-{k}"), "topic": "probe", "data": {"room": k}});
            http(&mut conn, "POST", "/send", &body.to_string()).await?;
        }
        for (i, (_, client)) in clients.iter_mut().enumerate() {
            while !ready[i] {
                match tokio::time::timeout(Duration::from_millis(200), next_text(&mut client.ws))
                    .await
                {
                    Ok(Ok(text)) => ready[i] = text.starts_with(r#"42["probe""#),
                    Ok(Err(e)) => return Err(e),
                    Err(_) => break,
                }
            }
        }
    }
    // Probes sent after a client was ready may still be on their way: they are not `load`
    // events, so the readers skip them.
    Ok(())
}

/// `--messages` POST /send at `--rate`, from four keep-alive connections spread over the
/// instances, message j at start + j / rate. Returns the number of failed sends.
async fn send_all(o: &Options, room_count: usize, rooms: bool) -> u64 {
    const SENDERS: usize = 4;
    let start = tokio::time::Instant::now();
    let failures = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..SENDERS)
        .map(|s| {
            let o = o.clone();
            let failures = failures.clone();
            tokio::spawn(async move {
                let url = &o.urls[s % o.urls.len()];
                let mut conn = match http_connect(url).await {
                    Ok(c) => c,
                    Err(_) => {
                        failures.fetch_add(
                            (s..o.messages).step_by(SENDERS).count() as u64,
                            Ordering::Relaxed,
                        );
                        return;
                    }
                };
                for j in (s..o.messages).step_by(SENDERS) {
                    tokio::time::sleep_until(start + Duration::from_secs_f64(j as f64 / o.rate))
                        .await;
                    let k = j % room_count;
                    let destination = if rooms {
                        format!("public-load-{k}")
                    } else {
                        "io-default".into()
                    };
                    let body = json!({
                        "destination": destination,
                        "topic": "load",
                        "data": {"seq": j, "room": k, "t": unix_micros()},
                    });
                    match http(&mut conn, "POST", "/send", &body.to_string()).await {
                        Ok((204, _)) => {}
                        _ => {
                            failures.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.ok();
    }
    failures.load(Ordering::Relaxed)
}

/// One more authenticated client that emits `--flood` events as fast as it can, then
/// reports how many it sent and whether the server disconnected it.
async fn flood(o: &Options) -> Result<tokio::task::JoinHandle<(u64, bool)>, Error> {
    let mut client = connect(o, &o.urls[0]).await?;
    let n = o.flood;
    Ok(tokio::spawn(async move {
        let mut emitted = 0u64;
        let frames = (0..n).map(|i| Ok(Message::text(format!(r#"42["flood",{{"i":{i}}}]"#))));
        let mut stream = futures_util::stream::iter(frames).inspect(|_| emitted += 1);
        let sent = client.ws.send_all(&mut stream).await.is_ok();
        drop(stream);
        // A disconnected flooder sees its connection end soon after; one still served keeps
        // getting pings and stays open.
        let closed = !sent
            || tokio::time::timeout(Duration::from_secs(2), async {
                while next_text(&mut client.ws).await.is_ok() {}
            })
            .await
            .is_ok();
        if !closed {
            client.close().await;
        }
        (emitted, closed)
    }))
}

async fn churn_scenario(o: &Options) -> Result<Map<String, Value>, Error> {
    let before = stats(o).await?;
    let baseline = before.clients;
    let cycles = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(AtomicU64::new(0));
    let until = Instant::now() + o.duration;
    let tasks: Vec<_> = (0..o.workers)
        .map(|w| {
            let (o, cycles, failures) = (o.clone(), cycles.clone(), failures.clone());
            tokio::spawn(async move {
                let url = &o.urls[w % o.urls.len()];
                while Instant::now() < until {
                    match connect(&o, url).await {
                        Ok(client) => {
                            client.close().await;
                            if Instant::now() <= until {
                                cycles.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        Err(_) => {
                            failures.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();
    // A worker still in a handshake at the deadline is not waited for past a grace period
    // (its cycle would not count anyway).
    let grace = tokio::time::Instant::from_std(until + Duration::from_secs(2));
    for mut task in tasks {
        if tokio::time::timeout_at(grace, &mut task).await.is_err() {
            task.abort();
        }
    }
    let elapsed = o.duration.max(Duration::from_millis(1));
    let left = wait_for_clients(o, baseline, Duration::from_secs(10)).await;
    let after = stats(o).await?;
    let cycles = cycles.load(Ordering::Relaxed);
    let mut out = Map::new();
    out.insert("workers".into(), json!(o.workers));
    out.insert("cycles".into(), json!(cycles));
    out.insert("failures".into(), json!(failures.load(Ordering::Relaxed)));
    out.insert(
        "cycles_per_s".into(),
        json!(round(cycles as f64 / elapsed.as_secs_f64())),
    );
    out.insert("leaked".into(), json!(left.saturating_sub(baseline)));
    out.insert(
        "rss_growth_bytes".into(),
        json!(after.rss as i64 - before.rss as i64),
    );
    cpu_per(&mut out, "server_cpu_us_per_cycle", before, after, cycles);
    Ok(out)
}

/// `fleet`: `--clients` held by `--processes` load processes (this tool started again as
/// `fleet-member`, one instance's url each, round-robin), then `--messages` broadcasts to
/// `io-default` at `--rate`, each sent to one instance and reaching every client of every
/// instance through the Redis they share. Figures over all the processes: deliveries/s,
/// latency, lost, the servers' CPU per delivery and, with `--redis`, Redis' CPU per publish.
async fn fleet_scenario(o: &Options) -> Result<Map<String, Value>, Error> {
    let exe = std::env::current_exe()?;
    let mut members = Vec::with_capacity(o.processes);
    for p in 0..o.processes {
        let share = o.clients / o.processes + usize::from(p < o.clients % o.processes);
        let mut child = tokio::process::Command::new(&exe)
            .args([
                "--scenario",
                "fleet-member",
                "--url",
                &o.urls[p % o.urls.len()],
            ])
            .args(["--path", &o.path, "--token", &o.token])
            .args(["--clients", &share.to_string()])
            .args(["--messages", &o.messages.to_string()])
            .args([
                "--concurrency",
                &(o.concurrency / o.processes).max(1).to_string(),
            ])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let stdin = child.stdin.take().ok_or("a fleet member without stdin")?;
        let stdout = child.stdout.take().ok_or("a fleet member without stdout")?;
        members.push((child, stdin, BufReader::new(stdout).lines()));
    }
    let mut connected = 0;
    for (_, _, lines) in &mut members {
        connected += member_report(lines).await?["ready"].as_u64().unwrap_or(0);
    }
    let tracked = wait_for_clients(o, connected, Duration::from_secs(10)).await;
    let redis_idle = redis_idle_us_per_s(o).await?;
    let before = stats(o).await?;
    let redis_before = redis_cpu_us(o).await?;
    let first_send = unix_micros();
    let sending = Instant::now();
    let send_failures = send_all(o, 1, false).await;
    let (mut delivered, mut lost, mut duplicates, mut last) = (0, 0, 0, 0);
    let mut latencies = Vec::new();
    for (_, stdin, _) in &mut members {
        stdin.write_all(b"sent\n").await?;
    }
    for (_, _, lines) in &mut members {
        let report = member_report(lines).await?;
        let figure = |key: &str| report[key].as_u64().unwrap_or(0);
        delivered += figure("delivered");
        lost += figure("lost");
        duplicates += figure("duplicates") + figure("misdeliveries");
        last = last.max(figure("last_delivery_us"));
        latencies.extend(
            report["latencies"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_u64),
        );
    }
    let after = stats(o).await?;
    let redis_after = redis_cpu_us(o).await?;
    for (mut child, stdin, _) in members {
        drop(stdin);
        child.wait().await?;
    }
    let window = sending.elapsed().as_secs_f64();
    let span = last.saturating_sub(first_send).max(1);
    let mut out = Map::new();
    out.insert("clients".into(), json!(o.clients));
    out.insert("processes".into(), json!(o.processes));
    out.insert("connected".into(), json!(connected));
    out.insert("tracked".into(), json!(tracked));
    out.insert(
        "dropped".into(),
        json!(connected.saturating_sub(after.clients)),
    );
    out.insert("messages".into(), json!(o.messages));
    out.insert("rate".into(), json!(o.rate));
    out.insert("send_failures".into(), json!(send_failures));
    out.insert("expected".into(), json!(connected * o.messages as u64));
    out.insert("delivered".into(), json!(delivered));
    out.insert("lost".into(), json!(lost));
    out.insert("duplicates".into(), json!(duplicates));
    out.insert(
        "deliveries_per_s".into(),
        json!(round(delivered as f64 / (span as f64 / 1e6))),
    );
    percentiles(&mut out, latencies);
    cpu_per(
        &mut out,
        "server_cpu_us_per_delivery",
        before,
        after,
        delivered,
    );
    if let (Some(b), Some(a), Some(idle)) = (redis_before, redis_after, redis_idle) {
        // Redis' own housekeeping and the instances' heartbeats go on meanwhile: what it
        // spends when idle, over the same window, is not the broadcasts'.
        let busy = a.saturating_sub(b) as f64 - idle * window;
        let per = busy.max(0.0) / o.messages.max(1) as f64;
        out.insert("redis_cpu_us_per_publish".into(), json!(round(per)));
        out.insert("redis_idle_cpu_us_per_s".into(), json!(round(idle)));
    }
    Ok(out)
}

/// The next JSON line a fleet member prints.
async fn member_report(
    lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
) -> Result<Value, Error> {
    let line = lines
        .next_line()
        .await?
        .ok_or("a fleet member exited early (its stderr says why)")?;
    Ok(serde_json::from_str(&line)?)
}

/// One process of a `fleet`: connects `--clients` to its one instance, each reading as soon as
/// it is authenticated (one that waited for the others would miss the heartbeat and be
/// dropped), prints `{"ready": connected}`, reads the `--messages` broadcasts until all
/// arrived or none came for `DELIVERY_GRACE` after the parent writes a line (its sends are
/// done), and prints what arrived, every latency included, for the parent to add up.
async fn fleet_member(o: &Options) -> Result<(), Error> {
    let deliveries = Arc::new(Deliveries::expecting((o.clients * o.messages) as u64));
    let (stop_tx, stop_rx) = watch::channel(false);
    let gate = Arc::new(Semaphore::new(o.concurrency));
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<bool>();
    let members: Vec<_> = (0..o.clients)
        .map(|i| {
            let (o, gate, done) = (o.clone(), gate.clone(), done_tx.clone());
            let (deliveries, stop) = (deliveries.clone(), stop_rx.clone());
            tokio::spawn(async move {
                let permit = gate.acquire_owned().await.ok()?;
                let connected = connect(&o, &o.urls[i % o.urls.len()]).await;
                drop(permit);
                done.send(connected.is_ok()).ok();
                let client = connected
                    .map_err(|e| eprintln!("load: client {i}: {e}"))
                    .ok()?;
                Some(read_deliveries(0, client, o.messages, deliveries, stop).await)
            })
        })
        .collect();
    let mut connected = 0u64;
    for _ in 0..o.clients {
        connected += u64::from(done_rx.recv().await.unwrap_or(false));
    }
    println!("{}", json!({ "ready": connected }));
    let mut parent = BufReader::new(tokio::io::stdin()).lines();
    parent.next_line().await?;
    deliveries.settle(stop_tx).await;
    let mut tally = Tally::default();
    for member in members {
        if let Some(seen) = member.await? {
            tally.add(seen, 1);
        }
    }
    println!(
        "{}",
        json!({
            "delivered": deliveries.delivered.load(Ordering::Relaxed),
            "lost": tally.lost,
            "duplicates": tally.duplicates,
            "misdeliveries": tally.misdeliveries,
            "last_delivery_us": deliveries.last.load(Ordering::Relaxed),
            "latencies": tally.latencies,
        })
    );
    // Held until the parent has read the servers' figures (or is gone); then they close
    // with the process: the next run gets fresh servers anyway.
    parent.next_line().await.ok();
    std::process::exit(0);
}

/// Redis' CPU time per second while the fleet is connected and idle, over 2 s.
async fn redis_idle_us_per_s(o: &Options) -> Result<Option<f64>, Error> {
    const IDLE: Duration = Duration::from_secs(2);
    let Some(before) = redis_cpu_us(o).await? else {
        return Ok(None);
    };
    tokio::time::sleep(IDLE).await;
    let after = redis_cpu_us(o).await?.unwrap_or(before);
    Ok(Some(
        after.saturating_sub(before) as f64 / IDLE.as_secs_f64(),
    ))
}

/// Redis' CPU time so far (`INFO cpu`: `used_cpu_sys` + `used_cpu_user`, in µs), when
/// `--redis` names it.
async fn redis_cpu_us(o: &Options) -> Result<Option<u64>, Error> {
    let Some(url) = &o.redis else {
        return Ok(None);
    };
    let addr = url.trim_start_matches("redis://").trim_end_matches('/');
    let mut conn = BufReader::new(TcpStream::connect(addr).await?);
    conn.get_mut().write_all(b"INFO cpu\r\n").await?;
    let mut head = String::new();
    conn.read_line(&mut head).await?;
    let length: usize = head
        .trim_end()
        .strip_prefix('$')
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("INFO answered {head:?}"))?;
    let mut body = vec![0; length];
    conn.read_exact(&mut body).await?;
    let seconds: f64 = String::from_utf8_lossy(&body)
        .lines()
        .filter_map(|l| l.split_once(':'))
        .filter(|(k, _)| matches!(*k, "used_cpu_sys" | "used_cpu_user"))
        .filter_map(|(_, v)| v.trim().parse::<f64>().ok())
        .sum();
    Ok(Some((seconds * 1e6) as u64))
}
