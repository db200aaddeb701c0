import { generateKeyPairSync } from 'node:crypto';
import { statSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { calculateJwkThumbprint } from 'jose';
import {
  ANCHOR_TYP,
  CHECKPOINT_TYP,
  loadJwks,
  loadOrCreateSigningKey,
  parseJwks,
  toJwks,
  verifyAnchorJws,
  verifyCheckpointJws,
} from '../../webhook/store/evidence/signing.js';

const claims = { writer: 'tzw-0', size: 10, headHash: 'a'.repeat(64), time: '2026-01-01T00:00:00.000000Z' };

t.test('creates an ES256 key 0600 once, then loads the same key', async (t) => {
  const dir = t.testdir({});
  const path = join(dir, 'sub', 'key.pem');
  const created = await loadOrCreateSigningKey(path, { create: true });
  t.equal(statSync(path).mode & 0o777, 0o600);
  t.equal(statSync(join(dir, 'sub')).mode & 0o777, 0o700);
  t.match(readFileSync(path, 'utf8'), /^-----BEGIN PRIVATE KEY-----/);
  t.equal(created.alg, 'ES256');
  t.strictSame(Object.keys(created.publicJwk).sort(), ['alg', 'crv', 'kid', 'kty', 'use', 'x', 'y']);
  t.match(created.publicJwk, { kty: 'EC', crv: 'P-256', alg: 'ES256', use: 'sig', kid: created.kid });
  const { kid: _k, alg: _a, use: _u, ...bare } = created.publicJwk;
  t.equal(created.kid, await calculateJwkThumbprint(bare, 'sha256'), 'kid is the RFC 7638 thumbprint');
  const loaded = await loadOrCreateSigningKey(path, { create: false });
  t.strictSame(loaded.publicJwk, created.publicJwk);
});

t.test('signs checkpoints and anchors that verify against a JWKS with rotated keys', async (t) => {
  const dir = t.testdir({});
  const old = await loadOrCreateSigningKey(join(dir, 'old.pem'), { create: true });
  const cur = await loadOrCreateSigningKey(join(dir, 'cur.pem'), { create: true });
  const jwks = toJwks(cur.publicJwk, old.publicJwk);
  t.strictSame(await verifyCheckpointJws(await old.sign(claims, CHECKPOINT_TYP), jwks), claims, 'old key still verifies');
  t.strictSame(await verifyCheckpointJws(await cur.sign(claims, CHECKPOINT_TYP), jwks), claims);
  const anchor = { writer: 'tzw-0', seq: 3, hash: 'b'.repeat(64), time: claims.time };
  t.strictSame(await verifyAnchorJws(await cur.sign(anchor, ANCHOR_TYP), jwks), anchor);

  const jws = await cur.sign(claims, CHECKPOINT_TYP);
  const [h, , s] = jws.split('.') as [string, string, string];
  const otherPayload = Buffer.from(JSON.stringify({ ...claims, size: 11 })).toString('base64url');
  await t.rejects(verifyCheckpointJws(`${h}.${otherPayload}.${s}`, jwks), { code: 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED' }, 'changed payload');
  await t.rejects(verifyCheckpointJws(jws, toJwks(old.publicJwk)), { code: 'ERR_JWKS_NO_MATCHING_KEY' }, 'key not in the set');
  await t.rejects(verifyAnchorJws(jws, jwks), { code: 'ERR_STATEMENT_INVALID', message: /typ is "tzw-checkpoint", expected "tzw-anchor"/ }, 'checkpoint is not an anchor');
  await t.rejects(verifyCheckpointJws('garbage', jwks), { code: 'ERR_JWS_INVALID' });
  await t.rejects(verifyCheckpointJws(await cur.sign({ ...claims, size: -1 }, CHECKPOINT_TYP), jwks), { code: 'ERR_STATEMENT_INVALID', message: /size/ });
  await t.rejects(verifyAnchorJws(await cur.sign({ writer: 'w', seq: 0, hash: 'h', time: 't' }, ANCHOR_TYP), jwks), { code: 'ERR_STATEMENT_INVALID', message: /seq/ });
});

t.test('loads Ed25519 keys; refuses others with clear codes', async (t) => {
  const pem = (type: 'ed25519' | 'rsa' | 'ec-p384') => {
    const { privateKey } =
      type === 'ed25519'
        ? generateKeyPairSync('ed25519')
        : type === 'rsa'
          ? generateKeyPairSync('rsa', { modulusLength: 2048 })
          : generateKeyPairSync('ec', { namedCurve: 'secp384r1' });
    return privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  };
  const dir = t.testdir({ 'ed.pem': pem('ed25519'), 'rsa.pem': pem('rsa'), 'p384.pem': pem('ec-p384'), 'junk.pem': 'not a key' });
  const ed = await loadOrCreateSigningKey(join(dir, 'ed.pem'), { create: false });
  t.equal(ed.alg, 'EdDSA');
  t.match(ed.publicJwk, { kty: 'OKP', crv: 'Ed25519', alg: 'EdDSA', use: 'sig' });
  t.strictSame(await verifyCheckpointJws(await ed.sign(claims, CHECKPOINT_TYP), toJwks(ed.publicJwk)), claims);
  await t.rejects(loadOrCreateSigningKey(join(dir, 'rsa.pem'), { create: false }), { code: 'ERR_SIGNING_KEY_INVALID', message: /rsa\.pem is rsa; use an EC P-256/ });
  await t.rejects(loadOrCreateSigningKey(join(dir, 'p384.pem'), { create: false }), { code: 'ERR_SIGNING_KEY_INVALID', message: /secp384r1/ });
  await t.rejects(loadOrCreateSigningKey(join(dir, 'junk.pem'), { create: true }), { code: 'ERR_SIGNING_KEY_INVALID', message: /junk\.pem is not a PEM private key/ });
  await t.rejects(loadOrCreateSigningKey(join(dir, 'absent.pem'), { create: false }), { code: 'ERR_SIGNING_KEY_MISSING', message: /absent\.pem does not exist/ });
  await t.rejects(loadOrCreateSigningKey(join(dir, 'junk.pem', 'x.pem'), { create: true }), { code: /ERR_SIGNING_KEY_(INVALID|WRITE)/ }, 'parent is a file');
});

t.test('parseJwks and loadJwks', async (t) => {
  const dir = t.testdir({});
  const key = await loadOrCreateSigningKey(join(dir, 'k.pem'), { create: true });
  const cases: Array<[string, unknown, unknown]> = [
    ['a JWKS', { keys: [key.publicJwk] }, { keys: [key.publicJwk] }],
    ['a single JWK', key.publicJwk, { keys: [key.publicJwk] }],
    ['not an object', 'x', 'expected {"keys": [...]} or a JWK object'],
    ['keys not an array', { keys: {} }, 'expected {"keys": [...]} or a JWK object'],
    ['empty', { keys: [] }, 'the key set is empty'],
    ['not a JWK', { keys: [key.publicJwk, { x: 1 }] }, 'keys[1] is not a JWK (no "kty")'],
    ['private key', { keys: [{ ...key.publicJwk, d: 'secret' }] }, 'a key carries a private part ("d"); publish public keys only'],
  ];
  for (const [name, input, want] of cases) t.strictSame(parseJwks(input), want, name);
  writeFileSync(join(dir, 'jwks.json'), JSON.stringify(toJwks(key.publicJwk)));
  writeFileSync(join(dir, 'bad.json'), '{');
  writeFileSync(join(dir, 'empty.json'), '{"keys":[]}');
  t.strictSame(await loadJwks(join(dir, 'jwks.json')), toJwks(key.publicJwk));
  await t.rejects(loadJwks(join(dir, 'bad.json')), { code: 'ERR_JWKS_INVALID', message: /bad\.json is not JSON/ });
  await t.rejects(loadJwks(join(dir, 'empty.json')), { code: 'ERR_JWKS_INVALID', message: /empty\.json: the key set is empty/ });
  await t.rejects(loadJwks(join(dir, 'nope.json')), { code: 'ERR_JWKS_INVALID', message: /cannot read JWKS/ });
});
