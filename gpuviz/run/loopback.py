"""Nothing listens beyond loopback in a single-node job.

torch's ``TCPStore`` server (torchrun's rendezvous, the store the ranks share) listens on
every interface (``::``), with no credentials, and gloo listens on the address the host
name resolves to. For a job on one node, gpuviz binds them to loopback instead:

- torchrun runs as ``python -m gpuviz.run.torchrun ...`` (torchrun's own ``main`` after
  :func:`install`), and each worker calls :func:`install` before it makes its process group:
  a store server is then given a socket bound to 127.0.0.1 (``TCPStore``'s
  ``master_listen_fd``);
- ``GLOO_SOCKET_IFNAME`` and ``NCCL_SOCKET_IFNAME`` name the loopback interface, unless the
  user set them.

A job on many nodes (``rdzv_endpoint``) listens where the user said.

>>> sorted(loopback_env())
['GLOO_SOCKET_IFNAME', 'GPUVIZ_LOOPBACK', 'NCCL_SOCKET_IFNAME']
"""

from __future__ import annotations

import os
import socket

import psutil

#: Set in a worker's environment when the stores it makes must listen on loopback only.
ENV = "GPUVIZ_LOOPBACK"
_installed = False
_sockets: list[socket.socket] = []   # kept open for as long as the stores live


def loopback_interface() -> str:
    """The name of the interface that holds 127.0.0.1 ("lo" on Linux, "lo0" on macOS)."""
    for name, addrs in psutil.net_if_addrs().items():
        if any(a.family == socket.AF_INET and a.address.startswith("127.") for a in addrs):
            return name
    return "lo"


def loopback_env() -> dict[str, str]:
    """The environment that keeps a one-node job's listening sockets on loopback."""
    lo = loopback_interface()
    return {ENV: "1", "GLOO_SOCKET_IFNAME": os.environ.get("GLOO_SOCKET_IFNAME", lo),
            "NCCL_SOCKET_IFNAME": os.environ.get("NCCL_SOCKET_IFNAME", lo)}


def _listen_on_loopback(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(socket.SOMAXCONN)
    _sockets.append(sock)
    return sock


def install() -> None:
    """Make every ``TCPStore`` server this process starts listen on 127.0.0.1 only."""
    global _installed
    if _installed:
        return
    import importlib

    import torch.distributed as dist
    from torch.distributed.elastic.rendezvous import c10d_rendezvous_backend

    # (``torch.distributed.rendezvous`` the attribute is a function; the module is this one)
    c10d_rendezvous = importlib.import_module("torch.distributed.rendezvous")

    base = dist.TCPStore

    class LoopbackTCPStore(base):
        """A ``TCPStore`` whose server listens on a socket bound to 127.0.0.1."""

        def __init__(self, host_name, port=0, world_size=None, is_master=False, *args, **kwargs):
            if is_master and kwargs.get("master_listen_fd") is None and len(args) < 4:
                sock = _listen_on_loopback(int(port))
                port, kwargs["master_listen_fd"] = sock.getsockname()[1], sock.fileno()
            super().__init__(host_name, port, world_size, is_master, *args, **kwargs)

    dist.TCPStore = LoopbackTCPStore
    c10d_rendezvous.TCPStore = LoopbackTCPStore
    c10d_rendezvous_backend.TCPStore = LoopbackTCPStore
    _installed = True
