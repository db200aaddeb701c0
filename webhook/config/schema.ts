/**
 * The configuration schema (JSON Schema, checked with ajv) and its defaults. One place: the config
 * loader, the README config table and the manifests' drift tests all read from here.
 */
import { DEFAULT_DOMAIN } from '../core/keys.js';
import { DEFAULT_SERVICE_ACCOUNT, DEFAULT_TOKEN_MOUNT_PATH } from '../core/options.js';

export const DEFAULT_ADMISSION_LISTEN = '127.0.0.1:8443';
export const DEFAULT_AUDIT_LISTEN = '127.0.0.1:8444';
export const DEFAULT_METRICS_LISTEN = '127.0.0.1:9090';
/** Internal deadline for one admission; the webhook configurations' timeoutSeconds must exceed it. */
export const DEFAULT_DEADLINE_MS = 8000;
/**
 * 7 MiB, as controller-runtime: an UPDATE carries object and oldObject, each up to the API server's
 * 3 MiB request limit, plus the envelope (controller-runtime pkg/webhook/admission/http.go).
 */
export const DEFAULT_BODY_LIMIT_BYTES = 7 * 1024 * 1024;
export const DEFAULT_STORE_URL = 'sqlite:.tzw/decisions.db';
export const DEFAULT_STATE_DIR = '.tzw';
export const DEFAULT_EXAMPLES_PATH = 'manifests/examples';
/** Who may call the admission listener when admission.tls.clientCAFile is set (the API server's usual CN). */
export const DEFAULT_CLIENT_NAMES: readonly string[] = ['kube-apiserver'];
export const DEFAULT_SIDECAR_IMAGE = 'zscaler/zpa-connector-tunnel:1.0.0';
export const DEFAULT_LEASE_NAME = 'tekton-zscaler-webhook-status';
export const DEFAULT_LEASE_NAMESPACE = 'tekton-zscaler';
export const PATHS = { validate: '/validate', mutate: '/mutate', healthz: '/healthz', readyz: '/readyz', metrics: '/metrics' } as const;

export interface Config {
  domain: string;
  replica: string;
  logLevel: 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal' | 'silent';
  stateDir: string;
  admission: {
    listen: string;
    tls?: { certFile: string; keyFile: string; clientCAFile?: string; clientNames?: string[] };
    deadlineMs: number;
    bodyLimitBytes: number;
  };
  auditApi: {
    listen: string;
    tls?: { certFile: string; keyFile: string };
    auth: { mode: 'none' | 'oidc' | 'kubernetes'; audiences: string[]; issuer?: string; jwksUri?: string; audience?: string; group?: string; groupsClaim: string };
  };
  metrics: { listen: string };
  source: { kind: 'kubernetes' | 'files'; paths: string[] };
  store: {
    url: string;
    retention?: string;
    checkpointEvery: { records: number; seconds: number };
    spool: { path: string; maxBytes: number };
  };
  signing: { keyFile?: string };
  /** IdentityMapping status, written by the Lease holder (source.kind kubernetes only). */
  mappingStatus: { enabled: boolean; leaseNamespace: string; leaseName: string; leaseDurationSeconds: number };
  events: { onDenial: boolean; perSecond: number; burst: number };
  tekton: { defaultServiceAccount: string };
  injection: {
    tokenMountPath: string;
    sidecar: {
      image: string;
      mode: 'native' | 'classic';
      args: string[];
      resources: Record<string, unknown>;
      securityContext: Record<string, unknown>;
      probe: Record<string, unknown>;
    };
  };
}

const listen = { type: 'string', pattern: '^(\\[[0-9a-fA-F:.]+\\]|[^:\\s]*):\\d{1,5}$', description: 'HOST:PORT (empty host = all interfaces)' };
const tls = {
  type: 'object', additionalProperties: false, required: ['certFile', 'keyFile'],
  properties: { certFile: { type: 'string', minLength: 1, description: 'PEM certificate (reloaded on change)' }, keyFile: { type: 'string', minLength: 1, description: 'PEM private key (reloaded on change)' } },
};
/** The admission listener's TLS: the serving pair plus, optionally, the API server's client certificates. */
const admissionTls = {
  ...tls,
  properties: {
    ...tls.properties,
    clientCAFile: { type: 'string', minLength: 1, description: 'PEM CA bundle; when set, only clients with a certificate from it are served (reloaded on change)' },
    clientNames: {
      type: 'array', minItems: 1, items: { type: 'string', minLength: 1, pattern: '^[^*\\s]+$' },
      description: `Client certificate CN or DNS SAN allowed (exact, no wildcards; default ${DEFAULT_CLIENT_NAMES.join(', ')})`,
    },
  },
};
const k8sObject = { type: 'object' };

export const CONFIG_SCHEMA = {
  type: 'object', additionalProperties: false,
  properties: {
    domain: { type: 'string', minLength: 1, description: 'Annotation/label domain' },
    replica: { type: 'string', minLength: 1, description: 'Writer id of this replica (own hash chain)' },
    logLevel: { enum: ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'], description: 'pino log level' },
    stateDir: { type: 'string', minLength: 1, description: 'Where generated dev certs and keys live' },
    admission: {
      type: 'object', additionalProperties: false,
      properties: {
        listen, tls: admissionTls,
        deadlineMs: { type: 'integer', minimum: 100, maximum: 29000, description: 'Internal deadline per admission' },
        bodyLimitBytes: { type: 'integer', minimum: 4194304, description: 'Largest AdmissionReview accepted' },
      },
    },
    auditApi: {
      type: 'object', additionalProperties: false,
      properties: {
        listen, tls,
        auth: {
          type: 'object', additionalProperties: false,
          properties: {
            mode: { enum: ['none', 'oidc', 'kubernetes'], description: 'kubernetes: TokenReview + SubjectAccessReview (RBAC on decisions/checkpoints in audit.<domain>); none only on a loopback listener' },
            audiences: { type: 'array', items: { type: 'string', minLength: 1 }, description: 'kubernetes: TokenReview spec.audiences (empty: the API server\'s own)' },
            issuer: { type: 'string', description: 'Required JWT iss' }, jwksUri: { type: 'string', description: 'JWKS URL of the issuer' }, audience: { type: 'string', description: 'Required JWT aud' },
            group: { type: 'string', description: 'Group the caller must be in' }, groupsClaim: { type: 'string', minLength: 1, description: 'JWT claim holding the groups' },
          },
        },
      },
    },
    metrics: { type: 'object', additionalProperties: false, properties: { listen } },
    source: {
      type: 'object', additionalProperties: false,
      properties: { kind: { enum: ['kubernetes', 'files'], description: 'Where Namespaces, ServiceAccounts, IdentityMappings come from' }, paths: { type: 'array', items: { type: 'string', minLength: 1 }, description: 'files: YAML files/folders (comma-separated in env)' } },
    },
    store: {
      type: 'object', additionalProperties: false,
      properties: {
        url: { type: 'string', pattern: '^(sqlite:.+|postgres(ql)?://.+)$', description: 'sqlite:PATH or postgres://…' },
        retention: { type: 'string', pattern: '^\\d+[dh]$', description: 'Prune records older than this (e.g. 400d)' },
        checkpointEvery: {
          type: 'object', additionalProperties: false,
          properties: { records: { type: 'integer', minimum: 1, description: 'Signed checkpoint every N records' }, seconds: { type: 'integer', minimum: 1, description: '…and every T seconds' } },
        },
        spool: {
          type: 'object', additionalProperties: false,
          properties: { path: { type: 'string', minLength: 1, description: 'postgres: local SQLite spool used while the database is down' }, maxBytes: { type: 'integer', minimum: 1048576, description: 'Spool size limit; beyond it admissions fail closed' } },
        },
      },
    },
    signing: { type: 'object', additionalProperties: false, properties: { keyFile: { type: 'string', minLength: 1, description: 'PKCS#8 PEM key for checkpoints (absent: generated under stateDir)' } } },
    mappingStatus: {
      type: 'object', additionalProperties: false,
      properties: {
        enabled: { type: 'boolean', description: 'Write IdentityMapping status (kubernetes source only)' },
        leaseNamespace: { type: 'string', minLength: 1, description: "The webhook's namespace: one status writer at a time via a Lease here" },
        leaseName: { type: 'string', minLength: 1, description: 'Name of that Lease' },
        leaseDurationSeconds: { type: 'integer', minimum: 2, maximum: 300, description: 'A silent holder loses the Lease after this' },
      },
    },
    events: {
      type: 'object', additionalProperties: false,
      properties: {
        onDenial: { type: 'boolean', description: "A Warning Event in the run's namespace per denial (off the request path)" },
        perSecond: { type: 'number', exclusiveMinimum: 0, description: 'Denial Events rate limit' },
        burst: { type: 'integer', minimum: 1, description: 'Denial Events burst' },
      },
    },
    tekton: { type: 'object', additionalProperties: false, properties: { defaultServiceAccount: { type: 'string', minLength: 1, description: "Tekton config-defaults default-service-account" } } },
    injection: {
      type: 'object', additionalProperties: false,
      properties: {
        tokenMountPath: { type: 'string', pattern: '^/', description: 'Where the projected OIDC token is mounted' },
        sidecar: {
          type: 'object', additionalProperties: false,
          properties: {
            image: { type: 'string', minLength: 1, description: 'Tunnel sidecar image' }, mode: { enum: ['native', 'classic'], description: 'native: init container with restartPolicy Always' },
            args: { type: 'array', items: { type: 'string' }, description: 'Tunnel sidecar args' },
            resources: { ...k8sObject, description: 'Sidecar ResourceRequirements (JSON in env)' }, securityContext: { ...k8sObject, description: 'Sidecar SecurityContext (JSON in env)' }, probe: { ...k8sObject, description: 'startupProbe (native) / readinessProbe (classic)' },
          },
        },
      },
    },
  },
} as const;

/** Defaults: the embedded standalone setup (`npm start`), everything on loopback. */
export function defaultConfig(hostname: string): Config {
  return {
    domain: DEFAULT_DOMAIN,
    replica: hostname,
    logLevel: 'info',
    stateDir: DEFAULT_STATE_DIR,
    admission: { listen: DEFAULT_ADMISSION_LISTEN, deadlineMs: DEFAULT_DEADLINE_MS, bodyLimitBytes: DEFAULT_BODY_LIMIT_BYTES },
    auditApi: { listen: DEFAULT_AUDIT_LISTEN, auth: { mode: 'none', audiences: [], groupsClaim: 'groups' } },
    metrics: { listen: DEFAULT_METRICS_LISTEN },
    source: { kind: 'files', paths: [DEFAULT_EXAMPLES_PATH] },
    store: {
      url: DEFAULT_STORE_URL,
      checkpointEvery: { records: 1000, seconds: 60 },
      spool: { path: `${DEFAULT_STATE_DIR}/spool.db`, maxBytes: 1024 * 1024 * 1024 },
    },
    signing: {},
    mappingStatus: { enabled: true, leaseNamespace: DEFAULT_LEASE_NAMESPACE, leaseName: DEFAULT_LEASE_NAME, leaseDurationSeconds: 15 },
    events: { onDenial: false, perSecond: 5, burst: 25 },
    tekton: { defaultServiceAccount: DEFAULT_SERVICE_ACCOUNT },
    injection: {
      tokenMountPath: DEFAULT_TOKEN_MOUNT_PATH,
      sidecar: {
        image: DEFAULT_SIDECAR_IMAGE,
        mode: 'native',
        args: ['--mode=tunnel', '--health-port=15021'],
        resources: { requests: { cpu: '10m', memory: '32Mi' }, limits: { memory: '128Mi' } },
        securityContext: {
          runAsNonRoot: true, runAsUser: 65532, allowPrivilegeEscalation: false, readOnlyRootFilesystem: true,
          capabilities: { drop: ['ALL'] }, seccompProfile: { type: 'RuntimeDefault' },
        },
        probe: { httpGet: { path: '/ready', port: 15021 }, periodSeconds: 1, failureThreshold: 30 },
      },
    },
  };
}
