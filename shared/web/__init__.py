"""The hosted billing page and its signed links."""
