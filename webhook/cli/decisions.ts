/**
 * `tzw decisions list|get|export|verify`: the auditor's CLI over a decision store (read-only) or an
 * exported bundle. Filter flags are the audit API's query parameters in kebab case and go through
 * the same parser (store/query.ts), so `--service-account x` and `?serviceAccount=x` select the same
 * records.
 */
import { redactUrl, signingKeyPath } from '../store/open.js';
import { createWriteStream } from 'node:fs';
import { mkdtemp, rename, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ChainedRecord } from '../core/record.js';
import type { ParseArgsConfig } from 'node:util';
import type { ChainProblem, VerifyResult } from '../store/evidence/chain.js';
import { verifyBundle, verifyStore, writeBundle } from '../store/evidence/bundle.js';
import { loadBundleFormat, NAMESPACE_BUNDLE_FORMAT, verifyNamespaceBundleFile, writeNamespaceBundle } from '../store/evidence/namespace-bundle.js';
import { toNamespaceEvidenceSource, toNamespaceRange } from '../store/namespace-source.js';
import { toNamespaceVerifyReport } from './namespace-evidence.js';
import { openStoreForRead } from '../store/open-url.js';
import type { DecisionFilter, DecisionPage, VerifiableStore } from '../store/port.js';
import { FILTER_KEYS, parseDecisionFilter, type FilterParams } from '../store/query.js';
import { loadOrCreateSigningKey, parseJwks, toJwks, type Jwks } from '../store/evidence/signing.js';
import { EXIT, UsageError, type CliIo } from './io.js';
import { describeInterrupt, runWithProgress, type OnProgress, type ProgressOutcome } from './progress.js';
import { loadCliConfig } from './objects.js';
import { LIST_FORMATS, toCsv, toJsonLines, toJsonPage, toTable, type ListFormat } from './output.js';
import type { Command } from './command.js';
import { createAuditClient, type AuditClient } from './remote.js';

type Options = NonNullable<ParseArgsConfig['options']>;
type Values = Record<string, unknown>;
type FilterKey = (typeof FILTER_KEYS)[number];

/** `serviceAccount` → `service-account`. */
export function toFlagName(key: string): string {
  return key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}

/** Keys that select records; limit and cursor only shape a page. */
const SELECT_KEYS = FILTER_KEYS.filter((k) => k !== 'limit' && k !== 'cursor');

// `multiple: true` so a flag given twice reaches the parser as two values and is reported, exactly
// like a repeated query parameter, instead of the last one silently winning.
function filterOptions(keys: readonly FilterKey[]): Options {
  return Object.fromEntries(keys.map((k) => [toFlagName(k), { type: 'string', multiple: true }])) as Options;
}

const STORE_OPTION: Options = { store: { type: 'string' } };
/** A running webhook's audit API instead of the database (remote.ts); the token also from TZW_TOKEN. */
export const SERVER_OPTIONS: Options = { server: { type: 'string' }, 'token-file': { type: 'string' }, cacert: { type: 'string' }, 'tls-server-name': { type: 'string' } };
const KEY_OPTIONS: Options = { jwks: { type: 'string' }, config: { type: 'string', short: 'c' } };
/** Long commands: `--quiet` silences the progress line (cli/progress.ts); results and errors still print. */
const QUIET_OPTION: Options = { quiet: { type: 'boolean', short: 'q' } };

/** The parser's messages name the API parameter (`serviceAccount`); on the CLI, name the flag. */
function toFlagMessage(message: string): string {
  return message.replace(/^(\w+)/, (word) => ((FILTER_KEYS as readonly string[]).includes(word) ? `--${toFlagName(word)}` : word));
}

/** Flags → the shared filter parser. A bad value is a usage error listing every problem. */
export function toDecisionFilter(values: Values, keys: readonly FilterKey[] = FILTER_KEYS): DecisionFilter {
  const params: FilterParams = {};
  for (const key of keys) {
    const v = values[toFlagName(key)];
    if (v !== undefined) params[key] = v as string[];
  }
  const parsed = parseDecisionFilter(params);
  if (!parsed.ok) throw new UsageError(`invalid filter:\n  - ${parsed.errors.map(toFlagMessage).join('\n  - ')}`);
  return parsed.filter;
}

function noArguments(positionals: string[]): void {
  if (positionals.length > 0) throw new UsageError(`unexpected argument "${positionals[0]}"`);
}

/** `--workers N` of verify: 0..64, or undefined when not given. */
function parseWorkers(v: unknown): number | undefined {
  if (v === undefined) return undefined;
  const n = typeof v === 'string' && /^\d{1,2}$/.test(v) ? Number(v) : Number.NaN;
  if (!(n >= 0 && n <= 64)) throw new UsageError(`--workers must be a whole number from 0 to 64, got "${String(v)}"`);
  return n;
}

function requireString(values: Values, flag: string, what: string): string {
  const v = values[flag];
  if (typeof v !== 'string' || v === '') throw new UsageError(`--${flag} ${what} is required`);
  return v;
}

function outputFormat<T extends string>(values: Values, allowed: readonly T[], fallback: T): T {
  const v = values.output;
  if (v === undefined) return fallback;
  if (typeof v === 'string' && (allowed as readonly string[]).includes(v)) return v as T;
  throw new UsageError(`-o must be one of ${allowed.join(', ')}, got "${String(v)}"`);
}

async function withStore<T>(values: Values, io: CliIo, fn: (store: VerifiableStore, url: string) => Promise<T>): Promise<T> {
  const url = requireString(values, 'store', 'URL (sqlite:PATH or postgres://…)');
  const store = await openStoreForRead(url, { cwd: io.cwd });
  try {
    // The URL may carry a password: everything printed names it redacted.
    return await fn(store, redactUrl(url));
  } finally {
    await store.close();
  }
}

/** Reads a small file the user named (token, CA), resolved against the working directory; errors name the flag. */
function readNamedFile(io: CliIo, flag: string, file: string): string {
  const path = resolve(io.cwd, file);
  try {
    return io.readFile(path);
  } catch (err) {
    throw Object.assign(new Error(`--${flag} ${path} cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`), { code: 'ERR_USAGE_FILE' });
  }
}

/**
 * Runs `fn` with a client of the audit API at --server. The token comes from --token-file (the
 * file's text, surrounding whitespace trimmed, as `kubectl create token > F` writes it), else from
 * TZW_TOKEN, else none (a loopback server in auth mode none needs none).
 */
export async function withClient<T>(values: Values, io: CliIo, fn: (client: AuditClient) => Promise<T>): Promise<T> {
  const server = requireString(values, 'server', 'https://HOST:PORT');
  const token = typeof values['token-file'] === 'string' ? readNamedFile(io, 'token-file', values['token-file']).trim() : io.env.TZW_TOKEN?.trim();
  if (typeof values['token-file'] === 'string' && !token) throw new UsageError(`--token-file ${values['token-file']} is empty`);
  const caPem = typeof values.cacert === 'string' ? readNamedFile(io, 'cacert', values.cacert) : undefined;
  let client: AuditClient;
  try {
    const servername = typeof values['tls-server-name'] === 'string' ? values['tls-server-name'] : undefined;
    client = createAuditClient({ server, ...(token ? { token } : {}), ...(caPem ? { caPem } : {}), ...(servername ? { servername } : {}) });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  try {
    return await fn(client);
  } finally {
    await client.close();
  }
}

/** Where records come from: the database (--store) or a running webhook (--server); `label` names it. */
interface RecordSource {
  label: string;
  page(filter: DecisionFilter): Promise<DecisionPage>;
  get(id: string): Promise<ChainedRecord | undefined>;
}

function checkOneSource(values: Values): 'store' | 'server' {
  if (values.store !== undefined && values.server !== undefined) throw new UsageError('give one of --store URL or --server URL, not both');
  if (values.server === undefined) {
    for (const flag of ['token-file', 'cacert', 'tls-server-name']) if (values[flag] !== undefined) throw new UsageError(`--${flag} applies to --server only`);
    if (values.store === undefined) throw new UsageError('--store URL (sqlite:PATH or postgres://…) is required, or --server https://HOST:PORT for a running webhook');
    return 'store';
  }
  return 'server';
}

/** Runs `fn` on the records of --store or --server: the commands render both alike, so the bytes are the same. */
async function withSource<T>(values: Values, io: CliIo, fn: (source: RecordSource) => Promise<T>): Promise<T> {
  if (checkOneSource(values) === 'store') return withStore(values, io, (store, url) => fn({ label: url, page: (f) => store.query(f), get: (id) => store.get(id) }));
  return withClient(values, io, (client) => fn({ label: client.server, page: (f) => client.fetchPage(f), get: (id) => client.fetchRecord(id) }));
}

/** The line `export` prints for a namespace bundle (--store and --server alike). */
function toNamespaceExportLine(records: number, namespace: string, checkpoints: number, writers: number, path: string): string {
  return `Wrote ${records} records of namespace ${namespace} and ${checkpoints} checkpoints of ${writers} writer(s) to ${path}. Verify it with: tzw decisions verify --bundle ${path} --jwks JWKS.json\n`;
}

/**
 * Saves a bundle stream to `outPath` (atomically: `outPath.tmp`, then renamed) and counts its lines
 * by type, reporting them to `onProgress` as they arrive (the server sends no total). The header
 * line says whether the bundle is complete. Errors: the stream's, fs errors, or the callback's
 * (Ctrl-C); the temporary file is removed on any of them.
 */
async function saveBundle(
  body: Readable,
  outPath: string,
  onProgress?: OnProgress,
): Promise<{ path: string; records: number; checkpoints: number; anchors: number; complete: boolean; format: string; namespace: string; writers: number }> {
  const tmp = `${outPath}.tmp`;
  const counts: Record<string, number> = {};
  let complete = false;
  let format = '';
  let namespace = '';
  const writers = new Set<string>();
  let first = true;
  const out = createWriteStream(tmp, { encoding: 'utf8' });
  try {
    const lines = createInterface({ input: body, crlfDelay: Infinity });
    await pipeline(
      (async function* () {
        for await (const line of lines) {
          if (first) {
            first = false;
            try {
              const header = JSON.parse(line) as { complete?: unknown; format?: unknown; namespace?: unknown };
              complete = header.complete === true;
              format = typeof header.format === 'string' ? header.format : '';
              namespace = typeof header.namespace === 'string' ? header.namespace : '';
            } catch {
              throw Object.assign(new Error('the server sent something that is not a decision bundle'), { code: 'ERR_REMOTE_BAD_RESPONSE' });
            }
          } else {
            const type = /^\{"type":"([a-z-]+)"/.exec(line)?.[1] ?? 'other';
            counts[type] = (counts[type] ?? 0) + 1;
            if (type === 'checkpoint') {
              const writer = (JSON.parse(line) as { checkpoint?: { writer?: unknown } }).checkpoint?.writer;
              if (typeof writer === 'string') writers.add(writer);
            }
            const waiting = onProgress?.({ phase: type === 'other' ? 'lines' : type === 'quarantined' ? type : `${type}s`, done: counts[type] });
            if (waiting) await waiting;
          }
          yield line + '\n';
        }
      })(),
      out,
    );
    if (first) throw Object.assign(new Error('the server sent an empty export'), { code: 'ERR_REMOTE_BAD_RESPONSE' });
    await rename(tmp, outPath);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
  return { path: outPath, records: counts.record ?? 0, checkpoints: counts.checkpoint ?? 0, anchors: counts.anchor ?? 0, complete, format, namespace, writers: writers.size };
}

/**
 * The public keys that verify checkpoints: `--jwks FILE` (e.g. saved from GET /api/v1/jwks), else
 * the public half of the configured signing key (`--config`/TZW_* → signing.keyFile, else the key
 * the server generated under stateDir). `source` says which, for the output.
 */
async function loadKeys(values: Values, io: CliIo): Promise<{ jwks: Jwks; source: string }> {
  if (typeof values.jwks === 'string') {
    const path = resolve(io.cwd, values.jwks);
    let text: string;
    try {
      text = io.readFile(path);
    } catch (err) {
      throw Object.assign(new Error(`cannot read JWKS ${path}: ${(err as Error).message}`), { code: 'ERR_JWKS_INVALID' });
    }
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (err) {
      throw Object.assign(new Error(`JWKS ${path} is not JSON: ${(err as Error).message}`), { code: 'ERR_JWKS_INVALID' });
    }
    const jwks = parseJwks(value);
    if (typeof jwks === 'string') throw Object.assign(new Error(`JWKS ${path}: ${jwks}`), { code: 'ERR_JWKS_INVALID' });
    return { jwks, source: `JWKS ${path}` };
  }
  const config = loadCliConfig(values.config as string | undefined, io);
  const keyFile = resolve(io.cwd, signingKeyPath(config));
  try {
    const key = await loadOrCreateSigningKey(keyFile, { create: false });
    return { jwks: toJwks(key.publicJwk), source: `signing key ${keyFile}` };
  } catch (err) {
    const code = (err as { code?: string }).code;
    throw Object.assign(
      new Error(`${(err as Error).message}; pass --jwks FILE with the webhook's public keys (save GET /api/v1/jwks), or --config with signing.keyFile`),
      { code },
    );
  }
}

function moreHint(io: CliIo, nextCursor: string | null): void {
  if (nextCursor) io.stderr(`More decisions match: repeat with --cursor ${nextCursor}\n`);
}

const list: Command = {
  options: { ...STORE_OPTION, ...SERVER_OPTIONS, ...filterOptions(FILTER_KEYS), output: { type: 'string', short: 'o' } },
  async run({ values, positionals }, io) {
    noArguments(positionals);
    const format = outputFormat<ListFormat>(values, LIST_FORMATS, 'table');
    const filter = toDecisionFilter(values);
    const page = await withSource(values, io, (source) => source.page(filter));
    switch (format) {
      case 'json':
        io.stdout(toJsonPage(page));
        return EXIT.OK;
      case 'jsonl':
        io.stdout(toJsonLines(page.items));
        break;
      case 'csv':
        io.stdout(toCsv(page.items));
        break;
      case 'table':
        if (page.items.length === 0) io.stderr('No decisions found.\n');
        else io.stdout(toTable(page.items));
        break;
    }
    moreHint(io, page.nextCursor);
    return EXIT.OK;
  },
};

const get: Command = {
  options: { ...STORE_OPTION, ...SERVER_OPTIONS, output: { type: 'string', short: 'o' } },
  async run({ values, positionals }, io) {
    if (positionals.length !== 1) throw new UsageError(`decisions get takes exactly one decision ID, got ${positionals.length}`);
    const id = positionals[0] ?? '';
    const format = outputFormat(values, ['table', 'json'] as const, 'table');
    const found = await withSource(values, io, async (source) => ({ record: await source.get(id), url: source.label }));
    if (!found.record) {
      io.stderr(`tzw: no decision with id ${JSON.stringify(id)} in ${found.url}\n`);
      return EXIT.PROBLEMS;
    }
    io.stdout(format === 'json' ? JSON.stringify(found.record, null, 2) + '\n' : toTable([found.record]));
    return EXIT.OK;
  },
};

const exportCommand: Command = {
  options: { ...STORE_OPTION, ...SERVER_OPTIONS, ...filterOptions(SELECT_KEYS), ...KEY_OPTIONS, ...QUIET_OPTION, out: { type: 'string' } },
  async run({ values, positionals }, io) {
    noArguments(positionals);
    const out = resolve(io.cwd, requireString(values, 'out', 'FILE'));
    const { limit: _limit, cursor: _cursor, ...filter } = toDecisionFilter(values, SELECT_KEYS);
    const progress = { title: 'export', quiet: values.quiet === true };
    // Both paths write to a temporary name and remove it when Ctrl-C unwinds them.
    const interrupted = (outcome: { last: Parameters<typeof describeInterrupt>[0]['last']; elapsedMs: number }): number => {
      io.stderr(describeInterrupt(outcome, 'export', `Nothing was written to ${out}.`));
      return EXIT.INTERRUPTED;
    };
    if (checkOneSource(values) === 'server') {
      // The server writes its own public keys into the bundle header; keys given here would not be used.
      for (const flag of ['jwks', 'config']) if (values[flag] !== undefined) throw new UsageError(`--${flag} does not apply to export --server: the bundle carries the server's public keys`);
      const outcome = await runWithProgress(io, progress, (onProgress) => withClient(values, io, async (client) => saveBundle(await client.fetchBundle(filter), out, onProgress)));
      if (!outcome.ok) return interrupted(outcome);
      const saved = outcome.value;
      if (saved.format === NAMESPACE_BUNDLE_FORMAT) {
        io.stdout(toNamespaceExportLine(saved.records, saved.namespace, saved.checkpoints, saved.writers, saved.path));
        return EXIT.OK;
      }
      io.stdout(`Wrote ${saved.records} records, ${saved.checkpoints} checkpoints and ${saved.anchors} anchors to ${saved.path}.\n`);
      if (!saved.complete && saved.format !== NAMESPACE_BUNDLE_FORMAT) {
        io.stderr('Note: this is a filtered export: evidence of the selected records, but not a verifiable chain. Export without filters for a bundle that "tzw decisions verify --bundle" can check.\n');
      }
      return EXIT.OK;
    }
    const { jwks } = await loadKeys(values, io);
    const range = toNamespaceRange(filter);
    if (range) {
      // One namespace (and a time range): a bundle its auditor can prove complete offline.
      const nsOutcome = await runWithProgress(io, progress, (onProgress) =>
        withStore(values, io, (store) => writeNamespaceBundle(toNamespaceEvidenceSource(store, { onProgress }), range, out, jwks, { onProgress })),
      );
      if (!nsOutcome.ok) return interrupted(nsOutcome);
      const ns = nsOutcome.value;
      io.stdout(toNamespaceExportLine(ns.records, range.namespace, ns.checkpoints, ns.writers, ns.path));
      return EXIT.OK;
    }
    const outcome = await runWithProgress(io, progress, (onProgress) => withStore(values, io, (store) => writeBundle(store, filter, out, jwks, { onProgress })));
    if (!outcome.ok) return interrupted(outcome);
    const summary = outcome.value;
    io.stdout(`Wrote ${summary.records} records, ${summary.checkpoints} checkpoints and ${summary.anchors} anchors to ${summary.path}.\n`);
    if (summary.quarantined > 0) {
      io.stderr(`Note: the bundle also holds ${summary.quarantined} quarantined record(s): decisions a replica's spool could not forward without breaking a chain, kept outside the chain; "tzw decisions verify --bundle" lists them with the reason.\n`);
    }
    if (!summary.complete) {
      io.stderr('Note: this is a filtered export: evidence of the selected records, but not a verifiable chain. Export without filters for a bundle that "tzw decisions verify --bundle" can check.\n');
    }
    return EXIT.OK;
  },
};

function describeProblem(p: ChainProblem): string {
  if (p.kind === 'bundle') return `bundle: ${p.problem}`;
  const what = p.kind === 'record' ? 'record' : `${p.kind} at record`;
  return `${what} ${p.id || '(none)'} (writer ${p.writer || '?'}, seq ${p.seq}): ${p.problem}`;
}

/** Text for a verification result: a summary when intact, else the first bad record. */
export function toVerifyReport(result: VerifyResult, source: string): string {
  if (!result.ok) return `VERIFICATION FAILED: ${source}\nFirst bad ${describeProblem(result.firstBad)}\n`;
  const lines = [
    `OK: ${source} is intact.`,
    `  records verified:     ${result.records}`,
    `  writers:              ${result.writers}`,
    `  checkpoints verified: ${result.checkpoints}`,
    `  anchors verified:     ${result.anchors}`,
  ];
  if (result.unsigned > 0) lines.push(`  ${result.unsigned} record(s) after the last checkpoint are hash-chained but not yet signed.`);
  for (const w of result.warnings) lines.push(`warning: ${w}`);
  return lines.join('\n') + '\n';
}

const verify: Command = {
  options: { ...STORE_OPTION, ...SERVER_OPTIONS, ...filterOptions(SELECT_KEYS), ...KEY_OPTIONS, ...QUIET_OPTION, bundle: { type: 'string' }, output: { type: 'string', short: 'o' }, workers: { type: 'string' } },
  async run({ values, positionals }, io) {
    noArguments(positionals);
    const format = outputFormat(values, ['text', 'json'] as const, 'text');
    const given = (['store', 'bundle', 'server'] as const).filter((k) => values[k] !== undefined);
    if (given.length !== 1) throw new UsageError('give exactly one of --store URL, --bundle FILE or --server URL');
    const workers = parseWorkers(values.workers);
    if (workers !== undefined && values.store === undefined) throw new UsageError('--workers applies to verify --store only');
    if (values.server === undefined) {
      for (const flag of ['token-file', 'cacert', 'tls-server-name', ...SELECT_KEYS.map(toFlagName)]) {
        if (values[flag] !== undefined) throw new UsageError(`--${flag} applies to verify --server only`);
      }
    }
    const progress = { title: 'verify', quiet: values.quiet === true };
    let outcome: ProgressOutcome<VerifyResult | { namespaceReport: string; exit: number }>;
    let source: string;
    if (values.server !== undefined) {
      // Streamed to a private temporary file (verification reads a bundle twice), verified here
      // against --jwks/--config when given, else the server's published keys; then deleted.
      const { limit: _limit, cursor: _cursor, ...filter } = toDecisionFilter(values, SELECT_KEYS);
      const keys = typeof values.jwks === 'string' || typeof values.config === 'string' ? await loadKeys(values, io) : undefined;
      source = `server ${String(values.server)}`;
      outcome = await runWithProgress(io, progress, (onProgress) => withClient(values, io, async (client) => {
        source = `server ${client.server}`;
        const jwks = keys?.jwks ?? (await client.fetchJwks());
        const dir = await mkdtemp(join(tmpdir(), 'tzw-verify-'));
        try {
          const saved = await saveBundle(await client.fetchBundle(filter), join(dir, 'bundle.jsonl'), (e) => onProgress({ ...e, phase: `downloading ${e.phase}`, unit: e.phase }));
          if (saved.format === NAMESPACE_BUNDLE_FORMAT) {
            const ns = await verifyNamespaceBundleFile(saved.path, jwks, { onProgress });
            const report = toNamespaceVerifyReport(ns, source);
            return { namespaceReport: format === 'json' ? JSON.stringify({ source, ...ns }, null, 2) + '\n' : report.text, exit: report.exit };
          }
          const verified = await verifyBundle(saved.path, jwks, { onProgress });
          const warning = `verified with the public keys ${client.server}/api/v1/jwks serves; pass --jwks FILE with keys you hold independently to rule out a server that re-signed its records`;
          return verified.ok && !keys ? { ...verified, warnings: [...verified.warnings, warning] } : verified;
        } finally {
          await rm(dir, { recursive: true, force: true });
        }
      }));
    } else if (values.bundle !== undefined) {
      const path = resolve(io.cwd, requireString(values, 'bundle', 'FILE'));
      // --jwks or --config name whose keys to trust; with neither, the bundle's own keys (and a warning).
      const keys = typeof values.jwks === 'string' || typeof values.config === 'string' ? await loadKeys(values, io) : undefined;
      source = `bundle ${path}`;
      try {
        if ((await loadBundleFormat(path)) === NAMESPACE_BUNDLE_FORMAT) {
          outcome = await runWithProgress(io, progress, async (onProgress) => {
            const ns = await verifyNamespaceBundleFile(path, keys?.jwks, { onProgress });
            const report = toNamespaceVerifyReport(ns, source);
            return { namespaceReport: format === 'json' ? JSON.stringify({ source, ...ns }, null, 2) + '\n' : report.text, exit: report.exit };
          });
        } else outcome = await runWithProgress(io, progress, (onProgress) => verifyBundle(path, keys?.jwks, { onProgress }));
      } catch (err) {
        throw Object.assign(new Error(`cannot read bundle ${path}: ${(err as Error).message}`), { code: (err as { code?: string }).code });
      }
    } else {
      const { jwks } = await loadKeys(values, io);
      source = `store ${redactUrl(requireString(values, 'store', 'URL (sqlite:PATH or postgres://…)'))}`;
      // --workers 0: this thread only; N: N worker threads; default: one per core for a large SQLite store.
      const parallel = workers === undefined ? undefined : workers === 0 ? false : { workers };
      outcome = await runWithProgress(io, progress, (onProgress) => withStore(values, io, (store) => verifyStore(store, jwks, { onProgress, ...(parallel !== undefined ? { parallel } : {}) })));
    }
    if (!outcome.ok) {
      io.stderr(describeInterrupt(outcome, 'verify', `Verification of ${source} did not finish; nothing was changed.`));
      return EXIT.INTERRUPTED;
    }
    const result = outcome.value;
    if ('namespaceReport' in result) {
      io.stdout(result.namespaceReport);
      return result.exit;
    }
    io.stdout(format === 'json' ? JSON.stringify({ source, ...result }, null, 2) + '\n' : toVerifyReport(result, source));
    return result.ok ? EXIT.OK : EXIT.TAMPERED;
  },
};

/** Subcommands of `tzw decisions` (run.ts lists each one in its command table). Frozen, null prototype. */
export const decisionsCommands: Readonly<Record<'list' | 'get' | 'export' | 'verify', Command>> & Readonly<Record<string, Command | undefined>> = Object.freeze(
  Object.assign(Object.create(null) as Record<string, Command>, { list, get, export: exportCommand, verify }),
);
