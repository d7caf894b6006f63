// imagequeue dashboard: plain ES modules, no build step, no framework.
// Talks to the same API as the SDK: a token from the API key, uploads or
// URLs to the enqueue routes, the live event stream (read with fetch so the
// token travels in a header, never in a URL) and the status routes.

const $ = (selector) => document.querySelector(selector);
const TERMINAL = new Set(['completed', 'failed', 'dead']);
const PATHS = {
  process: ['/api/image-queue/process-queue', '/api/image-queue/bulk-process'],
  'remove-bg': ['/api/image-queue/remove-bg-queue', '/api/image-queue/bulk-remove-bg'],
  'face-crop': ['/api/image-queue/crop-face-queue', '/api/image-queue/bulk-crop-face'],
};
const KIND_NAMES = { process: 'Processing', 'remove-bg': 'Background removal', 'face-crop': 'Face crop' };

const state = {
  apiKey: null,
  token: null,
  renewAt: 0,
  files: [],
  jobs: new Map(), // jobId -> { row, job, before }
  batches: new Map(), // batchId -> { total, done, failed, el }
  stream: null, // AbortController
  lastEventId: null,
  timers: [],
};

// ---- API -------------------------------------------------------------------

async function token() {
  if (state.token && Date.now() < state.renewAt) return state.token;
  const res = await fetch('/api/auth/token', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ apiKey: state.apiKey }),
  });
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(body.message || `sign-in failed (${res.status})`);
  state.token = body.token;
  state.renewAt = Date.now() + Math.max(1000, body.expiresIn * 1000 - Math.min(30_000, body.expiresIn * 500));
  return state.token;
}

async function api(method, path, { json, form, accept = [] } = {}) {
  for (let tries = 0; ; tries++) {
    const headers = { authorization: `Bearer ${await token()}` };
    if (json !== undefined) headers['content-type'] = 'application/json';
    const res = await fetch(path, { method, headers, body: json !== undefined ? JSON.stringify(json) : form?.() });
    if (res.status === 429 && tries < 3) {
      await sleep(Number(res.headers.get('retry-after') || 1) * 1000);
      continue;
    }
    if (res.status === 401 && tries < 1) {
      state.token = null;
      continue;
    }
    const body = await res.json().catch(() => null);
    if (!res.ok && !accept.includes(res.status)) throw new Error(body?.message || `${method} ${path}: ${res.status}`);
    return body;
  }
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---- sign in -----------------------------------------------------------------

$('#sign-in-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  $('#sign-in-error').textContent = '';
  state.apiKey = $('#api-key').value.trim();
  state.token = null;
  try {
    await token();
  } catch (error) {
    $('#sign-in-error').textContent = error.message;
    return;
  }
  $('#api-key').value = '';
  $('#sign-in').hidden = true;
  $('#app').hidden = false;
  $('#sign-out').hidden = false;
  $('#who').textContent = 'signed in';
  startStream();
  await loadRecentJobs();
  refreshPanels();
  state.timers.push(setInterval(refreshPanels, 5000));
});

$('#sign-out').addEventListener('click', () => location.reload());

// ---- new jobs ------------------------------------------------------------------

$('#kind').addEventListener('change', () => {
  const kind = $('#kind').value;
  $('#mode-field').hidden = kind !== 'face-crop';
  $('#operations-field').hidden = kind !== 'process';
});

const drop = $('#drop');
for (const type of ['dragenter', 'dragover']) {
  drop.addEventListener(type, (e) => {
    e.preventDefault();
    drop.classList.add('over');
  });
}
for (const type of ['dragleave', 'drop']) drop.addEventListener(type, () => drop.classList.remove('over'));
drop.addEventListener('drop', (e) => {
  e.preventDefault();
  pick([...e.dataTransfer.files].filter((f) => f.type.startsWith('image/')));
});
$('#files').addEventListener('change', (e) => pick([...e.target.files]));

function pick(files) {
  state.files = files;
  $('#picked').textContent = files.length ? `${files.length} photo${files.length > 1 ? 's' : ''}: ${files.map((f) => f.name).join(', ')}` : '';
}

$('#job-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const status = $('#submit-status');
  const kind = $('#kind').value;
  const projectId = $('#project').value.trim();
  const urls = $('#urls')
    .value.split('\n')
    .map((s) => s.trim())
    .filter(Boolean);
  const extra = {};
  try {
    if (kind === 'process') extra.operations = JSON.parse($('#operations').value);
  } catch {
    status.textContent = 'Operations must be JSON, e.g. [{"op":"resize","width":800}]';
    return;
  }
  if (kind === 'face-crop') extra.mode = $('#mode').value;
  if (state.files.length === 0 && urls.length === 0) {
    status.textContent = 'Drop a photo or paste a URL first.';
    return;
  }
  status.textContent = 'Queueing…';
  $('#queue').disabled = true;
  try {
    let queued = 0;
    if (state.files.length > 0) queued += await queueFiles(kind, projectId, extra, state.files);
    if (urls.length > 0) queued += await queueUrls(kind, projectId, extra, urls);
    status.textContent = `Queued ${queued} job${queued === 1 ? '' : 's'}.`;
    pick([]);
    $('#files').value = '';
    $('#urls').value = '';
  } catch (error) {
    status.textContent = `Not queued: ${error.message}`;
  } finally {
    $('#queue').disabled = false;
  }
});

const recordId = (name) => `${name.replace(/[^A-Za-z0-9._-]+/g, '-').slice(0, 100)}-${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`;

async function queueFiles(kind, projectId, extra, files) {
  const bulk = files.length > 1;
  const ids = files.map((f) => recordId(f.name));
  const form = () => {
    const data = new FormData();
    data.append('projectId', projectId);
    if (extra.operations) data.append('operations', JSON.stringify(extra.operations));
    if (extra.mode) data.append('mode', extra.mode);
    if (bulk) ids.forEach((id) => data.append('recordIds', id));
    else data.append('recordId', ids[0]);
    files.forEach((f) => data.append(bulk ? 'photos' : 'photo', f, f.name));
    return data;
  };
  const res = await api('POST', PATHS[kind][bulk ? 1 : 0], { form });
  const before = files.map((f) => URL.createObjectURL(f));
  addQueued(res, kind, ids, before);
  return files.length;
}

async function queueUrls(kind, projectId, extra, urls) {
  const bulk = urls.length > 1;
  const ids = urls.map((u) => recordId(u.split('/').pop() || 'photo'));
  const json = bulk
    ? { projectId, items: urls.map((photoUrl, i) => ({ recordId: ids[i], photoUrl })), ...extra }
    : { projectId, recordId: ids[0], photoUrl: urls[0], ...extra };
  const res = await api('POST', PATHS[kind][bulk ? 1 : 0], { json });
  addQueued(res, kind, ids, urls);
  return urls.length;
}

function addQueued(res, kind, recordIds, before) {
  const jobIds = res.jobIds ?? [res.jobId];
  jobIds.forEach((jobId, i) =>
    upsertJob({ id: jobId, state: 'queued', progress: 0, data: { kind, recordId: recordIds[i], batchId: res.batchId ?? null } }, before[i]),
  );
  if (res.batchId) trackBatch(res.batchId, jobIds.length);
}

// ---- jobs table ------------------------------------------------------------------

function upsertJob(job, before) {
  let entry = state.jobs.get(job.id);
  if (!entry) {
    const row = document.createElement('tr');
    row.dataset.jobId = job.id;
    row.innerHTML = `<td class="mono"></td><td></td><td class="mono"></td><td class="state"></td>
      <td><progress max="100" value="0"></progress> <span class="pct"></span></td><td class="before"></td><td class="after"></td>`;
    $('#jobs tbody').prepend(row);
    entry = { row, job: {}, before: null };
    state.jobs.set(job.id, entry);
    $('#no-jobs').hidden = true;
  }
  entry.job = { ...entry.job, ...job, data: { ...entry.job.data, ...job.data } };
  if (before && !entry.before) entry.before = before;
  render(entry);
  return entry;
}

function render({ row, job, before }) {
  const cells = row.children;
  cells[0].textContent = job.id.slice(-8);
  cells[0].title = job.id;
  cells[1].textContent = KIND_NAMES[job.data?.kind] ?? job.data?.kind ?? '';
  cells[2].textContent = job.data?.recordId ?? '';
  cells[3].textContent = job.state;
  cells[3].className = `state ${job.state}`;
  if (job.error) cells[3].title = `${job.error.code}: ${job.error.message}`;
  const progress = job.state === 'completed' ? 100 : (job.progress ?? 0);
  cells[4].querySelector('progress').value = progress;
  cells[4].querySelector('.pct').textContent = `${progress}%`;
  row.dataset.state = job.state;
  if (before && !cells[5].firstChild) cells[5].append(thumb(before, 'before'));
  const after = job.result?.photoUrl;
  if (after && !cells[6].firstChild) cells[6].append(thumb(after, 'after'));
}

function thumb(src, label) {
  const a = document.createElement('a');
  a.href = src;
  a.target = '_blank';
  a.rel = 'noopener';
  const img = document.createElement('img');
  img.src = src;
  img.alt = label;
  img.className = `thumb ${label}`;
  img.loading = 'lazy';
  a.append(img);
  return a;
}

async function loadRecentJobs() {
  const page = await api('GET', '/api/image-queue/jobs?limit=25').catch(() => null);
  for (const job of [...(page?.jobs ?? [])].reverse()) upsertJob(job, job.data?.photoUrl ?? null);
}

async function refreshJob(jobId) {
  const job = await api('GET', `/api/image-queue/job/${jobId}`).catch(() => null);
  if (job) upsertJob(job);
}

// ---- batches ---------------------------------------------------------------------

function trackBatch(batchId, total) {
  if (state.batches.has(batchId)) return;
  const el = document.createElement('div');
  el.className = 'batch';
  el.dataset.batchId = batchId;
  el.innerHTML = `<span class="mono"></span> <progress max="100" value="0"></progress> <span class="summary"></span>`;
  el.querySelector('.mono').textContent = batchId.slice(-8);
  $('#batches').prepend(el);
  $('#batches-card').hidden = false;
  state.batches.set(batchId, { total, el });
  updateBatch(batchId);
}

function updateBatch(batchId, finished) {
  const batch = state.batches.get(batchId);
  if (!batch) return;
  const jobs = [...state.jobs.values()].filter((e) => e.job.data?.batchId === batchId).map((e) => e.job);
  const done = jobs.filter((j) => TERMINAL.has(j.state)).length;
  const failed = jobs.filter((j) => j.state === 'failed' || j.state === 'dead').length;
  const progress = jobs.length ? Math.round(jobs.reduce((s, j) => s + (TERMINAL.has(j.state) ? 100 : (j.progress ?? 0)), 0) / batch.total) : 0;
  batch.el.querySelector('progress').value = progress;
  batch.el.querySelector('.summary').textContent = `${done}/${batch.total} done${failed ? `, ${failed} failed` : ''}${finished ? ' — finished' : ''}`;
  if (finished) batch.el.dataset.finished = 'true';
}

// ---- live events (SSE over fetch) ------------------------------------------------------

async function startStream() {
  const pill = $('#stream-state');
  for (let failures = 0; ;) {
    const controller = new AbortController();
    state.stream = controller;
    try {
      const headers = { accept: 'text/event-stream', authorization: `Bearer ${await token()}` };
      if (state.lastEventId !== null) headers['last-event-id'] = state.lastEventId;
      const res = await fetch('/api/image-queue/events', { headers, signal: controller.signal });
      if (res.status === 401) state.token = null;
      if (!res.ok || !res.body) throw new Error(`event stream: ${res.status}`);
      pill.textContent = 'live';
      pill.className = 'pill live';
      failures = 0;
      await readEvents(res.body);
    } catch {
      failures++;
    }
    pill.textContent = 'reconnecting';
    pill.className = 'pill';
    await sleep(Math.min(15_000, 500 * 2 ** Math.min(failures, 5)));
  }
}

async function readEvents(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let cut;
    while ((cut = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      let event = 'message';
      let id = null;
      let data = '';
      for (const line of block.split('\n')) {
        if (line.startsWith('event: ')) event = line.slice(7);
        else if (line.startsWith('id: ')) id = line.slice(4);
        else if (line.startsWith('data: ')) data += line.slice(6);
      }
      if (id !== null) state.lastEventId = id;
      if (data) onEvent(event, JSON.parse(data));
    }
  }
}

function onEvent(type, data) {
  if (type === 'ready') {
    // Events were pruned past where we were: reload the table instead.
    if (data.reset) loadRecentJobs();
    return;
  }
  if (type === 'batch.finished') {
    updateBatch(data.batchId, true);
    return;
  }
  if (!data.jobId) return;
  const known = state.jobs.get(data.jobId);
  if (type === 'progress') {
    if (known && !TERMINAL.has(known.job.state)) upsertJob({ id: data.jobId, state: 'active', progress: data.progress });
  } else {
    upsertJob({ id: data.jobId, state: type, error: data.error ?? null, data: { kind: data.kind, batchId: data.batchId } });
    if (type === 'completed' || !known) refreshJob(data.jobId);
    if (TERMINAL.has(type)) refreshPanelsSoon();
  }
  if (data.batchId) updateBatch(data.batchId);
}

// ---- queue stats and worker health ---------------------------------------------------

let panelsTimer = null;
function refreshPanelsSoon() {
  clearTimeout(panelsTimer);
  panelsTimer = setTimeout(refreshPanels, 1500);
}

async function refreshPanels() {
  const [stats, health] = await Promise.all([
    api('GET', '/api/image-queue/queue-stats').catch(() => null),
    api('GET', '/api/worker/health', { accept: [503] }).catch(() => null),
  ]);
  if (stats) {
    const cols = ['waiting', 'active', 'completed', 'failed', 'delayed', 'dead'];
    const rows = [
      ['Background removal', stats.backgroundRemoval],
      ['Face crop', stats.faceCrop],
      ['Processing', stats.imageProcessing],
    ];
    $('#stats').innerHTML = `<tr><th></th>${cols.map((c) => `<th>${c}</th>`).join('')}</tr>`;
    for (const [name, s] of rows) {
      const tr = document.createElement('tr');
      tr.innerHTML = `<th></th>${cols.map(() => '<td></td>').join('')}`;
      tr.children[0].textContent = name;
      cols.forEach((c, i) => (tr.children[i + 1].textContent = String(s?.[c] ?? '–')));
      $('#stats').append(tr);
    }
  }
  if (health) {
    const el = $('#health');
    el.innerHTML = '<p><span class="pill"></span> <span class="reasons muted"></span></p><ul></ul>';
    const pill = el.querySelector('.pill');
    pill.textContent = health.status;
    pill.className = `pill ${health.status}`;
    el.querySelector('.reasons').textContent = (health.reasons ?? []).join('; ');
    for (const w of health.workers ?? []) {
      const li = document.createElement('li');
      const queues = Object.entries(w.queues ?? {})
        .map(([q, s]) => `${q} ${s.active}/${s.concurrency}${s.paused ? ' (paused)' : ''}`)
        .join(', ');
      li.textContent = `${w.workerId ?? w.name}: ${queues}`;
      el.querySelector('ul').append(li);
    }
  }
}
