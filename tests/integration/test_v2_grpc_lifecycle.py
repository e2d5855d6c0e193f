"""KServe V2 gRPC around the RPCs: the API key in metadata, tritonclient's asyncio client, the drain (in-flight RPCs
finish, new ones are refused) and FUSIONSERVE_GRPC_PORT in a real `fusionserve serve` process (unset: no port)."""

from __future__ import annotations

import os
import signal
import socket
import threading
from pathlib import Path

import pytest
import tritonclient.grpc as triton
import tritonclient.grpc.aio as triton_aio

from tests.integration.conftest import Gate, fast_settings, serving
from tests.integration.live import ThreadedServer, free_port, start_process
from tests.integration.test_live_server import wait_for
from tests.integration.test_v2_grpc import refused, tensors

KEY = "s3cret-key"


def grpc_server(settings, **overrides) -> ThreadedServer:
    server = ThreadedServer(settings.model_copy(update={"grpc_port": free_port(), **overrides}))
    server.grpc_url = f"127.0.0.1:{server.app.state.context.settings.grpc_port}"
    return server


def test_api_key_is_required_in_metadata_but_for_the_probes(tiny_models):
    with grpc_server(fast_settings(tiny_models, api_key=KEY)) as live:
        client, text = triton.InferenceServerClient(live.grpc_url), tensors([{"text": "one"}], ["text"])
        assert client.is_server_live() and client.is_server_ready()  # open, like /healthz and /readyz
        for headers in (None, {"authorization": "Bearer wrong"}, {"x-api-key": "wrong"}):
            error = refused(lambda h=headers: client.infer("tiny", text, headers=h))
            assert error.status() == "StatusCode.UNAUTHENTICATED" and error.message() == "missing or wrong API key"
        error = refused(lambda: client.get_model_metadata("tiny"))
        assert error.status() == "StatusCode.UNAUTHENTICATED"
        for headers in ({"authorization": f"Bearer {KEY}"}, {"x-api-key": KEY}):
            assert client.infer("tiny", text, headers=headers).as_numpy("label").shape == (1,)
            assert client.is_model_ready("tiny", headers=headers)


def test_an_unauthenticated_refusal_names_the_request_id(tiny_models):
    import grpc

    from service.frontend.api.v2 import grpc_predict_v2_pb2 as pb2
    from service.frontend.api.v2 import grpc_predict_v2_pb2_grpc as pb2_grpc

    with grpc_server(fast_settings(tiny_models, api_key=KEY)) as live, grpc.insecure_channel(live.grpc_url) as channel:
        stub = pb2_grpc.GRPCInferenceServiceStub(channel)
        for sent, expected in (("trace-me-7", "trace-me-7"), ("x" * 65, None)):
            with pytest.raises(grpc.RpcError) as caught:
                stub.ModelMetadata(pb2.ModelMetadataRequest(name="tiny"), metadata=(("x-request-id", sent),))
            assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
            answered = dict(caught.value.trailing_metadata())["x-request-id"]
            assert answered == expected if expected else len(answered) == 32 and answered != sent


async def test_asyncio_client_with_the_key(tiny_models):
    with grpc_server(fast_settings(tiny_models, api_key=KEY)) as live:
        client, key = triton_aio.InferenceServerClient(live.grpc_url), {"x-api-key": KEY}
        try:
            assert await client.is_server_ready() and await client.is_model_ready("tiny", headers=key)
            rows = tensors([{"text": "one"}, {"text": "two three"}], ["text"])
            result = await client.infer("tiny", rows, headers=key, client_timeout=10)
            assert result.as_numpy("probabilities").shape == (2, 4)
        finally:
            await client.close()


def test_drain_finishes_rpcs_in_flight_and_refuses_new_ones(tiny_models):
    live = grpc_server(fast_settings(tiny_models))
    live.__enter__()
    text, answers = tensors([{"text": "one two"}], ["text"]), []
    in_flight = threading.Thread(
        target=lambda: answers.append(triton.InferenceServerClient(live.grpc_url).infer("tiny", text)), daemon=True
    )
    with Gate(live.app, "text") as gate:
        in_flight.start()
        assert gate.entered.wait(10)  # in ORT, held
        stopping = threading.Thread(target=live.__exit__, args=(None, None, None), daemon=True)
        stopping.start()  # uvicorn stops; the lifespan drains: draining, then the gRPC server's stop
        wait_for(lambda: live.app.state.context.draining)
        error = refused(lambda: triton.InferenceServerClient(live.grpc_url).infer("tiny", text))
        assert error.status() == "StatusCode.UNAVAILABLE"
        gate.open()
        in_flight.join(10)
    stopping.join(30)
    assert len(answers) == 1 and answers[0].as_numpy("label").shape == (1,)  # the RPC in flight got its answer


async def test_grpc_port_in_use_fails_the_start(tiny_models):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(RuntimeError, match="Failed to bind"):  # not a server silently sharing the port
            async with serving(fast_settings(tiny_models, grpc_port=taken.getsockname()[1])):
                pass


def listening_ports(pid: int) -> set[int]:
    """TCP ports the process listens on: its socket inodes matched against /proc/net/tcp{,6} in LISTEN (0A)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        target = os.readlink(fd) if fd.is_symlink() else ""
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


@pytest.mark.slow
def test_grpc_port_setting_in_a_real_process(tiny_models):
    quiet = {"intra_op_threads": 1, "warmup_batch_sizes": "[1]"}
    process, base_url = start_process(tiny_models, **quiet)
    try:
        assert listening_ports(process.pid) == {int(base_url.rsplit(":", 1)[1])}  # unset: HTTP only
    finally:
        process.terminate()
        assert process.wait(30) == 0
    grpc_port = free_port()
    process, base_url = start_process(tiny_models, grpc_port=grpc_port, drain_grace_s=0, **quiet)
    try:
        assert listening_ports(process.pid) == {int(base_url.rsplit(":", 1)[1]), grpc_port}
        client = triton.InferenceServerClient(f"127.0.0.1:{grpc_port}")
        assert client.infer("tiny", tensors([{"text": "one"}], ["text"])).as_numpy("label").shape == (1,)
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0  # drained with the gRPC server too
