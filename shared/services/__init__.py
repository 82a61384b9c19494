"""The service layer: one use case per module, load -> decide -> commit -> dispatch."""
