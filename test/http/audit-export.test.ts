/**
 * Export streaming: pulled on demand, torn down when the client goes away, errors not swallowed.
 */
import t from 'tap';
import { request } from 'node:http';
import { join } from 'node:path';
import { pino } from 'pino';
import { createExportStream, type ExportFormat } from '../../webhook/cli/output.js';
import { buildAuditApp } from '../../webhook/http/audit.js';
import type { ChainedRecord } from '../../webhook/core/record.js';
import type { VerifiableStore } from '../../webhook/store/port.js';
import { createSqliteStore } from '../../webhook/store/sqlite/store.js';
import { loadOrCreateSigningKey, toJwks } from '../../webhook/store/evidence/signing.js';
import { aRecord, chainOf } from '../store/builders.js';

const CHAIN = chainOf(Array.from({ length: 50 }, (_, i) => aRecord({ n: i + 1 })));

/** An endless record source that counts how far it was pulled and whether it was finalised. */
function createSource(o: { failAt?: number } = {}) {
  const state = { pulled: 0, finalised: false };
  async function* gen(): AsyncGenerator<ChainedRecord> {
    try {
      for (let i = 0; ; i++) {
        if (o.failAt !== undefined && i === o.failAt) throw Object.assign(new Error('disk I/O error'), { code: 'SQLITE_IOERR' });
        state.pulled++;
        yield CHAIN[i % CHAIN.length]!;
      }
    } finally {
      state.finalised = true;
    }
  }
  return { state, records: gen() };
}

for (const format of ['jsonl', 'csv'] as const satisfies readonly ExportFormat[]) {
  t.test(`${format}: pulled on demand, and destroying the stream finalises the source`, async (t) => {
    const { state, records } = createSource();
    const stream = createExportStream(records, format);
    const first = await new Promise<Buffer>((resolve) => stream.once('data', resolve));
    t.ok(first.length > 0);
    stream.pause();
    await new Promise((r) => setTimeout(r, 50));
    const pulled = state.pulled;
    t.ok(pulled < 10_000, `an endless source was only pulled ${pulled} records ahead`);
    stream.destroy();
    await new Promise((r) => setTimeout(r, 50));
    t.equal(state.finalised, true, 'the source generator ran its finally block');
  });

  t.test(`${format}: a source error fails the stream with that error`, async (t) => {
    const { records } = createSource({ failAt: 3 });
    const stream = createExportStream(records, format);
    const chunks: Buffer[] = [];
    const err = await new Promise<Error>((resolve) => {
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('error', resolve);
    });
    t.match(err, { code: 'SQLITE_IOERR', message: 'disk I/O error' });
  });
}

t.test('a client that disconnects mid-export stops the store read', async (t) => {
  const dir = t.testdir({});
  const key = await loadOrCreateSigningKey(join(dir, 'k.pem'), { create: true });
  const store = await createSqliteStore({ path: join(dir, 'd.db'), replica: 'tzw-0', signer: key });
  t.teardown(() => store.close());
  // ~20 MB as JSON Lines, ~14 MB as CSV: far more than loopback socket buffers and stream buffers hold.
  const total = 6000;
  const reasons = [{ code: 'POD_INJECTED' as const, message: 'x'.repeat(2000) }];
  for (let i = 0; i < total; i += 2000) await Promise.all(Array.from({ length: 2000 }, (_, j) => store.append(aRecord({ n: i + j + 1, reasons }))));
  const seen = { pulled: 0, finalised: false };
  // The real store, with stream() observed: how many records were read and whether the read ended.
  const observed: VerifiableStore = Object.assign(Object.create(store) as VerifiableStore, {
    stream: (f: Parameters<VerifiableStore['stream']>[0]) =>
      (async function* () {
        try {
          for await (const r of store.stream(f)) {
            seen.pulled++;
            yield r;
          }
        } finally {
          seen.finalised = true;
        }
      })(),
  });
  const app = await buildAuditApp({ store: observed, jwks: () => toJwks(key.publicJwk), auth: { mode: 'none', groupsClaim: 'groups' }, logger: pino({ level: 'silent' }) });
  t.teardown(() => app.close());
  const base = await app.listen({ host: '127.0.0.1', port: 0 });
  for (const format of ['jsonl', 'csv']) {
    seen.pulled = 0;
    seen.finalised = false;
    // A slow client: reads one chunk, then stops reading; the server must stop reading too.
    const req = await new Promise<ReturnType<typeof request>>((resolve, reject) => {
      const r = request(`${base}/api/v1/decisions?format=${format}`, (res) => {
        res.once('data', () => {
          res.pause();
          resolve(r);
        });
      });
      r.on('error', (e) => ((e as { code?: string }).code === 'ECONNRESET' ? undefined : reject(e)));
      r.end();
    });
    await new Promise((r) => setTimeout(r, 500));
    t.ok(seen.pulled < total, `${format}: ${seen.pulled} of ${total} records read while the client does not read (backpressure)`);
    t.equal(seen.finalised, false);
    req.destroy();
    for (let i = 0; i < 100 && !seen.finalised; i++) await new Promise((r) => setTimeout(r, 20));
    t.equal(seen.finalised, true, `${format}: the store read was ended when the client left`);
  }
});
