"""Dynamic batching through the real app: batch formation, invariance, overload (docs/architecture.md,
Batching; docs/bad-input.md rows 12–14)."""

from __future__ import annotations

import asyncio
import base64
import time

import numpy as np

from tests.bundles import sample_inputs
from tests.integration.conftest import Gate, fast_settings, metric, serving
from tests.waiting import wait_until_async

EMBED = "/v1/models/tiny/embed"


def item(seed: int, *modalities: str) -> dict:
    inputs = sample_inputs(seed)
    return {m: inputs[m] if m == "text" else base64.b64encode(inputs[m]).decode() for m in modalities}


def batch_sizes(server_timing: str) -> dict[str, list[int]]:
    """'batch-text;desc="3,3"' → {"text": [3, 3]}."""
    sizes = {}
    for part in server_timing.split(", "):
        if part.startswith("batch-"):
            name, desc = part[len("batch-") :].split(";desc=")
            sizes[name] = [int(v) for v in desc.strip('"').split(",")]
    return sizes


async def test_concurrent_requests_form_batches(tiny_models):
    # The tiny encoders compute faster than requests arrive, so each would find its batcher idle and run
    # at once, alone (continuous batching never waits for nothing). Holding the first text batch in ORT
    # makes the others arrive while a batch computes: they must form the next batch(es) together.
    async with serving(fast_settings(tiny_models, max_queue_delay_ms=50)) as (app, client):
        text_queue = app.state.context.registry.get("tiny").pipeline.batchers["text"]
        with Gate(app, "text") as gate:
            posts = [
                asyncio.create_task(client.post(EMBED, json={"inputs": [item(seed, "text", "audio")]}))
                for seed in range(12)
            ]
            await asyncio.to_thread(gate.entered.wait, 10)
            held = len(next(iter(gate.calls[0].values())))  # requests that arrived together share the first
            await wait_until_async(lambda: text_queue.depth >= 12 - held, what="the other requests to queue")
            gate.open()
            responses = await asyncio.gather(*posts)
        assert all(r.status_code == 200 for r in responses)
        executed = metric(app, "fusionserve_batch_size_count", model="tiny", component="text")
        items = metric(app, "fusionserve_batch_size_sum", model="tiny", component="text")
        assert items == 12 and executed < 12  # some batches held more than one item
        assert max(max(batch_sizes(r.headers["server-timing"])["text"]) for r in responses) > 1
        assert metric(app, "fusionserve_batch_size_count", model="tiny", component="image") == 0
        assert metric(app, "fusionserve_batch_padding_ratio_count", model="tiny", component="audio") >= 1


async def test_outputs_are_batch_invariant(tiny_models):
    """An item alone vs batched with items of other text and audio lengths: equal within 1e-5."""
    async with serving(fast_settings(tiny_models, max_queue_delay_ms=50)) as (_, client):
        target = item(0, "image", "text", "audio")
        alone = (await client.post(EMBED, json={"inputs": [target]})).json()["results"][0]
        others = [item(seed, "image", "text", "audio") for seed in range(1, 8)]
        response = await client.post(EMBED, json={"inputs": [*others[:3], target, *others[3:]]})
        sizes = batch_sizes(response.headers["server-timing"])
        assert max(sizes["text"]) > 1 and max(sizes["audio"]) > 1  # really batched with the others
        batched = response.json()["results"][3]
        for key in ("fused", "image", "text", "audio"):
            np.testing.assert_allclose(batched[key], alone[key], atol=1e-5)


def queue_ms(server_timing: str) -> float:
    """'queue;dur=0.12' → 0.12 (the slowest item's queue time, in ms)."""
    part = next(p for p in server_timing.split(", ") if p.startswith("queue;dur="))
    return float(part[len("queue;dur=") :])


async def test_a_lone_request_does_not_wait_for_company(tiny_models):
    window_ms = 10_000  # so long that no CPU is slow enough to come near it without waiting it out
    async with serving(fast_settings(tiny_models, max_queue_delay_ms=window_ms)) as (_, client):
        for seed in (1, 2):  # the second comes after the first: the batchers are idle again
            response = await client.post(EMBED, json={"inputs": [item(seed, "text", "audio")]})
            assert response.status_code == 200
            assert batch_sizes(response.headers["server-timing"]) == {"text": [1], "audio": [1], "fusion": [1]}
            # a wait for company would take the whole window; the exact rule is the unit tests' (fake clock)
            assert queue_ms(response.headers["server-timing"]) < window_ms / 2


async def test_queue_full_answers_429_fast_and_counts(tiny_models):
    settings = fast_settings(tiny_models, max_queued_items=2, max_batch_size=1)
    async with serving(settings) as (app, client):
        text_queue = app.state.context.registry.get("tiny").pipeline.batchers["text"]
        with Gate(app, "text") as gate:
            held = [asyncio.create_task(client.post(EMBED, json={"inputs": [item(0, "text")]}))]
            await asyncio.to_thread(gate.entered.wait, 10)  # the first item is inside ORT
            held += [asyncio.create_task(client.post(EMBED, json={"inputs": [item(s, "text")]})) for s in (1, 2)]
            await wait_until_async(lambda: text_queue.depth == 2, what="the next two to fill the queue")
            started = time.perf_counter()
            rejected = await client.post(EMBED, json={"inputs": [item(9, "text")]})
            elapsed = time.perf_counter() - started
            gate.open()
            done = await asyncio.gather(*held)
        assert [r.status_code for r in done] == [200] * 3, [r.text for r in done]
        assert rejected.status_code == 429, rejected.text
        assert rejected.headers["retry-after"] == "1"
        assert rejected.json()["error"]["type"] == "queue_full"
        assert "max_queue=2" in rejected.json()["error"]["message"]
        # the gate opens only after this answer, so any answer proves it never waited for the queue; the bound,
        # half the 20 s deadline, tells "at once" from a wait for the deadline on however slow a machine
        assert elapsed < 10.0, elapsed
        assert metric(app, "fusionserve_rejected_total", model="tiny", reason="queue_full") == 1
        assert metric(app, "fusionserve_requests_total", model="tiny", endpoint="embed", status="429") == 1


async def test_deadline_while_queued_gives_504_and_never_reaches_onnxruntime(tiny_models):
    async with serving(fast_settings(tiny_models, max_batch_size=1)) as (app, client):
        with Gate(app, "text") as gate:
            blocker = asyncio.create_task(client.post(EMBED, json={"inputs": [item(1, "text")]}))
            await asyncio.to_thread(gate.entered.wait, 10)
            late = await client.post(
                EMBED,
                json={"inputs": [{"text": "seven eight nine"}]},
                headers={"x-request-timeout-ms": "100"},
            )
            gate.open()
            assert (await blocker).status_code == 200
        assert late.status_code == 504, late.text
        assert late.json()["error"]["type"] == "deadline_exceeded"
        assert len(gate.calls) == 1  # only the blocker's batch ever ran
        assert metric(app, "fusionserve_rejected_total", model="tiny", reason="deadline") == 1
        assert metric(app, "fusionserve_queue_depth", model="tiny", component="text") == 0


async def test_cancelled_request_is_never_computed(tiny_models):
    async with serving(fast_settings(tiny_models, max_batch_size=1)) as (app, client):
        with Gate(app, "text") as gate:
            blocker = asyncio.create_task(client.post(EMBED, json={"inputs": [item(1, "text")]}))
            await asyncio.to_thread(gate.entered.wait, 10)
            doomed = asyncio.create_task(client.post(EMBED, json={"inputs": [{"text": "three four"}]}))
            depth = lambda: metric(app, "fusionserve_queue_depth", model="tiny", component="text")  # noqa: E731
            await wait_until_async(lambda: depth() == 1, what="the doomed request to queue")
            doomed.cancel()
            await wait_until_async(lambda: depth() == 0, what="the cancelled item to leave the queue")
            gate.open()
            assert (await blocker).status_code == 200
        assert len(gate.calls) == 1
        assert metric(app, "fusionserve_queue_depth", model="tiny", component="text") == 0


async def test_single_modality_items_fuse_inside_their_encoder_batch(tiny_models):
    """Image-only and text-only items skip the fusion queue (fused in the encoder's call) and get the same
    answer as when fused by the fusion batcher beside multi-modality items; multi-modality items still queue."""
    async with serving(fast_settings(tiny_models)) as (app, client):
        fusion_queue = app.state.context.registry.get("tiny").pipeline.batchers["fusion"]
        calls = []
        original = fusion_queue._run_batch
        fusion_queue._run_batch = lambda payloads: calls.append(len(payloads)) or original(payloads)
        mixed = [item(0, "image"), item(1, "text"), item(2, "image", "text")]
        batched = (await client.post(EMBED, json={"inputs": mixed})).json()["results"]
        assert sum(calls) == 1  # only the image+text item went through the fusion batcher
        for index, single in enumerate(mixed[:2]):
            alone = (await client.post(EMBED, json={"inputs": [single]})).json()["results"][0]
            np.testing.assert_allclose(batched[index]["fused"], alone["fused"], atol=1e-5)
        assert sum(calls) == 1
        assert metric(app, "fusionserve_batch_size_sum", model="tiny", component="fusion") == 5
