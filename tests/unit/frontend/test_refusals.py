"""Which protocol and which Call a path is, for an answer given outside its route (service/frontend/api/refusals.py,
middleware.shape_for): the same Call the route makes, the same shape its protocol's clients parse."""

from __future__ import annotations

import pytest

from service.frontend.api.middleware import shape_for
from service.frontend.api.openai_embeddings import openai_error
from service.frontend.api.refusals import ERROR_SHAPES, inference_call
from service.frontend.api.v2.rest import v2_error
from service.frontend.cycle import Call


def scope(path: str, method: str = "POST", query: bytes = b"") -> dict:
    return {"type": "http", "method": method, "path": path, "root_path": "", "query_string": query, "headers": []}


@pytest.mark.parametrize(
    "path, query, call",
    [
        ("/v1/models/tiny/embed", b"", Call("tiny", None, "embed")),
        ("/v1/models/tiny/classify", b"version=2&explain=true", Call("tiny", "2", "classify", explain=True)),
        ("/v1/models/tiny/classify", b"explain=0", Call("tiny", None, "classify")),
        ("/v1/models/tiny/embed", b"explain=true", Call("tiny", None, "embed")),  # embed has no explain
        ("/v2/models/tiny/infer", b"", Call("tiny", None, "v2_infer")),
        ("/v2/models/tiny/versions/3/infer", b"", Call("tiny", "3", "v2_infer")),
        ("/v1/embeddings", b"", Call("", None, "openai_embeddings")),  # the model is in the body
    ],
)
def test_an_inference_post_is_the_call_its_route_makes(path, query, call):
    assert inference_call(scope(path, query=query)) == call


@pytest.mark.parametrize("path", ["/v1/models", "/v2/models/tiny", "/v2/models/tiny/infer/x", "/v1/embeddings/x"])
def test_anything_else_is_no_inference(path):
    assert inference_call(scope(path)) is None


def test_a_get_of_an_inference_path_is_no_inference():
    assert inference_call(scope("/v1/models/tiny/embed", method="GET")) is None
    assert inference_call({"type": "websocket", "path": "/v1/embeddings"}) is None


@pytest.mark.parametrize(
    "path, shape",
    [
        ("/v2", v2_error),
        ("/v2/models/tiny/infer", v2_error),
        ("/v2x", None),
        ("/v1/embeddings", openai_error),
        ("/v1/embeddings/x", openai_error),
        ("/v1/embeddingsx", None),
        ("/v1/models/tiny/embed", None),  # v1's own shape
    ],
)
def test_a_path_is_shaped_by_the_protocol_that_owns_it_segment_by_segment(path, shape):
    assert shape_for(path, ERROR_SHAPES) is shape
