/**
 * The signing key behind checkpoints and retention anchors, and verification of what it signed.
 *
 * Keys are ES256 (P-256) or EdDSA (Ed25519) private keys stored as PKCS#8 PEM. The public half is
 * published as a JWKS (`{keys: [...]}`); a JWKS file may keep retired keys next to the current one,
 * so old checkpoints still verify after a rotation. `kid` is the RFC 7638 thumbprint, so the same
 * key always gets the same id wherever it is loaded.
 */
import { createPrivateKey, createPublicKey, type KeyObject } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { canonicalJson } from './canonical.js';
import {
  calculateJwkThumbprint,
  CompactSign,
  compactVerify,
  createLocalJWKSet,
  decodeProtectedHeader,
  exportJWK,
  exportPKCS8,
  generateKeyPair,
  type JWK,
} from 'jose';

export type SigningAlg = 'ES256' | 'EdDSA';
const ALGORITHMS: SigningAlg[] = ['ES256', 'EdDSA'];

/** JWS `typ` values: a checkpoint signature must never be accepted as an anchor and vice versa. */
export const CHECKPOINT_TYP = 'tzw-checkpoint';
export const ANCHOR_TYP = 'tzw-anchor';
export type StatementTyp = typeof CHECKPOINT_TYP | typeof ANCHOR_TYP;

export interface Jwks {
  keys: JWK[];
}

/** What a store needs to sign checkpoints and anchors. */
export interface Signer {
  /** Compact JWS over the RFC 8785 canonical JSON of `payload`, header {alg, kid, typ}. */
  sign(payload: Record<string, unknown>, typ: StatementTyp): Promise<string>;
}

export interface SigningKey extends Signer {
  alg: SigningAlg;
  kid: string;
  privateKey: KeyObject;
  /** Public JWK with `kid`, `alg` and `use: 'sig'`; publish it inside a JWKS. */
  publicJwk: JWK;
}

export interface CheckpointClaims {
  writer: string;
  size: number;
  headHash: string;
  time: string;
}

export interface AnchorClaims {
  writer: string;
  seq: number;
  hash: string;
  time: string;
}

function fail(code: string, message: string, cause?: unknown): Error {
  return Object.assign(new Error(message, cause === undefined ? undefined : { cause }), { code });
}

function errCode(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null && 'code' in err ? String((err as { code: unknown }).code) : undefined;
}

function algOf(key: KeyObject, path: string): SigningAlg {
  if (key.asymmetricKeyType === 'ed25519') return 'EdDSA';
  if (key.asymmetricKeyType === 'ec' && key.asymmetricKeyDetails?.namedCurve === 'prime256v1') return 'ES256';
  throw fail(
    'ERR_SIGNING_KEY_INVALID',
    `signing key ${path} is ${key.asymmetricKeyType ?? 'unknown'}${key.asymmetricKeyDetails?.namedCurve ? ` (${key.asymmetricKeyDetails.namedCurve})` : ''}; use an EC P-256 (ES256) or Ed25519 (EdDSA) key`,
  );
}

async function toSigningKey(privateKey: KeyObject, path: string): Promise<SigningKey> {
  const alg = algOf(privateKey, path);
  const jwk = await exportJWK(createPublicKey(privateKey));
  const kid = await calculateJwkThumbprint(jwk, 'sha256');
  const publicJwk: JWK = { ...jwk, kid, alg, use: 'sig' };
  return {
    alg,
    kid,
    privateKey,
    publicJwk,
    sign: (payload, typ) =>
      new CompactSign(new TextEncoder().encode(canonicalJson(payload)))
        .setProtectedHeader({ alg, kid, typ })
        .sign(privateKey),
  };
}

/**
 * Loads the PKCS#8 PEM private key at `path`; when the file is absent and `create` is true,
 * generates an ES256 key and writes it with mode 0600 (its directory with 0700).
 * Errors (by `code`): ERR_SIGNING_KEY_MISSING (absent, create false), ERR_SIGNING_KEY_INVALID (not a
 * PEM private key, or an unsupported key type), ERR_SIGNING_KEY_WRITE (could not create it).
 */
export async function loadOrCreateSigningKey(path: string, opts: { create: boolean }): Promise<SigningKey> {
  let pem: string;
  try {
    pem = await readFile(path, 'utf8');
  } catch (err) {
    if (errCode(err) !== 'ENOENT') throw fail('ERR_SIGNING_KEY_INVALID', `cannot read signing key ${path}: ${(err as Error).message}`, err);
    if (!opts.create) throw fail('ERR_SIGNING_KEY_MISSING', `signing key ${path} does not exist`);
    const { privateKey } = await generateKeyPair('ES256', { extractable: true });
    const generated = await exportPKCS8(privateKey);
    try {
      await mkdir(dirname(path), { recursive: true, mode: 0o700 });
      // 'wx': if another process created the key in the meantime, keep theirs (read below).
      await writeFile(path, generated, { mode: 0o600, flag: 'wx' });
      pem = generated;
    } catch (werr) {
      if (errCode(werr) !== 'EEXIST') throw fail('ERR_SIGNING_KEY_WRITE', `cannot write signing key ${path}: ${(werr as Error).message}`, werr);
      pem = await readFile(path, 'utf8');
    }
  }
  let key: KeyObject;
  try {
    key = createPrivateKey({ key: pem, format: 'pem' });
  } catch (err) {
    throw fail('ERR_SIGNING_KEY_INVALID', `signing key ${path} is not a PEM private key: ${(err as Error).message}`, err);
  }
  return toSigningKey(key, path);
}

/** A JWKS holding the given public keys (current first, then retired ones). */
export function toJwks(...keys: JWK[]): Jwks {
  return { keys };
}

/**
 * Reads a JWKS (or a single public JWK) from a JSON file, e.g. the one served at /api/v1/jwks.
 * Errors: ERR_JWKS_INVALID naming the path and what is wrong.
 */
export async function loadJwks(path: string): Promise<Jwks> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw fail('ERR_JWKS_INVALID', `cannot read JWKS ${path}: ${(err as Error).message}`, err);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw fail('ERR_JWKS_INVALID', `JWKS ${path} is not JSON: ${(err as Error).message}`, err);
  }
  const parsed = parseJwks(value);
  if (typeof parsed === 'string') throw fail('ERR_JWKS_INVALID', `JWKS ${path}: ${parsed}`);
  return parsed;
}

/** Accepts `{keys: [jwk...]}` or a single JWK; returns the JWKS or an error message. */
export function parseJwks(value: unknown): Jwks | string {
  const isJwk = (k: unknown): k is JWK => typeof k === 'object' && k !== null && typeof (k as JWK).kty === 'string';
  if (isJwk(value)) return { keys: [value] };
  if (typeof value !== 'object' || value === null || !Array.isArray((value as Jwks).keys)) return 'expected {"keys": [...]} or a JWK object';
  const keys = (value as Jwks).keys;
  if (keys.length === 0) return 'the key set is empty';
  const bad = keys.findIndex((k) => !isJwk(k));
  if (bad >= 0) return `keys[${bad}] is not a JWK (no "kty")`;
  if (keys.some((k) => 'd' in k)) return 'a key carries a private part ("d"); publish public keys only';
  return { keys };
}

/**
 * Verifies a signed statement against a JWKS and returns its payload. Errors carry jose's codes
 * (ERR_JWS_SIGNATURE_VERIFICATION_FAILED, ERR_JWKS_NO_MATCHING_KEY, ERR_JWS_INVALID, ...) or
 * ERR_STATEMENT_INVALID for a wrong `typ` or a payload that is not a JSON object.
 */
export type StatementVerifier = (jws: string, typ: StatementTyp) => Promise<Record<string, unknown>>;

/** Builds a verifier bound to one JWKS (keys are imported once, then reused). */
export function createStatementVerifier(jwks: Jwks): StatementVerifier {
  const keySet = createLocalJWKSet(jwks as Parameters<typeof createLocalJWKSet>[0]);
  return async (jws, typ) => {
    let header;
    try {
      header = decodeProtectedHeader(jws);
    } catch (err) {
      throw fail('ERR_JWS_INVALID', `not a compact JWS: ${(err as Error).message}`, err);
    }
    if (header.typ !== typ) throw fail('ERR_STATEMENT_INVALID', `JWS typ is ${JSON.stringify(header.typ ?? null)}, expected "${typ}"`);
    const { payload } = await compactVerify(jws, keySet, { algorithms: ALGORITHMS });
    let value: unknown;
    try {
      value = JSON.parse(new TextDecoder().decode(payload));
    } catch (err) {
      throw fail('ERR_STATEMENT_INVALID', 'the signed payload is not JSON', err);
    }
    if (typeof value !== 'object' || value === null || Array.isArray(value)) throw fail('ERR_STATEMENT_INVALID', 'the signed payload is not a JSON object');
    return value as Record<string, unknown>;
  };
}

function claimsError(what: string): Error {
  return fail('ERR_STATEMENT_INVALID', `the signed payload has no valid ${what}`);
}

/** Verifies a checkpoint's JWS and returns the signed claims {writer, size, headHash, time}. */
export async function verifyCheckpointJws(jws: string, jwks: Jwks | StatementVerifier): Promise<CheckpointClaims> {
  const verify = typeof jwks === 'function' ? jwks : createStatementVerifier(jwks);
  const p = await verify(jws, CHECKPOINT_TYP);
  if (typeof p.writer !== 'string') throw claimsError('writer');
  if (typeof p.size !== 'number' || !Number.isSafeInteger(p.size) || p.size < 0) throw claimsError('size');
  if (typeof p.headHash !== 'string') throw claimsError('headHash');
  if (typeof p.time !== 'string') throw claimsError('time');
  return { writer: p.writer, size: p.size, headHash: p.headHash, time: p.time };
}

/** Verifies an anchor's JWS and returns the signed claims {writer, seq, hash, time}. */
export async function verifyAnchorJws(jws: string, jwks: Jwks | StatementVerifier): Promise<AnchorClaims> {
  const verify = typeof jwks === 'function' ? jwks : createStatementVerifier(jwks);
  const p = await verify(jws, ANCHOR_TYP);
  if (typeof p.writer !== 'string') throw claimsError('writer');
  if (typeof p.seq !== 'number' || !Number.isSafeInteger(p.seq) || p.seq < 1) throw claimsError('seq');
  if (typeof p.hash !== 'string') throw claimsError('hash');
  if (typeof p.time !== 'string') throw claimsError('time');
  return { writer: p.writer, seq: p.seq, hash: p.hash, time: p.time };
}
