"""JSON schemas of endpoint types, for the registry and ``micro describe``."""

from __future__ import annotations

from typing import Any

import msgspec

from ..codec._typed import is_protobuf, is_pydantic

__all__ = ["json_schema"]


def json_schema(tp: Any) -> dict[str, Any]:
    """A JSON schema for ``tp``, or ``{}`` when none can be derived."""
    if tp is Any:
        return {}
    try:
        if is_pydantic(tp):
            schema: dict[str, Any] = tp.model_json_schema()
            return schema
        if is_protobuf(tp):
            return {"type": "object", "title": tp.DESCRIPTOR.full_name}
        return dict(msgspec.json.schema(tp))
    except Exception:
        return {}
