/**
 * `tzw simulate -f OBJECT.yaml`: the decision and patch the webhook would return, offline, with no
 * record written. Accepts TaskRuns, PipelineRuns, Pods, or whole AdmissionReviews. Exit 0 when every
 * object would be admitted, 1 when any would be refused.
 */
import jsonpatch from 'fast-json-patch';
import { parseAllDocuments, stringify } from 'yaml';
import { decideAdmission } from '../core/admit.js';
import { isAllowed, type Decision } from '../core/verdict.js';
import { parseAdmissionReview, type AdmissionRequest, type KubeObject } from '../core/wire.js';
import type { Endpoint } from '../core/record.js';
import { toDecideOptions } from '../config/options.js';
import { EXIT, UsageError, type CliIo } from './io.js';
import { gatherObjects, loadCliConfig } from './objects.js';
import type { Command } from './command.js';

/** Stands in for the decision id in simulated patches: no record exists for a simulation. */
export const SIMULATED_DECISION_ID = 'simulated';

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Wraps a bare object as the CREATE request the API server would send. */
export function toSimulatedRequest(doc: unknown, namespace: string | undefined, n: number): { req: AdmissionRequest; endpoint: Endpoint } | { error: string } {
  if (!isRecord(doc)) return { error: `document ${n} is not an object` };
  if (doc.kind === 'AdmissionReview') {
    const parsed = parseAdmissionReview(doc);
    if (!parsed.ok) return { error: `document ${n}: ${parsed.message}` };
    const req = parsed.review.request;
    return { req, endpoint: req.kind.kind === 'Pod' && req.kind.group === '' ? 'mutate' : 'validate' };
  }
  if (typeof doc.apiVersion !== 'string' || typeof doc.kind !== 'string') return { error: `document ${n} has no apiVersion/kind` };
  const [group, version] = doc.apiVersion.includes('/') ? (doc.apiVersion.split('/', 2) as [string, string]) : ['', doc.apiVersion];
  const md = isRecord(doc.metadata) ? doc.metadata : {};
  const ns = namespace ?? (typeof md.namespace === 'string' ? md.namespace : 'default');
  const req: AdmissionRequest = {
    uid: `simulate-${n}`, kind: { group, version, kind: doc.kind }, namespace: ns, operation: 'CREATE',
    userInfo: { username: 'tzw-simulate' }, object: doc as KubeObject, dryRun: true,
  };
  if (typeof md.name === 'string') req.name = md.name;
  return { req, endpoint: doc.kind === 'Pod' && group === '' ? 'mutate' : 'validate' };
}

function describe(req: AdmissionRequest, endpoint: Endpoint, d: Decision): string {
  const md = (req.object?.metadata ?? {}) as Record<string, unknown>;
  const name = (md.name ?? md.generateName ?? req.name ?? '') as string;
  const lines = [
    `${req.kind.kind} ${req.namespace ?? ''}/${name} (${req.kind.group ? req.kind.group + '/' : ''}${req.kind.version}) → /${endpoint}`,
    `  verdict:   ${d.verdict}${isAllowed(d.verdict) ? '' : ` (${d.status.code} ${d.status.reason})`}`,
    ...d.reasons.map((r) => `  reason:    ${r.code}: ${r.message}`),
  ];
  if (!isAllowed(d.verdict) || d.verdict === 'warned') lines.push(`  message:   ${d.message}`);
  if (d.serviceAccounts.length) lines.push(`  accounts:  ${d.serviceAccounts.join(', ')}`);
  if (d.mapping) lines.push(`  mapping:   ${d.mapping.name} (${d.mapping.provider}, ${d.mapping.subject})`);
  if (d.policyTags.length) lines.push(`  tags:      ${d.policyTags.join(', ')}`);
  if (d.patch.length) {
    lines.push(`  patch:     ${d.patch.length} add operations`);
    for (const op of d.patch) lines.push(`    add ${op.path} ${JSON.stringify(op.value)}`);
  }
  return lines.join('\n') + '\n';
}

export const simulateCommand: Command = {
  options: {
    file: { type: 'string', short: 'f' },
    objects: { type: 'string', multiple: true },
    namespace: { type: 'string', short: 'n' },
    config: { type: 'string', short: 'c' },
    output: { type: 'string', short: 'o', default: 'text' },
  },
  async run({ values, positionals }, io: CliIo): Promise<number> {
    if (positionals.length > 0) throw new UsageError(`unexpected argument "${positionals[0]}"`);
    const file = values.file as string | undefined;
    if (!file) throw new UsageError('-f OBJECT.yaml is required');
    const output = values.output as string;
    if (!['text', 'json', 'yaml'].includes(output)) throw new UsageError(`-o must be text, json or yaml, got "${output}"`);
    const config = loadCliConfig(values.config as string | undefined, io);
    let text: string;
    try {
      text = io.readFile(file);
    } catch (err) {
      throw new UsageError(`cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
    const docs = parseAllDocuments(text);
    const bad = docs.find((d) => d.errors.length > 0);
    if (bad) throw new UsageError(`${file} is not valid YAML: ${bad.errors[0]!.message.split('\n')[0]}`);
    const { index } = await gatherObjects(values.objects as string[] | undefined, config, io.env);
    const options = toDecideOptions(config);
    const results: Array<{ endpoint: Endpoint; request: AdmissionRequest; decision: Decision }> = [];
    let refused = 0;
    let n = 0;
    for (const doc of docs) {
      const value: unknown = doc.toJS();
      if (value == null) continue;
      const wrapped = toSimulatedRequest(value, values.namespace as string | undefined, ++n);
      if ('error' in wrapped) throw new UsageError(`${file}: ${wrapped.error}`);
      const decision = decideAdmission(wrapped.endpoint, wrapped.req, index, options, SIMULATED_DECISION_ID);
      if (!isAllowed(decision.verdict)) refused++;
      results.push({ endpoint: wrapped.endpoint, request: wrapped.req, decision });
    }
    if (results.length === 0) throw new UsageError(`${file} holds no objects`);
    for (const r of results) {
      if (output === 'text') io.stdout(describe(r.request, r.endpoint, r.decision));
      else if (output === 'yaml') {
        const obj = r.request.object;
        const patched = obj && r.decision.patch.length > 0 && isAllowed(r.decision.verdict)
          ? jsonpatch.applyPatch(structuredClone(obj), r.decision.patch as jsonpatch.Operation[], true, false).newDocument
          : obj;
        io.stdout('---\n' + stringify(patched));
      }
    }
    if (output === 'json') {
      io.stdout(JSON.stringify(results.map((r) => ({ endpoint: r.endpoint, kind: r.request.kind, namespace: r.request.namespace, decision: r.decision })), null, 2) + '\n');
    }
    return refused > 0 ? EXIT.PROBLEMS : EXIT.OK;
  },
};
