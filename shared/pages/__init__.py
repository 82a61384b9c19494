"""The hosted billing page: what the customer owes, and the card form that settles it at once."""
