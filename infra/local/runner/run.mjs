// Runs a real state machine definition locally: every Task state invokes the
// real Lambda through the Lambda Invoke API that `cargo lambda watch` serves.
// A Lambda error is raised with its errorType as the error name, so the
// definition's Retry and Catch clauses behave as they do in AWS.
//
// Usage: node run.mjs --definition FILE --input FILE --lambda-endpoint URL
//                     [--region R] [--account A] [--name EXECUTION_NAME]
// Prints one JSON object: status, output (the last Case seen), error, cause,
// and the states visited in order. Exits 0 when the execution succeeded.

import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { StateMachine } from 'aws-local-stepfunctions';

const { values: args } = parseArgs({
  options: {
    definition: { type: 'string' },
    input: { type: 'string' },
    'lambda-endpoint': { type: 'string' },
    region: { type: 'string', default: 'us-east-1' },
    account: { type: 'string', default: '123456789012' },
    name: { type: 'string', default: 'local-execution' },
  },
});
for (const required of ['definition', 'input', 'lambda-endpoint']) {
  if (!args[required]) {
    console.error(`run.mjs: --${required} is required`);
    process.exit(2);
  }
}

// `${TriageFunctionArn}` -> arn:aws:lambda:REGION:ACCOUNT:function:triage
const functionName = (placeholder) =>
  placeholder.replace(/FunctionArn$/, '').replace(/([a-z0-9])([A-Z])/g, '$1-$2').toLowerCase();
const text = (await readFile(args.definition, 'utf8')).replace(
  /\$\{([A-Za-z]+FunctionArn)\}/g,
  (_, placeholder) => `arn:aws:lambda:${args.region}:${args.account}:function:${functionName(placeholder)}`,
);
const definition = JSON.parse(text);
const input = JSON.parse(await readFile(args.input, 'utf8'));

class LambdaFunctionError extends Error {
  constructor(errorType, errorMessage) {
    super(errorMessage);
    this.name = errorType;
  }
}

async function invoke(resource, payload) {
  const name = resource.split(':').pop();
  const url = `${args['lambda-endpoint']}/2015-03-31/functions/${name}/invocations`;
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(payload),
  });
  const body = await response.text();
  let result = null;
  try {
    result = body ? JSON.parse(body) : null;
  } catch {
    throw new LambdaFunctionError('Lambda.ServiceException', `${name} answered ${response.status}: ${body}`);
  }
  const failed = response.headers.get('x-amz-function-error') || !response.ok;
  if (failed || (result && typeof result === 'object' && 'errorType' in result && 'errorMessage' in result)) {
    throw new LambdaFunctionError(result?.errorType ?? 'Lambda.Unknown', result?.errorMessage ?? body);
  }
  return result;
}

// Every Task state, at any depth (Parallel branches, Map iterators).
function taskStates(states, found = {}) {
  for (const [name, state] of Object.entries(states)) {
    if (state.Type === 'Task') found[name] = (payload) => invoke(state.Resource, payload);
    for (const branch of state.Branches ?? []) taskStates(branch.States, found);
    const iterator = state.ItemProcessor ?? state.Iterator;
    if (iterator) taskStates(iterator.States, found);
  }
  return found;
}

const machine = new StateMachine(definition, { validationOptions: { checkArn: true } });
const execution = machine.run(input, {
  overrides: { taskResourceLocalHandlers: taskStates(definition.States) },
  context: {
    Execution: {
      Id: `arn:aws:states:${args.region}:${args.account}:execution:forensics:${args.name}`,
      Name: args.name,
      Input: input,
      StartTime: new Date().toISOString(),
    },
  },
});

const visited = [];
let lastOutput = input;
const logs = (async () => {
  for await (const event of execution.eventLogs) {
    if (event.type === 'StateEntered') visited.push(event.state.name);
    if (event.type === 'StateExited' && event.state.output !== undefined) lastOutput = event.state.output;
  }
})();

let report;
try {
  const output = await execution.result;
  report = { status: 'SUCCEEDED', output, states: visited };
} catch (error) {
  // The library wraps the execution's error (a Fail state's Error and Cause,
  // or an uncaught task error) in an ExecutionError.
  const failure = error.cause ?? error;
  report = { status: 'FAILED', error: failure.name, cause: failure.message, output: lastOutput, states: visited };
}
await logs.catch(() => {});
report.states = visited;
console.log(JSON.stringify(report, null, 2));
process.exit(report.status === 'SUCCEEDED' ? 0 : 1);
