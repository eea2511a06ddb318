// What aws-local-stepfunctions lacks and the bulk state machine uses, played
// by the runner as the Step Functions developer guide describes it:
//
// - The Distributed Map ("ProcessorConfig": {"Mode": "DISTRIBUTED"}): the
//   library runs every Map inline (no ItemReader, ResultWriter, tolerated
//   failures or child executions). The runner's copy of the definition has the
//   Map replaced by a Task with a local handler that keeps the Map's InputPath,
//   ResultSelector, ResultPath, OutputPath, Retry, Catch and Next/End; the
//   handler is the Map Run: it reads the items (ItemReader from S3, or
//   ItemsPath), applies ReaderConfig.MaxItems and ItemSelector (`$$.Map.Item`),
//   runs each item as a child workflow execution of the ItemProcessor (the
//   same Lambdas, Wait overrides and callbacks as its parent, machine.mjs) at
//   most MaxConcurrency at once, counts failures against the tolerated
//   threshold (default 0) and writes the ResultWriter files
//   (<Prefix>/<map run id>/manifest.json, SUCCEEDED_0.json, FAILED_0.json).
//   Crossing the threshold fails the Map Run with
//   States.ExceedToleratedFailureThreshold; the children still running are
//   aborted (DescribeMapRun counts them as aborted) and no pending item
//   starts, as AWS does. MapRuns holds each Map Run's counts for serve.mjs
//   (ListMapRuns, DescribeMapRun, ListExecutions by mapRunArn).
// - `arn:aws:states:::states:startExecution`, `.sync` and `.sync:2`: the task
//   asks the caller of execute() to start the execution (`startChild`:
//   run.mjs runs a definition file, serve.mjs starts a real execution in its
//   registry) and answers as the service integration does: the StartExecution
//   response, or for .sync the DescribeExecution response (`.sync`: Input and
//   Output as JSON strings; `.sync:2`: parsed); a child that does not succeed
//   fails the task with States.TaskFailed, its description as the Cause.
//
// S3 is the moto server at AWS_ENDPOINT_URL, over plain path-style HTTP,
// signed (SigV4) with the bench's key `local-step-functions` and its secret
// `testing` (plain moto checks no signature but refuses an anonymous GET; the
// stack's moto bench checks signatures and knows that secret for a key it
// has not issued). That is the test bench's shortcut: AWS Step Functions
// reads and writes with the state machine's execution role.
//
// What differs from AWS:
// - ItemReader reads one S3 object, InputType JSON (an array) or JSONL; no
//   CSV, MANIFEST, S3 inventory or s3:listObjectsV2 readers; ItemBatcher,
//   WriterConfig (Transformation, OutputType), JSONata and the Label's
//   validation are not supported (a definition using them fails the state).
// - Result files are never split (AWS starts a new file every 5 GB) and are
//   written when the Map Run ends, also when it failed; PENDING is always
//   empty: when the Map Run ends no child is left running (aborted children
//   are listed in FAILED_0.json with Status ABORTED); items that never started
//   are not written.
// - Child executions always have STANDARD semantics (ExecutionType EXPRESS
//   runs them the same way), run in this process, and cannot be redriven
//   (no RedriveMapRun; the files still say REDRIVABLE_BY_MAP_RUN for a failed
//   child, as AWS does). The concurrency cap without MaxConcurrency is 1,000
//   (AWS: 10,000).
// - The state stays a Task for the library: a Catch or Retry on
//   States.TaskFailed also matches the Map Run's errors; AWS's history events
//   MapRunStarted/MapRunSucceeded/MapRunFailed are not recorded.
// - `$$.Execution.Input` inside ItemSelector and ItemReader parameters is the
//   Map's effective input (the library evaluates them; the runner runs them as
//   a Pass state).
// - S3 is reached at AWS_ENDPOINT_URL with the fixed key above, not the
//   execution role; the ItemSelector of an item is evaluated when its child
//   starts.
// - A startExecution refused by the starter (unknown state machine, name
//   already used) fails the task as the service integration names the API's
//   error (StepFunctions.StateMachineDoesNotExistException,
//   StepFunctions.ExecutionAlreadyExistsException); stopping the parent
//   does not stop a child started by startExecution.

import { createHash, createHmac, randomUUID } from 'node:crypto';
import { StateMachine } from 'aws-local-stepfunctions';
import { TaskError } from './machine.mjs';

const START_EXECUTION = /^arn:aws:states:::states:startExecution(\.sync(:2)?)?$/;
// The Task that stands for a Distributed Map in the runner's copy; never invoked.
const MAP_RUN_RESOURCE = 'arn:aws:states:::map-run';
// The longest a Node timer can wait (2^31 ms is about 24 days): the library
// gives a Task 60 s by default, a Map Run or a nested execution has no limit.
const NO_TIMEOUT = 2_000_000;
const CONCURRENCY_CAP = 1000;
// The fields of a Map state the replacing Task keeps (the library applies them).
const KEPT = ['Comment', 'InputPath', 'ResultSelector', 'ResultPath', 'OutputPath', 'Retry', 'Catch', 'Next', 'End'];

export const isDistributedMap = (state) =>
  state.Type === 'Map' && (state.ItemProcessor ?? state.Iterator)?.ProcessorConfig?.Mode === 'DISTRIBUTED';

// The library's own evaluation of a payload template (paths, `$$`, intrinsic
// functions), run as a one-state Pass machine: it exports no evaluator.
async function evaluate(template, input, context) {
  const machine = new StateMachine(
    { StartAt: 'Evaluate', States: { Evaluate: { Type: 'Pass', Parameters: template, End: true } } },
    { validationOptions: { noValidate: true } },
  );
  try {
    return await machine.run(input, { context }).result;
  } catch (error) {
    throw error.cause ?? error;
  }
}

// S3 through moto (see the header): path-style, unsigned.
function s3Url(bucket, key, errorName) {
  const endpoint = process.env.AWS_ENDPOINT_URL;
  if (!endpoint) {
    throw new TaskError(errorName, 'AWS_ENDPOINT_URL is not set: the local runner reaches S3 through the moto server it names');
  }
  const path = String(key).split('/').map(encodeURIComponent).join('/');
  return `${endpoint.replace(/\/+$/, '')}/${encodeURIComponent(bucket)}/${path}`;
}

const ACCESS_KEY = 'local-step-functions';
const SECRET = 'testing';
const sha256 = (data) => createHash('sha256').update(data).digest('hex');
const hmac = (key, data) => createHmac('sha256', key).update(data).digest();

// The SigV4 headers of an S3 request (path-style; its query, if any, in canonical order).
function signed(method, url, body = '', extra = {}) {
  const { host, pathname, searchParams } = new URL(url);
  const query = [...searchParams.entries()]
    .map(([name, value]) => `${encodeURIComponent(name)}=${encodeURIComponent(value)}`)
    .sort()
    .join('&');
  const timestamp = new Date().toISOString().replace(/[-:]|\.\d{3}/g, '');
  const date = timestamp.slice(0, 8);
  const region = process.env.AWS_REGION ?? 'us-east-1';
  const headers = { host, 'x-amz-content-sha256': sha256(body), 'x-amz-date': timestamp, ...extra };
  const names = Object.keys(headers).sort();
  const canonical = [method, pathname, query, ...names.map((name) => `${name}:${headers[name]}`), '', names.join(';'), headers['x-amz-content-sha256']].join('\n');
  const scope = `${date}/${region}/s3/aws4_request`;
  const toSign = ['AWS4-HMAC-SHA256', timestamp, scope, sha256(canonical)].join('\n');
  const key = hmac(hmac(hmac(hmac(`AWS4${SECRET}`, date), region), 's3'), 'aws4_request');
  const signature = createHmac('sha256', key).update(toSign).digest('hex');
  delete headers.host; // fetch sends it
  return {
    ...headers,
    authorization: `AWS4-HMAC-SHA256 Credential=${ACCESS_KEY}/${scope}, SignedHeaders=${names.join(';')}, Signature=${signature}`,
  };
}

async function s3Get(bucket, key, errorName, versionId) {
  const base = s3Url(bucket, key, errorName);
  const url = versionId === undefined ? base : `${base}?versionId=${encodeURIComponent(versionId)}`;
  let response;
  try {
    response = await fetch(url, { headers: signed('GET', url) });
  } catch (error) {
    throw new TaskError(errorName, `s3://${bucket}/${key}: no answer: ${error.cause?.message ?? error.message}`);
  }
  const body = await response.text();
  if (!response.ok) {
    const code = body.match(/<Code>([^<]+)<\/Code>/)?.[1] ?? `HTTP ${response.status}`;
    throw new TaskError(errorName, `s3://${bucket}/${key} could not be read: ${code}`);
  }
  return body;
}

async function s3Put(bucket, key, text, errorName) {
  const url = s3Url(bucket, key, errorName);
  let response;
  try {
    // Content-MD5: S3 wants it (or a checksum) on every write to an Object Lock bucket.
    const md5 = createHash('md5').update(text).digest('base64');
    response = await fetch(url, { method: 'PUT', headers: signed('PUT', url, text, { 'content-md5': md5, 'content-type': 'application/json' }), body: text });
  } catch (error) {
    throw new TaskError(errorName, `s3://${bucket}/${key}: no answer: ${error.cause?.message ?? error.message}`);
  }
  if (!response.ok) {
    const body = await response.text();
    const code = body.match(/<Code>([^<]+)<\/Code>/)?.[1] ?? `HTTP ${response.status}`;
    throw new TaskError(errorName, `s3://${bucket}/${key} could not be written: ${code}`);
  }
}

// The items of an ItemReader: the object must hold a JSON array (InputType
// JSON, the default for s3:getObject here) or JSON lines (JSONL).
async function readItems(reader, parameters) {
  const fail = (message) => new TaskError('States.ItemReaderFailed', message);
  const type = reader.ReaderConfig?.InputType ?? 'JSON';
  if (reader.Resource !== 'arn:aws:states:::s3:getObject' || !['JSON', 'JSONL'].includes(type)) {
    throw fail(`the local runner reads items only with s3:getObject, InputType JSON or JSONL (got ${reader.Resource}, ${type})`);
  }
  const { Bucket: bucket, Key: key, VersionId: versionId } = parameters ?? {};
  if (typeof bucket !== 'string' || typeof key !== 'string') throw fail('ItemReader Parameters need Bucket and Key');
  if (versionId !== undefined && typeof versionId !== 'string') throw fail('ItemReader VersionId is not a string');
  // VersionId: that version of the object, and no other (the ItemReader's Parameters, as AWS documents them).
  const text = await s3Get(bucket, key, 'States.ItemReaderFailed', versionId);
  try {
    if (type === 'JSONL') return text.split('\n').filter((line) => line.trim()).map((line) => JSON.parse(line));
    const items = JSON.parse(text);
    if (!Array.isArray(items)) throw new Error('the object is not a JSON array');
    return items;
  } catch (error) {
    throw fail(`s3://${bucket}/${key}: ${error.message}`);
  }
}

const MAP_RUN_COUNTS = ['total', 'pending', 'running', 'succeeded', 'failed', 'timedOut', 'aborted', 'resultsWritten'];

// Every Map Run of this process, by ARN: serve.mjs answers ListMapRuns and DescribeMapRun from it.
export class MapRuns {
  constructor() {
    this.runs = new Map();
  }

  create(fields) {
    const run = {
      status: 'RUNNING', startDate: new Date(), stopDate: undefined,
      itemCounts: Object.fromEntries(MAP_RUN_COUNTS.map((count) => [count, 0])),
      executionCounts: Object.fromEntries(MAP_RUN_COUNTS.map((count) => [count, 0])),
      ...fields,
    };
    this.runs.set(run.mapRunArn, run);
    return run;
  }

  get(mapRunArn) {
    return this.runs.get(mapRunArn);
  }

  ofExecution(executionArn) {
    return [...this.runs.values()].filter((run) => run.executionArn === executionArn);
  }
}

// `arn:aws:states:R:A:stateMachine:NAME` -> { region, account, name }
function parseStateMachineArn(arn) {
  const [, , , region, account, , ...name] = arn.split(':');
  return { region, account, name: name.join(':') };
}

const iso = (date) => new Date(date).toISOString();

// One entry of SUCCEEDED_0.json / FAILED_0.json (fields in the order AWS writes them).
function resultEntry(child) {
  const succeeded = child.status === 'SUCCEEDED';
  return {
    ExecutionArn: child.executionArn,
    Input: JSON.stringify(child.input),
    InputDetails: { Included: true },
    Name: child.name,
    ...(succeeded
      ? { Output: JSON.stringify(child.output), OutputDetails: { Included: true } }
      : { Error: child.error, Cause: child.cause }),
    RedriveCount: 0,
    RedriveStatus: succeeded ? 'NOT_REDRIVABLE' : 'REDRIVABLE_BY_MAP_RUN',
    ...(succeeded ? { RedriveStatusReason: 'Execution is SUCCEEDED and cannot be redriven' } : {}),
    StartDate: iso(child.startDate),
    StateMachineArn: child.stateMachineArn,
    Status: child.status,
    StopDate: iso(child.stopDate),
  };
}

async function writeResults(mapRun, runId, writer, children) {
  const { Bucket: bucket, Prefix: prefix } = writer ?? {};
  if (typeof bucket !== 'string') throw new TaskError('States.ResultWriterFailed', 'ResultWriter Parameters need a Bucket');
  const base = [prefix, runId].filter((part) => part).map((part) => String(part).replace(/^\/+|\/+$/g, '')).join('/');
  const files = { FAILED: [], PENDING: [], SUCCEEDED: [] };
  for (const status of Object.keys(files)) {
    const entries = children
      .filter((child) => (status === 'SUCCEEDED' ? child.status === 'SUCCEEDED' : status === 'FAILED' && child.status !== 'SUCCEEDED'))
      .map(resultEntry);
    if (entries.length === 0) continue;
    const key = `${base}/${status}_0.json`;
    const text = JSON.stringify(entries);
    await s3Put(bucket, key, text, 'States.ResultWriterFailed');
    files[status].push({ Key: key, Size: Buffer.byteLength(text) });
    mapRun.itemCounts.resultsWritten += entries.length;
    mapRun.executionCounts.resultsWritten += entries.length;
  }
  const key = `${base}/manifest.json`;
  const manifest = { DestinationBucket: bucket, MapRunArn: mapRun.mapRunArn, ResultFiles: files };
  await s3Put(bucket, key, JSON.stringify(manifest), 'States.ResultWriterFailed');
  return { Bucket: bucket, Key: key };
}

const whole = (value, what, max = Infinity) => {
  if (!Number.isFinite(value) || value < 0 || value > max || (max === Infinity && !Number.isInteger(value))) {
    throw new TaskError('States.Runtime', `${what} is not valid: ${JSON.stringify(value)}`);
  }
  return value;
};

// The Map Run of one Distributed Map state, with its effective input (after InputPath).
async function runMap(stateName, state, input, env) {
  const processor = state.ItemProcessor ?? state.Iterator;
  const context = env.context();
  const reader = state.ItemReader;
  const template = {};
  if (reader?.Parameters) template.reader = reader.Parameters;
  if (state.ResultWriter?.Parameters) template.writer = state.ResultWriter.Parameters;
  if (state.ItemsPath) template['items.$'] = state.ItemsPath;
  if (state.MaxConcurrencyPath) template['maxConcurrency.$'] = state.MaxConcurrencyPath;
  if (state.ToleratedFailurePercentagePath) template['percentage.$'] = state.ToleratedFailurePercentagePath;
  if (state.ToleratedFailureCountPath) template['count.$'] = state.ToleratedFailureCountPath;
  if (reader?.ReaderConfig?.MaxItemsPath) template['maxItems.$'] = reader.ReaderConfig.MaxItemsPath;
  const settings = await evaluate(template, input, context);

  const maxConcurrency = whole(settings.maxConcurrency ?? state.MaxConcurrency ?? 0, 'MaxConcurrency');
  const percentage = settings.percentage ?? state.ToleratedFailurePercentage;
  const count = settings.count ?? state.ToleratedFailureCount;
  if (percentage !== undefined) whole(percentage, 'ToleratedFailurePercentage', 100);
  if (count !== undefined) whole(count, 'ToleratedFailureCount');

  const { region, account, name: machineName } = parseStateMachineArn(env.stateMachineArn);
  const label = state.Label ?? randomUUID();
  const runId = randomUUID();
  const childMachine = `arn:aws:states:${region}:${account}:stateMachine:${machineName}/${label}`;
  const mapRun = env.mapRuns.create({
    mapRunArn: `arn:aws:states:${region}:${account}:mapRun:${machineName}/${label}:${runId}`,
    executionArn: env.executionArn,
    stateMachineArn: childMachine,
    stateName,
    maxConcurrency,
    toleratedFailurePercentage: percentage ?? 0,
    toleratedFailureCount: count ?? 0,
  });
  const finish = (status) => Object.assign(mapRun, { status, stopDate: new Date() });

  let items;
  try {
    if (reader) items = await readItems(reader, settings.reader);
    else items = state.ItemsPath ? settings.items : input;
    if (!Array.isArray(items)) throw new TaskError('States.Runtime', 'the Map\'s items (ItemsPath, or the state input) are not an array');
    const maxItems = settings.maxItems ?? reader?.ReaderConfig?.MaxItems;
    if (maxItems !== undefined && whole(maxItems, 'MaxItems') > 0) items = items.slice(0, maxItems);
  } catch (error) {
    finish('FAILED');
    throw error;
  }

  const counts = [mapRun.itemCounts, mapRun.executionCounts];
  const bump = (field, by) => counts.forEach((c) => { c[field] += by; });
  mapRun.itemCounts.total = items.length;
  mapRun.itemCounts.pending = items.length;
  // Over the threshold: more failures than the count, or a larger share than the percentage.
  const exceeded = (failures) => (count !== undefined && failures > count)
    || (percentage !== undefined && (failures / items.length) * 100 > percentage)
    || (count === undefined && percentage === undefined && failures > 0);

  const children = new Array(items.length);
  const limit = maxConcurrency > 0 ? Math.min(maxConcurrency, CONCURRENCY_CAP) : CONCURRENCY_CAP;
  const running = new Map();
  let next = 0;
  let failures = 0;
  let stopped = false;
  let aborted = false;
  let fatal;
  const stopAll = () => {
    stopped = true;
    for (const entry of running.values()) entry.abort();
  };
  const abortRun = () => {
    aborted = true;
    stopAll();
  };
  env.aborters.add(abortRun);

  await new Promise((resolve) => {
    const launch = () => {
      while (!stopped && running.size < limit && next < items.length) start(next++);
      if (running.size === 0) resolve();
    };
    const start = (index) => {
      const entry = { abort() { this.aborted = true; this.run?.abort(); } };
      running.set(index, entry);
      mapRun.itemCounts.pending -= 1;
      bump('running', 1);
      mapRun.executionCounts.total += 1;
      (async () => {
        const name = randomUUID();
        const child = {
          executionArn: `arn:aws:states:${region}:${account}:execution:${machineName}/${label}:${name}`,
          stateMachineArn: childMachine, name, startDate: new Date(), input: items[index],
        };
        try {
          if (state.ItemSelector ?? state.Parameters) {
            child.input = await evaluate(state.ItemSelector ?? state.Parameters, input, {
              ...context, Map: { Item: { Index: index, Value: items[index] } },
            });
          }
          if (entry.aborted) {
            Object.assign(child, { status: 'ABORTED', error: 'States.Aborted', cause: 'the Map Run stopped' });
          } else {
            entry.run = env.runChild({
              definition: { StartAt: processor.StartAt, States: processor.States },
              input: child.input, executionArn: child.executionArn, name, stateMachineArn: childMachine,
              mapRunArn: mapRun.mapRunArn,
            });
            if (entry.aborted) entry.run.abort();
            const report = await entry.run.result;
            Object.assign(child, { status: report.status, output: report.output, error: report.error, cause: report.cause });
          }
        } catch (error) {
          // ItemSelector could not be evaluated: the Map Run fails with that error.
          fatal ??= error;
          Object.assign(child, { status: 'FAILED', error: error.name, cause: error.message });
          stopAll();
        }
        child.stopDate = new Date();
        children[index] = child;
        running.delete(index);
        bump('running', -1);
        const field = { SUCCEEDED: 'succeeded', FAILED: 'failed', TIMED_OUT: 'timedOut', ABORTED: 'aborted' }[child.status];
        bump(field, 1);
        if (child.status !== 'SUCCEEDED') {
          failures += 1;
          if (exceeded(failures)) stopAll();
        }
        launch();
      })();
    };
    launch();
  });
  env.aborters.delete(abortRun);

  const ended = children.filter(Boolean);
  if (aborted) {
    finish('ABORTED');
    throw new TaskError('States.Aborted', 'the execution was stopped');
  }
  const failedRun = fatal ?? (exceeded(failures)
    ? new TaskError('States.ExceedToleratedFailureThreshold', 'The specified tolerated failure threshold was exceeded')
    : undefined);
  let details;
  if (state.ResultWriter) {
    try {
      details = await writeResults(mapRun, runId, settings.writer, ended);
    } catch (error) {
      finish('FAILED');
      throw failedRun ?? error;
    }
  }
  if (failedRun) {
    finish('FAILED');
    throw failedRun;
  }
  finish('SUCCEEDED');
  if (details) return { MapRunArn: mapRun.mapRunArn, ResultWriterDetails: details };
  // Without ResultWriter: each child's output; a failed child's execution result as is.
  return children.map((child) => (child.status === 'SUCCEEDED' ? child.output : resultEntry(child)));
}

// The DescribeExecution response as the .sync integrations return it (dates in epoch milliseconds).
function describe(started, parsed) {
  const text = (value) => (parsed ? value : JSON.stringify(value));
  const succeeded = started.status === 'SUCCEEDED';
  return {
    ExecutionArn: started.executionArn,
    Input: text(started.input),
    InputDetails: { Included: true },
    Name: started.name,
    ...(succeeded ? { Output: text(started.output), OutputDetails: { Included: true } } : {}),
    ...(started.error !== undefined ? { Error: started.error } : {}),
    ...(started.cause !== undefined ? { Cause: started.cause } : {}),
    RedriveCount: 0,
    RedriveStatus: 'NOT_REDRIVABLE',
    ...(succeeded ? { RedriveStatusReason: 'Execution is SUCCEEDED and cannot be redriven' } : {}),
    StartDate: new Date(started.startDate).getTime(),
    StateMachineArn: started.stateMachineArn,
    Status: started.status,
    StopDate: new Date(started.stopDate).getTime(),
  };
}

async function startExecution(resource, parameters, env) {
  const [, sync, v2] = resource.match(START_EXECUTION);
  if (!env.startChild) throw new TaskError('States.Runtime', `${resource}: nothing starts executions here (no startChild)`);
  const { StateMachineArn: stateMachineArn, Name: name = randomUUID() } = parameters ?? {};
  let input = parameters?.Input ?? {};
  if (typeof input === 'string') {
    try {
      input = JSON.parse(input);
    } catch (error) {
      throw new TaskError('StepFunctions.InvalidExecutionInput', `Input is not JSON: ${error.message}`);
    }
  }
  let started;
  try {
    started = await env.startChild({ stateMachineArn, name, input, sync: Boolean(sync) });
  } catch (error) {
    // A service integration's error is named `<Service>.<Exception>`, as
    // AWS names it (StepFunctions.ExecutionAlreadyExistsException).
    const code = error.type ?? error.name;
    throw new TaskError(code.includes('.') ? code : `StepFunctions.${code.replace(/(Exception)?$/, 'Exception')}`, error.message);
  }
  if (!sync) return { ExecutionArn: started.executionArn, StartDate: new Date(started.startDate).getTime() };
  const description = describe({ stateMachineArn, name, input, ...started }, Boolean(v2));
  if (started.status !== 'SUCCEEDED') throw new TaskError('States.TaskFailed', JSON.stringify(description));
  return description;
}

// Replaces each Distributed Map of `states` (at any depth but inside another
// Distributed Map, whose child executions do the same) by its Task, and
// returns the local handlers of those Tasks and of the startExecution Tasks.
// `env`: { context(), executionArn, stateMachineArn, mapRuns, runChild, startChild, aborters }.
export function localHandlers(states, env, found = {}) {
  for (const [name, state] of Object.entries(states)) {
    if (isDistributedMap(state)) {
      const unsupported = ['ItemBatcher', 'Arguments', 'Items', 'QueryLanguage'].filter((field) => field in state);
      if (state.ResultWriter?.WriterConfig) unsupported.push('ResultWriter.WriterConfig');
      const task = { Type: 'Task', Resource: MAP_RUN_RESOURCE, TimeoutSeconds: NO_TIMEOUT };
      for (const field of KEPT) if (field in state) task[field] = state[field];
      states[name] = task;
      found[name] = unsupported.length
        ? async () => { throw new TaskError('States.Runtime', `the local runner does not support ${unsupported.join(', ')} in a Distributed Map`); }
        : (input) => runMap(name, state, input, env);
      continue;
    }
    if (state.Type === 'Task' && START_EXECUTION.test(state.Resource)) {
      if (state.TimeoutSeconds === undefined && state.TimeoutSecondsPath === undefined) state.TimeoutSeconds = NO_TIMEOUT;
      found[name] = (parameters) => startExecution(state.Resource, parameters, env);
    }
    for (const branch of state.Branches ?? []) localHandlers(branch.States, env, found);
    const iterator = state.ItemProcessor ?? state.Iterator;
    if (iterator) localHandlers(iterator.States, env, found);
  }
  return found;
}
