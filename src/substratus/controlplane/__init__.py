"""The control plane: the object store, the pure planners, and the loop that applies their plans."""
