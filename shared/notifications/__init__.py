"""Billing emails (HTML and plain text) and portal alert texts, in `en` and `zh-CN`.

Layout lives in `templates/` (one `.html` and one `.txt` Jinja2 template per email kind), every
sentence a translator touches in `locales/<locale>.toml`, money and dates through Babel.
"""

from shared.notifications.alerts import ALERT_CODES, AlertCode, AlertParams, alert_message
from shared.notifications.formatting import LOCALES, format_date, format_money
from shared.notifications.render import (
    EMAIL_KINDS,
    EmailContext,
    PaidLine,
    RenderedEmail,
    SubscriptionLine,
    links_to_billing_page,
    render_email,
)

__all__ = [
    "ALERT_CODES",
    "EMAIL_KINDS",
    "LOCALES",
    "AlertCode",
    "AlertParams",
    "EmailContext",
    "PaidLine",
    "RenderedEmail",
    "SubscriptionLine",
    "alert_message",
    "format_date",
    "format_money",
    "links_to_billing_page",
    "render_email",
]
