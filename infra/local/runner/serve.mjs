// The local Step Functions API: the part of it the product calls, over the
// real wire protocol (AWS JSON 1.0, `X-Amz-Target: AWSStepFunctions.<Op>`), so
// dispatch, `ec2-forensics start|approve|deny|status` and the tests use their
// real aws-sdk-sfn calls against it (AWS_ENDPOINT_URL_SFN).
//
// StartExecution runs the real definition (machine.mjs: every Task invokes the
// real Lambda behind `cargo lambda watch`); a second execution of the same
// name is refused with ExecutionAlreadyExists, as AWS does (unless it is
// running with the same input: then StartExecution answers with it). DescribeExecution,
// ListExecutions, GetExecutionHistory, StopExecution, SendTaskSuccess,
// SendTaskFailure and SendTaskHeartbeat answer as the API reference describes.
//
// Several definitions can be served, each the state machine
// arn:aws:states:REGION:ACCOUNT:stateMachine:NAME: StartExecution picks it by
// stateMachineArn. A Distributed Map's Map Runs (distributed.mjs) answer
// ListMapRuns and DescribeMapRun, and their child executions are executions
// here (DescribeExecution, GetExecutionHistory, ListExecutions by mapRunArn,
// SendTaskSuccess to their callback tasks). A `states:startExecution*` task
// starts a real execution of a served definition, as StartExecution does.
//
// Usage: node serve.mjs --port P --definition NAME=FILE [--definition NAME=FILE ...]
//                       --lambda-endpoint URL [--region R] [--account A]
//        node serve.mjs --port P --definition FILE --name NAME ... (one definition)

import { createServer } from 'node:http';
import { randomUUID } from 'node:crypto';
import { parseArgs } from 'node:util';
import { Callbacks, execute, loadDefinition } from './machine.mjs';
import { MapRuns } from './distributed.mjs';

const { values: args } = parseArgs({
  options: {
    port: { type: 'string' },
    definition: { type: 'string', multiple: true },
    'lambda-endpoint': { type: 'string' },
    region: { type: 'string', default: 'us-east-1' },
    account: { type: 'string', default: '123456789012' },
    name: { type: 'string', default: 'forensics' },
  },
});
for (const required of ['port', 'definition', 'lambda-endpoint']) {
  if (!args[required]) {
    console.error(`serve.mjs: --${required} is required`);
    process.exit(2);
  }
}

// A task that lost a race to its timeout may still fail later: log it, keep serving.
process.on('unhandledRejection', (error) => console.error(`${new Date().toISOString()} late task error: ${error}`));

// stateMachineArn -> definition; `--definition FILE` alone is named by --name.
const definitions = new Map();
for (const option of args.definition) {
  const [name, file] = option.includes('=') ? [option.slice(0, option.indexOf('=')), option.slice(option.indexOf('=') + 1)] : [args.name, option];
  const arn = `arn:aws:states:${args.region}:${args.account}:stateMachine:${name}`;
  definitions.set(arn, await loadDefinition(file, args.region, args.account));
}
const callbacks = new Callbacks();
const mapRuns = new MapRuns();
const executions = new Map(); // executionArn -> execution record

class ApiError extends Error {
  constructor(type, message) {
    super(message);
    this.type = type;
  }
}

const seconds = (date) => date.getTime() / 1000;

// aws-local-stepfunctions' event log -> Step Functions history events.
function historyEvent(event, state) {
  const text = (value) => (value === undefined ? undefined : JSON.stringify(value));
  switch (event.type) {
    case 'ExecutionStarted':
      return { type: 'ExecutionStarted', executionStartedEventDetails: { input: text(event.input), roleArn: `arn:aws:iam::${args.account}:role/local` } };
    case 'ExecutionSucceeded':
      return { type: 'ExecutionSucceeded', executionSucceededEventDetails: { output: text(event.output) } };
    case 'ExecutionFailed':
      return { type: 'ExecutionFailed', executionFailedEventDetails: { error: event.Error, cause: String(event.Cause ?? '') } };
    case 'ExecutionAborted':
      return { type: 'ExecutionAborted', executionAbortedEventDetails: {} };
    case 'StateEntered':
      return { type: `${state.type}StateEntered`, stateEnteredEventDetails: { name: state.name, input: text(state.input) } };
    case 'StateExited':
      return { type: `${state.type}StateExited`, stateExitedEventDetails: { name: state.name, output: text(state.output) } };
    case 'StateFailed':
      return state.type === 'Task'
        ? { type: 'TaskFailed', taskFailedEventDetails: { resourceType: 'lambda', resource: 'invoke', error: event.Error, cause: String(event.Cause ?? '') } }
        : undefined;
    default:
      return undefined;
  }
}

function addEvent(record, timestamp, event) {
  const id = record.history.length + 1;
  record.history.push({ id, previousEventId: id - 1, timestamp, ...event });
}

// An execution's history and end, as its record keeps them.
function following(record) {
  return {
    onEvent: (event) => {
      const mapped = historyEvent(event, event.state);
      if (mapped) addEvent(record, event.timestamp / 1000, mapped);
    },
    // As AWS records a callback task: TaskScheduled with its resolved
    // parameters (the Payload holds the attempt's task token).
    onScheduled: ({ resource, parameters }) => addEvent(record, Date.now() / 1000, {
      type: 'TaskScheduled',
      taskScheduledEventDetails: {
        resourceType: 'lambda', resource: resource.replace(/^arn:aws:states:::lambda:/, ''), region: args.region,
        parameters: JSON.stringify(parameters),
      },
    }),
    finished: (report) => {
      if (record.status === 'ABORTED') return;
      record.status = report.status;
      record.stopDate = new Date();
      if (report.status === 'SUCCEEDED') record.output = JSON.stringify(report.output);
      else Object.assign(record, { error: report.error, cause: report.cause });
      console.log(`${new Date().toISOString()} ${record.name} ${report.status}${report.error ? ` ${report.error}` : ''}`);
    },
  };
}

// What every execution here shares: the Map Runs, the callbacks, child executions.
const shared = {
  lambdaEndpoint: args['lambda-endpoint'], callbacks, mapRuns,
  startChild: (request) => startChild(request),
  // A Map Run's child execution: a record of its own, listed by its mapRunArn.
  onChildExecution: ({ executionArn, stateMachineArn, name, mapRunArn, input, startDate, abort }) => {
    const record = {
      executionArn, stateMachineArn, name, mapRunArn, status: 'RUNNING', startDate,
      input: JSON.stringify(input), history: [], abort,
    };
    executions.set(executionArn, record);
    return following(record);
  },
};

function startExecution({ stateMachineArn: arn, name, input }) {
  const definition = definitions.get(arn);
  if (!definition) throw new ApiError('StateMachineDoesNotExist', `State Machine Does Not Exist: '${arn}'`);
  const executionName = name ?? randomUUID();
  if (!/^[A-Za-z0-9_-]{1,80}$/.test(executionName)) throw new ApiError('InvalidName', `Invalid Name: '${executionName}'`);
  const executionArn = `${arn.replace(':stateMachine:', ':execution:')}:${executionName}`;
  const existing = executions.get(executionArn);
  // AWS (standard workflows): the same name and input as a running
  // execution is that execution; a closed one, or other input, is refused.
  if (existing?.status === 'RUNNING' && existing.input === (input ?? '{}')) {
    return { executionArn, startDate: seconds(existing.startDate) };
  }
  if (existing) {
    throw new ApiError('ExecutionAlreadyExists', `Execution Already Exists: '${executionArn}'`);
  }
  let parsed;
  try {
    parsed = JSON.parse(input ?? '{}');
  } catch (e) {
    throw new ApiError('InvalidExecutionInput', `Invalid execution input: ${e.message}`);
  }
  const record = {
    executionArn, stateMachineArn: arn, name: executionName, status: 'RUNNING',
    startDate: new Date(), input: input ?? '{}', history: [],
  };
  executions.set(executionArn, record);
  const { onEvent, onScheduled, finished } = following(record);
  const run = execute({ ...shared, definition, input: parsed, executionArn, name: executionName, stateMachineArn: arn, onEvent, onScheduled });
  record.abort = run.abort;
  record.done = run.result.then(finished);
  console.log(`${new Date().toISOString()} ${executionName} started`);
  return { executionArn, startDate: seconds(record.startDate) };
}

// A `states:startExecution*` task: StartExecution (a running execution of the
// same name and input is that execution, as the API answers); `.sync` waits
// for its end.
async function startChild({ stateMachineArn: arn, name, input, sync }) {
  const { executionArn } = startExecution({ stateMachineArn: arn, name, input: JSON.stringify(input) });
  const record = executions.get(executionArn);
  if (!sync) return { executionArn, startDate: record.startDate };
  await record.done;
  return {
    executionArn, startDate: record.startDate, stopDate: record.stopDate, status: record.status,
    output: record.output === undefined ? undefined : JSON.parse(record.output), error: record.error, cause: record.cause,
  };
}

function found(executionArn) {
  const record = executions.get(executionArn);
  if (!record) throw new ApiError('ExecutionDoesNotExist', `Execution Does Not Exist: '${executionArn}'`);
  return record;
}

function summary(r) {
  return {
    executionArn: r.executionArn, stateMachineArn: r.stateMachineArn, name: r.name, status: r.status,
    startDate: seconds(r.startDate), ...(r.stopDate ? { stopDate: seconds(r.stopDate) } : {}),
  };
}

function mapRunFound(mapRunArn) {
  const run = mapRuns.get(mapRunArn);
  if (!run) throw new ApiError('ResourceNotFound', `Map Run Does Not Exist: '${mapRunArn}'`);
  return run;
}

// DescribeMapRun's counts: the runner has no redrive.
const mapRunCounts = (counts) => ({ ...counts, failuresNotRedrivable: 0, pendingRedrive: 0 });

function answer(taskToken, outcome) {
  if (!callbacks.answer(taskToken, outcome)) {
    throw new ApiError('TaskDoesNotExist', 'Task Does Not Exist: the token is not waiting (answered, timed out or unknown)');
  }
  return {};
}

const operations = {
  StartExecution: startExecution,
  DescribeExecution: ({ executionArn }) => {
    const r = found(executionArn);
    return {
      ...summary(r), input: r.input,
      ...(r.output !== undefined ? { output: r.output } : {}),
      ...(r.error !== undefined ? { error: r.error, cause: r.cause } : {}),
      ...(r.mapRunArn ? { mapRunArn: r.mapRunArn } : {}),
    };
  },
  // By state machine (its own executions), or by Map Run (its child executions, with their mapRunArn).
  ListExecutions: ({ stateMachineArn: arn, mapRunArn, statusFilter }) => {
    if (arn && mapRunArn) throw new ApiError('ValidationException', 'Specify either stateMachineArn or mapRunArn, not both');
    if (mapRunArn) mapRunFound(mapRunArn);
    else if (!definitions.has(arn)) throw new ApiError('StateMachineDoesNotExist', `State Machine Does Not Exist: '${arn}'`);
    const all = [...executions.values()]
      .filter((r) => (mapRunArn ? r.mapRunArn === mapRunArn : r.stateMachineArn === arn && !r.mapRunArn))
      .filter((r) => !statusFilter || r.status === statusFilter);
    return { executions: all.map((r) => ({ ...summary(r), ...(mapRunArn ? { mapRunArn } : {}) })) };
  },
  ListMapRuns: ({ executionArn }) => {
    found(executionArn);
    return {
      mapRuns: mapRuns.ofExecution(executionArn).map((run) => ({
        executionArn, mapRunArn: run.mapRunArn, stateMachineArn: run.stateMachineArn,
        startDate: seconds(run.startDate), ...(run.stopDate ? { stopDate: seconds(run.stopDate) } : {}),
      })),
    };
  },
  DescribeMapRun: ({ mapRunArn }) => {
    const run = mapRunFound(mapRunArn);
    return {
      mapRunArn, executionArn: run.executionArn, status: run.status,
      startDate: seconds(run.startDate), ...(run.stopDate ? { stopDate: seconds(run.stopDate) } : {}),
      maxConcurrency: run.maxConcurrency, toleratedFailurePercentage: run.toleratedFailurePercentage,
      toleratedFailureCount: run.toleratedFailureCount,
      itemCounts: mapRunCounts(run.itemCounts), executionCounts: mapRunCounts(run.executionCounts),
      redriveCount: 0,
    };
  },
  GetExecutionHistory: ({ executionArn, reverseOrder }) => {
    const events = [...found(executionArn).history];
    return { events: reverseOrder ? events.reverse() : events };
  },
  StopExecution: ({ executionArn, error, cause }) => {
    const r = found(executionArn);
    if (r.status === 'RUNNING') {
      Object.assign(r, { status: 'ABORTED', stopDate: new Date(), error, cause });
      r.abort?.();
    }
    return { stopDate: seconds(r.stopDate) };
  },
  SendTaskSuccess: ({ taskToken, output }) => {
    let parsed;
    try {
      parsed = JSON.parse(output);
    } catch (e) {
      throw new ApiError('InvalidOutput', `Invalid output: ${e.message}`);
    }
    return answer(taskToken, { output: parsed });
  },
  SendTaskFailure: ({ taskToken, error, cause }) => answer(taskToken, { error: error ?? '', cause }),
  SendTaskHeartbeat: ({ taskToken }) => {
    if (!callbacks.waiting.has(taskToken)) throw new ApiError('TaskDoesNotExist', 'Task Does Not Exist');
    return {};
  },
};

const server = createServer((request, response) => {
  let body = '';
  request.on('data', (chunk) => { body += chunk; });
  request.on('end', () => {
    const target = request.headers['x-amz-target'] ?? '';
    const operation = operations[target.replace(/^AWSStepFunctions\./, '')];
    let status = 200;
    let answer;
    try {
      if (!operation) throw new ApiError('UnknownOperationException', `${target} is not served locally`);
      answer = operation(body ? JSON.parse(body) : {});
    } catch (error) {
      status = 400;
      answer = { __type: error.type ?? 'InternalFailure', message: error.message };
      if (!error.type) status = 500;
    }
    response.writeHead(status, { 'content-type': 'application/x-amz-json-1.0', 'x-amzn-requestid': randomUUID() });
    response.end(JSON.stringify(answer));
  });
});
server.listen(Number(args.port), '127.0.0.1', () => {
  console.log(`local Step Functions API on 127.0.0.1:${args.port}: ${[...definitions.keys()].join(' ')}`);
});
