/**
 * Small readers for untyped Kubernetes objects. The request object arrives as parsed JSON; nothing
 * here copies or changes it.
 */

export type JsonObject = Record<string, unknown>;

export function isObject(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** A short JSON type name for error messages: `number`, `array`, `null`, `object`, ... */
export function typeName(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  return typeof v;
}

/** `value` if it is a non-empty string, else undefined (wrong types are the caller's business). */
export function nonEmptyString(v: unknown): string | undefined {
  return typeof v === 'string' && v.length > 0 ? v : undefined;
}

/** metadata.name, else metadata.generateName, else ''. */
export function objectName(object: JsonObject | null | undefined): string {
  const md = object?.metadata;
  if (!isObject(md)) return '';
  return nonEmptyString(md.name) ?? nonEmptyString(md.generateName) ?? '';
}

/** The string value of a label, or undefined when labels or the key are absent or not strings. */
export function labelValue(object: JsonObject | null | undefined, key: string): string | undefined {
  const md = object?.metadata;
  if (!isObject(md) || !isObject(md.labels)) return undefined;
  return nonEmptyString(md.labels[key]);
}
