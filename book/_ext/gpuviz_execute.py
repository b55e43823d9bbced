"""Sphinx extension for the gpuviz book: a wake-up missed while a lab runs costs a second at most.

myst-nb runs each lab with nbclient, which waits for the kernel's messages with
jupyter_client's asyncio channels: ``await socket.poll(timeout)``, then read. After a cell
that shows ipywidgets (Lab 05's planner, in 3 of 10 runs when this was written), that wait
sometimes misses the message that has arrived and sleeps out its whole timeout (the cell's 300 s in
this build; no end where none is set) before it reads the message, which was there all
along (jupyter/nbclient#312, jupyter/nbconvert#1921, both open). Here the same wait polls
in slices of :data:`SLICE_S`: a missed wake-up costs at most one slice, and the timeout,
message and ``Empty`` are as before.

>>> import asyncio
>>> class Socket:                      # its first poll misses the message, as the bug does
...     polls = 0
...     async def poll(self, ms):
...         Socket.polls += 1
...         return Socket.polls > 1
>>> class Channel:
...     socket = Socket()
...     async def _recv(self):
...         return {"msg_type": "execute_reply"}
>>> asyncio.run(get_msg(Channel(), timeout=300))
{'msg_type': 'execute_reply'}
"""

from __future__ import annotations

import time
from queue import Empty

#: Longest one poll waits before it looks again, s.
SLICE_S = 1.0


async def get_msg(self, timeout: float | None = None) -> dict:
    """``AsyncZMQSocketChannel.get_msg``, polling at most :data:`SLICE_S` at a time."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        wait = SLICE_S if left is None else min(SLICE_S, left)
        if await self.socket.poll(int(wait * 1000)):
            return await self._recv()
        if left is not None and left <= SLICE_S:
            raise Empty


def setup(app) -> dict:
    from jupyter_client.channels import AsyncZMQSocketChannel

    AsyncZMQSocketChannel.get_msg = get_msg
    return {"parallel_read_safe": True, "parallel_write_safe": True}
