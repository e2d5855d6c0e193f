// fusionserve playground: plain JavaScript, no build step, no third-party code.
// The API key lives in the password field only (this page's memory): never in localStorage, sessionStorage
// or a cookie, so a reload forgets it. Every URL is relative, so the page works under a proxy prefix.
"use strict";

const state = { image: null, audio: null, explain: false, modalities: [], recorder: null };
const $ = (id) => document.getElementById(id);

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text; // textContent only: labels come from the server
  return node;
}

// ---- the API ---------------------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, message, field) {
    super(message);
    this.status = status;
    this.field = field;
  }
}

async function api(path, options = {}) {
  const key = $("api-key").value;
  const headers = { ...(options.headers || {}), ...(key ? { Authorization: `Bearer ${key}` } : {}) };
  const response = await fetch(path, { ...options, headers });
  const body = await response.json().catch(() => null);
  if (!response.ok) {
    const error = (body && body.error) || {};
    throw new ApiError(response.status, error.message || response.statusText, error.field);
  }
  return { body, response };
}

function showError(error) {
  const box = $("error");
  if (error instanceof ApiError) {
    box.textContent = `${error.status}: ${error.message}` + (error.field ? ` (field: ${error.field})` : "");
  } else {
    box.textContent = String(error.message || error);
  }
  box.hidden = false;
}

function clearError() {
  $("error").hidden = true;
  $("error").textContent = "";
}

// ---- models ----------------------------------------------------------------------------------------------

async function loadModels() {
  clearError();
  const select = $("model");
  select.replaceChildren();
  $("model-info").textContent = "";
  try {
    const { body } = await api("v1/models");
    for (const model of body.models) {
      const option = element("option", "", model.default_version ? model.name : `${model.name} (not ready)`);
      option.value = model.name;
      option.disabled = !model.default_version;
      select.append(option);
    }
    if (select.value) await describeModel(select.value);
  } catch (error) {
    showError(error);
  }
}

async function describeModel(name) {
  const { body } = await api(`v1/models/${encodeURIComponent(name)}`);
  const current = body.versions.find((v) => v.version === body.default_version) || {};
  state.explain = current.explain === true; // explain=true only where the fusion has per-modality heads
  state.modalities = current.modalities || [];
  for (const fieldset of document.querySelectorAll("fieldset[data-modality]")) {
    const present = state.modalities.includes(fieldset.dataset.modality);
    fieldset.disabled = !present;
    fieldset.querySelector(".absent-note").textContent = present ? "" : "this model has no such encoder";
  }
  const labels = (current.labels || []).length;
  $("model-info").textContent = `version ${body.default_version} · ${state.modalities.join(", ")} · ${labels} labels`;
  describeZeroShot(); // zero_shot.js: only a model with a text encoder ranks typed labels
}

// ---- image -----------------------------------------------------------------------------------------------

function setImage(file) {
  state.image = file || null;
  const preview = $("image-preview");
  if (preview.src) URL.revokeObjectURL(preview.src);
  preview.hidden = !file;
  if (file) preview.src = URL.createObjectURL(file);
  else preview.removeAttribute("src");
}

function wireImage() {
  const drop = $("image-drop");
  $("image-file").addEventListener("change", (event) => setImage(event.target.files[0]));
  $("image-clear").addEventListener("click", () => {
    $("image-file").value = "";
    setImage(null);
  });
  drop.addEventListener("dragover", (event) => {
    event.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    const file = event.dataTransfer.files[0];
    if (file && file.type.startsWith("image/")) setImage(file);
  });
}

// ---- audio: WAV/FLAC/OGG files go as they are; other files and recordings as 16 kHz mono WAV (wav.js) ----

const SERVER_AUDIO = /\.(wav|flac|ogg|oga)$/i; // the containers the server decodes itself

function setAudio(blob, name, note) {
  state.audio = blob ? { blob, name } : null;
  const preview = $("audio-preview");
  if (preview.src) URL.revokeObjectURL(preview.src);
  preview.hidden = !blob;
  if (blob) preview.src = URL.createObjectURL(blob);
  else preview.removeAttribute("src");
  $("audio-status").textContent = note || "";
}

async function chooseAudioFile(file) {
  clearError();
  if (!file) return setAudio(null);
  if (SERVER_AUDIO.test(file.name)) return setAudio(file, file.name, `${file.name}, ${file.size} bytes`);
  $("audio-status").textContent = `converting ${file.name}…`;
  const { wav, seconds } = await toWav(file); // MP3, M4A, WebM…: the browser decodes what the server does not
  const name = `${file.name.replace(/\.[^.]*$/, "")}.wav`;
  setAudio(wav, name, `${file.name} → ${seconds.toFixed(1)} s 16 kHz mono WAV`);
}

async function startRecording() {
  clearError();
  if (!navigator.mediaDevices || !window.MediaRecorder) {
    throw new Error("recording needs a browser with MediaRecorder, on https or localhost");
  }
  const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
  const recorder = new MediaRecorder(stream);
  const chunks = [];
  recorder.ondataavailable = (event) => chunks.push(event.data);
  recorder.onstop = async () => {
    stream.getTracks().forEach((track) => track.stop());
    try {
      const { wav, seconds } = await toWav(new Blob(chunks, { type: recorder.mimeType }));
      setAudio(wav, "recording.wav", `recorded ${seconds.toFixed(1)} s (16 kHz mono WAV)`);
    } catch (error) {
      showError(error);
    }
  };
  recorder.start();
  state.recorder = recorder;
  $("record").disabled = true;
  $("stop").disabled = false;
  $("audio-status").textContent = "recording…";
}

function stopRecording() {
  if (state.recorder) state.recorder.stop();
  state.recorder = null;
  $("record").disabled = false;
  $("stop").disabled = true;
}

function wireAudio() {
  $("audio-file").addEventListener("change", (event) => {
    chooseAudioFile(event.target.files[0]).catch((error) => {
      setAudio(null);
      showError(new Error(`the browser cannot decode this audio file: ${error.message}`));
    });
  });
  $("audio-clear").addEventListener("click", () => {
    $("audio-file").value = "";
    setAudio(null);
  });
  $("record").addEventListener("click", () => startRecording().catch(showError));
  $("stop").addEventListener("click", stopRecording);
}

// ---- classify and the answer -----------------------------------------------------------------------------

function buildForm() {
  const form = new FormData();
  const has = (modality) => state.modalities.includes(modality);
  if (state.image && has("image")) form.append("image", state.image, state.image.name || "image");
  if (state.audio && has("audio")) form.append("audio", state.audio.blob, state.audio.name || "audio");
  if ($("text").value.trim() && has("text")) form.append("text", $("text").value);
  if (videoState.file && has("video")) form.append("video", videoState.file, videoState.file.name || "video");
  return form; // nothing chosen: the server's 422 says what is needed
}

// classify: one multipart item; zero-shot (zero_shot.js): the item and the typed labels as JSON
async function classifyRequest(model) {
  const params = new URLSearchParams({ top_k: $("top-k").value || "5" });
  if (state.explain) params.set("explain", "true");
  if (state.modalities.includes("video")) segmentParams(params);
  const path = `v1/models/${encodeURIComponent(model)}/classify?${params}`;
  return { path, options: { method: "POST", body: buildForm() }, render: renderAnswer };
}

async function classify(event) {
  event.preventDefault();
  clearError();
  const model = $("model").value;
  if (!model) return showError(new Error("choose a model first (enter the API key if the server has one)"));
  const zeroShot = $("task").value === "zero-shot";
  $("status").textContent = zeroShot ? "ranking labels…" : "classifying…";
  $("submit").disabled = true;
  try {
    const { path, options, render } = await (zeroShot ? zeroShotRequest(model) : classifyRequest(model));
    const { body, response } = await api(path, options);
    render(body, response.headers.get("Server-Timing"));
    $("status").textContent = "done";
  } catch (error) {
    $("status").textContent = "";
    showError(error);
  } finally {
    $("submit").disabled = false;
  }
}

function bar(fraction) {
  const outer = element("span", "bar");
  const fill = element("span", "bar-fill");
  fill.style.width = `${(Math.max(0, Math.min(1, fraction)) * 100).toFixed(1)}%`; // CSSOM: allowed by the CSP
  outer.append(fill);
  return outer;
}

function renderAnswer(body, timingHeader) {
  const [result] = body.results;
  $("answer-summary").textContent = `${body.model} v${body.version} · from ${result.modalities.join(" + ")}`;
  $("labels").replaceChildren(
    ...result.labels.map(({ label, score }) => {
      const row = element("li", "label-row");
      row.append(element("span", "label-name", label), bar(score), element("span", "score", score.toFixed(3)));
      return row;
    }),
  );
  renderEvidence(result);
  renderSegments(result);
  renderTiming(parseServerTiming(timingHeader));
  $("results").hidden = false;
}

function renderEvidence(result) {
  const evidence = result.evidence || [];
  $("evidence-block").hidden = evidence.length === 0;
  $("agreement").textContent = result.agreement ? "· all agree" : "· they disagree";
  $("evidence").tBodies[0].replaceChildren(
    ...evidence.map((e) => {
      const row = element("tr", "evidence-row");
      const score = element("td");
      score.append(bar(e.score), element("span", "score", e.score.toFixed(3)));
      row.append(element("td", "", e.modality), element("td", "", e.label), score, element("td", "", e.agrees ? "yes" : "no"));
      return row;
    }),
  );
}

function parseServerTiming(header) {
  // entries are comma-separated, but a quoted desc may hold commas too (batch sizes "1,3")
  return (header || "").match(/(?:[^,"]|"[^"]*")+/g)?.map((entry) => {
    const [name, ...params] = entry.split(";").map((part) => part.trim());
    const metric = { name };
    for (const param of params) {
      const [key, value = ""] = param.split("=");
      metric[key] = value.replace(/^"|"$/g, "");
    }
    return metric;
  }) || [];
}

function renderTiming(metrics) {
  const total = Number((metrics.find((m) => m.name === "total") || {}).dur) || 0;
  $("timing").tBodies[0].replaceChildren(
    ...metrics.map((m) => {
      const row = element("tr", "timing-row");
      row.dataset.stage = m.name;
      const graph = element("td");
      if (m.dur !== undefined && total > 0) graph.append(bar(Number(m.dur) / total));
      const value = m.dur !== undefined ? Number(m.dur).toFixed(2) : `batch sizes ${m.desc}`;
      row.append(element("td", "", m.name), element("td", "", value), graph);
      return row;
    }),
  );
}

document.addEventListener("DOMContentLoaded", () => {
  wireImage();
  wireAudio();
  wireVideo();
  wireZeroShot();
  $("classify-form").addEventListener("submit", classify);
  $("reload").addEventListener("click", loadModels);
  $("api-key").addEventListener("change", loadModels);
  $("model").addEventListener("change", () => describeModel($("model").value).catch(showError));
  loadModels();
});
