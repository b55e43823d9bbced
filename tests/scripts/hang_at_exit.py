"""Test job: a plain script (no gpuviz in it) trains 3 steps, then its interpreter blocks
while exiting (an object freed as the modules are torn down sleeps in its destructor, as
a native object's destructor that waits for a peer gone away would)."""

import sys
import time

import torch


class BlocksAtExit:
    def __del__(self, sleep=time.sleep):   # bound now: the module's globals are gone by then
        sleep(600)


model = torch.nn.Linear(4, 1)
opt = torch.optim.SGD(model.parameters(), lr=0.1)
for _ in range(3):   # each optimizer step ends a step of the automatic timeline
    model(torch.ones(2, 4)).sum().backward()
    opt.step()
    opt.zero_grad()
sys.blocks_at_exit = BlocksAtExit()   # freed only when the interpreter tears sys down
