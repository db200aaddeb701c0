/**
 * The IdentityMapping schema, written once and used twice: `scripts/gen-crd.ts` renders it into the
 * CRD (so the API server rejects what it can), and `parseIdentityMapping` runs the same schema with
 * ajv at runtime (so the files source, and anything that slipped past an older CRD, get the same
 * answer). CEL rules cannot run in ajv; they are generated from `PROVIDER_BLOCKS` and checked again
 * in code from the same table, so the two can't drift apart.
 */
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import {
  DEFAULT_AUDIENCE,
  DEFAULT_AZURE_AUTHORITY_HOST,
  DEFAULT_TOKEN_TTL_SECONDS,
  MAX_TOKEN_TTL_SECONDS,
  MIN_TOKEN_TTL_SECONDS,
  PROVIDERS,
  type IdentityMappingSpec,
  type Provider,
  type ResolvedMapping,
  type ServiceAccountRef,
} from './mapping.js';

export const GROUP = 'tekton-zscaler.io';
export const VERSION = 'v1alpha1';
export const API_VERSION = `${GROUP}/${VERSION}`;
export const KIND = 'IdentityMapping';
export const PLURAL = 'identitymappings';

/** The spec field that must be present for each provider (and absent for the others). */
export const PROVIDER_BLOCKS = { 'aws-iam': 'aws', 'azure-ad': 'azure', okta: 'okta' } as const satisfies Record<Provider, string>;

/** A Zscaler policy tag; the same rule applies to the namespace annotation's tags. */
export const POLICY_TAG_PATTERN = '^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$';
/** RFC 1123 label: what Kubernetes allows as a namespace name. */
const NAMESPACE_PATTERN = '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$';
/** RFC 1123 subdomain: what Kubernetes allows as a ServiceAccount name. */
const SUBDOMAIN_PATTERN = '^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$';
const ROLE_ARN_PATTERN = '^arn:aws[a-z-]*:iam::\\d{12}:role/.+$';
const GUID_PATTERN = '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$';
/** Azure accepts a tenant GUID or a verified domain (contoso.onmicrosoft.com). */
const TENANT_PATTERN = '^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$';
/** An https URL without query or fragment (OIDC issuers and Azure authority hosts). */
const HTTPS_URL_PATTERN = '^https://[^\\s/?#]+(/[^\\s?#]*)?$';
const TOKEN_PATTERN = '^\\S+$';

/** CEL rules as `{rule, message}`: each provider needs its own block and no other provider's. */
function providerRules(): Array<{ rule: string; message: string }> {
  const rules: Array<{ rule: string; message: string }> = [];
  for (const [provider, block] of Object.entries(PROVIDER_BLOCKS)) {
    rules.push({ rule: `self.provider != '${provider}' || has(self.${block})`, message: requiredBlockMessage(provider, block) });
  }
  for (const [provider, block] of Object.entries(PROVIDER_BLOCKS)) {
    rules.push({ rule: `!has(self.${block}) || self.provider == '${provider}'`, message: strayBlockMessage(provider, block) });
  }
  return rules;
}
const requiredBlockMessage = (provider: string, block: string): string => `spec.${block} is required when provider is ${provider}`;
const strayBlockMessage = (provider: string, block: string): string => `spec.${block} is only allowed when provider is ${provider}`;

const str = (description: string, extra: Record<string, unknown> = {}): Record<string, unknown> => ({ type: 'string', description, ...extra });

/**
 * OpenAPI v3 structural schema of `IdentityMapping.spec`. Structural-schema rules apply (no
 * `additionalProperties` beside `properties`; unknown fields are pruned by the API server).
 */
export const IDENTITY_MAPPING_SPEC_SCHEMA = {
  type: 'object',
  description: 'Which Tekton ServiceAccounts act as which identity-provider identity, with which Zscaler policy tags.',
  required: ['serviceAccounts', 'provider'],
  properties: {
    serviceAccounts: {
      type: 'array',
      description: 'The ServiceAccounts (exact namespace and name) that use this identity. A ServiceAccount may be claimed by one mapping only.',
      minItems: 1,
      'x-kubernetes-list-type': 'map',
      'x-kubernetes-list-map-keys': ['namespace', 'name'],
      items: {
        type: 'object',
        required: ['namespace', 'name'],
        properties: {
          namespace: str('Namespace of the ServiceAccount.', { minLength: 1, maxLength: 63, pattern: NAMESPACE_PATTERN }),
          name: str('Name of the ServiceAccount.', { minLength: 1, maxLength: 253, pattern: SUBDOMAIN_PATTERN }),
        },
      },
    },
    provider: str('The identity provider: aws-iam, azure-ad or okta. The block of the same name (aws, azure, okta) is required.', {
      enum: [...PROVIDERS],
    }),
    aws: {
      type: 'object',
      description: 'AWS IAM (IRSA-style web identity). Audience defaults to sts.amazonaws.com.',
      required: ['roleArn'],
      properties: {
        roleArn: str('The IAM role to assume, e.g. arn:aws:iam::123456789012:role/payments-ci.', { maxLength: 2048, pattern: ROLE_ARN_PATTERN }),
      },
    },
    azure: {
      type: 'object',
      description: 'Azure AD workload identity federation. Audience defaults to api://AzureADTokenExchange.',
      required: ['clientId', 'tenantId'],
      properties: {
        clientId: str('Application (client) id, a GUID.', { pattern: GUID_PATTERN }),
        tenantId: str('Directory (tenant) id: a GUID or a verified domain.', { maxLength: 253, pattern: TENANT_PATTERN }),
        authorityHost: str(`Microsoft Entra authority, default ${DEFAULT_AZURE_AUTHORITY_HOST}.`, { maxLength: 2048, pattern: HTTPS_URL_PATTERN }),
      },
    },
    okta: {
      type: 'object',
      description: 'Okta OAuth 2.0 token exchange. Audience defaults to the client id.',
      required: ['issuer', 'clientId'],
      properties: {
        issuer: str('The authorization server, e.g. https://example.okta.com/oauth2/default.', { maxLength: 2048, pattern: HTTPS_URL_PATTERN }),
        clientId: str('The Okta client id.', { minLength: 1, maxLength: 256, pattern: TOKEN_PATTERN }),
      },
    },
    audience: str('Token audience; empty or absent means the provider default.', { maxLength: 1024 }),
    tokenExpirationSeconds: {
      type: 'integer',
      description: `Lifetime of the projected token, ${MIN_TOKEN_TTL_SECONDS}..${MAX_TOKEN_TTL_SECONDS}; the kubelet rotates it at 80%.`,
      minimum: MIN_TOKEN_TTL_SECONDS,
      maximum: MAX_TOKEN_TTL_SECONDS,
      default: DEFAULT_TOKEN_TTL_SECONDS,
    },
    policyTags: {
      type: 'array',
      description: 'Zscaler policy tags for runs using this identity (the namespace annotation adds more).',
      maxItems: 64,
      items: str('A policy tag.', { pattern: POLICY_TAG_PATTERN }),
    },
  },
  'x-kubernetes-validations': providerRules(),
} as const;

/** The whole apiextensions.k8s.io/v1 CRD object, ready to be serialised. */
/** The status subresource: written by the webhook (one replica at a time), read by `kubectl get idm`. */
export const IDENTITY_MAPPING_STATUS_SCHEMA = {
  type: 'object',
  description: 'Written by tekton-zscaler-webhook: whether the mapping is in effect, and why not.',
  properties: {
    observedGeneration: { type: 'integer', format: 'int64', minimum: 0, description: 'The metadata.generation this status describes.' },
    serviceAccounts: { type: 'integer', minimum: 0, description: 'How many well-formed ServiceAccounts the mapping claims.' },
    conditions: {
      type: 'array',
      description: 'Ready: True (reason Valid) or False (reason Conflict: another mapping claims one of its ServiceAccounts; Invalid: a field is wrong). The message names the other mapping or the field.',
      'x-kubernetes-list-type': 'map',
      'x-kubernetes-list-map-keys': ['type'],
      items: {
        type: 'object',
        required: ['type', 'status', 'lastTransitionTime', 'reason', 'message'],
        properties: {
          type: { type: 'string', maxLength: 316, pattern: '^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$' },
          status: { type: 'string', enum: ['True', 'False', 'Unknown'] },
          reason: { type: 'string', maxLength: 1024, minLength: 1, pattern: '^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$' },
          message: { type: 'string', maxLength: 32768 },
          observedGeneration: { type: 'integer', format: 'int64', minimum: 0 },
          lastTransitionTime: { type: 'string', format: 'date-time' },
        },
      },
    },
  },
} as const;

export function toIdentityMappingCrd(): Record<string, unknown> {
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: `${PLURAL}.${GROUP}` },
    spec: {
      group: GROUP,
      scope: 'Cluster',
      names: { plural: PLURAL, singular: 'identitymapping', kind: KIND, listKind: `${KIND}List`, shortNames: ['idm'] },
      versions: [
        {
          name: VERSION,
          served: true,
          storage: true,
          // Ready and Reason come from the status the webhook writes (kube/status-writer.ts); the
          // count replaces a "first ServiceAccount" column that hid every other claim. Subject
          // columns are split per provider (one JSONPath can't choose) and shown with -o wide.
          additionalPrinterColumns: [
            { name: 'Ready', type: 'string', jsonPath: '.status.conditions[?(@.type=="Ready")].status' },
            { name: 'Reason', type: 'string', jsonPath: '.status.conditions[?(@.type=="Ready")].reason' },
            { name: 'Provider', type: 'string', jsonPath: '.spec.provider' },
            { name: 'ServiceAccounts', type: 'integer', jsonPath: '.status.serviceAccounts', description: 'How many ServiceAccounts the mapping claims.' },
            { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' },
            { name: 'Message', type: 'string', jsonPath: '.status.conditions[?(@.type=="Ready")].message', priority: 1 },
            { name: 'Role', type: 'string', jsonPath: '.spec.aws.roleArn', priority: 1 },
            { name: 'Azure-Client', type: 'string', jsonPath: '.spec.azure.clientId', priority: 1 },
            { name: 'Okta-Client', type: 'string', jsonPath: '.spec.okta.clientId', priority: 1 },
            { name: 'TTL', type: 'integer', jsonPath: '.spec.tokenExpirationSeconds', priority: 1 },
          ],
          // Only the webhook writes status, through /status; spec writes never touch it.
          subresources: { status: {} },
          schema: {
            openAPIV3Schema: {
              type: 'object',
              description: 'IdentityMapping maps Tekton ServiceAccounts to an identity-provider identity and Zscaler policy tags. Cluster-scoped so namespace editors cannot claim identities.',
              required: ['spec'],
              properties: {
                apiVersion: { type: 'string' },
                kind: { type: 'string' },
                metadata: { type: 'object' },
                spec: IDENTITY_MAPPING_SPEC_SCHEMA,
                status: IDENTITY_MAPPING_STATUS_SCHEMA,
              },
            },
          },
        },
      ],
    },
  };
}

export type ParsedMapping =
  | { ok: true; mapping: ResolvedMapping }
  | { ok: false; name: string; claims: ServiceAccountRef[]; problems: string[] };

let compiledSpec: ValidateFunction<IdentityMappingSpec> | undefined;
/** The spec schema's validator, compiled on first use (a command that reads no mapping never pays for it). */
function specValidator(): ValidateFunction<IdentityMappingSpec> {
  if (compiledSpec) return compiledSpec;
  const ajv = new Ajv({ allErrors: true, verbose: true });
  // Kubernetes extensions: annotations for the API server, meaningless to ajv (the CEL rules are
  // re-implemented below).
  ajv.addVocabulary(['x-kubernetes-validations', 'x-kubernetes-list-type', 'x-kubernetes-list-map-keys']);
  compiledSpec = ajv.compile<IdentityMappingSpec>(IDENTITY_MAPPING_SPEC_SCHEMA);
  return compiledSpec;
}

/** Friendly wording for pattern failures, keyed by the schema path of the failing string. */
const PATTERN_HINTS: Record<string, string> = {
  '/serviceAccounts/items/namespace': 'be a namespace name (lower-case letters, digits and "-")',
  '/serviceAccounts/items/name': 'be a ServiceAccount name (lower-case letters, digits, "-" and ".")',
  '/aws/roleArn': 'be an IAM role ARN such as arn:aws:iam::123456789012:role/NAME',
  '/azure/clientId': 'be a GUID such as 00000000-0000-0000-0000-000000000000',
  '/azure/tenantId': 'be a tenant GUID or domain',
  '/azure/authorityHost': 'be an https URL',
  '/okta/issuer': 'be an https URL such as https://example.okta.com/oauth2/default',
  '/okta/clientId': 'be a client id without spaces',
  '/policyTags/items': `be a policy tag: a letter or digit, then up to 62 letters, digits, ".", "_" or "-"`,
};

const shown = (v: unknown): string => {
  const s = JSON.stringify(v) ?? String(v);
  return s.length > 80 ? `${s.slice(0, 77)}...` : s;
};

/** `/serviceAccounts/0/name` → `spec.serviceAccounts[0].name`. */
function toFieldPath(instancePath: string): string {
  let out = 'spec';
  for (const part of instancePath.split('/').slice(1)) out += /^\d+$/.test(part) ? `[${part}]` : `.${part.replace(/~1/g, '/').replace(/~0/g, '~')}`;
  return out;
}

const TYPE_NAMES: Record<string, string> = { string: 'a string', integer: 'an integer', number: 'a number', object: 'an object', array: 'a list', boolean: 'true or false' };

function toProblem(e: ErrorObject): string {
  const at = toFieldPath(e.instancePath);
  const p = e.params as Record<string, unknown>;
  switch (e.keyword) {
    case 'required':
      return `${at}.${String(p.missingProperty)} is required`;
    case 'type':
      return `${at} must be ${TYPE_NAMES[String(p.type)] ?? String(p.type)} (got ${shown(e.data)})`;
    case 'enum':
      return `${at} must be one of ${(p.allowedValues as unknown[]).join(', ')} (got ${shown(e.data)})`;
    case 'minimum':
      return `${at} must be >= ${String(p.limit)} (got ${shown(e.data)})`;
    case 'maximum':
      return `${at} must be <= ${String(p.limit)} (got ${shown(e.data)})`;
    case 'minItems':
      return `${at} must list at least ${String(p.limit)} item${p.limit === 1 ? '' : 's'}`;
    case 'maxItems':
      return `${at} must list at most ${String(p.limit)} items`;
    case 'minLength':
      return `${at} must not be empty`;
    case 'maxLength':
      return `${at} must be at most ${String(p.limit)} characters`;
    case 'pattern': {
      const key = e.schemaPath.replace(/^#/, '').replace(/\/properties\//g, '/').replace(/\/pattern$/, '');
      return `${at} must ${PATTERN_HINTS[key] ?? `match ${String(p.pattern)}`} (got ${shown(e.data)})`;
    }
    default:
      return `${at} ${e.message ?? 'is invalid'}`;
  }
}

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const NAMESPACE_RE = new RegExp(NAMESPACE_PATTERN);
const SUBDOMAIN_RE = new RegExp(SUBDOMAIN_PATTERN);

/** The well-formed, distinct serviceAccounts entries of a spec, whatever else is wrong with it. */
function claimsOf(spec: unknown): { claims: ServiceAccountRef[]; duplicates: string[] } {
  const claims: ServiceAccountRef[] = [];
  const duplicates: string[] = [];
  if (!isRecord(spec) || !Array.isArray(spec.serviceAccounts)) return { claims, duplicates };
  const seen = new Set<string>();
  spec.serviceAccounts.forEach((sa: unknown, i) => {
    if (!isRecord(sa)) return;
    const { namespace, name } = sa;
    if (typeof namespace !== 'string' || typeof name !== 'string') return;
    if (namespace.length > 63 || name.length > 253 || !NAMESPACE_RE.test(namespace) || !SUBDOMAIN_RE.test(name)) return;
    const key = `${namespace}/${name}`;
    if (seen.has(key)) {
      duplicates.push(`spec.serviceAccounts[${i}] repeats ${key}`);
      return;
    }
    seen.add(key);
    claims.push({ namespace, name });
  });
  // slice(): an array grown by push keeps spare capacity (17 slots for one item); this one is kept
  // for the mapping's lifetime, 100,000 times over.
  return { claims: claims.slice(), duplicates };
}

/** The CEL rules of the CRD, evaluated in code from the same table. */
function providerBlockProblems(spec: Record<string, unknown>): string[] {
  const problems: string[] = [];
  for (const [provider, block] of Object.entries(PROVIDER_BLOCKS)) {
    if (spec.provider === provider && spec[block] === undefined) problems.push(requiredBlockMessage(provider, block));
  }
  for (const [provider, block] of Object.entries(PROVIDER_BLOCKS)) {
    // Only meaningful once the provider itself is valid; an unknown provider is reported by enum.
    if (spec[block] !== undefined && PROVIDERS.includes(spec.provider as Provider) && spec.provider !== provider) {
      problems.push(strayBlockMessage(provider, block));
    }
  }
  return problems;
}

/**
 * Defaults applied: audience, TTL, subject, SDK env (fixed order), sorted unique tags. Built as one
 * object literal: an object spread here made each mapping ~300 bytes bigger, which matters at
 * 100,000 mappings.
 */
function toResolvedMapping(name: string, spec: IdentityMappingSpec, serviceAccounts: ServiceAccountRef[]): ResolvedMapping {
  const provider = PROVIDERS.find((p) => p === spec.provider)!;
  const tokenExpirationSeconds = spec.tokenExpirationSeconds ?? DEFAULT_TOKEN_TTL_SECONDS;
  const policyTags = spec.policyTags === undefined || spec.policyTags.length === 0 ? [] : [...new Set(spec.policyTags)].sort();
  // An empty audience means "not set" (the design's example shows `audience: ""`).
  const override = spec.audience !== undefined && spec.audience !== '' ? spec.audience : undefined;
  let subject: string;
  let audience: string;
  let env: Array<[string, string]>;
  switch (provider) {
    case 'aws-iam': {
      const { roleArn } = spec.aws!;
      subject = roleArn;
      audience = override ?? DEFAULT_AUDIENCE['aws-iam'];
      env = [['AWS_ROLE_ARN', roleArn]];
      break;
    }
    case 'azure-ad': {
      const { clientId, tenantId, authorityHost } = spec.azure!;
      subject = clientId;
      audience = override ?? DEFAULT_AUDIENCE['azure-ad'];
      env = [
        ['AZURE_CLIENT_ID', clientId],
        ['AZURE_TENANT_ID', tenantId],
        ['AZURE_AUTHORITY_HOST', authorityHost ?? DEFAULT_AZURE_AUTHORITY_HOST],
      ];
      break;
    }
    case 'okta': {
      const { clientId, issuer } = spec.okta!;
      subject = clientId;
      audience = override ?? clientId;
      env = [['OKTA_CLIENT_ID', clientId], ['OKTA_ISSUER', issuer]];
      break;
    }
  }
  return { name, serviceAccounts, provider, subject, audience, tokenExpirationSeconds, policyTags, env };
}

/**
 * Validates an IdentityMapping object (as listed from the API or read from a file) and resolves
 * its defaults. Never throws. On failure, `problems` are human-readable sentences naming the
 * field, and `claims` lists the well-formed serviceAccounts entries so that a lookup can answer
 * "the mapping that claims you is invalid" rather than "unmapped". `name` is '' when
 * metadata.name is missing. Only `metadata.name` and `spec` are read; apiVersion/kind are the
 * caller's business.
 */
export function parseIdentityMapping(obj: unknown): ParsedMapping {
  if (!isRecord(obj)) return { ok: false, name: '', claims: [], problems: ['the IdentityMapping must be an object'] };
  const metadata = obj.metadata;
  const rawName = isRecord(metadata) ? metadata.name : undefined;
  const name = typeof rawName === 'string' ? rawName : '';
  const problems: string[] = [];
  if (name === '') problems.push('metadata.name is required');
  const spec = obj.spec;
  const { claims, duplicates } = claimsOf(spec);
  if (!isRecord(spec)) {
    problems.push(spec === undefined ? 'spec is required' : 'spec must be an object');
    return { ok: false, name, claims, problems };
  }
  const validateSpec = specValidator();
  if (!validateSpec(spec)) problems.push(...(validateSpec.errors ?? []).map(toProblem));
  problems.push(...providerBlockProblems(spec), ...duplicates);
  if (problems.length > 0) return { ok: false, name, claims, problems: [...new Set(problems)] };
  return { ok: true, mapping: toResolvedMapping(name, spec as unknown as IdentityMappingSpec, claims) };
}
