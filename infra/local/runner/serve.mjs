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
// Usage: node serve.mjs --port P --definition FILE --lambda-endpoint URL
//                       [--region R] [--account A] [--name forensics]

import { createServer } from 'node:http';
import { randomUUID } from 'node:crypto';
import { parseArgs } from 'node:util';
import { Callbacks, execute, loadDefinition } from './machine.mjs';

const { values: args } = parseArgs({
  options: {
    port: { type: 'string' },
    definition: { type: 'string' },
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

const stateMachineArn = `arn:aws:states:${args.region}:${args.account}:stateMachine:${args.name}`;
const definition = await loadDefinition(args.definition, args.region, args.account);
const callbacks = new Callbacks();
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

function startExecution({ stateMachineArn: arn, name, input }) {
  if (arn !== stateMachineArn) throw new ApiError('StateMachineDoesNotExist', `State Machine Does Not Exist: '${arn}'`);
  const executionName = name ?? randomUUID();
  if (!/^[A-Za-z0-9_-]{1,80}$/.test(executionName)) throw new ApiError('InvalidName', `Invalid Name: '${executionName}'`);
  const executionArn = `${stateMachineArn.replace(':stateMachine:', ':execution:')}:${executionName}`;
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
    executionArn, stateMachineArn, name: executionName, status: 'RUNNING',
    startDate: new Date(), input: input ?? '{}', history: [],
  };
  executions.set(executionArn, record);
  const run = execute({
    definition, input: parsed, lambdaEndpoint: args['lambda-endpoint'], executionArn, name: executionName, callbacks,
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
  });
  record.abort = run.abort;
  run.result.then((report) => {
    if (record.status === 'ABORTED') return;
    record.status = report.status;
    record.stopDate = new Date();
    if (report.status === 'SUCCEEDED') record.output = JSON.stringify(report.output);
    else Object.assign(record, { error: report.error, cause: report.cause });
    console.log(`${new Date().toISOString()} ${executionName} ${report.status}${report.error ? ` ${report.error}` : ''}`);
  });
  console.log(`${new Date().toISOString()} ${executionName} started`);
  return { executionArn, startDate: seconds(record.startDate) };
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
    };
  },
  ListExecutions: ({ stateMachineArn: arn, statusFilter }) => {
    if (arn !== stateMachineArn) throw new ApiError('StateMachineDoesNotExist', `State Machine Does Not Exist: '${arn}'`);
    const all = [...executions.values()].filter((r) => !statusFilter || r.status === statusFilter);
    return { executions: all.map(summary) };
  },
  GetExecutionHistory: ({ executionArn, reverseOrder }) => {
    const events = [...found(executionArn).history];
    return { events: reverseOrder ? events.reverse() : events };
  },
  StopExecution: ({ executionArn, error, cause }) => {
    const r = found(executionArn);
    if (r.status === 'RUNNING') {
      Object.assign(r, { status: 'ABORTED', stopDate: new Date(), error, cause });
      r.abort();
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
  console.log(`local Step Functions API on 127.0.0.1:${args.port}: ${stateMachineArn}`);
});
