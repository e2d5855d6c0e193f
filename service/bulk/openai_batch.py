"""OpenAI-Batch-style JSONL through the bulk actor: one `{"custom_id", "method": "POST", "url": "/v1/embeddings",
"body"}` per input line, one `{"id", "custom_id", "response": {"status_code", "request_id", "body"}, "error"}` per
output line, as OpenAI's batch output. The body is read by the server's own /v1/embeddings code (parse_options,
split_model, parse_input, respond), so a line answers what a POST of its body would, errors in OpenAI's shape."""

from __future__ import annotations

import uuid

import orjson
import pyarrow as pa

from service.bulk.runner import BundleRunner
from service.errors import BadRequest, FusionError, NotFound

URL = "/v1/embeddings"
SCHEMA = pa.schema([("line", pa.string())])


class OpenAIBatchRunner(BundleRunner):
    """Input rows are JSONL lines (`text` column, ray.data.read_text); output rows one JSON answer line each."""

    def __call__(self, batch: pa.Table) -> pa.Table:
        lines = batch.column("text").to_pylist()
        answers = self._call(self._answer_lines(lines))
        return pa.table({"line": [orjson.dumps(a, option=orjson.OPT_SERIALIZE_NUMPY).decode() for a in answers]})

    async def _answer_lines(self, lines: list[str]) -> list[dict]:
        import asyncio

        return list(await asyncio.gather(*(self._line(line) for line in lines)))

    async def _line(self, line: str) -> dict:
        request_id = f"batch_req_{uuid.uuid4().hex}"
        custom_id = None
        try:
            request = orjson.loads(line)
            if not isinstance(request, dict):
                raise BadRequest("each line must be a JSON object", field="body")
            custom_id = request.get("custom_id")
            status, body = 200, await self._embeddings(request)
        except orjson.JSONDecodeError as error:
            status, body = 400, _error_body(BadRequest(f"line is not valid JSON: {error}", field="body"))
        except FusionError as error:
            status, body = error.status, _error_body(error)
        response = {"status_code": status, "request_id": request_id, "body": body}
        return {"id": f"batch_{uuid.uuid4().hex}", "custom_id": custom_id, "response": response, "error": None}

    async def _embeddings(self, request: dict) -> dict:
        from service.frontend.api.openai_embeddings import parse_options, respond, split_model
        from service.frontend.api.openai_inputs import parse_input
        from service.frontend.cycle import Admitted, Inference

        if request.get("method", "POST") != "POST" or request.get("url") != URL:
            raise BadRequest(f"only POST {URL} is served by this job (got {request.get('url')!r})", field="url")
        body = request.get("body")
        if not isinstance(body, dict):
            raise BadRequest("body must be a JSON object", field="body")
        options = parse_options(body)
        name, version = split_model(options.model)
        if name != self.model or version not in (None, self.version):
            raise NotFound(f"this job serves model {self.model}:{self.version}, not {options.model!r}", field="model")
        parsed = parse_input(body["input"], self.settings, options.video_options())
        if parsed.remotes:  # a bulk job fetches nothing: the corpus must carry its media inline
            where = parsed.remotes[0].field
            raise BadRequest(f"{where}: a batch job fetches no http(s) media; send a data: URL", field=where)
        outcomes = await self.answer(parsed.items)
        for outcome in outcomes:  # as under HTTP, one bad item fails its request
            if isinstance(outcome, Exception):
                raise outcome
        done = Inference([prepared for prepared, _ in outcomes], [result for _, result in outcomes])
        return respond(options, Admitted(self.model, self.state), done)


def _error_body(error: FusionError) -> dict:
    from service.frontend.api.openai_embeddings import openai_error

    return orjson.loads(openai_error(error).body)  # the endpoint's own error shape
