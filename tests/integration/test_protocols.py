"""What every protocol does alike, against one in-process server on loopback (so a Gate can hold its text
encoder): a deadline that passes while queued is refused in the protocol's shape and the encoder then serves
again, a caller that goes away while queued has its items dropped before compute and is counted, every request
is counted under its protocol's endpoint, and an undecodable image answers v1's status and message. Each test is
parametrised over the adapters in tests/integration/protocols.py; the same refusals in multi-process mode:
test_multiprocess.py."""

from __future__ import annotations

import numpy as np
import pytest

from tests import media
from tests.integration.conftest import fast_settings, metric
from tests.integration.live import ThreadedServer, free_port
from tests.integration.protocols import DEADLINE_WAYS, IDS, PROTOCOLS, Refusal, Target, b64, text_encoder_busy, v1_error
from tests.waiting import wait_until

BAD_IMAGES = {"truncated_jpeg": media.truncated_jpeg(), "random_bytes": b"\x00 not an image at all",
              "png_bomb": media.png_bomb()}  # fmt: skip


@pytest.fixture(scope="module")
def live(tiny_models):
    settings = fast_settings(tiny_models, max_items_per_request=4).model_copy(update={"grpc_port": free_port()})
    with ThreadedServer(settings) as server:
        server.grpc_url = f"127.0.0.1:{settings.grpc_port}"
        yield server


@pytest.fixture(scope="module")
def target(live) -> Target:
    return Target.of(live)


@pytest.mark.parametrize(("protocol", "way"), DEADLINE_WAYS, ids=[f"{p.name}-{way}" for p, way in DEADLINE_WAYS])
def test_deadline_while_queued_is_refused_and_the_encoder_serves_again(target, protocol, way):
    with text_encoder_busy(target, protocol):
        refusal = protocol.texts(target, ["three"], deadline=way)
        assert isinstance(refusal, Refusal), refusal
        assert refusal.status == protocol.status(504) and "deadline" in refusal.message.lower(), refusal
        assert refusal.kind in (None, "deadline_exceeded"), refusal
    served = protocol.texts(target, ["two"])  # the encoder serves again once released
    np.testing.assert_allclose(served, PROTOCOLS[0].texts(target, ["two"]), atol=1e-5)  # v1's answer


@pytest.mark.parametrize("protocol", PROTOCOLS, ids=IDS)
def test_a_caller_gone_while_queued_has_its_items_dropped(live, target, protocol):
    depth = lambda: metric(live.app, "fusionserve_queue_depth", model="tiny", component="text")  # noqa: E731
    gone = lambda: metric(live.app, "fusionserve_requests_total", model="tiny",  # noqa: E731
                          endpoint=protocol.endpoint, status="499")  # fmt: skip
    before = gone()
    with text_encoder_busy(target, protocol):
        with protocol.queued_then_gone(target, ["one", "two"]):
            wait_until(lambda: depth() == 2, what="the two items to queue")
        wait_until(lambda: depth() == 0, what="the items to leave the queue, the encoder still held")
        wait_until(lambda: gone() == before + 1, what="the request counted as gone (499)")


@pytest.mark.parametrize("protocol", PROTOCOLS, ids=IDS)
def test_requests_are_counted_with_their_endpoint(live, target, protocol):
    counted = lambda model, status: metric(live.app, "fusionserve_requests_total", model=model,  # noqa: E731
                                           endpoint=protocol.endpoint, status=status)  # fmt: skip
    ok, invalid, unknown = counted("tiny", "200"), counted("tiny", "422"), counted("unknown", "404")
    assert not isinstance(protocol.texts(target, ["one"]), Refusal)
    assert protocol.invalid(target).status == protocol.status(422)
    refusal = protocol.texts(target, ["one"], model="nope")
    assert refusal.status == protocol.status(404) and "model 'nope' not found" in refusal.message, refusal
    assert (counted("tiny", "200"), counted("tiny", "422")) == (ok + 1, invalid + 1)
    assert counted("unknown", "404") == unknown + 1  # a name nobody serves is not a label of its own


@pytest.mark.parametrize("bad", BAD_IMAGES.values(), ids=BAD_IMAGES.keys())
@pytest.mark.parametrize("protocol", PROTOCOLS, ids=IDS)
def test_undecodable_image_gives_v1s_status_and_message(target, protocol, bad):
    v1 = v1_error(target, {"image": b64(bad)})  # the item alone, through v1
    refusal = protocol.image_row(target, bad)  # the bad image beside a text: its place named the protocol's way
    assert refusal.status == protocol.status(v1["status"]), refusal
    assert refusal.message == v1["message"].replace("inputs[0].image", protocol.image_field)
    assert protocol.image_field in refusal.message
