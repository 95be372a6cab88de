// A Node.js HTTP server that tini-hot can upgrade with no request lost.
// No package needed. Run it as tini-hot runs it:
//
//   tini-hot -l http=tcp://:8080 --ready notify -- node server.js
//
// GET /?sleep=N answers after N seconds: "ospid:PID gen:N".
//
// The four things any application does to be upgraded in place:
//  1. take the socket tini-hot bound: fd 3 (LISTEN_FDS, LISTEN_PID), never bind;
//  2. say READY=1 on $NOTIFY_SOCKET once it can serve. Node cannot send a
//     unix datagram, so it runs systemd-notify (Debian package systemd);
//     tini-hot takes READY=1 from any process of the generation;
//  3. on SIGTERM, close the listening socket first, then finish the requests
//     in hand, then exit: the next generation already takes new connections;
//  4. close the idle keep-alive connections at once, give one a client opened
//     and has not used yet 5 s for its request (it may be on its way), and
//     answer every request with "Connection: close", so that no client sends to
//     a process that is leaving.
'use strict';
const http = require('node:http');
const { execFileSync } = require('node:child_process');

const inherited = process.env.LISTEN_PID === String(process.pid) && Number(process.env.LISTEN_FDS) >= 1;
let draining = false;

// Requests in flight on each open connection, and the connections that
// have sent one: at the drain, a used connection with none in flight is
// closed at once. One never used is given unusedGrace: a client's request
// on a connection this process accepted just before the drain may not have
// been read yet, and closing it then loses the request; a spare connection
// a client keeps (closeIdleConnections leaves those) must not hold the
// drain until --drain-timeout either.
const inFlight = new Map();
const used = new WeakSet();
const unusedGrace = 5000;

const server = http.createServer((req, res) => {
  used.add(req.socket);
  inFlight.set(req.socket, (inFlight.get(req.socket) || 0) + 1);
  res.on('finish', () => {
    if (inFlight.has(req.socket)) inFlight.set(req.socket, inFlight.get(req.socket) - 1);
  });
  const sleep = Number(new URL(req.url, 'http://x').searchParams.get('sleep') || 0);
  if (sleep > 0) console.error(`app: pid ${process.pid}: ${req.url} started`);
  setTimeout(() => {
    if (draining) res.setHeader('Connection', 'close');
    res.setHeader('Content-Type', 'text/plain');
    res.end(`ospid:${process.pid} gen:${process.env.TINI_HOT_GENERATION || ''}\n`);
  }, sleep * 1000);
});

server.on('connection', (socket) => {
  inFlight.set(socket, 0);
  socket.on('close', () => inFlight.delete(socket));
});

server.listen(inherited ? { fd: 3 } : { port: Number(process.env.PORT || 8080) }, () => {
  if (process.env.NOTIFY_SOCKET) execFileSync('systemd-notify', ['--ready']);
});

function drain() {
  console.error(`app: pid ${process.pid}: draining`);
  draining = true;
  server.close(() => process.exit(0)); // stop accepting; called once every connection is closed
  for (const [socket, n] of inFlight) {
    if (n > 0) continue; // answered with Connection: close, then closed
    if (used.has(socket)) socket.destroy();
    else socket.setTimeout(unusedGrace, () => socket.destroy());
  }
}
process.on('SIGTERM', drain);
process.on('SIGINT', drain);
