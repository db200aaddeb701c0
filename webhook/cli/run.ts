/** `tzw` command dispatcher: run(argv, io) → exit code. Never throws; usage errors exit 2. */
import { parseCommandArgs, type Command } from './command.js';
import { EXIT, UsageError, type CliIo } from './io.js';

export const USAGE = `tzw — tekton-zscaler-webhook

Usage:
  tzw serve [--config FILE] [--seed-reviews DIR]
  tzw simulate -f OBJECT.yaml [--objects DIR]... [--namespace NS] [-o text|json|yaml] [--config FILE]
  tzw mappings check [--objects DIR]... [-o text|json] [--config FILE]
  tzw namespaces readiness [--since 7d] (--store URL | --server URL [--token-file F] [--cacert F]) [-o text|json] [--quiet]
  tzw decisions list   (--store URL | --server URL) [--namespace NS] [--service-account SA] [--verdict V]
                       [--kind K] [--task-run N] [--pipeline-run N] [--object-digest HEX] [--since T]
                       [--until T] [--limit N] [--cursor C] [-o table|json|jsonl|csv]
  tzw decisions get ID (--store URL | --server URL) [-o table|json]
  tzw decisions export (--store URL [--jwks FILE] [--config FILE] | --server URL) --out FILE [filters] [--quiet]
  tzw decisions digest -f OBJECT.json|yaml   (the objectDigest of that object, as records hold it)
  tzw decisions verify (--store URL [--workers N] | --bundle FILE | --server URL [filters]) [--jwks FILE] [--config FILE] [-o text|json] [--quiet]
  tzw version

--server https://HOST:PORT reads a running webhook's audit API instead of the database:
  [--token-file FILE] (else the token in TZW_TOKEN) [--cacert FILE] [--tls-server-name NAME]

Long commands (export, verify, readiness) show a progress line on a terminal's stderr; --quiet: none.
Exit codes: 0 ok, 1 problems found or failure, 2 usage error, 3 verification failed, 130 interrupted (Ctrl-C).
`;

/**
 * Every command, keyed by its words ("decisions list"), loaded on demand so `tzw version` does not
 * load the store or the server. This table is the only place that knows every command.
 */
const COMMANDS: ReadonlyMap<string, () => Promise<Command>> = new Map<string, () => Promise<Command>>([
  ['serve', async () => (await import('./serve.js')).serveCommand],
  ['simulate', async () => (await import('./simulate.js')).simulateCommand],
  ['mappings check', async () => (await import('./mappings.js')).mappingsCheckCommand],
  ['namespaces readiness', async () => (await import('./namespaces.js')).namespacesReadinessCommand],
  ['decisions list', async () => (await import('./decisions.js')).decisionsCommands.list],
  ['decisions get', async () => (await import('./decisions.js')).decisionsCommands.get],
  ['decisions export', async () => (await import('./decisions.js')).decisionsCommands.export],
  ['decisions verify', async () => (await import('./decisions.js')).decisionsCommands.verify],
  ['decisions digest', async () => (await import('./digest.js')).decisionsDigestCommand],
]);

/** The command named by the first one or two words of argv (two-word commands win), or undefined. */
async function loadCommand(argv: string[]): Promise<{ command: Command; rest: string[] } | undefined> {
  for (const words of [2, 1]) {
    if (argv.length < words) continue;
    const load = COMMANDS.get(argv.slice(0, words).join(' '));
    if (load) return { command: await load(), rest: argv.slice(words) };
  }
  return undefined;
}

export async function run(argv: string[], io: CliIo): Promise<number> {
  if (argv.length === 0 || argv[0] === 'help' || argv[0] === '--help' || argv[0] === '-h') {
    io.stdout(USAGE);
    return argv.length === 0 ? EXIT.USAGE : EXIT.OK;
  }
  if (argv[0] === 'version' || argv[0] === '--version') {
    io.stdout(`tzw ${VERSION}\n`);
    return EXIT.OK;
  }
  const found = await loadCommand(argv);
  if (!found) {
    io.stderr(`tzw: unknown command "${argv.slice(0, 2).join(' ')}"\n\n${USAGE}`);
    return EXIT.USAGE;
  }
  try {
    const args = parseCommandArgs(found.command, found.rest);
    return await found.command.run(args, io);
  } catch (err) {
    if (err instanceof UsageError) {
      io.stderr(`tzw: ${err.message}\nRun "tzw help" for usage.\n`);
      return EXIT.USAGE;
    }
    const code = (err as { code?: string }).code;
    io.stderr(`tzw: ${(err as Error).message}${code ? ` (${code})` : ''}\n`);
    return EXIT.PROBLEMS;
  }
}

export const VERSION = '0.1.0';
