import t from 'tap';
import { parseIdentityMapping } from '../../webhook/core/mapping-schema.js';
import type { ResolvedMapping } from '../../webhook/core/mapping.js';

const ARN = 'arn:aws:iam::123456789012:role/payments-ci';
const AZ_CLIENT = '11111111-2222-3333-4444-555555555555';
const AZ_TENANT = 'aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee';
const ISSUER = 'https://example.okta.com/oauth2/default';

/** A valid aws-iam IdentityMapping; `spec` fields override (undefined deletes). */
function aMapping(spec: Record<string, unknown> = {}, name: unknown = 'payments-ci'): Record<string, unknown> {
  const base: Record<string, unknown> = {
    serviceAccounts: [{ namespace: 'payments', name: 'ci-builder' }],
    provider: 'aws-iam',
    aws: { roleArn: ARN },
  };
  for (const [k, v] of Object.entries(spec)) {
    if (v === undefined) delete base[k];
    else base[k] = v;
  }
  return { apiVersion: 'tekton-zscaler.io/v1alpha1', kind: 'IdentityMapping', metadata: { name }, spec: base };
}

const sa = (namespace: string, name: string) => ({ namespace, name });

t.test('valid mappings resolve their defaults', async (t) => {
  const cases: Array<[string, Record<string, unknown>, ResolvedMapping]> = [
    ['aws-iam with defaults', {}, {
      name: 'payments-ci', serviceAccounts: [sa('payments', 'ci-builder')], provider: 'aws-iam', tokenExpirationSeconds: 600,
      policyTags: [], subject: ARN, audience: 'sts.amazonaws.com', env: [['AWS_ROLE_ARN', ARN]],
    }],
    ['aws-iam in GovCloud, audience override, TTL, tags sorted and unique', {
      aws: { roleArn: 'arn:aws-us-gov:iam::123456789012:role/path/r' }, audience: 'custom', tokenExpirationSeconds: 86400,
      policyTags: ['payments-artifacts', 'ci', 'ci', 'A.b_c'],
    }, {
      name: 'payments-ci', serviceAccounts: [sa('payments', 'ci-builder')], provider: 'aws-iam', tokenExpirationSeconds: 86400,
      policyTags: ['A.b_c', 'ci', 'payments-artifacts'], subject: 'arn:aws-us-gov:iam::123456789012:role/path/r', audience: 'custom',
      env: [['AWS_ROLE_ARN', 'arn:aws-us-gov:iam::123456789012:role/path/r']],
    }],
    ['empty audience means the default', { audience: '' }, {
      name: 'payments-ci', serviceAccounts: [sa('payments', 'ci-builder')], provider: 'aws-iam', tokenExpirationSeconds: 600,
      policyTags: [], subject: ARN, audience: 'sts.amazonaws.com', env: [['AWS_ROLE_ARN', ARN]],
    }],
    ['azure-ad with the default authority host', { provider: 'azure-ad', aws: undefined, azure: { clientId: AZ_CLIENT, tenantId: AZ_TENANT } }, {
      name: 'payments-ci', serviceAccounts: [sa('payments', 'ci-builder')], provider: 'azure-ad', tokenExpirationSeconds: 600, policyTags: [],
      subject: AZ_CLIENT, audience: 'api://AzureADTokenExchange',
      env: [['AZURE_CLIENT_ID', AZ_CLIENT], ['AZURE_TENANT_ID', AZ_TENANT], ['AZURE_AUTHORITY_HOST', 'https://login.microsoftonline.com/']],
    }],
    ['azure-ad with its own authority host and a domain tenant', {
      provider: 'azure-ad', aws: undefined, azure: { clientId: AZ_CLIENT, tenantId: 'contoso.onmicrosoft.com', authorityHost: 'https://login.microsoftonline.us/' },
    }, {
      name: 'payments-ci', serviceAccounts: [sa('payments', 'ci-builder')], provider: 'azure-ad', tokenExpirationSeconds: 600, policyTags: [],
      subject: AZ_CLIENT, audience: 'api://AzureADTokenExchange',
      env: [['AZURE_CLIENT_ID', AZ_CLIENT], ['AZURE_TENANT_ID', 'contoso.onmicrosoft.com'], ['AZURE_AUTHORITY_HOST', 'https://login.microsoftonline.us/']],
    }],
    ['okta: audience defaults to the client id; several ServiceAccounts', {
      provider: 'okta', aws: undefined, okta: { issuer: ISSUER, clientId: '0oa1b2c3' },
      serviceAccounts: [sa('data-science', 'notebook-runner'), sa('data-science', 'batch.runner')],
    }, {
      name: 'payments-ci', serviceAccounts: [sa('data-science', 'notebook-runner'), sa('data-science', 'batch.runner')], provider: 'okta',
      tokenExpirationSeconds: 600, policyTags: [], subject: '0oa1b2c3', audience: '0oa1b2c3', env: [['OKTA_CLIENT_ID', '0oa1b2c3'], ['OKTA_ISSUER', ISSUER]],
    }],
  ];
  for (const [name, spec, expected] of cases) t.strictSame(parseIdentityMapping(aMapping(spec)), { ok: true, mapping: expected }, name);
});

t.test('unknown fields are ignored, as the API server prunes them', async (t) => {
  const r = parseIdentityMapping(aMapping({ somethingElse: 1 }));
  t.equal(r.ok, true);
});

t.test('invalid mappings name every problem and keep their well-formed claims', async (t) => {
  const CI = sa('payments', 'ci-builder');
  const cases: Array<[string, unknown, { name: string; claims: unknown[]; problems: string[] }]> = [
    ['not an object', 'x', { name: '', claims: [], problems: ['the IdentityMapping must be an object'] }],
    ['no name, no spec', { metadata: {} }, { name: '', claims: [], problems: ['metadata.name is required', 'spec is required'] }],
    ['spec is a list', { metadata: { name: 'm' }, spec: [] }, { name: 'm', claims: [], problems: ['spec must be an object'] }],
    ['TTL too short', aMapping({ tokenExpirationSeconds: 60 }), { name: 'payments-ci', claims: [CI], problems: ['spec.tokenExpirationSeconds must be >= 600 (got 60)'] }],
    ['TTL too long', aMapping({ tokenExpirationSeconds: 86401 }), { name: 'payments-ci', claims: [CI], problems: ['spec.tokenExpirationSeconds must be <= 86400 (got 86401)'] }],
    ['TTL not an integer', aMapping({ tokenExpirationSeconds: 600.5 }), { name: 'payments-ci', claims: [CI], problems: ['spec.tokenExpirationSeconds must be an integer (got 600.5)'] }],
    ['TTL as a string', aMapping({ tokenExpirationSeconds: '600' }), { name: 'payments-ci', claims: [CI], problems: ['spec.tokenExpirationSeconds must be an integer (got "600")'] }],
    ['unknown provider', aMapping({ provider: 'gcp' }), {
      name: 'payments-ci', claims: [CI], problems: ['spec.provider must be one of aws-iam, azure-ad, okta (got "gcp")'],
    }],
    ['missing provider block', aMapping({ aws: undefined }), { name: 'payments-ci', claims: [CI], problems: ['spec.aws is required when provider is aws-iam'] }],
    ['another provider block', aMapping({ okta: { issuer: ISSUER, clientId: 'c' } }), {
      name: 'payments-ci', claims: [CI], problems: ['spec.okta is only allowed when provider is okta'],
    }],
    ['bad role ARN', aMapping({ aws: { roleArn: 'arn:aws:iam::123:role/x' } }), {
      name: 'payments-ci', claims: [CI], problems: ['spec.aws.roleArn must be an IAM role ARN such as arn:aws:iam::123456789012:role/NAME (got "arn:aws:iam::123:role/x")'],
    }],
    ['user ARN is not a role', aMapping({ aws: { roleArn: 'arn:aws:iam::123456789012:user/x' } }), {
      name: 'payments-ci', claims: [CI], problems: ['spec.aws.roleArn must be an IAM role ARN such as arn:aws:iam::123456789012:role/NAME (got "arn:aws:iam::123456789012:user/x")'],
    }],
    ['azure block incomplete', aMapping({ provider: 'azure-ad', aws: undefined, azure: { clientId: 'nope', authorityHost: 'http://x' } }), {
      name: 'payments-ci', claims: [CI], problems: [
        'spec.azure.tenantId is required',
        'spec.azure.clientId must be a GUID such as 00000000-0000-0000-0000-000000000000 (got "nope")',
        'spec.azure.authorityHost must be an https URL (got "http://x")',
      ],
    }],
    ['okta issuer not https', aMapping({ provider: 'okta', aws: undefined, okta: { issuer: 'http://example.okta.com', clientId: 'a b' } }), {
      name: 'payments-ci', claims: [CI], problems: [
        'spec.okta.issuer must be an https URL such as https://example.okta.com/oauth2/default (got "http://example.okta.com")',
        'spec.okta.clientId must be a client id without spaces (got "a b")',
      ],
    }],
    ['no ServiceAccounts', aMapping({ serviceAccounts: [] }), { name: 'payments-ci', claims: [], problems: ['spec.serviceAccounts must list at least 1 item'] }],
    ['serviceAccounts missing', aMapping({ serviceAccounts: undefined }), { name: 'payments-ci', claims: [], problems: ['spec.serviceAccounts is required'] }],
    ['malformed ServiceAccount entries are not claims; good ones are', aMapping({
      serviceAccounts: [sa('Payments', 'x'), { namespace: 'payments' }, 'ci', sa('payments', 'deployer'), sa('payments', 'deployer')],
    }), {
      name: 'payments-ci', claims: [sa('payments', 'deployer')], problems: [
        'spec.serviceAccounts[0].namespace must be a namespace name (lower-case letters, digits and "-") (got "Payments")',
        'spec.serviceAccounts[1].name is required',
        'spec.serviceAccounts[2] must be an object (got "ci")',
        'spec.serviceAccounts[4] repeats payments/deployer',
      ],
    }],
    ['bad tags', aMapping({ policyTags: ['ok', '-bad', 'x'.repeat(64), 3] }), {
      name: 'payments-ci', claims: [CI], problems: [
        'spec.policyTags[1] must be a policy tag: a letter or digit, then up to 62 letters, digits, ".", "_" or "-" (got "-bad")',
        `spec.policyTags[2] must be a policy tag: a letter or digit, then up to 62 letters, digits, ".", "_" or "-" (got "${'x'.repeat(64)}")`,
        'spec.policyTags[3] must be a string (got 3)',
      ],
    }],
    ['limits: empty client id, too many tags, over-long namespace', aMapping({
      provider: 'okta', aws: undefined, okta: { issuer: ISSUER, clientId: '' },
      policyTags: Array.from({ length: 65 }, (_, i) => `t${i}`),
      serviceAccounts: [sa('n'.repeat(64), 'x')],
    }), {
      name: 'payments-ci', claims: [], problems: [
        'spec.serviceAccounts[0].namespace must be at most 63 characters',
        'spec.okta.clientId must not be empty',
        'spec.okta.clientId must be a client id without spaces (got "")',
        'spec.policyTags must list at most 64 items',
      ],
    }],
    ['many problems at once', aMapping({ provider: 'azure-ad', tokenExpirationSeconds: 1, audience: 5 }, 'multi'), {
      name: 'multi', claims: [CI], problems: [
        'spec.audience must be a string (got 5)',
        'spec.tokenExpirationSeconds must be >= 600 (got 1)',
        'spec.azure is required when provider is azure-ad',
        'spec.aws is only allowed when provider is aws-iam',
      ],
    }],
  ];
  for (const [name, obj, expected] of cases) t.strictSame(parseIdentityMapping(obj), { ok: false, ...expected }, name);
});
