// A Node socket.io 4 server speaking the seeds' protocol, written here from the seeds' text
// (authenticate → authenticated / unauthenticated, join validated, leave, ping), so that the
// crate's Rust client can be tested against the reference server implementation, not only
// against socketioxide.
//
//   node seeds-server.mjs        # prints `listening on <port>` (PORT, default 0 = any)
//
// Token: AUTH_TOKEN (default demo-token) from `auth.token` or `authorization: Bearer`.
// HTTP: POST /send {destination?, topic, data} → 204 (through the adapter: with REDIS_URL
// set, `@socket.io/redis-adapter` carries it to every server on that Redis); GET /sockets
// and GET /rooms: `io.fetchSockets()` and the adapter's `allRooms()`, fleet-wide.
// POST /emit {via, destination?, topic, args} → 204: emits `args` as JavaScript values JSON
// has no form for, `{"$buffer": [bytes]}` a Buffer and `{"$date": ms}` a Date, through the
// adapter (`via: "adapter"`) or through `@socket.io/redis-emitter` (`via: "emitter"`).
import { createServer } from 'node:http';
import { Server } from 'socket.io';

const token = process.env.AUTH_TOKEN ?? 'demo-token';
const http = createServer((req, res) => {
  if (req.method === 'POST' && req.url === '/send') {
    let body = '';
    req.on('data', (chunk) => (body += chunk));
    req.on('end', () => {
      const { destination, topic, data } = JSON.parse(body || '{}');
      if (topic && data) (destination ? io.to(destination) : io).emit(topic, data);
      res.writeHead(204).end();
    });
    return;
  }
  if (req.method === 'POST' && req.url === '/emit') {
    let body = '';
    req.on('data', (chunk) => (body += chunk));
    req.on('end', () => {
      const revive = (_key, v) => {
        if (v && typeof v === 'object' && '$buffer' in v) return Buffer.from(v.$buffer);
        if (v && typeof v === 'object' && '$date' in v) return new Date(v.$date);
        return v;
      };
      const { via, destination, topic, args } = JSON.parse(body, revive);
      const from = via === 'emitter' ? emitter : io;
      if (!from) return res.writeHead(400).end('no emitter without REDIS_URL');
      (destination ? from.to(destination) : from).emit(topic, ...args);
      res.writeHead(204).end();
    });
    return;
  }
  if (req.method === 'GET' && req.url === '/sockets') {
    // Through the adapter: every server on the Redis answers.
    io.fetchSockets().then(
      (sockets) => {
        const body = sockets.map((s) => ({ id: s.id, rooms: [...s.rooms], token: s.handshake?.auth?.token, data: s.data }));
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body));
      },
      (err) => res.writeHead(504).end(String(err)),
    );
    return;
  }
  if (req.method === 'GET' && req.url === '/rooms') {
    io.of('/').adapter.allRooms().then(
      (rooms) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify([...rooms])),
      (err) => res.writeHead(504).end(String(err)),
    );
    return;
  }
  res.writeHead(404).end();
});
const io = new Server(http, { path: '/io' });
let emitter;
if (process.env.REDIS_URL) {
  const { createClient } = await import('redis');
  const { createAdapter } = await import('@socket.io/redis-adapter');
  const pub = createClient({ url: process.env.REDIS_URL });
  const sub = pub.duplicate();
  await Promise.all([pub.connect(), sub.connect()]);
  io.adapter(createAdapter(pub, sub));
  const { Emitter } = await import('@socket.io/redis-emitter');
  emitter = new Emitter(pub);
}
const now = () => new Date().toISOString();

io.on('connection', (socket) => {
  let state = 'unauthorized';
  const timeout = setTimeout(() => state !== 'authenticated' && socket.disconnect(), 10_000);
  let interval;
  socket.on('disconnect', () => {
    clearTimeout(timeout);
    clearInterval(interval);
  });
  socket.on('authenticate', () => {
    if (state !== 'unauthorized') return;
    state = 'authenticating';
    const { auth, headers } = socket.handshake;
    const given = [auth?.token, (headers.authorization ?? '').replace(/^Bearer /i, '')];
    if (!given.includes(token)) {
      state = 'unauthorized';
      socket.emit('unauthenticated', { message: 'Invalid token to authenticate! Please login again!', time: now() });
      setImmediate(() => socket.disconnect());
      return;
    }
    state = 'authenticated';
    clearTimeout(timeout);
    socket.emit('ping', { time: now() });
    socket.join(['io-default', 'io-notification']);
    socket.on('join', (payload) => {
      const { rooms = [] } = payload || { rooms: [] };
      if (Array.isArray(rooms)) socket.join(rooms.filter((r) => typeof r === 'string' && r.startsWith('public-')));
    });
    socket.on('leave', (payload) => {
      const { rooms = [] } = payload || { rooms: [] };
      if (Array.isArray(rooms)) rooms.forEach((r) => socket.leave(r));
    });
    interval = setInterval(() => socket.emit('ping', { time: now() }), 30_000);
    socket.emit('authenticated', { id: socket.id, time: now() });
  });
});

http.listen(Number(process.env.PORT ?? 0), '127.0.0.1', () => {
  console.log(`listening on ${http.address().port}`);
});
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => io.close(() => process.exit(0)));
