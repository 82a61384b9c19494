"""How long an email waits after the email service failed it for a passing reason (a 5xx naming no
`Retry-After`, a timeout, the service unreachable), before it is tried again.

The email stays due until `EMAIL_GIVE_UP_AFTER_HOURS` after it was due, like a throttled one, so a
retry must not depend on the queue's dequeue count: it is a new hand-off, visible after this wait.
The wait grows with how long the email has been due: as long again, at least `RETRY_FLOOR` and at
most `RETRY_CAP`, then shortened by up to half at random (`spread`) so the emails an outage failed
together do not all come back together. An email that fails from when it is due is so tried again
after 5, 5, 10, 20, 40 ... seconds (each wait doubles the time since it was due; the spread takes up
to half of each off), then every five to ten minutes (`RETRY_CAP`): at most ten minutes after the
service recovers, and six to twelve tries an hour against a service that stays down. The time since
it was due stands for the count of tries, which is kept nowhere: nothing is written per try, and an
email that waited long for the quota before its first failure starts at the cap.
"""

from __future__ import annotations

from datetime import timedelta

RETRY_FLOOR = timedelta(seconds=5)
RETRY_CAP = timedelta(minutes=10)


def transient_retry_in(due_for: timedelta, spread: float) -> timedelta:
    """The wait before an email due for `due_for` is tried again after a passing failure; `spread`
    in [0, 1) (random in production) takes up to half of it off."""
    base = min(max(due_for, RETRY_FLOOR), RETRY_CAP)
    return base * (1.0 - min(max(spread, 0.0), 1.0) / 2)
