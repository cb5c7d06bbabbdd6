"""MessagePack codec (``application/msgpack``, ``application/grpc+msgpack``), on msgspec."""

from __future__ import annotations

import msgspec

from ._msgspec import MsgspecCodec


class MsgpackCodec(MsgspecCodec):
    name = "msgpack"
    content_type = "application/msgpack"
    label = "msgpack"
    module = msgspec.msgpack
