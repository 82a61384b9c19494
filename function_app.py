"""The Function App: registers one blueprint per trigger family. Runs under `func start` and under
the project's local host (`python -m devstack.host`) unchanged."""

import azure.functions as func

from functions.accounts_api import bp as accounts_api
from functions.billing_page import bp as billing_page
from functions.email_outbox import bp as email_outbox
from functions.operations_api import bp as operations_api
from functions.operator_api import bp as operator_api
from functions.payment_events import bp as payment_events
from functions.payment_method_api import bp as payment_method_api
from functions.stripe_webhooks import bp as stripe_webhooks
from functions.sweeps import bp as sweeps
from shared import telemetry

telemetry.configure()  # once per process, before any function runs (contract §6)

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
app.register_functions(payment_events)
app.register_functions(accounts_api)
app.register_functions(operations_api)
app.register_functions(payment_method_api)
app.register_functions(email_outbox)
app.register_functions(sweeps)
app.register_functions(operator_api)
app.register_functions(billing_page)
app.register_functions(stripe_webhooks)
