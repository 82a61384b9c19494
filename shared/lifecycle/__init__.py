"""The pure lifecycle core: no I/O, no clock reads. See `decide.py`."""
