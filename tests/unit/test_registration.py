"""What `PUT /api/accounts/{id}` refuses before anything is stored: card numbers however written,
and characters that would garble or disguise a name in an email (issue 15)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from shared.inbound.account_body import AccountBody, InvalidRequest, parse_body

CARD_FORMS = ["4111.1111.1111.1111", "4111  1111  1111  1111", "4111/1111/1111/1111",
              "4111\u00a01111\u00a01111\u00a01111", "4111\t1111\t1111\t1111",
              "Contoso 4111-1111-1111-1111", "\u0664111111111111111"]
HIDDEN = ["\u202e", "\u202d", "\u2066", "\u200b", "\u0000", "\u001b", "\u0085", "\ue000", "\ud800", "\u2028",
          "\n", "\t"]


def body(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"displayName": "Contoso", "billingContacts": ["billing@contoso.example"],
                            "subscriptions": [{"id": "s1", "name": "Service 1"}]}
    return {**base, **changes}


def refused_field(data: dict[str, Any]) -> str:
    with pytest.raises(InvalidRequest) as info:
        parse_body(AccountBody, data)
    assert len(info.value.problems) == 1, info.value
    return info.value.problems[0].field


@pytest.mark.parametrize("card", CARD_FORMS)
def test_a_card_number_in_a_name_is_refused_naming_the_field(card: str) -> None:
    assert refused_field(body(displayName=card)) == "displayName"
    assert refused_field(body(subscriptions=[{"id": "s1", "name": card}])) == "subscriptions.0.name"


@pytest.mark.parametrize("ch", HIDDEN)
def test_control_and_formatting_characters_are_refused_naming_the_field(ch: str) -> None:
    assert refused_field(body(displayName=f"Contoso{ch}Ltd")) == "displayName"
    assert refused_field(body(subscriptions=[{"id": "s1", "name": f"A{ch}B"}])) == "subscriptions.0.name"
    assert refused_field(body(billingContacts=[f"bill{ch}ing@contoso.example"])) == "billingContacts.0"


def test_the_refusal_names_the_code_point_but_never_echoes_it() -> None:
    with pytest.raises(InvalidRequest) as info:
        parse_body(AccountBody, body(displayName="evil\u202egnp.exe"))
    assert "U+202E" in str(info.value) and "\u202e" not in str(info.value)


@pytest.mark.parametrize("name", ["Contoso\u00a0Ltd", "Contoso  Ltd", "مهر\u200cشید", "👨\u200d👩\u200d👧",
                                  "北京 有限公司", "A/B Services", "Order 4111 1111"])
def test_names_people_write_are_kept(name: str) -> None:
    parsed = parse_body(AccountBody, body(displayName=name, subscriptions=[{"id": "s1", "name": name}]))
    assert parsed.displayName == name and parsed.subscriptions[0].name == name


@pytest.mark.parametrize(("data", "field"), [
    (body(**{"4111111111111111": 1}), "************1111"),
    (body(subscriptions=[{"id": "s1", "name": "A", "4111 1111 1111 1111": 1}]), "subscriptions.0.**** **** **** 1111"),
    (body(displayName=4111111111111111), "displayName"),
    (body(displayName=4111111111111111.0), "displayName"),
    (body(subscriptions=[{"id": "s1", "name": Decimal("4111111111111111")}]), "subscriptions.0.name"),
])
def test_a_card_number_as_a_key_or_a_number_is_refused_and_never_echoed(data: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        parse_body(AccountBody, data)
    assert [p.field for p in info.value.problems] == [field]
    assert "card number" in info.value.problems[0].message and "4111" not in str(info.value)
