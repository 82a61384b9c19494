// The storage account the Function App uses for everything: the Functions host (AzureWebJobsStorage),
// the app's queues and tables, and the Flex Consumption deployment package container.
// Entra ID only: shared keys (and so connection strings and SAS) are disabled.

param name string
param location string
param tags object = {}

@description('Geo-redundant: billing state must survive a regional outage.')
@allowed([
  'Standard_GRS'
  'Standard_RAGRS'
  'Standard_GZRS'
  'Standard_RAGZRS'
])
param skuName string = 'Standard_GRS'

@description('Blob container that holds the Flex Consumption deployment packages.')
param deploymentContainerName string

@description('Blob container where Event Grid dead-letters undeliverable email delivery reports.')
param eventGridDeadLetterContainerName string = 'eventgrid-deadletter'

@description('Queues the app reads and writes (shared/settings.py, functions/*.py) and their poison queues.')
param queueNames array = [
  'payment-events'
  'payment-events-poison'
  'subscription-lifecycle'
  'email-outbox'
  'email-outbox-poison'
  'sweep-work'
  'sweep-work-poison'
  'sweep-pages'
  'sweep-pages-poison'
]

@description('Tables the app keeps its state in (shared/settings.py).')
param tableNames array = [
  'billing'
  'billingsystem'
  'billingindex'
]

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: skuName
  }
  properties: {
    accessTier: 'Hot'
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    allowBlobPublicAccess: false
    allowCrossTenantReplication: false
    isLocalUserEnabled: false
    isSftpEnabled: false
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    dnsEndpointType: 'Standard'
    // checkov:skip=CKV_AZURE_59:Flex Consumption without VNet integration reaches storage over its public endpoint; Entra ID-only auth (no shared keys) is the control. See infra/README.md.
    // checkov:skip=CKV_AZURE_35:A default-deny storage firewall needs VNet integration and private endpoints, which this template does not deploy (Flex Consumption reaches storage over its public endpoint); access is Entra ID only.
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
    encryption: {
      keySource: 'Microsoft.Storage'
      requireInfrastructureEncryption: true
      services: {
        blob: {
          enabled: true
          keyType: 'Account'
        }
        file: {
          enabled: true
          keyType: 'Account'
        }
        queue: {
          enabled: true
          keyType: 'Account'
        }
        table: {
          enabled: true
          keyType: 'Account'
        }
      }
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
  properties: {
    deleteRetentionPolicy: {
      enabled: true
      days: 7
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: 7
    }
  }
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deploymentContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource deadLetterContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: eventGridDeadLetterContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource queues 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = [for queueName in queueNames: {
  parent: queueService
  name: queueName
}]

resource tableService 'Microsoft.Storage/storageAccounts/tableServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource tables 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = [for tableName in tableNames: {
  parent: tableService
  name: tableName
}]

output id string = storage.id
output name string = storage.name
output blobEndpoint string = storage.properties.primaryEndpoints.blob
output deploymentContainerName string = deploymentContainer.name
output deadLetterContainerName string = deadLetterContainer.name
