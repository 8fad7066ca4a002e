"""The local backend: the object store (SQLite), the controller (a work queue, its workers, the
reconciler of one pass over the shared core, and the sources that queue keys: engine events, store
events through the dependency index, timers), the observer of the local engine, the executor that
carries actions out on podman or docker, and garbage collection. The HTTP API (`substratus.api`)
sits on top."""
