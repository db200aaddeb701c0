/**
 * Audit API bearer auth with real keys: an ES256 issuer key whose JWKS is served over a real
 * loopback HTTP server, tokens minted with jose's SignJWT, and the audit app on a real SQLite store.
 */
import t, { type Test } from 'tap';
import { createServer, type Server } from 'node:http';
import { once } from 'node:events';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { exportJWK, generateKeyPair, SignJWT, UnsecuredJWT, type CryptoKey, type JWK, type JWTPayload } from 'jose';
import { buildAuditApp, type AuditAuthConfig } from '../../webhook/http/audit.js';
import { claimAt, parseGroups, toBearerToken } from '../../webhook/http/auth.js';
import { createSqliteStore } from '../../webhook/store/sqlite/store.js';
import { loadOrCreateSigningKey, toJwks } from '../../webhook/store/evidence/signing.js';
import { aRecord } from '../store/builders.js';

const ISSUER = 'https://issuer.example.test/realms/audit';
const AUDIENCE = 'tzw-audit-api';
const GROUP = 'auditors';

interface Issuer {
  privateKey: CryptoKey;
  jwk: JWK;
  jwksUri: string;
  server: Server;
  fetches: number;
}

async function startIssuer(tt: Test, kid = 'issuer-key-1'): Promise<Issuer> {
  const { privateKey, publicKey } = await generateKeyPair('ES256');
  const jwk = { ...(await exportJWK(publicKey)), kid, alg: 'ES256', use: 'sig' };
  const issuer = { privateKey, jwk, jwksUri: '', server: undefined as unknown as Server, fetches: 0 };
  issuer.server = createServer((req, res) => {
    if (req.url !== '/jwks') {
      res.writeHead(404).end();
      return;
    }
    issuer.fetches++;
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: [jwk] }));
  });
  issuer.server.listen(0, '127.0.0.1');
  await once(issuer.server, 'listening');
  const addr = issuer.server.address() as { port: number };
  issuer.jwksUri = `http://127.0.0.1:${addr.port}/jwks`;
  tt.teardown(() => new Promise<void>((resolve) => issuer.server.close(() => resolve())));
  return issuer;
}

interface TokenOptions {
  key?: CryptoKey;
  kid?: string;
  issuer?: string;
  audience?: string;
  sub?: string;
  /** Seconds from now; negative = already expired. Undefined = no exp claim. */
  expiresIn?: number | null;
  claims?: JWTPayload;
}

async function mint(issuer: Issuer, o: TokenOptions = {}): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  const jwt = new SignJWT({ groups: [GROUP], ...o.claims })
    .setProtectedHeader({ alg: 'ES256', kid: o.kid ?? issuer.jwk.kid!, typ: 'JWT' })
    .setIssuer(o.issuer ?? ISSUER)
    .setAudience(o.audience ?? AUDIENCE)
    .setSubject(o.sub ?? 'auditor-1')
    .setIssuedAt(now - 60);
  const expiresIn = o.expiresIn === undefined ? 300 : o.expiresIn;
  if (expiresIn !== null) jwt.setExpirationTime(now + expiresIn);
  return jwt.sign(o.key ?? issuer.privateKey);
}

async function setup(tt: Test, auth: Partial<AuditAuthConfig> & { jwksUri: string }) {
  const dir = tt.testdir({});
  const key = await loadOrCreateSigningKey(join(dir, 'signing.pem'), { create: true });
  const store = await createSqliteStore({ path: join(dir, 'decisions.db'), replica: 'tzw-0', signer: key });
  tt.teardown(() => store.close());
  const rec = await store.append(aRecord({ n: 1, replica: 'tzw-0' }));
  const logs: string[] = [];
  const logger = pino({ level: 'info' }, new Writable({ write(chunk, _e, cb) { logs.push(String(chunk)); cb(); } }));
  const app = await buildAuditApp({
    store,
    jwks: () => toJwks(key.publicJwk),
    auth: { mode: 'oidc', issuer: ISSUER, audience: AUDIENCE, group: GROUP, groupsClaim: 'groups', ...auth },
    logger,
    // These tables send dozens of bad tokens from one address; the failure limit has its own test.
    limits: { authFailures: 1000 },
  });
  tt.teardown(() => app.close());
  return { app, logs, rec };
}

t.test('bearer tokens: 200 only for a valid token of the right issuer, audience and group', async (t) => {
  const issuer = await startIssuer(t);
  const other = await generateKeyPair('ES256');
  const { app, logs, rec } = await setup(t, { jwksUri: issuer.jwksUri });

  const cases: Array<{ name: string; auth?: () => Promise<string>; status: number; message?: RegExp }> = [
    { name: 'valid token, groups as an array', auth: async () => `Bearer ${await mint(issuer)}`, status: 200 },
    { name: 'valid token, groups as a space-separated string', auth: async () => `Bearer ${await mint(issuer, { claims: { groups: `devs ${GROUP} ops` } })}`, status: 200 },
    { name: 'scheme in lower case', auth: async () => `bearer ${await mint(issuer)}`, status: 200 },
    { name: 'no Authorization header', status: 401, message: /missing bearer token/ },
    { name: 'Basic credentials', auth: async () => 'Basic YXVkaXRvcjpodW50ZXIy', status: 401, message: /not "Bearer <JWT>"/ },
    { name: 'empty bearer', auth: async () => 'Bearer ', status: 401, message: /not "Bearer <JWT>"/ },
    { name: 'garbage token', auth: async () => 'Bearer not-a-jwt', status: 401, message: /not a well-formed JWT/ },
    { name: 'three garbage segments', auth: async () => 'Bearer aaa.bbb.ccc', status: 401, message: /invalid bearer token/ },
    { name: 'expired', auth: async () => `Bearer ${await mint(issuer, { expiresIn: -120 })}`, status: 401, message: /expired/ },
    { name: 'no exp claim', auth: async () => `Bearer ${await mint(issuer, { expiresIn: null })}`, status: 401, message: /exp/ },
    { name: 'wrong audience', auth: async () => `Bearer ${await mint(issuer, { audience: 'some-other-api' })}`, status: 401, message: /aud/ },
    { name: 'wrong issuer', auth: async () => `Bearer ${await mint(issuer, { issuer: 'https://evil.example.test' })}`, status: 401, message: /iss/ },
    { name: 'signed by another key, same kid', auth: async () => `Bearer ${await mint(issuer, { key: other.privateKey })}`, status: 401, message: /signature does not verify/ },
    { name: 'signed by another key, unknown kid', auth: async () => `Bearer ${await mint(issuer, { key: other.privateKey, kid: 'attacker' })}`, status: 401, message: /not signed by one of the issuer's keys/ },
    {
      name: 'unsigned (alg none)',
      auth: async () => `Bearer ${new UnsecuredJWT({ groups: [GROUP] }).setIssuer(ISSUER).setAudience(AUDIENCE).setSubject('x').setExpirationTime('5m').encode()}`,
      status: 401,
      message: /invalid bearer token/,
    },
    { name: 'valid token without the group', auth: async () => `Bearer ${await mint(issuer, { claims: { groups: ['devs'] } })}`, status: 403, message: /requires group "auditors".*does not include "auditors"/ },
    { name: 'group only as a substring of the string claim', auth: async () => `Bearer ${await mint(issuer, { claims: { groups: 'auditors-readonly' } })}`, status: 403, message: /does not include/ },
    { name: 'groups claim absent', auth: async () => `Bearer ${await mint(issuer, { claims: { groups: undefined } })}`, status: 403, message: /has no "groups" claim/ },
    { name: 'groups claim of the wrong type', auth: async () => `Bearer ${await mint(issuer, { claims: { groups: { auditors: true } } })}`, status: 403, message: /has no "groups" claim/ },
  ];
  const tokensSent: string[] = [];
  for (const c of cases) {
    const authorization = c.auth ? await c.auth() : undefined;
    if (authorization) tokensSent.push(authorization.replace(/^\w+ /, ''));
    for (const url of ['/api/v1/decisions', `/api/v1/decisions/${rec.id}`, '/api/v1/checkpoints', '/api/v1/decisions?format=jsonl']) {
      const res = await app.inject({ url, headers: authorization ? { authorization } : {} });
      t.equal(res.statusCode, c.status, `${c.name}: ${url}`);
      if (c.status === 200) continue;
      const body = res.json() as { code: string; message: string };
      t.equal(body.code, c.status === 401 ? 'ERR_UNAUTHENTICATED' : 'ERR_FORBIDDEN', c.name);
      t.match(body.message, c.message!, c.name);
      const challenge = res.headers['www-authenticate'] as string;
      t.match(challenge, c.status === 401 ? /^Bearer error="invalid_token", error_description="[^"\\]*"$/ : /^Bearer error="insufficient_scope", error_description="[^"\\]*"$/, c.name);
      const secret = authorization?.replace(/^\S+\s*/, '') ?? '';
      if (secret) t.notOk(res.body.includes(secret) || challenge.includes(secret), `${c.name}: token not echoed`);
    }
  }
  const allowed = await app.inject({ url: '/api/v1/decisions', headers: { authorization: `Bearer ${await mint(issuer)}` } });
  t.strictSame((allowed.json() as { items: unknown[] }).items, [rec]);

  // The JWKS route is public: verifiers fetch it without a token.
  const jwks = await app.inject({ url: '/api/v1/jwks' });
  t.equal(jwks.statusCode, 200);
  t.equal((jwks.json() as { keys: unknown[] }).keys.length, 1);

  // The caller is in the request log; no token (or piece of one) is.
  const requestLines = logs.map((l) => JSON.parse(l) as { msg: string; audit?: { sub: string | null; status: number } }).filter((l) => l.msg === 'audit API request');
  t.ok(requestLines.some((l) => l.audit?.sub === 'auditor-1' && l.audit.status === 200), 'sub of an allowed caller is logged');
  t.ok(requestLines.some((l) => l.audit?.sub === 'auditor-1' && l.audit.status === 403), 'sub of a refused (403) caller is logged');
  t.ok(requestLines.some((l) => l.audit?.sub === null && l.audit.status === 401), '401s are logged without a caller');
  const allLogs = logs.join('');
  for (const token of tokensSent) {
    for (const part of token.split('.').filter((p) => p.length > 8)) t.notOk(allLogs.includes(part), 'no token part in the logs');
  }
  t.equal(issuer.fetches >= 1, true, 'the JWKS came over HTTP');
});

t.test('a nested groups claim (Keycloak realm_access.roles) and a namespaced claim name', async (t) => {
  const issuer = await startIssuer(t);
  const nested = await setup(t, { jwksUri: issuer.jwksUri, groupsClaim: 'realm_access.roles' });
  const ok = await nested.app.inject({ url: '/api/v1/decisions', headers: { authorization: `Bearer ${await mint(issuer, { claims: { realm_access: { roles: [GROUP] } } })}` } });
  t.equal(ok.statusCode, 200);
  const no = await nested.app.inject({ url: '/api/v1/decisions', headers: { authorization: `Bearer ${await mint(issuer, { claims: { realm_access: { roles: ['x'] } } })}` } });
  t.equal(no.statusCode, 403);

  const namespaced = await setup(t, { jwksUri: issuer.jwksUri, groupsClaim: 'https://example.test/groups' });
  const res = await namespaced.app.inject({ url: '/api/v1/decisions', headers: { authorization: `Bearer ${await mint(issuer, { claims: { 'https://example.test/groups': [GROUP] } })}` } });
  t.equal(res.statusCode, 200);
});

t.test("the issuer's JWKS unreachable: 503, not 401, and the cause is logged", async (t) => {
  const issuer = await startIssuer(t);
  const token = await mint(issuer);
  await new Promise<void>((resolve) => issuer.server.close(() => resolve()));
  const { app, logs } = await setup(t, { jwksUri: issuer.jwksUri });
  const res = await app.inject({ url: '/api/v1/decisions', headers: { authorization: `Bearer ${token}` } });
  t.equal(res.statusCode, 503);
  t.strictSame(res.json(), { code: 'ERR_AUTH_UNAVAILABLE', message: "cannot verify the token now: the issuer's key set (JWKS) could not be loaded" });
  t.ok(logs.some((l) => l.includes('issuer JWKS is unavailable') && l.includes(issuer.jwksUri)));
  t.notOk(logs.join('').includes(token.split('.')[2]!), 'the token is not logged');
});

t.test('oidc mode with missing options refuses to build', async (t) => {
  await t.rejects(
    buildAuditApp({ store: {} as never, jwks: () => ({ keys: [] }), auth: { mode: 'oidc', groupsClaim: 'groups', issuer: ISSUER }, logger: pino({ level: 'silent' }) }),
    { code: 'ERR_AUTH_CONFIG', message: /needs jwksUri, audience, group/ },
  );
  await t.rejects(
    buildAuditApp({ store: {} as never, jwks: () => ({ keys: [] }), auth: { mode: 'oidc', groupsClaim: 'groups', issuer: ISSUER, audience: AUDIENCE, group: GROUP, jwksUri: 'file:///etc/jwks.json' }, logger: pino({ level: 'silent' }) }),
    { code: 'ERR_AUTH_CONFIG', message: /http\(s\) URL/ },
  );
});

t.test('auth mode none: no token needed', async (t) => {
  const dir = t.testdir({});
  const key = await loadOrCreateSigningKey(join(dir, 'signing.pem'), { create: true });
  const store = await createSqliteStore({ path: join(dir, 'decisions.db'), replica: 'tzw-0', signer: key });
  t.teardown(() => store.close());
  const app = await buildAuditApp({ store, jwks: () => toJwks(key.publicJwk), auth: { mode: 'none', groupsClaim: 'groups' }, logger: pino({ level: 'silent' }) });
  t.teardown(() => app.close());
  t.equal((await app.inject({ url: '/api/v1/decisions' })).statusCode, 200);
});

t.test('toBearerToken, parseGroups, claimAt', async (t) => {
  const tokens: Array<[string | undefined, string | undefined]> = [
    [undefined, undefined],
    ['Bearer abc.def.ghi', 'abc.def.ghi'],
    ['bearer   abc.def-_~+/ghi==', 'abc.def-_~+/ghi=='],
    ['Bearer abc def', undefined],
    ['Bearer', undefined],
    ['Basic abc', undefined],
    ['Bearer "abc"', undefined],
  ];
  for (const [header, want] of tokens) t.equal(toBearerToken(header), want, String(header));

  const groups: Array<[unknown, string[] | undefined]> = [
    [['a', 'b'], ['a', 'b']],
    ['a b  c', ['a', 'b', 'c']],
    ['', []],
    [[], []],
    [['a', 1], undefined],
    [42, undefined],
    [null, undefined],
    [{ a: true }, undefined],
  ];
  for (const [value, want] of groups) t.strictSame(parseGroups(value), want, JSON.stringify(value));

  const payload = { groups: ['g'], 'a.b': 1, a: { b: 2, c: { d: ['x'] } }, arr: [{ x: 1 }] };
  const claims: Array<[string, unknown]> = [
    ['groups', ['g']],
    ['a.b', 1],
    ['a.c.d', ['x']],
    ['a.missing', undefined],
    ['arr.0.x', undefined],
    ['constructor', undefined],
    ['__proto__', undefined],
  ];
  for (const [name, want] of claims) t.strictSame(claimAt(payload, name), want, name);
});
