"""Email addresses compared as mail systems compare them (RFC 5321 §2.4): the domain is
case-insensitive, the local part is the receiving system's own and kept exactly."""

from __future__ import annotations


def mailbox(address: str) -> str:
    """`Ap@Contoso.EXAMPLE` -> `Ap@contoso.example`: one spelling per mailbox, for matching and keys."""
    local, at, domain = address.rpartition("@")
    return f"{local}@{domain.lower()}" if at else address


def same_mailbox(a: str, b: str) -> bool:
    return mailbox(a) == mailbox(b)
