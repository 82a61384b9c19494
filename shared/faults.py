"""Seams where tests inject crashes that cannot be produced otherwise (a process dying between
two storage calls). In production they do nothing."""

from __future__ import annotations


class Faults:
    def before_commit(self) -> None:
        """Called after deciding, before the transaction."""

    def between_transactions(self) -> None:
        """Called after the first transaction of a decision too large for one, before the rest
        (and between the batches of an erasure's redaction)."""

    def before_dispatch(self) -> None:
        """Called after the transaction, before the outbox is carried out."""

    def after_gateway_charge(self) -> None:
        """Called after the gateway answered a charge, before the result is committed."""


class CrashInjected(RuntimeError):
    """Raised by a test's fault plan to stand in for a process dying."""
