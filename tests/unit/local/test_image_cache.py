"""The image cache: what a pass knows of images without asking the engine again.

An absent image is remembered until something may have made it. Our own builds say which
image they made, and their own events (which may come first) no longer make every pass ask
again about every absent image."""

from __future__ import annotations

from typing import Optional

from substratus.local.observe import ImageCache
from substratus.runtimes.base import ImageInfo
from substratus.runtimes.fake import FakeRuntime

OURS = "localhost/substratus/model-default-m:"
ID = "a" * 64


class Counting(FakeRuntime):
    def __init__(self) -> None:
        super().__init__()
        self.asked: list[str] = []

    def image_info(self, ref: str) -> Optional[ImageInfo]:
        self.asked.append(ref)
        return super().image_info(ref)


def cache_knowing_an_absent_image() -> tuple[ImageCache, Counting]:
    rt = Counting()
    cache = ImageCache(rt)
    assert cache.lookup([OURS + "trained-1"]) == {}
    rt.asked.clear()
    return cache, rt


def test_our_builds_own_event_before_its_result_keeps_what_is_known() -> None:
    cache, rt = cache_knowing_an_absent_image()
    with cache.building():
        assert cache.on_event("build", ID) is False  # the engine's event came first
        cache.added(OURS + "1", ID)
    assert cache.lookup([OURS + "trained-1", OURS + "1"]) == {OURS + "1": ID}
    assert rt.asked == [], "nothing asked again"
    assert cache.on_event("build", ID) is False and cache.lookup([OURS + "trained-1"]) == {} and rt.asked == []


def test_someone_elses_build_meanwhile_makes_absent_images_worth_asking_about_again() -> None:
    cache, rt = cache_knowing_an_absent_image()
    with cache.building():
        cache.on_event("build", "b" * 64)  # not ours: another control plane, a person
        cache.on_event("build", ID)
        cache.added(OURS + "1", ID)
    cache.lookup([OURS + "trained-1"])
    assert rt.asked == [OURS + "trained-1"]


def test_an_image_event_when_we_build_nothing_forgets_absent_images_at_once() -> None:
    cache, rt = cache_knowing_an_absent_image()
    cache.on_event("tag", "localhost/other:1")
    cache.lookup([OURS + "trained-1"])
    assert rt.asked == [OURS + "trained-1"]


def test_a_failed_build_lets_held_events_count() -> None:
    cache, rt = cache_knowing_an_absent_image()
    try:
        with cache.building():
            cache.on_event("build", "c" * 64)
            raise RuntimeError("the build broke")
    except RuntimeError:
        pass
    cache.lookup([OURS + "trained-1"])
    assert rt.asked == [OURS + "trained-1"]
