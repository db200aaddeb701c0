/** `tzw` command dispatcher: run(argv, io) → exit code. Never throws; usage errors exit 2. */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { EXIT, UsageError, type CliIo } from './io.js';

export const USAGE = `tzw — tekton-zscaler-webhook

Usage:
  tzw serve [--config FILE] [--seed-reviews DIR]
  tzw simulate -f OBJECT.yaml [--objects DIR]... [--namespace NS] [-o text|json|yaml] [--config FILE]
  tzw mappings check [--objects DIR]... [-o text|json] [--config FILE]
  tzw decisions list   --store URL [--namespace NS] [--service-account SA] [--verdict V] [--kind K]
                       [--task-run N] [--pipeline-run N] [--since T] [--until T] [--limit N] [--cursor C]
                       [-o table|json|jsonl|csv]
  tzw decisions get ID --store URL [-o table|json]
  tzw decisions export --store URL --out FILE [filters] [--jwks FILE] [--config FILE]
  tzw decisions verify (--store URL | --bundle FILE) [--jwks FILE] [--config FILE] [-o text|json]
  tzw version

Exit codes: 0 ok, 1 problems found or failure, 2 usage error, 3 verification failed.
`;

export interface Command {
  options: NonNullable<ParseArgsConfig['options']>;
  run(args: { values: Record<string, unknown>; positionals: string[] }, io: CliIo): Promise<number>;
}

/** Parses flags strictly: an unknown or malformed flag is a UsageError naming it. */
export function parseCommandArgs(command: Command, argv: string[]): { values: Record<string, unknown>; positionals: string[] } {
  try {
    const { values, positionals } = parseArgs({ args: argv, options: command.options, allowPositionals: true, strict: true });
    return { values: values as Record<string, unknown>, positionals };
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

async function loadCommand(argv: string[]): Promise<{ command: Command; rest: string[] } | undefined> {
  const [first, second] = argv;
  switch (first) {
    case 'serve':
      return { command: (await import('./serve.js')).serveCommand, rest: argv.slice(1) };
    case 'simulate':
      return { command: (await import('./simulate.js')).simulateCommand, rest: argv.slice(1) };
    case 'mappings':
      if (second === 'check') return { command: (await import('./mappings.js')).mappingsCheckCommand, rest: argv.slice(2) };
      return undefined;
    case 'decisions': {
      const m = await import('./decisions.js');
      const sub = second ? m.decisionsCommands[second] : undefined;
      return sub ? { command: sub, rest: argv.slice(2) } : undefined;
    }
    default:
      return undefined;
  }
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
