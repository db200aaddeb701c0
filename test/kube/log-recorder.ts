/** A pino-shaped logger that records lines, for asserting what a source logged. */
import type { SourceLogger } from '../../webhook/kube/source.js';

export interface LogLine {
  level: 'info' | 'warn' | 'error';
  fields: Record<string, unknown>;
  msg: string;
}

export function createLogRecorder(): SourceLogger & { lines: LogLine[]; at(level: LogLine['level']): string[] } {
  const lines: LogLine[] = [];
  const rec = (level: LogLine['level']) => (fields: Record<string, unknown>, msg: string) => void lines.push({ level, fields, msg });
  return { lines, info: rec('info'), warn: rec('warn'), error: rec('error'), at: (level) => lines.filter((l) => l.level === level).map((l) => l.msg) };
}
