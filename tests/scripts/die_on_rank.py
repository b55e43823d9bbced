"""Test job: rank R dies at step S without a Python exception: ``os._exit(CODE)``, or a
signal (``kill`` as CODE: SIGKILL, as the OOM killer sends)."""

import os
import signal
import sys
import time

import torch

from gpuviz.run import trace

bad_rank, bad_step, how = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
x = torch.ones(10)
for step in range(6):
    if int(os.environ["RANK"]) == bad_rank and step == bad_step:
        if how == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        os._exit(int(how))
    with trace.span("compute"):
        time.sleep(0.05)
    trace.all_reduce(x)
    trace.step()
