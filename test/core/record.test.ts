/**
 * formatMicros (core/record.ts) memoises the second it last formatted: its output must not depend on
 * what it formatted before (same second, next second, earlier times, the epoch).
 */
import t from 'tap';
import { formatMicros } from '../../webhook/core/record.js';

const reference = (micros: bigint): string => new Date(Number(micros / 1000n)).toISOString().slice(0, 19) + '.' + String(micros % 1000000n).padStart(6, '0') + 'Z';

t.test('formatMicros equals the unmemoised form in any order of calls', async (t) => {
  const base = 1_767_225_599_999_998n; // 2025-12-31T23:59:59.999998Z
  const seq = [base, base + 1n, base + 2n, base + 3n, base - 5_000_000n, base + 3n, 0n, 999_999n, 1_000_000n, base + 86_400_000_000n, 253_402_300_799_999_999n];
  for (const m of seq) t.equal(formatMicros(m), reference(m), `${m}`);
  t.equal(formatMicros(base + 2n), '2026-01-01T00:00:00.000000Z');
  t.equal(formatMicros(1_000_001n), '1970-01-01T00:00:01.000001Z');
});
