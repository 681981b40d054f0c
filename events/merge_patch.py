"""JSON merge patch (RFC 7386): how progress frames fold into an attempt's rolling summary."""

from __future__ import annotations

from typing import Any


def merge_patch(target: Any, patch: Any) -> Any:
    """``target`` with ``patch`` applied: an object patches key by key (``null`` removes the
    key, nested objects merge), anything else replaces the target. Neither argument changes."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result
