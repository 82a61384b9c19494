"""Adapters: one folder per outside system, its port and its real implementation."""
