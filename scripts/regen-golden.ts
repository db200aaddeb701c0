/**
 * Regenerates the golden patch cases from the reconstructed Tekton pods:
 *   npx tsx scripts/regen-golden.ts
 * Writes test/golden/<case>/review.json and expected-patch.json for every case in
 * test/golden/cases.ts and removes case folders no longer listed. Review the diff before committing:
 * a changed expected-patch.json is a changed contract.
 * The corpus is test/fixtures/corpus/ in this repository, or $TZW_CORPUS_DIR.
 */
import { mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { decideAdmission } from '../webhook/core/admit.js';
import { parseAdmissionReview, type KubeObject } from '../webhook/core/wire.js';
import { CORPUS_DIR } from '../test/corpus.js';
import { GOLDEN_CASES, GOLDEN_DECISION_ID, goldenFacts, goldenOptions, toGoldenReview } from '../test/golden/cases.js';

const corpus = CORPUS_DIR;
const podsDir = join(corpus, 'tekton-pods');
const goldenDir = fileURLToPath(new URL('../test/golden/', import.meta.url));

const pretty = (v: unknown): string => `${JSON.stringify(v, null, 2)}\n`;

let written = 0;
for (const c of GOLDEN_CASES) {
  const pod = parse(readFileSync(join(podsDir, c.podFile), 'utf8')) as KubeObject;
  const review = toGoldenReview(c, pod);
  const parsed = parseAdmissionReview(review);
  if (!parsed.ok) throw new Error(`${c.name}: the review does not parse: ${parsed.message}`);
  const req = parsed.review.request;
  const decision = decideAdmission('mutate', req, goldenFacts(c, req), goldenOptions(c), GOLDEN_DECISION_ID);
  if (decision.verdict !== 'patched') throw new Error(`${c.name}: expected a patch, got ${decision.verdict}: ${decision.message}`);
  const dir = join(goldenDir, c.name);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'review.json'), pretty(review));
  writeFileSync(join(dir, 'expected-patch.json'), pretty(decision.patch));
  written++;
}
const listed = new Set(GOLDEN_CASES.map((c) => c.name));
for (const entry of readdirSync(goldenDir)) {
  const dir = join(goldenDir, entry);
  if (statSync(dir).isDirectory() && !listed.has(entry)) {
    rmSync(dir, { recursive: true });
    console.log(`removed stale case ${entry}`);
  }
}
console.log(`wrote ${written} golden cases to ${goldenDir}`);
