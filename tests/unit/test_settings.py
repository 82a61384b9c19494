"""App settings are validated at start: a typo must fail the deployment, not change the policy."""

from __future__ import annotations

import pytest

from shared.domain.policy import DunningPolicy, PolicyError
from shared.settings import Settings, SettingsError

BASE = {"AzureWebJobsStorage": "UseDevelopmentStorage=true"}


def test_defaults_are_the_contracts() -> None:
    s = Settings.from_env(BASE)
    assert s.policy == DunningPolicy()
    assert (s.policy.retry_days, s.policy.reminder_days, s.policy.disable_warning_day, s.policy.disable_day,
            s.policy.cancel_day, s.policy.deletion_warning_days, s.policy.delete_after_cancel_days) == (
        (1, 3, 5, 7), (7, 14, 21), 27, 30, 90, (60, 83, 89), 90)
    assert s.test_clock_enabled is False


def test_every_number_is_a_setting() -> None:
    s = Settings.from_env({**BASE, "DUNNING_DISABLE_DAY": "45", "DUNNING_RETRY_DAYS": "2,4",
                           "DUNNING_CANCEL_DAY": "100", "BILLING_TEST_CLOCK": "Enabled"})
    assert s.policy.disable_day == 45 and s.policy.retry_days == (2, 4) and s.policy.cancel_day == 100
    assert s.test_clock_enabled is True


@pytest.mark.parametrize("env", [
    {"DUNNING_DISABLE_DAY": "thirty"},
    {"DUNNING_RETRY_DAYS": "3,1"},
    {"DUNNING_DISABLE_DAY": "95"},
    {"DUNNING_DISABLE_WARNING_DAY": "31"},
    {"DUNNING_DELETION_WARNING_DAYS": "60,95"},
])
def test_a_policy_that_makes_no_sense_fails_at_start(env: dict[str, str]) -> None:
    with pytest.raises(PolicyError):
        Settings.from_env({**BASE, **env})


def test_storage_is_required_and_unresolved_key_vault_references_are_refused() -> None:
    with pytest.raises(SettingsError):
        Settings.from_env({})
    with pytest.raises(SettingsError, match="BILLING_LINK_SIGNING_KEY"):
        Settings.from_env({**BASE, "BILLING_LINK_SIGNING_KEY": "@Microsoft.KeyVault(SecretUri=https://v/secrets/k)"})
