/**
 * Offline schema validation of rendered manifests, shared by the kustomize tests (manifests.test.ts)
 * and the Helm chart tests (test/charts/): kubernetes-models for built-in kinds, the committed CRD
 * for IdentityMappings (plus fields the API server would prune), strict schemas for the
 * cert-manager and Prometheus Operator subsets the manifests use (neither ships an offline
 * validator here).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ajv } from 'ajv';
import addFormats from 'ajv-formats';
import { parse } from 'yaml';

const MANIFESTS = fileURLToPath(new URL('../../manifests', import.meta.url));
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Obj = { apiVersion: string; kind: string; metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> }; [key: string]: any };

const ajv = new Ajv({ allErrors: true, strict: false });
(addFormats as unknown as (a: Ajv) => void)(ajv);
export const crd = parse(readFileSync(join(MANIFESTS, 'crd', 'identitymapping.yaml'), 'utf8')) as Obj;
export const crdVersion = crd.spec.versions.find((v: { storage: boolean }) => v.storage) as { name: string; schema: { openAPIV3Schema: OpenApiSchema } };
export const crdApiVersion = `${crd.spec.group}/${crdVersion.name}`;
export const validateMapping = ajv.compile(crdVersion.schema.openAPIV3Schema);

interface OpenApiSchema {
  type?: string;
  properties?: Record<string, OpenApiSchema>;
  items?: OpenApiSchema;
  additionalProperties?: boolean | OpenApiSchema;
  'x-kubernetes-preserve-unknown-fields'?: boolean;
}

/** Fields the API server would silently prune from a custom resource (it warns "unknown field"). */
function toPrunedFields(value: unknown, schema: OpenApiSchema, path: string): string[] {
  if (schema['x-kubernetes-preserve-unknown-fields'] || path === '.metadata') return [];
  if (Array.isArray(value)) return schema.items ? value.flatMap((v, i) => toPrunedFields(v, schema.items!, `${path}[${i}]`)) : [];
  if (typeof value !== 'object' || value === null) return [];
  if (schema.properties === undefined) return [];
  return Object.entries(value).flatMap(([key, v]) => {
    const sub = schema.properties![key];
    return sub === undefined ? [`${path}.${key} is not in the CRD schema (the API server would prune it)`] : toPrunedFields(v, sub, `${path}.${key}`);
  });
}

// cert-manager ships no offline validator; this covers the fields we use, strictly (a typo fails).
const duration = { type: 'string', pattern: '^([0-9]+(\\.[0-9]+)?(h|m|s|ms))+$' };
const issuerRef = {
  type: 'object', additionalProperties: false, required: ['name'],
  properties: { name: { type: 'string', minLength: 1 }, kind: { enum: ['Issuer', 'ClusterIssuer'] }, group: { const: 'cert-manager.io' } },
};
const metadata = { type: 'object', required: ['name', 'namespace'], properties: { name: { type: 'string', minLength: 1 }, namespace: { type: 'string', minLength: 1 } } };
const CERT_MANAGER_SCHEMAS = {
  Issuer: {
    type: 'object', required: ['apiVersion', 'kind', 'metadata', 'spec'],
    properties: {
      apiVersion: { const: 'cert-manager.io/v1' }, kind: { const: 'Issuer' }, metadata,
      spec: {
        type: 'object', additionalProperties: false, minProperties: 1, maxProperties: 1,
        properties: {
          selfSigned: { type: 'object', additionalProperties: false, properties: { crlDistributionPoints: { type: 'array', items: { type: 'string' } } } },
          ca: { type: 'object', additionalProperties: false, required: ['secretName'], properties: { secretName: { type: 'string', minLength: 1 } } },
        },
      },
    },
  },
  Certificate: {
    type: 'object', required: ['apiVersion', 'kind', 'metadata', 'spec'],
    properties: {
      apiVersion: { const: 'cert-manager.io/v1' }, kind: { const: 'Certificate' }, metadata,
      spec: {
        type: 'object', additionalProperties: false, required: ['secretName', 'issuerRef'],
        anyOf: [{ required: ['dnsNames'] }, { required: ['commonName'] }],
        properties: {
          secretName: { type: 'string', minLength: 1 }, issuerRef, isCA: { type: 'boolean' },
          commonName: { type: 'string', minLength: 1, maxLength: 64 },
          dnsNames: { type: 'array', minItems: 1, items: { type: 'string', minLength: 1 } },
          duration, renewBefore: duration,
          usages: { type: 'array', items: { enum: ['signing', 'digital signature', 'content commitment', 'key encipherment', 'key agreement', 'data encipherment', 'cert sign', 'crl sign', 'encipher only', 'decipher only', 'any', 'server auth', 'client auth', 'code signing', 'email protection', 's/mime', 'ipsec end system', 'ipsec tunnel', 'ipsec user', 'timestamping', 'ocsp signing', 'microsoft sgc', 'netscape sgc'] } },
          privateKey: {
            type: 'object', additionalProperties: false,
            properties: {
              algorithm: { enum: ['RSA', 'ECDSA', 'Ed25519'] }, size: { type: 'integer' },
              encoding: { enum: ['PKCS1', 'PKCS8'] }, rotationPolicy: { enum: ['Never', 'Always'] },
            },
          },
        },
      },
    },
  },
} as const;
const certManagerValidators = {
  Issuer: ajv.compile(CERT_MANAGER_SCHEMAS.Issuer),
  Certificate: ajv.compile(CERT_MANAGER_SCHEMAS.Certificate),
};

// Prometheus Operator: the ServiceMonitor and PrometheusRule fields the monitoring component uses.
const labelMap = { type: 'object', additionalProperties: { type: 'string' } };
const PROMETHEUS_OPERATOR_SCHEMAS = {
  ServiceMonitor: {
    type: 'object', required: ['apiVersion', 'kind', 'metadata', 'spec'],
    properties: {
      metadata,
      spec: {
        type: 'object', additionalProperties: false, required: ['selector', 'endpoints'],
        properties: {
          jobLabel: { type: 'string' },
          selector: { type: 'object', additionalProperties: false, properties: { matchLabels: labelMap } },
          endpoints: {
            type: 'array', minItems: 1,
            items: {
              type: 'object', additionalProperties: false, required: ['port'],
              properties: { port: { type: 'string' }, path: { type: 'string', pattern: '^/' }, scheme: { enum: ['http', 'https'] }, interval: { type: 'string', pattern: '^[0-9]+(ms|s|m|h)$' } },
            },
          },
        },
      },
    },
  },
  PrometheusRule: {
    type: 'object', required: ['apiVersion', 'kind', 'metadata', 'spec'],
    properties: {
      metadata,
      spec: {
        type: 'object', additionalProperties: false, required: ['groups'],
        properties: {
          groups: {
            type: 'array', minItems: 1,
            items: {
              type: 'object', additionalProperties: false, required: ['name', 'rules'],
              properties: {
                name: { type: 'string', minLength: 1 },
                rules: {
                  type: 'array',
                  items: {
                    type: 'object', additionalProperties: false, required: ['expr'],
                    properties: {
                      alert: { type: 'string', pattern: '^[A-Za-z_][A-Za-z0-9_]*$' }, record: { type: 'string' }, expr: { type: 'string', minLength: 1 },
                      for: { type: 'string', pattern: '^[0-9]+(ms|s|m|h|d|w|y)$' }, labels: labelMap, annotations: labelMap,
                    },
                  },
                },
              },
            },
          },
        },
      },
    },
  },
} as const;
const prometheusOperatorValidators = {
  ServiceMonitor: ajv.compile(PROMETHEUS_OPERATOR_SCHEMAS.ServiceMonitor),
  PrometheusRule: ajv.compile(PROMETHEUS_OPERATOR_SCHEMAS.PrometheusRule),
};

export async function toProblems(object: Obj): Promise<string[]> {
  const name = `${object.kind}/${object.metadata?.name}`;
  if (object.apiVersion === crdApiVersion && object.kind === crd.spec.names.kind) {
    const schemaProblems = validateMapping(object) ? [] : (validateMapping.errors ?? []).map((e) => `${name}: ${e.instancePath || '/'} ${e.message}`);
    return [...schemaProblems, ...toPrunedFields(object, crdVersion.schema.openAPIV3Schema, '').map((p) => `${name}: ${p}`)];
  }
  if (object.apiVersion === 'monitoring.coreos.com/v1') {
    const validate = prometheusOperatorValidators[object.kind as keyof typeof prometheusOperatorValidators];
    if (validate === undefined) return [`${name}: no schema for Prometheus Operator kind ${object.kind}`];
    return validate(object) ? [] : (validate.errors ?? []).map((e) => `${name}: ${e.instancePath || '/'} ${e.message}`);
  }
  if (object.apiVersion === 'cert-manager.io/v1') {
    const validate = certManagerValidators[object.kind as keyof typeof certManagerValidators];
    if (validate === undefined) return [`${name}: no schema for cert-manager kind ${object.kind}`];
    return validate(object) ? [] : (validate.errors ?? []).map((e) => `${name}: ${e.instancePath || '/'} ${e.message}`);
  }
  let models: Record<string, new (data: unknown) => { validate(): void }>;
  try {
    models = await import(`kubernetes-models/${object.apiVersion}`);
  } catch {
    return [`${name}: no kubernetes-models schema for apiVersion ${object.apiVersion}`];
  }
  const Model = models[object.kind];
  if (Model === undefined) return [`${name}: no kubernetes-models schema for ${object.apiVersion} ${object.kind}`];
  try {
    new Model(object).validate();
    return [];
  } catch (error) {
    return [`${name}: ${(error as Error).message}`];
  }
}

