/**
 * Certificate generation for the webhook's serving TLS: a small private CA and an EC P-256 serving
 * certificate it signs, plus the ES256 key that signs decision-record checkpoints.
 *
 * Used by `certs/generate.ts` (the CLI) and meant to be reused by the server's dev mode for its
 * self-signed certificate (`createCertificateAuthority` + `createServingCertificate` with
 * `dnsNames: ['localhost'], ipAddresses: ['127.0.0.1', '::1']`).
 *
 * Everything here is in memory: no files. Key generation uses the platform CSPRNG; pass `now` to
 * make validity periods deterministic in tests.
 */
import { createPrivateKey, KeyObject, webcrypto } from 'node:crypto';
import { isIP } from 'node:net';
import * as x509 from '@peculiar/x509';
import { parseAllDocuments } from 'yaml';

export const DEFAULT_CA_DAYS = 3650;
export const DEFAULT_SERVING_DAYS = 365;
/** Upper bound for either lifetime: a typo such as `--days 36500` is refused, not obeyed. */
export const MAX_DAYS = 3650;
export const DEFAULT_CA_COMMON_NAME = 'tekton-zscaler-ca';
export const DEFAULT_CLUSTER_DOMAIN = 'cluster.local';
/** Backdating absorbs clock skew between the machine that issues and the API server that verifies. */
const BACKDATE_MS = 5 * 60 * 1000;
const DAY_MS = 24 * 60 * 60 * 1000;

type CryptoKey = webcrypto.CryptoKey;
type CryptoKeyPair = webcrypto.CryptoKeyPair;
const EC_KEY: webcrypto.EcKeyGenParams = { name: 'ECDSA', namedCurve: 'P-256' };
const SIGNING_ALGORITHM: webcrypto.EcdsaParams = { name: 'ECDSA', hash: 'SHA-256' };
// Passed explicitly to every @peculiar/x509 call rather than set as its global provider.
const crypto = webcrypto;

/** Thrown for bad options; `code` is stable. */
export class CertsError extends Error {
  constructor(
    readonly code: 'ERR_CERTS_INVALID_OPTION' | 'ERR_CERTS_INVALID_KEY' | 'ERR_CERTS_INVALID_WEBHOOKS',
    message: string,
  ) {
    super(message);
    this.name = 'CertsError';
  }
}

/** A CA as PEM text: serialisable, so a CA written to disk can sign again later. */
export interface CertificateAuthority {
  certPem: string;
  /** PKCS#8 PEM of the EC P-256 private key. */
  keyPem: string;
  notBefore: Date;
  notAfter: Date;
}

export interface ServingCertificate {
  certPem: string;
  /** PKCS#8 PEM of the EC P-256 private key. */
  keyPem: string;
  dnsNames: string[];
  ipAddresses: string[];
  notBefore: Date;
  notAfter: Date;
}

export interface CertificateAuthorityOptions {
  commonName?: string;
  /** Lifetime in days, integer 1..MAX_DAYS; default DEFAULT_CA_DAYS. */
  days?: number;
  now?: Date;
}

export interface ServingCertificateOptions {
  /** At least one name or address is required. Names are RFC 1123 DNS names. */
  dnsNames: string[];
  ipAddresses?: string[];
  /** Lifetime in days, integer 1..MAX_DAYS; default DEFAULT_SERVING_DAYS. Capped at the CA's notAfter. */
  days?: number;
  now?: Date;
}

/**
 * The names the API server may dial for a Service: it uses `<service>.<namespace>.svc` (and checks
 * the certificate against it), the others cover in-cluster clients using short or full names.
 * Throws ERR_CERTS_INVALID_OPTION if a part is not a DNS-1123 label.
 */
export function toServiceDnsNames(
  service: string,
  namespace: string,
  clusterDomain: string = DEFAULT_CLUSTER_DOMAIN,
): string[] {
  assertLabel('service', service);
  assertLabel('namespace', namespace);
  assertDnsName('cluster domain', clusterDomain);
  return [
    service,
    `${service}.${namespace}`,
    `${service}.${namespace}.svc`,
    `${service}.${namespace}.svc.${clusterDomain}`,
  ];
}

/** A self-signed CA (basicConstraints CA:true, pathLen 0; keyCertSign + cRLSign) with a fresh key. */
export async function createCertificateAuthority(
  options: CertificateAuthorityOptions = {},
): Promise<CertificateAuthority> {
  const commonName = options.commonName ?? DEFAULT_CA_COMMON_NAME;
  if (commonName.trim() === '' || /[,=+<>#;"\\]/.test(commonName)) {
    throw new CertsError('ERR_CERTS_INVALID_OPTION', `CA common name ${JSON.stringify(commonName)} must be non-empty plain text`);
  }
  const { notBefore, notAfter } = toValidity(options.days ?? DEFAULT_CA_DAYS, options.now ?? new Date(), 'CA days');
  const keys = await generateKeyPair();
  const cert = await x509.X509CertificateGenerator.createSelfSigned(
    {
      serialNumber: toSerialNumber(),
      name: `CN=${commonName}`,
      notBefore,
      notAfter,
      keys,
      signingAlgorithm: SIGNING_ALGORITHM,
      extensions: [
        new x509.BasicConstraintsExtension(true, 0, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey, false, crypto),
      ],
    },
    crypto,
  );
  return { certPem: cert.toString('pem'), keyPem: toPkcs8Pem(keys.privateKey), notBefore, notAfter };
}

/**
 * A serving certificate signed by `ca`: serverAuth only, SANs = dnsNames + ipAddresses, subject CN =
 * the first DNS name (or address). Throws ERR_CERTS_INVALID_OPTION for bad names or days,
 * ERR_CERTS_INVALID_KEY when the CA's PEM cannot be read.
 */
export async function createServingCertificate(
  ca: Pick<CertificateAuthority, 'certPem' | 'keyPem'>,
  options: ServingCertificateOptions,
): Promise<ServingCertificate> {
  const dnsNames = [...options.dnsNames];
  const ipAddresses = [...(options.ipAddresses ?? [])];
  for (const name of dnsNames) assertDnsName('DNS name', name);
  for (const ip of ipAddresses) {
    if (isIP(ip) === 0) throw new CertsError('ERR_CERTS_INVALID_OPTION', `${JSON.stringify(ip)} is not an IP address`);
  }
  const first = dnsNames[0] ?? ipAddresses[0];
  if (first === undefined) {
    throw new CertsError('ERR_CERTS_INVALID_OPTION', 'a serving certificate needs at least one DNS name or IP address');
  }
  const sans = [...dnsNames.map((value) => ({ type: 'dns' as const, value })), ...ipAddresses.map((value) => ({ type: 'ip' as const, value }))];
  const leaf = await createLeafCertificate(ca, { commonName: first, usage: x509.ExtendedKeyUsage.serverAuth, sans, days: options.days, now: options.now });
  return { ...leaf, dnsNames, ipAddresses };
}

/**
 * A leaf certificate signed by `ca` for one extended key usage: subject CN = commonName, the given
 * SANs (none: no SAN extension), valid for `days` but never past the CA. Throws
 * ERR_CERTS_INVALID_OPTION for bad days or an expired CA, ERR_CERTS_INVALID_KEY for an unreadable CA.
 */
async function createLeafCertificate(
  ca: Pick<CertificateAuthority, 'certPem' | 'keyPem'>,
  leaf: { commonName: string; usage: string; sans: Array<{ type: 'dns' | 'ip'; value: string }>; days?: number; now?: Date },
): Promise<{ certPem: string; keyPem: string; notBefore: Date; notAfter: Date }> {
  const now = leaf.now ?? new Date();
  const caCert = parseCaCertificate(ca.certPem);
  const caKey = await importPrivateKey(ca.keyPem);
  const validity = toValidity(leaf.days ?? DEFAULT_SERVING_DAYS, now, 'days');
  // A leaf that outlives its CA would fail verification after the CA expires anyway; say so plainly.
  const notAfter = validity.notAfter > caCert.notAfter ? caCert.notAfter : validity.notAfter;
  if (notAfter <= now) {
    throw new CertsError('ERR_CERTS_INVALID_OPTION', `the CA expired on ${caCert.notAfter.toISOString()}; create a new CA`);
  }
  const keys = await generateKeyPair();
  const cert = await x509.X509CertificateGenerator.create(
    {
      serialNumber: toSerialNumber(),
      subject: `CN=${leaf.commonName}`,
      issuer: caCert.subject,
      notBefore: validity.notBefore,
      notAfter,
      publicKey: keys.publicKey,
      signingKey: caKey,
      signingAlgorithm: SIGNING_ALGORITHM,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
        new x509.ExtendedKeyUsageExtension([leaf.usage], false),
        ...(leaf.sans.length > 0 ? [new x509.SubjectAlternativeNameExtension(leaf.sans, false)] : []),
        await x509.AuthorityKeyIdentifierExtension.create(caCert.publicKey, false, crypto),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey, false, crypto),
      ],
    },
    crypto,
  );
  return { certPem: cert.toString('pem'), keyPem: toPkcs8Pem(keys.privateKey), notBefore: validity.notBefore, notAfter };
}

export interface ClientCertificateOptions {
  /** Subject CN, matched by the webhook against admission.tls.clientNames (default kube-apiserver). */
  commonName: string;
  /** Optional DNS SANs (also matched by the webhook). */
  dnsNames?: string[];
  days?: number;
  now?: Date;
}

/** The CN the webhook expects by default (admission.tls.clientNames). */
export const DEFAULT_CLIENT_COMMON_NAME = 'kube-apiserver';

/**
 * A client certificate signed by `ca`: clientAuth only, subject CN = commonName, DNS SANs optional.
 * For the API server to present to the webhook (its AdmissionConfiguration kubeconfig). Throws
 * ERR_CERTS_INVALID_OPTION for bad names or days, ERR_CERTS_INVALID_KEY for an unreadable CA.
 */
export async function createClientCertificate(
  ca: Pick<CertificateAuthority, 'certPem' | 'keyPem'>,
  options: ClientCertificateOptions,
): Promise<ServingCertificate> {
  const { commonName } = options;
  if (commonName.trim() === '' || /[,=+<>#;"\\*]/.test(commonName)) {
    throw new CertsError('ERR_CERTS_INVALID_OPTION', `client common name ${JSON.stringify(commonName)} must be plain text without wildcards`);
  }
  const dnsNames = [...(options.dnsNames ?? [])];
  for (const name of dnsNames) assertDnsName('DNS name', name);
  const sans = dnsNames.map((value) => ({ type: 'dns' as const, value }));
  const leaf = await createLeafCertificate(ca, { commonName, usage: x509.ExtendedKeyUsage.clientAuth, sans, days: options.days, now: options.now });
  return { ...leaf, dnsNames, ipAddresses: [] };
}

/**
 * The kubeconfig the API server reads (WebhookAdmissionConfiguration.kubeConfigFile) to find the
 * client certificate it presents to a webhook. `user` is `*` (every webhook) or the Service DNS name
 * the API server dials (`SVC.NS.svc`, with `:PORT` when not 443); the credentials are inline
 * (client-certificate-data / client-key-data), so the file stands alone.
 * https://kubernetes.io/docs/reference/access-authn-authz/extensible-admission-controllers/#authenticate-apiservers
 */
export function toAdmissionKubeconfig(user: string, client: { certPem: string; keyPem: string }): string {
  const b64 = (s: string) => Buffer.from(s, 'utf8').toString('base64');
  return [
    '# The API server presents this client certificate to tekton-zscaler-webhook (admission.tls.clientCAFile).',
    '# Contains a private key: keep it on the control plane only.',
    'apiVersion: v1',
    'kind: Config',
    'users:',
    `  - name: ${JSON.stringify(user)}`,
    '    user:',
    `      client-certificate-data: ${b64(client.certPem)}`,
    `      client-key-data: ${b64(client.keyPem)}`,
    '',
  ].join('\n');
}

/** The file passed to kube-apiserver --admission-control-config-file, pointing both webhook plugins at `kubeconfigPath`. */
export function toAdmissionConfiguration(kubeconfigPath: string): string {
  const plugin = (name: string) => [
    `  - name: ${name}`,
    '    configuration:',
    '      apiVersion: apiserver.config.k8s.io/v1',
    '      kind: WebhookAdmissionConfiguration',
    `      kubeConfigFile: ${JSON.stringify(kubeconfigPath)}`,
  ];
  return ['apiVersion: apiserver.config.k8s.io/v1', 'kind: AdmissionConfiguration', 'plugins:', ...plugin('ValidatingAdmissionWebhook'), ...plugin('MutatingAdmissionWebhook'), ''].join('\n');
}

/** A fresh EC P-256 private key (ES256) as PKCS#8 PEM, for `signing.keyFile` (Secret tzw-signing-key). */
export async function createSigningKey(): Promise<string> {
  return toPkcs8Pem((await generateKeyPair()).privateKey);
}

/** The label the API server sets on every namespace (Kubernetes >= 1.21). */
export const NAMESPACE_NAME_LABEL = 'kubernetes.io/metadata.name';

/**
 * Sets `clientConfig.caBundle` (base64 of `caPem`) and `clientConfig.service.{namespace,name}` on
 * every webhook of the Validating/MutatingWebhookConfigurations in `yamlText`, and moves the
 * webhook's own namespace in a `kubernetes.io/metadata.name NotIn` exclusion along with the Service.
 * Comments and key order survive. Throws ERR_CERTS_INVALID_WEBHOOKS when the text is not YAML, holds another kind,
 * or holds no webhook.
 */
export function withCaBundle(yamlText: string, caPem: string, target: { namespace: string; service: string }): string {
  assertLabel('service', target.service);
  assertLabel('namespace', target.namespace);
  parseCaCertificate(caPem);
  const caBundle = Buffer.from(caPem, 'utf8').toString('base64');
  const docs = parseAllDocuments(yamlText);
  if (!Array.isArray(docs)) throw new CertsError('ERR_CERTS_INVALID_WEBHOOKS', 'the webhook file is empty');
  let webhooks = 0;
  for (const [index, doc] of docs.entries()) {
    if (doc.errors.length > 0) {
      throw new CertsError('ERR_CERTS_INVALID_WEBHOOKS', `document ${index + 1} is not valid YAML: ${doc.errors[0]?.message}`);
    }
    const kind: unknown = doc.get('kind');
    if (kind !== 'ValidatingWebhookConfiguration' && kind !== 'MutatingWebhookConfiguration') {
      throw new CertsError('ERR_CERTS_INVALID_WEBHOOKS', `document ${index + 1} is a ${String(kind)}, not a webhook configuration`);
    }
    const list: unknown = doc.toJS()?.webhooks;
    if (!Array.isArray(list)) throw new CertsError('ERR_CERTS_INVALID_WEBHOOKS', `document ${index + 1} has no webhooks list`);
    for (let i = 0; i < list.length; i++) {
      const webhook = list[i] as { clientConfig?: { service?: { namespace?: unknown } }; namespaceSelector?: { matchExpressions?: unknown } };
      const oldNamespace = webhook.clientConfig?.service?.namespace;
      const expressions = webhook.namespaceSelector?.matchExpressions;
      // The webhook must never intercept its own namespace: the exclusion follows the Service.
      if (typeof oldNamespace === 'string' && Array.isArray(expressions)) {
        expressions.forEach((expression: { key?: unknown; operator?: unknown; values?: unknown }, j) => {
          if (expression.key === NAMESPACE_NAME_LABEL && expression.operator === 'NotIn' && Array.isArray(expression.values)) {
            const values = expression.values.map((value: unknown) => (value === oldNamespace ? target.namespace : value));
            doc.setIn(['webhooks', i, 'namespaceSelector', 'matchExpressions', j, 'values'], doc.createNode(values, { flow: true }));
          }
        });
      }
      doc.setIn(['webhooks', i, 'clientConfig', 'caBundle'], caBundle);
      doc.setIn(['webhooks', i, 'clientConfig', 'service', 'namespace'], target.namespace);
      doc.setIn(['webhooks', i, 'clientConfig', 'service', 'name'], target.service);
      webhooks++;
    }
  }
  if (webhooks === 0) throw new CertsError('ERR_CERTS_INVALID_WEBHOOKS', 'no webhook found to fill in');
  // Documents after the first keep their own `---` when they had one; add it where they did not.
  return docs
    .map((doc, i) => {
      const text = doc.toString();
      return i > 0 && !text.startsWith('---') ? `---\n${text}` : text;
    })
    .join('');
}

/** Reads a PEM certificate (the first one of a bundle). Throws ERR_CERTS_INVALID_KEY. */
function parseCaCertificate(certPem: string): x509.X509Certificate {
  try {
    return new x509.X509Certificate(certPem);
  } catch (error) {
    throw new CertsError('ERR_CERTS_INVALID_KEY', `the CA certificate is not a PEM certificate: ${(error as Error).message}`);
  }
}

/** Imports an EC P-256 private key from any PEM form node reads (PKCS#8 or SEC1). */
async function importPrivateKey(keyPem: string): Promise<CryptoKey> {
  let der: Buffer;
  try {
    const key = createPrivateKey(keyPem);
    if (key.asymmetricKeyType !== 'ec' || key.asymmetricKeyDetails?.namedCurve !== 'prime256v1') {
      throw new Error(`it is a ${key.asymmetricKeyType ?? 'unknown'} key, expected EC P-256`);
    }
    der = key.export({ format: 'der', type: 'pkcs8' });
  } catch (error) {
    throw new CertsError('ERR_CERTS_INVALID_KEY', `the CA key cannot be used: ${(error as Error).message}`);
  }
  return crypto.subtle.importKey('pkcs8', der, EC_KEY, false, ['sign']);
}

async function generateKeyPair(): Promise<CryptoKeyPair> {
  return crypto.subtle.generateKey(EC_KEY, true, ['sign', 'verify']);
}

function toPkcs8Pem(privateKey: CryptoKey): string {
  return KeyObject.from(privateKey).export({ format: 'pem', type: 'pkcs8' }).toString();
}

/** 128 random bits, top bit cleared so the DER INTEGER stays positive (RFC 5280 §4.1.2.2). */
function toSerialNumber(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[0] = ((bytes[0] ?? 0) & 0x7f) | 0x01;
  return Buffer.from(bytes).toString('hex');
}

function toValidity(days: number, now: Date, what: string): { notBefore: Date; notAfter: Date } {
  if (!Number.isInteger(days) || days < 1 || days > MAX_DAYS) {
    throw new CertsError('ERR_CERTS_INVALID_OPTION', `${what} must be an integer from 1 to ${MAX_DAYS}, got ${String(days)}`);
  }
  if (Number.isNaN(now.getTime())) throw new CertsError('ERR_CERTS_INVALID_OPTION', 'now is not a valid date');
  return { notBefore: new Date(now.getTime() - BACKDATE_MS), notAfter: new Date(now.getTime() + days * DAY_MS) };
}

const LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

function assertLabel(what: string, value: string): void {
  if (!LABEL.test(value)) {
    throw new CertsError('ERR_CERTS_INVALID_OPTION', `${what} ${JSON.stringify(value)} must be a DNS-1123 label (lowercase letters, digits, '-', at most 63)`);
  }
}

function assertDnsName(what: string, value: string): void {
  if (value.length > 253 || !value.split('.').every((part) => LABEL.test(part))) {
    throw new CertsError('ERR_CERTS_INVALID_OPTION', `${what} ${JSON.stringify(value)} is not a lowercase RFC 1123 DNS name`);
  }
}
