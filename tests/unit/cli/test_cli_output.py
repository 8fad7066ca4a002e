"""What `sub get`, `sub get -w` and `sub describe` print, from plain objects."""

from __future__ import annotations

import json
from typing import Any

import yaml

from substratus.cli import output
from substratus.cli.watch_cmd import TablePrinter, serialiser


def obj(kind: str = "Model", name: str = "tuned", reason: str = "Training", ready: bool = False,
        progress: dict[str, Any] | None = None, lineage: dict[str, Any] | None = None,
        namespace: str = "default") -> dict[str, Any]:
    status: dict[str, Any] = {"ready": ready, "conditions": [{"type": "Ready", "status": "True" if ready else "False",
                                                              "reason": reason, "message": "",
                                                              "lastTransitionTime": "2026-11-27T10:00:00Z"}]}
    if progress is not None:
        status["progress"] = progress
    if lineage is not None:
        status["lineage"] = lineage
    return {"kind": kind, "metadata": {"name": name, "namespace": namespace, "resourceVersion": "7"},
            "spec": {}, "status": status}


TRAINING = {"phase": "train", "step": 42, "totalSteps": 100, "percent": 42.0, "epoch": 1.5, "loss": 2.3456,
            "etaSeconds": 150.0, "updatedAt": 1795766400.0, "metrics": {"lr": 0.0003}}
LINEAGE = {"baseModel": {"name": "base", "image": "localhost/substratus/model-default-base:abc", "imageId": "f00d",
                         "source": {"description": "git https://x/r@1234567 models/base", "revision": "r"}},
           "dataset": {"name": "ds", "url": "file:///data/ds.jsonl", "digest": "sha256:beef"},
           "params": {"epochs": 2, "batchSize": 4}, "trainedImage": "localhost/substratus/model-default-tuned:t"}


def test_get_shows_a_progress_column_with_the_percent_where_there_is_progress() -> None:
    lines = output.table([obj(progress=TRAINING), obj("Dataset", "ds", "Loaded", True)]).splitlines()
    assert lines[0].split() == ["KIND", "NAME", "READY", "REASON", "PROGRESS", "URL", "/", "IMAGE", "SINCE"]
    ds, model = lines[1].split(), lines[2].split()
    assert ds[:5] == ["Dataset", "ds", "yes", "Loaded", "-"]
    assert model[:5] == ["Model", "tuned", "no", "Training", "42%"]


def test_percent_shows_one_decimal_only_below_ten() -> None:
    assert output.percent(obj(progress={"phase": "train", "percent": 3.25})) == "3.2%"
    assert output.percent(obj(progress={"phase": "train", "percent": 99.5})) == "100%"
    assert output.percent(obj(progress={"phase": "train", "step": 3})) == "-"


def describe(o: dict[str, Any]) -> str:
    return output.describe({**o, "generation": 1, "containers": [], "logFiles": []})


def test_describe_shows_the_last_progress_values() -> None:
    text = describe(obj(progress=TRAINING))
    block = text[text.index("Progress:"):text.index("Containers:")]
    assert "Progress:    train" in block
    assert "Step:      42/100 (42.0%)" in block and "Epoch:     1.5" in block and "Loss:      2.3456" in block
    assert "ETA:       2m30s" in block and "Updated:   2026-11-27T" in block and "lr:        0.0003" in block


def test_describe_shows_a_trained_models_lineage() -> None:
    text = describe(obj(ready=True, reason="Trained", lineage=LINEAGE))
    block = text[text.index("Lineage:"):text.index("Containers:")]
    assert "Base model:  base  localhost/substratus/model-default-base:abc" in block
    assert "image id: f00d" in block and "source: git https://x/r@1234567 models/base" in block
    assert "Dataset:     ds  file:///data/ds.jsonl" in block and "digest: sha256:beef" in block
    assert "Params:      epochs=2, batchSize=4" in block
    assert "Trained:     localhost/substratus/model-default-tuned:t" in block


def test_describe_without_progress_or_lineage_has_neither_section() -> None:
    text = describe(obj("Notebook", "nb", "Running", True))
    assert "Progress:" not in text and "Lineage:" not in text


def test_watch_table_sizes_the_first_list_then_prints_rows_as_they_come() -> None:
    out: list[str] = []
    t = TablePrinter(echo=out.append)
    t.add("ADDED", obj(name="a-rather-long-model-name", reason="Ready", ready=True))
    assert out == [], "the initial list waits for the BOOKMARK that ends it"
    t.synced()
    t.add("MODIFIED", obj(name="b", reason="Training", progress=TRAINING))
    t.add("DELETED", obj(name="b"))
    assert out[0].startswith("KIND") and "PROGRESS" in out[0]
    assert out[1].split()[:4] == ["Model", "a-rather-long-model-name", "yes", "Ready"]
    assert out[2].split()[:5] == ["Model", "b", "no", "Training", "42%"]
    assert out[3].split()[3] == "Deleted"
    assert out[2].index("Training") == out[0].index("REASON"), "later rows keep the header's columns"


def test_watch_json_is_one_object_a_line_and_yaml_documents() -> None:
    o = obj()
    line = serialiser("json", False)("MODIFIED", o)
    assert "\n" not in line and json.loads(line) == o
    assert json.loads(serialiser("json", True)("DELETED", o)) == {"type": "DELETED", "object": o}
    doc = serialiser("yaml", False)("ADDED", o)
    assert doc.startswith("---\n") and yaml.safe_load(doc) == o


class FakeClient:
    """Streams prepared watch streams; each call records the resourceVersion it resumed from."""

    def __init__(self, streams: list[list[Any]], alive: int) -> None:
        self.streams, self.alive, self.resumed_from = streams, alive, []  # type: list[Any]

    def watch_selected(self, kind: Any, ns: Any, selector: str, since: Any) -> Any:
        self.resumed_from.append(since)
        for item in self.streams.pop(0):
            if isinstance(item, Exception):
                raise item
            yield item

    def running(self) -> bool:
        self.alive -= 1
        return self.alive >= 0


def test_watch_resumes_after_a_broken_stream_lists_again_after_410_and_ends_when_the_control_plane_stops(
        capsys: Any) -> None:
    from substratus.cli.watch_cmd import watch_objects
    from substratus.errors import ControlPlaneError

    a = {**obj(name="a"), "metadata": {"name": "a", "namespace": "default", "resourceVersion": "5"}}
    streams = [[{"type": "ADDED", "object": a}, {"type": "BOOKMARK", "resourceVersion": "5"},
                ConnectionResetError("peer went away")],
               [{"type": "ERROR", "status": 410}],
               [{"type": "ADDED", "object": a}, {"type": "BOOKMARK", "resourceVersion": "9"}]]
    c = FakeClient(streams, alive=2)
    try:
        watch_objects(c, None, None, None, "", "json")  # type: ignore[arg-type]
        raise AssertionError("the watch should end when the control plane stops")
    except ControlPlaneError as e:
        assert "stopped" in e.message
    assert c.resumed_from == [None, "5", None], "resume after a break, list again after a 410"
    assert [json.loads(line)["metadata"]["name"] for line in capsys.readouterr().out.splitlines()] == ["a", "a"]


def test_timestamps_read_without_strptime_mean_what_strptime_made_of_them() -> None:
    from datetime import datetime, timezone

    def strptime(ts: str) -> datetime | None:
        try:
            return datetime.strptime(ts, output.STAMP).replace(tzinfo=timezone.utc)
        except ValueError:
            return None

    odd = ["", "-", "2026-11-27T14:13:53Z", "2026-11-27t14:13:53z", "2026-1-27T14:13:53Z", "2024-02-29T00:00:00Z",
           "2023-02-29T00:00:00Z", "2026-11-27T14:13:60Z", "2026-13-27T14:13:53Z", "0000-01-01T00:00:00Z",
           "2026-11-27T24:00:00Z", "2026-11-27 14:13:53Z", "2026-11-27T14:13:53Z ", "\uff12026-11-27T14:13:53Z",
           "2026-11-27T14:13:5\u00b2Z", "+026-11-27T14:13:53Z", "2026-11-27T14:13:53+00:00"]
    for ts in odd:
        assert output.parse_stamp(ts) == strptime(ts), ts
    assert output.age("2026-11-27 14:13:53") == "-"
