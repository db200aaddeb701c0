/**
 * `tzw decisions list|get|export|verify`: the auditor's CLI over a decision store (read-only) or an
 * exported bundle. Filter flags are the audit API's query parameters in kebab case and go through
 * the same parser (store/query.ts), so `--service-account x` and `?serviceAccount=x` select the same
 * records.
 */
import { redactUrl, signingKeyPath } from '../store/open.js';
import { resolve } from 'node:path';
import type { ParseArgsConfig } from 'node:util';
import type { ChainProblem, VerifyResult } from '../store/evidence/chain.js';
import { verifyBundle, verifyStore, writeBundle } from '../store/evidence/bundle.js';
import { loadBundleFormat, NAMESPACE_BUNDLE_FORMAT, verifyNamespaceBundleFile, writeNamespaceBundle } from '../store/evidence/namespace-bundle.js';
import { toNamespaceEvidenceSource, toNamespaceRange } from '../store/namespace-source.js';
import { toNamespaceVerifyReport } from './namespace-evidence.js';
import { openStoreForRead } from '../store/open-url.js';
import type { DecisionFilter, VerifiableStore } from '../store/port.js';
import { FILTER_KEYS, parseDecisionFilter, type FilterParams } from '../store/query.js';
import { loadOrCreateSigningKey, parseJwks, toJwks, type Jwks } from '../store/evidence/signing.js';
import { EXIT, UsageError, type CliIo } from './io.js';
import { describeInterrupt, runWithProgress, type ProgressOutcome } from './progress.js';
import { loadCliConfig } from './objects.js';
import { LIST_FORMATS, toCsv, toJsonLines, toJsonPage, toTable, type ListFormat } from './output.js';
import type { Command } from './command.js';

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
/** Long commands: `--quiet` silences the progress line (cli/progress.ts); results and errors still print. */
const QUIET_OPTION: Options = { quiet: { type: 'boolean', short: 'q' } };
const KEY_OPTIONS: Options = { jwks: { type: 'string' }, config: { type: 'string', short: 'c' } };

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
  options: { ...STORE_OPTION, ...filterOptions(FILTER_KEYS), output: { type: 'string', short: 'o' } },
  async run({ values, positionals }, io) {
    noArguments(positionals);
    const format = outputFormat<ListFormat>(values, LIST_FORMATS, 'table');
    const filter = toDecisionFilter(values);
    const page = await withStore(values, io, (store) => store.query(filter));
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
  options: { ...STORE_OPTION, output: { type: 'string', short: 'o' } },
  async run({ values, positionals }, io) {
    if (positionals.length !== 1) throw new UsageError(`decisions get takes exactly one decision ID, got ${positionals.length}`);
    const id = positionals[0] ?? '';
    const format = outputFormat(values, ['table', 'json'] as const, 'table');
    const found = await withStore(values, io, async (store, url) => ({ record: await store.get(id), url }));
    if (!found.record) {
      io.stderr(`tzw: no decision with id ${JSON.stringify(id)} in ${found.url}\n`);
      return EXIT.PROBLEMS;
    }
    io.stdout(format === 'json' ? JSON.stringify(found.record, null, 2) + '\n' : toTable([found.record]));
    return EXIT.OK;
  },
};

const exportCommand: Command = {
  options: { ...STORE_OPTION, ...filterOptions(SELECT_KEYS), ...KEY_OPTIONS, ...QUIET_OPTION, out: { type: 'string' } },
  async run({ values, positionals }, io) {
    noArguments(positionals);
    const out = resolve(io.cwd, requireString(values, 'out', 'FILE'));
    const { limit: _limit, cursor: _cursor, ...filter } = toDecisionFilter(values, SELECT_KEYS);
    const { jwks } = await loadKeys(values, io);
    const range = toNamespaceRange(filter);
    if (range) {
      // One namespace (and a time range): a bundle its auditor can prove complete offline.
      const ns = await withStore(values, io, (store) => writeNamespaceBundle(toNamespaceEvidenceSource(store), range, out, jwks));
      io.stdout(`Wrote ${ns.records} records of namespace ${range.namespace} and ${ns.checkpoints} checkpoints of ${ns.writers} writer(s) to ${ns.path}. Verify it with: tzw decisions verify --bundle ${ns.path} --jwks JWKS.json\n`);
      return EXIT.OK;
    }
    const outcome = await runWithProgress(io, { title: 'export', quiet: values.quiet === true }, (onProgress) =>
      withStore(values, io, (store) => writeBundle(store, filter, out, jwks, { onProgress })));
    if (!outcome.ok) {
      // writeBundle wrote to a temporary name and removed it when the interrupt unwound it.
      io.stderr(describeInterrupt(outcome, 'exported', `Nothing was written to ${out}.`));
      return EXIT.INTERRUPTED;
    }
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
  options: { ...STORE_OPTION, ...KEY_OPTIONS, ...QUIET_OPTION, bundle: { type: 'string' }, output: { type: 'string', short: 'o' } },
  async run({ values, positionals }, io) {
    noArguments(positionals);
    const format = outputFormat(values, ['text', 'json'] as const, 'text');
    const hasStore = values.store !== undefined;
    const hasBundle = values.bundle !== undefined;
    if (hasStore === hasBundle) throw new UsageError('give exactly one of --store URL or --bundle FILE');
    const progress = { title: 'verify', quiet: values.quiet === true };
    let outcome: ProgressOutcome<VerifyResult>;
    let source: string;
    if (hasBundle) {
      const path = resolve(io.cwd, requireString(values, 'bundle', 'FILE'));
      // --jwks or --config name whose keys to trust; with neither, the bundle's own keys (and a warning).
      const keys = typeof values.jwks === 'string' || typeof values.config === 'string' ? await loadKeys(values, io) : undefined;
      source = `bundle ${path}`;
      try {
        if ((await loadBundleFormat(path)) === NAMESPACE_BUNDLE_FORMAT) {
          const ns = await verifyNamespaceBundleFile(path, keys?.jwks);
          const report = toNamespaceVerifyReport(ns, source);
          io.stdout(format === 'json' ? JSON.stringify({ source, ...ns }, null, 2) + '\n' : report.text);
          return report.exit;
        }
        outcome = await runWithProgress(io, progress, (onProgress) => verifyBundle(path, keys?.jwks, { onProgress }));
      } catch (err) {
        throw Object.assign(new Error(`cannot read bundle ${path}: ${(err as Error).message}`), { code: (err as { code?: string }).code });
      }
    } else {
      const { jwks } = await loadKeys(values, io);
      source = `store ${redactUrl(requireString(values, 'store', 'URL (sqlite:PATH or postgres://…)'))}`;
      outcome = await runWithProgress(io, progress, (onProgress) => withStore(values, io, (store) => verifyStore(store, jwks, { onProgress })));
    }
    if (!outcome.ok) {
      io.stderr(describeInterrupt(outcome, 'verified', `Verification of ${source} did not finish; nothing was changed.`));
      return EXIT.INTERRUPTED;
    }
    const result = outcome.value;
    io.stdout(format === 'json' ? JSON.stringify({ source, ...result }, null, 2) + '\n' : toVerifyReport(result, source));
    return result.ok ? EXIT.OK : EXIT.TAMPERED;
  },
};

/** Subcommands of `tzw decisions` (run.ts lists each one in its command table). Frozen, null prototype. */
export const decisionsCommands: Readonly<Record<'list' | 'get' | 'export' | 'verify', Command>> & Readonly<Record<string, Command | undefined>> = Object.freeze(
  Object.assign(Object.create(null) as Record<string, Command>, { list, get, export: exportCommand, verify }),
);
