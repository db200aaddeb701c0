/** IdentityMapping (cluster-scoped CRD `identitymappings.tekton-zscaler.io`) as admins write it. */
export const PROVIDERS = ['aws-iam', 'azure-ad', 'okta'] as const;
export type Provider = (typeof PROVIDERS)[number];

export const MIN_TOKEN_TTL_SECONDS = 600;
export const MAX_TOKEN_TTL_SECONDS = 86400;
export const DEFAULT_TOKEN_TTL_SECONDS = 600;
export const DEFAULT_AUDIENCE = {
  'aws-iam': 'sts.amazonaws.com',
  'azure-ad': 'api://AzureADTokenExchange',
} as const;
export const DEFAULT_AZURE_AUTHORITY_HOST = 'https://login.microsoftonline.com/';

export interface ServiceAccountRef {
  namespace: string;
  name: string;
}

export interface IdentityMappingSpec {
  serviceAccounts: ServiceAccountRef[];
  provider: Provider;
  aws?: { roleArn: string };
  azure?: { clientId: string; tenantId: string; authorityHost?: string };
  okta?: { issuer: string; clientId: string };
  audience?: string;
  tokenExpirationSeconds?: number;
  policyTags?: string[];
}

/**
 * A valid mapping with every default applied: what the decision core uses. Built once per mapping
 * change (never per request), so per-mapping patch fragments can be cached on it.
 */
export interface ResolvedMapping {
  name: string;
  serviceAccounts: ServiceAccountRef[];
  provider: Provider;
  /** Who the run acts as: role ARN (aws-iam), client id (azure-ad, okta). */
  subject: string;
  audience: string;
  tokenExpirationSeconds: number;
  policyTags: string[];
  /** SDK env vars in a fixed order, without the token-file vars (the core adds those). */
  env: ReadonlyArray<readonly [string, string]>;
}

/** What looking up a ServiceAccount yields: a usable mapping, a problem, or nothing. */
export type MappingLookup =
  | { kind: 'mapped'; mapping: ResolvedMapping }
  | { kind: 'conflict'; mappings: string[] }
  | { kind: 'invalid'; mapping: string; problems: string[] }
  | { kind: 'unmapped' };

export type NamespaceMode = 'enforce' | 'audit';

export interface NamespaceFacts {
  name: string;
  /** undefined = not enrolled. */
  mode?: NamespaceMode;
  /** From the namespace annotation `<domain>/policy-tags`. */
  policyTags: string[];
}

/**
 * The facts the decision core needs, looked up in O(1) from memory. Implementations (files source,
 * Kubernetes informers) never touch the network from these methods.
 */
export interface Facts {
  namespace(name: string): NamespaceFacts | undefined;
  lookup(namespace: string, serviceAccount: string): MappingLookup;
}
