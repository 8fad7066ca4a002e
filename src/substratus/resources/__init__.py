"""Resource schemas and pure functions on them (the bottom layer)."""
