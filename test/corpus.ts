/**
 * Where the real-data corpus lives: `test/fixtures/corpus/` in this repository (Tekton examples,
 * reconstructed Tekton pods, Istio injection inputs; provenance in its INDEX.md), or
 * `$TZW_CORPUS_DIR` to run the same checks against another copy. Shared by the tests, the bench
 * and `scripts/regen-golden.ts` so nothing reads outside the repository.
 */
import { fileURLToPath } from 'node:url';

export const CORPUS_DIR: string = process.env.TZW_CORPUS_DIR ?? fileURLToPath(new URL('./fixtures/corpus/', import.meta.url));
