"""The book's Sphinx extensions (book/_ext), tested without a build: gpuviz_execute (the
labs' runs wait for a kernel's message in slices, so a missed wake-up, jupyter/nbclient#312,
costs a second, not a cell's whole timeout) and gpuviz_guide's times."""

from __future__ import annotations

import asyncio
import doctest
import importlib.util
import time
from queue import Empty

import pytest

from tests.conftest import ROOT


def _extension(name: str = "gpuviz_execute"):
    spec = importlib.util.spec_from_file_location(name, ROOT / "book" / "_ext" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _Channel:
    """A channel whose message is there from the start but whose poll only sees it after
    ``missed`` polls (as the bug does); counts its polls and what each waited."""

    def __init__(self, missed: int | None):
        self.missed, self.waits = missed, []
        self.socket = self

    async def poll(self, ms):
        self.waits.append(ms)
        if self.missed is not None and len(self.waits) > self.missed:
            return 1
        await asyncio.sleep(ms / 1000)
        return 0

    async def _recv(self):
        return {"msg_type": "execute_reply"}


def test_its_example_holds():
    ext = _extension()
    assert doctest.testmod(ext).failed == 0


def test_a_missed_wake_up_costs_one_slice_not_the_timeout(monkeypatch):
    ext = _extension()
    monkeypatch.setattr(ext, "SLICE_S", 0.05)
    channel = _Channel(missed=2)
    t = time.monotonic()
    assert asyncio.run(ext.get_msg(channel, timeout=300))["msg_type"] == "execute_reply"
    assert time.monotonic() - t < 5 and channel.waits == [50, 50, 50]


def test_no_message_by_the_timeout_is_empty_as_before(monkeypatch):
    ext = _extension()
    monkeypatch.setattr(ext, "SLICE_S", 0.05)
    channel = _Channel(missed=None)
    t = time.monotonic()
    with pytest.raises(Empty):
        asyncio.run(ext.get_msg(channel, timeout=0.12))
    assert 0.1 <= time.monotonic() - t < 2 and channel.waits[-1] <= 50
    with pytest.raises(Empty):                       # timeout 0: one look, no wait
        asyncio.run(ext.get_msg(_Channel(missed=None), timeout=0))


def test_the_build_uses_it(monkeypatch):
    from jupyter_client.channels import AsyncZMQSocketChannel

    ext = _extension()
    monkeypatch.setattr(AsyncZMQSocketChannel, "get_msg", AsyncZMQSocketChannel.get_msg)
    ext.setup(None)
    assert AsyncZMQSocketChannel.get_msg is ext.get_msg
    config = (ROOT / "book" / "_config.yml").read_text()
    assert "gpuviz_execute: _ext" in config and "- gpuviz_execute" in config


@pytest.mark.parametrize("seconds, text", [(36.2, "36 s"), (59.6, "1 min 0 s"), (68, "1 min 8 s"),
                                           (119.6, "2 min 0 s"), (422, "7 min 2 s")])
def test_the_guide_writes_times_in_whole_seconds(seconds, text):
    assert _extension("gpuviz_guide")._mmss(seconds) == text
