"""openapi.yaml is a valid OpenAPI document and describes exactly the HTTP routes the app registers.

The app's routes are read the way the Functions host indexes them: import `function_app`, call
`app.get_functions()` (once: a second call raises) and read each function's raw bindings. That
runs in a child process whose sockets refuse to connect, which also proves that importing and
indexing the app needs no storage (services are built on first use, not at import).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, get_args

import pytest
import yaml
from openapi_spec_validator import validate
from openapi_spec_validator.validation.exceptions import OpenAPIValidationError

ROOT = Path(__file__).resolve().parents[2]
DOCUMENT = ROOT / "openapi.yaml"
HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}

_INDEX_APP = r"""
import json, socket, sys

def refuse(*args, **kwargs):
    raise RuntimeError(f"network access while importing or indexing the app: {args!r}")

socket.socket.connect = refuse
socket.socket.connect_ex = refuse
socket.create_connection = refuse

import function_app
from shared import bootstrap

functions = function_app.app.get_functions()
assert bootstrap.services.cache_info().currsize == 0, "services were built at import"
json.dump([{"name": f.get_function_name(), "bindings": [json.loads(b) for b in f.get_raw_bindings()]}
           for f in functions], sys.stdout)
"""


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    loaded = yaml.safe_load(DOCUMENT.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


@pytest.fixture(scope="module")
def app_functions() -> list[dict[str, Any]]:
    """Every function of the app with its raw bindings, indexed with no storage reachable."""
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1",
           # A connection string that leads nowhere: the app must not even try it at import.
           "AzureWebJobsStorage": "DefaultEndpointsProtocol=http;AccountName=nowhere;AccountKey=bm93aGVyZQ==;"
                                  "TableEndpoint=http://127.0.0.1:9/nowhere;QueueEndpoint=http://127.0.0.1:9/nowhere"}
    done = subprocess.run([sys.executable, "-c", _INDEX_APP], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, f"importing and indexing function_app failed:\n{done.stderr}"
    functions: list[dict[str, Any]] = json.loads(done.stdout)
    return functions


def http_routes(functions: list[dict[str, Any]]) -> dict[tuple[str, str], str]:
    """(path under the prefix, METHOD) -> function name, from each function's httpTrigger binding."""
    routes: dict[tuple[str, str], str] = {}
    for f in functions:
        for binding in f["bindings"]:
            if binding.get("type") != "httpTrigger":
                continue
            route = "/" + str(binding.get("route") or f["name"]).strip("/")
            methods = binding.get("methods")
            assert methods, f"{f['name']} accepts every method; the document must list them, so name them"
            for method in methods:
                key = (route, str(method).upper())
                assert key not in routes, f"{key} is registered twice ({routes[key]} and {f['name']})"
                routes[key] = f["name"]
    return routes


def documented_operations(document: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(path, method.upper()): op for path, item in document["paths"].items()
            for method, op in item.items() if method in HTTP_METHODS}


def route_prefix() -> str:
    host = json.loads((ROOT / "host.json").read_text(encoding="utf-8"))
    return str(host.get("extensions", {}).get("http", {}).get("routePrefix", "api")).strip("/")


def test_the_document_is_valid_openapi(document: dict[str, Any]) -> None:
    assert str(document["openapi"]).startswith("3.1")
    try:
        validate(document)
    except OpenAPIValidationError as exc:  # pragma: no cover - the message is the point
        pytest.fail(f"openapi.yaml is not valid OpenAPI: {exc}")


def test_every_server_url_ends_with_the_route_prefix(document: dict[str, Any]) -> None:
    prefix = route_prefix()
    assert prefix == "api", "the contract fixes the route prefix /api"
    for server in document["servers"]:
        assert server["url"].rstrip("/").endswith(f"/{prefix}"), server["url"]
    for path in document["paths"]:
        assert not path.lower().startswith(f"/{prefix}/"), f"{path}: paths are relative to the /{prefix} servers"


def test_documented_routes_are_exactly_the_registered_ones(document: dict[str, Any],
                                                           app_functions: list[dict[str, Any]]) -> None:
    registered = http_routes(app_functions)
    documented = documented_operations(document)
    assert sorted(registered) == sorted(documented), (
        f"registered but not documented: {sorted(set(registered) - set(documented))}; "
        f"documented but not registered: {sorted(set(documented) - set(registered))}"
    )
    for key, op in documented.items():
        assert op.get("x-function-name") == registered[key], f"{key}: x-function-name names the wrong function"


def test_the_contract_routes_are_all_there(app_functions: list[dict[str, Any]]) -> None:
    """Contract §2, so a route dropped from both the app and the document is still caught."""
    assert set(http_routes(app_functions)) >= {
        ("/accounts/{accountId}", "PUT"), ("/accounts/{accountId}", "GET"),
        ("/accounts/{accountId}/timeline", "GET"), ("/accounts/{accountId}/payment-method", "PUT"),
        ("/deadletters", "GET"), ("/health", "GET"),
        ("/testing/clock", "PUT"), ("/testing/clock", "DELETE"), ("/testing/clock", "GET"),
    }


def test_security_follows_each_functions_auth_level(document: dict[str, Any],
                                                    app_functions: list[dict[str, Any]]) -> None:
    schemes = document["components"]["securitySchemes"]
    assert schemes["functionKeyHeader"] == {**schemes["functionKeyHeader"], "type": "apiKey", "in": "header",
                                            "name": "x-functions-key"}
    assert schemes["functionKeyQuery"] == {**schemes["functionKeyQuery"], "type": "apiKey", "in": "query",
                                           "name": "code"}
    assert schemes["adminKeyHeader"] == {**schemes["adminKeyHeader"], "type": "apiKey", "in": "header",
                                         "name": "x-functions-key"}
    assert schemes["adminKeyQuery"] == {**schemes["adminKeyQuery"], "type": "apiKey", "in": "query", "name": "code"}
    levels = {}
    for f in app_functions:
        for b in f["bindings"]:
            if b.get("type") == "httpTrigger":
                for m in b["methods"]:
                    levels[("/" + b["route"].strip("/"), m.upper())] = str(b.get("authLevel", "FUNCTION")).upper()
    for key, op in documented_operations(document).items():
        security = op.get("security", document["security"])
        if levels[key] == "ANONYMOUS":
            assert security == [], f"{key} is anonymous: its operation says security: []"
        elif levels[key] == "ADMIN":
            assert security == [{"adminKeyHeader": []}, {"adminKeyQuery": []}], key
        else:
            assert security == [{"functionKeyHeader": []}, {"functionKeyQuery": []}], key


def test_operator_routes_are_at_admin_level(app_functions: list[dict[str, Any]]) -> None:
    """Contract §2 (2026-11-30): dead letters, replay, legal hold and the test clock need the master key."""
    levels = {f["name"]: str(b.get("authLevel")).upper() for f in app_functions for b in f["bindings"]
              if b.get("type") == "httpTrigger"}
    admin = {name for name, level in levels.items() if level == "ADMIN"}
    assert admin == {"get_deadletters", "replay_deadletter", "put_legal_hold", "testing_clock"}
    assert {name for name, level in levels.items() if level == "ANONYMOUS"} == {"health", "billing_page",
                                                                                 "billing_confirm", "stripe_webhooks"}


def test_patterns_and_enums_are_the_codes_own(document: dict[str, Any]) -> None:
    from shared.domain.identifiers import ID_PATTERN
    from shared.domain.model import Locale, SubscriptionState
    from shared.inbound.account_body import EMAIL_PATTERN, TOKEN_PATTERN
    from shared.notifications.alerts import ALERT_CODES

    schemas = document["components"]["schemas"]
    assert schemas["Identifier"]["pattern"] == ID_PATTERN
    # The code escapes the quote inside its class (\"); ECMA-262 regexes in unicode mode refuse that escape.
    assert schemas["Email"]["pattern"] == EMAIL_PATTERN.replace('\\"', '"')
    assert schemas["CardToken"]["pattern"] == TOKEN_PATTERN
    assert schemas["SubscriptionState"]["enum"] == [s.value for s in SubscriptionState]
    assert schemas["Alert"]["properties"]["code"]["enum"] == list(ALERT_CODES)
    assert schemas["Locale"]["enum"] == list(get_args(Locale))
    for name in ("Identifier", "Email", "CardToken", "Amount", "CurrencyCode"):
        re.compile(schemas[name]["pattern"])


_CONSTRAINTS = ("minLength", "maxLength", "minItems", "maxItems", "pattern", "enum", "const", "default",
                "additionalProperties", "required")


def constraints(schema: dict[str, Any], defs: dict[str, Any], path: str = "") -> dict[str, dict[str, Any]]:
    """The validation keywords of a schema and of its properties and items, by JSON path; `$ref` and
    one-element `allOf` are followed, unions are left to their own branches' comparison."""
    while "$ref" in schema or len(schema.get("allOf", ())) == 1:
        ref = schema.get("$ref") or schema["allOf"][0].get("$ref")
        inner = defs[ref.rsplit("/", 1)[1]] if ref else schema["allOf"][0]
        schema = {**inner, **{k: v for k, v in schema.items() if k not in ("$ref", "allOf")}}
    found = {path: {k: schema[k] for k in _CONSTRAINTS if k in schema}}
    if "pattern" in found[path]:
        found[path]["pattern"] = found[path]["pattern"].replace('\\"', '"')
    if "required" in found[path]:
        found[path]["required"] = sorted(found[path]["required"])
    for name, sub in schema.get("properties", {}).items():
        found |= constraints(sub, defs, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        found |= constraints(schema["items"], defs, f"{path}[]")
    return found


@pytest.mark.parametrize("name, model_name", [
    ("AccountRegistration", "AccountBody"), ("CardMethodInput", "CardMethodBody"),
    ("InvoiceMethodInput", "InvoiceMethodBody"), ("SubscriptionInput", "SubscriptionBody"),
    ("PaymentMethodUpdate", "PaymentMethodBody"),
])
def test_request_bodies_have_the_models_constraints(document: dict[str, Any], name: str, model_name: str) -> None:
    """Fields, required fields, closedness, lengths, counts, patterns and enums of each request
    body are those of the pydantic model that reads it (its JSON schema, compared keyword by keyword)."""
    from shared.inbound import account_body as registration

    model_schema = getattr(registration, model_name).model_json_schema()
    from_code = constraints(model_schema, model_schema.get("$defs", {}))
    from_document = constraints(document["components"]["schemas"][name], document["components"]["schemas"])
    assert from_document == from_code


def test_every_operation_documents_its_errors(document: dict[str, Any]) -> None:
    """The JSON API answers errors as problem+json (contract §2); the billing page, HTML for a
    person, answers them as HTML pages."""

    def content_of(response: dict[str, Any]) -> list[str]:
        ref = response.get("$ref")
        return list((document["components"]["responses"][ref.rsplit("/", 1)[1]] if ref else response)
                    .get("content", {}))

    for (path, method), op in documented_operations(document).items():
        responses = op["responses"]
        assert "200" in responses and "405" in responses, (method, path)
        html = content_of(responses["200"]) == ["text/html"]
        if not html:
            assert content_of(responses["200"]) == ["application/json"], (method, path)
        if not html and ("{accountId}" in path or "requestBody" in op):
            assert "400" in responses, (method, path)
        for status, response in responses.items():
            if status.startswith(("4", "5")) and status not in ("401", "405"):
                expected = ["text/html"] if html else ["application/problem+json"]
                assert content_of(response) == expected, (method, path, status)
