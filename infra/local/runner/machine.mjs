// What run.mjs (one execution) and serve.mjs (the Step Functions API) share:
// loading a real definition, invoking the real Lambdas through the Lambda
// Invoke API that `cargo lambda watch` serves, and running one execution with
// aws-local-stepfunctions.
//
// A Lambda error is raised with its errorType as the error name, so the
// definition's Retry and Catch behave as in AWS.
//
// `.waitForTaskToken` tasks (the approval gate): aws-local-stepfunctions has
// no callback pattern, so the runner plays it. Each attempt of the task gets
// a token of its own, as in AWS (the library resolves `$$.Task.Token` from a
// per-execution context, so the runner puts a fresh token in its place); the
// task is recorded as scheduled with its resolved parameters (the execution's
// history is where `ec2-forensics approve` finds the token), invokes its
// Lambda with the Payload, then waits until `answer(token, ...)` (serve.mjs:
// SendTaskSuccess or SendTaskFailure) or the timeout (`States.Timeout`).
// Where the library and AWS differ, the runner follows AWS: the library
// evaluates a Task's TimeoutSecondsPath against the effective input (after
// Parameters) and defaults a task's timeout to 60 s; AWS reads the path from
// the state input and waits until the path's value. So the runner lifts
// TimeoutSecondsPath from its copy of the gate's definition and applies it
// itself, reading it from the Payload field that holds that path
// (`"timeoutSeconds.$": "$.decision.approvalTimeoutSeconds"`) or that carries
// the whole state input (`"x.$": "$"`).
//
// Distributed Map states and the `states:startExecution` integrations, which
// the library lacks, are played by distributed.mjs; their child executions
// are executions of this module too.

import { readFile } from 'node:fs/promises';
import { randomUUID } from 'node:crypto';
import { ExecutionAbortedError, ExecutionTimeoutError, StateMachine } from 'aws-local-stepfunctions';
import { isDistributedMap, localHandlers, MapRuns } from './distributed.mjs';

const CALLBACK = '.waitForTaskToken';

export class TaskError extends Error {
  constructor(name, message) {
    super(message);
    this.name = name;
  }
}

// `${TriageFunctionArn}` -> arn:aws:lambda:REGION:ACCOUNT:function:triage
const functionName = (placeholder) =>
  placeholder.replace(/FunctionArn$/, '').replace(/([a-z0-9])([A-Z])/g, '$1-$2').toLowerCase();

// `${ForensicsStateMachineArn}` -> arn:aws:states:REGION:ACCOUNT:stateMachine:forensics
const stateMachineName = (placeholder) =>
  placeholder.replace(/StateMachineArn$/, '').replace(/([a-z0-9])([A-Z])/g, '$1-$2').toLowerCase();

export async function loadDefinition(file, region, account) {
  const text = (await readFile(file, 'utf8'))
    .replace(
      /\$\{([A-Za-z]+FunctionArn)\}/g,
      (_, placeholder) => `arn:aws:lambda:${region}:${account}:function:${functionName(placeholder)}`,
    )
    .replace(
      /\$\{([A-Za-z]+StateMachineArn)\}/g,
      (_, placeholder) => `arn:aws:states:${region}:${account}:stateMachine:${stateMachineName(placeholder)}`,
    );
  return JSON.parse(text);
}

// How Step Functions names a failed invocation (see "Handle Lambda service
// exceptions" in its guide): the function's own error by its errorType; an
// unhandled one without a type (a crash, running out of memory or time) as
// Lambda.Unknown; the Lambda service failing (HTTP 5xx without a function
// error) as Lambda.ServiceException, throttling (429) as
// Lambda.TooManyRequestsException, and no answer at all as
// Lambda.SdkClientException. So the definition's Retry is what is tested.
async function invoke(lambdaEndpoint, resource, payload) {
  const name = resource.split(':').pop();
  const url = `${lambdaEndpoint}/2015-03-31/functions/${name}/invocations`;
  let response;
  try {
    response = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(payload),
    });
  } catch (error) {
    throw new TaskError('Lambda.SdkClientException', `${name}: no answer: ${error.cause?.message ?? error.message}`);
  }
  const body = await response.text();
  let result = null;
  try {
    result = body ? JSON.parse(body) : null;
  } catch {
    result = undefined;
  }
  // A function error: Lambda answers 200 with X-Amz-Function-Error; `cargo
  // lambda watch` answers 500 with the same error object, so the object decides.
  const typed = result && typeof result === 'object' && 'errorType' in result && 'errorMessage' in result;
  const functionError = response.headers.get('x-amz-function-error');
  if (typed || functionError) {
    throw new TaskError(result?.errorType ?? 'Lambda.Unknown', result?.errorMessage ?? `${name}: ${body}`);
  }
  if (response.status === 429) {
    throw new TaskError('Lambda.TooManyRequestsException', `${name} answered 429: ${body}`);
  }
  if (!response.ok || result === undefined) {
    throw new TaskError('Lambda.ServiceException', `${name} answered ${response.status}: ${body}`);
  }
  return result;
}

// The bench's fault: the first attempt of each Task runs its Lambda to the
// end, then its answer is lost, in turn as the two ways that happens on AWS:
// Lambda.ClientExecutionTimeoutException (the client gave up on an
// invocation that ran) and Lambda.Unknown (the function ran out of time or
// memory after its side effects). The Retry runs the step again on the same
// input, after its side effects.
const LOST_ANSWERS = ['Lambda.ClientExecutionTimeoutException', 'Lambda.Unknown'];

function losingFirstAnswer(name, handler, faults) {
  let lost = false;
  return async (payload) => {
    const result = await handler(payload);
    if (lost) return result;
    lost = true;
    const error = LOST_ANSWERS[faults.length % LOST_ANSWERS.length];
    faults.push({ state: name, error });
    throw new TaskError(error, `the bench lost ${name}'s answer after the function ran`);
  };
}

// `$.a.b` of `value` (the only path form the gate's timeout uses).
function select(path, value) {
  return path.replace(/^\$\.?/, '').split('.').filter(Boolean)
    .reduce((v, key) => (v == null ? undefined : v[key]), value);
}

// The timeout a callback task's Payload gives for TimeoutSecondsPath: the
// field that holds exactly that path, else the path within the field that
// carries the whole state input.
function timeoutFrom(parameters, timeoutPath, payload) {
  const fields = Object.entries(parameters?.Payload ?? {}).filter(([key]) => key.endsWith('.$'));
  const exact = fields.find(([, path]) => path === timeoutPath);
  if (exact) return payload?.[exact[0].slice(0, -2)];
  const whole = fields.find(([, path]) => path === '$');
  return whole ? select(timeoutPath, payload?.[whole[0].slice(0, -2)]) : undefined;
}

// Every Task state, at any depth (Parallel branches, Map iterators): its local handler.
function taskHandlers(states, callbacks, contextToken, lambdaEndpoint, onScheduled, found = {}) {
  for (const [name, state] of Object.entries(states)) {
    if (state.Type === 'Task' && state.Resource.endsWith(CALLBACK)) {
      const timeoutPath = state.TimeoutSecondsPath;
      const parameters = structuredClone(state.Parameters);
      delete state.TimeoutSecondsPath;
      // The longest a Node timer can wait (2^31 ms is about 24 days).
      state.TimeoutSeconds = 2_000_000;
      found[name] = async (input) => {
        const token = randomUUID();
        const payload = JSON.parse(JSON.stringify(input.Payload).replaceAll(contextToken, token));
        const waiting = callbacks.wait(token);
        let timer;
        try {
          onScheduled?.({ state: name, resource: state.Resource, parameters: { ...input, Payload: payload } });
          await invoke(lambdaEndpoint, input.FunctionName, payload);
          const seconds = timeoutPath ? timeoutFrom(parameters, timeoutPath, payload) : state.TimeoutSeconds;
          if (!Number.isInteger(seconds) || seconds < 1) {
            throw new TaskError('States.Runtime', `${timeoutPath} is not a positive integer: ${seconds}`);
          }
          const timeout = new Promise((_, reject) => {
            timer = setTimeout(() => reject(new TaskError('States.Timeout', 'the task timed out')), Math.min(seconds * 1000, 2 ** 31 - 1));
          });
          return await Promise.race([waiting, timeout]);
        } finally {
          clearTimeout(timer);
          callbacks.forget(token);
        }
      };
    } else if (state.Type === 'Task') {
      found[name] = (payload) => invoke(lambdaEndpoint, state.Resource, payload);
    }
    for (const branch of state.Branches ?? []) taskHandlers(branch.States, callbacks, contextToken, lambdaEndpoint, onScheduled, found);
    const iterator = state.ItemProcessor ?? state.Iterator;
    if (iterator) taskHandlers(iterator.States, callbacks, contextToken, lambdaEndpoint, onScheduled, found);
  }
  return found;
}

// Task tokens of the running executions: SendTaskSuccess and SendTaskFailure answer them.
export class Callbacks {
  constructor() {
    this.waiting = new Map();
  }

  wait(token) {
    const answer = Promise.withResolvers();
    this.waiting.set(token, answer);
    return answer.promise;
  }

  forget(token) {
    this.waiting.delete(token);
  }

  // true when the token was waiting.
  answer(token, { output, error, cause }) {
    const waiting = this.waiting.get(token);
    if (!waiting) return false;
    this.waiting.delete(token);
    if (error !== undefined) waiting.reject(new TaskError(error, cause ?? ''));
    else waiting.resolve(output);
    return true;
  }
}

// The local stack's Wait states last WAIT_MS milliseconds (default 500)
// instead of their Seconds: the emulator's snapshots complete at once, and the
// test bench's host scripts take a second, so a 20 s wait would only slow the
// tests. The loops' bounds (check counts) are the definition's own.
const WAIT_MS = Number(process.env.WAIT_MS ?? 500);

function waitOverrides(states, overrides = {}) {
  for (const [name, state] of Object.entries(states)) {
    if (state.Type === 'Wait') overrides[name] = WAIT_MS;
    for (const branch of state.Branches ?? []) waitOverrides(branch.States, overrides);
  }
  return overrides;
}

// Starts one execution. `onEvent` sees every event of aws-local-stepfunctions'
// log, `onScheduled` every attempt of a callback task ({ state, resource,
// parameters }). With `loseFirstAnswers`, every Lambda Task but a callback one
// has its first answer lost after its Lambda ran. Resolves to { status,
// output, error, cause, faults }: status is SUCCEEDED, FAILED, TIMED_OUT or
// ABORTED; faults names the Tasks whose answer was lost.
// Distributed Maps and startExecution Tasks (distributed.mjs): `startChild`
// starts an execution for `states:startExecution*` ({ stateMachineArn, name,
// input, sync } -> for sync a promise of { status, output, error, cause,
// executionArn, startDate, stopDate }, else of { executionArn, startDate });
// `mapRuns` (a MapRuns) records the Map Runs; `onChildExecution` sees each
// child execution of a Map Run start ({ executionArn, stateMachineArn, name,
// mapRunArn, input, startDate, abort }) and may answer { onEvent, onScheduled,
// finished(report) } to follow it. `stateMachineArn` defaults to the one the
// execution ARN names.
export function execute({
  definition, input, lambdaEndpoint, executionArn, name, callbacks, onEvent, onScheduled, loseFirstAnswers,
  stateMachineArn, startChild, mapRuns, onChildExecution,
}) {
  const copy = structuredClone(definition);
  const registry = callbacks ?? new Callbacks();
  const runs = mapRuns ?? new MapRuns();
  const machineArn = stateMachineArn ?? executionArn.split(':').slice(0, -1).join(':').replace(':execution:', ':stateMachine:');
  // Where the Map states were: their history events keep the Map type.
  const mapStates = new Set();
  const collectMaps = (states) => {
    for (const [stateName, state] of Object.entries(states)) {
      if (isDistributedMap(state)) mapStates.add(stateName);
      else for (const branch of [...(state.Branches ?? []), ...[state.ItemProcessor ?? state.Iterator].filter(Boolean)]) collectMaps(branch.States);
    }
  };
  collectMaps(copy.States);
  const aborters = new Set();
  const startedAt = new Date().toISOString();
  const local = localHandlers(copy.States, {
    context: () => ({ Execution: { Id: executionArn, Name: name, Input: input, StartTime: startedAt } }),
    executionArn,
    stateMachineArn: machineArn,
    mapRuns: runs,
    startChild,
    aborters,
    runChild: (child) => {
      let run;
      const hooks = onChildExecution?.({
        executionArn: child.executionArn, stateMachineArn: child.stateMachineArn, name: child.name,
        mapRunArn: child.mapRunArn, input: child.input, startDate: new Date(), abort: () => run?.abort(),
      }) ?? {};
      run = execute({
        definition: child.definition, input: child.input, lambdaEndpoint, executionArn: child.executionArn,
        name: child.name, callbacks: registry, onEvent: hooks.onEvent, onScheduled: hooks.onScheduled,
        loseFirstAnswers, stateMachineArn: child.stateMachineArn, startChild, mapRuns: runs, onChildExecution,
      });
      run.result.then((report) => hooks.finished?.(report));
      return run;
    },
  });
  // The library's per-execution `$$.Task.Token`; each attempt replaces it with its own.
  const token = randomUUID();
  const lambdas = taskHandlers(copy.States, registry, token, lambdaEndpoint, onScheduled);
  for (const stateName of Object.keys(local)) delete lambdas[stateName];
  const faults = [];
  if (loseFirstAnswers) {
    const callbackStates = new Set();
    const collect = (states) => {
      for (const [stateName, state] of Object.entries(states)) {
        if (state.Type === 'Task' && state.Resource.endsWith(CALLBACK)) callbackStates.add(stateName);
        for (const branch of state.Branches ?? []) collect(branch.States);
        const iterator = state.ItemProcessor ?? state.Iterator;
        if (iterator) collect(iterator.States);
      }
    };
    collect(copy.States);
    for (const [stateName, handler] of Object.entries(lambdas)) {
      if (!callbackStates.has(stateName)) lambdas[stateName] = losingFirstAnswer(stateName, handler, faults);
    }
  }
  const handlers = { ...lambdas, ...local };
  const machine = new StateMachine(copy, { validationOptions: { checkArn: true } });
  const execution = machine.run(input, {
    overrides: { taskResourceLocalHandlers: handlers, waitTimeOverrides: waitOverrides(copy.States) },
    context: {
      Execution: { Id: executionArn, Name: name, Input: input, StartTime: startedAt },
      Task: { Token: token },
    },
  });
  let lastOutput = input;
  const logs = (async () => {
    for await (const event of execution.eventLogs) {
      if (event.type === 'StateExited' && event.state.output !== undefined) lastOutput = event.state.output;
      if (event.state && mapStates.has(event.state.name)) event.state.type = 'Map';
      onEvent?.(event);
    }
  })();
  const result = (async () => {
    let report;
    try {
      report = { status: 'SUCCEEDED', output: await execution.result };
    } catch (error) {
      // The library wraps the execution's error (a Fail state's Error and
      // Cause, or an uncaught task error) in an ExecutionError.
      const failure = error.cause ?? error;
      const status = error instanceof ExecutionAbortedError ? 'ABORTED'
        : error instanceof ExecutionTimeoutError ? 'TIMED_OUT' : 'FAILED';
      report = { status, error: failure.name, cause: failure.message, output: lastOutput };
      if (status === 'TIMED_OUT') Object.assign(report, { error: 'States.Timeout', cause: 'the execution timed out' });
    }
    await logs.catch(() => {});
    report.faults = faults;
    return report;
  })();
  return {
    result,
    abort: () => {
      for (const abort of aborters) abort();
      execution.abort();
    },
  };
}
