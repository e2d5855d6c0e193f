"""The playground's zero-shot mode in headless Chromium with the network off: typed labels and a template beside
an image + text, sent as one JSON zero-shot request; the page shows every label ranked with its score and bar, each
modality's own best label and whether it agrees, as the API itself answers the same request."""

from __future__ import annotations

import base64
import json

import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from tests.browser.test_playground import answer_rows, open_playground, submit
from tests.bundles import sample_inputs

pytestmark = pytest.mark.slow
LABELS = ["cat", "dog", "bird", "seven"]


def test_playground_ranks_typed_labels_for_an_image_and_text(browser, server, network, wait, tmp_path, screenshot):
    inputs = sample_inputs(seed=6)
    image = tmp_path / "digit.png"
    image.write_bytes(inputs["image"])
    open_playground(browser, wait, server.base_url)
    assert not browser.find_element(By.ID, "zero-shot-fieldset").is_displayed()  # classify is the default task
    Select(browser.find_element(By.ID, "task")).select_by_value("zero-shot")
    assert browser.find_element(By.ID, "submit").text == "Rank labels"
    assert not browser.find_element(By.ID, "top-k").is_displayed()
    browser.find_element(By.ID, "zs-labels").send_keys(" cat, dog ,bird,, seven ")
    browser.find_element(By.ID, "zs-template").send_keys("a photo of {}")
    browser.find_element(By.ID, "image-file").send_keys(str(image))
    wait.until(lambda _: browser.execute_script("return document.getElementById('image-preview').naturalWidth") > 0)
    browser.find_element(By.ID, "text").send_keys(inputs["text"])
    submit(browser, wait)

    item = {"image": base64.b64encode(inputs["image"]).decode(), "text": inputs["text"]}
    body = {"inputs": [item], "labels": LABELS, "template": "a photo of {}"}
    expected = httpx.post(server.base_url + "/v1/models/tiny/zero-shot", json=body, timeout=60).json()
    (result,) = expected["results"]
    assert [r["label"] for r in result["labels"]] != [] and len(result["labels"]) == len(LABELS)
    assert answer_rows(browser) == [(r["label"], f"{r['score']:.3f}", f"{r['score']:.2f}") for r in result["labels"]]
    summary = browser.find_element(By.ID, "answer-summary").text
    assert summary == f"tiny v1 · from image + text · zero-shot, uncalibrated (temperature {expected['temperature']})"
    cells = [[td.text for td in row.find_elements(By.TAG_NAME, "td")] for row in
             browser.find_elements(By.CSS_SELECTOR, ".evidence-row")]  # fmt: skip
    assert [(c[0], c[1], c[3]) for c in cells] == [
        (e["modality"], e["label"], "yes" if e["agrees"] else "no") for e in result["evidence"]
    ]
    agreement = "· all agree" if result["agreement"] else "· they disagree"
    assert browser.find_element(By.ID, "agreement").text == agreement
    screenshot("playground-zero-shot")

    network.assert_only_loopback()
    (sent,) = [r for r in network.sent.values() if "/zero-shot" in r["url"]]
    assert sent["url"] == server.base_url + "/v1/models/tiny/zero-shot"
    assert sent["headers"]["Content-Type"] == "application/json"
    assert json.loads(sent["postData"]) == body  # the labels trimmed, the empty one dropped

    browser.find_element(By.ID, "zs-labels").clear()  # no labels: the API's refusal, naming the field
    submit(browser, wait)
    assert "(field: labels)" in browser.find_element(By.ID, "error").text
