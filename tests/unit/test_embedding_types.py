"""The embedding encodings every protocol serves (service/embedding_types.py): what a search user decodes."""

from __future__ import annotations

import base64

import numpy as np
import pytest

from service.embedding_types import (
    check_embedding_types,
    dequantize,
    hamming_similarity,
    quantize,
    ranges_for,
    resolve_dimensions,
    to_base64,
    truncate,
)
from service.errors import InvalidInput
from service.joint_space import JointSpace, QuantizationRanges
from service.manifest import read_manifest
from tests.bundles import build_bundle, joint_space_for


@pytest.fixture(scope="module")
def manifests(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    trained = read_manifest(build_bundle(root, "trained", joint_space=joint_space_for(8, (2, 4))) / "manifest.json")
    plain = read_manifest(build_bundle(root, "plain", golden=False) / "manifest.json")
    return trained, plain


def unit_rows(n: int, d: int, seed: int = 0) -> np.ndarray:
    rows = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_truncate_renormalises_a_prefix_and_keeps_zero_rows_zero():
    rows = np.vstack([unit_rows(3, 8), np.zeros((1, 8), np.float32)])
    cut = truncate(rows, 4)
    assert cut.shape == (4, 4)
    np.testing.assert_allclose(np.linalg.norm(cut[:3], axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(cut[0], rows[0, :4] / np.linalg.norm(rows[0, :4]), atol=1e-6)
    assert not cut[3].any()


def test_dimensions_are_refused_unless_trained_for_or_forced(manifests):
    trained, plain = manifests
    assert resolve_dimensions(trained, None, None) == 8
    assert resolve_dimensions(trained, 4, None) == 4
    with pytest.raises(InvalidInput) as refused:
        resolve_dimensions(plain, 4, None)
    assert refused.value.field == "dimensions" and "supported: 8" in refused.value.message
    assert resolve_dimensions(plain, 3, "force") == 3
    with pytest.raises(InvalidInput, match=r"in \[1, 8\]"):
        resolve_dimensions(trained, 9, "force")
    with pytest.raises(InvalidInput) as bad:
        resolve_dimensions(trained, 4, "yes", truncate_field="parameters.truncate")
    assert bad.value.field == "parameters.truncate"


def test_scaled_types_need_ranges_and_types_are_named_once(manifests):
    trained, plain = manifests
    assert check_embedding_types(trained, ["int8", "binary"], 4) == ["int8", "binary"]
    assert check_embedding_types(plain, None, 8) == ["float"]
    assert check_embedding_types(plain, ["binary", "ubinary", "float"], 8) == ["binary", "ubinary", "float"]
    with pytest.raises(InvalidInput) as refused:
        check_embedding_types(plain, ["float", "int8"], 8)
    assert refused.value.field == "embedding_types[1]" and "calibrated ranges" in refused.value.message
    with pytest.raises(InvalidInput, match="is not one of"):
        check_embedding_types(trained, ["int4"], 8)
    with pytest.raises(InvalidInput, match="named twice"):
        check_embedding_types(trained, ["int8", "int8"], 8)
    assert ranges_for(trained, 3).min == [-1.0] * 3  # forced: the next larger prefix's first 3


def test_int8_and_uint8_map_each_range_onto_256_levels():
    ranges = QuantizationRanges(min=[-1.0, 0.0], max=[1.0, 0.5])
    rows = np.array([[-1.0, 0.0], [1.0, 0.5], [-1 + 100 * 2 / 255, 100 * 0.5 / 255], [5.0, -5.0]], np.float32)
    np.testing.assert_array_equal(quantize(rows, "int8", ranges), [[-128, -128], [127, 127], [-28, -28], [127, -128]])
    np.testing.assert_array_equal(quantize(rows, "uint8", ranges), [[0, 0], [255, 255], [100, 100], [255, 0]])
    back = dequantize(quantize(rows[:3], "int8", ranges), "int8", ranges)
    np.testing.assert_allclose(back, rows[:3], atol=1 / 255)


def test_binary_packs_sign_bits_eight_a_byte_as_cohere():
    rows = np.array([[0.5, -0.1, 0.2, 0.3, -0.4, 0.1, 0.1, -0.2, 0.9, -0.9]], np.float32)  # 10 dims → 2 bytes
    ubinary = quantize(rows, "ubinary")
    assert ubinary.dtype == np.uint8 and ubinary.tolist() == [[0b10110110, 0b10000000]]
    binary = quantize(rows, "binary")
    assert binary.dtype == np.int8 and binary.tolist() == [[0b10110110 - 128, 0b10000000 - 128]]
    np.testing.assert_array_equal(dequantize(binary, "binary")[0, :10], np.where(rows[0] > 0, 1, -1))
    codes = quantize(unit_rows(5, 64), "ubinary")
    similarity = hamming_similarity(codes, codes)
    assert (np.diag(similarity) == 64).all() and (similarity <= 64).all()


def test_base64_is_the_raw_little_endian_bytes_of_each_type():
    row = unit_rows(1, 8)[0]
    assert np.array_equal(np.frombuffer(base64.b64decode(to_base64(row)), "<f4"), row)
    packed = quantize(row[None], "binary")[0]
    assert np.array_equal(np.frombuffer(base64.b64decode(to_base64(packed, "binary")), np.int8), packed)


def test_a_joint_space_block_is_checked_against_the_embedding_dim():
    with pytest.raises(ValueError, match="ascending"):
        JointSpace(matryoshka_dims=[8]).check(8)
    with pytest.raises(ValueError, match="does not support|not a dimension"):
        JointSpace(quantization={"3": {"min": [0.0] * 3, "max": [1.0] * 3}}).check(8)
    JointSpace(matryoshka_dims=[2, 4], quantization={"4": {"min": [0.0] * 4, "max": [1.0] * 4}}).check(8)
