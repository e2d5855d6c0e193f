"""A property-based run over the app's own OpenAPI document (schemathesis): every operation the document lists
at run time, against a real server on the tiny bundle, with valid and invalid inputs. No answer may be a 5xx,
and every answer must match the schema the document declares for its status. Also: /metrics declares the
content type it serves.

Bounded and reproducible: a fixed number of examples per operation and mode, derandomized (the same
requests every run), no per-example deadline (a cold ORT session may take a moment).
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from prometheus_client import CONTENT_TYPE_LATEST
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error, response_schema_conformance

from service.frontend.app import create_app
from service.settings import Settings

EXAMPLES_PER_MODE = 25
REPOSITORY = "/v2/repository/"
SERVED = {"model": "tiny", "version": "1"}  # tests/bundles.py, as tiny_models builds it
CHECKS = [not_a_server_error, response_schema_conformance]
HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options"}


class FuzzCase(NamedTuple):
    method: str
    path: str
    mode: GenerationMode
    served_model: bool  # requests name the served model (and version), so they get past the 404

    @property
    def id(self) -> str:
        return f"{self.method} {self.path} {self.mode.value}" + (" tiny" if self.served_model else "")


def names_a_model(path: str, operation: dict) -> bool:
    """The model is in the path, or a top-level field of the JSON body (OpenAI's `model`)."""
    body = operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {})
    return "{model}" in path or "model" in body.get("properties", {})


def documented_cases() -> list[FuzzCase]:
    """Every operation in the document, read from the app itself at collection time.

    Random names (an unknown model: 404) and, where a request names a model, also the served one, so bodies
    and queries reach decoding and inference. Invalid inputs (negative mode) only where some exist: a
    body, a query or a header (any string is a valid path segment)."""
    document = create_app(Settings(model_dir=Path("models"))).openapi()
    cases = []
    for path, item in document["paths"].items():
        for method, operation in ((m.upper(), o) for m, o in item.items() if m in HTTP_METHODS):
            takes_input = "requestBody" in operation or any(p["in"] != "path" for p in operation.get("parameters", []))
            modes = [GenerationMode.POSITIVE] + ([GenerationMode.NEGATIVE] if takes_input else [])
            cases += [FuzzCase(method, path, mode, False) for mode in modes]
            # not the repository's load/unload: unloading the served model would starve the rest of the run
            if names_a_model(path, operation) and not path.startswith(REPOSITORY):
                cases += [FuzzCase(method, path, mode, True) for mode in modes]
    return cases


CASES = documented_cases()


@pytest.fixture(scope="module")
def api(live):
    """The document as the running server serves it, with requests going to that server."""
    return schemathesis.openapi.from_url(live.base_url + "/openapi.json")


def to_the_served_model(case: schemathesis.Case) -> schemathesis.Case:
    """Point a generated request at the served model and version; everything else stays as generated."""
    for name, value in SERVED.items():
        for where in (case.path_parameters, case.query):
            if where and name in where:
                where[name] = value
    if isinstance(case.body, dict) and "model" in case.body:
        case.body["model"] = SERVED["model"]
    return case


def fuzz(operation, mode: GenerationMode, base_url: str, served_model: bool) -> None:
    strategy = operation.as_strategy(generation_mode=mode)

    @given(case=strategy.map(to_the_served_model) if served_model else strategy)
    @settings(
        max_examples=EXAMPLES_PER_MODE,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),  # large media bodies are slow to generate; that is fine
    )
    def run(case):
        response = case.call(base_url=base_url, timeout=30)
        case.validate_response(response, checks=CHECKS)  # raises with the failing request as a curl command

    run()


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_operation_never_answers_5xx_and_matches_its_declared_schema(api, live, case):
    fuzz(api[case.path][case.method], case.mode, live.base_url, case.served_model)


def test_inputs_of_the_v1_inference_routes_are_fuzzed_both_ways():
    for mode in GenerationMode:
        for served_model in (False, True):
            assert FuzzCase("POST", "/v1/models/{model}/classify", mode, served_model) in CASES
    assert FuzzCase("GET", "/metrics", GenerationMode.POSITIVE, False) in CASES


async def test_metrics_serves_the_content_type_its_documentation_declares(client):
    document = (await client.get("/openapi.json")).json()
    declared = document["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert list(declared) == [response.headers["content-type"]] == [CONTENT_TYPE_LATEST]
    assert "fusionserve_requests_total" in response.text
