/**
 * Evidence bundles: a JSON Lines export of decision records with the checkpoints, anchors and the
 * public keys needed to verify them offline, and verification of a bundle or of a live store.
 *
 * Format (one JSON object per line, `type` first):
 *   {"type":"header","format":"tzw-decision-bundle","version":1,"created":...,"complete":true|false,"filter":{...},"jwks":{"keys":[...]}}
 *   {"type":"record","record":{...ChainedRecord}}        (complete: chain order, writer then seq)
 *   {"type":"checkpoint","checkpoint":{writer,size,headHash,time,jws}}
 *   {"type":"anchor","anchor":{writer,seq,hash,time,jws}}
 *   {"type":"quarantined","quarantined":{record,reason,time}}   (complete bundles of a PostgreSQL store)
 *
 * Quarantined records are decisions a replica's spool could not forward without breaking a chain
 * (PostgreSQL held their id as another decision, or refused them); they were kept, not deleted.
 * They sit outside every chain, so no checkpoint covers them: verifyBundle checks each one's hash
 * against its content and lists them as warnings, with the reason.
 *
 * Only an export of ALL records (`complete: true`) can be verified: a chain with records left out
 * cannot be recomputed. A filtered export is evidence (each record still carries its hash), not a
 * verifiable bundle; verifyBundle says so instead of reporting gaps.
 */
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import type { ChainedRecord } from '../../core/record.js';
import { checkEvidence, createChainVerifier, hashRecord, verifyCheckedEntries, type ChainProblem, type VerifyResult } from './chain.js';
import type { Anchor, ChainVerifyOptions, Checkpoint, DecisionFilter, QuarantinedRecord, VerifiableStore } from '../port.js';
import { isUnfiltered } from '../query.js';
import { parseJwks, type Jwks } from './signing.js';
import { writeLinesAtomically } from './atomic-lines.js';

export const BUNDLE_FORMAT = 'tzw-decision-bundle';
export const BUNDLE_VERSION = 1;

export interface BundleHeader {
  type: 'header';
  format: typeof BUNDLE_FORMAT;
  version: number;
  created: string;
  /** True when the bundle holds every record of the store (and so can be verified). */
  complete: boolean;
  filter?: Omit<DecisionFilter, 'limit' | 'cursor'>;
  jwks: Jwks;
}

export interface BundleSummary {
  path: string;
  records: number;
  checkpoints: number;
  anchors: number;
  /** Quarantined records written (outside the chain). */
  quarantined: number;
  complete: boolean;
}

const RECORD_PREFIX = '{"type":"record",';

/**
 * Progress of a long export or verification, for the CLI's progress line: called once per item
 * (and at each phase start) with the phase (`records`, `checkpoints`, `anchors`), how many are
 * done and, where known, how many there are. It may return a promise (await it: the CLI uses that
 * to let signals through) and may throw to stop the work (the error propagates; an export then
 * leaves no file).
 */
export type EvidenceProgress = (event: { phase: string; done: number; total?: number; unit?: string }) => void | Promise<void>;

export interface EvidenceRunOptions {
  onProgress?: EvidenceProgress;
}

/** Calls `onProgress` and waits only when it asked to (a bare call per record costs next to nothing). */
async function report(onProgress: EvidenceProgress | undefined, phase: string, done: number, total?: number, unit?: string): Promise<void> {
  const waiting = onProgress?.({ phase, done, total, unit });
  if (waiting) await waiting;
}

/** The store's record count for a progress total, when it can count (a cheap COUNT); else undefined. */
async function countFor(store: VerifiableStore, onProgress: EvidenceProgress | undefined): Promise<number | undefined> {
  return onProgress && store.count ? store.count() : undefined;
}

function bundleProblem(problem: string): VerifyResult {
  return { ok: false, firstBad: { kind: 'bundle', id: '', writer: '', seq: 0, problem } };
}

/**
 * The lines of a bundle (without newlines) for the records matching `filter` (all records when it
 * is empty or undefined), streamed with flat memory: the one renderer of the format behind the
 * CLI's file export and GET /api/v1/export. Checkpoints and anchors are read before the records,
 * so every checkpoint in the bundle covers records that are in it. `summary` is filled as lines are
 * produced; `opts.onProgress` sees each record, checkpoint and anchor (see EvidenceProgress), with
 * the store's count as the records' total for a complete bundle. Errors: the store's, or the
 * callback's.
 */
export async function* loadBundleLines(
  store: VerifiableStore,
  filter: Omit<DecisionFilter, 'limit' | 'cursor'> | undefined,
  jwks: Jwks,
  opts: { clock?: () => Date; summary?: Omit<BundleSummary, 'path'> } & EvidenceRunOptions = {},
): AsyncGenerator<string> {
  const { onProgress } = opts;
  const complete = isUnfiltered(filter);
  const summary = opts.summary ?? { records: 0, checkpoints: 0, anchors: 0, quarantined: 0, complete };
  summary.complete = complete;
  const [checkpoints, anchors] = await Promise.all([store.checkpoints(), store.anchors()]);
  const quarantined = complete && store.quarantined ? await store.quarantined() : [];
  // Counted after the checkpoints were read, so records appended meanwhile can only make `done` pass it.
  const total = complete ? await countFor(store, onProgress) : undefined;
  const header: BundleHeader = {
    type: 'header',
    format: BUNDLE_FORMAT,
    version: BUNDLE_VERSION,
    created: (opts.clock ?? (() => new Date()))().toISOString(),
    complete,
    ...(complete || !filter ? {} : { filter }),
    jwks,
  };
  yield JSON.stringify(header);
  await report(onProgress, 'records', 0, total);
  if (complete) {
    for await (const e of store.streamChain()) {
      yield `${RECORD_PREFIX}"record":${JSON.stringify(e.record)}}`;
      summary.records++;
      await report(onProgress, 'records', summary.records, total);
    }
  } else {
    for await (const r of store.stream(filter ?? {})) {
      yield `${RECORD_PREFIX}"record":${JSON.stringify(r)}}`;
      summary.records++;
      await report(onProgress, 'records', summary.records, total);
    }
  }
  await report(onProgress, 'checkpoints', 0, checkpoints.length);
  for (const checkpoint of checkpoints) {
    yield JSON.stringify({ type: 'checkpoint', checkpoint });
    await report(onProgress, 'checkpoints', ++summary.checkpoints, checkpoints.length);
  }
  summary.checkpoints = checkpoints.length;
  await report(onProgress, 'anchors', 0, anchors.length);
  for (const anchor of anchors) {
    yield JSON.stringify({ type: 'anchor', anchor });
    await report(onProgress, 'anchors', ++summary.anchors, anchors.length);
  }
  summary.anchors = anchors.length;
  for (const q of quarantined) yield JSON.stringify({ type: 'quarantined', quarantined: q });
  summary.quarantined = quarantined.length;
}

/**
 * Writes a bundle of the records matching `filter` (see loadBundleLines) to `outPath`. The file
 * appears atomically (written as `outPath.tmp`, then renamed). Errors: the store's, or fs errors
 * naming the path.
 */
export async function writeBundle(
  store: VerifiableStore,
  filter: Omit<DecisionFilter, 'limit' | 'cursor'> | undefined,
  outPath: string,
  jwks: Jwks,
  opts: { clock?: () => Date } & EvidenceRunOptions = {},
): Promise<BundleSummary> {
  const summary = { records: 0, checkpoints: 0, anchors: 0, quarantined: 0, complete: isUnfiltered(filter) };
  await writeLinesAtomically(outPath, loadBundleLines(store, filter, jwks, { ...opts, summary }));
  return { path: outPath, ...summary };
}

function lines(path: string): AsyncIterable<string> & { bytesRead(): number } {
  const input = createReadStream(path, { encoding: 'utf8' });
  return Object.assign(createInterface({ input, crlfDelay: Infinity }), { bytesRead: () => input.bytesRead });
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * Verifies a bundle file offline. `jwksOverride` (the webhook's published JWKS) should be given:
 * without it the bundle's own keys are used, which proves the bundle is self-consistent but not who
 * signed it (the result then carries a warning). Reads the file twice (checkpoints/anchors, then
 * records) so memory stays flat. Returns the verifyChain result; bundle-level problems (unreadable,
 * malformed line, filtered export) come back as `firstBad.kind: 'bundle'`. Throws only when the
 * file cannot be opened (fs error codes).
 */
export async function verifyBundle(path: string, jwksOverride?: Jwks, opts: EvidenceRunOptions = {}): Promise<VerifyResult> {
  const { onProgress } = opts;
  let header: BundleHeader | undefined;
  const checkpoints: Checkpoint[] = [];
  const anchors: Anchor[] = [];
  const quarantined: QuarantinedRecord[] = [];
  const oddRecordLines = new Set<number>();
  let n = 0;
  let recordLines = 0;
  // Pass 1 reads the whole file for its checkpoints and anchors: progress in bytes of the file.
  const size = onProgress ? (await stat(path)).size : 0;
  const pass1 = lines(path);
  await report(onProgress, 'checkpoints', 0, size, 'bytes');
  for await (const line of pass1) {
    n++;
    await report(onProgress, 'checkpoints', pass1.bytesRead(), size, 'bytes');
    if (n === 1) {
      let h: unknown;
      try {
        h = JSON.parse(line);
      } catch {
        return bundleProblem('line 1 is not JSON: this is not a decision bundle');
      }
      if (!isObject(h) || h.type !== 'header' || h.format !== BUNDLE_FORMAT) return bundleProblem(`line 1 is not a ${BUNDLE_FORMAT} header`);
      if (h.version !== BUNDLE_VERSION) return bundleProblem(`bundle version ${JSON.stringify(h.version)} is not supported (expected ${BUNDLE_VERSION})`);
      header = h as unknown as BundleHeader;
      continue;
    }
    if (line.startsWith(RECORD_PREFIX)) recordLines++;
    if (line === '' || line.startsWith(RECORD_PREFIX)) continue;
    let v: unknown;
    try {
      v = JSON.parse(line);
    } catch {
      return bundleProblem(`line ${n} is not JSON`);
    }
    if (!isObject(v)) return bundleProblem(`line ${n} is not a JSON object`);
    if (v.type === 'checkpoint' && isObject(v.checkpoint)) checkpoints.push(v.checkpoint as unknown as Checkpoint);
    else if (v.type === 'anchor' && isObject(v.anchor)) anchors.push(v.anchor as unknown as Anchor);
    else if (v.type === 'quarantined' && isObject(v.quarantined) && isObject(v.quarantined.record)) quarantined.push(v.quarantined as unknown as QuarantinedRecord);
    else if (v.type === 'record') {
      oddRecordLines.add(n); // same record, other key order: still verified
      recordLines++;
    }
    else return bundleProblem(`line ${n} has unknown type ${JSON.stringify(v.type)}`);
  }
  if (!header) return bundleProblem('the file is empty: this is not a decision bundle');
  if (header.complete !== true) {
    return bundleProblem(
      'this bundle is a filtered export (header complete: false): it is evidence, not a verifiable chain, because records between the exported ones are missing. Export all records (no filters) to verify.',
    );
  }
  const warnings: string[] = [];
  let jwks: Jwks;
  if (jwksOverride) jwks = jwksOverride;
  else {
    const parsed = parseJwks(header.jwks);
    if (typeof parsed === 'string') return bundleProblem(`the header's jwks is not usable: ${parsed}`);
    jwks = parsed;
    warnings.push("verified with the keys inside the bundle; pass the webhook's published JWKS (--jwks) or its config (--config) to rule out a re-signed bundle");
  }

  const verifier = await createChainVerifier(checkpoints, anchors, jwks);
  n = 0;
  let done = 0;
  await report(onProgress, 'records', 0, recordLines);
  for await (const line of lines(path)) {
    n++;
    if (n === 1 || !(line.startsWith(RECORD_PREFIX) || oddRecordLines.has(n))) continue;
    await report(onProgress, 'records', ++done, recordLines);
    let v: unknown;
    try {
      v = JSON.parse(line);
    } catch {
      return bundleProblem(`line ${n} is not JSON`);
    }
    const record = isObject(v) && isObject(v.record) ? (v.record as unknown as ChainedRecord) : undefined;
    if (!record) return bundleProblem(`line ${n} is a record line without a record object`);
    const bad: ChainProblem | undefined = verifier.add(record);
    if (bad) return { ok: false, firstBad: { ...bad, problem: `${bad.problem} (bundle line ${n})` } };
  }
  const result = verifier.finish();
  return result.ok ? { ...result, warnings: [...result.warnings, ...warnings, ...quarantined.map(toQuarantineWarning)] } : result;
}

/**
 * One line per quarantined record: what it is, why it was refused, and whether its hash still
 * matches its content (no checkpoint covers it, so that is all that can be checked).
 */
export function toQuarantineWarning(q: QuarantinedRecord): string {
  const r = q.record;
  return `quarantined record ${String(r.id)} (writer ${String(r.replica)}, seq ${String(r.seq)}), outside every chain and not covered by a checkpoint; ${toIntegrity(q)}; quarantined ${q.time}: ${q.reason}`;
}

function toIntegrity(q: QuarantinedRecord): string {
  if (q.body !== undefined) return 'it could not be read (its stored text is in the bundle as found)';
  const { hash, ...rest } = q.record;
  try {
    return typeof rest.prevHash === 'string' && hashRecord(rest.prevHash, rest) === hash ? 'its hash matches its content' : 'its hash does NOT match its content';
  } catch {
    return 'its hash cannot be recomputed (no canonical JSON)';
  }
}

/** Below this many records a store is verified on this thread (starting workers costs more than it saves). */
export const PARALLEL_MIN_RECORDS = 50_000;

export interface StoreVerifyOptions extends EvidenceRunOptions {
  /**
   * Verify with the adapter's own parallel verifier (VerifiableStore.verifyChains; SQLite: worker
   * threads): true or options force it, false never; default: when the store has one and holds at
   * least PARALLEL_MIN_RECORDS records. The answer is the same either way.
   */
  parallel?: boolean | Omit<ChainVerifyOptions, 'onRecords'>;
}

/**
 * Verifies a live store: its records in chain order against its checkpoints and anchors.
 * `opts.onProgress` sees `checkpoints` (their signatures are checked up front, each once) and then
 * `records`, with the store's count as the total when it can count.
 */
export async function verifyStore(store: VerifiableStore, jwks: Jwks, opts: StoreVerifyOptions = {}): Promise<VerifyResult> {
  const { onProgress } = opts;
  // Checkpoints first: any checkpoint read then covers records that the stream will see.
  const [checkpoints, anchors] = await Promise.all([store.checkpoints(), store.anchors()]);
  await report(onProgress, 'checkpoints', 0, checkpoints.length + anchors.length);
  const evidence = await checkEvidence(checkpoints, anchors, jwks);
  // One count(*) serves both the choice of verifier and the progress total.
  const count = (opts.parallel === undefined && store.verifyChains) || onProgress ? await store.count?.() : undefined;
  const parallel = opts.parallel ?? (store.verifyChains !== undefined && count !== undefined && count >= PARALLEL_MIN_RECORDS);
  const total = onProgress ? count : undefined;
  const sequential = () => verifyCheckedEntries(onProgress ? counted(store.streamChain(), onProgress, total) : store.streamChain(), evidence);
  if (parallel === false || !store.verifyChains) return sequential();
  await report(onProgress, 'records', 0, total);
  const settings = parallel === true ? {} : parallel;
  return store.verifyChains(evidence, { ...settings, ...(onProgress ? { onRecords: (done) => onProgress({ phase: 'records', done, total }) } : {}) }, sequential);
}

/** Passes `entries` through, reporting each one as done. */
async function* counted<T>(entries: AsyncIterable<T>, onProgress: EvidenceProgress, total: number | undefined): AsyncIterable<T> {
  let done = 0;
  await report(onProgress, 'records', 0, total);
  for await (const e of entries) {
    yield e;
    await report(onProgress, 'records', ++done, total);
  }
}
