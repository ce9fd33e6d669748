// The page of `diffusekit serve`: it uses only the HTTP API (see diffusekit/web/app.py), nothing from elsewhere.
"use strict";

const TOKEN = new URLSearchParams(location.search).get("token");
const TASK_NAMES = {generate: "Generate", inpaint: "Inpaint", superres: "Super-resolution", mri: "MRI",
                    forward: "Forward process"};
const state = {models: {}, model: null, task: "generate", job: null, source: null, example: 0, upload: null,
               fwdExample: 0, fwdUpload: null, maskDirty: false, inputImage: null};
const $ = (id) => document.getElementById(id);

function withToken(url) {
  return TOKEN ? url + (url.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(TOKEN) : url;
}

async function api(path, options = {}) {
  const headers = {"Content-Type": "application/json"};
  if (TOKEN) headers.Authorization = "Bearer " + TOKEN;
  const response = await fetch(path, {...options, headers});
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

function setStatus(text, isError = false) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "";
}

// ---- models and tasks ----------------------------------------------------------------------------------------

async function loadModels() {
  const list = await api("/api/models");
  for (const m of list) {
    state.models[m.name] = m;
    $("model").add(new Option(`${m.name} (${m.data}, ${m.kind})`, m.name));
  }
  $("model").addEventListener("change", () => chooseModel($("model").value));
  if (list.length) chooseModel(list[0].name);
}

function chooseModel(name) {
  const m = state.models[name];
  state.model = m;
  $("model").value = name;
  $("model-info").textContent = `${m.shape.join("x")}${m.latent ? " (latent)" : ""}, ${m.cond === "none" ?
    "unconditional" : m.cond + "-conditional"}, step ${m.step}`;
  const sampler = $("sampler");
  const previous = sampler.value;
  sampler.innerHTML = "";
  for (const s of Object.keys(m.samplers)) sampler.add(new Option(s, s));
  sampler.value = m.samplers[previous] ? previous : "dpmpp-2m";
  samplerOptions();
  const label = $("label");
  label.length = 1;
  (m.class_names || []).forEach((c, i) => label.add(new Option(c, i)));
  $("label-row").style.display = m.cond === "label" ? "" : "none";
  $("prompt-row").style.display = $("negative-row").style.display = m.cond === "text" ? "" : "none";
  $("guidance-row").style.display = m.cond === "none" ? "none" : "";
  $("method").value = m.latent ? "dps" : "ddnm";  // a latent run reconstructs through its decoder: DPS only
  const nav = $("tasks");
  nav.innerHTML = "";
  const tasks = [...m.tasks, "forward"];
  for (const t of tasks) {
    const b = document.createElement("button");
    b.textContent = TASK_NAMES[t];
    b.dataset.task = t;
    b.id = "task-" + t;
    b.addEventListener("click", () => chooseTask(t));
    nav.appendChild(b);
  }
  chooseTask(tasks.includes(state.task) ? state.task : "generate");
}

function chooseTask(task) {
  state.task = task;
  for (const b of $("tasks").children) b.classList.toggle("active", b.dataset.task === task);
  const panel = task === "generate" ? "generate" : task === "forward" ? "forward" : "reconstruct";
  for (const id of ["generate", "reconstruct", "forward"]) {
    $(id + "-controls").classList.toggle("shown", id === panel);
  }
  $("run-row").style.display = task === "forward" ? "none" : "";
  $("run").textContent = task === "generate" ? "Generate" : "Reconstruct";
  $("mask-area").style.display = task === "inpaint" ? "" : "none";
  $("scale-row").style.display = task === "superres" ? "" : "none";
  $("accel-row").style.display = task === "mri" ? "" : "none";
  if (panel === "reconstruct") showInput();
  if (panel === "forward") forwardStep();
}

function samplerOptions() {
  const box = $("sampler-options");
  box.innerHTML = "";
  const options = state.model.samplers[$("sampler").value] || {};
  for (const [key, value] of Object.entries(options)) {
    const label = document.createElement("label");
    label.textContent = key + " ";
    const input = document.createElement("input");
    input.type = typeof value === "number" ? "number" : "text";
    if (typeof value === "number") input.step = "any";
    input.value = value === null ? "" : value;
    input.dataset.option = key;
    input.dataset.default = value === null ? "" : String(value);
    input.id = "option-" + key;
    label.appendChild(input);
    box.appendChild(label);
  }
}

// ---- the request of each task ----------------------------------------------------------------------------------

function readOptions() {
  const options = {};
  for (const input of $("sampler-options").querySelectorAll("input")) {
    if (input.value === input.dataset.default || input.value === "") continue;
    options[input.dataset.option] = input.type === "number" ? Number(input.value) : input.value;
  }
  return options;
}

function generateRequest() {
  const m = state.model;
  const body = {model: m.name, task: "generate", sampler: $("sampler").value, steps: Number($("steps").value),
                seed: $("seed-random").checked ? "random" : Number($("seed").value), num: Number($("num").value),
                options: readOptions()};
  if (m.cond !== "none") body.guidance = Number($("guidance").value);
  if (m.cond === "label" && $("label").value !== "") body.label = Number($("label").value);
  if (m.cond === "text") {
    if ($("prompt").value) body.prompt = $("prompt").value;
    if ($("negative").value) body.negative_prompt = $("negative").value;
  }
  return body;
}

function reconstructRequest() {
  const body = {model: state.model.name, task: state.task, method: $("method").value,
                steps: Number($("recon-steps").value), seed: Number($("recon-seed").value)};
  if (state.upload) body.image = state.upload; else body.example = state.example;
  if (state.task === "superres") body.scale = Number($("scale").value);
  if (state.task === "mri") body.acceleration = Number($("acceleration").value);
  if (state.task === "inpaint" && state.maskDirty) body.mask = maskDataUrl();
  return body;
}

// ---- running a job: submit, follow its events, show its result ---------------------------------------------------

async function run() {
  const body = state.task === "generate" ? generateRequest() : reconstructRequest();
  $("run").disabled = true;
  try {
    const job = await api("/api/jobs", {method: "POST", body: JSON.stringify(body)});
    state.job = job.id;
    $("cancel").disabled = false;
    $("result").innerHTML = $("downloads").innerHTML = "";
    $("progress").value = 0;
    setStatus(job.position > 1 ? `waiting: place ${job.position} in the queue` : "starting");
    follow(job.id);
  } catch (e) {
    setStatus(e.message, true);
    $("run").disabled = false;
  }
}

function follow(id) {
  const source = new EventSource(withToken(`/api/jobs/${id}/events`));
  state.source = source;
  source.addEventListener("queued", (e) => {
    const {position} = JSON.parse(e.data);
    setStatus(position ? `waiting: place ${position} in the queue` : "starting");
  });
  const onProgress = (e) => {
    const p = JSON.parse(e.data);
    if (p.total) $("progress").value = p.step / p.total;
    if (p.step) setStatus(`step ${p.step} / ${p.total}` + (p.eta_s != null ? `, about ${p.eta_s.toFixed(1)} s left` : ""));
    if (p.x_t) { $("preview-xt").src = p.x_t; $("preview-x0").src = p.x0_hat; }
    $("preview-xt").dataset.step = p.step;
  };
  source.addEventListener("progress", onProgress);
  for (const end of ["done", "failed", "cancelled"]) {
    source.addEventListener(end, (e) => {
      source.close();
      const info = JSON.parse(e.data);
      $("run").disabled = false;
      $("cancel").disabled = true;
      if (end === "done") { $("progress").value = 1; setStatus("done"); showResult(id, info.files, info.result); }
      else setStatus(end === "failed" ? "failed: " + info.error : "cancelled", end === "failed");
      refreshGallery();
    });
  }
  source.onerror = () => { if (source.readyState === EventSource.CLOSED) $("run").disabled = false; };
}

function fileUrl(id, name) { return withToken(`/api/jobs/${id}/files/${name}`); }

function showResult(id, files, result) {
  const box = $("result");
  box.innerHTML = "";
  const main = ["samples.gif", "side_by_side.png", "samples.png"].find((f) => files.includes(f));
  if (main) {
    const img = document.createElement("img");
    img.id = "result-img";
    img.src = fileUrl(id, main);
    box.appendChild(img);
  }
  if (files.includes("spectrum.png")) {
    const img = document.createElement("img");
    img.src = fileUrl(id, "spectrum.png");
    box.appendChild(img);
  }
  for (const f of files.filter((f) => f.endsWith(".wav")).slice(0, 8)) {
    const audio = document.createElement("audio");
    audio.controls = true;
    audio.src = fileUrl(id, f);
    box.appendChild(audio);
  }
  if (result && result.metrics) {
    const p = document.createElement("p");
    p.textContent = Object.entries(result.metrics).map(([k, v]) => `${k}: ${typeof v.psnr === "number" ? v.psnr.toFixed(2) : v.psnr} dB`).join(" · ");
    box.appendChild(p);
  }
  const links = $("downloads");
  links.innerHTML = "";
  for (const f of files.filter((f) => !/^image-\d+\.png$/.test(f) && !f.endsWith(".wav"))) {
    const a = document.createElement("a");
    a.href = fileUrl(id, f);
    a.textContent = f;
    a.download = f;
    links.appendChild(a);
  }
}

async function cancel() {
  if (!state.job) return;
  try { await api(`/api/jobs/${state.job}/cancel`, {method: "POST"}); } catch (e) { setStatus(e.message, true); }
}

// ---- gallery and restoring settings ------------------------------------------------------------------------

async function refreshGallery() {
  const jobs = await api("/api/jobs");
  const gallery = $("gallery");
  gallery.innerHTML = "";
  for (const job of jobs.filter((j) => j.state === "done").slice(0, 48)) {
    const card = document.createElement("div");
    card.className = "card";
    const thumb = ["samples.gif", "side_by_side.png", "samples.png"].find((f) => job.files.includes(f));
    if (thumb) {
      const img = document.createElement("img");
      img.src = fileUrl(job.id, thumb);
      img.addEventListener("click", () => showResult(job.id, job.files, job.result));
      card.appendChild(img);
    }
    const params = document.createElement("div");
    params.className = "params";
    params.textContent = `${job.model}: ` + Object.entries(job.params).map(([k, v]) =>
      `${k}=${typeof v === "object" ? JSON.stringify(v) : v}`).join(", ");
    card.appendChild(params);
    const restoreButton = document.createElement("button");
    restoreButton.textContent = "use these settings";
    restoreButton.addEventListener("click", () => restore({model: job.model, ...job.params}));
    card.appendChild(restoreButton);
    gallery.appendChild(card);
  }
}

function restore(p) {
  if (p.model && state.models[p.model]) chooseModel(p.model);
  if (p.task) chooseTask(p.task === "generate" || state.model.tasks.includes(p.task) ? p.task : "generate");
  if (p.task === "generate" || !p.task) {
    if (p.sampler) { $("sampler").value = p.sampler; samplerOptions(); }
    for (const [k, v] of Object.entries(p.options || {})) { const i = $("option-" + k); if (i) i.value = v; }
    if (p.steps) $("steps").value = p.steps;
    if (p.seed !== undefined) { $("seed").value = p.seed; $("seed-random").checked = false; }
    if (p.num) $("num").value = p.num;
    if (p.guidance !== undefined) $("guidance").value = p.guidance;
    $("label").value = p.label !== undefined ? p.label : "";
    $("prompt").value = p.prompt || "";
    $("negative").value = p.negative_prompt || "";
  } else {
    if (p.method) $("method").value = p.method;
    if (p.steps) $("recon-steps").value = p.steps;
    if (p.seed !== undefined) $("recon-seed").value = p.seed;
    if (p.scale) $("scale").value = p.scale;
    if (p.acceleration) $("acceleration").value = p.acceleration;
    if (p.example !== undefined) { state.example = p.example; state.upload = null; showInput(); }
  }
  setStatus("settings restored");
}

// PNG text chunks (tEXt, and uncompressed iTXt for non-Latin-1 prompts): the "parameters" our PNGs carry.
function pngParameters(buffer) {
  const bytes = new Uint8Array(buffer);
  const view = new DataView(buffer);
  const signature = [137, 80, 78, 71, 13, 10, 26, 10];
  if (!signature.every((b, i) => bytes[i] === b)) return null;
  for (let pos = 8; pos + 8 <= bytes.length;) {
    const length = view.getUint32(pos);
    const type = String.fromCharCode(...bytes.slice(pos + 4, pos + 8));
    const data = bytes.slice(pos + 8, pos + 8 + length);
    if (type === "tEXt" || type === "iTXt") {
      const nul = data.indexOf(0);
      const key = new TextDecoder("latin1").decode(data.slice(0, nul));
      if (key === "parameters") {
        if (type === "tEXt") return JSON.parse(new TextDecoder("latin1").decode(data.slice(nul + 1)));
        if (data[nul + 1] !== 0) return null;  // compressed iTXt: not written by diffusekit
        let at = nul + 3;
        at = data.indexOf(0, at) + 1;  // language tag
        at = data.indexOf(0, at) + 1;  // translated keyword
        return JSON.parse(new TextDecoder("utf-8").decode(data.slice(at)));
      }
    }
    if (type === "IEND") break;
    pos += 12 + length;
  }
  return null;
}

function setUpDrop() {
  document.addEventListener("dragover", (e) => { e.preventDefault(); document.body.classList.add("dragging"); });
  document.addEventListener("dragleave", () => document.body.classList.remove("dragging"));
  document.addEventListener("drop", async (e) => {
    e.preventDefault();
    document.body.classList.remove("dragging");
    const file = e.dataTransfer.files[0];
    if (!file) return;
    const p = pngParameters(await file.arrayBuffer());
    if (p) restore(p); else setStatus(`${file.name} carries no diffusekit settings`, true);
  });
}

// ---- inputs of reconstruction: examples, uploads, the mask canvas -----------------------------------------------

function readFile(input, then) {
  const file = input.files[0];
  if (!file) return;
  const reader = new FileReader();
  reader.onload = () => then(reader.result);
  reader.readAsDataURL(file);
}

function showInput() {
  const src = state.upload || withToken(`/api/models/${state.model.name}/examples/${state.example}.png`);
  $("example-label").textContent = state.upload ? "your image" : `example ${state.example}`;
  $("recon-input").src = src;
  state.inputImage = null;
  clearMask();
  const img = new Image();
  img.onload = () => { state.inputImage = img; drawMaskCanvas(); };
  img.src = src;
}

function clearMask() {
  const canvas = $("mask-canvas");
  state.paint = document.createElement("canvas");
  state.paint.width = canvas.width;
  state.paint.height = canvas.height;
  state.maskDirty = false;
  drawMaskCanvas();
}

function drawMaskCanvas() {
  const canvas = $("mask-canvas");
  const ctx = canvas.getContext("2d");
  ctx.imageSmoothingEnabled = false;
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  if (state.inputImage) ctx.drawImage(state.inputImage, 0, 0, canvas.width, canvas.height);
  if (state.paint) { ctx.globalAlpha = 0.6; ctx.drawImage(state.paint, 0, 0); ctx.globalAlpha = 1; }
}

function setUpCanvas() {
  const canvas = $("mask-canvas");
  let drawing = false;
  const paintAt = (e) => {
    const r = canvas.getBoundingClientRect();
    const x = (e.clientX - r.left) * canvas.width / r.width, y = (e.clientY - r.top) * canvas.height / r.height;
    const ctx = state.paint.getContext("2d");
    ctx.fillStyle = "rgb(255, 0, 80)";
    ctx.beginPath();
    ctx.arc(x, y, Number($("brush").value) / 2, 0, 2 * Math.PI);
    ctx.fill();
    state.maskDirty = true;
    drawMaskCanvas();
  };
  canvas.addEventListener("pointerdown", (e) => { drawing = true; paintAt(e); });
  canvas.addEventListener("pointermove", (e) => { if (drawing) paintAt(e); });
  window.addEventListener("pointerup", () => { drawing = false; });
  $("mask-clear").addEventListener("click", clearMask);
  clearMask();
}

// The mask at the model's size: white = known, black = painted (to fill in).
function maskDataUrl() {
  const [h, w] = state.model.shape.slice(-2);
  const small = document.createElement("canvas");
  small.width = w; small.height = h;
  const ctx = small.getContext("2d");
  ctx.drawImage(state.paint, 0, 0, w, h);
  const data = ctx.getImageData(0, 0, w, h);
  for (let i = 0; i < data.data.length; i += 4) {
    const known = data.data[i + 3] < 64 ? 255 : 0;
    data.data[i] = data.data[i + 1] = data.data[i + 2] = known;
    data.data[i + 3] = 255;
  }
  ctx.putImageData(data, 0, 0);
  return small.toDataURL("image/png");
}

// ---- the forward process -------------------------------------------------------------------------------------

let forwardPending = null;
async function forwardStep() {
  const t = Number($("t-slider").value);
  $("t-value").textContent = t;
  const body = {model: state.model.name, t, seed: 0};
  if (state.fwdUpload) body.image = state.fwdUpload; else body.example = state.fwdExample;
  $("fwd-label").textContent = state.fwdUpload ? "your image" : `example ${state.fwdExample}`;
  const ticket = forwardPending = {};
  try {
    const r = await api("/api/forward", {method: "POST", body: JSON.stringify(body)});
    if (ticket !== forwardPending) return;  // a newer slider position already asked
    $("fwd-x0").src = r.x0;
    $("fwd-xt").src = r.x_t;
    $("fwd-facts").textContent = `t = ${r.t}: alpha_bar = ${r.alpha_bar.toFixed(4)}, SNR = ${r.snr.toPrecision(3)}` +
      ` (signal kept: ${(100 * Math.sqrt(r.alpha_bar)).toFixed(1)}%)`;
  } catch (e) { setStatus(e.message, true); }
}

// ---- wiring --------------------------------------------------------------------------------------------------

function wire() {
  $("sampler").addEventListener("change", samplerOptions);
  $("run").addEventListener("click", run);
  $("cancel").addEventListener("click", cancel);
  $("example-prev").addEventListener("click", () => { state.upload = null; state.example = Math.max(0, state.example - 1); showInput(); });
  $("example-next").addEventListener("click", () => { state.upload = null; state.example += 1; showInput(); });
  $("upload").addEventListener("change", () => readFile($("upload"), (url) => { state.upload = url; showInput(); }));
  $("fwd-prev").addEventListener("click", () => { state.fwdUpload = null; state.fwdExample = Math.max(0, state.fwdExample - 1); forwardStep(); });
  $("fwd-next").addEventListener("click", () => { state.fwdUpload = null; state.fwdExample += 1; forwardStep(); });
  $("fwd-upload").addEventListener("change", () => readFile($("fwd-upload"), (url) => { state.fwdUpload = url; forwardStep(); }));
  $("t-slider").addEventListener("input", forwardStep);
  setUpCanvas();
  setUpDrop();
}

wire();
loadModels().then(refreshGallery).catch((e) => setStatus(e.message, true));
