// Resumable uploads over tus 1.0 (docs/HTTP.md, "Files"). No DOM here.
//
// An upload's URL is kept in localStorage under the file's identity (name,
// size, lastModified) and the user's id until it finishes, so that after
// a reload, a lost connection or a closed tab, picking the same file again
// asks the server (HEAD) how much it holds and sends only the rest. The
// server answers an offset only once those bytes are durable, so HEAD's
// offset is always safe to go on from.
//
// A cancelled upload is deleted on the server (tus termination) and
// forgotten here, so picking the file again starts afresh.

import { failure } from './api.js';

const KEY = 'natter.uploads';
const CHUNK = 64 * 1024;

function identity(userId, file) {
  return JSON.stringify([userId, file.name, file.size, file.lastModified]);
}

function saved() {
  try { return JSON.parse(localStorage.getItem(KEY)) ?? {}; } catch { return {}; }
}

function remember(id, location) {
  const all = saved();
  if (location) all[id] = { location, at: Date.now() };
  else delete all[id];
  localStorage.setItem(KEY, JSON.stringify(all));
}

// Thrown by upload() when its signal aborts it.
export class Cancelled extends Error {}

// Deletes an upload on the server. 429 means an append to it still runs
// there (the one just aborted): it is asked again after Retry-After.
async function discard(api, location) {
  for (let tries = 1; ; tries++) {
    const r = await api.tus('DELETE', location);
    if (r.status === 204 || r.status === 404) return;
    if (r.status !== 429 || tries >= 5) throw await failure(r);
    const secs = Number(r.headers.get('retry-after')) || 1;
    await new Promise((done) => setTimeout(done, secs * 1000));
  }
}

// Where a kept upload of this file stands: {location, offset}, or null when
// there is none the server still has (expired, finished, another user's).
async function resumePoint(api, id, size) {
  const kept = saved()[id];
  if (!kept) return null;
  const r = await api.tus('HEAD', kept.location);
  const length = Number(r.headers.get('upload-length'));
  const offset = Number(r.headers.get('upload-offset'));
  if (r.status !== 200 || length !== size || !(offset >= 0) || offset >= size) {
    remember(id, null);
    return null;
  }
  return { location: kept.location, offset };
}

async function create(api, file) {
  const b64 = (s) => btoa(String.fromCharCode(...new TextEncoder().encode(s)));
  const meta = [`filename ${b64(file.name)}`];
  if (file.type) meta.push(`filetype ${b64(file.type)}`);
  const r = await api.tus('POST', '/v1/files/', {
    'upload-length': String(file.size),
    'upload-metadata': meta.join(','),
  });
  if (r.status !== 201) throw await failure(r);
  return r.headers.get('location');
}

// Uploads `file` for user `userId`, going on from a kept upload of the
// same file if the server has one. onProgress(sent, total); returns the
// file id and the offset it started from. When `signal` aborts, the
// upload is deleted and forgotten, and Cancelled is thrown.
export async function upload(api, userId, file, onProgress, signal) {
  const id = identity(userId, file);
  let point = await resumePoint(api, id, file.size).catch(() => null);
  if (!point) {
    point = { location: await create(api, file), offset: 0 };
    remember(id, point.location);
  }
  const { location } = point;
  const from = point.offset;
  let offset = from;
  onProgress(offset, file.size);
  try {
    while (offset < file.size) {
      signal?.throwIfAborted();
      const r = await api.tus('PATCH', location, {
        'upload-offset': String(offset),
        'content-type': 'application/offset+octet-stream',
      }, file.slice(offset, offset + CHUNK), signal);
      if (r.status !== 204 && r.status !== 409) throw await failure(r);
      // 409: the server holds another offset (an earlier append landed after
      // all); it says which.
      offset = Number(r.headers.get('upload-offset'));
      onProgress(offset, file.size);
    }
  } catch (e) {
    if (!signal?.aborted) throw e;
    await discard(api, location);
    remember(id, null);
    throw new Cancelled(`the upload of ${file.name} is cancelled`);
  }
  remember(id, null);
  return { fileId: location.split('/').pop(), from };
}
