"""The sliced waits of saliency_helpers.course.kernels: a message that the socket holds but whose
wake-up was missed is still received within one slice, a real timeout still raises Empty,
and the runner's kernels really use these channels."""

from __future__ import annotations

import asyncio
import time
from queue import Empty

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from saliency_helpers.course import kernels


class MissedWakeUpSocket:
    """Holds a message from the start, but a poll longer than zero never wakes (the missed
    edge): only a poll's look at the socket before it sleeps, modelled by ``ready_after``,
    finds it."""

    def __init__(self, ready_after: float | None):
        self.start = time.monotonic()
        self.ready_after = ready_after
        self.polls: list[int] = []

    async def poll(self, timeout_ms: int) -> int:
        self.polls.append(timeout_ms)
        ready = self.ready_after is not None and time.monotonic() - self.start >= self.ready_after
        if ready:
            return 1
        await asyncio.sleep(timeout_ms / 1000)
        return 0


def _channel(socket) -> kernels.SlicedPollChannel:
    channel = kernels.SlicedPollChannel.__new__(kernels.SlicedPollChannel)
    channel.socket = socket

    async def recv():
        return {"msg_type": "execute_reply"}

    channel._recv = recv
    return channel


def test_a_missed_wake_up_costs_at_most_one_slice():
    socket = MissedWakeUpSocket(ready_after=0.6)
    start = time.monotonic()
    msg = asyncio.run(_channel(socket).get_msg(timeout=1800))  # nbclient's wait for a reply
    assert msg["msg_type"] == "execute_reply"
    assert time.monotonic() - start < 0.6 + kernels.POLL_SLICE + 0.5  # not 1800 s
    assert max(socket.polls) <= 1000 * kernels.POLL_SLICE


def test_waiting_forever_also_polls_in_slices():
    socket = MissedWakeUpSocket(ready_after=0.3)
    asyncio.run(_channel(socket).get_msg(timeout=None))  # nbclient's wait for outputs
    assert socket.polls and max(socket.polls) <= 1000 * kernels.POLL_SLICE


def test_a_real_timeout_still_raises_empty_on_time():
    socket = MissedWakeUpSocket(ready_after=None)
    start = time.monotonic()
    with pytest.raises(Empty):
        asyncio.run(_channel(socket).get_msg(timeout=1.2))
    assert 1.2 <= time.monotonic() - start < 2.0
    assert socket.polls[-1] <= 1000 * kernels.POLL_SLICE


def test_notebook_client_runs_a_widget_cell_with_sliced_channels():
    nb = new_notebook()
    nb.cells = [new_code_cell("import ipywidgets as w\nw.IntSlider(3)")]
    client = kernels.notebook_client(nb, timeout=60, kernel_name="python3")
    with client.setup_kernel():
        assert isinstance(client.km, kernels.SlicedPollKernelManager)
        assert isinstance(client.kc.shell_channel, kernels.SlicedPollChannel)
        assert isinstance(client.kc.iopub_channel, kernels.SlicedPollChannel)
        client.execute_cell(nb.cells[0], 0)
    data = nb.cells[0].outputs[0]["data"]
    assert "application/vnd.jupyter.widget-view+json" in data
    nbformat.validate(nb)


@pytest.mark.parametrize("mode", ["graceful", None])
def test_the_kernel_is_stopped_at_once_after_the_last_cell(tmp_path, mode):
    """A headless run does not wait for the kernel's own teardown (2-3 s once torch is
    loaded): the kernel is stopped, so its exit handlers never run. nbclient's "graceful"
    shutdown is the control: there they do."""
    marker = tmp_path / "exit-handler-ran"
    nb = new_notebook()
    nb.cells = [new_code_cell(f"import atexit, pathlib\n"
                              f"atexit.register(pathlib.Path({str(marker)!r}).touch)")]
    options = {} if mode is None else {"shutdown_kernel": mode}
    kernels.notebook_client(nb, timeout=60, kernel_name="python3", **options).execute()
    deadline = time.monotonic() + 5
    while mode == "graceful" and not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert marker.exists() == (mode == "graceful")


def test_the_grader_stops_kernels_at_once_too():
    from traitlets.config import Config

    from saliency_helpers.course.assignments import configure

    assert configure(Config()).Execute.shutdown_kernel == kernels.SHUTDOWN == "immediate"
