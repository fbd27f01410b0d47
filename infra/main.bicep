// Assignments on Azure Functions Flex Consumption, with managed identity and no keys anywhere:
// Cosmos DB local auth and Storage shared keys are disabled; the function app's system-assigned
// identity gets data-plane RBAC roles instead. Deployed with `azd up` (see azure.yaml).
targetScope = 'resourceGroup'

@description('Short environment name; prefixes resource names.')
param environmentName string

param location string = resourceGroup().location

@description('Allowed Entra tenant ids, comma-separated (AUTH_TENANT_ID).')
param authTenantIds string = tenant().tenantId

@description('Accepted token audiences, comma-separated (AUTH_AUDIENCE): the API app registration client id and/or api:// URI.')
param authAudiences string

@allowed(['cosmos', 'graph'])
param directory string = 'graph'

param delegationMaxDepth int = 10

var suffix = uniqueString(subscription().id, resourceGroup().id, environmentName)
var databaseName = 'assignments'
// Container names and partition key paths must agree with core/store.py (tests/test_infra.py checks).
var containers = [
  { name: 'assignments', partitionKey: '/pk', defaultTtl: -1 }
  { name: 'users', partitionKey: '/pk', defaultTtl: null }
  { name: 'leases', partitionKey: '/id', defaultTtl: null }
]
var deploymentContainerName = 'app-package'

resource logs 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: 'log-${environmentName}-${suffix}'
  location: location
  properties: { retentionInDays: 30, sku: { name: 'PerGB2018' } }
}

resource insights 'Microsoft.Insights/components@2020-02-02' = {
  name: 'appi-${environmentName}-${suffix}'
  location: location
  kind: 'web'
  properties: { Application_Type: 'web', WorkspaceResourceId: logs.id, DisableLocalAuth: true }
}

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: take('st${replace(environmentName, '-', '')}${suffix}', 24)
  location: location
  kind: 'StorageV2'
  sku: { name: 'Standard_LRS' }
  properties: {
    allowSharedKeyAccess: false
    allowBlobPublicAccess: false
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
  }
  resource blobs 'blobServices' = {
    name: 'default'
    resource packages 'containers' = { name: deploymentContainerName }
  }
}

resource cosmos 'Microsoft.DocumentDB/databaseAccounts@2024-05-15' = {
  name: 'cosmos-${environmentName}-${suffix}'
  location: location
  kind: 'GlobalDocumentDB'
  properties: {
    databaseAccountOfferType: 'Standard'
    disableLocalAuth: true
    consistencyPolicy: { defaultConsistencyLevel: 'Session' }
    locations: [{ locationName: location, failoverPriority: 0 }]
    capabilities: [{ name: 'EnableServerless' }]
  }
  resource database 'sqlDatabases' = {
    name: databaseName
    properties: { resource: { id: databaseName } }
    resource container 'containers' = [for c in containers: {
      name: c.name
      properties: {
        resource: union(
          { id: c.name, partitionKey: { paths: [c.partitionKey], kind: 'Hash', version: 2 } },
          c.defaultTtl == null ? {} : { defaultTtl: c.defaultTtl }
        )
      }
    }]
  }
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: 'plan-${environmentName}-${suffix}'
  location: location
  kind: 'functionapp'
  sku: { tier: 'FlexConsumption', name: 'FC1' }
  properties: { reserved: true }
}

resource app 'Microsoft.Web/sites@2024-04-01' = {
  name: 'func-${environmentName}-${suffix}'
  location: location
  kind: 'functionapp,linux'
  tags: { 'azd-service-name': 'api' }
  identity: { type: 'SystemAssigned' }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storage.properties.primaryEndpoints.blob}${deploymentContainerName}'
          authentication: { type: 'SystemAssignedIdentity' }
        }
      }
      scaleAndConcurrency: { maximumInstanceCount: 100, instanceMemoryMB: 2048 }
      runtime: { name: 'python', version: '3.11' }
    }
    siteConfig: {
      minTlsVersion: '1.2'
      appSettings: [
        { name: 'AzureWebJobsStorage__accountName', value: storage.name }
        { name: 'AzureWebJobsStorage__credential', value: 'managedidentity' }
        { name: 'APPLICATIONINSIGHTS_CONNECTION_STRING', value: insights.properties.ConnectionString }
        { name: 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING', value: 'Authorization=AAD' }
        { name: 'COSMOS_ENDPOINT', value: cosmos.properties.documentEndpoint }
        { name: 'COSMOS_DATABASE', value: databaseName }
        { name: 'COSMOS_ASSIGNMENTS_CONTAINER', value: containers[0].name }
        { name: 'COSMOS_USERS_CONTAINER', value: containers[1].name }
        { name: 'COSMOS_LEASES_CONTAINER', value: containers[2].name }
        { name: 'CosmosDB__accountEndpoint', value: cosmos.properties.documentEndpoint }
        { name: 'AUTH_TENANT_ID', value: authTenantIds }
        { name: 'AUTH_AUDIENCE', value: authAudiences }
        { name: 'AUTH_JWKS_URI', value: 'https://login.microsoftonline.com/common/discovery/v2.0/keys' }
        { name: 'DIRECTORY', value: directory }
        { name: 'DIRECTORY_CACHE_TTL_SECONDS', value: '300' }
        { name: 'GRAPH_BASE_URL', value: 'https://graph.microsoft.com/v1.0' }
        { name: 'DELEGATION_MAX_DEPTH', value: string(delegationMaxDepth) }
        { name: 'ATTEMPTS_LIMIT', value: '100' }
        { name: 'IDEMPOTENCY_TTL_HOURS', value: '24' }
        { name: 'COSMOS_VIEWS_CONTAINER', value: 'views' }
        { name: 'NOTIFICATIONS_QUEUE', value: 'assignment-notifications' }
        { name: 'SWEEP_SCHEDULE', value: '0 * * * * *' }
        { name: 'SWEEP_MAX_SECONDS', value: '50' }
        { name: 'REMINDER_LEAD_HOURS', value: '24' }
        { name: 'REMINDER_REPEAT_HOURS', value: '24' }
        { name: 'EXPIRY_WARNING_HOURS', value: '24' }
        { name: 'REMINDER_MAX', value: '5' }
      ]
    }
  }
}

// Cosmos DB Built-in Data Contributor (data plane).
resource cosmosData 'Microsoft.DocumentDB/databaseAccounts/sqlRoleAssignments@2024-05-15' = {
  parent: cosmos
  name: guid(cosmos.id, app.id, 'cosmos-data-contributor')
  properties: {
    principalId: app.identity.principalId
    roleDefinitionId: '${cosmos.id}/sqlRoleDefinitions/00000000-0000-0000-0000-000000000002'
    scope: cosmos.id
  }
}

var storageRoles = {
  blobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  queueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
  tableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
}

resource storageAccess 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for role in items(storageRoles): {
  scope: storage
  name: guid(storage.id, app.id, role.value)
  properties: {
    principalId: app.identity.principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', role.value)
  }
}]

// Monitoring Metrics Publisher, for Entra-authenticated telemetry (local auth is disabled).
resource telemetryAccess 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: insights
  name: guid(insights.id, app.id, 'metrics-publisher')
  properties: {
    principalId: app.identity.principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', '3913510d-42f4-4e42-8a64-420c390055eb')
  }
}

output AZURE_FUNCTION_APP_NAME string = app.name
output SERVICE_API_URI string = 'https://${app.properties.defaultHostName}'
output COSMOS_ENDPOINT string = cosmos.properties.documentEndpoint
