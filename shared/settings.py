"""App settings, read once per process and validated, so a bad setting fails at start."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

from shared.domain.policy import DunningPolicy
from shared.inbound.numerals import parse_whole


class SettingsError(ValueError):
    """A missing or malformed app setting."""


@dataclass(frozen=True)
class Settings:
    storage_connection_string: str | None
    storage_account_name: str | None
    policy: DunningPolicy
    test_clock_enabled: bool
    acs_endpoint: str | None
    acs_access_key: str | None
    acs_connection_string: str | None
    email_sender: str
    gateway_url: str | None
    gateway_api_key: str | None
    billing_page_url: str
    link_signing_key: str | None
    support_url: str
    max_concurrent_charges: int = 8
    payment_gateway: str = "http"
    """`http` (the product's gateway protocol at `gateway_url`) or `stripe`."""
    stripe_api_key: str | None = None
    stripe_webhook_secret: str | None = None
    stripe_api_base: str | None = None
    """Only for local work (the Stripe-compatible sandbox); unset: Stripe itself."""
    billing_table: str = "billing"
    system_table: str = "billingsystem"
    index_table: str = "billingindex"
    lifecycle_queue: str = "subscription-lifecycle"
    payment_events_queue: str = "payment-events"
    email_queue: str = "email-outbox"
    sweep_queue: str = "sweep-work"
    sweep_page_queue: str = "sweep-pages"
    email_quota_per_minute: int | None = None
    email_quota_per_hour: int | None = None
    """`EMAIL_QUOTA_PER_MINUTE` / `_PER_HOUR`: what ACS grants the resource; every instance paces
    its sends to them together (`shared/adapters/store/email_budget.py`). Unset: no pacing."""
    email_give_up_after: timedelta = timedelta(hours=72)
    """`EMAIL_GIVE_UP_AFTER_HOURS`: how long after it was due a throttled email is still tried."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        unresolved = sorted(k for k, v in env.items() if v.startswith("@Microsoft.KeyVault("))
        if unresolved:
            # App Service passes the reference text itself when it cannot resolve a Key Vault
            # reference: signing links with that text would be signing with a public string.
            raise SettingsError(f"Key Vault references not resolved (check the identity's access): {unresolved}")
        conn = env.get("AzureWebJobsStorage") or None
        account = env.get("AzureWebJobsStorage__accountName") or None
        if not conn and not account:
            raise SettingsError("set AzureWebJobsStorage (connection string) or AzureWebJobsStorage__accountName")
        return cls(
            storage_connection_string=conn,
            storage_account_name=account,
            policy=DunningPolicy.from_settings(env),
            test_clock_enabled=env.get("BILLING_TEST_CLOCK", "").strip().lower() == "enabled",
            acs_endpoint=env.get("ACS_EMAIL_ENDPOINT") or None,
            acs_access_key=env.get("ACS_EMAIL_ACCESS_KEY") or None,
            acs_connection_string=env.get("ACS_EMAIL_CONNECTION_STRING") or None,
            email_sender=env.get("ACS_EMAIL_SENDER", "DoNotReply@billing.localhost"),
            gateway_url=env.get("PAYMENT_GATEWAY_URL") or None,
            gateway_api_key=env.get("PAYMENT_GATEWAY_API_KEY") or None,
            billing_page_url=env.get("BILLING_PAGE_URL", "http://127.0.0.1:7071/api/billing"),
            link_signing_key=env.get("BILLING_LINK_SIGNING_KEY") or None,
            support_url=env.get("SUPPORT_URL", "https://support.example.com/billing"),
            max_concurrent_charges=_count(env, "PAYMENT_GATEWAY_MAX_CONCURRENT_CHARGES", 8),
            payment_gateway=_gateway(env),
            stripe_api_key=env.get("STRIPE_API_KEY") or None,
            stripe_webhook_secret=env.get("STRIPE_WEBHOOK_SECRET") or None,
            stripe_api_base=env.get("STRIPE_API_BASE") or None,
            email_quota_per_minute=_quota(env, "EMAIL_QUOTA_PER_MINUTE"),
            email_quota_per_hour=_quota(env, "EMAIL_QUOTA_PER_HOUR"),
            email_give_up_after=timedelta(hours=_whole(env, "EMAIL_GIVE_UP_AFTER_HOURS", 72, 1, 8760)),
        )


def _count(env: Mapping[str, str], name: str, default: int) -> int:
    """A whole number from 1 to 1000 in ASCII digits, or `default` when unset."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = parse_whole(raw, max_digits=4)
    except ValueError as exc:
        raise SettingsError(f"{name} must be a whole number from 1 to 1000: {exc}") from exc
    if not 1 <= value <= 1000:
        raise SettingsError(f"{name} must be a whole number from 1 to 1000, got {raw!r}")
    return value


def _quota(env: Mapping[str, str], name: str) -> int | None:
    """An email quota: a whole number of emails from 1 to 1,000,000, or None when unset or empty."""
    if not env.get(name, "").strip():
        return None
    return _whole(env, name, 0, 1, 1_000_000)


def _whole(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    """A whole number from `low` to `high` in ASCII digits, or `default` when unset."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = parse_whole(raw, max_digits=len(str(high)))
    except ValueError as exc:
        raise SettingsError(f"{name} must be a whole number from {low} to {high}: {exc}") from exc
    if not low <= value <= high:
        raise SettingsError(f"{name} must be a whole number from {low} to {high}, got {raw!r}")
    return value


def _gateway(env: Mapping[str, str]) -> str:
    """`PAYMENT_GATEWAY`: `http` (the default) or `stripe`, which needs `STRIPE_API_KEY`."""
    name = env.get("PAYMENT_GATEWAY", "").strip().lower() or "http"
    if name not in ("http", "stripe"):
        raise SettingsError(f"PAYMENT_GATEWAY must be http or stripe, got {name!r}")
    if name == "stripe" and not env.get("STRIPE_API_KEY"):
        raise SettingsError("PAYMENT_GATEWAY=stripe needs STRIPE_API_KEY (sk_live_… or sk_test_…)")
    return name
