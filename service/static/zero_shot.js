// The playground's zero-shot mode: the chosen item against labels the user types, through the model's text
// encoder (POST v1/models/{m}/zero-shot). Sent as JSON with the media base64-encoded, not as a form: a form
// would need one part per label, and the server takes few parts per form (FUSIONSERVE_MAX_FORM_PARTS).
"use strict";

function zeroShotLabels() {
  return $("zs-labels").value.split(",").map((label) => label.trim()).filter((label) => label !== "");
}

function zeroShotTemplate() {
  // a JSON object is a template per modality ({"image": "a photo of {}"}); anything else is one for all
  const text = $("zs-template").value.trim();
  if (!text) return undefined;
  if (text.startsWith("{") && text.endsWith("}")) {
    try {
      const parsed = JSON.parse(text);
      if (parsed && typeof parsed === "object" && !Array.isArray(parsed)) return parsed;
    } catch (error) {
      // "{} photo" and the like are templates, not JSON
    }
  }
  return text;
}

function blobBase64(blob) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(String(reader.result).split(",", 2)[1] || "");
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(blob); // data:<type>;base64,<data>: the part after the comma is the file
  });
}

async function zeroShotItem() {
  const has = (modality) => state.modalities.includes(modality);
  const item = {};
  if (state.image && has("image")) item.image = await blobBase64(state.image);
  if (state.audio && has("audio")) item.audio = await blobBase64(state.audio.blob);
  if ($("text").value.trim() && has("text")) item.text = $("text").value;
  if (videoState.file && has("video")) item.video = await blobBase64(videoState.file);
  return item; // nothing chosen: the server's 422 says what is needed
}

async function zeroShotBody() {
  const body = { inputs: [await zeroShotItem()], labels: zeroShotLabels() };
  const template = zeroShotTemplate();
  if (template !== undefined) body.template = template;
  return JSON.stringify(body);
}

async function zeroShotRequest(model) {
  const headers = { "Content-Type": "application/json" };
  const options = { method: "POST", headers, body: await zeroShotBody() };
  return { path: `v1/models/${encodeURIComponent(model)}/zero-shot`, options, render: renderZeroShot };
}

// Which task the form runs: classify shows top-k, zero-shot its labels and template.
function setTask(task) {
  const zeroShot = task === "zero-shot";
  $("zero-shot-fieldset").hidden = !zeroShot;
  $("top-k-label").hidden = zeroShot;
  $("submit").textContent = zeroShot ? "Rank labels" : "Classify";
}

function describeZeroShot() {
  // labels are embedded by the text encoder: a model without one cannot rank them
  const canRank = state.modalities.includes("text");
  const option = $("task").querySelector('option[value="zero-shot"]');
  option.disabled = !canRank;
  if (!canRank && $("task").value === "zero-shot") $("task").value = "classify";
  $("zs-note").textContent = canRank ? "" : "this model has no text encoder to embed labels with";
  setTask($("task").value);
}

function renderZeroShot(body, timingHeader) {
  renderAnswer(body, timingHeader); // every label, best first; each slot's own best label and whether it agrees
  const how = body.calibrated ? "calibrated" : "uncalibrated";
  $("answer-summary").textContent += ` · zero-shot, ${how} (temperature ${body.temperature})`;
}

function wireZeroShot() {
  $("task").addEventListener("change", () => setTask($("task").value));
  setTask($("task").value);
}
