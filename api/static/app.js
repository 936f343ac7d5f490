// visionq web page: plain JS, no build step.  Submits to /v1/jobs, long-polls the job,
// streams a folder over /v1/stream (WebSocket),
// draws the result on a canvas; polls /v1/stats and /v1/jobs for the board.
"use strict";

const $ = (id) => document.getElementById(id);
const COLORS = ["#ff3b30", "#34c759", "#0a84ff", "#ff9f0a", "#bf5af2", "#64d2ff", "#ffd60a"];
const FINAL = new Set(["succeeded", "failed"]);

const keyInput = $("api-key");
keyInput.value = localStorage.getItem("visionq-key") || "";
keyInput.addEventListener("change", () => localStorage.setItem("visionq-key", keyInput.value));

function headers() {
  return keyInput.value ? { Authorization: `Bearer ${keyInput.value}` } : {};
}

async function api(path, options = {}) {
  const response = await fetch(path, { ...options, headers: { ...headers(), ...(options.headers || {}) } });
  const body = await response.json().catch(() => ({ error: `HTTP ${response.status}` }));
  if (!response.ok) {
    const error = new Error(body.error || `HTTP ${response.status}`);
    error.status = response.status;
    throw error;
  }
  return body;
}

function setStatus(text, kind = "") {
  const el = $("status");
  el.textContent = text;
  el.className = `status ${kind}`;
}

// ---- submit and draw -------------------------------------------------------------------

const drop = $("drop");
["dragenter", "dragover"].forEach((ev) => drop.addEventListener(ev, (e) => {
  e.preventDefault(); drop.classList.add("over");
}));
["dragleave", "drop"].forEach((ev) => drop.addEventListener(ev, (e) => {
  e.preventDefault(); drop.classList.remove("over");
}));
drop.addEventListener("drop", (e) => e.dataTransfer.files[0] && run(e.dataTransfer.files[0]));
$("file").addEventListener("change", (e) => e.target.files[0] && run(e.target.files[0]));

async function run(file) {
  const task = $("task").value;
  const form = new FormData();
  form.append("image", file);
  if (task === "face") form.append("options", JSON.stringify({ landmarks: "68" }));
  $("labels").innerHTML = "";
  $("json").textContent = "";
  setStatus(`Uploading ${file.name}…`);
  const started = performance.now();
  try {
    const [image, accepted] = await Promise.all([
      loadImage(file),
      api(`/v1/jobs?task=${task}`, { method: "POST", body: form }),
    ]);
    drawImage(image);
    setStatus(`Queued as ${accepted.id.slice(0, 8)}… waiting for a ${task} worker`);
    let job = accepted;
    while (!FINAL.has(job.status)) {
      job = await api(`/v1/jobs/${accepted.id}?wait=20`);
      if (!FINAL.has(job.status)) setStatus(`Job is ${job.status}…`);
    }
    $("json").textContent = JSON.stringify(job, null, 2);
    if (job.status === "failed") {
      setStatus(`Failed: ${job.error} (${job.code})`, "error");
      return;
    }
    const count = draw(image, task, job.result);
    const ms = Math.round(performance.now() - started);
    const t = job.timings || {};
    setStatus(`${count} ${task === "classify" ? "labels" : task === "face" ? "faces" : "objects"}`
      + ` in ${ms} ms (queue ${t.queue_wait_ms ?? "?"} ms, inference ${t.inference_ms ?? "?"} ms)`, "done");
  } catch (error) {
    setStatus(error.status === 401 ? "This server needs an API key (field above)." : error.message, "error");
  } finally {
    refresh();
  }
}

function loadImage(file) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error("the browser cannot display this file"));
    img.src = URL.createObjectURL(file);
  });
}

function drawImage(img) {
  const canvas = $("canvas");
  const scale = Math.min(1, 760 / img.naturalWidth);
  canvas.width = Math.round(img.naturalWidth * scale);
  canvas.height = Math.round(img.naturalHeight * scale);
  canvas.dataset.scale = String(scale);
  canvas.dataset.boxes = "0";
  canvas.getContext("2d").drawImage(img, 0, 0, canvas.width, canvas.height);
}

function draw(img, task, result) {
  const canvas = $("canvas");
  const ctx = canvas.getContext("2d");
  drawImage(img);
  // Boxes are in original-image pixels, EXIF-upright, like the browser's rendering.
  const sx = canvas.width / (result.width || img.naturalWidth);
  const sy = canvas.height / (result.height || img.naturalHeight);
  const items = task === "face" ? result.faces : result.predictions;
  let boxes = 0;
  if (task === "classify") {
    renderLabels(items);
    return items.length;
  }
  items.forEach((item, i) => {
    const color = COLORS[i % COLORS.length];
    const x = item.x_min * sx, y = item.y_min * sy;
    const w = (item.x_max - item.x_min) * sx, h = (item.y_max - item.y_min) * sy;
    ctx.lineWidth = Math.max(2, canvas.width / 250);
    ctx.strokeStyle = color;
    ctx.strokeRect(x, y, w, h);
    const text = task === "face" ? `face ${i + 1}` : `${item.label} ${(item.confidence * 100).toFixed(0)}%`;
    ctx.font = `${Math.max(12, Math.round(canvas.width / 50))}px system-ui, sans-serif`;
    const tw = ctx.measureText(text).width + 8, th = parseInt(ctx.font, 10) + 6;
    const ty = y > th ? y - th : y;
    ctx.fillStyle = color;
    ctx.fillRect(x - ctx.lineWidth / 2, ty, tw, th);
    ctx.fillStyle = "#fff";
    ctx.fillText(text, x + 4 - ctx.lineWidth / 2, ty + th - 6);
    if (item.landmarks) {
      ctx.fillStyle = "#ffd60a";
      Object.values(item.landmarks).flat().forEach(([px, py]) => {
        ctx.beginPath();
        ctx.arc(px * sx, py * sy, Math.max(1.5, canvas.width / 400), 0, 2 * Math.PI);
        ctx.fill();
      });
    }
    boxes += 1;
  });
  canvas.dataset.boxes = String(boxes);
  if (task === "detect") renderLabels(items.slice(0, 10));
  return boxes;
}

function renderLabels(items) {
  $("labels").innerHTML = items.slice(0, 10).map((p) =>
    `<li>${escapeHtml(p.label)} <b>${(p.confidence * 100).toFixed(1)}%</b>`
    + `<div class="bar" style="width:${Math.max(2, p.confidence * 100)}%"></div></li>`).join("");
}

function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

// ---- live board --------------------------------------------------------------------------

async function refresh() {
  try {
    const stats = await api("/v1/stats");
    $("flower-link").href = `${location.protocol}//${location.hostname}:${stats.flower_port}/`;
    $("queues").tBodies[0].innerHTML = Object.entries(stats.queues).map(([name, q]) =>
      `<tr><td>${name}</td><td class="num">${q.length}</td><td class="num">${q.running}</td>`
      + `<td class="num">${q.succeeded}</td><td class="num">${q.failed}</td>`
      + `<td class="num">${q.workers}</td></tr>`).join("");
    $("stats-age").textContent = `updated ${new Date().toLocaleTimeString()}`;
    await refreshJobs();
  } catch (error) {
    $("stats-age").textContent = error.status === 401 ? "(API key needed)" : `(${error.message})`;
  }
}

// ---- job board: Redis, then the durable history, with filters and pages ----------------

const JOB_PAGE = 15;
let olderUrl = null;   // the `next` of the page shown
let pageUrl = null;    // the page shown when the user went back in time (null: newest)

function jobFilters() {
  const params = new URLSearchParams();
  for (const [id, name] of [["f-status", "status"], ["f-task", "task"], ["f-key", "key"]]) {
    if ($(id).value.trim()) params.set(name, $(id).value.trim());
  }
  if ($("f-source").value !== "auto") params.set("source", $("f-source").value);
  if ($("f-since").value) params.set("since", `${$("f-since").value}T00:00:00`);
  if ($("f-until").value) {
    const end = new Date(`${$("f-until").value}T00:00:00Z`);
    end.setUTCDate(end.getUTCDate() + 1);  // "to" includes that day
    params.set("until", end.toISOString().slice(0, 19));
  }
  return params;
}

async function refreshJobs() {
  const page = await api(pageUrl || `/v1/jobs?limit=${JOB_PAGE}&${jobFilters()}`);
  const next = page.next ? new URL(page.next, location.href) : null;
  olderUrl = next ? next.pathname + next.search : null;
  $("jobs-older").disabled = !olderUrl;
  $("jobs-newest").disabled = !pageUrl;
  $("jobs").tBodies[0].innerHTML = page.jobs.length ? page.jobs.map((job) =>
    `<tr><td>${job.timings.queued_at ? new Date(job.timings.queued_at).toLocaleString([],
      { dateStyle: "short", timeStyle: "medium" }) : ""}</td>`
    + `<td>${job.task}</td><td><span class="pill ${job.status}">${job.status}</span></td>`
    + `<td class="num">${job.timings.total_ms ?? ""}</td>`
    + `<td>${escapeHtml(job.submitter ?? "")}</td>`
    + `<td><code class="id">${job.id.slice(0, 8)}</code></td></tr>`).join("")
    : `<tr class="empty"><td colspan="6">no jobs</td></tr>`;
}

function showJobs() {
  refreshJobs().catch((error) => { $("stats-age").textContent = `(${error.message})`; });
}

for (const id of ["f-source", "f-status", "f-task", "f-key", "f-since", "f-until"]) {
  $(id).addEventListener("change", () => { pageUrl = null; showJobs(); });
}
$("jobs-older").addEventListener("click", () => { if (olderUrl) { pageUrl = olderUrl; showJobs(); } });
$("jobs-newest").addEventListener("click", () => { pageUrl = null; showJobs(); });
$("export").addEventListener("click", async () => {
  const params = jobFilters();
  params.delete("source");
  params.set("format", "csv");
  const response = await fetch(`/v1/jobs/export?${params}`, { headers: headers() });
  if (!response.ok) { $("stats-age").textContent = `(export: HTTP ${response.status})`; return; }
  const link = document.createElement("a");
  link.href = URL.createObjectURL(await response.blob());
  link.download = "visionq-jobs.csv";
  link.click();
  URL.revokeObjectURL(link.href);
});

// ---- stream a folder (/v1/stream) -------------------------------------------------------
// The protocol (README "Streaming"): {"auth"} first when a key is set (a browser cannot send
// headers on a WebSocket); per image a JSON header then the bytes; send only within the
// {"credit": n} grants; answers come in completion order.

function summary(task, frame) {
  if (frame.status === "rejected" || frame.status === "failed") return escapeHtml(`${frame.code}: ${frame.error}`);
  const result = frame.result || {};
  if (task === "face") return `${(result.faces || []).length} faces`;
  const top = (result.predictions || [])[0];
  const n = (result.predictions || []).length;
  if (!top) return "nothing found";
  return escapeHtml(`${task === "detect" ? `${n} objects, ` : ""}${top.label} ${(top.confidence * 100).toFixed(0)}%`);
}

function streamFiles(fileList) {
  const files = [...fileList].filter((f) => f.type.startsWith("image/"));
  if (!files.length) return;
  const task = $("task").value;
  const body = $("stream-results").tBodies[0];
  const status = $("stream-status");
  body.innerHTML = "";
  const rows = new Map();
  files.forEach((file, i) => {
    const row = body.insertRow();
    row.dataset.ref = String(i);
    row.innerHTML = `<td>${escapeHtml(file.name)}</td><td><span class="pill">waiting</span></td><td></td><td class="num"></td>`;
    rows.set(String(i), row);
  });
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const ws = new WebSocket(`${scheme}://${location.host}/v1/stream`);
  let credits = 0, next = 0, finished = 0, failed = 0;
  const started = performance.now();
  const show = (text, kind = "") => { status.textContent = text; status.className = `status ${kind}`; };
  show(`Connecting… 0 / ${files.length}`);

  async function pump() {
    while (credits > 0 && next < files.length) {
      const index = next++;
      credits -= 1;
      const data = await files[index].arrayBuffer();
      ws.send(JSON.stringify({ task, ref: String(index) }));
      ws.send(data);  // right after its header: nothing can come between the two
    }
  }

  ws.onopen = () => { if (keyInput.value) ws.send(JSON.stringify({ auth: keyInput.value })); };
  ws.onmessage = (event) => {
    const frame = JSON.parse(event.data);
    if (frame.credit) { credits += frame.credit; pump(); return; }
    const row = rows.get(frame.ref);
    if (!row) return;
    row.cells[1].innerHTML = `<span class="pill ${frame.status}">${frame.status}</span>`;
    if (frame.status === "queued") return;
    row.cells[2].innerHTML = summary(task, frame);
    row.cells[3].textContent = frame.timings ? frame.timings.total_ms ?? "" : "";
    finished += 1;
    if (frame.status !== "succeeded") failed += 1;
    const seconds = (performance.now() - started) / 1000;
    if (finished === files.length) {
      show(`${finished} / ${files.length} done in ${seconds.toFixed(1)} s`
        + (failed ? `, ${failed} failed` : ""), failed ? "error" : "done");
      ws.close();
    } else {
      show(`${finished} / ${files.length} (${(finished / seconds).toFixed(1)} images/s)`);
    }
  };
  ws.onclose = (event) => {
    if (finished < files.length) {
      show(event.code === 4401 ? "This server needs an API key (field above)."
        : `Stream closed (${event.code}${event.reason ? `: ${event.reason}` : ""}) after ${finished} of ${files.length}`, "error");
    }
    refresh();
  };
}

$("stream-files").addEventListener("change", (e) => streamFiles(e.target.files));
$("stream-dir").addEventListener("change", (e) => streamFiles(e.target.files));

refresh();
setInterval(refresh, 2000);
