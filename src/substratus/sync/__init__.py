"""Two-way file sync between a local directory and a notebook's working directory (`sub notebook`).

    plan.py       pure: two listings (path -> digest, mtime, size) and the last
                  synced state -> copy / delete / conflict actions
    ignore.py     which paths never sync: defaults plus the directory's .gitignore
    sides.py      the transport interface (`Side`: scan, read, write, delete)
                  and `LocalDir`, the local directory
    container.py  `ContainerDir`: a container's directory over `Runtime.exec`
                  (the Kubernetes operator implements the same `Side` over its API)
    session.py    `Syncer`: one round = scan both sides, plan, carry the plan out

Nothing is lost: a file changed on both sides since the last sync keeps the
newer at its path and the other beside it (`name.conflict-<time>.ext`), and
a write or delete only happens if the file is still what the scan saw.
"""
