"""The local backend: the object store (SQLite), the controller that runs the reconcile core's
planners over a work queue, the observer of the local engine, the executor that carries actions
out on podman or docker, and garbage collection. The HTTP API (`substratus.api`) sits on top."""
