"""In-memory twins of the adapters, held to the same contract suite as the real ones."""
