// A Node socket.io 4 server with @socket.io/redis-adapter, the Node counterpart of the
// `fleet` example: the same routes over HTTP, each one the Node API a fleet member uses
// (`io.to(room).timeout(ms).emit(.., cb)`, `io.serverSideEmit`, `fetchSockets`,
// `allRooms`, `socketsJoin`…), so that fleet.test.mjs can drive both alike.
//
//   REDIS_URL=redis://… node fleet-node-server.mjs     # prints `listening on <port>`
//   REDIS_URL=redis://… REDIS_SHARDED=dynamic REDIS_CLUSTER=1 node fleet-node-server.mjs
//
// REDIS_SHARDED (`static`, `dynamic`, `dynamic-private`): `createShardedAdapter` in that
// subscription mode, on a Redis Cluster with REDIS_CLUSTER=1 (REDIS_URL: one of its nodes).
//
// A client connects with `auth: {name, room?}`: `socket.data` is `{name}`, and it joins `room`.
import { createServer } from 'node:http';
import { Server } from 'socket.io';
import { createClient, createCluster } from 'redis';
import { createAdapter, createShardedAdapter } from '@socket.io/redis-adapter';

const log = [];
// In JSON bodies and answers, `{"$hex": "00ff"}` stands for binary data, as in the fleet example.
const fromJson = (v) =>
  Array.isArray(v) ? v.map(fromJson)
  : v && typeof v === 'object' ? (Object.keys(v).length === 1 && typeof v.$hex === 'string' ? Buffer.from(v.$hex, 'hex')
    : Object.fromEntries(Object.entries(v).map(([k, x]) => [k, fromJson(x)])))
  : v;
const shown = (v) =>
  Buffer.isBuffer(v) || v instanceof ArrayBuffer || ArrayBuffer.isView(v) ? { $hex: Buffer.from(v.buffer ?? v, v.byteOffset ?? 0, v.byteLength).toString('hex') }
  : Array.isArray(v) ? v.map(shown)
  : v && typeof v === 'object' ? Object.fromEntries(Object.entries(v).map(([k, x]) => [k, shown(x)]))
  : v;
const json = (res, status, body) =>
  res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));

async function body(req) {
  let text = '';
  for await (const chunk of req) text += chunk;
  return JSON.parse(text || '{}');
}

const http = createServer(async (req, res) => {
  const url = new URL(req.url, 'http://localhost');
  const of = (nsp) => io.of(nsp ?? '/');
  const target = (room, nsp) => (room ? of(nsp).in(room) : of(nsp));
  try {
    if (req.method === 'POST' && url.pathname === '/ack-broadcast') {
      const { namespace, room, event, args = [], timeout_ms } = await body(req);
      const op = target(room, namespace);
      op.timeout(timeout_ms).emit(event, ...fromJson(args), (err, responses) =>
        json(res, 200, { error: err ? String(err) : null, responses: shown(responses) }),
      );
      return;
    }
    if (req.method === 'POST' && url.pathname === '/emit') {
      const { namespace, room, event, args = [] } = await body(req);
      target(room, namespace).emit(event, ...fromJson(args));
      return res.writeHead(204).end();
    }
    if (req.method === 'POST' && url.pathname === '/server-side-emit') {
      const { event, args = [], ack } = await body(req);
      if (!ack) {
        io.serverSideEmit(event, ...fromJson(args));
        return res.writeHead(204).end();
      }
      io.serverSideEmit(event, ...fromJson(args), (err, responses) =>
        json(res, err ? 504 : 200, { error: err ? String(err) : null, responses: shown(responses) }),
      );
      return;
    }
    if (req.method === 'GET' && url.pathname === '/fetch-sockets') {
      const sockets = await target(url.searchParams.get('room'), url.searchParams.get('namespace') ?? undefined).fetchSockets();
      return json(res, 200, sockets.map((s) => ({ id: s.id, rooms: [...s.rooms], data: s.data, handshake: s.handshake })));
    }
    if (req.method === 'GET' && url.pathname === '/rooms') {
      return json(res, 200, [...(await io.of('/').adapter.allRooms())]);
    }
    if (req.method === 'POST' && ['/join', '/leave', '/disconnect'].includes(url.pathname)) {
      const { namespace, room, rooms = [] } = await body(req);
      const op = target(room, namespace);
      if (url.pathname === '/join') op.socketsJoin(rooms);
      else if (url.pathname === '/leave') op.socketsLeave(rooms);
      else op.disconnectSockets(true);
      return res.writeHead(204).end();
    }
    if (req.method === 'GET' && url.pathname === '/server-side-log') return json(res, 200, log);
    res.writeHead(404).end();
  } catch (err) {
    json(res, 504, { error: String(err) });
  }
});

const io = new Server(http, { path: '/io' });
const { REDIS_URL, REDIS_SHARDED, REDIS_CLUSTER } = process.env;
const pub = REDIS_CLUSTER ? createCluster({ rootNodes: [{ url: REDIS_URL }] }) : createClient({ url: REDIS_URL });
const sub = pub.duplicate();
await Promise.all([pub.connect(), sub.connect()]);
io.adapter(
  REDIS_SHARDED ? createShardedAdapter(pub, sub, { subscriptionMode: REDIS_SHARDED }) : createAdapter(pub, sub),
);

// `/`, `/admin` and every `/tenant/<id>`, alike.
for (const nsp of [io.of('/'), io.of('/admin'), io.of(/^\/tenant\/\w+$/)]) {
  nsp.use((socket, next) => {
    const { name } = socket.handshake.auth ?? {};
    if (typeof name !== 'string') return next(new Error('a name, please'));
    socket.data = { name };
    next();
  });
  nsp.on('connection', (socket) => {
    const { room } = socket.handshake.auth;
    if (room) socket.join(room);
  });
}
io.on('whoami', (arg, cb) => {
  log.push(shown(arg));
  if (typeof cb === 'function') cb({ server: 'node', port: http.address().port, arg });
});

http.listen(Number(process.env.PORT ?? 0), '127.0.0.1', () => {
  console.log(`listening on ${http.address().port}`);
});
process.on('SIGTERM', () => {
  io.close();
  Promise.allSettled([pub.quit(), sub.quit()]).then(() => process.exit(0));
});
