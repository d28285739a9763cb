"""Helpers the end-to-end tests share for calls expected to fail."""

from __future__ import annotations

from collections.abc import Callable

import grpc
import pytest


def error_of(call: Callable[[], object]) -> grpc.Call:
    """The error ``call`` raises (it must raise one), as the grpc.Call it always is."""
    with pytest.raises(grpc.RpcError) as info:
        call()
    assert isinstance(info.value, grpc.Call)
    return info.value
