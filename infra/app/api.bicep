// The Function App on a Flex Consumption plan (Linux, Python 3.11), running as a user-assigned
// identity with identity-based connections only. App settings live in siteConfig.appSettings.

param name string
param planName string
param location string
param tags object = {}

@description('The azd service this app hosts (azure.yaml).')
param serviceName string = 'api'

param identityId string
param identityClientId string
param storageAccountName string
param storageBlobEndpoint string
param deploymentContainerName string

@description('The Application Insights component (monitoring.bicep). Its connection string is read here rather than passed as a module output: an ingestion address and instrumentation key, not a credential while local auth is disabled, but kept out of deployment outputs all the same.')
param applicationInsightsName string

@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 100

@description('Spread the plan over availability zones. Flex Consumption offers this only in some regions, so it is opt-in.')
param zoneRedundant bool = false

// --- settings read by shared/settings.py ---------------------------------------------------------
param acsEmailEndpoint string
param acsEmailSender string
param billingPageUrl string
param supportUrl string
param paymentGatewayUrl string
param linkSigningKeySecretUri string
param gatewayApiKeySecretUri string

@description('Payment provider adapter: `http` (the product\'s gateway protocol at PAYMENT_GATEWAY_URL) or `stripe`.')
@allowed([
  'http'
  'stripe'
])
param paymentGateway string = 'http'
param stripeApiKeySecretUri string
param stripeWebhookSecretUri string

// Email pacing (issue 21, contract §4). Empty means unset (no pacing to a quota), the way the code
// reads its other settings (`env.get(...) or None`, `_count` strips); the reader of these two, not
// written yet, has to do the same.
param emailQuotaPerMinute string = ''
param emailQuotaPerHour string = ''
@description('An email still throttled this many hours after it was due is given up (email_failed).')
param emailGiveUpAfterHours string = '72'

@description('Charges in flight per instance at most (shared/adapters/gateway/capped.py). The processor sees at most this x maximumInstanceCount / seconds per charge: keep that under its rate limit.')
param maxConcurrentCharges string = '8'

// Dunning policy (shared/domain/policy.py). Defaults are the contract's; tests/unit/test_infra.py checks
// they equal DunningPolicy() so the deployed policy cannot drift from the code's.
param dunningRetryDays string = '1,3,5,7'
param dunningReminderDays string = '7,14,21'
param dunningDisableWarningDay string = '27'
param dunningDisableDay string = '30'
param dunningCancelDay string = '90'
param dunningDeletionWarningDays string = '60,83,89'
param dunningDeleteAfterCancelDays string = '90'
// Contract §2 (`PUT /api/accounts/{id}/dunning`, at most this far ahead) and §3 (card expiry notice).
param dunningMaxPauseDays string = '90'
param dunningCardExpiryNoticeDays string = '30'

// Telemetry goes to this component with Entra ID only: local auth is disabled on it, and the
// identity holds Monitoring Metrics Publisher on it (rbac.bicep). The Functions host and the
// azure-monitor-opentelemetry exporter both read APPLICATIONINSIGHTS_AUTHENTICATION_STRING
// (Authorization=AAD plus the user-assigned identity's client id). With
// PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY=true the Python worker calls configure_azure_monitor()
// itself from these settings; host.json's telemetryMode is set by the product.
resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    // checkov:skip=CKV_AZURE_225:Opt-in through the zoneRedundant parameter: Flex Consumption zone redundancy exists only in some regions, and this template deploys to any Flex region.
    reserved: true
    zoneRedundant: zoneRedundant
  }
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' = {
  name: name
  location: location
  tags: union(tags, {
    'azd-service-name': serviceName
  })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    // checkov:skip=CKV_AZURE_222:The HTTP API (function keys) and Event Grid delivery reach the app over its public endpoint; there is no private endpoint or gateway in front of it in this template.
    // checkov:skip=CKV_AZURE_17:Callers authenticate with function keys over HTTPS; client certificates would have to be issued to the gateway and every operator, which the API contract does not provide for.
    // checkov:skip=CKV_AZURE_212:Worker count and failover instances are App Service plan settings; Flex Consumption scales instances per trigger from zero and has no fixed instance count.
    // checkov:skip=CKV_AZURE_213:Not set: App Service health check replaces unhealthy instances of a fixed-size plan; Flex Consumption instances are platform-managed and scale to zero (untested on Azure here). GET /api/health is there for an external probe.
    serverFarmId: plan.id
    httpsOnly: true
    keyVaultReferenceIdentity: identityId
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storageBlobEndpoint}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        instanceMemoryMB: instanceMemoryMB
        maximumInstanceCount: maximumInstanceCount
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
    siteConfig: {
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      appSettings: [
        // Host storage (triggers, leases, deployment) with the identity, no connection string.
        {
          name: 'AzureWebJobsStorage__accountName'
          value: storageAccountName
        }
        {
          name: 'AzureWebJobsStorage__credential'
          value: 'managedidentity'
        }
        {
          name: 'AzureWebJobsStorage__clientId'
          value: identityClientId
        }
        // DefaultAzureCredential in the app (tables, queues, ACS) picks the user-assigned identity.
        {
          name: 'AZURE_CLIENT_ID'
          value: identityClientId
        }
        // OpenTelemetry to Application Insights with Entra ID only (see the component above).
        {
          name: 'APPLICATIONINSIGHTS_CONNECTION_STRING'
          value: applicationInsights.properties.ConnectionString
        }
        {
          name: 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING'
          value: 'Authorization=AAD;ClientId=${identityClientId}'
        }
        {
          name: 'PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY'
          value: 'true'
        }
        // The Python worker's pool for sync functions (default min(32, cores + 4), 6 on 2 cores).
        // Every function here waits on storage, email or the gateway far longer than it computes:
        // 16 keeps a queue trigger's batch (host.json batchSize) running at once (bench/README.md).
        {
          name: 'PYTHON_THREADPOOL_THREAD_COUNT'
          value: '16'
        }
        {
          name: 'ACS_EMAIL_ENDPOINT'
          value: acsEmailEndpoint
        }
        {
          name: 'ACS_EMAIL_SENDER'
          value: acsEmailSender
        }
        {
          name: 'BILLING_PAGE_URL'
          value: billingPageUrl
        }
        {
          name: 'SUPPORT_URL'
          value: supportUrl
        }
        {
          name: 'PAYMENT_GATEWAY_URL'
          value: paymentGatewayUrl
        }
        {
          name: 'PAYMENT_GATEWAY_MAX_CONCURRENT_CHARGES'
          value: maxConcurrentCharges
        }
        {
          name: 'BILLING_LINK_SIGNING_KEY'
          value: '@Microsoft.KeyVault(SecretUri=${linkSigningKeySecretUri})'
        }
        {
          name: 'PAYMENT_GATEWAY_API_KEY'
          value: '@Microsoft.KeyVault(SecretUri=${gatewayApiKeySecretUri})'
        }
        {
          name: 'PAYMENT_GATEWAY'
          value: paymentGateway
        }
        {
          name: 'STRIPE_API_KEY'
          value: '@Microsoft.KeyVault(SecretUri=${stripeApiKeySecretUri})'
        }
        {
          name: 'STRIPE_WEBHOOK_SECRET'
          value: '@Microsoft.KeyVault(SecretUri=${stripeWebhookSecretUri})'
        }
        {
          name: 'EMAIL_QUOTA_PER_MINUTE'
          value: emailQuotaPerMinute
        }
        {
          name: 'EMAIL_QUOTA_PER_HOUR'
          value: emailQuotaPerHour
        }
        {
          name: 'EMAIL_GIVE_UP_AFTER_HOURS'
          value: emailGiveUpAfterHours
        }
        {
          name: 'DUNNING_RETRY_DAYS'
          value: dunningRetryDays
        }
        {
          name: 'DUNNING_REMINDER_DAYS'
          value: dunningReminderDays
        }
        {
          name: 'DUNNING_DISABLE_WARNING_DAY'
          value: dunningDisableWarningDay
        }
        {
          name: 'DUNNING_DISABLE_DAY'
          value: dunningDisableDay
        }
        {
          name: 'DUNNING_CANCEL_DAY'
          value: dunningCancelDay
        }
        {
          name: 'DUNNING_DELETION_WARNING_DAYS'
          value: dunningDeletionWarningDays
        }
        {
          name: 'DUNNING_DELETE_AFTER_CANCEL_DAYS'
          value: dunningDeleteAfterCancelDays
        }
        {
          name: 'DUNNING_MAX_PAUSE_DAYS'
          value: dunningMaxPauseDays
        }
        {
          name: 'DUNNING_CARD_EXPIRY_NOTICE_DAYS'
          value: dunningCardExpiryNoticeDays
        }
      ]
    }
  }
}

// No basic-auth (publishing profile) deployments: azd deploys with an Entra ID token.
resource ftpPublishing 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: functionApp
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmPublishing 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: functionApp
  name: 'scm'
  properties: {
    allow: false
  }
}

output id string = functionApp.id
output name string = functionApp.name
output defaultHostName string = functionApp.properties.defaultHostName
