"""Test job: every rank does its steps, then its interpreter blocks while exiting (an
object freed as the modules are torn down sleeps in its destructor, as a native object's
destructor that waits for a peer gone away would)."""

import sys
import time

import torch

from gpuviz.run import trace


class BlocksAtExit:
    def __del__(self, sleep=time.sleep):   # bound now: the module's globals are gone by then
        sleep(600)


x = torch.ones(10)
for _ in range(3):
    with trace.span("compute"):
        time.sleep(0.02)
    trace.all_reduce(x)
    trace.step()
sys.blocks_at_exit = BlocksAtExit()   # freed only when the interpreter tears sys down
