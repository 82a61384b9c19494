"""Sending email: a small interface, the Azure Communication Services adapter, and a fake."""
