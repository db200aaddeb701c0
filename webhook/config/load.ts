/**
 * loadConfig: defaults ← config file (YAML) ← `TZW_*` env overrides, validated once, every problem
 * reported together. Pure apart from the injected `readFile`; never throws on bad input.
 */
import { Ajv, type ValidateFunction } from 'ajv';
import { parse as parseYaml } from 'yaml';
import { CONFIG_SCHEMA, defaultConfig, type Config } from './schema.js';

export type LoadResult = { ok: true; config: Config } | { ok: false; errors: string[] };

export interface LoadInput {
  configFile?: string;
  env: Record<string, string | undefined>;
  readFile: (path: string) => string;
  hostname: string;
}

type JsonSchema = { type?: string; enum?: readonly string[]; properties?: Record<string, JsonSchema>; items?: JsonSchema };

/** `auditApi.auth.mode` → `TZW_AUDIT_API_AUTH_MODE`; `admission.tls.clientCAFile` → `TZW_ADMISSION_TLS_CLIENT_CA_FILE`. */
export function envNameFor(path: string[]): string {
  return 'TZW_' + path.map((p) => p.replace(/([a-z0-9])([A-Z])/g, '$1_$2').replace(/([A-Z])([A-Z][a-z])/g, '$1_$2').toUpperCase()).join('_');
}

/** Every settable leaf of the schema with its env name and type (also the README's config table). */
export function configLeaves(schema: JsonSchema = CONFIG_SCHEMA as unknown as JsonSchema, prefix: string[] = []): Array<{ path: string[]; env: string; schema: JsonSchema }> {
  const out: Array<{ path: string[]; env: string; schema: JsonSchema }> = [];
  for (const [key, sub] of Object.entries(schema.properties ?? {})) {
    const path = [...prefix, key];
    if (sub.type === 'object' && sub.properties) out.push(...configLeaves(sub, path));
    else out.push({ path, env: envNameFor(path), schema: sub });
  }
  return out;
}

function coerceEnv(raw: string, schema: JsonSchema, name: string, errors: string[]): unknown {
  if (schema.type === 'integer' || schema.type === 'number') {
    const n = Number(raw);
    if (raw.trim() === '' || !Number.isFinite(n)) errors.push(`${name}: must be a number, got "${raw}"`);
    return n;
  }
  if (schema.type === 'boolean') {
    if (raw === 'true' || raw === 'false') return raw === 'true';
    errors.push(`${name}: must be true or false, got "${raw}"`);
    return undefined;
  }
  if (schema.type === 'array') {
    if (raw.trim().startsWith('[')) return parseJson(raw, name, errors);
    return raw.split(',').map((s) => s.trim()).filter(Boolean);
  }
  if (schema.type === 'object') return parseJson(raw, name, errors);
  return raw;
}

function parseJson(raw: string, name: string, errors: string[]): unknown {
  try {
    return JSON.parse(raw);
  } catch (err) {
    errors.push(`${name}: not valid JSON (${(err as Error).message})`);
    return undefined;
  }
}

function setPath(target: Record<string, unknown>, path: string[], value: unknown): void {
  let node = target;
  for (const key of path.slice(0, -1)) {
    if (typeof node[key] !== 'object' || node[key] === null) node[key] = {};
    node = node[key] as Record<string, unknown>;
  }
  node[path[path.length - 1]!] = value;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * Merges `over` into `base` following the schema: objects the schema describes (with `properties`)
 * merge key by key; everything else — scalars, arrays and opaque Kubernetes objects such as
 * `injection.sidecar.probe` — is replaced whole, so a tcpSocket probe never inherits an httpGet.
 */
export function withOverrides<T>(base: T, over: unknown, schema: JsonSchema = CONFIG_SCHEMA as unknown as JsonSchema): T {
  if (over === undefined) return base;
  if (!schema.properties || !isPlainObject(base) || !isPlainObject(over)) return over as T;
  const out: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(over)) {
    const sub = schema.properties[k];
    out[k] = sub && k in out ? withOverrides(out[k], v, sub) : v;
  }
  return out as T;
}

function isLoopback(listen: string): boolean {
  const host = listen.slice(0, listen.lastIndexOf(':')).replace(/^\[|\]$/g, '');
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}

// Compiled on first use: a command that reads no config (decisions verify --jwks) never pays for it.
let compiled: ValidateFunction | undefined;
const validateConfig = (): ValidateFunction => (compiled ??= new Ajv({ allErrors: true, strict: false }).compile(CONFIG_SCHEMA));

/** Loads and validates the configuration; the error list names every problem found. */
export function loadConfig(input: LoadInput): LoadResult {
  const errors: string[] = [];
  let fromFile: unknown = {};
  if (input.configFile !== undefined) {
    let text: string | undefined;
    try {
      text = input.readFile(input.configFile);
    } catch (err) {
      errors.push(`config file ${input.configFile}: cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
    }
    if (text !== undefined) {
      try {
        fromFile = parseYaml(text) ?? {};
      } catch (err) {
        errors.push(`config file ${input.configFile}: not valid YAML (${(err as Error).message.split('\n')[0]})`);
      }
    }
  }
  const fromEnv: Record<string, unknown> = {};
  const leaves = configLeaves();
  const known = new Set(leaves.map((l) => l.env));
  for (const leaf of leaves) {
    const raw = input.env[leaf.env];
    if (raw !== undefined) setPath(fromEnv, leaf.path, coerceEnv(raw, leaf.schema, leaf.env, errors));
  }
  for (const name of Object.keys(input.env)) {
    if (!name.startsWith('TZW_') || known.has(name) || ENV_NOT_CONFIG.has(name)) continue;
    const hint = ENV_HINTS[name];
    errors.push(`${name}: unknown setting (${hint ?? 'known: see README "Configuration"'})`);
  }
  const validate = validateConfig();
  for (const [what, value] of [['config file', fromFile], ['environment', fromEnv]] as const) {
    if (!validate(value)) {
      for (const e of validate.errors ?? []) {
        const where = e.instancePath.replace(/^\//, '').replace(/\//g, '.') || '(top level)';
        const extra = e.keyword === 'additionalProperties' ? ` "${(e.params as { additionalProperty: string }).additionalProperty}"` : '';
        const allowed = e.keyword === 'enum' ? ` (${(e.params as { allowedValues: string[] }).allowedValues.join(', ')})` : '';
        errors.push(`${what}: ${where} ${e.message}${extra}${allowed}`);
      }
    }
  }
  if (errors.length > 0) return { ok: false, errors };
  const config = withOverrides(withOverrides(defaultConfig(input.hostname), fromFile), fromEnv);
  const auth = config.auditApi.auth;
  if (auth.mode === 'none' && !isLoopback(config.auditApi.listen)) {
    errors.push(`auditApi.auth.mode "none" is only allowed on a loopback listener, but auditApi.listen is "${config.auditApi.listen}"`);
  }
  if (auth.mode === 'oidc') {
    for (const key of ['issuer', 'jwksUri', 'audience', 'group'] as const) {
      if (!auth[key]) errors.push(`auditApi.auth.${key} is required when auditApi.auth.mode is "oidc"`);
    }
  }
  if (config.source.kind === 'files' && config.source.paths.length === 0) errors.push('source.paths must name at least one file or folder when source.kind is "files"');
  for (const [name, t] of [['admission.tls', config.admission.tls], ['auditApi.tls', config.auditApi.tls]] as const) {
    if (!t) continue;
    for (const f of [t.certFile, t.keyFile]) {
      try {
        input.readFile(f);
      } catch (err) {
        errors.push(`${name}: ${f} cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
      }
    }
  }
  const admissionTls = config.admission.tls;
  if (admissionTls?.clientNames !== undefined && admissionTls.clientCAFile === undefined) {
    errors.push('admission.tls.clientNames needs admission.tls.clientCAFile (the CA that signs those client certificates)');
  }
  if (admissionTls?.clientCAFile !== undefined) {
    try {
      input.readFile(admissionTls.clientCAFile);
    } catch (err) {
      errors.push(`admission.tls: ${admissionTls.clientCAFile} cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
    }
  }
  const ports = new Map<string, string>();
  for (const [name, l] of [['admission.listen', config.admission.listen], ['auditApi.listen', config.auditApi.listen], ['metrics.listen', config.metrics.listen]] as const) {
    const port = l.slice(l.lastIndexOf(':') + 1);
    if (ports.has(port) && port !== '0') errors.push(`${name} uses port ${port}, already used by ${ports.get(port)}`);
    ports.set(port, name);
  }
  return errors.length > 0 ? { ok: false, errors } : { ok: true, config };
}

/** TZW_ variables that are not config settings: read by the tests and the bench only, never by the server. */
// TZW_TOKEN is the CLI's bearer token for --server (cli/decisions.ts), never a server setting.
const ENV_NOT_CONFIG = new Set(['TZW_CORPUS_DIR', 'TZW_TEST_PG_URL', 'TZW_BENCH_PG_URL', 'TZW_TOKEN']);

/**
 * Names people reach for that are not settings, with the one that is. TZW_PG_URL is refused rather
 * than read: the database URL has one source, store.url, so two variables can never disagree.
 */
const ENV_HINTS: Readonly<Record<string, string>> = {
  TZW_PG_URL: 'the PostgreSQL URL is store.url: set TZW_STORE_URL=postgres://…',
};

/** Splits `HOST:PORT` into what `listen()` takes. */
export function toListenOptions(listen: string): { host: string; port: number } {
  const i = listen.lastIndexOf(':');
  const host = listen.slice(0, i).replace(/^\[|\]$/g, '');
  return { host: host === '' ? '0.0.0.0' : host, port: Number(listen.slice(i + 1)) };
}
