/**
 * What the deployment artefacts (manifests/, Dockerfile) rely on from the server, in one place.
 *
 * It MUST match webhook/config: every value that the server defines is imported from there, not
 * copied, so a change in the server shows up as a failing manifest test instead of a broken
 * deployment. Only the deployment's own choices (where the config file is mounted, the in-cluster
 * Service) are spelled out here.
 */
import { readFileSync } from 'node:fs';
import { configLeaves, envNameFor, loadConfig, toListenOptions } from '../../webhook/config/load.js';
import {
  DEFAULT_ADMISSION_LISTEN,
  DEFAULT_AUDIT_LISTEN,
  DEFAULT_DEADLINE_MS,
  DEFAULT_METRICS_LISTEN,
  PATHS,
} from '../../webhook/config/schema.js';

export { envNameFor, loadConfig, toListenOptions };

/** Ports of the three listeners (the port part of the server's default `listen` values). */
export const ports = {
  admission: toListenOptions(DEFAULT_ADMISSION_LISTEN).port,
  audit: toListenOptions(DEFAULT_AUDIT_LISTEN).port,
  metrics: toListenOptions(DEFAULT_METRICS_LISTEN).port,
} as const;

/** HTTP paths: validate, mutate, healthz, readyz on the admission listener; metrics on its own. */
export const paths = PATHS;

/** The server's internal admission deadline; webhook timeoutSeconds must be above it. */
export const deadlineMs = DEFAULT_DEADLINE_MS;

/** Every settable config key as a dotted path, e.g. `admission.tls.certFile`. */
export const configKeys: readonly string[] = configLeaves().map((leaf) => leaf.path.join('.'));

const packageJson = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
  version: string;
  bin: Record<string, string>;
  engines: { node: string };
};

const bin = packageJson.bin.tzw;
if (bin === undefined) throw new Error('package.json has no bin.tzw');

/** How the image starts the server: `node <bin> serve --config <configFile>`; bin from package.json. */
export const command = {
  bin,
  configFile: '/etc/tzw/config.yaml',
  args: ['serve', '--config', '/etc/tzw/config.yaml'],
} as const;

export const packageVersion = packageJson.version;
/** Node major from package.json engines (`>=20` → 20). */
export const nodeMajor = Number(/(\d+)/.exec(packageJson.engines.node)?.[1]);

/** The in-cluster names the manifests, the certs tool and cert-manager agree on. */
export const cluster = {
  namespace: 'tekton-zscaler',
  service: 'tekton-zscaler-webhook',
  servicePort: 443,
  tlsSecret: 'tzw-webhook-tls',
  signingSecret: 'tzw-signing-key',
  storeSecret: { name: 'tzw-store', key: 'url' },
  storeEnv: envNameFor(['store', 'url']),
} as const;
