"""The local stack's command line: what it refuses before starting anything."""

from __future__ import annotations

import argparse

import pytest

from devstack.stack import app_quota_argument


@pytest.mark.parametrize("spec", ["0", "0,100", "30,0", ",0"])
def test_an_email_quota_the_app_cannot_pace_to_is_refused_at_once(spec: str) -> None:
    """The app refuses EMAIL_QUOTA_PER_MINUTE=0, so the stack would wait 60 s and report the
    functions host not ready: it says why before starting anything."""
    with pytest.raises(argparse.ArgumentTypeError, match="at least 1"):
        app_quota_argument(spec)


def test_an_email_quota_of_one_and_more_is_taken() -> None:
    quota = app_quota_argument("30,100")
    assert (quota.per_minute, quota.per_hour) == (30, 100)
