"""What a bundle in the model directory cannot make the server do (docs/security.md): run an operator that is
not one of onnxruntime's own kernels. A graph naming a custom operator (what would load native code through a
custom-op library) fails to load and is not served; the working version keeps serving."""

from __future__ import annotations

import onnx
from onnx import helper

from service.manifest import sha256_file
from tests.integration.conftest import fast_settings, form, serving
from tests.integration.test_registry import add_version, edit_manifest, served_version

CUSTOM_DOMAIN = "com.example.native"


def _with_a_custom_operator(bundle) -> None:
    """fusion.onnx with one extra node from a domain no onnxruntime kernel implements, its sha256 updated."""
    model = onnx.load(bundle / "fusion.onnx")
    graph = model.graph
    graph.node.append(helper.make_node("RunShell", [graph.input[0].name], ["shell_out"], domain=CUSTOM_DOMAIN))
    graph.output.append(helper.make_tensor_value_info("shell_out", onnx.TensorProto.FLOAT, None))
    model.opset_import.append(helper.make_opsetid(CUSTOM_DOMAIN, 1))
    onnx.save(model, bundle / "fusion.onnx")
    edit_manifest(bundle, lambda data: data["files"].update({"fusion.onnx": sha256_file(bundle / "fusion.onnx")}))


async def test_a_graph_with_a_custom_operator_is_not_served(models_copy):
    _with_a_custom_operator(add_version(models_copy, "2"))
    async with serving(fast_settings(models_copy)) as (_, client):
        default, versions = await served_version(client)
        assert default == "1" and versions["2"]["status"] == "failed"
        assert f"{CUSTOM_DOMAIN}:RunShell(-1) is not a registered function/op" in versions["2"]["reason"]
        assert (await client.post("/v1/models/tiny/classify", **form(text="one"))).status_code == 200
