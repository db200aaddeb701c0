/**
 * `tzw decisions digest -f OBJECT.json|yaml`: the objectDigest a decision record holds for that
 * object (sha256 of its RFC 8785 canonical JSON; DESIGN "Decision records"), so an auditor holding
 * any copy of the object (the audit log's requestObject, a saved manifest) can find its record.
 */
import { parseAllDocuments } from 'yaml';
import type { Command } from './command.js';
import { EXIT, UsageError } from './io.js';
import { toDigestOfObject } from '../store/evidence/object-digest.js';

export const decisionsDigestCommand: Command = {
  options: { file: { type: 'string', short: 'f' } },
  async run({ values, positionals }, io) {
    const file = values.file as string | undefined;
    if (!file) throw new UsageError('decisions digest needs -f OBJECT.json|yaml');
    if (positionals.length) throw new UsageError(`unexpected argument "${positionals[0]}"`);
    let text: string;
    try {
      text = io.readFile(file);
    } catch (err) {
      io.stderr(`cannot read ${file}: ${(err as Error).message}\n`);
      return EXIT.PROBLEMS;
    }
    // JSON as JSON (numbers exactly as JSON.parse reads them, like the API server's body); else YAML.
    let parsedJson: unknown;
    try {
      parsedJson = JSON.parse(text);
    } catch {
      parsedJson = undefined;
    }
    if (parsedJson !== undefined) {
      if (typeof parsedJson !== 'object' || parsedJson === null || Array.isArray(parsedJson)) {
        io.stderr(`${file}: the document is not an object\n`);
        return EXIT.PROBLEMS;
      }
      io.stdout(`${toDigestOfObject(parsedJson)}\n`);
      return EXIT.OK;
    }
    const docs = parseAllDocuments(text);
    if (!Array.isArray(docs) || docs.length !== 1) {
      io.stderr(`${file}: expected exactly one object (a JSON or YAML document), found ${Array.isArray(docs) ? docs.length : 0}\n`);
      return EXIT.PROBLEMS;
    }
    const doc = docs[0]!;
    if (doc.errors.length) {
      io.stderr(`${file}: not JSON or YAML: ${doc.errors[0]!.message}\n`);
      return EXIT.PROBLEMS;
    }
    const object: unknown = doc.toJS();
    if (typeof object !== 'object' || object === null || Array.isArray(object)) {
      io.stderr(`${file}: the document is not an object\n`);
      return EXIT.PROBLEMS;
    }
    io.stdout(`${toDigestOfObject(object)}\n`);
    return EXIT.OK;
  },
};
