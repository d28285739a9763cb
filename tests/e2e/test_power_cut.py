"""A simulated power cut under concurrent ingest: what each --fsync policy promises, it keeps.

The server runs in-process over ForgetfulFileSystem, which forgets every byte not made durable by
fsync. Clients record when each write was acknowledged; after the cut, recovery from the real folder
must hold every acknowledged write (always), or every write acknowledged more than about a second
before the cut (interval).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest

from streamstats.v1 import streamstats_pb2 as pb
from streamstats.v1 import streamstats_pb2_grpc as pb_grpc
from streamstats_server.config import ServerConfig
from streamstats_server.storage import DurableStorage, FsyncPolicy, StorageConfig
from tests.conftest import ThreadedServer
from tests.e2e.forgetful_fs import ForgetfulFileSystem

WRITERS = 4
STREAMS = ("p0", "p1")
INTERVAL_SLACK = 1.0  # beyond the 1 s interval: the fsync itself and a busy 2-core machine


@dataclass
class Ledger:
    """What the clients sent and when each batch was acknowledged."""

    sent: set[float] = field(default_factory=set)
    acked_at: dict[float, float] = field(default_factory=dict)  # value -> monotonic ack time
    lock: threading.Lock = field(default_factory=threading.Lock)


def ingest(address: str, writer: int, stop: threading.Event, ledger: Ledger) -> None:
    rng = random.Random(writer)
    counter = itertools.count()
    with grpc.insecure_channel(address) as channel:
        stub = pb_grpc.StreamStatsStub(channel)
        while not stop.is_set():
            values = [writer * 1e9 + next(counter) for _ in range(rng.randint(1, 40))]
            with ledger.lock:
                ledger.sent.update(values)
            try:
                stub.AddNums(pb.AddNumsRequest(stream=rng.choice(STREAMS), values=values), timeout=5)
            except grpc.RpcError:
                if stop.is_set():
                    return
                continue  # the power is off: not acknowledged
            acked = time.monotonic()
            with ledger.lock:
                for value in values:
                    ledger.acked_at[value] = acked


def crash_under_load(
    data_dir: Path, policy: FsyncPolicy, seconds: float, checkpoint_bytes: int
) -> tuple[Ledger, float]:
    fs = ForgetfulFileSystem()
    config = ServerConfig(
        port=0, data_dir=str(data_dir), fsync=policy, checkpoint_bytes=checkpoint_bytes, grace_seconds=0
    )
    server = ThreadedServer(config, fs=fs)
    address = server.start()
    ledger, stop = Ledger(), threading.Event()
    writers = [threading.Thread(target=ingest, args=(address, i, stop, ledger)) for i in range(WRITERS)]
    for thread in writers:
        thread.start()
    try:
        time.sleep(seconds)
        fs.cut()
        cut_at = time.monotonic()
    finally:
        stop.set()
        for thread in writers:
            thread.join(timeout=30)
        with contextlib.suppress(Exception):  # the machine is off: closing the log fails, as it would
            server.stop()
    assert fs.syncs > 0 or policy is FsyncPolicy.NEVER
    return ledger, cut_at


def recovered_values(data_dir: Path) -> list[float]:
    storage = DurableStorage(StorageConfig(data_dir=str(data_dir)))
    try:
        streams, _ = storage.recover()
    finally:
        asyncio.run(storage.close())
    values: list[float] = []
    for stream in streams:
        stream.window._check()
        values += [value for value, _ in stream.window.items()]
    return values


@pytest.mark.parametrize("policy", [FsyncPolicy.ALWAYS, FsyncPolicy.INTERVAL])
def test_acknowledged_writes_survive_a_power_cut(tmp_path: Path, policy: FsyncPolicy) -> None:
    # A small checkpoint threshold: checkpoints, renames and segment removals are in flight at the cut.
    ledger, cut_at = crash_under_load(tmp_path, policy, seconds=2.5, checkpoint_bytes=64 * 1024)
    values = recovered_values(tmp_path)
    counts = Counter(values)
    assert [v for v, n in counts.items() if n > 1] == [], "a value came back twice"
    assert set(values) <= ledger.sent, "a value came back that was never sent"
    assert len(ledger.acked_at) > 1000, "too little was acknowledged to mean anything"
    if policy is FsyncPolicy.ALWAYS:
        must_survive = set(ledger.acked_at)
    else:
        must_survive = {v for v, t in ledger.acked_at.items() if t < cut_at - 1.0 - INTERVAL_SLACK}
    lost = must_survive - set(values)
    assert not lost, f"{len(lost)} acknowledged values lost under --fsync {policy}"


def test_the_file_layer_really_forgets_what_was_never_fsynced(tmp_path: Path) -> None:
    """Under --fsync never nothing is fsynced (no checkpoint runs), so the cut loses acknowledged writes:
    the test above would catch a policy that skipped its fsync."""
    ledger, _ = crash_under_load(tmp_path, FsyncPolicy.NEVER, seconds=1.0, checkpoint_bytes=1 << 30)
    assert ledger.acked_at
    lost = set(ledger.acked_at) - set(recovered_values(tmp_path))
    assert lost
