"""Sending email: its port (`protocol.py`) and the Azure Communication Services adapter (`acs.py`).
The in-memory twin is `tests/fakes/mailer.py`; the local email endpoint (`devstack/email_endpoint`)
speaks ACS's REST API to the real adapter."""
