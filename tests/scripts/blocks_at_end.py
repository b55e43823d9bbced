"""Test job: a plain script (no gpuviz in it) trains 3 steps, then blocks where a rank ends.
``teardown``: the destruction of its process group, which the worker does once the script
is over, blocks (as a communicator's that waits for a peer gone away would). ``exit``: its
interpreter blocks while exiting (an object freed as the modules are torn down sleeps in
its destructor, as a native object's destructor can)."""

import sys
import time

import torch
import torch.distributed as dist


class BlocksAtExit:
    def __del__(self, sleep=time.sleep):   # bound now: the module's globals are gone by then
        sleep(600)


def destroy_blocks(*args, **kwargs):
    time.sleep(600)


model = torch.nn.Linear(4, 1)
opt = torch.optim.SGD(model.parameters(), lr=0.1)
for _ in range(3):   # each optimizer step ends a step of the automatic timeline
    model(torch.ones(2, 4)).sum().backward()
    dist.all_reduce(model.weight.grad)
    opt.step()
    opt.zero_grad()
if sys.argv[1] == "teardown":   # a step of torch's destroy_process_group, which the worker calls
    dist.distributed_c10d._unregister_all_process_groups = destroy_blocks
else:
    sys.blocks_at_exit = BlocksAtExit()   # freed only when the interpreter tears sys down
