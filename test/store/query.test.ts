import t from 'tap';
import fc from 'fast-check';
import { decodeCursor, encodeCursor, isUnfiltered, parseDecisionFilter, toCanonicalTime, type FilterParams } from '../../webhook/store/query.js';

t.test('parseDecisionFilter accepts every filter and normalises times', async (t) => {
  const cases: Array<[string, FilterParams, object]> = [
    ['nothing: default limit', {}, { limit: 100 }],
    ['undefined values are absent', { namespace: undefined }, { limit: 100 }],
    [
      'all filters',
      {
        namespace: 'payments',
        serviceAccount: 'payments/ci-builder',
        verdict: 'denied',
        kind: 'PipelineRun',
        taskRun: 'build-1',
        pipelineRun: 'release.v2',
        since: '2026-01-01T00:00:00Z',
        until: '2026-01-02T01:00:00.5+01:00',
        limit: '1000',
      },
      {
        limit: 1000,
        namespace: 'payments',
        serviceAccount: 'payments/ci-builder',
        verdict: 'denied',
        kind: 'PipelineRun',
        taskRun: 'build-1',
        pipelineRun: 'release.v2',
        since: '2026-01-01T00:00:00.000000Z',
        until: '2026-01-02T00:00:00.500000Z',
      },
    ],
    ['bare ServiceAccount name', { serviceAccount: 'default' }, { limit: 100, serviceAccount: 'default' }],
    ['objectDigest, as sha256sum prints it (either case)', { objectDigest: 'AB'.repeat(32) }, { limit: 100, objectDigest: 'ab'.repeat(32) }],
    ['a single-element array (repeated-key parsers)', { verdict: ['allowed'] }, { limit: 100, verdict: 'allowed' }],
    ['limit 1', { limit: '1' }, { limit: 1 }],
  ];
  for (const [name, params, filter] of cases) t.strictSame(parseDecisionFilter(params), { ok: true, filter }, name);
  const cursor = encodeCursor({ time: '2026-01-01T00:00:00.000000Z', id: 'x' });
  t.strictSame(parseDecisionFilter({ cursor, limit: '5' }), { ok: true, filter: { limit: 5, cursor } }, 'cursor');
  t.strictSame(parseDecisionFilter({ format: 'csv', namespace: 'a' }, { ignore: ['format'] }), { ok: true, filter: { limit: 100, namespace: 'a' } }, 'ignored keys');
});

t.test('parseDecisionFilter rejects bad input with one clear message per problem', async (t) => {
  const cases: Array<[string, FilterParams, string[]]> = [
    ['unknown key', { namespce: 'a' }, ['unknown filter "namespce" (allowed: namespace, serviceAccount, verdict, kind, taskRun, pipelineRun, objectDigest, since, until, limit, cursor)']],
    ['bad verdict', { verdict: 'ok' }, ['verdict "ok" is not one of allowed, patched, denied, warned, errored, rejected']],
    ['repeated key', { namespace: ['a', 'b'] }, ['namespace is given 2 times; give it once']],
    ['empty value', { kind: '' }, ['kind is empty; omit it or give a value']],
    ['bad namespace', { namespace: 'Payments' }, ['namespace "Payments" is not a valid namespace name (lowercase letters, digits and "-", at most 63)']],
    ['too long namespace', { namespace: 'a'.repeat(64) }, [`namespace "${'a'.repeat(64)}" is not a valid namespace name (lowercase letters, digits and "-", at most 63)`]],
    ['bad ServiceAccount', { serviceAccount: 'a/b/c' }, ['serviceAccount "a/b/c" must be "namespace/name" or "name" (Kubernetes names)']],
    ['bad kind', { kind: 'Task Run' }, ['kind "Task Run" is not a Kubernetes kind name (e.g. TaskRun, PipelineRun, Pod)']],
    ['bad taskRun', { taskRun: 'Build_1' }, ['taskRun "Build_1" is not a valid object name']],
    ['short objectDigest', { objectDigest: 'abc123' }, ['objectDigest "abc123" is not a sha256 digest (64 hex digits, as `tzw decisions digest` prints)']],
    ['objectDigest with a prefix', { objectDigest: `sha256:${'a'.repeat(64)}` }, [`objectDigest "sha256:${'a'.repeat(64)}" is not a sha256 digest (64 hex digits, as \`tzw decisions digest\` prints)`]],
    ['date only', { since: '2026-01-01' }, ['since "2026-01-01" is not an RFC 3339 date-time (e.g. 2026-11-25T22:45:14Z or 2026-11-25T23:45:14.5+01:00)']],
    ['no zone', { until: '2026-01-01T00:00:00' }, ['until "2026-01-01T00:00:00" is not an RFC 3339 date-time (e.g. 2026-11-25T22:45:14Z or 2026-11-25T23:45:14.5+01:00)']],
    ['since after until', { since: '2026-01-02T00:00:00Z', until: '2026-01-01T00:00:00Z' }, ['since (2026-01-02T00:00:00.000000Z) must be before until (2026-01-01T00:00:00.000000Z)']],
    ['limit 0', { limit: '0' }, ['limit "0" must be a whole number from 1 to 1000']],
    ['limit 1001', { limit: '1001' }, ['limit "1001" must be a whole number from 1 to 1000']],
    ['limit not a number', { limit: '10abc' }, ['limit "10abc" must be a whole number from 1 to 1000']],
    ['limit negative', { limit: '-5' }, ['limit "-5" must be a whole number from 1 to 1000']],
    ['bad cursor', { cursor: 'not-a-cursor' }, ['cursor is not valid: pass the nextCursor of a previous page unchanged']],
    ['several problems at once', { verdict: 'x', limit: 'y', extra: '1' }, ['unknown filter "extra" (allowed: namespace, serviceAccount, verdict, kind, taskRun, pipelineRun, objectDigest, since, until, limit, cursor)', 'verdict "x" is not one of allowed, patched, denied, warned, errored, rejected', 'limit "y" must be a whole number from 1 to 1000']],
  ];
  for (const [name, params, errors] of cases) t.strictSame(parseDecisionFilter(params), { ok: false, errors }, name);
});

t.test('toCanonicalTime', async (t) => {
  const cases: Array<[string, string | undefined]> = [
    ['2026-11-25T22:45:14.123456Z', '2026-11-25T22:45:14.123456Z'],
    ['2026-11-25T22:45:14Z', '2026-11-25T22:45:14.000000Z'],
    ['2026-11-25t22:45:14.1z', '2026-11-25T22:45:14.100000Z'],
    ['2026-11-25 22:45:14.123456789Z', '2026-11-25T22:45:14.123456Z'],
    ['2026-11-26T00:15:14+01:30', '2026-11-25T22:45:14.000000Z'],
    ['2026-11-25T20:45:14.5-02:00', '2026-11-25T22:45:14.500000Z'],
    ['2024-02-29T00:00:00Z', '2024-02-29T00:00:00.000000Z'],
    ['2016-12-31T23:59:60Z', '2017-01-01T00:00:00.000000Z'],
    ['0001-01-01T00:00:00Z', '0001-01-01T00:00:00.000000Z'],
    ['2025-02-29T00:00:00Z', undefined],
    ['2026-13-01T00:00:00Z', undefined],
    ['2026-01-01T24:00:00Z', undefined],
    ['2026-01-01T00:00:00+24:00', undefined],
    ['2026-01-01T00:00Z', undefined],
    ['1767225600', undefined],
    ['', undefined],
  ];
  for (const [input, want] of cases) t.equal(toCanonicalTime(input), want, input);
  fc.assert(
    fc.property(fc.date({ min: new Date('0001-01-01T00:00:00Z'), max: new Date('9999-12-31T23:59:59Z'), noInvalidDate: true }), (d) => {
      const iso = d.toISOString();
      t.equal(toCanonicalTime(iso), iso.replace('Z', '000Z'));
    }),
    { numRuns: 200 },
  );
});

t.test('cursors round-trip and reject anything else', async (t) => {
  fc.assert(
    fc.property(fc.date({ min: new Date('2000-01-01T00:00:00Z'), max: new Date('2100-01-01T00:00:00Z'), noInvalidDate: true }), fc.string({ minLength: 1, maxLength: 60 }), (d, id) => {
      const c = { time: d.toISOString().replace('Z', '000Z'), id };
      const token = encodeCursor(c);
      t.match(token, /^[A-Za-z0-9_-]+$/);
      t.strictSame(decodeCursor(token), c);
    }),
    { numRuns: 100 },
  );
  const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
  for (const [name, token] of [
    ['not base64url', 'a+b/'],
    ['not JSON', Buffer.from('{').toString('base64url')],
    ['wrong shape', b64({ time: 'x' })],
    ['three elements', b64(['2026-01-01T00:00:00.000000Z', 'a', 'b'])],
    ['non-canonical time', b64(['2026-01-01T00:00:00Z', 'a'])],
    ['empty id', b64(['2026-01-01T00:00:00.000000Z', ''])],
    ['empty', ''],
  ] as const) t.equal(decodeCursor(token), undefined, name);
});

t.test('isUnfiltered', async (t) => {
  t.equal(isUnfiltered(undefined), true);
  t.equal(isUnfiltered({}), true);
  t.equal(isUnfiltered({ namespace: undefined }), true);
  t.equal(isUnfiltered({ namespace: 'a' }), false);
  t.equal(isUnfiltered({ since: '2026-01-01T00:00:00.000000Z' }), false);
});
