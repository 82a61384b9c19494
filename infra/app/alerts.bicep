// What an operator is told, and what they look at: six log search alert rules and a workbook, all
// on the telemetry of contract §6 as azure-monitor-opentelemetry exports it to this Application
// Insights component.
//
// Where the data lands (component scope, classic table names; in the workspace the same rows are
// AppMetrics / AppTraces with Name, Sum, Count, Min, Max, Properties):
//   customMetrics  one row per metric stream per export interval (60 s by default). Counters and
//                  histograms are exported with delta temporality, so `valueSum` is the increment
//                  of that interval; a histogram row also has valueCount / valueMin / valueMax (no
//                  buckets). `name` is the instrument name (billing.emails), attributes are in
//                  customDimensions (customDimensions["outcome"]).
//   traces         log records; the Functions host's own lines too ("Executed 'Functions.x' (Failed, ...)").
//
// The rules are scoped to the component and evaluated by Azure Monitor's alerting service; local
// auth being disabled on the component concerns ingestion, not these queries (as documented for
// Entra ID-only components; not verified here). Not compiled or deployed here: see infra/README.md.

param location string
param tags object = {}

@description('The Application Insights component the app sends its telemetry to.')
param applicationInsightsName string

@description('Name of the action group (created only when alertEmail is set).')
param actionGroupName string

@description('Address that receives the alerts. Empty: no action group; the alerts still fire and show in Azure Monitor > Alerts.')
param alertEmail string = ''

@description('Display name of the workbook.')
param workbookDisplayName string = 'Past-due billing'

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

// Only when there is somebody to tell: an action group without receivers would do nothing, and a
// deployment without an address should not invent one.
resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = if (!empty(alertEmail)) {
  name: actionGroupName
  location: 'global'
  tags: tags
  properties: {
    groupShortName: 'billing'
    enabled: true
    emailReceivers: [
      {
        name: 'operator'
        emailAddress: alertEmail
        useCommonAlertSchema: true
      }
    ]
  }
}

var actionGroupIds = empty(alertEmail) ? [] : [
  actionGroup.id
]

// --- 1. dead letters ----------------------------------------------------------------------------------
// Any message the product gave up on in the last 15 minutes (payment events, sweep pages and work,
// email hand-offs; billing.deadletters is counted where the dead letter is recorded). One alert per
// source; GET /api/deadletters lists them, POST /api/deadletters/{id}/replay puts one back.
resource deadLettersAlert 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: 'billing-dead-letters'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'Billing: dead letters in the last 15 minutes'
    description: 'billing.deadletters > 0 in 15 minutes, per source. See GET /api/deadletters; replay with POST /api/deadletters/{id}/replay once the cause is fixed.'
    severity: 2
    enabled: true
    scopes: [
      applicationInsights.id
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    criteria: {
      allOf: [
        {
          query: '''
customMetrics
| where name == "billing.deadletters"
| extend source = tostring(customDimensions["source"])
| summarize DeadLetters = sum(valueSum) by source
'''
          timeAggregation: 'Total'
          metricMeasureColumn: 'DeadLetters'
          dimensions: [
            {
              name: 'source'
              operator: 'Include'
              values: [
                '*'
              ]
            }
          ]
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: {
      actionGroups: actionGroupIds
    }
  }
}

// --- 2. poison queues ------------------------------------------------------------------------------
// Why not the storage account's queue metrics: QueueMessageCount is a platform metric of the whole
// account (no per-queue dimension) and is emitted about hourly, so it cannot say which poison queue
// holds something, nor soon. And a poison queue here does not stay full: every *-poison queue has a
// trigger (payment_events_poison, email_outbox_poison, sweep_pages_poison, sweep_work_poison) that
// records the message as a dead letter with source `<queue>-poison`, which counts
// billing.deadletters{source=<queue>-poison}. So "something reached a poison queue" is that metric.
// The one case it misses is a poison handler that itself fails (the message then stays in the
// poison queue): the second half of the query catches the host's "Executed 'Functions.<name>_poison'
// (Failed, ...)" log line for that (the host's standard text; assumed, not verified against an
// OpenTelemetry-mode host here). Severity 1: this is repeated failure, not one bad message.
resource poisonQueuesAlert 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: 'billing-poison-queues'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'Billing: a poison queue is not empty'
    description: 'A message failed maxDequeueCount times and was moved to a *-poison queue (billing.deadletters with source ending in -poison), or a poison handler failed and left it there. See GET /api/deadletters and the traces of the source function.'
    severity: 1
    enabled: true
    scopes: [
      applicationInsights.id
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    criteria: {
      allOf: [
        {
          query: '''
let recorded = customMetrics
| where name == "billing.deadletters"
| extend source = tostring(customDimensions["source"])
| where source endswith "-poison"
| project source, messages = valueSum;
let handlerFailed = traces
| where message startswith "Executed 'Functions." and message contains "(Failed"
| parse message with "Executed 'Functions." functionName "' (Failed" *
| where functionName endswith "_poison"
| project source = replace_string(functionName, "_", "-"), messages = 1.0;
union recorded, handlerFailed
| summarize PoisonMessages = sum(messages) by source
'''
          timeAggregation: 'Total'
          metricMeasureColumn: 'PoisonMessages'
          dimensions: [
            {
              name: 'source'
              operator: 'Include'
              values: [
                '*'
              ]
            }
          ]
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: {
      actionGroups: actionGroupIds
    }
  }
}

// --- 3. sweep lag ------------------------------------------------------------------------------------
// billing.sweep.lag is the histogram of seconds between when a step was due and when it ran; the
// exporter sends its max per interval as valueMax. A sweep that stops running altogether records
// no lag at all, so this rule cannot see that case; the dead-letter rules see failing sweep pages
// and work.
resource sweepLagAlert 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: 'billing-sweep-lag'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'Billing: sweep lag above 1 hour'
    description: 'A dunning step (retry, reminder, disable, cancel, deletion) ran more than 3600 s after it was due (max of billing.sweep.lag in the last hour). Look for throttling, failed sweep pages/work, or maximumInstanceCount.'
    severity: 2
    enabled: true
    scopes: [
      applicationInsights.id
    ]
    evaluationFrequency: 'PT15M'
    windowSize: 'PT1H'
    criteria: {
      allOf: [
        {
          query: '''
customMetrics
| where name == "billing.sweep.lag"
| summarize MaxLagSeconds = max(valueMax)
'''
          timeAggregation: 'Maximum'
          metricMeasureColumn: 'MaxLagSeconds'
          operator: 'GreaterThan'
          threshold: 3600
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: {
      actionGroups: actionGroupIds
    }
  }
}

// --- 4. email failure rate ----------------------------------------------------------------------
// failed over the emails decided in the hour (sent, skipped, failed), from at least 20 of them so a
// quiet hour with one failure does not page anyone. `throttled` is left out of the denominator: it
// is not a decision about an email but one put-back, counted again at every 429, so a throttling
// wall would otherwise dilute the rate exactly when emails are at risk (rule 6 watches that).
resource emailFailureRateAlert 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: 'billing-email-failure-rate'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'Billing: email failure rate above 5 %'
    description: 'More than 5 % of the emails decided in the last hour (at least 20) failed (billing.emails outcome failed over sent + skipped + failed). Check ACS (sender domain, quotas) and the delivery reports.'
    severity: 2
    enabled: true
    scopes: [
      applicationInsights.id
    ]
    evaluationFrequency: 'PT15M'
    windowSize: 'PT1H'
    criteria: {
      allOf: [
        {
          query: '''
customMetrics
| where name == "billing.emails"
| extend outcome = tostring(customDimensions["outcome"])
| where outcome in ("sent", "skipped", "failed")
| summarize Failed = sumif(valueSum, outcome == "failed"), Decided = sum(valueSum)
| where Decided >= 20
| extend FailedPercent = 100.0 * Failed / Decided
'''
          timeAggregation: 'Maximum'
          metricMeasureColumn: 'FailedPercent'
          operator: 'GreaterThan'
          threshold: 5
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: {
      actionGroups: actionGroupIds
    }
  }
}

// --- 5. unanswered charges ---------------------------------------------------------------------
// A charge the gateway did not answer may or may not have taken the money; the product reads it
// back before trying again, but an operator should know the gateway is not answering.
resource unansweredChargesAlert 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: 'billing-unanswered-charges'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'Billing: unanswered charges'
    description: 'The payment gateway did not answer a charge in the last 15 minutes (billing.charges outcome unanswered). The product reads such charges back before retrying; check the gateway (or Stripe) status and PAYMENT_GATEWAY_MAX_CONCURRENT_CHARGES.'
    severity: 2
    enabled: true
    scopes: [
      applicationInsights.id
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    criteria: {
      allOf: [
        {
          query: '''
customMetrics
| where name == "billing.charges"
| where tostring(customDimensions["outcome"]) == "unanswered"
| summarize Unanswered = sum(valueSum)
'''
          timeAggregation: 'Total'
          metricMeasureColumn: 'Unanswered'
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: {
      actionGroups: actionGroupIds
    }
  }
}

// --- 6. email backlog older than an hour ------------------------------------------------------
// Contract §6 names no backlog metric (no gauge of the oldest waiting email), so this is a proxy:
// an email waits only while it is being put back, and a put-back is billing.emails{outcome=throttled}.
// Throttled in every 15-minute slice of the last hour means emails have been held back for about an
// hour without a break, so the oldest waiting one is about an hour old. Limits: a backlog under an
// hourly quota whose Retry-After is longer than 15 minutes, with no new email arriving meanwhile,
// shows gaps and is missed; and waiting for EMAIL_QUOTA_PER_* pacing counts only if the product
// reports it as `throttled`. An exact rule needs a metric such as billing.email.backlog_age.
resource emailBacklogAlert 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: 'billing-email-backlog'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'Billing: email backlog older than an hour'
    description: 'Emails have been throttled (billing.emails outcome throttled) in every 15-minute slice of the last hour, so the backlog is about an hour old. Raise the ACS quota, or set EMAIL_QUOTA_PER_MINUTE / EMAIL_QUOTA_PER_HOUR to what ACS grants.'
    severity: 2
    enabled: true
    scopes: [
      applicationInsights.id
    ]
    evaluationFrequency: 'PT15M'
    windowSize: 'PT1H'
    criteria: {
      allOf: [
        {
          query: '''
customMetrics
| where name == "billing.emails"
| where tostring(customDimensions["outcome"]) == "throttled"
| summarize Throttled = sum(valueSum) by slice = bin_at(timestamp, 15m, ago(1h))
| where Throttled > 0
| summarize ThrottledSlices = dcount(slice)
'''
          timeAggregation: 'Maximum'
          metricMeasureColumn: 'ThrottledSlices'
          operator: 'GreaterThanOrEqual'
          threshold: 4
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: {
      actionGroups: actionGroupIds
    }
  }
}

// --- workbook --------------------------------------------------------------------------------------
// Azure portal > the Application Insights component > Workbooks > "Past-due billing" (also under
// Azure Monitor > Workbooks). Amounts are in minor units per currency, as billing.recovered counts them.
var metricsTile = {
  version: 'KqlItem/1.0'
  size: 0
  timeContextFromParameter: 'TimeRange'
  queryType: 0
  resourceType: 'microsoft.insights/components'
}

var workbook = {
  version: 'Notebook/1.0'
  items: [
    {
      type: 1
      name: 'intro'
      content: {
        json: '## Past-due billing\nContract §6 telemetry from azure-monitor-opentelemetry: counters are per-interval increments in `customMetrics.valueSum`, attributes in `customDimensions`. Amounts are minor units of each currency.'
      }
    }
    {
      type: 9
      name: 'parameters'
      content: {
        version: 'KqlParameterItem/1.0'
        style: 'pills'
        queryType: 0
        resourceType: 'microsoft.insights/components'
        parameters: [
          {
            id: '6f1c0c84-3c0e-4f53-9a49-2a8e2f5d1b01'
            version: 'KqlParameterItem/1.0'
            name: 'TimeRange'
            label: 'Time range'
            type: 4
            isRequired: true
            value: {
              durationMs: 604800000
            }
            typeSettings: {
              allowCustom: true
              selectableValues: [
                {
                  durationMs: 3600000
                }
                {
                  durationMs: 86400000
                }
                {
                  durationMs: 604800000
                }
                {
                  durationMs: 2592000000
                }
              ]
            }
          }
        ]
      }
    }
    {
      type: 3
      name: 'recovered-per-day'
      customWidth: '50'
      content: union(metricsTile, {
        title: 'Money recovered by dunning per day (minor units, by currency)'
        visualization: 'barchart'
        query: 'customMetrics\n| where name == "billing.recovered"\n| extend currency = tostring(customDimensions["currency"])\n| summarize Recovered = sum(valueSum) by currency, bin(timestamp, 1d)\n| order by timestamp asc'
      })
    }
    {
      type: 3
      name: 'recovered-total'
      customWidth: '50'
      content: union(metricsTile, {
        title: 'Money recovered by dunning in the time range (minor units)'
        visualization: 'table'
        query: 'customMetrics\n| where name == "billing.recovered"\n| extend currency = tostring(customDimensions["currency"])\n| summarize Recovered = sum(valueSum) by currency\n| order by currency asc'
      })
    }
    {
      type: 3
      name: 'emails'
      customWidth: '50'
      content: union(metricsTile, {
        title: 'Emails by kind and outcome'
        visualization: 'table'
        query: 'customMetrics\n| where name == "billing.emails"\n| extend kind = tostring(customDimensions["kind"]), outcome = tostring(customDimensions["outcome"])\n| summarize Emails = sum(valueSum) by kind, outcome\n| order by kind asc, outcome asc'
      })
    }
    {
      type: 3
      name: 'charges'
      customWidth: '50'
      content: union(metricsTile, {
        title: 'Charges by outcome and decline code'
        visualization: 'table'
        query: 'customMetrics\n| where name == "billing.charges"\n| extend outcome = tostring(customDimensions["outcome"]), declineCode = tostring(customDimensions["decline_code"])\n| summarize Charges = sum(valueSum) by outcome, declineCode\n| order by Charges desc'
      })
    }
    {
      type: 3
      name: 'events'
      customWidth: '50'
      content: union(metricsTile, {
        title: 'Payment events by type and outcome'
        visualization: 'table'
        query: 'customMetrics\n| where name == "billing.events"\n| extend eventType = tostring(customDimensions["type"]), outcome = tostring(customDimensions["outcome"])\n| summarize Events = sum(valueSum) by eventType, outcome\n| order by eventType asc, outcome asc'
      })
    }
    {
      type: 3
      name: 'transitions'
      customWidth: '50'
      content: union(metricsTile, {
        title: 'Lifecycle transitions'
        visualization: 'table'
        query: 'customMetrics\n| where name == "billing.transitions"\n| summarize Transitions = sum(valueSum) by fromState = tostring(customDimensions["from"]), toState = tostring(customDimensions["to"])\n| order by Transitions desc'
      })
    }
    {
      type: 3
      name: 'dead-letters'
      customWidth: '50'
      content: union(metricsTile, {
        title: 'Dead letters by source'
        visualization: 'timechart'
        query: 'customMetrics\n| where name == "billing.deadletters"\n| extend source = tostring(customDimensions["source"])\n| summarize DeadLetters = sum(valueSum) by source, bin(timestamp, 1h)'
      })
    }
    {
      type: 3
      name: 'sweep-lag'
      customWidth: '50'
      content: union(metricsTile, {
        title: 'Sweep lag (seconds): max, and p95 of the per-interval maxima (the exporter sends no buckets)'
        visualization: 'timechart'
        query: 'customMetrics\n| where name == "billing.sweep.lag"\n| summarize MaxSeconds = max(valueMax), P95Seconds = percentile(valueMax, 95) by bin(timestamp, 1h)'
      })
    }
    {
      type: 3
      name: 'errors'
      content: union(metricsTile, {
        title: 'Recent errors (logs and exceptions, severity Error and above)'
        visualization: 'table'
        query: 'union traces, exceptions\n| where severityLevel >= 3\n| project timestamp, severityLevel, message = coalesce(message, outerMessage), operation_Name, operation_Id\n| order by timestamp desc\n| take 100'
      })
    }
  ]
}

resource billingWorkbook 'Microsoft.Insights/workbooks@2023-06-01' = {
  name: guid(resourceGroup().id, applicationInsightsName, 'past-due-billing-workbook')
  location: location
  tags: tags
  kind: 'shared'
  properties: {
    displayName: workbookDisplayName
    category: 'workbook'
    sourceId: applicationInsights.id
    serializedData: string(workbook)
  }
}

output workbookId string = billingWorkbook.id
