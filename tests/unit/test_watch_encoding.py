"""Watch updates are encoded by hand (to share one serialized Stats): the bytes must be protobuf's."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from streamstats.v1 import streamstats_pb2 as pb
from streamstats_server.service import encode_watch_update

stats = st.builds(
    pb.Stats,
    count=st.integers(0, 2**64 - 1),
    total_added=st.integers(0, 2**64 - 1),
    min=st.floats(allow_nan=False),
    top=st.lists(st.floats(allow_nan=False), max_size=300),
    quantiles=st.lists(
        st.builds(pb.Quantile, q=st.floats(0, 1), value=st.floats(allow_nan=False)), max_size=20
    ),
)


@given(stats=stats, changes=st.integers(0, 2**64 - 1))
def test_encoded_updates_are_what_protobuf_writes_and_reads(stats: pb.Stats, changes: int) -> None:
    encoded = encode_watch_update(stats.SerializeToString(), changes)
    expected = pb.WatchUpdate(stats=stats, changes=changes)
    assert encoded == expected.SerializeToString()
    assert pb.WatchUpdate.FromString(encoded) == expected


def test_an_empty_stats_is_still_present() -> None:
    update = pb.WatchUpdate.FromString(encode_watch_update(b"", 0))
    assert update.HasField("stats") and update.changes == 0
