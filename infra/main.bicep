// Past-due billing lifecycle service: everything `azd up` provisions.
// Shaped after Azure-Samples/functions-quickstart-python-http-azd, with plain resource declarations
// (no registry modules) so it can be checked offline. See infra/README.md.

targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('Name of the azd environment; seeds the unique suffix of every resource name.')
param environmentName string

@minLength(1)
@description('Region for all regional resources. Must offer Flex Consumption (az functionapp list-flexconsumption-locations).')
@metadata({
  azd: {
    type: 'location'
  }
})
param location string

@description('Resource group name; empty: rg-<environmentName>.')
param resourceGroupName string = ''

@description('Storage replication; GRS family only.')
@allowed([
  'Standard_GRS'
  'Standard_RAGRS'
  'Standard_GZRS'
  'Standard_RAGZRS'
])
param storageSkuName string = 'Standard_GRS'

@description('Flex Consumption instance size.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Upper bound on instances; it also bounds the load the app can put on the payment gateway.')
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 100

@description('Spread the Flex Consumption plan over availability zones (only in regions that offer it for Flex).')
param zoneRedundant bool = false

@description('Where ACS keeps data at rest (for example United States, Europe, UK).')
param acsDataLocation string = 'United States'

@description('Role that lets the app send email: `custom` (least privilege, needs roleDefinitions/write) or `builtin` (Communication and Email Service Owner). Never Contributor.')
@allowed([
  'custom'
  'builtin'
])
param acsSenderRoleKind string = 'custom'

@description('ACS endpoint for sending email; empty: the endpoint of the ACS resource deployed here.')
param acsEmailEndpoint string = ''

@description('Sender address; empty: DoNotReply@ the Azure-managed domain deployed here.')
param acsEmailSender string = ''

@description('Billing page linked from emails; empty: /api/billing on this Function App.')
param billingPageUrl string = ''

@description('Support page linked from emails.')
param supportUrl string = 'https://support.example.com/billing'

@description('Base URL of the payment gateway; empty: no gateway configured yet.')
param paymentGatewayUrl string = ''

@secure()
@minLength(32)
@description('Key that signs links in billing emails; stored in Key Vault. Keep it stable across provisions: changing it invalidates links already sent.')
param linkSigningKey string

@secure()
@description('Payment gateway API key; stored in Key Vault. Empty: the secret is not touched.')
param paymentGatewayApiKey string = ''

@description('Payment provider adapter (PAYMENT_GATEWAY): `http` (the product\'s own gateway protocol at paymentGatewayUrl) or `stripe`.')
@allowed([
  'http'
  'stripe'
])
param paymentGateway string = 'http'

@secure()
@description('Stripe secret API key (STRIPE_API_KEY); stored in Key Vault. Empty: the secret is not touched.')
param stripeApiKey string = ''

@secure()
@description('Stripe webhook signing secret (STRIPE_WEBHOOK_SECRET); stored in Key Vault. Empty: the secret is not touched.')
param stripeWebhookSecret string = ''

@description('Emails per minute the ACS resource allows (EMAIL_QUOTA_PER_MINUTE); empty: no pacing.')
param emailQuotaPerMinute string = ''

@description('Emails per hour the ACS resource allows (EMAIL_QUOTA_PER_HOUR); empty: no pacing.')
param emailQuotaPerHour string = ''

@description('Address that receives the alerts; empty: no action group (alerts still show in Azure Monitor > Alerts).')
param alertEmail string = ''

@description('Create the Event Grid subscription that delivers ACS email delivery reports to the function email_delivery_reports. Event Grid rejects it until the code is deployed, so it is off for the first `azd up`.')
param emailEventsSubscriptionEnabled bool = false

var abbrs = loadJsonContent('./abbreviations.json')
var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
}
var functionAppName = '${abbrs.webSitesFunctions}api-${resourceToken}'
var deploymentContainerName = 'app-package-${take(functionAppName, 32)}-${take(toLower(uniqueString(functionAppName, resourceToken)), 7)}'

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: !empty(resourceGroupName) ? resourceGroupName : '${abbrs.resourcesResourceGroups}${environmentName}'
  location: location
  tags: tags
}

module identity 'app/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    name: '${abbrs.managedIdentityUserAssignedIdentities}api-${resourceToken}'
    location: location
    tags: tags
  }
}

module monitoring 'app/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    logAnalyticsName: '${abbrs.operationalInsightsWorkspaces}${resourceToken}'
    applicationInsightsName: '${abbrs.insightsComponents}${resourceToken}'
    location: location
    tags: tags
  }
}

module storage 'app/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    name: '${abbrs.storageStorageAccounts}${resourceToken}'
    location: location
    tags: tags
    skuName: storageSkuName
    deploymentContainerName: deploymentContainerName
  }
}

module keyVault 'app/keyvault.bicep' = {
  name: 'keyvault'
  scope: rg
  params: {
    name: '${abbrs.keyVaultVaults}${resourceToken}'
    location: location
    tags: tags
    logAnalyticsWorkspaceId: monitoring.outputs.logAnalyticsId
    linkSigningKey: linkSigningKey
    gatewayApiKey: paymentGatewayApiKey
    stripeApiKey: stripeApiKey
    stripeWebhookSecret: stripeWebhookSecret
  }
}

module communication 'app/communication.bicep' = {
  name: 'communication'
  scope: rg
  params: {
    communicationServiceName: '${abbrs.communicationCommunicationServices}${resourceToken}'
    emailServiceName: '${abbrs.communicationEmailServices}${resourceToken}'
    systemTopicName: '${abbrs.eventGridSystemTopics}acs-${resourceToken}'
    dataLocation: acsDataLocation
    tags: tags
  }
}

module rbac 'app/rbac.bicep' = {
  name: 'rbac'
  scope: rg
  params: {
    storageAccountName: storage.outputs.name
    keyVaultName: keyVault.outputs.name
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    communicationServiceName: communication.outputs.communicationServiceName
    deadLetterContainerName: storage.outputs.deadLetterContainerName
    appPrincipalId: identity.outputs.principalId
    systemTopicPrincipalId: communication.outputs.systemTopicPrincipalId
    acsSenderRoleKind: acsSenderRoleKind
  }
}

module api 'app/api.bicep' = {
  name: 'api'
  scope: rg
  params: {
    name: functionAppName
    planName: '${abbrs.webServerFarms}${resourceToken}'
    location: location
    tags: tags
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    storageAccountName: storage.outputs.name
    storageBlobEndpoint: storage.outputs.blobEndpoint
    deploymentContainerName: storage.outputs.deploymentContainerName
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    instanceMemoryMB: instanceMemoryMB
    maximumInstanceCount: maximumInstanceCount
    zoneRedundant: zoneRedundant
    acsEmailEndpoint: !empty(acsEmailEndpoint) ? acsEmailEndpoint : communication.outputs.endpoint
    acsEmailSender: !empty(acsEmailSender) ? acsEmailSender : communication.outputs.senderAddress
    billingPageUrl: !empty(billingPageUrl) ? billingPageUrl : 'https://${functionAppName}.azurewebsites.net/api/billing'
    supportUrl: supportUrl
    paymentGatewayUrl: paymentGatewayUrl
    linkSigningKeySecretUri: keyVault.outputs.linkSigningKeySecretUri
    gatewayApiKeySecretUri: keyVault.outputs.gatewayApiKeySecretUri
    paymentGateway: paymentGateway
    stripeApiKeySecretUri: keyVault.outputs.stripeApiKeySecretUri
    stripeWebhookSecretUri: keyVault.outputs.stripeWebhookSecretUri
    emailQuotaPerMinute: emailQuotaPerMinute
    emailQuotaPerHour: emailQuotaPerHour
  }
  // The identity must hold its roles before the host starts: storage for the host itself, Key
  // Vault for the references in its app settings.
  dependsOn: [
    rbac
  ]
}

module alerts 'app/alerts.bicep' = {
  name: 'alerts'
  scope: rg
  params: {
    location: location
    tags: tags
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    actionGroupName: '${abbrs.insightsActionGroups}billing-${resourceToken}'
    alertEmail: alertEmail
  }
}

module emailEvents 'app/eventgrid.bicep' = if (emailEventsSubscriptionEnabled) {
  name: 'email-events'
  scope: rg
  params: {
    systemTopicName: communication.outputs.systemTopicName
    functionAppId: api.outputs.id
    storageAccountId: storage.outputs.id
    deadLetterContainerName: storage.outputs.deadLetterContainerName
  }
  dependsOn: [
    rbac
  ]
}

output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_NAME string = api.outputs.name
output SERVICE_API_NAME string = api.outputs.name
output SERVICE_API_URI string = 'https://${api.outputs.defaultHostName}'
output AZURE_STORAGE_ACCOUNT_NAME string = storage.outputs.name
output AZURE_KEY_VAULT_NAME string = keyVault.outputs.name
output AZURE_KEY_VAULT_ENDPOINT string = keyVault.outputs.uri
output AZURE_USER_ASSIGNED_IDENTITY_CLIENT_ID string = identity.outputs.clientId
output ACS_EMAIL_ENDPOINT string = !empty(acsEmailEndpoint) ? acsEmailEndpoint : communication.outputs.endpoint
output ACS_EMAIL_SENDER string = !empty(acsEmailSender) ? acsEmailSender : communication.outputs.senderAddress
output AZURE_EVENTGRID_SYSTEM_TOPIC_NAME string = communication.outputs.systemTopicName
output APPLICATIONINSIGHTS_NAME string = monitoring.outputs.applicationInsightsName
