// Every role assignment of the deployment, in one place.
//
// Function App identity (user-assigned):
//   storage account   Storage Blob Data Owner         host storage, deployment package
//                     Storage Queue Data Contributor  queue triggers and the app's queues
//                     Storage Table Data Contributor  the app's state tables
//   key vault         Key Vault Secrets User          Key Vault references in app settings
//   app insights      Monitoring Metrics Publisher    telemetry with local auth disabled
//   ACS resource      ACS email sender (custom) or    sending email with Entra ID
//                     Communication and Email Service Owner (built-in), never Contributor
// Event Grid system topic identity (system-assigned):
//   dead-letter container  Storage Blob Data Contributor  dead-lettering without shared keys

param storageAccountName string
param keyVaultName string
param applicationInsightsName string
param communicationServiceName string
param deadLetterContainerName string

@description('Principal ID of the Function App\'s user-assigned identity.')
param appPrincipalId string

@description('Principal ID of the Event Grid system topic\'s identity (dead-lettering).')
param systemTopicPrincipalId string

@description('''`custom`: a role with only the three actions ACS documents for sending email with Entra ID
(CommunicationServices/Read, CommunicationServices/Write, EmailServices/write); needs
Microsoft.Authorization/roleDefinitions/write (Owner or User Access Administrator) at deployment.
`builtin`: the built-in Communication and Email Service Owner role (broader: it can also list keys).''')
@allowed([
  'custom'
  'builtin'
])
param acsSenderRoleKind string = 'custom'

var storageBlobDataOwner = 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
var storageBlobDataContributor = 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
var storageQueueDataContributor = '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
var storageTableDataContributor = '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
var keyVaultSecretsUser = '4633458b-17de-408a-b874-0445c86b69e6'
var monitoringMetricsPublisher = '3913510d-42f4-4e42-8a64-420c390055eb'
var communicationAndEmailServiceOwner = '09976791-48a7-449e-bb21-39d1a415f350'
var acsEmailSenderRoleGuid = guid(resourceGroup().id, 'acs-email-sender')
var acsSenderRoleId = acsSenderRoleKind == 'custom' ? acsEmailSenderRoleGuid : communicationAndEmailServiceOwner

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' existing = {
  parent: storage
  name: 'default'
}

resource deadLetterContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = {
  parent: blobService
  name: deadLetterContainerName
}

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: keyVaultName
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource communicationService 'Microsoft.Communication/communicationServices@2023-04-01' existing = {
  name: communicationServiceName
}

resource acsEmailSenderRole 'Microsoft.Authorization/roleDefinitions@2022-04-01' = if (acsSenderRoleKind == 'custom') {
  name: acsEmailSenderRoleGuid
  properties: {
    roleName: 'ACS email sender (${resourceGroup().name}, ${uniqueString(resourceGroup().id)})'
    description: 'Send email through Azure Communication Services with Entra ID, nothing else.'
    type: 'CustomRole'
    assignableScopes: [
      resourceGroup().id
    ]
    permissions: [
      {
        actions: [
          'Microsoft.Communication/CommunicationServices/Read'
          'Microsoft.Communication/CommunicationServices/Write'
          'Microsoft.Communication/EmailServices/write'
        ]
        notActions: []
        dataActions: []
        notDataActions: []
      }
    ]
  }
}

resource blobOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, appPrincipalId, storageBlobDataOwner)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataOwner)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource queueContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, appPrincipalId, storageQueueDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageQueueDataContributor)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource tableContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, appPrincipalId, storageTableDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageTableDataContributor)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource secretsUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, appPrincipalId, keyVaultSecretsUser)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultSecretsUser)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource metricsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(applicationInsights.id, appPrincipalId, monitoringMetricsPublisher)
  scope: applicationInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', monitoringMetricsPublisher)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource emailSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(communicationService.id, appPrincipalId, acsSenderRoleId)
  scope: communicationService
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', acsSenderRoleId)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
  dependsOn: [
    acsEmailSenderRole
  ]
}

resource deadLetterWriter 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(deadLetterContainer.id, systemTopicPrincipalId, storageBlobDataContributor)
  scope: deadLetterContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributor)
    principalId: systemTopicPrincipalId
    principalType: 'ServicePrincipal'
  }
}

output acsSenderRoleDefinitionId string = subscriptionResourceId('Microsoft.Authorization/roleDefinitions', acsSenderRoleId)
