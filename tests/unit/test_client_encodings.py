"""The client's decoding of every embedding encoding (fusionserve_client/encodings.py) against the server's own
encoder (service/embedding_types.py): what one writes the other reads back exactly, in the documented dtypes."""

from __future__ import annotations

import numpy as np
import pytest

from fusionserve_client.encodings import decode_vector, encoding, hamming_similarity, unpack_bits
from service import embedding_types as server
from service.joint_space import QuantizationRanges

DIM = 20  # not a multiple of 8: the last packed byte is padded
RANGES = QuantizationRanges(min=[-0.6] * DIM, max=[0.6] * DIM)
EXPECTED_DTYPES = {"float": np.float32, "int8": np.int8, "uint8": np.uint8, "binary": np.int8, "ubinary": np.uint8}


@pytest.fixture(scope="module")
def vectors() -> np.ndarray:
    rows = np.random.default_rng(0).normal(size=(3, DIM)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


@pytest.mark.parametrize("kind", server.EMBEDDING_TYPES)
@pytest.mark.parametrize("wire", ["float", "base64"])
def test_every_type_decodes_to_the_servers_array_in_its_dtype(vectors, kind, wire):
    rows = server.encode_rows(vectors, [kind], RANGES, wire)
    expected = server.quantize(vectors, kind, RANGES)
    for row, want in zip(rows, expected, strict=True):
        value = row[kind].tolist() if wire == "float" else row[kind]
        got = decode_vector(value, kind)
        assert got.dtype == EXPECTED_DTYPES[kind] and got.shape == want.shape
        np.testing.assert_array_equal(got, want)


def test_an_encoding_decodes_objects_keyed_by_type_or_one_array():
    row = {"int8": [1, -2], "ubinary": "gA=="}  # 0x80: the first bit set
    several = encoding(embedding_types=["int8", "ubinary"]).decode(row)
    assert list(several) == ["int8", "ubinary"] and several["ubinary"].tolist() == [128]
    assert encoding(embedding_types="int8").decode(row).tolist() == [1, -2]
    assert encoding(encoding_format="base64").decode(server.to_base64(np.float32([0.5, -1]))).tolist() == [0.5, -1]
    assert encoding().decode([0.25, 0.5]) == [0.25, 0.5]  # nothing asked: lists, as before
    assert encoding(dimensions=4, truncate="force", embedding_types=["float", "binary"]).params() == {
        "dimensions": 4, "truncate": "force", "embedding_types": "float,binary",
    }  # fmt: skip


@pytest.mark.parametrize("bad", [{"embedding_types": ["int4"]}, {"embedding_types": []},
                                 {"embedding_types": ["int8", "int8"]}, {"encoding_format": "hex"},
                                 {"dimensions": 0}, {"dimensions": True}])  # fmt: skip
def test_bad_options_are_refused_before_any_request(bad):
    with pytest.raises(ValueError):
        encoding(**bad)


def test_packed_codes_unpack_to_signs_and_compare_by_hamming(vectors):
    binary, ubinary = server.quantize(vectors, "binary"), server.quantize(vectors, "ubinary")
    signs = np.where(vectors > 0, 1.0, -1.0)
    np.testing.assert_array_equal(unpack_bits(binary, "binary", DIM), signs)
    np.testing.assert_array_equal(unpack_bits(ubinary, "ubinary", DIM), signs)
    expected = server.hamming_similarity(ubinary, ubinary)
    np.testing.assert_array_equal(hamming_similarity(ubinary, ubinary), expected)
    np.testing.assert_array_equal(hamming_similarity(binary, binary, "binary"), expected)
