"""Wiring: every adapter is built here once per process from the app settings.

Functions call `services()`; tests call `build(settings, ...)` with their own Azurite and faults.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from azure.storage.queue import QueueClient

from shared.adapters.gateway.capped import CappedGateway
from shared.adapters.gateway.http import HttpPaymentGateway
from shared.adapters.gateway.protocol import AuthenticatingGateway, PaymentGateway
from shared.adapters.gateway.stripe import StripeGateway
from shared.adapters.mailer.acs import AcsMailer
from shared.adapters.mailer.protocol import Mailer
from shared.adapters.store import clients
from shared.adapters.store.account_store import AccountStore
from shared.adapters.store.contact_index import ContactIndex
from shared.adapters.store.indexes import Indexes
from shared.adapters.store.leases import AccountLeases
from shared.adapters.store.system import DeadLetters, MailIndex, StoredTestClock
from shared.clock import Clock, SystemClock
from shared.faults import Faults
from shared.services.dispatch import OutboxDispatcher
from shared.services.unit_of_work import Lifecycle
from shared.settings import Settings


@dataclass
class Services:
    settings: Settings
    lifecycle: Lifecycle
    deadletters: DeadLetters
    test_clock: StoredTestClock | None
    gateway: PaymentGateway | None
    authenticator: AuthenticatingGateway | None
    """The gateway's 3-D Secure side, where it has one (Stripe)."""

    store: AccountStore
    leases: AccountLeases
    mailer: Mailer | None
    mail_index: MailIndex
    contacts: ContactIndex
    indexes: Indexes
    payment_events_queue: QueueClient
    sweep_queue: QueueClient
    sweep_page_queue: QueueClient
    email_queue: QueueClient


def build(settings: Settings, *, faults: Faults | None = None, hook: clients.RequestHook | None = None,
          gateway: PaymentGateway | None = None, mailer: Mailer | None = None) -> Services:
    tables = clients.table_service(settings, hook)
    queues = clients.queue_service(settings, hook)
    faults = faults or Faults()
    store = AccountStore(clients.ensure_table(tables, settings.billing_table), faults)
    system = clients.ensure_table(tables, settings.system_table)
    test_clock = StoredTestClock(system, SystemClock()) if settings.test_clock_enabled else None
    clock: Clock = test_clock or SystemClock()
    indexes = Indexes(clients.ensure_table(tables, settings.index_table))
    email_queue = clients.ensure_queue(queues, settings.email_queue)
    dispatcher = OutboxDispatcher(store, clients.ensure_queue(queues, settings.lifecycle_queue), email_queue, indexes)
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
    return Services(
        settings=settings,
        lifecycle=Lifecycle(store, dispatcher, clock, settings.policy, faults),
        deadletters=DeadLetters(system),
        store=store,
        leases=AccountLeases(store.table),
        mailer=mailer if mailer is not None else AcsMailer.from_settings(settings),
        mail_index=MailIndex(system),
        contacts=ContactIndex(indexes.table),
        indexes=indexes,
        payment_events_queue=clients.ensure_queue(queues, settings.payment_events_queue),
        sweep_queue=clients.ensure_queue(queues, settings.sweep_queue),
        sweep_page_queue=clients.ensure_queue(queues, settings.sweep_page_queue),
        email_queue=email_queue,
        test_clock=test_clock,
        gateway=gateway,
        authenticator=authenticator,
    )


@functools.cache
def services() -> Services:
    """The process-wide services, built on first use (not at import, so indexing never needs storage)."""
    return build(Settings.from_env())
