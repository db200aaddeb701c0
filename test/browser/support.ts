/**
 * The console's browser tests run against real parts: the admission app records the example
 * AdmissionReviews (varied over two days) into a real SQLite store, the audit app serves the
 * console and the API over real HTTPS, an OIDC issuer serves its JWKS on loopback, and Debian's
 * Chromium (/usr/bin/chromium, no browser download) is driven through playwright-core.
 */
import type { Test } from 'tap';
import { readdirSync, readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { once } from 'node:events';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { v7 as uuidv7 } from 'uuid';
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK } from 'jose';
import { chromium, type Browser } from 'playwright-core';
import { buildApp } from '../../webhook/app.js';
import { buildAuditApp, type AuditAuthConfig, type AuditDeps } from '../../webhook/http/audit.js';
import { createFactsIndex } from '../../webhook/core/mapping-index.js';
import { createMetrics } from '../../webhook/http/metrics.js';
import { createFileSource } from '../../webhook/kube/files.js';
import { createSqliteStore, type SqliteStore } from '../../webhook/store/sqlite/store.js';
import { loadOrCreateSigningKey, toJwks, type Jwks } from '../../webhook/store/evidence/signing.js';
import { createCertificateAuthority, createServingCertificate } from '../../certs/lib.js';
import { defaultOptions } from '../builders.js';

export const CHROMIUM = '/usr/bin/chromium';
/** PROTOCOL's flags: headless, no sandbox (root in CI), nothing that phones home. */
export const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

const EXAMPLES = fileURLToPath(new URL('../../manifests/examples/', import.meta.url));
export const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** First decision at 2026-11-24T00:00Z; one every 47 minutes. */
export const START_MS = Date.UTC(2026, 10, 24);
export const STEP_MS = 47 * 60_000;
export const REVIEWS = 60;

export const ISSUER = 'https://issuer.example.test/realms/audit';
export const AUDIENCE = 'tzw-audit-api';
export const GROUP = 'auditors';

interface Review {
  request: { uid: string; namespace: string; kind: { kind: string }; object: { metadata: { namespace?: string; name?: string } } };
}

/** The example reviews, in a fixed order, and the endpoint each goes to. */
function loadTemplates(): Array<{ file: string; review: Review; path: string }> {
  const dir = join(EXAMPLES, 'reviews');
  return readdirSync(dir)
    .filter((f) => f.endsWith('.json'))
    .sort()
    .map((file) => {
      const review = JSON.parse(readFileSync(join(dir, file), 'utf8')) as Review;
      return { file, review, path: review.request.kind.kind === 'Pod' ? '/mutate' : '/validate' };
    });
}

export async function launchChromium(t: Test): Promise<Browser> {
  // No skip when Chromium is missing: .ci/run installs it, and a console without a browser test is untested.
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, headless: true });
  t.teardown(() => browser.close());
  return browser;
}

export interface Issuer {
  jwksUri: string;
  mint(o?: { groups?: string[]; expiresIn?: number; sub?: string }): Promise<string>;
}

/** An OIDC issuer: an ES256 key whose JWKS is served over loopback HTTP. */
export async function startIssuer(t: Test): Promise<Issuer> {
  const { privateKey, publicKey } = await generateKeyPair('ES256');
  const jwk: JWK = { ...(await exportJWK(publicKey)), kid: 'issuer-1', alg: 'ES256', use: 'sig' };
  const server: Server = createServer((req, res) => {
    if (req.url !== '/jwks') return void res.writeHead(404).end();
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: [jwk] }));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const key: CryptoKey = privateKey;
  return {
    jwksUri: `http://127.0.0.1:${(server.address() as { port: number }).port}/jwks`,
    async mint(o = {}) {
      const now = Math.floor(Date.now() / 1000);
      return new SignJWT({ groups: o.groups ?? [GROUP] })
        .setProtectedHeader({ alg: 'ES256', kid: 'issuer-1', typ: 'JWT' })
        .setIssuer(ISSUER)
        .setAudience(AUDIENCE)
        .setSubject(o.sub ?? 'auditor-1')
        .setIssuedAt(now - 600)
        .setExpirationTime(now + (o.expiresIn ?? 600))
        .sign(key);
    },
  };
}

export interface ConsoleServer {
  url: string;
  store: SqliteStore;
  jwks: Jwks;
  dir: string;
  logs: string[];
}

/**
 * Records REVIEWS decisions through the real admission app (the example reviews in turn, every
 * tenth moved to the unenrolled namespace "sandbox"), then serves the audit app over HTTPS.
 */
export async function startConsoleServer(t: Test, auth: AuditAuthConfig, extra: Partial<AuditDeps> = {}): Promise<ConsoleServer> {
  const dir = t.testdir({});
  const logs: string[] = [];
  const logger = pino({ level: 'info' }, new Writable({ write(chunk, _e, cb) { logs.push(String(chunk)); cb(); } }));
  const signer = await loadOrCreateSigningKey(join(dir, 'signing.pem'), { create: true });
  let nowMs = START_MS;
  // Checkpoints every 25 records, signed at the decisions' own clock, so screenshots are stable.
  const store = await createSqliteStore({ path: join(dir, 'decisions.db'), replica: 'tzw-0', signer, checkpointEvery: { records: 25, seconds: 86_400 }, clock: () => new Date(nowMs) });
  t.teardown(() => store.close());

  const index = createFactsIndex('tekton-zscaler.io');
  const source = createFileSource({ paths: [EXAMPLES], index, logger, watch: false });
  await source.start();
  await source.close();
  const admission = buildApp({
    facts: index, sourceSynced: () => true, store, options: defaultOptions(), logger, metrics: createMetrics(),
    newId: () => uuidv7({ msecs: nowMs }), nowMicros: () => BigInt(nowMs) * 1000n, replica: 'tzw-0', deadlineMs: 5000,
    readiness: () => [], bodyLimit: 7 * 1024 * 1024,
  });
  const templates = loadTemplates();
  for (let i = 0; i < REVIEWS; i++) {
    nowMs = START_MS + i * STEP_MS;
    const tpl = templates[i % templates.length]!;
    const review = structuredClone(tpl.review);
    review.request.uid = `browser-${i}`;
    if (i % 10 === 9) {
      review.request.namespace = 'sandbox';
      review.request.object.metadata.namespace = 'sandbox';
    }
    const res = await admission.inject({ method: 'POST', url: tpl.path, payload: review as unknown as Record<string, unknown> });
    if (res.statusCode !== 200) throw new Error(`seeding ${tpl.file}: HTTP ${res.statusCode} ${res.body}`);
  }
  await store.checkpointNow();
  await admission.close();

  const ca = await createCertificateAuthority({ commonName: 'browser test CA', days: 2 });
  const leaf = await createServingCertificate(ca, { dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'], days: 1 });
  const jwks = toJwks(signer.publicJwk);
  const audit = await buildAuditApp({ store, jwks: () => jwks, auth, logger, https: { cert: leaf.certPem, key: leaf.keyPem }, ...extra });
  const url = await audit.listen({ host: '127.0.0.1', port: 0 });
  t.teardown(() => audit.close());
  return { url, store, jwks, dir, logs };
}
