/**
 * `tzw mappings check`: invalid and conflicting IdentityMappings, bad namespace labels, and the
 * ServiceAccounts in enforce namespaces whose runs would be denied. Exit 1 when anything is found.
 */
import { EXIT, UsageError, type CliIo } from './io.js';
import { gatherObjects, loadCliConfig } from './objects.js';
import type { Command } from './command.js';

export interface CheckFinding {
  kind: 'invalid-mapping' | 'conflict' | 'invalid-namespace' | 'would-be-denied';
  message: string;
}

export const mappingsCheckCommand: Command = {
  options: {
    objects: { type: 'string', multiple: true },
    config: { type: 'string', short: 'c' },
    output: { type: 'string', short: 'o', default: 'text' },
  },
  async run({ values, positionals }, io: CliIo): Promise<number> {
    if (positionals.length > 0) throw new UsageError(`unexpected argument "${positionals[0]}"`);
    const output = values.output as string;
    if (output !== 'text' && output !== 'json') throw new UsageError(`-o must be text or json, got "${output}"`);
    const config = loadCliConfig(values.config as string | undefined, io);
    const { index, from } = await gatherObjects(values.objects as string[] | undefined, config, io.env);
    const findings: CheckFinding[] = index.problems().map((p) => ({ kind: p.kind, message: p.message }));
    let enforced = 0;
    for (const sa of index.serviceAccounts()) {
      const ns = index.namespace(sa.namespace);
      if (ns?.mode !== 'enforce') continue;
      enforced++;
      const found = index.lookup(sa.namespace, sa.name);
      if (found.kind === 'mapped') continue;
      const why = found.kind === 'unmapped' ? 'no IdentityMapping claims it'
        : found.kind === 'conflict' ? `claimed by several IdentityMappings (${found.mappings.join(', ')})`
        : `the IdentityMapping ${found.mapping} that claims it is invalid`;
      findings.push({ kind: 'would-be-denied', message: `ServiceAccount ${sa.namespace}/${sa.name} (enforce namespace): runs using it would be denied: ${why}` });
    }
    const counts = index.counts();
    if (output === 'json') {
      io.stdout(JSON.stringify({ from, counts, enforcedServiceAccounts: enforced, findings }, null, 2) + '\n');
    } else {
      io.stdout(`Checked ${counts.mappings} IdentityMappings, ${counts.namespaces} namespaces, ${counts.serviceAccounts} ServiceAccounts (${enforced} in enforce namespaces) from ${from}.\n`);
      if (findings.length === 0) io.stdout('No problems found.\n');
      for (const f of findings) io.stdout(`${f.kind.toUpperCase().padEnd(18)} ${f.message}\n`);
    }
    return findings.length > 0 ? EXIT.PROBLEMS : EXIT.OK;
  },
};
