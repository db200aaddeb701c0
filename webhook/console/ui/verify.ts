/**
 * Checks a signed checkpoint in the browser with the webhook's published JWKS (jose, WebCrypto):
 * the JWS verifies, its typ is a checkpoint's, and the signed claims are the ones listed. This shows
 * the checkpoint is signed; whether every record before it is intact is `tzw decisions verify`'s job.
 */
import { compactVerify, createLocalJWKSet, decodeProtectedHeader, type JSONWebKeySet } from 'jose';
import type { Checkpoint } from './api.js';

const CHECKPOINT_TYP = 'tzw-checkpoint';

export type CheckpointCheck = { ok: true; kid: string } | { ok: false; problem: string };

export async function verifyCheckpoint(cp: Checkpoint, jwks: JSONWebKeySet): Promise<CheckpointCheck> {
  try {
    const header = decodeProtectedHeader(cp.jws);
    if (header.typ !== CHECKPOINT_TYP) return { ok: false, problem: `JWS typ is ${JSON.stringify(header.typ ?? null)}, not a checkpoint` };
    const { payload } = await compactVerify(cp.jws, createLocalJWKSet(jwks), { algorithms: ['ES256', 'EdDSA'] });
    const claims = JSON.parse(new TextDecoder().decode(payload)) as Record<string, unknown>;
    for (const k of ['writer', 'size', 'headHash', 'time'] as const) {
      if (claims[k] !== cp[k]) return { ok: false, problem: `the signed ${k} differs from the listed one` };
    }
    return { ok: true, kid: typeof header.kid === 'string' ? header.kid : '' };
  } catch (err) {
    return { ok: false, problem: `signature does not verify (${(err as { code?: string }).code ?? (err as Error).message})` };
  }
}
