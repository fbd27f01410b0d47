// Assignments on Azure Functions Flex Consumption (Python 3.11), deployed with `azd up` (see azure.yaml and
// docs/deploy.md). No keys anywhere: Cosmos DB local auth and Storage shared keys are disabled, and the function
// app runs as a user-assigned managed identity that gets data-plane roles only. Those roles are granted by the
// modules that create the account they apply to, and the function app is created from those modules' outputs,
// so every role assignment exists before the app first starts.
//
// Resource names are a type prefix and a resource token, as the azd templates make them: 13 lowercase
// characters from uniqueString(subscription, environment, location). They are valid for any environment name
// azd accepts (mixed case, up to 64 characters); tests/test_infra.py builds them from the expressions below and
// checks each against its Azure naming rule. The Bicep CLI is not available where this repository is built, so
// this file has never been compiled there: keep it plain enough to review by reading.
targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('The azd environment name (AZURE_ENV_NAME): names the resource group and seeds the resource token.')
param environmentName string

@minLength(1)
@description('Region of every resource. Flex Consumption runs in some regions only: az functionapp list-flexconsumption-locations')
param location string

@description('Resource group to create; by default rg-{environmentName}.')
param resourceGroupName string = ''

@description('Object id of the person (or pipeline) running azd (AZURE_PRINCIPAL_ID). Keys are disabled, so it gets the same data-plane roles as the app, to use Cosmos DB and Storage with its own sign-in. Empty: no access.')
param principalId string = ''

@allowed(['User', 'ServicePrincipal'])
@description('What principalId is: User for a developer, ServicePrincipal for a pipeline.')
param principalType string = 'User'

@minLength(1)
@description('Client id (appId) of the API app registration (AUTH_CLIENT_ID; docs/deploy.md says how to create it).')
param authClientId string

@description('Accepted token audiences, comma-separated (AUTH_AUDIENCE). Empty: both forms Entra issues for this API, api://{authClientId} and {authClientId}.')
param authAudiences string = ''

@description('Allowed Entra tenant ids, comma-separated (AUTH_TENANT_ID). Empty: this subscription\'s tenant.')
param authTenantIds string = ''

@allowed(['cosmos', 'graph'])
@description('Where users are looked up (DIRECTORY): graph needs Microsoft Graph User.Read.All for the app\'s identity (the postprovision hook grants it or prints how); cosmos needs users loaded with PUT /users/{userKey}.')
param directory string = 'graph'

@description('Maximum length of a delegation chain (DELEGATION_MAX_DEPTH).')
param delegationMaxDepth int = 10

var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = { 'azd-env-name': environmentName }

// Every resource name: tests/test_infra.py evaluates these and checks them against Azure's naming rules.
var names = {
  resourceGroup: empty(resourceGroupName) ? 'rg-${environmentName}' : resourceGroupName
  identity: 'id-api-${resourceToken}'
  logAnalytics: 'log-${resourceToken}'
  appInsights: 'appi-${resourceToken}'
  storage: 'st${resourceToken}'
  cosmos: 'cosmos-${resourceToken}'
  plan: 'plan-${resourceToken}'
  functionApp: 'func-api-${resourceToken}'
  deploymentContainer: 'app-package-${resourceToken}'
}

// Cosmos DB: database, containers and partition key paths agree with core/store.py and core/settings.py
// (tests/test_infra.py checks). defaultTtl -1 turns TTL on without expiring anything unless a document says so.
var databaseName = 'assignments'
var containers = [
  { name: 'assignments', paths: ['/pk'], kind: 'Hash', version: 2, defaultTtl: -1 }
  { name: 'users', paths: ['/pk'], kind: 'Hash', version: 2 }
  { name: 'leases', paths: ['/id'], kind: 'Hash', version: 2 }
  { name: 'views', paths: ['/pk'], kind: 'Hash', version: 2, defaultTtl: -1 }
]

// Storage queues: notifications, and the poison queue a queue-triggered consumer moves failing messages to.
var notificationsQueue = 'assignment-notifications'
// The change feed's retry queue: documents whose projection or notification failed, retried apart from their batch.
var changesRetryQueue = 'assignment-changes-retry'
var queues = [
  { name: notificationsQueue }
  { name: '${notificationsQueue}-poison' }
  { name: changesRetryQueue }
  { name: '${changesRetryQueue}-poison' }
]

var audiences = empty(authAudiences) ? 'api://${authClientId},${authClientId}' : authAudiences
var tenantIds = empty(authTenantIds) ? tenant().tenantId : authTenantIds

// Built-in role definitions (data plane, plus telemetry publishing).
var roles = {
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  storageQueueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
  storageTableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb'
  cosmosDataContributor: '00000000-0000-0000-0000-000000000002' // Cosmos DB Built-in Data Contributor
}
var withDeveloper = !empty(principalId)

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: names.resourceGroup
  location: location
  tags: tags
}

module identity 'br/public:avm/res/managed-identity/user-assigned-identity:0.6.0' = {
  name: 'identity'
  scope: rg
  params: {
    name: names.identity
    location: location
    tags: tags
  }
}

module logs 'br/public:avm/res/operational-insights/workspace:0.16.1' = {
  name: 'logs'
  scope: rg
  params: {
    name: names.logAnalytics
    location: location
    tags: tags
    dataRetention: 30
  }
}

module insights 'br/public:avm/res/insights/component:0.8.0' = {
  name: 'insights'
  scope: rg
  params: {
    name: names.appInsights
    location: location
    tags: tags
    workspaceResourceId: logs.outputs.resourceId
    retentionInDays: 30
    disableLocalAuth: true // telemetry is accepted from Entra-authenticated senders only
    roleAssignments: concat(
      [
        {
          principalId: identity.outputs.principalId
          principalType: 'ServicePrincipal'
          roleDefinitionIdOrName: roles.monitoringMetricsPublisher
        }
      ],
      withDeveloper
        ? [{ principalId: principalId, principalType: principalType, roleDefinitionIdOrName: roles.monitoringMetricsPublisher }]
        : []
    )
  }
}

module storage 'br/public:avm/res/storage/storage-account:0.33.0' = {
  name: 'storage'
  scope: rg
  params: {
    name: names.storage
    location: location
    tags: tags
    kind: 'StorageV2'
    skuName: 'Standard_LRS'
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    allowBlobPublicAccess: false
    minimumTlsVersion: 'TLS1_2'
    publicNetworkAccess: 'Enabled'
    networkAcls: { defaultAction: 'Allow', bypass: 'AzureServices' }
    blobServices: { containers: [{ name: names.deploymentContainer }] }
    queueServices: { queues: queues }
    roleAssignments: concat(
      [
        { principalId: identity.outputs.principalId, principalType: 'ServicePrincipal', roleDefinitionIdOrName: roles.storageBlobDataOwner }
        { principalId: identity.outputs.principalId, principalType: 'ServicePrincipal', roleDefinitionIdOrName: roles.storageQueueDataContributor }
        { principalId: identity.outputs.principalId, principalType: 'ServicePrincipal', roleDefinitionIdOrName: roles.storageTableDataContributor }
      ],
      withDeveloper
        ? [
            { principalId: principalId, principalType: principalType, roleDefinitionIdOrName: roles.storageBlobDataOwner }
            { principalId: principalId, principalType: principalType, roleDefinitionIdOrName: roles.storageQueueDataContributor }
            { principalId: principalId, principalType: principalType, roleDefinitionIdOrName: roles.storageTableDataContributor }
          ]
        : []
    )
  }
}

module cosmos 'br/public:avm/res/document-db/database-account:0.20.1' = {
  name: 'cosmos'
  scope: rg
  params: {
    name: names.cosmos
    location: location
    tags: tags
    capabilitiesToAdd: ['EnableServerless']
    disableLocalAuthentication: true
    disableKeyBasedMetadataWriteAccess: true
    zoneRedundant: false // not every region has zones; cannot be changed after creation
    backupPolicyType: 'Periodic'
    networkRestrictions: {
      publicNetworkAccess: 'Enabled' // the module's default is Disabled; Flex Consumption here has no VNet
      networkAclBypass: 'None'
      ipRules: []
      virtualNetworkRules: []
    }
    sqlDatabases: [{ name: databaseName, containers: containers }]
    sqlRoleAssignments: concat(
      [{ principalId: identity.outputs.principalId, roleDefinitionId: roles.cosmosDataContributor }],
      withDeveloper ? [{ principalId: principalId, roleDefinitionId: roles.cosmosDataContributor }] : []
    )
  }
}

module plan 'br/public:avm/res/web/serverfarm:0.7.0' = {
  name: 'plan'
  scope: rg
  params: {
    name: names.plan
    location: location
    tags: tags
    kind: 'functionapp'
    skuName: 'FC1'
    reserved: true
    zoneRedundant: false
  }
}

// App settings: the identity-based host connections, telemetry, and every setting of README's "Configuration"
// table (tests/test_infra.py checks them against core/settings.py). The ones bindings name (%COSMOS_DATABASE%,
// %COSMOS_ASSIGNMENTS_CONTAINER%, %COSMOS_LEASES_CONTAINER%, %CHANGES_RETRY_QUEUE%, %SWEEP_SCHEDULE%) have no
// default on the host, so they must be set here even where they equal the code's default.
var appSettings = {
  AzureWebJobsStorage__accountName: storage.outputs.name
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identity.outputs.clientId
  CosmosDB__accountEndpoint: cosmos.outputs.endpoint
  CosmosDB__credential: 'managedidentity'
  CosmosDB__clientId: identity.outputs.clientId
  AZURE_CLIENT_ID: identity.outputs.clientId // DefaultAzureCredential picks the user-assigned identity
  APPLICATIONINSIGHTS_CONNECTION_STRING: insights.outputs.connectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identity.outputs.clientId};Authorization=AAD'
  COSMOS_ENDPOINT: cosmos.outputs.endpoint
  COSMOS_DATABASE: databaseName
  COSMOS_ASSIGNMENTS_CONTAINER: 'assignments'
  COSMOS_USERS_CONTAINER: 'users'
  COSMOS_LEASES_CONTAINER: 'leases'
  COSMOS_VIEWS_CONTAINER: 'views'
  AUTH_TENANT_ID: tenantIds
  AUTH_AUDIENCE: audiences
  AUTH_JWKS_URI: 'https://login.microsoftonline.com/common/discovery/v2.0/keys'
  DIRECTORY: directory
  DIRECTORY_CACHE_TTL_SECONDS: '300'
  GRAPH_BASE_URL: 'https://graph.microsoft.com/v1.0'
  DELEGATION_MAX_DEPTH: string(delegationMaxDepth)
  ATTEMPTS_LIMIT: '100'
  IDEMPOTENCY_TTL_HOURS: '24'
  NOTIFICATIONS_QUEUE: notificationsQueue
  CHANGES_RETRY_QUEUE: changesRetryQueue
  SWEEP_SCHEDULE: '0 * * * * *'
  SWEEP_MAX_SECONDS: '50'
  REMINDER_LEAD_HOURS: '24'
  REMINDER_REPEAT_HOURS: '24'
  EXPIRY_WARNING_HOURS: '24'
  REMINDER_MAX: '5'
}

module app 'br/public:avm/res/web/site:0.24.0' = {
  name: 'app'
  scope: rg
  params: {
    name: names.functionApp
    location: location
    tags: union(tags, { 'azd-service-name': 'api' }) // azd deploys the `api` service of azure.yaml here
    kind: 'functionapp,linux'
    serverFarmResourceId: plan.outputs.resourceId
    managedIdentities: { userAssignedResourceIds: [identity.outputs.resourceId] }
    httpsOnly: true
    clientAffinityEnabled: false
    siteConfig: { alwaysOn: false, minTlsVersion: '1.2', ftpsState: 'Disabled' }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storage.outputs.primaryBlobEndpoint}${names.deploymentContainer}'
          authentication: { type: 'UserAssignedIdentity', userAssignedIdentityResourceId: identity.outputs.resourceId }
        }
      }
      scaleAndConcurrency: { maximumInstanceCount: 100, instanceMemoryMB: 2048 }
      runtime: { name: 'python', version: '3.11' }
    }
    configs: [{ name: 'appsettings', properties: appSettings }]
  }
}

output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = app.outputs.name
output AZURE_FUNCTION_IDENTITY_PRINCIPAL_ID string = identity.outputs.principalId
output AZURE_FUNCTION_IDENTITY_CLIENT_ID string = identity.outputs.clientId
output SERVICE_API_URI string = 'https://${app.outputs.defaultHostname}'
output COSMOS_ENDPOINT string = cosmos.outputs.endpoint
output DIRECTORY string = directory
// What a client asks a token for (docs/deploy.md): az account get-access-token --resource $API_APP_ID_URI
output API_APP_ID_URI string = 'api://${authClientId}'
output API_SCOPE string = 'api://${authClientId}/Assignments.ReadWrite'
