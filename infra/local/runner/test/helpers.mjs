// What the runner's tests start on 127.0.0.1, each on a free port: the moto
// server (S3 for ItemReader and ResultWriter), a Lambda Invoke API stand-in
// whose functions the test defines (it also measures how many invocations
// run at once), and the runner's own scripts.

import { createServer } from 'node:http';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

export const here = dirname(fileURLToPath(import.meta.url));
export const runner = join(here, '..');
export const fixture = (name) => join(here, 'fixtures', name);
export const node = join(runner, 'node_modules', '.bin', 'node');
const moto = join(runner, '..', '..', '..', '.venv', 'bin', 'moto_server');

export function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

async function waitFor(url, what, child) {
  for (let i = 0; i < 150; i += 1) {
    if (child.exitCode !== null) throw new Error(`${what} exited (${child.exitCode})`);
    try {
      await fetch(url);
      return;
    } catch {
      await sleep(100);
    }
  }
  throw new Error(`${what} did not answer at ${url}`);
}

// A process of the test's own, stopped by its pid when the test ends.
function started(command, argv, env) {
  const child = spawn(command, argv, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  child.log = '';
  child.stdout.on('data', (chunk) => { child.log += chunk; });
  child.stderr.on('data', (chunk) => { child.log += chunk; });
  return child;
}

function stopper(child) {
  return () => new Promise((resolve) => {
    if (child.exitCode !== null) return resolve();
    child.once('exit', () => resolve());
    child.kill('SIGTERM');
  });
}

export async function startMoto() {
  const port = await freePort();
  const child = started(moto, ['-H', '127.0.0.1', '-p', String(port)]);
  const url = `http://127.0.0.1:${port}`;
  await waitFor(url, 'moto_server', child);
  return { url, stop: stopper(child) };
}

// Moto checks no signature, but refuses an anonymous GET of an object.
const S3_HEADERS = { authorization: 'AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0' };

export async function s3(url, method, path, body) {
  const response = await fetch(`${url}/${path}`, { method, headers: S3_HEADERS, body });
  const text = await response.text();
  if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${text}`);
  return text;
}

// The Lambda Invoke API for `functions` (name -> async (payload) => result; a
// throw answers as a function error of errorType error.name).
export async function lambdaStandIn(functions) {
  const state = { current: 0, peak: 0, calls: [] };
  const server = createServer((request, response) => {
    let body = '';
    request.on('data', (chunk) => { body += chunk; });
    request.on('end', async () => {
      const name = decodeURIComponent(request.url.match(/^\/2015-03-31\/functions\/([^/]+)\/invocations/)?.[1] ?? '');
      const payload = body ? JSON.parse(body) : null;
      state.calls.push({ name, payload });
      state.current += 1;
      state.peak = Math.max(state.peak, state.current);
      try {
        if (!functions[name]) throw Object.assign(new Error(`no function ${name}`), { name: 'ResourceNotFoundException' });
        const result = await functions[name](payload);
        response.writeHead(200, { 'content-type': 'application/json' });
        response.end(JSON.stringify(result ?? null));
      } catch (error) {
        response.writeHead(200, { 'content-type': 'application/json', 'x-amz-function-error': 'Unhandled' });
        response.end(JSON.stringify({ errorType: error.name, errorMessage: error.message }));
      } finally {
        state.current -= 1;
      }
    });
  });
  const port = await freePort();
  await new Promise((resolve) => server.listen(port, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${port}`,
    state,
    reset: () => Object.assign(state, { current: 0, peak: 0, calls: [] }),
    close: () => new Promise((resolve) => { server.closeAllConnections(); server.close(resolve); }),
  };
}

// run.mjs as the bench runs it: resolves to { code, report }.
export function runScript(argv, env) {
  const child = started(node, [join(runner, 'run.mjs'), ...argv], env);
  return new Promise((resolve) => {
    child.on('exit', (code) => {
      let report;
      try {
        report = JSON.parse(child.log.slice(child.log.indexOf('{')));
      } catch {
        report = child.log;
      }
      resolve({ code, report });
    });
  });
}

// serve.mjs on a free port: { call(operation, body), stop }.
export async function startServe(argv, env) {
  const port = await freePort();
  const child = started(node, [join(runner, 'serve.mjs'), '--port', String(port), ...argv], env);
  const url = `http://127.0.0.1:${port}`;
  await waitFor(url, 'serve.mjs', child);
  const call = async (operation, body) => {
    const response = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/x-amz-json-1.0', 'x-amz-target': `AWSStepFunctions.${operation}` },
      body: JSON.stringify(body),
    });
    const answer = await response.json();
    if (!response.ok) throw Object.assign(new Error(`${operation}: ${answer.__type}: ${answer.message}`), { type: answer.__type });
    return answer;
  };
  return { call, stop: stopper(child), log: () => child.log };
}
