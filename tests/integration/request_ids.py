"""For tests that compare whole error bodies: the body without its request id, after checking that the id is the
answer's X-Request-Id (in the protocol's place: inside v1's / OpenAI's "error" object, beside V2's "error")."""

from __future__ import annotations


def without_request_id(response) -> dict:
    body = response.json()
    holder = body["error"] if isinstance(body.get("error"), dict) else body
    assert holder.pop("request_id") == response.headers["x-request-id"], body
    return body
