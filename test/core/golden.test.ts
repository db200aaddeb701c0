/**
 * Golden patches (test/golden/<case>/): the patch for each reconstructed Tekton pod must equal the
 * reviewed expected-patch.json, apply cleanly (fast-json-patch, validation on) and, applied, give a
 * pod that gets zero operations the second time. Regenerate only with `npx tsx scripts/regen-golden.ts`.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { decideAdmission } from '../../webhook/core/admit.js';
import { parseAdmissionReview, renderReview, type AdmissionRequest } from '../../webhook/core/wire.js';
import { GOLDEN_CASES, GOLDEN_DECISION_ID, goldenFacts, goldenOptions } from '../golden/cases.js';
import { canonicalJson } from '../../webhook/store/evidence/canonical.js';
import { addOnlyViolations, applyOps, duplicateNames, firstLoss, tunnelPlacementProblems } from './patch-check.js';

const goldenDir = fileURLToPath(new URL('../golden/', import.meta.url));
const readJson = (dir: string, file: string): unknown => JSON.parse(readFileSync(join(goldenDir, dir, file), 'utf8'));

t.test('every case folder is listed in cases.ts and every listed case has a folder', async (t) => {
  const folders = readdirSync(goldenDir).filter((f) => statSync(join(goldenDir, f)).isDirectory()).sort();
  t.strictSame(folders, GOLDEN_CASES.map((c) => c.name).sort());
});

t.test(`${GOLDEN_CASES.length} golden cases`, async (t) => {
  for (const c of GOLDEN_CASES) {
    t.test(c.name, async (t) => {
      const review = readJson(c.name, 'review.json');
      const expected = readJson(c.name, 'expected-patch.json');
      const parsed = parseAdmissionReview(review);
      if (!parsed.ok) throw new Error(`review.json does not parse: ${parsed.message}`);
      const req = parsed.review.request;
      const facts = goldenFacts(c, req);
      const opts = goldenOptions(c);
      const decision = decideAdmission('mutate', req, facts, opts, GOLDEN_DECISION_ID);
      t.equal(decision.verdict, 'patched');
      t.strictSame(JSON.parse(JSON.stringify(decision.patch)), expected, 'patch equals expected-patch.json');
      t.equal(JSON.stringify(decision.patch), canonicalJson(decision.patch), 'the patch\'s JSON is already RFC 8785 (the record reuses the response\'s serialisation)');
      t.equal(decision.patchJson, JSON.stringify(decision.patch), 'the text joined from the fragments is JSON.stringify of the patch');

      const response = renderReview(req.uid, decision, GOLDEN_DECISION_ID).response;
      t.equal(response.patchType, 'JSONPatch');
      t.strictSame(JSON.parse(Buffer.from(response.patch ?? '', 'base64').toString('utf8')), expected, 'the rendered base64 patch decodes to the same');

      const pod = req.object;
      t.strictSame(addOnlyViolations(pod, decision.patch, () => false), [], 'add-only, nothing replaced');
      const out = applyOps(pod, decision.patch);
      t.equal(firstLoss(pod, out), undefined, 'the original pod is a subset of the result');
      t.strictSame(duplicateNames(out as never), [], 'unique volume names, container names, mountPaths and env per container');
      t.strictSame(tunnelPlacementProblems(pod as never, out as never, c.mode), [],
        c.mode === 'native' ? 'native: the tunnel is the first init container, the pod\'s own follow in order' : 'classic: the tunnel is the last container');

      const again: AdmissionRequest = { ...req, object: out };
      const second = decideAdmission('mutate', again, facts, opts, 'another-decision');
      t.strictSame([second.verdict, second.reasons.map((r) => r.code), second.patch], ['allowed', ['POD_ALREADY_INJECTED'], []], 'deciding again gives zero operations');
    });
  }
});

t.test('native-sidecar Tekton pod (03, native): the tunnel starts first, the Task\'s own native sidecar after it', async (t) => {
  const c = GOLDEN_CASES.find((x) => x.name === '03-native-sidecar-mode--okta--native');
  if (!c) throw new Error('case 03 native is missing');
  const parsed = parseAdmissionReview(readJson(c.name, 'review.json'));
  if (!parsed.ok) throw new Error(parsed.message);
  const req = parsed.review.request;
  const out = applyOps(req.object, readJson(c.name, 'expected-patch.json') as never) as { spec: { initContainers: Array<{ name: string; restartPolicy?: string; volumeMounts?: Array<{ name: string }> }> } };
  const init = out.spec.initContainers;
  t.strictSame(init.map((x) => x.name), ['zscaler-tunnel', 'prepare', 'place-scripts', 'sidecar-redis']);
  t.strictSame(init.map((x) => x.restartPolicy ?? null), ['Always', null, null, 'Always'], 'two native sidecars, the tunnel first');
  t.ok(init[3]?.volumeMounts?.some((m) => m.name === 'tekton-zscaler-token'), 'the user sidecar still got the token mount (index addressed before the insert)');
  t.notOk(init[0]?.volumeMounts?.filter((m) => m.name === 'tekton-zscaler-token').length !== 1, 'the tunnel has exactly its own mount');
});
