// Browser audio → WAV, client-side: whatever MediaRecorder produced (WebM/Opus in Chromium, Ogg in Firefox,
// MP4 in Safari) is decoded with Web Audio's decodeAudioData, mixed down to mono and written as 16 kHz 16-bit
// PCM WAV, a format every server-side decoder reads. Plain functions, no dependencies (used by playground.js).
"use strict";

const WAV_RATE = 16000; // the rate the bundles' audio front ends use; the server resamples anything else

async function decodeMono(encoded, rate) {
  // decodeAudioData resamples to its context's rate; the channels are then averaged into one
  const decoded = await new OfflineAudioContext(1, 1, rate).decodeAudioData(encoded);
  const mono = new Float32Array(decoded.length);
  for (let channel = 0; channel < decoded.numberOfChannels; channel++) {
    const samples = decoded.getChannelData(channel);
    for (let i = 0; i < samples.length; i++) mono[i] += samples[i] / decoded.numberOfChannels;
  }
  return mono;
}

function encodeWav(samples, rate) {
  const view = new DataView(new ArrayBuffer(44 + samples.length * 2));
  const text = (offset, value) => [...value].forEach((c, i) => view.setUint8(offset + i, c.charCodeAt(0)));
  text(0, "RIFF");
  view.setUint32(4, 36 + samples.length * 2, true);
  text(8, "WAVE");
  text(12, "fmt ");
  view.setUint32(16, 16, true); // fmt chunk size
  view.setUint16(20, 1, true); // PCM
  view.setUint16(22, 1, true); // mono
  view.setUint32(24, rate, true);
  view.setUint32(28, rate * 2, true); // bytes per second
  view.setUint16(32, 2, true); // bytes per frame
  view.setUint16(34, 16, true); // bits per sample
  text(36, "data");
  view.setUint32(40, samples.length * 2, true);
  samples.forEach((s, i) => {
    const clipped = Math.max(-1, Math.min(1, s));
    view.setInt16(44 + i * 2, clipped < 0 ? clipped * 0x8000 : clipped * 0x7fff, true);
  });
  return new Blob([view], { type: "audio/wav" });
}

async function toWav(blob) {
  const samples = await decodeMono(await blob.arrayBuffer(), WAV_RATE);
  return { wav: encodeWav(samples, WAV_RATE), seconds: samples.length / WAV_RATE };
}
