// Key Vault for the app's secrets: the link-signing key, the gateway API key and, for
// PAYMENT_GATEWAY=stripe, the Stripe API key and webhook signing secret. The Function App reads them through Key Vault references
// (app setting values of the form @Microsoft.KeyVault(SecretUri=...)) with its user-assigned
// identity, which holds `Key Vault Secrets User` on this vault (rbac.bicep). RBAC authorization only:
// no access policies.

param name string
param location string
param tags object = {}
param logAnalyticsWorkspaceId string

@description('Name of the secret holding the key that signs links in billing emails (BILLING_LINK_SIGNING_KEY).')
param linkSigningKeySecretName string = 'billing-link-signing-key'

@description('Name of the secret holding the payment gateway API key (PAYMENT_GATEWAY_API_KEY).')
param gatewayApiKeySecretName string = 'payment-gateway-api-key'

@description('Name of the secret holding the Stripe secret API key (STRIPE_API_KEY).')
param stripeApiKeySecretName string = 'stripe-api-key'

@description('Name of the secret holding the Stripe webhook signing secret (STRIPE_WEBHOOK_SECRET).')
param stripeWebhookSecretName string = 'stripe-webhook-secret'

@secure()
@minLength(32)
@description('The link-signing key. Written on every provision, so keep it stable (azd keeps it in the environment).')
param linkSigningKey string

@secure()
@description('The payment gateway API key. Empty: the secret is left as it is (set it with `az keyvault secret set`).')
param gatewayApiKey string = ''

@secure()
@description('The Stripe secret API key (sk_live_... or a restricted rk_... key). Empty: the secret is left as it is.')
param stripeApiKey string = ''

@secure()
@description('The Stripe webhook endpoint signing secret (whsec_...). Empty: the secret is left as it is.')
param stripeWebhookSecret string = ''

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    tenantId: subscription().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 90
    enablePurgeProtection: true
    enabledForDeployment: false
    enabledForDiskEncryption: false
    enabledForTemplateDeployment: false
    // checkov:skip=CKV_AZURE_189:Key Vault references from a Flex Consumption app without VNet integration resolve over the vault's public endpoint; access is by Entra ID RBAC only. See infra/README.md.
    // checkov:skip=CKV_AZURE_109:A default-deny vault firewall would block the app's Key Vault references without VNet integration (App Service is not a trusted service for them); access is Entra ID RBAC only.
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
  }
}

resource linkSigningKeySecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  parent: vault
  name: linkSigningKeySecretName
  properties: {
    // checkov:skip=CKV_AZURE_41:An expired secret makes the Key Vault reference unresolvable, and App Service then hands the app the reference text itself as the key; rotate by provisioning a new value instead.
    value: linkSigningKey
    contentType: 'text/plain; HMAC key for signed billing links'
  }
}

resource gatewayApiKeySecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (!empty(gatewayApiKey)) {
  parent: vault
  name: gatewayApiKeySecretName
  properties: {
    // checkov:skip=CKV_AZURE_41:The gateway's key lifetime is set by the gateway; an expiry here would only break the Key Vault reference. Rotate by provisioning the new key.
    // checkov:skip=CKV_AZURE_114:False positive: contentType is set on the next lines; checkov 3.3.30 does not look inside the body of a conditional (if) resource.
    value: gatewayApiKey
    contentType: 'text/plain; payment gateway API key'
  }
}

// The Stripe secrets follow the gateway key: written only when a value is given, so a value set out
// of band (az keyvault secret set) survives later provisions, and no empty placeholder is ever
// written. Until one exists, its Key Vault reference does not resolve and App Service hands the app
// the reference text; that only matters with PAYMENT_GATEWAY=stripe.
resource stripeApiKeySecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (!empty(stripeApiKey)) {
  parent: vault
  name: stripeApiKeySecretName
  properties: {
    // checkov:skip=CKV_AZURE_41:Stripe keys do not expire on their own; an expiry here would only break the Key Vault reference. Roll the key in Stripe and provision the new one.
    // checkov:skip=CKV_AZURE_114:False positive: contentType is set on the next lines; checkov 3.3.30 does not look inside the body of a conditional (if) resource.
    value: stripeApiKey
    contentType: 'text/plain; Stripe secret API key'
  }
}

resource stripeWebhookSecretSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (!empty(stripeWebhookSecret)) {
  parent: vault
  name: stripeWebhookSecretName
  properties: {
    // checkov:skip=CKV_AZURE_41:Webhook signing secrets do not expire on their own; an expiry here would only break the Key Vault reference. Roll it in the Stripe dashboard and provision the new one.
    // checkov:skip=CKV_AZURE_114:False positive: contentType is set on the next lines; checkov 3.3.30 does not look inside the body of a conditional (if) resource.
    value: stripeWebhookSecret
    contentType: 'text/plain; Stripe webhook signing secret'
  }
}

resource vaultDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'audit-to-log-analytics'
  scope: vault
  properties: {
    workspaceId: logAnalyticsWorkspaceId
    logs: [
      {
        categoryGroup: 'audit'
        enabled: true
      }
    ]
  }
}

output id string = vault.id
output name string = vault.name
output uri string = vault.properties.vaultUri
output linkSigningKeySecretUri string = '${vault.properties.vaultUri}secrets/${linkSigningKeySecretName}/'
output gatewayApiKeySecretUri string = '${vault.properties.vaultUri}secrets/${gatewayApiKeySecretName}/'
output stripeApiKeySecretUri string = '${vault.properties.vaultUri}secrets/${stripeApiKeySecretName}/'
output stripeWebhookSecretUri string = '${vault.properties.vaultUri}secrets/${stripeWebhookSecretName}/'
