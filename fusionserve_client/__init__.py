"""fusionserve's Python client: needs only httpx (`pip install fusionserve[client]`); never imports the server.

from fusionserve_client import Client
with Client("http://127.0.0.1:8000") as client:
    result = client.classify("tridigits", image="seven.png", text="a seven")
    print(result.top.label, result.top.score)
"""

from fusionserve_client.client import DEFAULT_URL, AsyncClient, Client, Item
from fusionserve_client.encodings import EMBEDDING_TYPES, decode_vector, hamming_similarity, unpack_bits
from fusionserve_client.errors import (
    AuthenticationError,
    BadRequestError,
    ConnectionFailed,
    DeadlineExceededError,
    FusionServeError,
    InvalidInputError,
    NotFoundError,
    NotReadyError,
    OverloadedError,
    PayloadTooLargeError,
    ServerError,
    UnsupportedMediaTypeError,
)
from fusionserve_client.results import (
    Classification,
    Embedding,
    Evidence,
    Label,
    ModelInfo,
    ModelVersion,
    Segment,
    SegmentEmbedding,
)
from fusionserve_client.search_results import Ranked, Rerank, Score, ZeroShot

__all__ = [
    "DEFAULT_URL",
    "EMBEDDING_TYPES",
    "AsyncClient",
    "AuthenticationError",
    "BadRequestError",
    "Classification",
    "Client",
    "ConnectionFailed",
    "DeadlineExceededError",
    "Embedding",
    "Evidence",
    "FusionServeError",
    "InvalidInputError",
    "Item",
    "Label",
    "ModelInfo",
    "ModelVersion",
    "NotFoundError",
    "NotReadyError",
    "OverloadedError",
    "PayloadTooLargeError",
    "Segment",
    "SegmentEmbedding",
    "ServerError",
    "UnsupportedMediaTypeError",
    "Ranked",
    "Rerank",
    "Score",
    "ZeroShot",
    "decode_vector",
    "hamming_similarity",
    "unpack_bits",
]
