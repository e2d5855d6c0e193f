"""The playground at / in headless Chromium with the network off: it lists the models, sends an image + text
(or a microphone recording, turned into WAV in the page) as a multipart classify, and shows what the API
answered: the fused top-k with bars, per-modality evidence, the Server-Timing breakdown, the API's errors."""

from __future__ import annotations

import base64
import io

import httpx
import numpy as np
import pytest
import soundfile
from selenium.webdriver.common.by import By

from tests import media
from tests.browser.conftest import API_KEY, wait_for_text
from tests.bundles import sample_inputs

pytestmark = pytest.mark.slow
LABEL_ROWS = (By.CSS_SELECTOR, "#labels .label-row")


def open_playground(browser, wait, base_url: str) -> None:
    browser.get(base_url + "/")
    wait_for_text(wait, (By.ID, "model-info"), "version 1")


def answer_rows(browser) -> list[tuple[str, str, str]]:
    """(label, score text, bar width) per row of the answer."""
    rows = []
    for row in browser.find_elements(*LABEL_ROWS):
        fill = row.find_element(By.CSS_SELECTOR, ".bar-fill").value_of_css_property("width")
        bar = row.find_element(By.CSS_SELECTOR, ".bar").value_of_css_property("width")
        fraction = f"{float(fill.removesuffix('px')) / float(bar.removesuffix('px')):.2f}"
        rows.append(
            (
                row.find_element(By.CSS_SELECTOR, ".label-name").text,
                row.find_element(By.CSS_SELECTOR, ".score").text,
                fraction,
            )
        )
    return rows


def submit(browser, wait) -> None:
    button = browser.find_element(By.ID, "submit")
    button.click()  # the page disables the button until the API has answered
    wait.until(lambda _: button.is_enabled())


def test_playground_classifies_an_image_and_text(browser, server, network, wait, tmp_path, screenshot):
    inputs = sample_inputs(seed=2)
    image = tmp_path / "digit.png"
    image.write_bytes(inputs["image"])
    open_playground(browser, wait, server.base_url)
    browser.find_element(By.ID, "image-file").send_keys(str(image))
    wait.until(lambda _: browser.execute_script("return document.getElementById('image-preview').naturalWidth") > 0)
    browser.find_element(By.ID, "text").send_keys(inputs["text"])
    top_k = browser.find_element(By.ID, "top-k")
    top_k.clear()
    top_k.send_keys("3")
    submit(browser, wait)

    files = {"image": ("digit.png", inputs["image"], "image/png"), "text": (None, inputs["text"])}
    expected = httpx.post(server.base_url + "/v1/models/tiny/classify?top_k=3&explain=true", files=files).json()
    (result,) = expected["results"]
    assert answer_rows(browser) == [(r["label"], f"{r['score']:.3f}", f"{r['score']:.2f}") for r in result["labels"]]
    assert browser.find_element(By.ID, "answer-summary").text == "tiny v1 · from image + text"
    evidence = [row.text.split("\n")[0].split()[:2] for row in browser.find_elements(By.CSS_SELECTOR, ".evidence-row")]
    assert evidence == [[e["modality"], e["label"]] for e in result["evidence"]]
    stages = [row.get_attribute("data-stage") for row in browser.find_elements(By.CSS_SELECTOR, ".timing-row")]
    assert stages[:4] == ["decode", "queue", "infer", "total"]
    assert {"batch-image", "batch-text", "batch-fusion"} <= set(stages)
    screenshot("playground")

    network.assert_only_loopback()
    (sent,) = [r for r in network.sent.values() if "/classify" in r["url"]]
    assert sent["url"] == server.base_url + "/v1/models/tiny/classify?top_k=3&explain=true"
    assert sent["headers"]["Content-Type"].startswith("multipart/form-data; boundary=")


def shown_as(response: httpx.Response) -> str:
    """How the playground shows an API error: the status, the server's message, the field it names."""
    error = response.json()["error"]
    return f"{response.status_code}: {error['message']}" + (f" (field: {error['field']})" if error["field"] else "")


def test_playground_shows_the_api_error_messages(browser, server, network, wait, tmp_path):
    classify = server.base_url + "/v1/models/tiny/classify"
    open_playground(browser, wait, server.base_url)
    submit(browser, wait)  # nothing chosen: the API says what is needed
    empty = httpx.post(classify, content=b"--b--\r\n", headers={"Content-Type": "multipart/form-data; boundary=b"})
    assert browser.find_element(By.ID, "error").text == shown_as(empty)

    not_an_image = tmp_path / "photo.png"
    not_an_image.write_bytes(b"these bytes are no image at all")
    browser.find_element(By.ID, "image-file").send_keys(str(not_an_image))
    submit(browser, wait)
    refused = httpx.post(classify, files={"image": ("photo.png", not_an_image.read_bytes(), "image/png")})
    assert refused.status_code in (415, 422)
    assert browser.find_element(By.ID, "error").text == shown_as(refused)
    assert "(field: image)" in browser.find_element(By.ID, "error").text
    assert not browser.find_element(By.ID, "results").is_displayed()
    network.assert_only_loopback()


def test_playground_behind_an_api_key(browser, keyed_server, network, wait):
    browser.get(keyed_server.base_url + "/")  # the page itself loads without the key
    wait_for_text(wait, (By.ID, "error"), "401: missing or wrong API key (field: authorization)")
    assert browser.find_elements(By.CSS_SELECTOR, "#model option") == []

    browser.find_element(By.ID, "api-key").send_keys(API_KEY)
    browser.find_element(By.ID, "reload").click()
    wait_for_text(wait, (By.ID, "model-info"), "version 1")
    assert not browser.find_element(By.ID, "error").is_displayed()
    browser.find_element(By.ID, "text").send_keys("one two three")
    submit(browser, wait)
    assert [row[0] for row in answer_rows(browser)]  # an answer, with the key
    assert browser.find_element(By.ID, "answer-summary").text == "tiny v1 · from text"

    network.drain()
    (sent,) = [r for r in network.sent.values() if "/classify" in r["url"]]
    assert sent["headers"]["Authorization"] == f"Bearer {API_KEY}"
    stored = browser.execute_script("return [localStorage.length, sessionStorage.length, document.cookie]")
    assert stored == [0, 0, ""]  # the key was kept in the page's memory only
    browser.refresh()
    wait_for_text(wait, (By.ID, "error"), "401: missing or wrong API key")  # and a reload forgot it
    network.assert_only_loopback()


def chosen_audio(browser) -> bytes:
    """The bytes the playground will send as `audio` (its state: a file as chosen, or the WAV it made)."""
    script = """
        const done = arguments[arguments.length - 1];
        state.audio.blob.arrayBuffer().then((buffer) => {
            let binary = "";
            new Uint8Array(buffer).forEach((byte) => { binary += String.fromCharCode(byte); });
            done(btoa(binary));
        });
    """
    return base64.b64decode(browser.execute_async_script(script))


def test_playground_records_the_microphone_as_16khz_wav(browser, server, network, wait):
    # Chromium's fake capture device (--use-fake-device-for-media-stream) plays a beep into MediaRecorder
    open_playground(browser, wait, server.base_url)
    browser.find_element(By.ID, "record").click()
    wait_for_text(wait, (By.ID, "audio-status"), "recording")
    browser.execute_script("return new Promise((resolve) => setTimeout(resolve, 1200))")
    browser.find_element(By.ID, "stop").click()
    wait_for_text(wait, (By.ID, "audio-status"), "16 kHz mono WAV")

    samples, rate = soundfile.read(io.BytesIO(chosen_audio(browser)), dtype="float32")
    info = soundfile.info(io.BytesIO(chosen_audio(browser)))
    assert (info.format, info.subtype, info.channels, rate) == ("WAV", "PCM_16", 1, 16_000)
    assert 0.8 < len(samples) / rate < 5.0
    assert float(np.sqrt(np.mean(samples**2))) > 0.01  # the beep, not silence

    submit(browser, wait)
    assert browser.find_element(By.ID, "answer-summary").text == "tiny v1 · from audio"
    assert len(browser.find_elements(*LABEL_ROWS)) == 4  # top-5 of a 4-label model
    network.assert_only_loopback()


def test_playground_sends_wav_as_is_and_converts_mp3_to_wav(browser, server, network, wait, tmp_path):
    tone = 0.3 * np.sin(2 * np.pi * 440 * np.arange(44_100) / 44_100)
    wav, mp3 = tmp_path / "clip.wav", tmp_path / "clip.mp3"
    wav.write_bytes(media.audio(1.0, rate=16_000))
    soundfile.write(mp3, np.stack([tone, tone], axis=1), 44_100, format="MP3")
    refused = httpx.post(server.base_url + "/v1/models/tiny/classify", files={"audio": ("clip.mp3", mp3.read_bytes())})
    assert refused.status_code == 415  # the server does not read MP3: the page must convert it

    open_playground(browser, wait, server.base_url)
    browser.find_element(By.ID, "audio-file").send_keys(str(wav))
    wait_for_text(wait, (By.ID, "audio-status"), "clip.wav")
    assert chosen_audio(browser) == wav.read_bytes()  # a format the server reads goes as it is

    browser.find_element(By.ID, "audio-file").send_keys(str(mp3))
    wait_for_text(wait, (By.ID, "audio-status"), "clip.mp3 → ")
    samples, rate = soundfile.read(io.BytesIO(chosen_audio(browser)), dtype="float32")
    assert rate == 16_000 and samples.ndim == 1  # 44.1 kHz stereo MP3 → 16 kHz mono WAV
    assert abs(len(samples) / rate - 1.0) < 0.1  # MP3 frames pad the ends a little
    assert float(np.sqrt(np.mean(samples**2))) == pytest.approx(0.3 / np.sqrt(2), rel=0.1)  # the tone's RMS
    submit(browser, wait)
    assert browser.find_element(By.ID, "answer-summary").text == "tiny v1 · from audio"
    network.assert_only_loopback()
