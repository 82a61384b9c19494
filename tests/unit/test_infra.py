"""The deployment infrastructure (infra/, azure.yaml), checked offline.

There is no Bicep compiler, az or azd here, so this stands in for them as far as it can:

- checkov scans every .bicep file; a file it cannot parse would pass with 0 checks, so the run must
  report no parsing error, no failed check, at least a floor of passed checks, and only the skips
  that infra/README.md explains.
- every .bicep file is parsed with pycep (the parser checkov uses) and the security-relevant
  literals are asserted on the parsed JSON: identity-only storage, no keys or connection strings in
  app settings, the test clock never enabled, Key Vault references, the queues and tables the code
  uses, the Event Grid route for delivery reports, the dunning defaults equal to shared/domain/policy.py,
  Entra ID-only telemetry, and the alert rules and workbook on contract §6's metrics.
- the wiring a compiler would check: module parameters and outputs, the azd parameter file,
  abbreviations, resource name lengths.

checkov cannot share .venv (it pins packaging<24, pytest needs >=24), so the first run installs the
pinned set in infra/checkov-requirements.txt into a venv in the user cache (about 30 s, from PyPI);
later runs reuse it. CHECKOV_BIN=/path/to/checkov uses an existing one instead.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pycep import BicepParser

from shared.domain.policy import DunningPolicy

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
BICEP_FILES = sorted(INFRA.rglob("*.bicep"))
CHECKOV_REQUIREMENTS = INFRA / "checkov-requirements.txt"

# Checks suppressed in the Bicep with `// checkov:skip=ID:reason`, each explained in infra/README.md.
# A new skip has to be added here (and there) on purpose.
EXPECTED_SKIPS = {
    ("CKV_AZURE_35", "/app/storage.bicep"),
    ("CKV_AZURE_59", "/app/storage.bicep"),
    ("CKV_AZURE_109", "/app/keyvault.bicep"),
    ("CKV_AZURE_189", "/app/keyvault.bicep"),
    ("CKV_AZURE_41", "/app/keyvault.bicep"),
    ("CKV_AZURE_114", "/app/keyvault.bicep"),
    ("CKV_AZURE_225", "/app/api.bicep"),
    ("CKV_AZURE_222", "/app/api.bicep"),
    ("CKV_AZURE_17", "/app/api.bicep"),
    ("CKV_AZURE_212", "/app/api.bicep"),
    ("CKV_AZURE_213", "/app/api.bicep"),
}
MIN_PASSED = 30

GRS_FAMILY = {"Standard_GRS", "Standard_RAGRS", "Standard_GZRS", "Standard_RAGZRS"}
QUEUES = {"payment-events", "payment-events-poison", "subscription-lifecycle", "email-outbox", "email-outbox-poison",
          "sweep-work", "sweep-work-poison",
          "sweep-pages", "sweep-pages-poison"}
TABLES = {"billing", "billingsystem", "billingindex"}
DELIVERY_REPORT_EVENT = "Microsoft.Communication.EmailDeliveryReportReceived"
DELIVERY_REPORT_FUNCTION = "email_delivery_reports"

ROLE = {
    "Storage Blob Data Owner": "b7e6dc6d-f1e8-4753-8033-0f276bb0955b",
    "Storage Queue Data Contributor": "974c5e8b-45b9-4653-ba55-5f855dd0fb88",
    "Storage Table Data Contributor": "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3",
    "Key Vault Secrets User": "4633458b-17de-408a-b874-0445c86b69e6",
    "Monitoring Metrics Publisher": "3913510d-42f4-4e42-8a64-420c390055eb",
    "Communication and Email Service Owner": "09976791-48a7-449e-bb21-39d1a415f350",
}
BROAD_ROLES = {
    "Owner": "8e3af657-a8ff-443c-a75c-2fe8c4bcb635",
    "Contributor": "b24988ac-6180-42a0-ab88-20f7382dd24c",
    "User Access Administrator": "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9",
}

# Settings the code reads (shared/settings.py) that the deployment deliberately leaves unset.
UNSET_IN_AZURE = {
    "AzureWebJobsStorage": "a connection string; Azure uses AzureWebJobsStorage__accountName + identity",
    "BILLING_TEST_CLOCK": "the test clock is never enabled in a deployment",
    "ACS_EMAIL_ACCESS_KEY": "ACS is reached with the managed identity, not a key",
    "ACS_EMAIL_CONNECTION_STRING": "ACS is reached with the managed identity, not a connection string",
    "STRIPE_API_BASE": "issue 25: only for local work against the Stripe-compatible sandbox",
    "OTEL_EXPORTER_OTLP_ENDPOINT": ("contract §6: Azure exports with APPLICATIONINSIGHTS_CONNECTION_STRING; "
                                    "OTLP is the local stack's"),
}
# Settings read by the Functions host, the Python worker or the Azure SDKs rather than by the
# product's code.
PLATFORM_SETTINGS = {
    "AzureWebJobsStorage__accountName": "Functions host storage",
    "AzureWebJobsStorage__credential": "Functions host storage",
    "AzureWebJobsStorage__clientId": "Functions host storage",
    "AZURE_CLIENT_ID": "azure-identity's DefaultAzureCredential",
    "APPLICATIONINSIGHTS_CONNECTION_STRING": "host, worker and azure-monitor-opentelemetry",
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING": "host and the azure-monitor-opentelemetry exporter",
    "PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY": "Python worker: configures azure-monitor-opentelemetry",
    "PYTHON_THREADPOOL_THREAD_COUNT": "Python worker: threads for sync functions",
}
# Settings the contract names that infra/ deploys ahead of the product code reading them (issues 21,
# 22 and 25 are built concurrently). Each says where it is specified; an entry may stay once the code
# reads the setting, but nothing else is deployed unless the code (or the platform) reads it.
SET_AHEAD_OF_CODE = {
    "PAYMENT_GATEWAY": "contract §5, issue 25: `http` (default) or `stripe`",
    "STRIPE_API_KEY": "issue 25: Stripe secret key, a Key Vault reference",
    "STRIPE_WEBHOOK_SECRET": "contract §2 (POST /api/webhooks/stripe), issue 25: a Key Vault reference",
    "EMAIL_QUOTA_PER_MINUTE": "contract §4, issue 21: pacing to the ACS quota; empty = no pacing",
    "EMAIL_QUOTA_PER_HOUR": "contract §4, issue 21: pacing to the ACS quota; empty = no pacing",
    "EMAIL_GIVE_UP_AFTER_HOURS": "contract §4, issue 21: default 72",
    "DUNNING_MAX_PAUSE_DAYS": "contract §2 (PUT /api/accounts/{accountId}/dunning): default 90",
    "DUNNING_CARD_EXPIRY_NOTICE_DAYS": "contract §3 (card about to expire): default 30",
}
# Contract §6: every metric and the attributes it carries.
CONTRACT_METRICS = {
    "billing.events": {"type", "outcome"},
    "billing.emails": {"kind", "outcome"},
    "billing.charges": {"outcome", "decline_code"},
    "billing.recovered": {"currency"},
    "billing.transitions": {"from", "to"},
    "billing.deadletters": {"source"},
    "billing.sweep.lag": set(),
}
# Each alert rule of infra/app/alerts.bicep: the metric its query reads, words the query must contain,
# and its condition.
ALERT_RULES = {
    "billing-dead-letters": ("billing.deadletters", [], "GreaterThan", 0, "PT15M"),
    "billing-poison-queues": ("billing.deadletters", ['endswith "-poison"', "_poison"], "GreaterThan", 0, "PT15M"),
    "billing-sweep-lag": ("billing.sweep.lag", ["valueMax"], "GreaterThan", 3600, "PT1H"),
    "billing-email-failure-rate": ("billing.emails", ['"failed"', "Decided >= 20"], "GreaterThan", 5, "PT1H"),
    "billing-unanswered-charges": ("billing.charges", ['"unanswered"'], "GreaterThan", 0, "PT15M"),
    "billing-email-backlog": ("billing.emails", ['"throttled"', "15m"], "GreaterThanOrEqual", 4, "PT1H"),
}
# Values that would put a credential into an app setting.
CREDENTIAL_PATTERNS = re.compile(
    r"AccountKey=|SharedAccessKey|SharedAccessSignature|DefaultEndpointsProtocol=|accesskey=|listKeys\(|"
    r"primaryKey|secondaryKey|\.keys\b",
    re.IGNORECASE,
)
# App settings Flex Consumption rejects or that would bypass identity-based storage.
FORBIDDEN_SETTINGS = {
    "FUNCTIONS_WORKER_RUNTIME",
    "FUNCTIONS_EXTENSION_VERSION",
    "WEBSITE_RUN_FROM_PACKAGE",
    "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING",
    "WEBSITE_CONTENTSHARE",
    "AzureWebJobsStorage",
    "ACS_EMAIL_ACCESS_KEY",
    "ACS_EMAIL_CONNECTION_STRING",
    "BILLING_TEST_CLOCK",
}


# --- parsing helpers ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def parsed() -> dict[str, dict[str, Any]]:
    """Every .bicep file parsed by pycep, keyed by path relative to infra/ (`main.bicep`, `app/api.bicep`)."""
    parser = BicepParser()
    out: dict[str, dict[str, Any]] = {}
    for path in BICEP_FILES:
        try:
            out[path.relative_to(INFRA).as_posix()] = parser.parse(file_path=path)
        except Exception as exc:  # pragma: no cover - the assertion message is the point
            pytest.fail(f"pycep cannot parse {path.relative_to(ROOT)}: {exc}")
    return out


def body(resource_or_module: dict[str, Any]) -> dict[str, Any]:
    """The declaration's body; a conditional (`if`) declaration nests it one level down."""
    config = resource_or_module["config"]
    if "condition" in config and isinstance(config.get("config"), dict):
        config = config["config"]
    return config


def resources(parsed: dict[str, dict[str, Any]], rtype: str) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(file, symbol, body) of every non-`existing` resource of a type, in every file."""
    for file, doc in parsed.items():
        for symbol, res in doc.get("resources", {}).items():
            if res["type"].lower() == rtype.lower() and not res.get("existing"):
                yield file, symbol, body(res)


def one(parsed: dict[str, dict[str, Any]], rtype: str) -> tuple[str, dict[str, Any]]:
    found = [(file, cfg) for file, _, cfg in resources(parsed, rtype)]
    assert len(found) == 1, f"expected exactly one {rtype}, found {len(found)}"
    return found[0]


def get_ci(mapping: dict[str, Any], key: str) -> Any:
    """ARM property names are case-insensitive."""
    matches = [v for k, v in mapping.items() if k.lower() == key.lower()]
    assert matches, f"{key} not set (keys: {sorted(mapping)})"
    return matches[0]


def param_default(parsed: dict[str, dict[str, Any]], file: str, name: str) -> Any:
    params = parsed[file].get("parameters", {})
    assert name in params, f"{file} has no parameter {name}"
    return params[name]["default"]


def param_allowed(parsed: dict[str, dict[str, Any]], file: str, name: str) -> list[Any] | None:
    for deco in parsed[file]["parameters"][name]["decorators"]:
        if deco["type"] == "allowed":
            return list(deco["argument"])
    return None


def function_app(parsed: dict[str, dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    sites = [(f, cfg) for f, _, cfg in resources(parsed, "Microsoft.Web/sites")]
    assert len(sites) == 1, f"expected one Microsoft.Web/sites, found {len(sites)}"
    return sites[0]


def app_settings(parsed: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Name -> value of siteConfig.appSettings; a value naming a parameter of the file is resolved
    to that parameter's default."""
    file, site = function_app(parsed)
    settings = site["properties"]["siteConfig"]["appSettings"]
    params = parsed[file].get("parameters", {})
    out: dict[str, Any] = {}
    for entry in settings:
        name, value = entry["name"], entry["value"]
        assert name not in out, f"app setting {name} set twice"
        if isinstance(value, str) and value in params and params[value]["default"] is not None:
            value = params[value]["default"]
        out[name] = value
    return out


# --- checkov -------------------------------------------------------------------------------------------


def _checkov_venv() -> Path:
    digest = hashlib.sha256(CHECKOV_REQUIREMENTS.read_bytes()).hexdigest()[:12]
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "past-due-billing" / f"checkov-{digest}"


def checkov_binary() -> Path:
    """checkov from CHECKOV_BIN, else from a private venv built from infra/checkov-requirements.txt."""
    if os.environ.get("CHECKOV_BIN"):
        return Path(os.environ["CHECKOV_BIN"])
    venv = _checkov_venv()
    binary = venv / "bin" / "checkov"
    done = venv / ".installed"
    if done.exists():
        return binary
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / f"{venv.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one installer at a time; the others wait and reuse
        if not done.exists():
            subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
            install = subprocess.run(
                [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                 "-r", str(CHECKOV_REQUIREMENTS)],
                capture_output=True, text=True, timeout=600,
            )
            if install.returncode != 0:
                pytest.fail(f"installing checkov failed:\n{install.stdout[-3000:]}\n{install.stderr[-3000:]}")
            done.write_text("ok\n")
    return binary


@pytest.fixture(scope="module")
def checkov_report() -> dict[str, Any]:
    run = subprocess.run(
        [str(checkov_binary()), "-d", str(INFRA), "--framework", "bicep", "--skip-download", "-o", "json"],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
        env={**os.environ, "BC_SKIP_MAPPING": "TRUE", "CHECKOV_NO_OUTPUT_COLOR": "1"},
    )
    assert run.returncode in (0, 1), f"checkov crashed ({run.returncode}):\n{run.stderr[-3000:]}"
    report = json.loads(run.stdout)
    if isinstance(report, list):  # one report per framework when more than one ran
        (report,) = [r for r in report if r.get("check_type") == "bicep"]
    assert isinstance(report, dict)
    return report


def test_checkov_parses_every_file_and_passes(checkov_report: dict[str, Any]) -> None:
    summary = checkov_report["summary"]
    failed = [
        f"{c['check_id']} {c['check_name']} - {c['file_path']} {c['resource']}"
        for c in checkov_report["results"]["failed_checks"]
    ]
    # Files with no checkov check at all (alerts.bicep: scheduled query rules, action group, workbook)
    # show up only here: checkov lists every file under infra/ it failed to parse.
    assert summary["parsing_errors"] == 0, f"checkov could not parse: {checkov_report['results'].get('parsing_errors')}"
    assert not checkov_report["results"]["parsing_errors"]
    assert summary["failed"] == 0, "checkov failures:\n" + "\n".join(failed)
    assert summary["passed"] >= MIN_PASSED, f"only {summary['passed']} checks passed: did a file stop being scanned?"


def test_checkov_skips_are_the_explained_ones(checkov_report: dict[str, Any]) -> None:
    skipped = checkov_report["results"]["skipped_checks"]
    found = {(c["check_id"], c["file_path"]) for c in skipped}
    assert found == EXPECTED_SKIPS, f"unexpected: {found - EXPECTED_SKIPS}; no longer skipped: {EXPECTED_SKIPS - found}"
    for c in skipped:
        reason = c["check_result"].get("suppress_comment", "")
        assert len(reason) >= 30, f"{c['check_id']} in {c['file_path']} is skipped without a reason"
    readme = (INFRA / "README.md").read_text()
    for check_id, _ in EXPECTED_SKIPS:
        assert check_id in readme, f"{check_id} is skipped but infra/README.md does not explain it"


def test_checkov_saw_the_security_relevant_files(checkov_report: dict[str, Any]) -> None:
    results = checkov_report["results"]
    scanned = {c["file_path"] for c in results["passed_checks"] + results["skipped_checks"]}
    assert {"/app/api.bicep", "/app/storage.bicep", "/app/keyvault.bicep"} <= scanned


# --- every file parses -----------------------------------------------------------------------------------


def test_every_bicep_file_parses(parsed: dict[str, dict[str, Any]]) -> None:
    expected = {"main.bicep", "app/api.bicep", "app/storage.bicep", "app/keyvault.bicep", "app/rbac.bicep",
                "app/communication.bicep", "app/eventgrid.bicep", "app/monitoring.bicep", "app/identity.bicep",
                "app/alerts.bicep"}
    assert expected <= set(parsed)
    for file, doc in parsed.items():
        assert doc.get("resources") or doc.get("modules"), f"{file} parsed to nothing"


# --- storage ----------------------------------------------------------------------------------------------


def test_storage_accepts_entra_id_only(parsed: dict[str, dict[str, Any]]) -> None:
    _, storage = one(parsed, "Microsoft.Storage/storageAccounts")
    props = storage["properties"]
    assert get_ci(props, "allowSharedKeyAccess") is False
    assert get_ci(props, "minimumTlsVersion") == "TLS1_2"
    assert get_ci(props, "allowBlobPublicAccess") is False
    assert get_ci(props, "supportsHttpsTrafficOnly") is True
    assert get_ci(props, "defaultToOAuthAuthentication") is True


def test_storage_is_geo_redundant(parsed: dict[str, dict[str, Any]]) -> None:
    file, storage = one(parsed, "Microsoft.Storage/storageAccounts")
    sku = storage["sku"]["name"]
    if sku in parsed[file]["parameters"]:
        assert param_default(parsed, file, sku) in GRS_FAMILY
        assert set(param_allowed(parsed, file, sku) or []) <= GRS_FAMILY
    else:
        assert sku in GRS_FAMILY
    assert param_default(parsed, "main.bicep", "storageSkuName") in GRS_FAMILY
    assert set(param_allowed(parsed, "main.bicep", "storageSkuName") or []) <= GRS_FAMILY


def test_queues_and_tables_the_code_uses_exist(parsed: dict[str, dict[str, Any]]) -> None:
    from shared.settings import Settings

    queues = set(param_default(parsed, "app/storage.bicep", "queueNames"))
    tables = set(param_default(parsed, "app/storage.bicep", "tableNames"))
    assert queues >= QUEUES
    assert tables >= TABLES
    defaults = {f.name: f.default for f in dataclasses.fields(Settings)}
    assert {defaults["lifecycle_queue"], defaults["email_queue"]} <= queues
    assert {defaults["billing_table"], defaults["system_table"]} <= tables
    triggered = set()
    for source in (ROOT / "functions").glob("*.py"):
        triggered |= set(re.findall(r'queue_name="([^"%]+)"', source.read_text()))
    assert triggered <= queues, f"queues with triggers but not provisioned: {triggered - queues}"
    # The loops that create them iterate over those parameters.
    storage_resources = parsed["app/storage.bicep"]["resources"]
    types = {r["type"] for r in storage_resources.values()}
    assert "Microsoft.Storage/storageAccounts/queueServices/queues" in types
    assert "Microsoft.Storage/storageAccounts/tableServices/tables" in types


def test_deployment_container_is_private(parsed: dict[str, dict[str, Any]]) -> None:
    containers = list(resources(parsed, "Microsoft.Storage/storageAccounts/blobServices/containers"))
    assert containers
    for _, symbol, cfg in containers:
        assert cfg["properties"]["publicAccess"] == "None", symbol


# --- function app -------------------------------------------------------------------------------------


def test_function_app_is_flex_consumption_python_311(parsed: dict[str, dict[str, Any]]) -> None:
    _, plan = one(parsed, "Microsoft.Web/serverfarms")
    assert plan["sku"] == {"name": "FC1", "tier": "FlexConsumption"}
    assert plan["properties"]["reserved"] is True
    _, site = function_app(parsed)
    assert site["kind"] == "functionapp,linux"
    props = site["properties"]
    assert props["httpsOnly"] is True
    config = props["functionAppConfig"]
    assert config["runtime"] == {"name": "python", "version": "3.11"}
    storage = config["deployment"]["storage"]
    assert storage["type"] == "blobContainer"
    assert storage["authentication"]["type"] == "UserAssignedIdentity"
    assert set(config["scaleAndConcurrency"]) >= {"instanceMemoryMB", "maximumInstanceCount"}
    assert props["siteConfig"]["minTlsVersion"] == "1.2"
    assert props["siteConfig"]["ftpsState"] == "Disabled"


def test_function_app_runs_as_its_user_assigned_identity(parsed: dict[str, dict[str, Any]]) -> None:
    _, site = function_app(parsed)
    assert site["identity"]["type"] == "UserAssigned"
    identity_param = site["properties"]["keyVaultReferenceIdentity"]
    assert identity_param == site["properties"]["functionAppConfig"]["deployment"]["storage"]["authentication"][
        "userAssignedIdentityResourceId"]
    settings = app_settings(parsed)
    assert settings["AzureWebJobsStorage__credential"] == "managedidentity"
    assert settings["AzureWebJobsStorage__accountName"]
    assert settings["AzureWebJobsStorage__clientId"] == settings["AZURE_CLIENT_ID"]
    # The form the azure-monitor-opentelemetry exporter parses (Authorization=AAD, then the
    # user-assigned identity's client id): the identity that holds Monitoring Metrics Publisher.
    assert settings["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"] == (
        "Authorization=AAD;ClientId=${" + settings["AZURE_CLIENT_ID"] + "}")


def test_basic_auth_publishing_is_off(parsed: dict[str, dict[str, Any]]) -> None:
    policies = {cfg["name"]: cfg["properties"]["allow"]
                for _, _, cfg in resources(parsed, "Microsoft.Web/sites/basicPublishingCredentialsPolicies")}
    assert policies == {"ftp": False, "scm": False}


def test_no_key_connection_string_or_test_clock_in_app_settings(parsed: dict[str, dict[str, Any]]) -> None:
    settings = app_settings(parsed)
    assert not FORBIDDEN_SETTINGS & set(settings), FORBIDDEN_SETTINGS & set(settings)
    for name, value in settings.items():
        assert not CREDENTIAL_PATTERNS.search(json.dumps(value)), f"{name} looks like it carries a key: {value}"
    # Nor anywhere else the deployment could set it.
    for path in [*BICEP_FILES, INFRA / "main.parameters.json", ROOT / "azure.yaml"]:
        assert "BILLING_TEST_CLOCK" not in path.read_text(), f"{path.relative_to(ROOT)} mentions BILLING_TEST_CLOCK"
        assert "AccountKey=" not in path.read_text(), path


def test_secrets_come_from_key_vault_references(parsed: dict[str, dict[str, Any]]) -> None:
    settings = app_settings(parsed)
    for name in ("BILLING_LINK_SIGNING_KEY", "PAYMENT_GATEWAY_API_KEY", "STRIPE_API_KEY", "STRIPE_WEBHOOK_SECRET"):
        assert settings[name].startswith("@Microsoft.KeyVault(SecretUri=${"), f"{name}: {settings[name]}"
        assert settings[name].endswith("})")


def test_stripe_secrets_are_key_vault_secrets_written_only_when_given(parsed: dict[str, dict[str, Any]]) -> None:
    settings = app_settings(parsed)
    keyvault = parsed["app/keyvault.bicep"]
    kv_text = (INFRA / "app" / "keyvault.bicep").read_text()
    main_text = (INFRA / "main.bicep").read_text()
    for setting, secret_name, name_param, value_param in (
        ("STRIPE_API_KEY", "stripe-api-key", "stripeApiKeySecretName", "stripeApiKey"),
        ("STRIPE_WEBHOOK_SECRET", "stripe-webhook-secret", "stripeWebhookSecretName", "stripeWebhookSecret"),
    ):
        # api.bicep's parameter holding the secret URI, fed from keyvault.bicep's output of the same name.
        uri_param = settings[setting].removeprefix("@Microsoft.KeyVault(SecretUri=${").removesuffix("})")
        assert param_default(parsed, "app/keyvault.bicep", name_param) == secret_name
        output = rf"^output {uri_param} string = '\$\{{vault\.properties\.vaultUri\}}secrets/\$\{{{name_param}\}}/'$"
        assert re.search(output, kv_text, re.MULTILINE), f"keyvault.bicep has no output {uri_param} for {name_param}"
        assert f"{uri_param}: keyVault.outputs.{uri_param}" in main_text
        # Secure, empty by default; the secret is written only when a value is given, so a value set
        # out of band survives a provision, and no empty placeholder is ever stored.
        for file in ("app/keyvault.bicep", "main.bicep"):  # the same parameter name in both
            decorators = {d["type"] for d in parsed[file]["parameters"][value_param]["decorators"]}
            assert "secure" in decorators, f"{file} {value_param} is not @secure()"
            assert param_default(parsed, file, value_param) == ""
        (secret,) = [r for r in keyvault["resources"].values()
                     if r["type"] == "Microsoft.KeyVault/vaults/secrets" and body(r).get("name") == name_param]
        condition = json.dumps(secret["config"]["condition"])
        assert "empty" in condition and value_param in condition, condition
        assert body(secret)["properties"]["value"] == value_param


def test_every_setting_the_code_reads_is_set_or_deliberately_unset(parsed: dict[str, dict[str, Any]]) -> None:
    read = set(re.findall(r'env\.get\("([A-Za-z0-9_]+)"', (ROOT / "shared" / "settings.py").read_text()))
    assert read, "no settings found in shared/settings.py"
    settings = set(app_settings(parsed))
    missing = read - settings - set(UNSET_IN_AZURE)
    assert not missing, f"read by shared/settings.py but not deployed: {missing}"
    assert not settings & set(UNSET_IN_AZURE), settings & set(UNSET_IN_AZURE)
    expected = {"ACS_EMAIL_ENDPOINT", "ACS_EMAIL_SENDER", "BILLING_PAGE_URL", "SUPPORT_URL", "PAYMENT_GATEWAY_URL"}
    assert expected <= settings
    assert set(SET_AHEAD_OF_CODE) <= settings, f"not deployed: {set(SET_AHEAD_OF_CODE) - settings}"


def test_every_deployed_setting_is_read_by_the_code_or_the_platform(parsed: dict[str, dict[str, Any]]) -> None:
    """The reverse direction: nothing is deployed that nobody reads, except what the contract names
    ahead of the code (SET_AHEAD_OF_CODE, each with where it is specified)."""
    sources = [ROOT / "function_app.py", *(ROOT / "shared").rglob("*.py"), *(ROOT / "functions").rglob("*.py")]
    named = set()
    for source in sources:
        named |= set(re.findall(r'"([A-Za-z][A-Za-z0-9_]+)"', source.read_text()))
    named |= {f"DUNNING_{f.name.upper()}" for f in dataclasses.fields(DunningPolicy) if f.name != "settings_prefix"}
    settings = set(app_settings(parsed))
    unexplained = settings - named - set(PLATFORM_SETTINGS) - set(SET_AHEAD_OF_CODE)
    assert not unexplained, f"deployed but read by nothing: {unexplained}"
    assert not set(SET_AHEAD_OF_CODE) & set(PLATFORM_SETTINGS)


def test_payment_gateway_email_and_dunning_settings_ahead_of_the_code(parsed: dict[str, dict[str, Any]]) -> None:
    settings = app_settings(parsed)
    assert settings["PAYMENT_GATEWAY"] == "http"
    for file in ("main.bicep", "app/api.bicep"):
        assert param_default(parsed, file, "paymentGateway") == "http"
        assert param_allowed(parsed, file, "paymentGateway") == ["http", "stripe"]
    assert settings["EMAIL_QUOTA_PER_MINUTE"] == "" and settings["EMAIL_QUOTA_PER_HOUR"] == ""  # no pacing
    assert settings["EMAIL_GIVE_UP_AFTER_HOURS"] == "72"
    assert settings["DUNNING_MAX_PAUSE_DAYS"] == "90"
    assert settings["DUNNING_CARD_EXPIRY_NOTICE_DAYS"] == "30"
    azd = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    assert azd["paymentGateway"]["value"] == "${PAYMENT_GATEWAY=http}"
    assert azd["stripeApiKey"]["value"] == "${STRIPE_API_KEY}"
    assert azd["stripeWebhookSecret"]["value"] == "${STRIPE_WEBHOOK_SECRET}"
    assert azd["emailQuotaPerMinute"]["value"] == "${EMAIL_QUOTA_PER_MINUTE}"
    assert azd["emailQuotaPerHour"]["value"] == "${EMAIL_QUOTA_PER_HOUR}"


def test_dunning_defaults_equal_the_code(parsed: dict[str, dict[str, Any]]) -> None:
    settings = app_settings(parsed)
    policy = DunningPolicy()
    deployed: dict[str, str] = {}
    for field in dataclasses.fields(DunningPolicy):
        if field.name == "settings_prefix":
            continue
        name = f"DUNNING_{field.name.upper()}"
        value = getattr(policy, field.name)
        expected = ",".join(str(v) for v in value) if isinstance(value, tuple) else str(value)
        assert settings.get(name) == expected, f"{name}: deployed {settings.get(name)!r}, code default {expected!r}"
        deployed[name] = settings[name]
    assert settings["DUNNING_DISABLE_DAY"] == "30"
    assert DunningPolicy.from_settings(deployed) == policy


# --- key vault, monitoring ---------------------------------------------------------------------------


def test_key_vault_uses_rbac_with_purge_protection(parsed: dict[str, dict[str, Any]]) -> None:
    _, vault = one(parsed, "Microsoft.KeyVault/vaults")
    props = vault["properties"]
    assert props["enableRbacAuthorization"] is True
    assert props["enablePurgeProtection"] is True
    assert props["enableSoftDelete"] is True
    assert "accessPolicies" not in props
    for _, symbol, secret in resources(parsed, "Microsoft.KeyVault/vaults/secrets"):
        assert secret["properties"].get("contentType"), symbol


def test_application_insights_accepts_entra_id_only(parsed: dict[str, dict[str, Any]]) -> None:
    _, insights = one(parsed, "Microsoft.Insights/components")
    assert get_ci(insights["properties"], "disableLocalAuth") is True
    assert get_ci(insights["properties"], "WorkspaceResourceId")


def test_app_sends_opentelemetry_with_its_identity(parsed: dict[str, dict[str, Any]]) -> None:
    settings = app_settings(parsed)
    assert settings["PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY"] == "true"
    assert settings["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"].startswith("Authorization=AAD;ClientId=")
    # Read from the component in api.bicep, not handed through a module output.
    connection = json.dumps(settings["APPLICATIONINSIGHTS_CONNECTION_STRING"])
    assert "applicationInsights" in connection and "ConnectionString" in connection, connection
    components = [r for r in parsed["app/api.bicep"]["resources"].values()
                  if r["type"] == "Microsoft.Insights/components"]
    assert len(components) == 1 and components[0]["existing"]
    for file, doc in parsed.items():
        for name, out in (doc.get("outputs") or {}).items():
            assert "connectionstring" not in json.dumps(out).lower(), \
                f"{file} output {name} carries the connection string"
    assert not {"OTEL_EXPORTER_OTLP_ENDPOINT", "APPINSIGHTS_INSTRUMENTATIONKEY"} & set(settings)


def test_app_identity_publishes_metrics_to_application_insights(parsed: dict[str, dict[str, Any]]) -> None:
    rbac = parsed["app/rbac.bicep"]
    components = {s for s, r in rbac["resources"].items() if r["type"] == "Microsoft.Insights/components"}
    assert components
    assignments = [body(r) for r in rbac["resources"].values()
                   if r["type"] == "Microsoft.Authorization/roleAssignments" and body(r).get("scope") in components]
    assert len(assignments) == 1, assignments
    (assignment,) = assignments
    role = assignment["properties"]["roleDefinitionId"]["function"]
    assert role["type"] == "subscription_resource_id"
    assert role["parameters"]["resource_type"] == "Microsoft.Authorization/roleDefinitions"
    role_var = role["parameters"]["resource_name_1"]
    assert rbac["variables"][role_var]["value"] == ROLE["Monitoring Metrics Publisher"]
    assert assignment["properties"]["principalId"] == "appPrincipalId"
    assert assignment["properties"]["principalType"] == "ServicePrincipal"
    # The same identity whose client id the app's authentication string names.
    main = (INFRA / "main.bicep").read_text()
    assert "appPrincipalId: identity.outputs.principalId" in main
    assert "identityClientId: identity.outputs.clientId" in main
    assert main.count("applicationInsightsName: monitoring.outputs.applicationInsightsName") == 3  # rbac, api, alerts


# --- alerts and workbook --------------------------------------------------------------------------------


def _alert_rules(parsed: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    rules = {}
    for file, _, cfg in resources(parsed, "Microsoft.Insights/scheduledQueryRules"):
        assert file == "app/alerts.bicep", f"alert rule outside alerts.bicep: {file}"
        rules[cfg["name"]] = cfg
    return rules


def test_alert_rules_watch_the_contract_metrics(parsed: dict[str, dict[str, Any]]) -> None:
    rules = _alert_rules(parsed)
    assert set(rules) == set(ALERT_RULES)
    for name, (metric, words, operator, threshold, window) in ALERT_RULES.items():
        rule = rules[name]
        assert rule["kind"] == "LogAlert"
        props = rule["properties"]
        assert props["enabled"] is True and props["autoMitigate"] is True
        assert props["scopes"] == [{"operator": {"type": "property_accessor",
                                                 "operands": {"operand_1": "applicationInsights", "operand_2": "id"}}}]
        assert props["windowSize"] == window
        assert props["actions"]["actionGroups"] == "actionGroupIds"
        assert props["displayName"] and props["description"] and props["severity"] in (0, 1, 2, 3, 4)
        (criterion,) = props["criteria"]["allOf"]
        query = criterion["query"]
        assert f'name == "{metric}"' in query, f"{name}: query does not read {metric}"
        for word in words:
            assert word in query, f"{name}: query lacks {word!r}"
        assert criterion["metricMeasureColumn"] in query
        assert criterion["operator"] == operator
        assert criterion["threshold"] == threshold, f"{name}: threshold {criterion['threshold']}"
        for dimension in criterion.get("dimensions", []):
            assert dimension["name"] in query


def test_alert_and_workbook_queries_use_only_contract_names(parsed: dict[str, dict[str, Any]]) -> None:
    """A misspelt metric or attribute would make a rule silently never fire."""
    text = (INFRA / "app" / "alerts.bicep").read_text()
    metrics = set(re.findall(r'name == "(billing\.[a-z_.]+)"', text))
    assert metrics == set(CONTRACT_METRICS), metrics ^ set(CONTRACT_METRICS)
    attributes = set(re.findall(r'customDimensions\["(\w+)"\]', text))
    assert attributes <= set().union(*CONTRACT_METRICS.values()), attributes
    outcomes = set(re.findall(r'"(applied|duplicate|dead_lettered|sent|skipped|failed|throttled|succeeded|declined|'
                              r'refused|unanswered)"', text))
    assert {"failed", "sent", "skipped", "throttled", "unanswered"} <= outcomes


def test_action_group_is_optional_and_mails_the_given_address(parsed: dict[str, dict[str, Any]]) -> None:
    alerts = parsed["app/alerts.bicep"]
    (group,) = [r for r in alerts["resources"].values() if r["type"] == "Microsoft.Insights/actionGroups"]
    assert "alertEmail" in json.dumps(group["config"]["condition"])
    receivers = body(group)["properties"]["emailReceivers"]
    assert [r["emailAddress"] for r in receivers] == ["alertEmail"]
    assert len(body(group)["properties"]["groupShortName"]) <= 12
    assert param_default(parsed, "app/alerts.bicep", "alertEmail") == ""
    assert param_default(parsed, "main.bicep", "alertEmail") == ""
    azd = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    assert azd["alertEmail"]["value"] == "${ALERT_EMAIL}"


def test_workbook_shows_recovery_emails_charges_events_transitions_dead_letters_and_lag(
        parsed: dict[str, dict[str, Any]]) -> None:
    file, workbook = one(parsed, "Microsoft.Insights/workbooks")
    assert file == "app/alerts.bicep"
    props = workbook["properties"]
    assert props["category"] == "workbook" and props["displayName"]
    assert props["sourceId"] == {"operator": {"type": "property_accessor",
                                              "operands": {"operand_1": "applicationInsights", "operand_2": "id"}}}
    assert props["serializedData"] == {"function": {"type": "string", "parameters": {"value_to_convert": "workbook"}}}
    content = parsed[file]["variables"]["workbook"]["value"]
    assert content["version"] == "Notebook/1.0"
    tiles = {item["name"]: item["content"]["function"]["parameters"]["arg_2"]
             for item in content["items"] if item["type"] == 3}
    queries = " ".join(t["query"] for t in tiles.values())
    for metric in CONTRACT_METRICS:
        assert f'name == "{metric}"' in queries, f"no tile reads {metric}"
    recovered = tiles["recovered-per-day"]["query"]
    assert "by currency, bin(timestamp, 1d)" in recovered and "sum(valueSum)" in recovered
    assert "percentile(valueMax, 95)" in tiles["sweep-lag"]["query"] and "max(valueMax)" in tiles["sweep-lag"]["query"]
    assert "decline_code" in tiles["charges"]["query"]
    assert 'customDimensions["source"]' in tiles["dead-letters"]["query"]


# --- roles -----------------------------------------------------------------------------------------------


def test_role_assignments_are_in_rbac_bicep_and_least_privilege(parsed: dict[str, dict[str, Any]]) -> None:
    files = {file for file, _, _ in resources(parsed, "Microsoft.Authorization/roleAssignments")}
    assert files == {"app/rbac.bicep"}
    text = (INFRA / "app" / "rbac.bicep").read_text()
    for role, guid in ROLE.items():
        assert guid in text, f"{role} ({guid}) missing from rbac.bicep"
    for path in BICEP_FILES:
        for role, guid in BROAD_ROLES.items():
            assert guid not in path.read_text(), f"{path.relative_to(ROOT)} grants {role}"
    assigned = [cfg for _, _, cfg in resources(parsed, "Microsoft.Authorization/roleAssignments")]
    assert len(assigned) >= 7
    for cfg in assigned:
        assert cfg["properties"]["principalType"] == "ServicePrincipal"


def test_acs_sender_role_is_narrow(parsed: dict[str, dict[str, Any]]) -> None:
    roles = list(resources(parsed, "Microsoft.Authorization/roleDefinitions"))
    assert len(roles) == 1
    (_, _, role) = roles[0]
    (permission,) = role["properties"]["permissions"]
    assert sorted(a.lower() for a in permission["actions"]) == sorted([
        "microsoft.communication/communicationservices/read",
        "microsoft.communication/communicationservices/write",
        "microsoft.communication/emailservices/write",
    ])
    assert not permission["dataActions"]
    assert param_default(parsed, "app/rbac.bicep", "acsSenderRoleKind") == "custom"


# --- email, event grid ----------------------------------------------------------------------------------


def test_acs_is_linked_to_an_azure_managed_domain(parsed: dict[str, dict[str, Any]]) -> None:
    _, domain = one(parsed, "Microsoft.Communication/emailServices/domains")
    assert domain["properties"]["domainManagement"] == "AzureManaged"
    _, acs = one(parsed, "Microsoft.Communication/communicationServices")
    assert acs["properties"]["linkedDomains"]
    _, topic = one(parsed, "Microsoft.EventGrid/systemTopics")
    assert topic["properties"]["topicType"] == "Microsoft.Communication.CommunicationServices"


def test_delivery_reports_are_routed_to_the_function(parsed: dict[str, dict[str, Any]]) -> None:
    _, sub = one(parsed, "Microsoft.EventGrid/systemTopics/eventSubscriptions")
    destination = sub["properties"]["destination"]
    assert destination["endpointType"] == "AzureFunction"
    assert destination["properties"]["resourceId"].endswith(f"/functions/{DELIVERY_REPORT_FUNCTION}")
    assert sub["properties"]["filter"]["includedEventTypes"] == [DELIVERY_REPORT_EVENT]
    dead_letter = sub["properties"]["deadLetterWithResourceIdentity"]
    assert dead_letter["identity"]["type"] == "SystemAssigned"


# --- wiring a compiler would check ---------------------------------------------------------------------


def test_modules_get_the_parameters_they_declare(parsed: dict[str, dict[str, Any]]) -> None:
    main = parsed["main.bicep"]
    for symbol, module in main["modules"].items():
        path = module["detail"]["path"]
        assert path in parsed, f"module {symbol}: {path} not found"
        declared = parsed[path].get("parameters", {})
        passed = set(body(module).get("params", {}))
        assert passed <= set(declared), f"module {symbol} passes undeclared {passed - set(declared)}"
        required = {name for name, p in declared.items() if p["default"] is None}
        assert required <= passed, f"module {symbol} misses required {required - passed}"


def test_module_outputs_used_exist() -> None:
    text = (INFRA / "main.bicep").read_text()
    modules = dict(re.findall(r"^module (\w+) '([^']+)'", text, re.MULTILINE))
    used = set(re.findall(r"\b(\w+)\.outputs\.(\w+)", text))
    assert used
    for symbol, output in used:
        assert symbol in modules, f"{symbol}.outputs.{output}: no module {symbol}"
        module_text = (INFRA / modules[symbol]).read_text()
        assert re.search(rf"^output {output} ", module_text, re.MULTILINE), f"{modules[symbol]} has no output {output}"


def test_azd_outputs_and_parameters(parsed: dict[str, dict[str, Any]]) -> None:
    outputs = set(parsed["main.bicep"]["outputs"])
    assert {"AZURE_FUNCTION_NAME", "AZURE_LOCATION", "AZURE_STORAGE_ACCOUNT_NAME", "AZURE_KEY_VAULT_NAME",
            "AZURE_TENANT_ID", "SERVICE_API_NAME"} <= outputs
    params = parsed["main.bicep"]["parameters"]
    file_params = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    assert set(file_params) <= set(params), set(file_params) - set(params)
    required = {name for name, p in params.items() if p["default"] is None}
    assert required <= set(file_params), f"main.parameters.json misses {required - set(file_params)}"
    assert param_default(parsed, "main.bicep", "emailEventsSubscriptionEnabled") is False


def test_names_come_from_abbreviations_and_fit(parsed: dict[str, dict[str, Any]]) -> None:
    abbrs = json.loads((INFRA / "abbreviations.json").read_text())
    text = (INFRA / "main.bicep").read_text()
    for key in set(re.findall(r"abbrs\.(\w+)", text)):
        assert key in abbrs, f"abbreviations.json has no {key}"
    assert "toLower(uniqueString(subscription().id, environmentName, location))" in text
    token = 13  # uniqueString() is 13 characters
    assert len(abbrs["storageStorageAccounts"]) + token <= 24 and abbrs["storageStorageAccounts"].isalnum()
    assert len(abbrs["keyVaultVaults"]) + token <= 24
    assert parsed["main.bicep"]["globals"]["scope"]["value"] == "subscription"


def test_api_versions_are_not_previews(parsed: dict[str, dict[str, Any]]) -> None:
    allowed_preview = {"Microsoft.Insights/diagnosticSettings"}  # no GA version of this type exists
    for file, doc in parsed.items():
        for symbol, res in doc.get("resources", {}).items():
            if "preview" in res["api_version"]:
                assert res["type"] in allowed_preview, f"{file} {symbol}: {res['type']}@{res['api_version']}"


def test_azure_yaml_names_the_service() -> None:
    azd = yaml.safe_load((ROOT / "azure.yaml").read_text())
    assert azd["services"]["api"] == {"project": ".", "language": "python", "host": "function"}
    assert azd["infra"]["path"] == "infra"
