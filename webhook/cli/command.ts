/**
 * The interface every `tzw` command implements. Command modules import this, never the dispatcher
 * (run.ts), so run.ts is the only module that knows every command.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { UsageError, type CliIo } from './io.js';

export type CommandOptions = NonNullable<ParseArgsConfig['options']>;

export interface CommandArgs {
  values: Record<string, unknown>;
  positionals: string[];
}

export interface Command {
  /** node:util parseArgs options; parsed strictly (unknown flags are usage errors). */
  options: CommandOptions;
  /** Returns the exit code (io.ts EXIT). Throws UsageError for bad arguments; other errors exit 1. */
  run(args: CommandArgs, io: CliIo): Promise<number>;
}

/** Parses flags strictly: an unknown or malformed flag is a UsageError naming it. */
export function parseCommandArgs(command: Command, argv: string[]): CommandArgs {
  try {
    const { values, positionals } = parseArgs({ args: argv, options: command.options, allowPositionals: true, strict: true });
    return { values: values as Record<string, unknown>, positionals };
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}
