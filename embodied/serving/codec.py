"""Wire formats of the policy server: msgpack with numpy arrays (openpi's) and JSON with numpy arrays (OpenVLA's).

msgpack: openpi's client packs an array as a map with **bytes** keys ``{b"__ndarray__": True, b"data": raw bytes,
b"dtype": "<f4", b"shape": [..]}`` and a numpy scalar as ``{b"__npgeneric__": True, b"data": value, b"dtype": ..}``;
it decodes replies the same way, so replies must use bytes keys too (with str keys it hands back plain dicts).
Decoding here never falls back to pickle: only boolean, integer, unsigned and float dtypes are accepted, and the
data's length must match the shape, so a malformed message is a :class:`DecodeError` that names what is wrong.

JSON: OpenVLA's deploy script uses ``json_numpy`` (``{"__numpy__": base64, "dtype": .., "shape": ..}``); its clients
call ``json_numpy.patch()`` and post plain JSON, or "double-encode" the payload as ``{"encoded": json string}``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

ALLOWED_KINDS = "biuf"  # bool, int, uint, float: never object, void or structured dtypes
MAX_DIMS = 8


class DecodeError(ValueError):
    """A message that cannot be decoded into observations."""


def _dtype(value: Any) -> np.dtype:
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    if not isinstance(value, str) or len(value) > 8:
        raise DecodeError(f"array dtype must be a short string such as '<f4', got {value!r}")
    try:
        dtype = np.dtype(value)
    except TypeError as error:
        raise DecodeError(f"unknown array dtype {value!r}") from error
    if dtype.kind not in ALLOWED_KINDS or dtype.fields is not None or dtype.subdtype is not None:
        raise DecodeError(f"array dtype {value!r} is not allowed (bool, int, uint and float only)")
    return dtype


def _array(obj: dict) -> np.ndarray:
    data, shape = obj.get(b"data"), obj.get(b"shape")
    dtype = _dtype(obj.get(b"dtype"))
    if not isinstance(data, bytes):
        raise DecodeError(f"array data must be bytes, got {type(data).__name__}")
    if (
        not isinstance(shape, (list, tuple))
        or len(shape) > MAX_DIMS
        or not all(isinstance(n, int) and not isinstance(n, bool) and 0 <= n for n in shape)
    ):
        raise DecodeError(f"array shape must be a list of at most {MAX_DIMS} non-negative ints, got {shape!r}")
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        raise DecodeError(f"array of shape {list(shape)} and dtype {dtype.str} needs {expected} bytes, got {len(data)}")
    return np.frombuffer(data, dtype=dtype).reshape(shape).copy()  # writable: torch refuses read-only buffers


def _object_hook(obj: dict) -> Any:
    if b"__ndarray__" in obj:
        return _array(obj)
    if b"__npgeneric__" in obj:
        dtype = _dtype(obj.get(b"dtype"))
        value = obj.get(b"data")
        if not isinstance(value, (bool, int, float)):
            raise DecodeError(f"numpy scalar data must be a number, got {type(value).__name__}")
        try:
            return dtype.type(value)
        except (OverflowError, ValueError) as error:
            raise DecodeError(f"numpy scalar {value!r} does not fit {dtype.str}") from error
    return obj


def _default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind not in ALLOWED_KINDS:
            raise TypeError(f"cannot send arrays of dtype {obj.dtype}")
        obj = np.ascontiguousarray(obj)
        return {b"__ndarray__": True, b"data": obj.tobytes(), b"dtype": obj.dtype.str, b"shape": list(obj.shape)}
    if isinstance(obj, np.generic):
        return {b"__npgeneric__": True, b"data": obj.item(), b"dtype": obj.dtype.str}
    raise TypeError(f"cannot send {type(obj).__name__}")


def packb(obj: Any) -> bytes:
    """msgpack bytes of ``obj`` with numpy arrays and scalars in openpi's layout (bytes keys)."""
    import msgpack

    return msgpack.packb(obj, default=_default, use_bin_type=True)


def unpackb(data: bytes, max_bytes: int | None = None) -> Any:
    """The object of one msgpack message; :class:`DecodeError` for anything malformed (truncated, extra bytes,
    bad arrays, over ``max_bytes``)."""
    import msgpack

    if max_bytes is not None and len(data) > max_bytes:
        raise DecodeError(f"message of {len(data)} bytes is over the server's limit of {max_bytes}")
    try:
        return msgpack.unpackb(data, object_hook=_object_hook, raw=False, strict_map_key=False)
    except DecodeError:
        raise
    except Exception as error:  # msgpack raises several types (ExtraData, FormatError, ValueError, ...)
        raise DecodeError(f"not a valid msgpack message ({type(error).__name__}: {error})") from None


def json_loads(text: str | bytes) -> tuple[Any, bool]:
    """A json-numpy document (OpenVLA's ``/act`` body) and whether it came double-encoded (``{"encoded": ...}``,
    answered the same way)."""
    import json

    import json_numpy

    encoded = False
    try:
        payload = json.loads(text, object_hook=json_numpy.object_hook)
        if isinstance(payload, dict) and set(payload) == {"encoded"} and isinstance(payload["encoded"], str):
            payload, encoded = json.loads(payload["encoded"], object_hook=json_numpy.object_hook), True
    except Exception as error:  # json and base64 errors, bad dtypes, wrong buffer sizes
        raise DecodeError(f"not a valid json-numpy body ({type(error).__name__}: {error})") from None
    return payload, encoded


def json_dumps(obj: Any) -> str:
    """``obj`` as json-numpy text (what OpenVLA's server returns and its clients decode)."""
    import json_numpy

    return json_numpy.dumps(obj)
