"""A tiny v2 Functions app that exercises every trigger the local host supports.

Used only by tests/integration/test_local_host.py. Non-HTTP functions write what they received
to the `samplerecords` table in AzureWebJobsStorage, so the test can observe them from outside.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid

import azure.functions as func
from azure.core.exceptions import ResourceExistsError
from azure.data.tables import TableClient

RECORDS = "samplerecords"


def record(partition: str, row: str, **fields: object) -> None:
    client = TableClient.from_connection_string(os.environ["AzureWebJobsStorage"], RECORDS)  # noqa: SIM112
    with contextlib.suppress(ResourceExistsError):
        client.create_table()
    client.upsert_entity({"PartitionKey": partition, "RowKey": row, "pid": os.getpid(), **fields})


http_bp = func.Blueprint()


@http_bp.route(route="accounts/{accountId}", methods=["GET"])
def get_account(req: func.HttpRequest) -> func.HttpResponse:
    body = {"accountId": req.route_params["accountId"], "verbose": req.params.get("verbose")}
    return func.HttpResponse(json.dumps(body), mimetype="application/json")


@http_bp.route(route="accounts/{accountId}", methods=["PUT"])
def put_account(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(status_code=204, headers={"X-Account": req.route_params["accountId"]})


@http_bp.route(route="accounts/search", methods=["GET"])
def search_accounts(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("search", status_code=200)


@http_bp.route(route="accounts/{accountId}/timeline", methods=["GET", "DELETE"])
def account_timeline(req: func.HttpRequest) -> str:
    return f"timeline of {req.route_params['accountId']}"


@http_bp.route(route="echo", methods=["POST"])
def echo(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(
        req.get_body(),
        status_code=201,
        headers={"X-Echo-Method": req.method, "X-Echo-Url": req.url},
        mimetype=req.headers.get("content-type", "application/octet-stream"),
    )


@http_bp.route(route="files/{*path}", methods=["GET"])
def files(req: func.HttpRequest) -> str:
    return f"path={req.route_params.get('path', '')}"


@http_bp.route(route="items/{id:int}", methods=["GET"])
def item_by_number(req: func.HttpRequest) -> str:
    return f"number {req.route_params['id']}"


@http_bp.route(route="greet/{name?}", methods=["GET"])
async def greet(req: func.HttpRequest) -> str:
    return f"hello {req.route_params.get('name', 'nobody')}"


@http_bp.route(route="env/{name}", methods=["GET"])
def read_env(req: func.HttpRequest) -> func.HttpResponse:
    value = os.environ.get(req.route_params["name"])
    return func.HttpResponse(value or "", status_code=200 if value is not None else 404)


@http_bp.route(route="whoami", methods=["GET"])
def whoami(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    body = {"function": context.function_name, "invocation": context.invocation_id}
    return func.HttpResponse(json.dumps(body), mimetype="application/json")


@http_bp.route(route="crash", methods=["GET"])
def crash(req: func.HttpRequest) -> func.HttpResponse:
    raise RuntimeError("secret detail that must not reach the client")


queue_bp = func.Blueprint()


@queue_bp.queue_trigger(arg_name="msg", queue_name="items", connection="AzureWebJobsStorage")
def record_item(msg: func.QueueMessage) -> None:
    body = msg.get_body().decode()
    record("items", f"{msg.id}-{msg.dequeue_count}", body=body, dequeue_count=msg.dequeue_count)
    if body == "boom":
        raise ValueError("boom")


@queue_bp.queue_trigger(arg_name="msg", queue_name="items-poison", connection="AzureWebJobsStorage")
async def drain_poison(msg: func.QueueMessage) -> None:
    record("poison", msg.id, body=msg.get_body().decode())


timer_bp = func.Blueprint()


@timer_bp.timer_trigger(arg_name="timer", schedule="* * * * * *", run_on_startup=False)
def tick(timer: func.TimerRequest) -> None:
    scheduled = timer.schedule_status["Last"]
    record("timer", f"{scheduled}-{os.getpid()}", scheduled=scheduled, past_due=timer.past_due)


@timer_bp.timer_trigger(arg_name="timer", schedule="%YEARLY_SCHEDULE%")
def yearly(timer: func.TimerRequest) -> None:
    record("yearly", str(uuid.uuid4()), past_due=timer.past_due)


events_bp = func.Blueprint()


@events_bp.event_grid_trigger(arg_name="event")
def on_event(event: func.EventGridEvent) -> None:
    if event.subject == "fail":
        raise RuntimeError("this event is refused")
    record(
        "events",
        event.id,
        event_type=event.event_type,
        subject=event.subject,
        topic=event.topic,
        data=json.dumps(event.get_json()),
        event_time=event.event_time.isoformat() if event.event_time else "",
    )


app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)
for bp in (http_bp, queue_bp, timer_bp, events_bp):
    app.register_functions(bp)
