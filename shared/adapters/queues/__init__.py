"""Storage queues: the port the services send through (`protocol.py`) and the Azure Storage
adapter (`storage.py`). The in-memory twin is `tests/fakes/queues.py`."""
