"""How deep a KServe V2 JSON tensor's data may nest, checked without recursion (rest_codec.py decodes it).

orjson parses up to 1024 levels, deeper than a recursive walk (or numpy's own conversion) survives on Python's
stack, so the depth is bounded by a tensor's maximum rank as the walk meets it: a 4xx naming the field, never a
RecursionError's 500 (docs/bad-input.md).
"""

from __future__ import annotations

from typing import Any

from service.errors import InvalidInput

MAX_RANK = 32  # a tensor's dimensions, and so how deep its JSON data may nest (numpy's limit before 2.0)


def too_deep(where: str) -> InvalidInput:
    return InvalidInput(
        f"{where}.data nests lists deeper than {MAX_RANK} levels, a tensor's maximum rank", f"{where}.data"
    )


def flatten(data: Any, where: str) -> list:
    """Nested JSON lists → their elements in row-major order, without recursion: orjson accepts 1024 levels,
    more than Python's stack would, so nesting past MAX_RANK is refused as the walk meets it."""
    if not isinstance(data, list):
        return [data]
    flat, stack = [], [iter(data)]
    while stack:
        for element in stack[-1]:
            if isinstance(element, list):
                if len(stack) == MAX_RANK:
                    raise too_deep(where)
                stack.append(iter(element))
                break
            flat.append(element)
        else:
            stack.pop()
    return flat


def first_depth(data: Any) -> int:
    """How deep the first elements nest (a numeric tensor's data; numpy refuses ragged or deeper data itself)."""
    depth = 0
    while isinstance(data, list) and depth <= MAX_RANK:
        depth, data = depth + 1, data[0] if data else None
    return depth
