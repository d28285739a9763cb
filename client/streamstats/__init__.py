"""Python SDK for streamstats: exact streaming median, top-k and bottom-k over named streams.

>>> import streamstats
>>> with streamstats.Client("127.0.0.1:50051") as client:  # doctest: +SKIP
...     client.add_many("latency", [12.5, 7.0, 31.2])
...     client.median("latency")
12.5

:class:`Client` blocks; :class:`AsyncClient` is its asyncio twin. Both return plain Python values
(:class:`Stream`, :class:`AddResult`, floats and lists) and raise only :class:`StreamStatsError`
subclasses. The generated gRPC code lives in ``streamstats.v1`` for those who need it.
"""

from streamstats._async_client import AsyncClient, AsyncWatch
from streamstats._client import Client, Watch
from streamstats._config import ClientConfig, TLSConfig
from streamstats._errors import (
    AlreadyExists,
    Cancelled,
    ClientClosed,
    DeadlineExceeded,
    InvalidArgument,
    PermissionDenied,
    ResourceExhausted,
    ServerError,
    StreamNotFound,
    StreamStatsError,
    Unauthenticated,
    Unavailable,
)
from streamstats._types import AddResult, Stats, Stream, StreamConfig, WatchUpdate

__all__ = [
    "AddResult",
    "AlreadyExists",
    "AsyncClient",
    "AsyncWatch",
    "Cancelled",
    "Client",
    "ClientClosed",
    "ClientConfig",
    "DeadlineExceeded",
    "InvalidArgument",
    "PermissionDenied",
    "ResourceExhausted",
    "ServerError",
    "Stats",
    "Stream",
    "StreamConfig",
    "StreamNotFound",
    "StreamStatsError",
    "TLSConfig",
    "Unauthenticated",
    "Unavailable",
    "Watch",
    "WatchUpdate",
]

# Exceptions report the package, not the private module, so tracebacks read
# ``streamstats.StreamNotFound: ...``. Only exceptions: for the dataclasses, typing.get_type_hints
# resolves annotations in the module named by __module__, which must stay the defining one.
for _name in __all__:
    _obj = globals()[_name]
    if issubclass(_obj, StreamStatsError):
        _obj.__module__ = __name__
del _name, _obj
