"""Kernels for running notebooks headlessly: the course runner and the grader use these.

nbclient waits for a cell's reply with one long poll on pyzmq's asyncio sockets (as long as
the cell's time limit). pyzmq wakes such a poll through an edge-triggered file descriptor,
and a missed wake-up leaves the reply sitting in the socket until the poll times out. Seen
here on cells that create ipywidgets: the kernel had answered, the runner waited the full
30-minute cell limit (jupyter/nbclient#312; pyzmq#1558 describes the same "event only after
the timeout"). The channels below wait in short slices instead. Every new poll looks at the
socket before it sleeps, so a missed wake-up costs at most one slice, and a timeout is still
a timeout.

Example:
    >>> client = notebook_client(nbformat.read("notebooks/00_setup.ipynb", 4), timeout=600)
    >>> client.execute()  # as nbclient.NotebookClient, with the sliced waits
"""

from __future__ import annotations

import time
from queue import Empty
from typing import Any

from jupyter_client.asynchronous import AsyncKernelClient
from jupyter_client.channels import AsyncZMQSocketChannel
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient
from nbformat import NotebookNode
from traitlets import DottedObjectName, Type

from .common import SHUTDOWN

POLL_SLICE = 0.5  # seconds: the longest a missed wake-up can delay a message


class SlicedPollChannel(AsyncZMQSocketChannel):
    """A kernel channel whose ``get_msg`` polls in slices of :data:`POLL_SLICE` seconds."""

    async def get_msg(self, timeout: float | None = None) -> dict[str, Any]:  # type: ignore[override]
        """The next message; waits up to ``timeout`` seconds (None: forever).

        Raises:
            queue.Empty: Nothing arrived in time (what nbclient expects).
        """
        assert self.socket is not None
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            wait = POLL_SLICE if deadline is None else deadline - time.monotonic()
            if await self.socket.poll(int(1000 * max(0.0, min(POLL_SLICE, wait)))):
                return await self._recv()
            if deadline is not None and time.monotonic() >= deadline:
                raise Empty


class SlicedPollClient(AsyncKernelClient):
    """jupyter_client's asyncio kernel client with :class:`SlicedPollChannel` channels."""

    shell_channel_class = Type(SlicedPollChannel)  # type: ignore[assignment]
    iopub_channel_class = Type(SlicedPollChannel)  # type: ignore[assignment]
    stdin_channel_class = Type(SlicedPollChannel)  # type: ignore[assignment]
    control_channel_class = Type(SlicedPollChannel)  # type: ignore[assignment]


class SlicedPollKernelManager(AsyncKernelManager):
    """An asyncio kernel manager whose clients are :class:`SlicedPollClient`."""

    # Both traits: client() builds from client_factory, whose default does not follow client_class.
    client_class = DottedObjectName("saliency_helpers.course.kernels.SlicedPollClient")
    client_factory = Type(SlicedPollClient)



def notebook_client(nb: NotebookNode, **options: Any) -> NotebookClient:
    """An ``nbclient.NotebookClient`` for ``nb`` whose kernels use the sliced waits.

    Args:
        nb: The notebook to execute (changed in place, as nbclient does).
        **options: Any ``NotebookClient`` option (timeout, kernel_name, allow_errors, ...);
            ``shutdown_kernel`` defaults to :data:`SHUTDOWN`.

    Returns:
        The client; use it exactly as nbclient's.
    """
    options.setdefault("shutdown_kernel", SHUTDOWN)
    return NotebookClient(nb, kernel_manager_class=SlicedPollKernelManager, **options)
