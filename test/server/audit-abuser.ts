/**
 * An abusive audit API client, run as its own process (so its CPU is not the server's event loop):
 * slowloris connections, TCP connections that never start TLS, and a crowd streaming exports and
 * big pages back to back. `node --import tsx test/server/audit-abuser.ts` with env AUDIT_URL,
 * CA_FILE, DURATION_MS, CROWD, SLOWLORIS, NO_TLS; prints one JSON line of counts when done.
 * Used by test/server/audit-abuse.test.ts and `npm run soak`.
 */
import { readFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';

const url = new URL(process.env.AUDIT_URL ?? '');
const ca = readFileSync(process.env.CA_FILE ?? '', 'utf8');
const durationMs = Number(process.env.DURATION_MS ?? 5000);
const counts = { slowlorisOpened: 0, slowlorisClosedByServer: 0, noTlsOpened: 0, noTlsClosedByServer: 0, crowdOk: 0, crowdBusy: 0, crowdOther: [] as string[] };
const sockets: Socket[] = [];
let stopping = false;

for (let i = 0; i < Number(process.env.SLOWLORIS ?? 40); i++) {
  const s = tlsConnect({ host: url.hostname, port: Number(url.port), ca, servername: 'localhost' }, () => {
    counts.slowlorisOpened += 1;
    s.write('GET /api/v1/decisions HTTP/1.1\r\nHost: localhost\r\n');
    const drip = setInterval(() => (s.writable ? s.write('X') : clearInterval(drip)), 200);
    s.on('close', () => clearInterval(drip));
  });
  s.on('error', () => {});
  s.on('close', () => { if (!stopping) counts.slowlorisClosedByServer += 1; });
  sockets.push(s);
}
for (let i = 0; i < Number(process.env.NO_TLS ?? 100); i++) {
  const s = netConnect({ host: url.hostname, port: Number(url.port) }, () => (counts.noTlsOpened += 1));
  s.on('error', () => {});
  s.on('close', () => { if (!stopping) counts.noTlsClosedByServer += 1; });
  sockets.push(s);
}

function get(path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(`${url.origin}${path}`, { ca, agent: false }, (res) => {
      let body = '';
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

async function heavy(n: number): Promise<void> {
  while (!stopping) {
    try {
      const r = await get(n % 2 === 0 ? '/api/v1/decisions?format=jsonl' : '/api/v1/decisions?limit=1000');
      if (r.status === 200) counts.crowdOk += 1;
      else if (r.status === 503 && r.body.includes('ERR_BUSY')) counts.crowdBusy += 1;
      else counts.crowdOther.push(String(r.status));
    } catch (err) {
      if (!stopping) counts.crowdOther.push((err as Error).message);
    }
  }
}

const crowd = Promise.all(Array.from({ length: Number(process.env.CROWD ?? 24) }, (_, n) => heavy(n)));
process.stdout.write('started\n');
setTimeout(() => {
  stopping = true;
  for (const s of sockets) s.destroy();
  void crowd.then(() => {
    process.stdout.write(`${JSON.stringify(counts)}\n`);
    process.exit(0);
  });
}, durationMs);
