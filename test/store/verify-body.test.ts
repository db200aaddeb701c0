/**
 * The verify workers' body scanners (webhook/store/sqlite/verify-body.ts): scanBody accepts only
 * what JSON.parse accepts (whitespace, escaped or repeated compared keys and deep nesting are left
 * to the slow path), and finds the compared fields where JSON.parse does; scanSignedBody finds the
 * same fields in a canonical body from its two ends. The account index line hashes (verify-accounts.ts) add up as a multiset.
 */
import t from 'tap';
import { canonicalJson } from '../../webhook/store/evidence/chain.js';
import { FIELD, createFieldPositions, isIntegerField, isLowerHexField, isRawField, isStringField, scanBody, scanSignedBody } from '../../webhook/store/sqlite/verify-body.js';
import { addLine, addLines, emptyAccountSum, sameAccountSums } from '../../webhook/store/sqlite/verify-accounts.js';
import { aRecord } from './builders.js';

const bytes = (s: string) => Buffer.from(s, 'utf8');
const record = { ...aRecord({ n: 7 }), seq: 7, prevHash: 'a'.repeat(64), nsSeq: 3 };
const canonical = canonicalJson(record);

t.test('a canonical record: both scanners find every compared field', async (t) => {
  for (const scan of [scanBody, scanSignedBody]) {
    const at = createFieldPositions();
    const b = bytes(canonical);
    t.ok(scan(b, at), scan.name);
    t.ok(isStringField(b, at, FIELD.id, record.id), `${scan.name} id`);
    t.ok(isStringField(b, at, FIELD.replica, record.replica), `${scan.name} replica`);
    t.ok(isIntegerField(b, at, FIELD.seq, 7), `${scan.name} seq`);
    t.ok(isStringField(b, at, FIELD.prevHash, record.prevHash), `${scan.name} prevHash`);
    t.ok(isStringField(b, at, FIELD.time, record.time), `${scan.name} time`);
    t.ok(isStringField(b, at, FIELD.namespace, record.namespace), `${scan.name} namespace`);
    t.ok(isStringField(b, at, FIELD.kindKind, 'Pod'), `${scan.name} kind.kind`);
    t.ok(isStringField(b, at, FIELD.verdict, record.verdict), `${scan.name} verdict`);
    t.ok(isStringField(b, at, FIELD.taskRun, 'build-7'), `${scan.name} tekton.taskRun`);
    t.ok(isStringField(b, at, FIELD.pipelineRun, 'release'), `${scan.name} tekton.pipelineRun`);
    t.ok(isIntegerField(b, at, FIELD.nsSeq, 3), `${scan.name} nsSeq`);
    t.ok(isStringField(b, at, FIELD.objectDigest, record.objectDigest!), `${scan.name} objectDigest`);
    t.ok(isRawField(b, at, FIELD.serviceAccounts, JSON.stringify(record.serviceAccounts)), `${scan.name} serviceAccounts`);
    t.notOk(isStringField(b, at, FIELD.verdict, 'denied'), `${scan.name} another verdict`);
    t.notOk(isIntegerField(b, at, FIELD.seq, 8), `${scan.name} another seq`);
  }
});

t.test('isLowerHexField: the field is the lower-case form of an upper-case hex() column, as isStringField of lower() says', async (t) => {
  const at = createFieldPositions();
  const digest = record.objectDigest!;
  const b = bytes(canonical);
  t.ok(scanBody(b, at));
  t.ok(isLowerHexField(b, at, FIELD.objectDigest, digest.toUpperCase()), 'the upper-case column');
  for (const column of [digest, digest.toUpperCase().replace(/.$/, 'G'), digest.toUpperCase().slice(1), `${digest.toUpperCase()}0`, 'not a digest']) {
    t.equal(isLowerHexField(b, at, FIELD.objectDigest, column), isStringField(b, at, FIELD.objectDigest, column.toLowerCase()) && column === column.toUpperCase() && /^[0-9A-F]*$/.test(column), column);
  }
  const upper = bytes(canonical.replace(digest, digest.toUpperCase()));
  t.ok(scanBody(upper, at));
  t.notOk(isLowerHexField(upper, at, FIELD.objectDigest, digest.toUpperCase()), 'an upper-case body is not the lower-case digest');
  t.notOk(isLowerHexField(b, at, FIELD.id, digest.toUpperCase()), 'another field');
});

t.test('scanBody: true only for JSON.parse-able text, false for what the slow path must decide', async (t) => {
  const inner = canonical.slice(1, -1);
  const cases: Array<[string, string, boolean]> = [
    ['canonical', canonical, true],
    ['escapes in other strings', `{"a":"x\\"y\\\\z\\u00e9\\n",${inner}}`, true],
    ['non-ASCII UTF-8 in a string', `{"a":"é✓",${inner}}`, true],
    ['numbers of every form', `{"a":[0,-1,1.5,2e10,-3.25E-7,1e+2],${inner}}`, true],
    ['literals and empty containers', `{"a":[true,false,null,{},[]],${inner}}`, true],
    ['whitespace', canonical.replace(',', ', '), false],
    ['a repeated compared key', `{${inner},"verdict":"denied"}`, false],
    ['an escaped compared key', `{"\\u0069d":"x",${inner.replace(/"id":"[^"]*",/, '')}}`, false],
    ['truncated', canonical.slice(0, -1), false],
    ['trailing bytes', `${canonical}x`, false],
    ['a raw control character in a string', `{"a":"x\ty",${inner}}`, false],
    ['a bad escape', `{"a":"\\x",${inner}}`, false],
    ['a leading zero', `{"a":01,${inner}}`, false],
    ['a bare minus', `{"a":-,${inner}}`, false],
    ['a trailing comma', `{${inner},}`, false],
    ['single quotes', `{'a':1,${inner}}`, false],
    ['nesting deeper than 64', `{"a":${'['.repeat(70)}${']'.repeat(70)},${inner}}`, false],
  ];
  for (const [name, text, want] of cases) {
    const at = createFieldPositions();
    t.equal(scanBody(bytes(text), at), want, name);
    if (want) t.doesNotThrow(() => JSON.parse(text), `${name}: JSON.parse agrees`);
  }
  const invalidUtf8 = Buffer.concat([bytes(`{"a":"`), Buffer.from([0xc3, 0x28]), bytes(`",${inner}}`)]);
  t.notOk(scanBody(invalidUtf8, createFieldPositions()), 'invalid UTF-8');
});

t.test('a non-ASCII value is never matched byte by byte against a column (the slow path decides)', async (t) => {
  const b = bytes(canonicalJson({ ...record, namespace: 'é', serviceAccounts: ['é/ci'] }));
  for (const scan of [scanBody, scanSignedBody]) {
    const at = createFieldPositions();
    t.ok(scan(b, at), scan.name);
    // The UTF-8 bytes of é read as Latin-1 characters.
    t.notOk(isStringField(b, at, FIELD.namespace, Buffer.from('é').toString('latin1')), `${scan.name}: namespace`);
    t.notOk(isStringField(b, at, FIELD.namespace, 'é'), `${scan.name}: namespace as written`);
    t.notOk(isRawField(b, at, FIELD.serviceAccounts, `["${Buffer.from('é').toString('latin1')}/ci"]`), `${scan.name}: serviceAccounts`);
  }
});

t.test('scanSignedBody: strings with escaped quotes and trailing backslashes on both ends', async (t) => {
  const tricky = { ...record, name: 'a "quoted" name\\', reasons: [{ code: 'X', message: 'say "hi" \\ end\\' }], user: { username: '\\"', groups: ['"', '\\'] } };
  const b = bytes(canonicalJson(tricky));
  const strict = createFieldPositions();
  const signed = createFieldPositions();
  t.ok(scanBody(b, strict));
  t.ok(scanSignedBody(b, signed));
  t.strictSame([...signed], [...strict], 'the same positions as the full scan');
  t.ok(isStringField(b, signed, FIELD.verdict, record.verdict));
  t.ok(isStringField(b, signed, FIELD.namespace, record.namespace));
});

t.test('scanSignedBody: a body not shaped as the writer writes it is left to the slow path', async (t) => {
  t.notOk(scanSignedBody(bytes(canonical.slice(0, -1)), createFieldPositions()), 'truncated');
  t.notOk(scanSignedBody(bytes(`[${canonical}]`), createFieldPositions()), 'not an object');
  const at = createFieldPositions();
  // A record without tekton, nsSeq and objectDigest: the absent fields stay absent.
  const { tekton: _t, objectDigest: _o, ...plain } = record;
  const b = bytes(canonicalJson({ ...plain, nsSeq: undefined }));
  t.ok(scanSignedBody(b, at));
  t.equal(at[2 * FIELD.tekton], -1);
  t.equal(at[2 * FIELD.objectDigest], -1);
  t.equal(at[2 * FIELD.nsSeq], -1);
  t.ok(isStringField(b, at, FIELD.verdict, record.verdict));
});

t.test('account lines: a shared prefix hashes as the whole line; any change moves the sum', async (t) => {
  const key = [0x01234567, -0x76543211] as const;
  for (const prefix of ['2025-12-02T00:00:00.000000Z\tid-1\tweb\tPod\tpatched\ttzw-0\t', 'odd\t']) {
    const whole = emptyAccountSum();
    for (const k of ['web/ci-builder', 'ci-builder', '', 'x']) addLine(whole, key, prefix + k);
    const shared = emptyAccountSum();
    addLines(shared, key, prefix, ['web/ci-builder', 'ci-builder', '', 'x']);
    t.strictSame(shared, whole, `prefix of length ${prefix.length}`);
  }
  const a = emptyAccountSum();
  addLine(a, key, 'line-1');
  addLine(a, key, 'line-2');
  const swapped = emptyAccountSum();
  addLine(swapped, key, 'line-2');
  addLine(swapped, key, 'line-1');
  t.ok(sameAccountSums(a, swapped), 'order does not matter');
  for (const other of [['line-1', 'line-3'], ['line-1'], ['line-1', 'line-2', 'line-2'], ['lime-2', 'line-1']]) {
    const b = emptyAccountSum();
    for (const l of other) addLine(b, key, l);
    t.notOk(sameAccountSums(a, b), `${other.join(', ')} differs`);
  }
  const otherKey = emptyAccountSum();
  addLine(otherKey, [1, 2], 'line-1');
  addLine(otherKey, [1, 2], 'line-2');
  t.notOk(sameAccountSums(a, otherKey), 'another key gives another sum');
});
