"""/docs (Swagger UI) and /redoc in headless Chromium with the network off: they render every operation from
the packaged assets, and Swagger's "Try it out" sends a multipart classify with a file and shows the 200."""

from __future__ import annotations

import json

import httpx
import pytest
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as ec

from tests.browser.conftest import API_KEY, wait_for_text
from tests.bundles import sample_inputs

pytestmark = pytest.mark.slow
CLASSIFY = "operations-inference-classify_v1_models__model__classify_post"
LIST_MODELS = "operations-models-list_models_v1_models_get"


def operations(base_url: str) -> list[dict]:
    spec = httpx.get(base_url + "/openapi.json").json()
    return [op for ops in spec["paths"].values() for op in ops.values()]


def test_the_browser_cannot_reach_beyond_loopback(browser, network):
    # the proof that "offline" below is real: public addresses fail at the dead proxy
    for url in ("http://example.com/", "https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui.css"):
        with pytest.raises(WebDriverException, match="ERR_PROXY_CONNECTION_FAILED"):
            browser.get(url)
    assert {"http://example.com/", "https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui.css"} <= set(
        network.drain().urls()
    )


def test_swagger_ui_renders_every_operation_offline(browser, server, network, wait, screenshot):
    browser.get(server.base_url + "/docs")
    wait.until(ec.presence_of_element_located((By.ID, CLASSIFY)))
    rendered = {block.get_attribute("id") for block in browser.find_elements(By.CSS_SELECTOR, ".opblock[id]")}
    expected = {f"operations-{tag}-{op['operationId']}" for op in operations(server.base_url) for tag in op["tags"]}
    assert rendered == expected
    assert browser.title == "fusionserve - Swagger UI"
    screenshot("docs")
    network.assert_only_loopback()
    assert server.base_url + "/static/favicon.png" in network.urls()


def test_swagger_try_it_out_sends_a_multipart_classify_with_a_file(browser, server, network, wait, tmp_path):
    image = tmp_path / "digit.png"
    image.write_bytes(sample_inputs(seed=1)["image"])
    browser.get(server.base_url + "/docs")
    block = wait.until(ec.presence_of_element_located((By.ID, CLASSIFY)))
    block.find_element(By.CSS_SELECTOR, ".opblock-summary-control").click()  # expand the operation
    wait.until(lambda _: block.find_element(By.CSS_SELECTOR, ".try-out__btn")).click()
    block.find_element(By.CSS_SELECTOR, 'input[placeholder="model"]').send_keys("tiny")
    content_type = block.find_element(By.CSS_SELECTOR, ".body-param-content-type select")
    assert content_type.get_attribute("value") == "multipart/form-data"  # the first declared, with file pickers
    block.find_element(By.CSS_SELECTOR, 'tr[data-property-name="image"] input[type="file"]').send_keys(str(image))
    text = block.find_element(By.CSS_SELECTOR, 'tr[data-property-name="text"] input')
    text.send_keys(Keys.CONTROL, "a", Keys.NULL, Keys.DELETE, "one two")  # over Swagger's example value "string"
    block.find_element(By.CSS_SELECTOR, "button.execute").click()

    wait_for_text(wait, (By.CSS_SELECTOR, ".live-responses-table .response"), "200")
    body = json.loads(block.find_element(By.CSS_SELECTOR, ".live-responses-table .response-col_description pre").text)
    assert (body["model"], body["version"]) == ("tiny", "1")
    assert body["results"][0]["modalities"] == ["image", "text"]  # its empty `audio=` field counts as absent
    curl = block.find_element(By.CSS_SELECTOR, ".curl-command").text
    assert "multipart/form-data" in curl and "image=@digit.png" in curl and "text=one two" in curl
    network.assert_only_loopback()


def test_redoc_renders_every_operation_offline(browser, server, network, wait, screenshot):
    browser.get(server.base_url + "/redoc")
    section = "[data-section-id='tag/inference/operation/classify_v1_models__model__classify_post']"
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, section)))
    sections = browser.find_elements(By.CSS_SELECTOR, "[data-section-id*='/operation/']")
    rendered = {s.get_attribute("data-section-id").rsplit("/", 1)[1] for s in sections}
    assert rendered == {op["operationId"] for op in operations(server.base_url)}
    screenshot("redoc")
    network.assert_only_loopback()
    # ReDoc's one outside reference, its "API docs by Redocly" logo: refused by /redoc's CSP, never fetched
    assert network.blocked() == ["https://cdn.redoc.ly/redoc/logo-mini.svg"]


def test_swagger_authorize_sends_the_api_key(browser, keyed_server, network, wait):
    browser.get(keyed_server.base_url + "/docs")  # the page and the document load without the key
    block = wait.until(ec.presence_of_element_located((By.ID, LIST_MODELS)))
    browser.find_element(By.CSS_SELECTOR, "button.authorize").click()
    browser.find_element(By.ID, "auth-bearer-value").send_keys(API_KEY)
    browser.find_element(By.CSS_SELECTOR, ".modal-ux button.authorize").click()
    browser.find_element(By.CSS_SELECTOR, ".modal-ux button.btn-done").click()

    block.find_element(By.CSS_SELECTOR, ".opblock-summary-control").click()
    wait.until(lambda _: block.find_element(By.CSS_SELECTOR, ".try-out__btn")).click()
    block.find_element(By.CSS_SELECTOR, "button.execute").click()
    wait_for_text(wait, (By.CSS_SELECTOR, ".live-responses-table .response"), "200")
    assert (
        '"name": "tiny"'
        in block.find_element(By.CSS_SELECTOR, ".live-responses-table .response-col_description pre").text
    )
    network.drain()
    (sent,) = [r for r in network.sent.values() if r["url"] == keyed_server.base_url + "/v1/models"]
    assert sent["headers"]["Authorization"] == f"Bearer {API_KEY}"
    assert browser.execute_script("return [localStorage.length, document.cookie]") == [0, ""]  # memory only
    network.assert_only_loopback()
