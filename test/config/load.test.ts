import t from 'tap';
import { envNameFor, loadConfig, toListenOptions, withOverrides } from '../../webhook/config/load.js';
import { defaultConfig } from '../../webhook/config/schema.js';

const files = (map: Record<string, string>) => (p: string): string => {
  if (p in map) return map[p]!;
  throw Object.assign(new Error(`ENOENT: ${p}`), { code: 'ENOENT' });
};

t.test('no file, no env: the embedded standalone defaults', async (t) => {
  const r = loadConfig({ env: {}, readFile: files({}), hostname: 'box' });
  t.ok(r.ok);
  if (r.ok) t.strictSame(r.config, defaultConfig('box'));
});

t.test('file values then TZW_* env overrides, typed by the schema', async (t) => {
  const yaml = `
admission: {listen: "127.0.0.1:9443"}
store: {url: "sqlite:/tmp/x.db"}
injection: {sidecar: {mode: classic, image: "img:1"}}
source: {kind: files, paths: [a, b]}
`;
  const r = loadConfig({
    configFile: 'c.yaml',
    env: { TZW_STORE_URL: 'postgres://u:p@db/tzw', TZW_ADMISSION_DEADLINE_MS: '5000', TZW_SOURCE_PATHS: 'x,y', TZW_INJECTION_SIDECAR_RESOURCES: '{"limits":{"memory":"64Mi"}}', PATH: '/bin' },
    readFile: files({ 'c.yaml': yaml }), hostname: 'h',
  });
  t.ok(r.ok, r.ok ? '' : r.errors.join('; '));
  if (!r.ok) return;
  t.equal(r.config.admission.listen, '127.0.0.1:9443');
  t.equal(r.config.admission.deadlineMs, 5000);
  t.equal(r.config.store.url, 'postgres://u:p@db/tzw');
  t.strictSame(r.config.source.paths, ['x', 'y']);
  t.equal(r.config.injection.sidecar.mode, 'classic');
  t.equal(r.config.injection.sidecar.image, 'img:1');
  t.strictSame(r.config.injection.sidecar.resources, { limits: { memory: '64Mi' } });
  t.strictSame(r.config.injection.sidecar.args, defaultConfig('h').injection.sidecar.args, 'untouched keys keep defaults');
});

t.test('every problem is named at once', async (t) => {
  const yaml = `
admision: {listen: ":1"}
admission: {listen: "nope", deadlineMs: "fast", tls: {certFile: /missing.crt, keyFile: /missing.key}}
store: {url: "mysql://x"}
injection: {sidecar: {mode: sidecar}}
`;
  const r = loadConfig({ configFile: 'c.yaml', env: { TZW_METRICS_LISTEN: '127.0.0.1:x', TZW_BOGUS: '1', TZW_ADMISSION_DEADLINE_MS: 'soon' }, readFile: files({ 'c.yaml': yaml }), hostname: 'h' });
  t.notOk(r.ok);
  if (r.ok) return;
  const all = r.errors.join('\n');
  for (const re of [/additional properties "admision"/, /admission\.listen must match pattern/, /admission\.deadlineMs must be integer/, /store\.url must match pattern/, /injection\.sidecar\.mode must be equal to one of the allowed values \(native, classic\)/, /TZW_BOGUS: unknown setting/, /TZW_ADMISSION_DEADLINE_MS: must be a number/, /metrics\.listen must match/]) {
    t.match(all, re);
  }
});

t.test('TZW_PG_URL is refused like any unknown variable, pointing at TZW_STORE_URL; test-only variables pass', async (t) => {
  const refused = loadConfig({ env: { TZW_PG_URL: 'postgres://u:secret@db/tzw' }, readFile: files({}), hostname: 'h' });
  t.strictSame(refused, { ok: false, errors: ['TZW_PG_URL: unknown setting (the PostgreSQL URL is store.url: set TZW_STORE_URL=postgres://…)'] }, 'the value is never echoed');
  const ok = loadConfig({ env: { TZW_STORE_URL: 'postgres://u:p@db/tzw', TZW_TEST_PG_URL: 'postgres://t', TZW_BENCH_PG_URL: 'postgres://b', TZW_CORPUS_DIR: '/c' }, readFile: files({}), hostname: 'h' });
  t.ok(ok.ok);
  if (ok.ok) t.equal(ok.config.store.url, 'postgres://u:p@db/tzw');
});

t.test('semantic checks: unreadable TLS files, auth none off loopback, oidc settings, port clash', async (t) => {
  const r = loadConfig({
    configFile: 'c.yaml',
    env: {},
    readFile: files({ 'c.yaml': 'admission: {tls: {certFile: /nope.crt, keyFile: /nope.key}}\nauditApi: {listen: ":8444"}\nmetrics: {listen: "127.0.0.1:8443"}\n' }),
    hostname: 'h',
  });
  t.notOk(r.ok);
  if (r.ok) return;
  t.match(r.errors.join('\n'), /admission\.tls: \/nope\.crt cannot be read \(ENOENT\)/);
  t.match(r.errors.join('\n'), /auth\.mode "none" is only allowed on a loopback listener/);
  t.match(r.errors.join('\n'), /metrics\.listen uses port 8443, already used by admission\.listen/);
  const oidc = loadConfig({ env: { TZW_AUDIT_API_AUTH_MODE: 'oidc', TZW_AUDIT_API_AUTH_ISSUER: 'https://idp' }, readFile: files({}), hostname: 'h' });
  t.notOk(oidc.ok);
  if (!oidc.ok) t.strictSame(oidc.errors, ['auditApi.auth.jwksUri is required when auditApi.auth.mode is "oidc"', 'auditApi.auth.audience is required when auditApi.auth.mode is "oidc"', 'auditApi.auth.group is required when auditApi.auth.mode is "oidc"']);
  // kubernetes mode needs nothing more, on any listener; audiences come as a list (comma-separated in env).
  const kube = loadConfig({ env: { TZW_AUDIT_API_AUTH_MODE: 'kubernetes', TZW_AUDIT_API_LISTEN: ':8444', TZW_AUDIT_API_AUTH_AUDIENCES: 'tzw-audit, other' }, readFile: files({}), hostname: 'h' });
  t.strictSame(kube.ok ? kube.config.auditApi.auth : kube.errors, { mode: 'kubernetes', audiences: ['tzw-audit', 'other'], groupsClaim: 'groups' });
  const badMode = loadConfig({ env: { TZW_AUDIT_API_AUTH_MODE: 'kerberos' }, readFile: files({}), hostname: 'h' });
  t.match(badMode.ok ? '' : badMode.errors.join('\n'), /auditApi\.auth\.mode must be equal to one of the allowed values \(none, oidc, kubernetes\)/);
});

t.test('unreadable or broken config file', async (t) => {
  const missing = loadConfig({ configFile: '/etc/none.yaml', env: {}, readFile: files({}), hostname: 'h' });
  t.strictSame(missing, { ok: false, errors: ['config file /etc/none.yaml: cannot be read (ENOENT)'] });
  const broken = loadConfig({ configFile: 'c.yaml', env: {}, readFile: files({ 'c.yaml': 'a: [1,\n' }), hostname: 'h' });
  t.notOk(broken.ok);
  if (!broken.ok) t.match(broken.errors[0], /not valid YAML/);
});

t.test('helpers', async (t) => {
  t.equal(envNameFor(['auditApi', 'auth', 'groupsClaim']), 'TZW_AUDIT_API_AUTH_GROUPS_CLAIM');
  t.strictSame(toListenOptions(':8443'), { host: '0.0.0.0', port: 8443 });
  t.strictSame(toListenOptions('[::1]:9'), { host: '::1', port: 9 });
  const base = defaultConfig('h');
  const merged = withOverrides(base, { admission: { deadlineMs: 100 }, injection: { sidecar: { probe: { tcpSocket: { port: 1 } } } } });
  t.equal(merged.admission.listen, base.admission.listen, 'schema objects merge key by key');
  t.equal(merged.admission.deadlineMs, 100);
  t.strictSame(merged.injection.sidecar.probe, { tcpSocket: { port: 1 } }, 'opaque Kubernetes objects are replaced whole');
});
