/**
 * `npx tsx certs/generate.ts --namespace tekton-zscaler --service tekton-zscaler-webhook --out DIR`
 *
 * Writes a CA and a serving certificate for the webhook Service (see USAGE), optionally the webhook
 * configurations with caBundle filled in, a kustomize overlay that deploys all of it, and the
 * checkpoint signing key. Entry point: `run(argv, io)` → exit code; it never throws.
 */
import { existsSync } from 'node:fs';
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { parseAllDocuments, stringify } from 'yaml';
import {
  CertsError,
  createCertificateAuthority,
  createServingCertificate,
  createClientCertificate,
  createSigningKey,
  DEFAULT_CLIENT_COMMON_NAME,
  DEFAULT_CA_DAYS,
  DEFAULT_CLUSTER_DOMAIN,
  DEFAULT_SERVING_DAYS,
  NAMESPACE_NAME_LABEL,
  toAdmissionConfiguration,
  toAdmissionKubeconfig,
  toServiceDnsNames,
  withCaBundle,
  type CertificateAuthority,
} from './lib.js';

export const USAGE = `Usage: npx tsx certs/generate.ts --namespace NS --service SVC --out DIR [options]

Writes DIR/ca.crt, DIR/ca.key, DIR/tls.crt, DIR/tls.key (EC P-256; SANs SVC, SVC.NS, SVC.NS.svc,
SVC.NS.svc.<cluster domain>).

Options:
  --days N               serving certificate lifetime in days (default ${DEFAULT_SERVING_DAYS})
  --ca-days N            CA lifetime in days (default ${DEFAULT_CA_DAYS})
  --ca-cert FILE --ca-key FILE
                         sign with an existing CA instead of creating one (caBundle stays the same)
  --cluster-domain D     default ${DEFAULT_CLUSTER_DOMAIN}
  --webhooks-out FILE    write the webhook configurations with caBundle filled in
  --webhooks-in FILE     the webhook configurations to fill in (default manifests/base/webhooks.yaml)
  --signing-key          also write DIR/signing.key, the ES256 key for Secret tzw-signing-key
  --kustomize            also write DIR/kustomization.yaml: the base + Secret tzw-webhook-tls
                         (+ tzw-signing-key with --signing-key) + caBundle; apply with kubectl apply -k DIR
  --base DIR             the base the overlay builds on (default manifests/base)
  --apiserver-client     also write the API server's client certificate (issue it to the API server so
                         the webhook can require it: admission.tls.clientCAFile): DIR/client-ca.crt,
                         DIR/client-ca.key, DIR/apiserver-client.crt, DIR/apiserver-client.key,
                         DIR/admission-kubeconfig.yaml (credentials inline) and
                         DIR/admission-configuration.yaml (for kube-apiserver --admission-control-config-file);
                         with --kustomize the overlay also adds Secret tzw-client-ca and requires the certificate
  --client-cn NAME       the client certificate's CN (default kube-apiserver; must be in admission.tls.clientNames)
  --client-ca-cert FILE --client-ca-key FILE
                         sign the client certificate with an existing client CA (rotation)
  --kubeconfig-user U    the kubeconfig user the API server matches: '*' (default) or the Service DNS name
  --kubeconfig-path P    where the kubeconfig will live on the control plane, written into
                         admission-configuration.yaml (default /etc/kubernetes/tzw/admission-kubeconfig.yaml)
  --force                overwrite existing files in DIR
`;

export const EXIT = { OK: 0, FAILURE: 1, USAGE: 2 } as const;

export interface GenerateIo {
  stdout(text: string): void;
  stderr(text: string): void;
  /** Defaults to the current time; tests pin it. */
  now?: Date;
}

const REPO_ROOT = fileURLToPath(new URL('..', import.meta.url));
const DEFAULT_BASE_DIR = join(REPO_ROOT, 'manifests', 'base');
/** What manifests/base calls things. */
const BASE_SERVICE = 'tekton-zscaler-webhook';
const BASE_NAMESPACE = 'tekton-zscaler';
/** The Secret names the base Deployment mounts. */
export const TLS_SECRET = 'tzw-webhook-tls';
export const SIGNING_SECRET = 'tzw-signing-key';
/** Secret holding the CA that signs the API server's client certificate (key ca.crt). */
export const CLIENT_CA_SECRET = 'tzw-client-ca';
export const CLIENT_CA_MOUNT = '/etc/tzw/client-ca';
export const DEFAULT_KUBECONFIG_PATH = '/etc/kubernetes/tzw/admission-kubeconfig.yaml';

class UsageError extends Error {}

interface WebhookConfiguration {
  kind: string;
  metadata: { name: string };
  webhooks: Array<{ namespaceSelector?: { matchExpressions?: Array<{ key: string; values?: string[] }> } }>;
}

export async function run(argv: string[], io: GenerateIo): Promise<number> {
  try {
    const options = parseOptions(argv);
    if (options === 'help') {
      io.stdout(USAGE);
      return EXIT.OK;
    }
    const written = await generate(options, io.now ?? new Date());
    io.stdout(written.map((file) => `wrote ${file}\n`).join(''));
    return EXIT.OK;
  } catch (error) {
    if (error instanceof UsageError) {
      io.stderr(`error: ${error.message}\n\n${USAGE}`);
      return EXIT.USAGE;
    }
    if (error instanceof CertsError) {
      io.stderr(`error: ${error.message} (${error.code})\n`);
      return EXIT.USAGE;
    }
    io.stderr(`error: ${(error as Error).message}\n`);
    return EXIT.FAILURE;
  }
}

interface Options {
  namespace: string;
  service: string;
  out: string;
  days: number;
  caDays: number;
  caCert?: string;
  caKey?: string;
  clusterDomain: string;
  webhooksIn: string;
  webhooksOut?: string;
  signingKey: boolean;
  kustomize: boolean;
  base: string;
  force: boolean;
  apiserverClient: boolean;
  clientCn: string;
  clientCaCert?: string;
  clientCaKey?: string;
  kubeconfigUser: string;
  kubeconfigPath: string;
}

function parseOptions(argv: string[]): Options | 'help' {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        namespace: { type: 'string' },
        service: { type: 'string' },
        out: { type: 'string' },
        days: { type: 'string' },
        'ca-days': { type: 'string' },
        'ca-cert': { type: 'string' },
        'ca-key': { type: 'string' },
        'cluster-domain': { type: 'string' },
        'webhooks-in': { type: 'string' },
        'webhooks-out': { type: 'string' },
        'signing-key': { type: 'boolean' },
        kustomize: { type: 'boolean' },
        base: { type: 'string' },
        force: { type: 'boolean' },
        'apiserver-client': { type: 'boolean' },
        'client-cn': { type: 'string' },
        'client-ca-cert': { type: 'string' },
        'client-ca-key': { type: 'string' },
        'kubeconfig-user': { type: 'string' },
        'kubeconfig-path': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  if (values.help) return 'help';
  const missing = (['namespace', 'service', 'out'] as const).filter((name) => values[name] === undefined);
  if (missing.length > 0) throw new UsageError(`missing ${missing.map((name) => `--${name}`).join(', ')}`);
  if ((values['ca-cert'] === undefined) !== (values['ca-key'] === undefined)) {
    throw new UsageError('--ca-cert and --ca-key go together');
  }
  if (values['ca-cert'] !== undefined && values['ca-days'] !== undefined) {
    throw new UsageError('--ca-days has no effect with an existing CA (--ca-cert)');
  }
  if ((values['client-ca-cert'] === undefined) !== (values['client-ca-key'] === undefined)) {
    throw new UsageError('--client-ca-cert and --client-ca-key go together');
  }
  const clientOnly = ['client-cn', 'client-ca-cert', 'kubeconfig-user', 'kubeconfig-path'].filter((k) => values[k as keyof typeof values] !== undefined);
  if (!values['apiserver-client'] && clientOnly.length > 0) throw new UsageError(`${clientOnly.map((k) => `--${k}`).join(', ')} need --apiserver-client`);
  const serviceDns = `${values.service as string}.${values.namespace as string}.svc`;
  const kubeconfigUser = values['kubeconfig-user'] ?? '*';
  if (kubeconfigUser !== '*' && kubeconfigUser !== serviceDns) {
    throw new UsageError(`--kubeconfig-user must be '*' or the Service DNS name the API server dials (${serviceDns}), got ${JSON.stringify(kubeconfigUser)}`);
  }
  return {
    apiserverClient: values['apiserver-client'] ?? false,
    clientCn: values['client-cn'] ?? DEFAULT_CLIENT_COMMON_NAME,
    clientCaCert: values['client-ca-cert'],
    clientCaKey: values['client-ca-key'],
    kubeconfigUser,
    kubeconfigPath: values['kubeconfig-path'] ?? DEFAULT_KUBECONFIG_PATH,
    namespace: values.namespace as string,
    service: values.service as string,
    out: resolve(values.out as string),
    days: toDays('--days', values.days, DEFAULT_SERVING_DAYS),
    caDays: toDays('--ca-days', values['ca-days'], DEFAULT_CA_DAYS),
    caCert: values['ca-cert'],
    caKey: values['ca-key'],
    clusterDomain: values['cluster-domain'] ?? DEFAULT_CLUSTER_DOMAIN,
    webhooksIn: resolve(values['webhooks-in'] ?? join(DEFAULT_BASE_DIR, 'webhooks.yaml')),
    webhooksOut: values['webhooks-out'] === undefined ? undefined : resolve(values['webhooks-out']),
    signingKey: values['signing-key'] ?? false,
    kustomize: values.kustomize ?? false,
    base: resolve(values.base ?? DEFAULT_BASE_DIR),
    force: values.force ?? false,
  };
}

function toDays(flag: string, raw: string | undefined, fallback: number): number {
  if (raw === undefined) return fallback;
  if (!/^[0-9]+$/.test(raw)) throw new UsageError(`${flag} must be a whole number of days, got ${JSON.stringify(raw)}`);
  return Number(raw);
}

/** Creates everything in memory first, so a bad option never leaves half a set of files behind. */
async function generate(options: Options, now: Date): Promise<string[]> {
  const dnsNames = toServiceDnsNames(options.service, options.namespace, options.clusterDomain);
  const ca: CertificateAuthority | Pick<CertificateAuthority, 'certPem' | 'keyPem'> =
    options.caCert !== undefined && options.caKey !== undefined
      ? { certPem: await readFile(options.caCert, 'utf8'), keyPem: await readFile(options.caKey, 'utf8') }
      : await createCertificateAuthority({ days: options.caDays, now });
  const serving = await createServingCertificate(ca, { dnsNames, days: options.days, now });
  const target = { namespace: options.namespace, service: options.service };
  const webhooks = options.webhooksOut === undefined && !options.kustomize
    ? undefined
    : withCaBundle(await readFile(options.webhooksIn, 'utf8'), ca.certPem, target);

  const files = new Map<string, { text: string; secret: boolean }>();
  files.set(join(options.out, 'ca.crt'), { text: ca.certPem, secret: false });
  if (options.caCert === undefined) files.set(join(options.out, 'ca.key'), { text: ca.keyPem, secret: true });
  files.set(join(options.out, 'tls.crt'), { text: serving.certPem, secret: false });
  files.set(join(options.out, 'tls.key'), { text: serving.keyPem, secret: true });
  if (options.signingKey) files.set(join(options.out, 'signing.key'), { text: await createSigningKey(), secret: true });
  if (options.apiserverClient) {
    const clientCa = options.clientCaCert !== undefined && options.clientCaKey !== undefined
      ? { certPem: await readFile(options.clientCaCert, 'utf8'), keyPem: await readFile(options.clientCaKey, 'utf8') }
      : await createCertificateAuthority({ commonName: 'tekton-zscaler-client-ca', days: options.caDays, now });
    const client = await createClientCertificate(clientCa, { commonName: options.clientCn, days: options.days, now });
    files.set(join(options.out, 'client-ca.crt'), { text: clientCa.certPem, secret: false });
    if (options.clientCaCert === undefined) files.set(join(options.out, 'client-ca.key'), { text: clientCa.keyPem, secret: true });
    files.set(join(options.out, 'apiserver-client.crt'), { text: client.certPem, secret: false });
    files.set(join(options.out, 'apiserver-client.key'), { text: client.keyPem, secret: true });
    files.set(join(options.out, 'admission-kubeconfig.yaml'), { text: toAdmissionKubeconfig(options.kubeconfigUser, client), secret: true });
    files.set(join(options.out, 'admission-configuration.yaml'), { text: toAdmissionConfiguration(options.kubeconfigPath), secret: false });
  }
  if (webhooks !== undefined && options.webhooksOut !== undefined) files.set(options.webhooksOut, { text: webhooks, secret: false });
  if (webhooks !== undefined && options.kustomize) {
    files.set(join(options.out, 'kustomization.yaml'), {
      text: toKustomization(options, webhooks, ca.certPem),
      secret: false,
    });
  }

  if (!options.force) {
    const existing = [...files.keys()].filter((file) => existsSync(file));
    if (existing.length > 0) {
      throw new UsageError(`${existing.join(', ')} already exist${existing.length === 1 ? 's' : ''}; pass --force to overwrite`);
    }
  }
  for (const [file, { text, secret }] of files) {
    await mkdir(dirname(file), { recursive: true });
    await writeFile(file, text, { mode: secret ? 0o600 : 0o644 });
    // writeFile's mode applies only when it creates the file; --force over an old file must tighten it too.
    if (secret) await chmod(file, 0o600);
  }
  return [...files.keys()];
}

/**
 * A kustomize overlay on the base: the TLS Secret (and signing Secret) from the files beside it and
 * a JSON6902 patch per webhook that sets caBundle. The Service name is the base's, so only the
 * namespace may differ.
 */
function toKustomization(options: Options, webhooksWithCa: string, caPem: string): string {
  if (options.service !== BASE_SERVICE) {
    throw new UsageError(`--kustomize builds on the base, whose Service is ${BASE_SERVICE}; got --service ${options.service}`);
  }
  const caBundle = Buffer.from(caPem, 'utf8').toString('base64');
  const patches = parseAllDocuments(webhooksWithCa).map((doc) => {
    const object = doc.toJS() as WebhookConfiguration;
    const ops = object.webhooks.flatMap((webhook, i) => [
      { op: 'add', path: `/webhooks/${i}/clientConfig/caBundle`, value: caBundle },
      // withCaBundle already moved the namespace exclusion; carry those values over as well.
      ...(webhook.namespaceSelector?.matchExpressions ?? []).flatMap((expression, j) =>
        expression.key === NAMESPACE_NAME_LABEL && options.namespace !== BASE_NAMESPACE
          ? [{ op: 'replace', path: `/webhooks/${i}/namespaceSelector/matchExpressions/${j}/values`, value: expression.values }]
          : [],
      ),
    ]);
    return {
      target: { group: 'admissionregistration.k8s.io', version: 'v1', kind: object.kind, name: object.metadata.name },
      patch: stringify(ops),
    };
  });
  const secretGenerator: object[] = [{
    name: TLS_SECRET,
    namespace: options.namespace,
    type: 'kubernetes.io/tls',
    files: ['tls.crt', 'tls.key'],
    options: { disableNameSuffixHash: true },
  }];
  if (options.signingKey) {
    secretGenerator.push({
      name: SIGNING_SECRET,
      namespace: options.namespace,
      files: ['signing.key'],
      options: { disableNameSuffixHash: true },
    });
  }
  if (options.apiserverClient) {
    secretGenerator.push({ name: CLIENT_CA_SECRET, namespace: options.namespace, files: ['ca.crt=client-ca.crt'], options: { disableNameSuffixHash: true } });
    // The env vars override the ConfigMap's admission.tls (all three: the loader checks the set whole).
    const env = (name: string, value: string) => ({ op: 'add', path: '/spec/template/spec/containers/0/env/-', value: { name, value } });
    patches.push({
      // A regex (kustomize anchors it): the base runs a Deployment, overlays/ha (as --base) a StatefulSet.
      target: { group: 'apps', version: 'v1', kind: 'Deployment|StatefulSet', name: BASE_SERVICE },
      patch: stringify([
        { op: 'add', path: '/spec/template/spec/volumes/-', value: { name: 'client-ca', secret: { secretName: CLIENT_CA_SECRET, defaultMode: 0o440 } } },
        { op: 'add', path: '/spec/template/spec/containers/0/volumeMounts/-', value: { name: 'client-ca', mountPath: CLIENT_CA_MOUNT, readOnly: true } },
        env('TZW_ADMISSION_TLS_CERT_FILE', '/etc/tzw/tls/tls.crt'),
        env('TZW_ADMISSION_TLS_KEY_FILE', '/etc/tzw/tls/tls.key'),
        env('TZW_ADMISSION_TLS_CLIENT_CA_FILE', `${CLIENT_CA_MOUNT}/ca.crt`),
        env('TZW_ADMISSION_TLS_CLIENT_NAMES', options.clientCn),
      ]),
    } as (typeof patches)[number]);
  }
  const kustomization = {
    apiVersion: 'kustomize.config.k8s.io/v1beta1',
    kind: 'Kustomization',
    namespace: options.namespace,
    resources: [relative(options.out, options.base) || '.'],
    secretGenerator,
    patches,
  };
  return `# Generated by certs/generate.ts. Holds no key material itself, but sits beside tls.key: keep this directory out of git.\n${stringify(kustomization)}`;
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  process.exitCode = await run(process.argv.slice(2), {
    stdout: (text) => process.stdout.write(text),
    stderr: (text) => process.stderr.write(text),
  });
}
