/**
 * RFC 6901 JSON Pointer escaping for one reference token. Annotation keys such as
 * `tekton-zscaler.io/status` contain `/`, which would otherwise be read as a path separator.
 * https://www.rfc-editor.org/rfc/rfc6901#section-3
 */

/**
 * Escapes one reference token: `~` → `~0` first, then `/` → `~1` (in that order, so a `/` never
 * turns into a `~01`). Pure; returns the input unchanged when there is nothing to escape.
 */
export function escapePointer(token: string): string {
  if (!token.includes('~') && !token.includes('/')) return token;
  return token.replaceAll('~', '~0').replaceAll('/', '~1');
}
