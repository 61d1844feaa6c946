// Child processes for the interop suites: a server that prints `listening on <port>`, and a
// redis-server on a free port. Every child is killed when the test process exits.
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import net from 'node:net';

const children = new Set();
process.on('exit', () => {
  for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
});

/** Spawns `command` and waits (15 s at most) for its `listening on <port>` line. */
export async function startServer(command, args = [], env = {}) {
  const child = spawn(command, args, {
    env: { ...process.env, PORT: '0', HOST: '127.0.0.1', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(child);
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (chunk) => (stderr = (stderr + chunk).slice(-8192)));
  const port = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${command}: no "listening on" within 15 s\n${stderr}`)), 15_000);
    child.once('exit', (code) => reject(new Error(`${command} exited with ${code}\n${stderr}`)));
    createInterface({ input: child.stdout }).on('line', (line) => {
      const m = /^listening on (\d+)$/.exec(line.trim());
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
  });
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM');
    const hard = setTimeout(() => child.kill('SIGKILL'), 5_000);
    await exited;
    clearTimeout(hard);
    children.delete(child);
  };
  // `signal('SIGSTOP')` freezes the server (a member that stops answering), `SIGCONT` thaws it.
  const signal = (name) => child.kill(name);
  return { port, url: `http://127.0.0.1:${port}`, stop, signal, stderr: () => stderr };
}

async function freePort() {
  const server = net.createServer();
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** A redis-server of its own on a free port, for one test. */
export async function startRedis() {
  const port = await freePort();
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], {
    stdio: 'ignore',
  });
  children.add(child);
  await waitForPort(port);
  const stop = async () => {
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGKILL');
    await exited;
    children.delete(child);
  };
  return { port, url: `redis://127.0.0.1:${port}`, stop };
}

// A Redis Cluster of three masters on free ports (redis-cli --cluster create), ready once every
// node says `cluster_state:ok`; `url` names its first node.
export async function startRedisCluster() {
  const { mkdtempSync, rmSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const { execFileSync } = await import('node:child_process');
  const dir = mkdtempSync(join(tmpdir(), 'socketio-stack-cluster-'));
  const nodes = [];
  for (let i = 0; i < 3; i++) {
    const port = await freePort();
    const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no',
      '--cluster-enabled', 'yes', '--cluster-config-file', join(dir, `nodes-${port}.conf`)], { stdio: 'ignore', cwd: dir });
    children.add(child);
    nodes.push({ port, child });
  }
  for (const { port } of nodes) await waitForPort(port);
  execFileSync('redis-cli', ['--cluster', 'create', ...nodes.map((n) => `127.0.0.1:${n.port}`), '--cluster-replicas', '0', '--cluster-yes'], { stdio: 'ignore' });
  const deadline = Date.now() + 20_000;
  for (const { port } of nodes) {
    while (!execFileSync('redis-cli', ['-p', String(port), 'cluster', 'info']).toString().includes('cluster_state:ok')) {
      if (Date.now() > deadline) throw new Error('the Redis Cluster did not become ready');
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
  const stop = async () => {
    for (const { child } of nodes) {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGKILL');
      await exited;
      children.delete(child);
    }
    rmSync(dir, { recursive: true, force: true });
  };
  return { ports: nodes.map((n) => n.port), url: `redis://127.0.0.1:${nodes[0].port}`, stop };
}

async function waitForPort(port) {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const up = await new Promise((resolve) => {
      const socket = net.connect(port, '127.0.0.1', () => resolve(socket.end() && true));
      socket.on('error', () => resolve(false));
    });
    if (up) return;
    if (Date.now() > deadline) throw new Error(`nothing listens on ${port}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
