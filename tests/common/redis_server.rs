//! A real `redis-server`, started by the test on a free port (so it can also be killed and
//! restarted to test faults), in plain TCP or TLS only.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::tls::TestCa;

pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    /// Whether `port` is a TLS port (the plain one is then off).
    tls: bool,
    extra: Vec<String>,
}

/// A port nothing listens on (bound, read, released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl RedisServer {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// With extra `redis-server` arguments (e.g. `--requirepass secret`).
    pub fn start_with(extra: &[&str]) -> Self {
        let mut server = Self {
            child: None,
            port: free_port(),
            tls: false,
            extra: extra.iter().map(|s| (*s).to_owned()).collect(),
        };
        server.spawn();
        server
    }

    /// TLS only (`--port 0 --tls-port …`), with the certificate `ca` signed for 127.0.0.1;
    /// clients need no certificate unless `extra` says `--tls-auth-clients yes`.
    pub fn start_tls(ca: &TestCa, extra: &[&str]) -> Self {
        let mut args = vec![
            "--tls-cert-file".to_owned(),
            ca.path("server.pem"),
            "--tls-key-file".to_owned(),
            ca.path("server-key.pem"),
            "--tls-ca-cert-file".to_owned(),
            ca.path("ca.pem"),
        ];
        if !extra.contains(&"--tls-auth-clients") {
            args.extend(["--tls-auth-clients".to_owned(), "no".to_owned()]);
        }
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        let mut server = Self {
            child: None,
            port: free_port(),
            tls: true,
            extra: args,
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let port = self.port.to_string();
        let listen: &[&str] = if self.tls {
            &["--port", "0", "--tls-port", &port]
        } else {
            &["--port", &port]
        };
        let child = Command::new("redis-server")
            .args(listen)
            .args(["--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server on PATH (.ci/run installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not start on {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// `redis://127.0.0.1:<port>`, or `rediss://…` for a TLS server.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// SIGKILL: Redis vanishes without a goodbye.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().ok();
            child.wait().ok();
        }
    }

    /// Starts it again on the same port.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A Redis Cluster of three masters on free ports (`redis-server --cluster-enabled yes`,
/// joined by `redis-cli --cluster create`), each node in its own temporary folder.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
    dir: std::path::PathBuf,
}

impl RedisCluster {
    pub fn start() -> Self {
        let dir = std::env::temp_dir().join(format!(
            "socketio-stack-cluster-{}-{}",
            std::process::id(),
            free_port()
        ));
        let mut nodes = Vec::new();
        for _ in 0..3 {
            let port = free_port();
            let node_dir = dir.join(port.to_string());
            std::fs::create_dir_all(&node_dir).unwrap();
            let conf = node_dir.join("nodes.conf");
            nodes.push(RedisServer::start_with(&[
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                conf.to_str().unwrap(),
            ]));
        }
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let status = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("redis-cli on PATH (it comes with redis-server)");
        assert!(status.success(), "redis-cli --cluster create failed");
        let deadline = Instant::now() + Duration::from_secs(20);
        for node in &nodes {
            loop {
                let out = Command::new("redis-cli")
                    .args(["-p", &node.port.to_string(), "cluster", "info"])
                    .output()
                    .unwrap();
                if String::from_utf8_lossy(&out.stdout).contains("cluster_state:ok") {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "the cluster did not become ready"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Self { nodes, dir }
    }

    /// `redis-cli -p <port of node at> args…`, its output trimmed.
    pub fn cli(&self, at: usize, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-p", &self.nodes[at].port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli on PATH");
        assert!(out.status.success(), "redis-cli {args:?} failed");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// The slot of `key` (a channel's name hashes as a key's).
    pub fn slot_of(&self, key: &str) -> u16 {
        self.cli(0, &["CLUSTER", "KEYSLOT", key]).parse().unwrap()
    }

    /// `PUBSUB SHARDNUMSUB channel` on each node: its sharded subscribers there.
    pub fn shard_subscribers(&self, channel: &str) -> Vec<usize> {
        (0..self.nodes.len())
            .map(|at| {
                let out = self.cli(at, &["PUBSUB", "SHARDNUMSUB", channel]);
                out.lines().nth(1).unwrap().trim().parse().unwrap()
            })
            .collect()
    }

    /// Moves `slot` from the node `source` to `target` (indexes in `nodes`) as
    /// `redis-cli --cluster reshard` does for a slot without keys: importing, migrating, then
    /// the new owner set on every node. Its old owner drops the sharded subscriptions of its
    /// channels (with an `sunsubscribe` push to each subscriber).
    pub fn move_slot(&self, slot: u16, source: usize, target: usize) {
        let ids: Vec<String> = (0..self.nodes.len())
            .map(|at| self.cli(at, &["CLUSTER", "MYID"]))
            .collect();
        let slot = slot.to_string();
        let setslot = |at: usize, args: &[&str]| {
            let mut all = vec!["CLUSTER", "SETSLOT", slot.as_str()];
            all.extend_from_slice(args);
            assert_eq!(self.cli(at, &all), "OK");
        };
        setslot(target, &["IMPORTING", &ids[source]]);
        setslot(source, &["MIGRATING", &ids[target]]);
        for at in [target, source, 3 - source - target] {
            setslot(at, &["NODE", &ids[target]]);
        }
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.kill();
        }
        std::fs::remove_dir_all(&self.dir).ok();
    }
}
