"""Every string a translator touches, one TOML file per locale under `locales/`.

A message is a `str.format` pattern with named placeholders (`{date}`), or a table of CLDR plural
forms (`{ one = "...", other = "..." }`) chosen by the `count` placeholder. Both catalogs are
loaded and checked against each other once: the same keys, the same placeholders, every plural
form the locale needs. A translation that drifts fails at import, not in a customer's inbox.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from string import Formatter

from babel import Locale as CldrLocale

from shared.domain.model import Locale
from shared.notifications.formatting import LOCALES, cldr_locale

_LOCALES_DIR = Path(__file__).with_name("locales")

Message = str | dict[str, str]

# The CLDR plural categories: a table with only these keys (and at least `other`) is one message.
_PLURAL_FORMS = frozenset({"zero", "one", "two", "few", "many", "other"})


class CatalogError(ValueError):
    """A locale catalog that is missing a message, a placeholder or a plural form."""


@dataclass(frozen=True)
class Catalog:
    locale: Locale
    messages: Mapping[str, Message]

    def text(self, key: str, /, **params: object) -> str:
        """The message `key` with its placeholders filled; a plural message needs `count`."""
        message = self.messages[key]
        if isinstance(message, dict):
            count = params["count"]
            if not isinstance(count, int):
                raise TypeError(f"{key}: count must be an int, not {count!r}")
            form = CldrLocale.parse(cldr_locale(self.locale)).plural_form(count)
            message = message.get(form, message["other"])
        return message.format_map(params)


def _flatten(table: Mapping[str, object], prefix: str, into: dict[str, Message], source: Path) -> None:
    for name, value in table.items():
        key = f"{prefix}{name}"
        if isinstance(value, str):
            into[key] = value
        elif isinstance(value, dict) and "other" in value and value.keys() <= _PLURAL_FORMS:
            if not all(isinstance(v, str) for v in value.values()):
                raise CatalogError(f"{source.name}: plural message {key} must hold strings only")
            into[key] = {str(k): str(v) for k, v in value.items()}
        elif isinstance(value, dict):
            _flatten(value, f"{key}.", into, source)
        else:
            raise CatalogError(f"{source.name}: {key} must be a string or a table")


def _placeholders(message: Message) -> frozenset[str]:
    patterns = message.values() if isinstance(message, dict) else (message,)
    return frozenset(
        field for pattern in patterns for _, field, _, _ in Formatter().parse(pattern) if field is not None
    )


def _load(locale: Locale) -> Catalog:
    source = _LOCALES_DIR / f"{locale}.toml"
    with source.open("rb") as f:
        raw = tomllib.load(f)
    messages: dict[str, Message] = {}
    _flatten(raw, "", messages, source)
    needed = CldrLocale.parse(cldr_locale(locale)).plural_form.tags | {"other"}
    for key, message in messages.items():
        if isinstance(message, dict) and not needed <= message.keys():
            raise CatalogError(f"{source.name}: {key} needs the plural forms {sorted(needed)}")
    return Catalog(locale, messages)


def _check_parity(catalogs: Mapping[Locale, Catalog]) -> None:
    reference, *others = catalogs.values()
    for other in others:
        missing = reference.messages.keys() ^ other.messages.keys()
        if missing:
            raise CatalogError(f"{other.locale} and {reference.locale} differ in keys: {sorted(missing)}")
        for key, message in reference.messages.items():
            if _placeholders(message) != _placeholders(other.messages[key]):
                raise CatalogError(f"{other.locale}: {key} has other placeholders than {reference.locale}")
            if isinstance(message, dict) != isinstance(other.messages[key], dict):
                raise CatalogError(f"{other.locale}: {key} is plural in one locale only")


@cache
def catalogs() -> Mapping[Locale, Catalog]:
    loaded = {locale: _load(locale) for locale in LOCALES}
    _check_parity(loaded)
    return loaded


def catalog(locale: Locale) -> Catalog:
    cldr_locale(locale)  # refuses an unsupported locale with a clear message
    return catalogs()[locale]
