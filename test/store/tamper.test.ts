/**
 * Tamper evidence: edit the SQLite file behind the store's back, the way someone with write access
 * to the volume (but not the signing key) would, and expect verification to name the record.
 */
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import Database from 'better-sqlite3';
import type { ChainedRecord } from '../../webhook/core/record.js';
import { fromStoredBody, toStoredBody } from '../../webhook/store/evidence/body-codec.js';
import { verifyStore } from '../../webhook/store/evidence/bundle.js';
import { canonicalJson, checkEvidence, sha256Hex, type ChainProblem } from '../../webhook/store/evidence/chain.js';
import { toChainRanges } from '../../webhook/store/sqlite/verify.js';
import { createSqliteStore } from '../../webhook/store/sqlite/store.js';
import { CHECKPOINT_TYP, loadOrCreateSigningKey, toJwks } from '../../webhook/store/evidence/signing.js';
import { aRecord, timeAt, WRITER } from './builders.js';

const dir = mkdtempSync(join(tmpdir(), 'tzw-tamper-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const key = await loadOrCreateSigningKey(join(dir, 'key.pem'), { create: true });
const mallory = await loadOrCreateSigningKey(join(dir, 'mallory.pem'), { create: true });
const jwks = toJwks(key.publicJwk);

// The original: 30 records, checkpoints at 10, 20 and 30.
const base = join(dir, 'base.db');
const records: ChainedRecord[] = [];
{
  const store = await createSqliteStore({ path: base, replica: WRITER, signer: key, checkpointEvery: { records: 10, seconds: 3600 } });
  for (let n = 1; n <= 30; n++) {
    records.push(await store.append(aRecord({ n, namespace: n % 2 ? 'payments' : 'web', serviceAccounts: [`${n % 2 ? 'payments' : 'web'}/ci-builder`] })));
    if (n % 10 === 0) await store.checkpointNow();
  }
  await store.close();
}
const id = (seq: number) => records[seq - 1]?.id ?? '';

let copies = 0;
/**
 * How a case is verified: sequentially (one thread, streamChain), or by the parallel verifier
 * (worker threads, no record parsed on its fast path) cut at every checkpoint, so that each edit
 * lands inside a range, at a range's start or end, or between ranges.
 */
const MODES = {
  sequential: { parallel: false },
  parallel: { parallel: { workers: 2, rangeRecords: 1 } },
} as const;
type Mode = keyof typeof MODES;

/** Copies the original, applies `edit` to the copy with plain SQL, and verifies the copy. */
async function verifyEdited(edit: (db: Database.Database) => void | Promise<void>, mode: Mode = 'sequential') {
  const path = join(dir, `copy-${++copies}.db`);
  copyFileSync(base, path);
  const db = new Database(path);
  await edit(db);
  db.close();
  const store = await createSqliteStore({ path, replica: WRITER, readonly: true });
  try {
    return await verifyStore(store, jwks, MODES[mode]);
  } finally {
    await store.close();
  }
}

t.test('the untouched store verifies', async (t) => {
  for (const mode of Object.keys(MODES) as Mode[]) {
    t.strictSame(await verifyEdited(() => undefined, mode), { ok: true, records: 30, writers: 1, checkpoints: 3, anchors: 0, unsigned: 0, warnings: [] }, mode);
  }
});

/** The canonical body of record `seq` as stored (v2: compressed bytes, evidence/body-codec.ts). */
function readBody(db: Database.Database, seq: number): string {
  const row = db.prepare('SELECT record, body FROM decisions WHERE writer = ? AND seq = ?').get(WRITER, seq) as { record: string; body: Buffer | null };
  return row.body ? fromStoredBody(row.body) : row.record;
}

/** Stores `text` as record `seq`'s body the way the writer does (an attacker has the code). */
function writeBody(db: Database.Database, seq: number, text: string): void {
  db.prepare('UPDATE decisions SET body = ? WHERE writer = ? AND seq = ?').run(toStoredBody(text), WRITER, seq);
}

/** Recomputes body, prev_hash and hash from `fromSeq` on, as an attacker with the code but not the key would. */
function rewriteFrom(db: Database.Database, fromSeq: number, change: (r: Record<string, unknown>) => void) {
  const seqs = db.prepare('SELECT seq FROM decisions WHERE writer = ? AND seq >= ? ORDER BY seq').all(WRITER, fromSeq) as Array<{ seq: number }>;
  let prev = records[fromSeq - 2]?.hash ?? '0'.repeat(64);
  for (const { seq } of seqs) {
    const r = JSON.parse(readBody(db, seq)) as Record<string, unknown>;
    if (seq === fromSeq) change(r);
    r.prevHash = prev;
    const body = canonicalJson(r);
    const hash = sha256Hex(prev + body);
    writeBody(db, seq, body);
    db.prepare('UPDATE decisions SET prev_hash = ?, hash = ?, verdict = ? WHERE seq = ?').run(prev, hash, r.verdict, seq);
    // The account index rows carry the verdict too (the stats read them): a careful forger edits them as well.
    db.prepare('UPDATE decision_sas SET verdict = ? WHERE decision_id = (SELECT id FROM decisions WHERE seq = ?)').run(r.verdict, seq);
    prev = hash;
  }
}

/** Replaces record `seq`'s stored text with `edit(text)` and re-hashes the chain from it on (columns left as they were). */
function rewriteTextFrom(db: Database.Database, seq: number, edit: (text: string) => string) {
  let prev = records[seq - 2]?.hash ?? '0'.repeat(64);
  const seqs = db.prepare('SELECT seq FROM decisions WHERE writer = ? AND seq >= ? ORDER BY seq').all(WRITER, seq) as Array<{ seq: number }>;
  for (const { seq: at } of seqs) {
    let text = readBody(db, at);
    if (at === seq) text = edit(text);
    else text = canonicalJson({ ...(JSON.parse(text) as Record<string, unknown>), prevHash: prev });
    const hash = sha256Hex(prev + text);
    writeBody(db, at, text);
    db.prepare('UPDATE decisions SET prev_hash = ?, hash = ? WHERE seq = ?').run(prev, hash, at);
    prev = hash;
  }
}

/** A second "namespace" member between the patch and the policy tags: JSON.parse keeps the last. */
const secondNamespace = (text: string) => text.replace(',"policyTags":', ',"namespace":"elsewhere","policyTags":');

t.test('each edit is caught and the first bad record named', async (t) => {
  const forgedJws = async (size: number) => {
    const at = records[size - 1];
    return mallory.sign({ writer: WRITER, size, headHash: at?.hash ?? '', time: timeAt(size * 1000) }, CHECKPOINT_TYP);
  };
  const cases: Array<[string, (db: Database.Database) => void | Promise<void>, Omit<ChainProblem, 'problem'>, RegExp]> = [
    [
      'the record a checkpoint names deleted (a range of the parallel verifier ends early)',
      (db) => db.prepare('DELETE FROM decisions WHERE seq = 10').run(),
      { kind: 'record', id: id(11), writer: WRITER, seq: 11 },
      /seq 11 found where seq 10 was expected/,
    ],
    [
      'the record after a checkpoint deleted (a range starts late)',
      (db) => db.prepare('DELETE FROM decisions WHERE seq = 21').run(),
      { kind: 'record', id: id(22), writer: WRITER, seq: 22 },
      /seq 22 found where seq 21 was expected/,
    ],
    [
      "a record's writer column edited (it leaves its chain)",
      (db) => db.prepare(`UPDATE decisions SET writer = 'tzw-9' WHERE seq = 14`).run(),
      { kind: 'record', id: id(15), writer: WRITER, seq: 15 },
      /seq 15 found where seq 14 was expected/,
    ],
    [
      'a time column edited (the record hides from time ranges)',
      (db) => db.prepare(`UPDATE decisions SET time = '2020-01-01T00:00:00.000000Z' WHERE seq = 26`).run(),
      { kind: 'record', id: id(26), writer: WRITER, seq: 26 },
      /the time column does not match the record/,
    ],
    [
      'a serviceAccounts column rewritten with the same accounts in other JSON spelling',
      (db) => db.prepare(`UPDATE decisions SET service_accounts = '[ "web/ci-builder" ]' WHERE seq = 18`).run(),
      { kind: 'record', id: id(18), writer: WRITER, seq: 18 },
      /the service_accounts column does not match the record/,
    ],
    [
      "an object_digest column edited (the record answers another object's --object-digest)",
      (db) => db.prepare(`UPDATE decisions SET object_digest = unhex('${'cd'.repeat(32)}') WHERE seq = 9`).run(),
      { kind: 'record', id: id(9), writer: WRITER, seq: 9 },
      /the object_digest column does not match the record/,
    ],
    [
      'a stored hash edited to match an edited body (caught by the next record)',
      (db) => {
        const text = readBody(db, 17).replace('"verdict":"allowed"', '"verdict":"denied"').replace('"verdict":"patched"', '"verdict":"denied"');
        writeBody(db, 17, text);
        db.prepare('UPDATE decisions SET hash = ?, verdict = ? WHERE seq = 17').run(sha256Hex((records[15]?.hash ?? '') + text), 'denied');
        db.prepare(`UPDATE decision_sas SET verdict = 'denied' WHERE decision_id = ?`).run(id(17));
      },
      { kind: 'record', id: id(18), writer: WRITER, seq: 18 },
      /prevHash does not match/,
    ],
    [
      'a field changed inside the record JSON',
      (db) => writeBody(db, 5, readBody(db, 5).replace('"verdict":"patched"', '"verdict":"allowed"')),
      { kind: 'record', id: id(5), writer: WRITER, seq: 5 },
      /hash mismatch/,
    ],
    [
      'a filter column changed (the record hides from namespace queries)',
      (db) => db.prepare(`UPDATE decisions SET namespace = 'elsewhere' WHERE seq = 7`).run(),
      { kind: 'record', id: id(7), writer: WRITER, seq: 7 },
      /the namespace column does not match the record/,
    ],
    [
      "an account index row's copy of the verdict changed (the record hides from an account's stats)",
      (db) => db.prepare(`UPDATE decision_sas SET verdict = 'errored' WHERE decision_id = ? AND key = 'ci-builder'`).run(id(9)),
      { kind: 'record', id: id(9), writer: WRITER, seq: 9 },
      /serviceAccount index rows do not match/,
    ],
    [
      'a ServiceAccount index row added (the record shows under another account)',
      (db) =>
        db.prepare(`INSERT INTO decision_sas (key, time, decision_id, namespace, kind, verdict, writer) SELECT 'intruder', time, id, namespace, kind, verdict, writer FROM decisions WHERE seq = 6`).run(),
      { kind: 'record', id: id(6), writer: WRITER, seq: 6 },
      /serviceAccount index rows do not match/,
    ],
    [
      "a ServiceAccount index row's key changed",
      (db) => db.prepare(`UPDATE decision_sas SET key = 'other-builder' WHERE decision_id = ? AND key = 'ci-builder'`).run(id(4)),
      { kind: 'record', id: id(4), writer: WRITER, seq: 4 },
      /serviceAccount index rows do not match/,
    ],
    [
      "a ServiceAccount index row's time changed (the record moves in an account's time range)",
      (db) => db.prepare(`UPDATE decision_sas SET time = '2020-01-01T00:00:00.000000Z' WHERE decision_id = ? AND key = 'ci-builder'`).run(id(27)),
      { kind: 'record', id: id(27), writer: WRITER, seq: 27 },
      /serviceAccount index rows do not match/,
    ],
    [
      'a ServiceAccount index row moved to another record',
      (db) => db.prepare(`UPDATE decision_sas SET decision_id = ? WHERE decision_id = ? AND key = 'ci-builder'`).run(id(3), id(2)),
      { kind: 'record', id: id(2), writer: WRITER, seq: 2 },
      /serviceAccount index rows do not match/,
    ],
    [
      'a task_run column edited',
      (db) => db.prepare(`UPDATE decisions SET task_run = 'build-other' WHERE seq = 19`).run(),
      { kind: 'record', id: id(19), writer: WRITER, seq: 19 },
      /the task_run column does not match the record/,
    ],
    [
      'a pipeline_run column cleared',
      (db) => db.prepare('UPDATE decisions SET pipeline_run = NULL WHERE seq = 23').run(),
      { kind: 'record', id: id(23), writer: WRITER, seq: 23 },
      /the pipeline_run column does not match the record/,
    ],
    [
      'an ns_seq column edited',
      (db) => db.prepare('UPDATE decisions SET ns_seq = ns_seq + 1 WHERE seq = 29').run(),
      { kind: 'record', id: id(29), writer: WRITER, seq: 29 },
      /the ns_seq column does not match the record/,
    ],
    [
      'a kind column edited',
      (db) => db.prepare(`UPDATE decisions SET kind = 'TaskRun' WHERE seq = 11`).run(),
      { kind: 'record', id: id(11), writer: WRITER, seq: 11 },
      /the kind column does not match the record/,
    ],
    [
      'a second namespace member put in the middle of a body, the chain re-hashed after it (the parallel fast path reads only the ends of a signed body)',
      (db) => rewriteTextFrom(db, 13, secondNamespace),
      { kind: 'record', id: id(13), writer: WRITER, seq: 13 },
      /the namespace column does not match the record/,
    ],
    [
      'a second namespace member put in a signed body, the chain re-hashed and cut (with its account rows) before the checkpoint',
      (db) => {
        db.prepare('DELETE FROM decision_sas WHERE decision_id IN (SELECT id FROM decisions WHERE seq > 24)').run();
        db.prepare('DELETE FROM decisions WHERE seq > 24').run();
        rewriteTextFrom(db, 22, secondNamespace);
      },
      { kind: 'record', id: id(22), writer: WRITER, seq: 22 },
      /the namespace column does not match the record/,
    ],
    [
      'a second namespace member put in an unsigned body',
      (db) => {
        db.prepare('DELETE FROM checkpoints WHERE size = 30').run();
        rewriteTextFrom(db, 28, secondNamespace);
      },
      { kind: 'record', id: id(28), writer: WRITER, seq: 28 },
      /the namespace column does not match the record/,
    ],
    [
      'an unsigned body made unreadable, its hash recomputed',
      (db) => {
        db.prepare('DELETE FROM checkpoints WHERE size = 30').run();
        rewriteTextFrom(db, 30, (text) => text.slice(0, -1));
      },
      { kind: 'record', id: id(30), writer: WRITER, seq: 30 },
      /the stored record is not JSON/,
    ],
    [
      'a ServiceAccount index row deleted',
      (db) => db.prepare(`DELETE FROM decision_sas WHERE decision_id = ? AND key = 'ci-builder'`).run(id(8)),
      { kind: 'record', id: id(8), writer: WRITER, seq: 8 },
      /serviceAccount index rows do not match/,
    ],
    [
      'a row deleted',
      (db) => db.prepare('DELETE FROM decisions WHERE seq = 12').run(),
      { kind: 'record', id: id(13), writer: WRITER, seq: 13 },
      /seq 13 found where seq 12 was expected/,
    ],
    [
      "two rows' seq swapped",
      (db) => {
        db.prepare('UPDATE decisions SET seq = -1 WHERE seq = 15').run();
        db.prepare('UPDATE decisions SET seq = 15 WHERE seq = 16').run();
        db.prepare('UPDATE decisions SET seq = 16 WHERE seq = -1').run();
      },
      { kind: 'record', id: id(16), writer: WRITER, seq: 16 },
      /seq 16 found where seq 15 was expected/,
    ],
    [
      'the record JSON made unreadable',
      (db) => db.prepare(`UPDATE decisions SET body = substr(body, 1, 40) WHERE seq = 3`).run(),
      { kind: 'record', id: id(3), writer: WRITER, seq: 3 },
      /hash mismatch/,
    ],
    [
      'a checkpoint re-signed with another key',
      async (db) => db.prepare('UPDATE checkpoints SET jws = ? WHERE size = 20').run(await forgedJws(20)),
      { kind: 'checkpoint', id: id(20), writer: WRITER, seq: 20 },
      /not trustworthy: ERR_JWKS_NO_MATCHING_KEY/,
    ],
    [
      "a checkpoint's head hash edited",
      (db) => db.prepare('UPDATE checkpoints SET head_hash = ? WHERE size = 10').run('0'.repeat(64)),
      { kind: 'checkpoint', id: id(10), writer: WRITER, seq: 10 },
      /headHash differs from the signed payload/,
    ],
    [
      'a forged checkpoint claiming more records',
      async (db) => db.prepare('INSERT INTO checkpoints (writer, size, head_hash, time, jws) VALUES (?, 40, ?, ?, ?)').run(WRITER, 'f'.repeat(64), timeAt(40_000), await forgedJws(40)),
      { kind: 'checkpoint', id: id(30), writer: WRITER, seq: 40 },
      /not trustworthy/,
    ],
    [
      'the tail truncated after a checkpoint',
      (db) => db.prepare('DELETE FROM decisions WHERE seq > 24').run(),
      { kind: 'record', id: id(24), writer: WRITER, seq: 25 },
      /chain ends at seq 24 .* says it had 30 records/,
    ],
    [
      'a record changed and the chain re-hashed after it',
      (db) => rewriteFrom(db, 5, (r) => (r.verdict = 'denied')),
      { kind: 'checkpoint', id: id(10), writer: WRITER, seq: 10 },
      /the signed checkpoint at size 10 .* names head hash/,
    ],
  ];
  for (const [name, edit, where, problem] of cases) {
    const sequential = await verifyEdited(edit, 'sequential');
    t.equal(sequential.ok, false, name);
    if (sequential.ok) continue;
    const { problem: text, ...at } = sequential.firstBad;
    t.strictSame(at, where, name);
    t.match(text, problem, `${name}: ${text}`);
    // The parallel verifier names the same first problem, in the same words.
    t.strictSame(await verifyEdited(edit, 'parallel'), sequential, `${name} (parallel)`);
  }
});

t.test('edits that change no answer verify the same both ways', async (t) => {
  const cases: Array<[string, (db: Database.Database) => void, object]> = [
    [
      'an account index row of no record',
      (db) => db.prepare(`INSERT INTO decision_sas (key, time, decision_id, namespace, kind, verdict, writer) VALUES ('ghost', ?, 'no-such-record', 'web', 'Pod', 'denied', ?)`).run(timeAt(0), WRITER),
      { ok: true, records: 30, checkpoints: 3, unsigned: 0 },
    ],
    [
      'an unsigned body re-written with whitespace, its hash recomputed',
      (db) => {
        db.prepare('DELETE FROM checkpoints WHERE size = 30').run();
        rewriteTextFrom(db, 25, (text) => JSON.stringify(JSON.parse(text), null, 1));
      },
      { ok: true, records: 30, checkpoints: 2, unsigned: 10 },
    ],
  ];
  for (const [name, edit, want] of cases) {
    const sequential = await verifyEdited(edit, 'sequential');
    t.match(sequential, want, name);
    t.strictSame(await verifyEdited(edit, 'parallel'), sequential, `${name} (parallel)`);
  }
});

t.test('retention: deleting the anchor (or records past it) is caught', async (t) => {
  const path = join(dir, 'pruned.db');
  copyFileSync(base, path);
  const store = await createSqliteStore({ path, replica: WRITER, signer: key });
  const pruned = await store.prune(timeAt(10_500));
  t.match(pruned, { deleted: 10, anchors: [{ seq: 10, hash: records[9]?.hash }] });
  t.match(await verifyStore(store, jwks), { ok: true, records: 20, anchors: 1 });
  await store.close();
  const edit = async (sql: string) => {
    const copy = join(dir, `pruned-${++copies}.db`);
    copyFileSync(path, copy);
    const db = new Database(copy);
    db.exec(sql);
    db.close();
    const ro = await createSqliteStore({ path: copy, replica: WRITER, readonly: true });
    try {
      const sequential = await verifyStore(ro, jwks, MODES.sequential);
      t.strictSame(await verifyStore(ro, jwks, MODES.parallel), sequential, `${sql} (parallel)`);
      return sequential;
    } finally {
      await ro.close();
    }
  };
  t.match(await edit('DELETE FROM anchors'), { ok: false, firstBad: { kind: 'record', id: id(11), seq: 11, problem: /records 1\.\.10 of this writer are missing and no signed anchor/ } });
  t.match(await edit('DELETE FROM decisions WHERE seq = 11'), { ok: false, firstBad: { kind: 'record', id: id(12), seq: 12, problem: /records 1\.\.11 of this writer are missing/ } });
  t.match(await edit(`UPDATE anchors SET hash = '${'0'.repeat(64)}'`), { ok: false, firstBad: { kind: 'anchor', id: id(11), seq: 10, problem: /hash differs from the signed payload/ } });
});

t.test('many checkpoints: each is read once, and the parallel verifier cuts at them', async (t) => {
  const path = join(dir, 'many.db');
  const store = await createSqliteStore({ path, replica: WRITER, signer: key, checkpointEvery: { records: 1_000_000, seconds: 3600 } });
  const many: ChainedRecord[] = [];
  for (let n = 1; n <= 300; n++) {
    many.push(await store.append(aRecord({ n, namespace: `ns-${n % 7}` })));
    await store.checkpointNow();
  }
  await store.close();
  const ro = await createSqliteStore({ path, replica: WRITER, readonly: true });
  t.teardown(() => ro.close());
  // Count what verification reads from the store.
  const reads = { checkpoints: 0, anchors: 0 };
  const counted = new Proxy(ro, {
    get(target, prop, receiver) {
      const v = Reflect.get(target, prop, receiver) as unknown;
      if (prop === 'checkpoints' || prop === 'anchors') {
        return (...args: unknown[]) => {
          reads[prop]++;
          return (v as (...a: unknown[]) => unknown).apply(target, args);
        };
      }
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
  const intact = { ok: true, records: 300, writers: 1, checkpoints: 300, anchors: 0, unsigned: 0, warnings: [] };
  t.strictSame(await verifyStore(counted, jwks, MODES.sequential), intact);
  t.strictSame(reads, { checkpoints: 1, anchors: 1 }, 'sequential: checkpoints and anchors read once');
  t.strictSame(await verifyStore(counted, jwks, MODES.parallel), intact);
  t.strictSame(await verifyStore(counted, jwks, { parallel: { workers: 2, rangeRecords: 40 } }), intact);
  t.strictSame(reads, { checkpoints: 3, anchors: 3 }, 'parallel: once per verification');

  // The planner hands each checkpoint to exactly one range, and cuts only at checkpoints.
  const evidence = await checkEvidence(await ro.checkpoints(), [], jwks);
  const ranges = toChainRanges([{ writer: WRITER, lo: 1, hi: 300 }], evidence, 40);
  t.equal(ranges.reduce((n, r) => n + r.evidence.checkpoints.length, 0), 300, 'every checkpoint in one range');
  t.ok(ranges.length >= 7 && ranges.length <= 8, `${ranges.length} ranges of at least 40 records`);
  for (const [i, r] of ranges.entries()) {
    t.ok(r.evidence.checkpoints.every((c) => c.cp.size > r.lo && c.cp.size <= r.hi), `range ${i} holds only its own checkpoints`);
    if (i > 0) t.match(r.start, { seq: r.lo, head: many[r.lo - 1]?.hash }, `range ${i} starts from the signed head at ${r.lo}`);
  }

  // A change in the middle is named the same way by both verifiers.
  const copy = join(dir, 'many-edited.db');
  copyFileSync(path, copy);
  const db = new Database(copy);
  writeBody(db, 123, readBody(db, 123).replace(/"verdict":"\w+"/, '"verdict":"denied"'));
  db.close();
  const edited = await createSqliteStore({ path: copy, replica: WRITER, readonly: true });
  t.teardown(() => edited.close());
  const sequential = await verifyStore(edited, jwks, MODES.sequential);
  t.match(sequential, { ok: false, firstBad: { kind: 'record', seq: 123, id: many[122]?.id, problem: /hash mismatch/ } });
  t.strictSame(await verifyStore(edited, jwks, MODES.parallel), sequential);
});

t.test('a parallel verify while records are appended sees one snapshot of records and account rows', async (t) => {
  const path = join(dir, 'live.db');
  copyFileSync(base, path);
  const store = await createSqliteStore({ path, replica: WRITER, signer: key, checkpointEvery: { records: 10, seconds: 3600 } });
  t.teardown(() => store.close());
  let appending = true;
  let n = 30;
  const appender = (async () => {
    while (appending) await store.append(aRecord({ n: ++n, namespace: n % 2 ? 'payments' : 'web', serviceAccounts: [`${n % 2 ? 'payments' : 'web'}/ci-builder`] }));
  })();
  try {
    for (let round = 0; round < 3; round++) {
      const result = await verifyStore(store, jwks, MODES.parallel);
      t.match(result, { ok: true, writers: 1 }, `round ${round}`);
      if (result.ok) t.ok(result.records >= 30 && result.records <= n, `round ${round}: ${result.records} records`);
    }
  } finally {
    appending = false;
    await appender;
  }
  t.ok(n > 30, `${n - 30} records appended meanwhile`);
});
