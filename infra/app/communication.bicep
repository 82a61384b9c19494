// Azure Communication Services with an Email Communication Service and an Azure-managed sender
// domain (<guid>.azurecomm.net, no DNS work), linked so the app can send as DoNotReply@<domain>.
// Also the Event Grid system topic on the ACS resource: delivery reports are published there and
// routed to the Function App by eventgrid.bicep.

param communicationServiceName string
param emailServiceName string
param systemTopicName string
param tags object = {}

@description('Where ACS stores data at rest. Must be the same for both resources.')
param dataLocation string = 'United States'

resource emailService 'Microsoft.Communication/emailServices@2023-04-01' = {
  name: emailServiceName
  location: 'global'
  tags: tags
  properties: {
    dataLocation: dataLocation
  }
}

resource managedDomain 'Microsoft.Communication/emailServices/domains@2023-04-01' = {
  parent: emailService
  name: 'AzureManagedDomain'
  location: 'global'
  tags: tags
  properties: {
    domainManagement: 'AzureManaged'
    userEngagementTracking: 'Disabled'
  }
}

resource communicationService 'Microsoft.Communication/communicationServices@2023-04-01' = {
  name: communicationServiceName
  location: 'global'
  tags: tags
  properties: {
    dataLocation: dataLocation
    linkedDomains: [
      managedDomain.id
    ]
  }
}

resource systemTopic 'Microsoft.EventGrid/systemTopics@2025-02-15' = {
  name: systemTopicName
  location: 'global'
  tags: tags
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    source: communicationService.id
    topicType: 'Microsoft.Communication.CommunicationServices'
  }
}

output communicationServiceId string = communicationService.id
output communicationServiceName string = communicationService.name
output endpoint string = 'https://${communicationService.properties.hostName}'
output senderDomain string = managedDomain.properties.fromSenderDomain
output senderAddress string = 'DoNotReply@${managedDomain.properties.fromSenderDomain}'
output systemTopicName string = systemTopic.name
output systemTopicPrincipalId string = systemTopic.identity.principalId
