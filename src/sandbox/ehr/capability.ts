import type { CapabilityStatement, CapabilityStatementRestResource, ResourceType } from '@medplum/fhirtypes';
import { SUPPORTED_ALGS } from './clients.ts';

/** Pure builders for the sandbox's discovery documents: `/metadata` and `.well-known/smart-configuration`. */

export interface DiscoveryUrls {
  /** FHIR base, no trailing slash. */
  readonly fhirBase: string;
  readonly tokenUrl: string;
}

const BULK_EXPORT = 'http://hl7.org/fhir/uv/bulkdata/OperationDefinition';

const COMMON_SEARCH_PARAMS = [
  { name: '_id', type: 'token', definition: 'http://hl7.org/fhir/SearchParameter/Resource-id' },
  {
    name: '_lastUpdated',
    type: 'date',
    definition: 'http://hl7.org/fhir/SearchParameter/Resource-lastUpdated',
    documentation: 'Prefixes eq, gt, ge, lt, le.',
  },
  { name: '_count', type: 'number', documentation: 'Page size; default 100, at most 1000.' },
  { name: '_sort', type: 'string', documentation: '_lastUpdated, -_lastUpdated, _id.' },
] as const;

export function capabilityStatement(
  urls: DiscoveryUrls,
  resourceTypes: readonly string[],
  date: string,
): CapabilityStatement {
  const resource = resourceTypes.map((type): CapabilityStatementRestResource => {
    const entry: CapabilityStatementRestResource = {
      type: type as ResourceType,
      interaction: [
        { code: 'read' },
        { code: 'vread' },
        { code: 'history-instance' },
        { code: 'search-type' },
        { code: 'create' },
        { code: 'update' },
        { code: 'delete' },
      ],
      versioning: 'versioned',
      readHistory: true,
      updateCreate: true,
      conditionalDelete: 'not-supported',
      searchParam: COMMON_SEARCH_PARAMS.map((p) => ({ ...p })),
    };
    if (type === 'Patient') {
      entry.operation = [{ name: 'export', definition: `${BULK_EXPORT}/patient-export` }];
    } else if (type === 'Group') {
      entry.operation = [{ name: 'export', definition: `${BULK_EXPORT}/group-export` }];
    }
    return entry;
  });

  return {
    resourceType: 'CapabilityStatement',
    status: 'active',
    date,
    kind: 'instance',
    publisher: 'Sluice',
    software: { name: 'Sluice EHR sandbox' },
    implementation: { description: 'Sluice EHR sandbox (stands in for Epic FHIR R4)', url: urls.fhirBase },
    fhirVersion: '4.0.1',
    format: ['application/fhir+json', 'json'],
    instantiates: ['http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data'],
    rest: [
      {
        mode: 'server',
        security: {
          cors: false,
          service: [
            {
              coding: [
                {
                  system: 'http://terminology.hl7.org/CodeSystem/restful-security-service',
                  code: 'SMART-on-FHIR',
                },
              ],
              text: 'SMART Backend Services (client_credentials, private_key_jwt)',
            },
          ],
          extension: [
            {
              url: 'http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris',
              extension: [{ url: 'token', valueUri: urls.tokenUrl }],
            },
          ],
        },
        resource,
        searchParam: COMMON_SEARCH_PARAMS.map((p) => ({ ...p })),
        operation: [{ name: 'export', definition: `${BULK_EXPORT}/export` }],
      },
    ],
  };
}

export interface SmartConfiguration {
  readonly issuer: string;
  readonly token_endpoint: string;
  readonly grant_types_supported: readonly string[];
  readonly token_endpoint_auth_methods_supported: readonly string[];
  readonly token_endpoint_auth_signing_alg_values_supported: readonly string[];
  readonly scopes_supported: readonly string[];
  readonly capabilities: readonly string[];
}

export function smartConfiguration(urls: DiscoveryUrls): SmartConfiguration {
  return {
    issuer: urls.fhirBase,
    token_endpoint: urls.tokenUrl,
    grant_types_supported: ['client_credentials'],
    token_endpoint_auth_methods_supported: ['private_key_jwt'],
    token_endpoint_auth_signing_alg_values_supported: [...SUPPORTED_ALGS],
    scopes_supported: ['system/*.read', 'system/*.write', 'system/*.*', 'system/*.rs', 'system/*.cruds'],
    capabilities: ['client-confidential-asymmetric', 'permission-v1', 'permission-v2'],
  };
}
