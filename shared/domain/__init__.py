"""The pure domain: lifecycle rules as functions of facts, time and policy; no I/O, no clock."""
