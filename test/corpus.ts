/**
 * Where the real-data corpus lives: `test/fixtures/corpus/` in this repository (Tekton examples,
 * reconstructed Tekton pods, Istio injection inputs; provenance in its INDEX.md), or
 * `$TZW_CORPUS_DIR` to run the same checks against another copy. Shared by the tests, the bench
 * and `scripts/regen-golden.ts` so nothing reads outside the repository.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';

export const CORPUS_DIR: string = process.env.TZW_CORPUS_DIR ?? fileURLToPath(new URL('./fixtures/corpus/', import.meta.url));

/** Every object (a YAML or JSON document that is an object or array) in the corpus, with its file. */
export function corpusObjects(dir: string = CORPUS_DIR): Array<{ file: string; value: object }> {
  const files: string[] = [];
  const walk = (d: string): void => {
    for (const f of readdirSync(d)) {
      const p = join(d, f);
      if (statSync(p).isDirectory()) walk(p);
      else if (/\.(ya?ml|json)$/.test(f)) files.push(p);
    }
  };
  walk(dir);
  const out: Array<{ file: string; value: object }> = [];
  for (const file of files) {
    for (const doc of parseAllDocuments(readFileSync(file, 'utf8'))) {
      const value: unknown = doc.toJS();
      if (value !== null && typeof value === 'object') out.push({ file, value });
    }
  }
  return out;
}
