import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import type { ChainedRecord } from '../../webhook/core/record.js';
import { verifyBundle, verifyStore, writeBundle, type BundleHeader } from '../../webhook/store/evidence/bundle.js';
import { createSqliteStore } from '../../webhook/store/sqlite/store.js';
import { loadOrCreateSigningKey, toJwks } from '../../webhook/store/evidence/signing.js';
import { aRecord, timeAt, WRITER } from './builders.js';

const dir = mkdtempSync(join(tmpdir(), 'tzw-bundle-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const key = await loadOrCreateSigningKey(join(dir, 'key.pem'), { create: true });
const other = await loadOrCreateSigningKey(join(dir, 'other.pem'), { create: true });
const jwks = toJwks(key.publicJwk);

// Two writers in one file: 12 records by tzw-0 (the first 3 pruned; checkpoints at 5, 10 and 12
// on close), 4 by tzw-1 (not yet checkpointed).
const store = await createSqliteStore({ path: join(dir, 'd.db'), replica: WRITER, signer: key, checkpointEvery: { records: 5, seconds: 3600 } });
const records: ChainedRecord[] = [];
for (let n = 1; n <= 12; n++) records.push(await store.append(aRecord({ n, namespace: n % 2 ? 'payments' : 'web' })));
await store.prune(timeAt(3_500));
await store.close();
const second = await createSqliteStore({ path: join(dir, 'd.db'), replica: 'tzw-1', signer: key });
for (let n = 13; n <= 16; n++) records.push(await second.append(aRecord({ n, replica: 'tzw-1' })));
t.teardown(() => second.close());

const full = join(dir, 'full.jsonl');
const summary = await writeBundle(second, undefined, full, jwks, { clock: () => new Date(Date.UTC(2026, 5, 1)) });
const lines = readFileSync(full, 'utf8').trimEnd().split('\n');

function variant(name: string, edit: (lines: string[]) => string[]): string {
  const path = join(dir, `${name}.jsonl`);
  writeFileSync(path, edit([...lines]).join('\n') + '\n');
  return path;
}
const lineOf = (id: string) => lines.findIndex((l) => l.includes(`"id":"${id}"`));

t.test('the bundle layout: header, records in chain order, checkpoints, anchors', async (t) => {
  t.strictSame(summary, { path: full, records: 13, checkpoints: 3, anchors: 1, quarantined: 0, complete: true });
  const header = JSON.parse(lines[0] ?? '') as BundleHeader;
  t.strictSame(header, { type: 'header', format: 'tzw-decision-bundle', version: 1, created: '2026-06-01T00:00:00.000Z', complete: true, jwks });
  const types = lines.map((l) => (JSON.parse(l) as { type: string }).type);
  t.strictSame(types, ['header', ...Array(13).fill('record'), 'checkpoint', 'checkpoint', 'checkpoint', 'anchor']);
  const order = lines.slice(1, 14).map((l) => {
    const r = (JSON.parse(l) as { record: ChainedRecord }).record;
    return `${r.replica}#${r.seq}`;
  });
  t.strictSame(order, [...[4, 5, 6, 7, 8, 9, 10, 11, 12].map((s) => `tzw-0#${s}`), ...[1, 2, 3, 4].map((s) => `tzw-1#${s}`)]);
  t.strictSame(JSON.parse(lines[5] ?? ''), { type: 'record', record: records[7] });
});

t.test('a complete bundle verifies, with a warning unless the keys come from outside', async (t) => {
  t.strictSame(await verifyBundle(full, jwks), { ok: true, records: 13, writers: 2, checkpoints: 3, anchors: 1, unsigned: 4, warnings: [] });
  t.match(await verifyBundle(full), { ok: true, records: 13, warnings: [/keys inside the bundle/] });
  t.match(await verifyBundle(full, toJwks(other.publicJwk)), { ok: false, firstBad: { kind: 'anchor', problem: /ERR_JWKS_NO_MATCHING_KEY/ } }, 'someone else signed it');
  const reordered = variant('reordered-keys', (ls) => ls.map((l) => (l.startsWith('{"type":"record"') ? JSON.stringify({ record: JSON.parse(l).record, type: 'record' }) : l)));
  t.match(await verifyBundle(reordered, jwks), { ok: true, records: 13 }, 'key order of a line does not matter');
});

t.test('tampered bundles name the record and the line', async (t) => {
  const id6 = records[5]?.id ?? '';
  const id7 = records[6]?.id ?? '';
  const id10 = records[9]?.id ?? '';
  const cases: Array<[string, string, object]> = [
    ['a field changed', variant('changed', (ls) => ls.map((l, i) => (i === lineOf(id6) ? l.replace('"namespace":"web"', '"namespace":"elsewhere"') : l))), { kind: 'record', id: id6, writer: WRITER, seq: 6, problem: /hash mismatch.*\(bundle line 4\)/ }],
    ['a line deleted', variant('deleted', (ls) => ls.filter((_, i) => i !== lineOf(id6))), { kind: 'record', id: id7, seq: 7, problem: /seq 7 found where seq 6 was expected/ }],
    ['the tail cut after a checkpoint', variant('cut', (ls) => ls.filter((_, i) => i < lineOf(id10) || i > lineOf(records[11]?.id ?? ''))), { kind: 'record', id: records[8]?.id, seq: 10, problem: /chain ends at seq 9 .* says it had 10 records/ }],
    ['the anchor removed', variant('no-anchor', (ls) => ls.filter((l) => !l.startsWith('{"type":"anchor"'))), { kind: 'record', seq: 4, problem: /records 1\.\.3 of this writer are missing/ }],
    ['a checkpoint edited', variant('cp-edited', (ls) => ls.map((l) => (l.startsWith('{"type":"checkpoint"') ? l.replace(/"size":(\d+)/, (_, s: string) => `"size":${Number(s) + 1}`) : l))), { kind: 'checkpoint', problem: /differs from the signed payload/ }],
  ];
  for (const [name, path, want] of cases) t.match(await verifyBundle(path, jwks), { ok: false, firstBad: want }, name);
});

t.test('malformed bundles are reported, not thrown', async (t) => {
  const cases: Array<[string, string, RegExp]> = [
    ['empty file', variant('empty', () => []), /line 1 is not JSON|the file is empty/],
    ['no header', variant('no-header', (ls) => ls.slice(1)), /line 1 is not a tzw-decision-bundle header/],
    ['other version', variant('v2', (ls) => [ls[0]?.replace('"version":1', '"version":2') ?? '', ...ls.slice(1)]), /bundle version 2 is not supported/],
    ['a broken line', variant('broken', (ls) => [...ls.slice(0, 3), '{"type":"record",', ...ls.slice(3)]), /line 4 is not JSON/],
    ['an unknown line type', variant('unknown', (ls) => [...ls, '{"type":"note"}']), /line 19 has unknown type "note"/],
    ['a record line without a record', variant('norecord', (ls) => [...ls.slice(0, 2), '{"type":"record","x":1}', ...ls.slice(2)]), /line 3 is a record line without a record object/],
    ['bad jwks in the header', variant('badjwks', (ls) => [ls[0]?.replace(/"jwks":\{.*\}\}$/, '"jwks":{"keys":[]}}') ?? '', ...ls.slice(1)]), /the header's jwks is not usable: the key set is empty/],
  ];
  for (const [name, path, problem] of cases) {
    const jwksArg = name === 'bad jwks in the header' ? undefined : jwks;
    t.match(await verifyBundle(path, jwksArg), { ok: false, firstBad: { kind: 'bundle', problem } }, name);
  }
  await t.rejects(verifyBundle(join(dir, 'absent.jsonl'), jwks), { code: 'ENOENT' });
});

t.test('a filtered export is evidence, not a verifiable bundle', async (t) => {
  const path = join(dir, 'web.jsonl');
  const s = await writeBundle(second, { namespace: 'web' }, path, jwks);
  t.match(s, { records: 5, complete: false });
  const [head, ...rest] = readFileSync(path, 'utf8').trimEnd().split('\n');
  t.match(JSON.parse(head ?? ''), { type: 'header', complete: false, filter: { namespace: 'web' } });
  t.strictSame(
    rest.filter((l) => l.startsWith('{"type":"record"')).map((l) => (JSON.parse(l) as { record: ChainedRecord }).record.id),
    records.filter((r) => r.namespace === 'web' && r.seq > 3 && r.replica === WRITER).map((r) => r.id),
  );
  t.match(await verifyBundle(path, jwks), { ok: false, firstBad: { kind: 'bundle', problem: /filtered export \(header complete: false\): it is evidence, not a verifiable chain/ } });
});

t.test('a failed write leaves no bundle behind', async (t) => {
  await t.rejects(writeBundle(second, undefined, join(dir, 'missing-dir', 'b.jsonl'), jwks), { code: 'ENOENT' });
});

t.test('progress: export and verify report every record against the store\'s count; a callback that throws stops the export with no file', async (t) => {
  type Event = { phase: string; done: number; total?: number; unit?: string };
  const collect = (): { events: Event[]; onProgress: (e: Event) => void } => {
    const events: Event[] = [];
    return { events, onProgress: (e) => void events.push(e) };
  };
  t.equal(await second.count?.(), 13, 'count(): the records in the file, every writer');

  const exp = collect();
  const path = join(dir, 'progress.jsonl');
  await writeBundle(second, undefined, path, jwks, { onProgress: exp.onProgress });
  const recordEvents = exp.events.filter((e) => e.phase === 'records');
  t.strictSame(recordEvents.map((e) => e.done), Array.from({ length: 14 }, (_, i) => i), 'export: 0, then once per record');
  t.ok(recordEvents.every((e) => e.total === 13), 'with the count as total');
  t.strictSame(exp.events.filter((e) => e.phase !== 'records'), [
    { phase: 'checkpoints', done: 0, total: 3, unit: undefined }, { phase: 'checkpoints', done: 1, total: 3, unit: undefined },
    { phase: 'checkpoints', done: 2, total: 3, unit: undefined }, { phase: 'checkpoints', done: 3, total: 3, unit: undefined },
    { phase: 'anchors', done: 0, total: 1, unit: undefined }, { phase: 'anchors', done: 1, total: 1, unit: undefined },
  ]);
  t.strictSame(readFileSync(path, 'utf8').split('\n').slice(1), lines.slice(1).concat(''), 'the same bundle as without a callback');

  const filtered = collect();
  await writeBundle(second, { namespace: 'web' }, join(dir, 'progress-web.jsonl'), jwks, { onProgress: filtered.onProgress });
  const web = records.filter((r) => r.namespace === 'web' && !(r.replica === WRITER && r.seq <= 3)).length;
  t.strictSame(filtered.events.filter((e) => e.phase === 'records').at(-1), { phase: 'records', done: web, total: undefined, unit: undefined }, 'a filtered export: no total');

  const ver = collect();
  t.match(await verifyStore(second, jwks, { onProgress: ver.onProgress }), { ok: true, records: 13 });
  t.strictSame(ver.events[0], { phase: 'checkpoints', done: 0, total: 4, unit: undefined }, 'verify --store: signatures first (3 checkpoints, 1 anchor)');
  t.strictSame(ver.events.filter((e) => e.phase === 'records').map((e) => [e.done, e.total]), Array.from({ length: 14 }, (_, i) => [i, 13]));

  const vb = collect();
  t.match(await verifyBundle(path, jwks, { onProgress: vb.onProgress }), { ok: true, records: 13 });
  const scan = vb.events.filter((e) => e.phase === 'checkpoints');
  t.ok(scan.every((e) => e.unit === 'bytes' && e.total === readFileSync(path).length), 'verify --bundle: first pass in bytes of the file');
  t.equal(scan.at(-1)?.done, readFileSync(path).length, 'to the end of the file');
  t.strictSame(vb.events.filter((e) => e.phase === 'records').map((e) => [e.done, e.total]), Array.from({ length: 14 }, (_, i) => [i, 13]), 'then records, counted in the first pass');

  const stopped = join(dir, 'stopped.jsonl');
  const stop = Object.assign(new Error('stop'), { code: 'ERR_INTERRUPTED' });
  await t.rejects(writeBundle(second, undefined, stopped, jwks, { onProgress: (e) => { if (e.phase === 'records' && e.done === 6) throw stop; } }), stop);
  t.notOk(existsSync(stopped), 'nothing under the final name');
  t.notOk(existsSync(`${stopped}.tmp`), 'no temporary file left');
  const waited: string[] = [];
  await writeBundle(second, undefined, join(dir, 'waited.jsonl'), jwks, {
    onProgress: (e) => (e.done === 3 ? new Promise<void>((r) => setTimeout(() => { waited.push('slept'); r(); }, 20)) : undefined),
  });
  t.strictSame(waited, ['slept', 'slept'], 'a returned promise is awaited (at records 3 and checkpoints 3)');
});
