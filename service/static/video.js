// fusionserve playground, video: the chosen file goes to the server as it is (MP4/MOV, WebM/MKV, AVI), and a
// video item's answer per segment is drawn as a timeline, one bar per segment from start_s to end_s, named by
// its top label. Plain JavaScript; playground.js calls setVideo, wireVideo, segmentParams and renderSegments.
"use strict";

const videoState = { file: null };

function setVideo(file) {
  videoState.file = file || null;
  const preview = document.getElementById("video-preview");
  if (preview.src) URL.revokeObjectURL(preview.src);
  preview.hidden = !file;
  if (file) preview.src = URL.createObjectURL(file); // media-src blob: in the page's policy
  else preview.removeAttribute("src");
  document.getElementById("video-status").textContent = file ? `${file.name}, ${file.size} bytes` : "";
}

function wireVideo() {
  document.getElementById("video-file").addEventListener("change", (event) => setVideo(event.target.files[0]));
  document.getElementById("video-clear").addEventListener("click", () => {
    document.getElementById("video-file").value = "";
    setVideo(null);
  });
}

// segment_s / overlap_s: query options of the request, left out when empty (the model's defaults)
function segmentParams(params) {
  for (const name of ["segment_s", "overlap_s"]) {
    const value = document.getElementById(name.replace("_", "-")).value.trim();
    if (value) params.set(name, value);
  }
}

function segmentTitle(segment) {
  const { label, score } = segment.labels[0];
  const span = `${segment.start_s.toFixed(2)}–${segment.end_s.toFixed(2)} s`;
  const slots = segment.modalities.length ? segment.modalities.join(" + ") : "no picture or sound";
  return `${span}: ${label} ${score.toFixed(3)} (${slots})`;
}

// One row per segment (overlapping segments would hide each other on one line), each bar placed on the clip's
// span: left = start / end of the last segment, width = its length / that end (CSSOM: allowed by the policy).
function renderSegments(result) {
  const block = document.getElementById("segments-block");
  const segments = result.segments || [];
  block.hidden = segments.length === 0;
  const end = Math.max(...segments.map((s) => s.end_s), 0);
  document.getElementById("segments-summary").textContent = segments.length
    ? `· ${segments.length} segments over ${end.toFixed(2)} s`
    : "";
  document.getElementById("segments").replaceChildren(
    ...segments.map((segment) => {
      const row = document.createElement("li");
      row.className = "segment-row";
      row.dataset.start = String(segment.start_s);
      row.dataset.end = String(segment.end_s);
      const track = document.createElement("span");
      track.className = "segment-track";
      const bar = document.createElement("span");
      bar.className = "segment-bar";
      bar.style.left = `${((segment.start_s / end) * 100).toFixed(2)}%`;
      bar.style.width = `${(((segment.end_s - segment.start_s) / end) * 100).toFixed(2)}%`;
      bar.textContent = segment.labels[0].label; // textContent only: labels come from the server
      bar.title = segmentTitle(segment);
      track.append(bar);
      const text = document.createElement("span");
      text.className = "segment-text muted";
      text.textContent = segmentTitle(segment);
      row.append(track, text);
      return row;
    }),
  );
}
