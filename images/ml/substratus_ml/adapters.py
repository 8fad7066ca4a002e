"""The names a server answers to: its base model and the LoRA adapters loaded on it.

Who calls it: the app, which loads every adapter under ``SUBSTRATUS_ADAPTERS_DIR``
at start-up (one sub-directory per adapter, named after it) before the server
says it is ready; the adapter routes (``/v1/load_lora_adapter``,
``/v1/unload_lora_adapter``); and the generation routes, which turn a
request's ``model`` into the adapter to use (:meth:`AdapterRegistry.resolve`).

A load reads and checks the files off the event loop
(:func:`~substratus_ml.peft_adapter.read_adapter`), has the engine install the
weights between two decode steps, and only then publishes the name, so a
request can never name an adapter whose weights are not in place. An unload
unpublishes the name first (new requests get 404) and then retires the
adapter in the engine, which frees its slot once the requests already
admitted with it are done.
"""

from __future__ import annotations

import asyncio
import re
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from substratus_ml.adapter_errors import (AdapterAlreadyLoaded, AdapterError, AdapterNameInvalid,
                                          AdapterNotLoaded, TooManyAdapters, UnknownModel)
from substratus_ml.engine import BatchEngine
from substratus_ml.lora_bank import Adapter
from substratus_ml.peft_adapter import LoraWeights, read_adapter

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@+/-]{0,127}$")


@dataclass(frozen=True)
class AdapterLimits:
    directory: Path  # SUBSTRATUS_ADAPTERS_DIR: start-up adapters, and where relative paths point
    max_adapters: int
    max_rank: int


class AdapterRegistry:
    def __init__(self, base_name: str, engine: BatchEngine, model: nn.Module,
                 limits: AdapterLimits) -> None:
        self.base_name, self.engine, self.model, self.limits = base_name, engine, model, limits
        self._lock = threading.Lock()
        self._adapters: dict[str, Adapter] = {}
        self._pending: set[str] = set()  # names being loaded

    def adapters(self) -> list[Adapter]:
        with self._lock:
            return list(self._adapters.values())

    def names(self) -> list[str]:
        return [self.base_name] + [a.name for a in self.adapters()]

    def resolve(self, model: str | None) -> Adapter | None:
        """The adapter a request's ``model`` names; None for the base (or no name, or "", as vLLM)."""
        if not model or model == self.base_name:
            return None
        with self._lock:
            adapter = self._adapters.get(model)
        if adapter is None:
            raise UnknownModel(f"the model {model!r} does not exist on this server; it serves "
                               f"{', '.join(repr(n) for n in self.names())} (GET /v1/models)")
        return adapter

    # -- loading -----------------------------------------------------------------------

    def path_of(self, lora_path: str) -> Path:
        """``lora_path`` as given, or under the adapters directory when it is relative."""
        path = Path(lora_path)
        return path if path.is_absolute() else self.limits.directory / path

    async def load(self, name: str, lora_path: str) -> Adapter:
        """Read, install and publish an adapter; raises an ``AdapterError`` case.

        Shielded: a caller that goes away mid-way must not leave weights installed
        under a name nobody published."""
        return await asyncio.shield(self._load(name, lora_path))

    async def _load(self, name: str, lora_path: str) -> Adapter:
        started = time.perf_counter()
        self._reserve(name)
        try:
            path = self.path_of(lora_path)
            weights = await asyncio.to_thread(self._read, name, path)
            adapter = _adapter_of(weights)
            await asyncio.wrap_future(self.engine.add_adapter(adapter, weights))
            return self._publish(adapter, started)
        finally:
            self._release(name)

    def load_blocking(self, name: str, path: Path) -> Adapter:
        """:meth:`load` for a thread without an event loop (start-up)."""
        started = time.perf_counter()
        self._reserve(name)
        try:
            weights = self._read(name, path)
            adapter = _adapter_of(weights)
            self.engine.add_adapter(adapter, weights).result()
            return self._publish(adapter, started)
        finally:
            self._release(name)

    def load_directory(self) -> list[Adapter]:
        """Every adapter under the adapters directory (a line on stderr for each one refused)."""
        directory = self.limits.directory
        if not directory.is_dir():
            return []
        loaded = []
        for path in sorted(p for p in directory.iterdir() if p.is_dir() and not p.name.startswith(".")):
            try:
                adapter = self.load_blocking(path.name, path)
            except AdapterError as exc:
                print(f"adapter {path.name!r} not loaded: {exc}", file=sys.stderr, flush=True)
                continue
            loaded.append(adapter)
            print(f"adapter {adapter.name!r} loaded from {path} (rank {adapter.rank}, "
                  f"{adapter.modules} modules, {adapter.load_seconds:.2f} s)", flush=True)
        return loaded

    def _read(self, name: str, path: Path) -> LoraWeights:
        return read_adapter(name, path, self.model, self.limits.max_rank)

    def _reserve(self, name: str) -> None:
        if not NAME.match(name):
            raise AdapterNameInvalid(f"lora_name {name!r}: use 1-128 letters, digits and . _ - : @ + / "
                                     "(starting with a letter or digit)")
        with self._lock:
            if name == self.base_name or name in self._adapters or name in self._pending:
                what = "the base model's name" if name == self.base_name else "already loaded"
                raise AdapterAlreadyLoaded(f"the name {name!r} is {what}; unload it first "
                                           "(POST /v1/unload_lora_adapter) or choose another")
            if len(self._adapters) + len(self._pending) >= self.limits.max_adapters:
                raise TooManyAdapters(f"{self.limits.max_adapters} adapters are loaded "
                                      "(SUBSTRATUS_MAX_ADAPTERS); unload one first")
            self._pending.add(name)

    def _release(self, name: str) -> None:
        with self._lock:
            self._pending.discard(name)

    def _publish(self, adapter: Adapter, started: float) -> Adapter:
        adapter.load_seconds = time.perf_counter() - started
        with self._lock:
            self._adapters[adapter.name] = adapter
        return adapter

    # -- unloading ---------------------------------------------------------------------

    async def unload(self, name: str) -> Adapter:
        """Unpublish ``name`` now; its slot is freed when its running requests are done."""
        with self._lock:
            adapter = self._adapters.pop(name, None)
        if adapter is None:
            what = "is the base model, which cannot be unloaded" if name == self.base_name else (
                "is not loaded")
            raise AdapterNotLoaded(f"the adapter {name!r} {what}; loaded adapters: "
                                   f"{', '.join(repr(a.name) for a in self.adapters()) or 'none'}")
        adapter.unloaded = True
        await asyncio.wrap_future(self.engine.remove_adapter(adapter))
        return adapter


def _adapter_of(weights: LoraWeights) -> Adapter:
    return Adapter(weights.name, str(weights.path), weights.rank, len(weights.modules))
