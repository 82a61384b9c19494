"""Wiring: every adapter is built here once per process from the app settings.

Functions call `services()`; tests call `build(settings, ...)` with their own Azurite and faults.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from shared.adapters.gateway.capped import CappedGateway
from shared.adapters.gateway.http import HttpPaymentGateway
from shared.adapters.gateway.protocol import AuthenticatingGateway, PaymentGateway
from shared.adapters.gateway.stripe import StripeGateway
from shared.adapters.mailer.acs import AcsMailer
from shared.adapters.mailer.protocol import Mailer
from shared.adapters.queues.protocol import QueueRole
from shared.adapters.queues.storage import StorageQueues
from shared.adapters.store import clients
from shared.adapters.store.account_store import AccountStore
from shared.adapters.store.contact_index import ContactIndex
from shared.adapters.store.email_budget import EmailBudget, budget_for
from shared.adapters.store.indexes import Indexes
from shared.adapters.store.leases import AccountLeases
from shared.adapters.store.system import DeadLetters, MailIndex, StoredTestClock
from shared.clock import Clock, SystemClock
from shared.faults import Faults
from shared.services.dispatch import OutboxDispatcher
from shared.services.unit_of_work import UnitOfWork
from shared.settings import Settings


@dataclass
class Services:
    """The composition root: the unit of work every use case takes, and the outside systems some
    of them also call (the gateway, the mailer)."""

    settings: Settings
    uow: UnitOfWork
    gateway: PaymentGateway | None
    authenticator: AuthenticatingGateway | None
    """The gateway's 3-D Secure side, where it has one (Stripe)."""
    mailer: Mailer | None
    test_clock: StoredTestClock | None
    mail_index: MailIndex
    """Rows earlier versions kept per email; erasure still deletes an account's."""
    email_budget: EmailBudget | None = None
    """The send budget every instance shares: the quota's slots (`EMAIL_QUOTA_PER_MINUTE` /
    `_PER_HOUR`, unset: no pacing) and the email service's hold after a 429 (always)."""


def build(settings: Settings, *, faults: Faults | None = None, hook: clients.RequestHook | None = None,
          gateway: PaymentGateway | None = None, mailer: Mailer | None = None) -> Services:
    tables = clients.table_service(settings, hook)
    queue_service = clients.queue_service(settings, hook)
    faults = faults or Faults()
    accounts = AccountStore(clients.ensure_table(tables, settings.billing_table), faults)
    system = clients.ensure_table(tables, settings.system_table)
    test_clock = StoredTestClock(system, SystemClock()) if settings.test_clock_enabled else None
    clock: Clock = test_clock or SystemClock()
    indexes = Indexes(clients.ensure_table(tables, settings.index_table))
    contacts = ContactIndex(indexes.table)
    names: dict[QueueRole, str] = {
        "payment-events": settings.payment_events_queue, "subscription-lifecycle": settings.lifecycle_queue,
        "email-outbox": settings.email_queue, "sweep-work": settings.sweep_queue,
        "sweep-pages": settings.sweep_page_queue,
    }
    queues = StorageQueues({role: clients.ensure_queue(queue_service, name) for role, name in names.items()})
    uow = UnitOfWork(accounts=accounts, indexes=indexes, contacts=contacts, dead_letters=DeadLetters(system),
                     leases=AccountLeases(accounts.table), queues=queues,
                     dispatcher=OutboxDispatcher(accounts, queues, indexes, contacts), clock=clock,
                     policy=settings.policy, faults=faults)
    authenticator: AuthenticatingGateway | None = None
    if gateway is None and settings.payment_gateway == "stripe" and settings.stripe_api_key:
        stripe_gateway = StripeGateway(settings.stripe_api_key, api_base=settings.stripe_api_base)
        authenticator = stripe_gateway
        gateway = CappedGateway(stripe_gateway, settings.max_concurrent_charges)
    elif gateway is None and settings.gateway_url:
        gateway = CappedGateway(HttpPaymentGateway(settings.gateway_url, settings.gateway_api_key or ""),
                                settings.max_concurrent_charges)
    elif isinstance(gateway, AuthenticatingGateway):
        authenticator = gateway
    return Services(settings=settings, uow=uow, gateway=gateway, authenticator=authenticator,
                    mailer=mailer if mailer is not None else AcsMailer.from_settings(settings),
                    test_clock=test_clock, mail_index=MailIndex(system),
                    email_budget=budget_for(system, settings.email_quota_per_minute, settings.email_quota_per_hour))


@functools.cache
def services() -> Services:
    """The process-wide services, built on first use (not at import, so indexing never needs storage)."""
    return build(Settings.from_env())
