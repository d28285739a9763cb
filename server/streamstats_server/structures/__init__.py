"""In-memory data structures for exact streaming statistics.

Pure Python with no knowledge of gRPC, protobuf, asyncio or clocks: time is always an int of
nanoseconds passed in by the caller.  Values are stored as raw doubles in ``array('d')`` chunks
(8 bytes each) rather than as float objects (32 bytes each with their list slot).
"""

from streamstats_server.structures.median_heaps import MedianHeaps
from streamstats_server.structures.sorted_floats import SortedFloats
from streamstats_server.structures.window import SlidingWindow, WindowState

__all__ = ["MedianHeaps", "SlidingWindow", "SortedFloats", "WindowState"]
