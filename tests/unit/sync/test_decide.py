"""The sync planner (`sub notebook`'s two-way sync): pure, so every rule is checked with plain dicts."""

from __future__ import annotations

import random
import time

import pytest

from substratus.sync.decide import Conflict, Copy, Delete, Entry, Plan, conflict_name, plan

NOW = time.mktime((2026, 11, 27, 15, 30, 12, 0, 0, 0)) - time.timezone  # 2026-11-27 15:30:12 UTC
STAMP = "20261127-153012"


def e(digest: str, mtime: float = 100.0, size: int = 1) -> Entry:
    return Entry(digest=digest, mtime=mtime, size=size)


def test_a_first_round_adds_files_both_ways_and_never_deletes() -> None:
    p = plan({"a.py": e("A"), "same.txt": e("S")}, {"nb.ipynb": e("N"), "same.txt": e("S")}, {}, NOW)
    assert p.actions == [Copy("a.py", to="remote", digest="A"), Copy("nb.ipynb", to="local", digest="N")]
    assert p.agreed == {"same.txt": "S"}


def test_a_first_round_with_different_contents_is_a_conflict_the_newer_wins() -> None:
    p = plan({"x.py": e("L", mtime=200)}, {"x.py": e("R", mtime=300)}, {}, NOW)
    assert p.actions == [Conflict("x.py", winner="remote", keep_as=f"x.conflict-{STAMP}.py")]
    p = plan({"x.py": e("L", mtime=400)}, {"x.py": e("R", mtime=300)}, {}, NOW)
    assert p.actions == [Conflict("x.py", winner="local", keep_as=f"x.conflict-{STAMP}.py")]


def test_an_mtime_tie_keeps_the_local_copy_at_the_path() -> None:
    [c] = plan({"x": e("L", mtime=5)}, {"x": e("R", mtime=5)}, {}, NOW).actions
    assert isinstance(c, Conflict) and c.winner == "local"


@pytest.mark.parametrize("local,remote,expected", [
    ("L2", "B", Copy("f", to="remote", digest="L2")),   # edited in DIR
    ("B", "R2", Copy("f", to="local", digest="R2")),    # saved in the notebook
    ("L2", "R2", Conflict("f", winner="remote", keep_as=f"f.conflict-{STAMP}")),  # both: remote newer
])
def test_changes_against_the_last_sync(local: str, remote: str, expected: object) -> None:
    p = plan({"f": e(local, mtime=1)}, {"f": e(remote, mtime=2)}, {"f": "B"}, NOW)
    assert p.actions == [expected]


def test_the_same_change_on_both_sides_is_agreed_not_a_conflict() -> None:
    p = plan({"f": e("X")}, {"f": e("X")}, {"f": "B"}, NOW)
    assert p.actions == [] and p.agreed == {"f": "X"}


def test_a_delete_propagates_only_when_the_other_side_is_unchanged() -> None:
    assert plan({}, {"f": e("B")}, {"f": "B"}, NOW).actions == [Delete("f", on="remote")]
    assert plan({"f": e("B")}, {}, {"f": "B"}, NOW).actions == [Delete("f", on="local")]


def test_a_change_beats_a_delete() -> None:
    assert plan({"f": e("L2")}, {}, {"f": "B"}, NOW).actions == [Copy("f", to="remote", digest="L2")]
    assert plan({}, {"f": e("R2")}, {"f": "B"}, NOW).actions == [Copy("f", to="local", digest="R2")]


def test_deleted_on_both_sides_is_forgotten() -> None:
    p = plan({}, {}, {"gone": "B"}, NOW)
    assert p.actions == [] and p.agreed == {}


@pytest.mark.parametrize("path,expected", [
    ("src/train.py", f"src/train.conflict-{STAMP}.py"),
    ("Makefile", f"Makefile.conflict-{STAMP}"),
    (".env", f".env.conflict-{STAMP}"),
    ("data/x.tar.gz", f"data/x.tar.conflict-{STAMP}.gz"),
    ("notes.ipynb", f"notes.conflict-{STAMP}.ipynb"),
])
def test_conflict_names_keep_the_extension(path: str, expected: str) -> None:
    assert conflict_name(path, NOW, set()) == expected


def test_conflict_names_never_overwrite_an_existing_file() -> None:
    taken = {f"a.conflict-{STAMP}.py", f"a.conflict-{STAMP}-2.py"}
    assert conflict_name("a.py", NOW, taken) == f"a.conflict-{STAMP}-3.py"
    p = plan({"a.py": e("L"), f"a.conflict-{STAMP}.py": e("K")}, {"a.py": e("R"), f"a.conflict-{STAMP}.py": e("K")},
             {}, NOW)
    assert Conflict("a.py", winner="local", keep_as=f"a.conflict-{STAMP}-2.py") in p.actions


# ---- a model check: apply plans to in-memory sides with random edits; nothing is ever lost ------------------

def apply(p: Plan, local: dict[str, Entry], remote: dict[str, Entry], base: dict[str, str]) -> dict[str, str]:
    """Carry a plan out on dicts, as the Syncer does on real sides; returns the new base."""
    sides = {"local": local, "remote": remote}
    new = dict(p.agreed)
    for a in p.actions:
        if isinstance(a, Copy):
            src = sides["remote" if a.to == "local" else "local"]
            sides[a.to][a.path] = src[a.path]
            new[a.path] = a.digest
        elif isinstance(a, Delete):
            del sides[a.on][a.path]
        else:
            loser = "remote" if a.winner == "local" else "local"
            kept = sides[loser][a.path]
            sides[loser][a.path] = sides[a.winner][a.path]
            local[a.keep_as] = remote[a.keep_as] = kept
            new[a.path], new[a.keep_as] = sides[a.winner][a.path].digest, kept.digest
    return new


def edit(rng: random.Random, side: dict[str, Entry], clock: list[float], counter: list[int]) -> None:
    names = ["a.py", "b.txt", "src/c.py", "nb.ipynb"]
    what, path = rng.choice(["write", "write", "delete"]), rng.choice(names)
    clock[0] += 1
    if what == "write":
        counter[0] += 1
        side[path] = Entry(digest=f"v{counter[0]}", mtime=clock[0], size=counter[0])
    else:
        side.pop(path, None)


@pytest.mark.parametrize("seed", range(60))
def test_random_edits_converge_and_lose_no_unsynced_change(seed: int) -> None:
    """Only a version both sides had agreed on may disappear (overwritten by a newer edit, or deleted)."""
    rng = random.Random(seed)
    local: dict[str, Entry] = {}
    remote: dict[str, Entry] = {}
    base: dict[str, str] = {}
    clock, counter = [0.0], [0]
    for _ in range(12):
        for _ in range(rng.randint(0, 3)):
            edit(rng, rng.choice([local, remote]), clock, counter)
        # Content not yet synced (differs from what both sides last agreed on) is what a person would lose.
        unsynced = {x.digest for side in (local, remote) for p, x in side.items() if base.get(p) != x.digest}
        base = apply(plan(local, remote, base, NOW), local, remote, base)
        assert {p: x.digest for p, x in local.items()} == {p: x.digest for p, x in remote.items()}, "converged"
        assert unsynced <= {x.digest for x in local.values()}, "every unsynced change survives somewhere"
        again = plan(local, remote, base, NOW)
        assert again.actions == [], "a second round right after finds nothing to do"
