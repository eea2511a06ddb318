// Runs one execution of a real state machine definition locally: every Task
// state invokes the real Lambda through the Lambda Invoke API that
// `cargo lambda watch` serves (see machine.mjs).
//
// Usage: node run.mjs --definition FILE --input FILE --lambda-endpoint URL
//                     [--region R] [--account A] [--name EXECUTION_NAME]
//                     [--lose-first-answers] [--definition-for NAME=FILE ...]
// --lose-first-answers: every Task's first answer is lost after its Lambda
// ran (machine.mjs), so each step runs again after its side effects.
// --definition-for NAME=FILE: the state machine NAME (its ARN in this region
// and account) that a `states:startExecution*` task may start; its
// executions run here too. Any other state machine is refused
// (StateMachineDoesNotExist).
// A Distributed Map reads and writes S3 at AWS_ENDPOINT_URL (distributed.mjs).
// Prints one JSON object: status, output (the last Case seen), error, cause,
// and the states visited in order. Exits 0 when the execution succeeded.
// A definition with an approval gate needs serve.mjs, which answers it.

import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { execute, loadDefinition, TaskError } from './machine.mjs';

const { values: args } = parseArgs({
  options: {
    definition: { type: 'string' },
    input: { type: 'string' },
    'lambda-endpoint': { type: 'string' },
    region: { type: 'string', default: 'us-east-1' },
    account: { type: 'string', default: '123456789012' },
    name: { type: 'string', default: 'local-execution' },
    'lose-first-answers': { type: 'boolean', default: false },
    'definition-for': { type: 'string', multiple: true, default: [] },
  },
});
for (const required of ['definition', 'input', 'lambda-endpoint']) {
  if (!args[required]) {
    console.error(`run.mjs: --${required} is required`);
    process.exit(2);
  }
}

const definition = await loadDefinition(args.definition, args.region, args.account);
const input = JSON.parse(await readFile(args.input, 'utf8'));
const machinePrefix = `arn:aws:states:${args.region}:${args.account}:stateMachine:`;
const startable = new Map(); // stateMachineArn -> definition
for (const option of args['definition-for']) {
  const at = option.indexOf('=');
  if (at < 1) {
    console.error(`run.mjs: --definition-for takes NAME=FILE, not ${option}`);
    process.exit(2);
  }
  startable.set(`${machinePrefix}${option.slice(0, at)}`, await loadDefinition(option.slice(at + 1), args.region, args.account));
}

// A `states:startExecution*` task's execution: one of --definition-for, run
// here with the same Lambdas; a name used before is refused, as AWS does
// once that execution ended (this single run never joins a running one).
const started = new Set();
async function startChild({ stateMachineArn, name, input: childInput, sync }) {
  const childDefinition = startable.get(stateMachineArn);
  if (!childDefinition) throw new TaskError('StateMachineDoesNotExist', `State Machine Does Not Exist: '${stateMachineArn}'`);
  const executionArn = `${stateMachineArn.replace(':stateMachine:', ':execution:')}:${name}`;
  if (started.has(executionArn)) throw new TaskError('ExecutionAlreadyExists', `Execution Already Exists: '${executionArn}'`);
  started.add(executionArn);
  const startDate = new Date();
  const run = execute({
    definition: childDefinition, input: childInput, lambdaEndpoint: args['lambda-endpoint'], executionArn, name,
    stateMachineArn, startChild, loseFirstAnswers: args['lose-first-answers'],
  });
  if (!sync) return { executionArn, startDate };
  const report = await run.result;
  return { ...report, executionArn, startDate, stopDate: new Date() };
}

const visited = [];
const { result } = execute({
  definition,
  input,
  lambdaEndpoint: args['lambda-endpoint'],
  executionArn: `arn:aws:states:${args.region}:${args.account}:execution:forensics:${args.name}`,
  name: args.name,
  loseFirstAnswers: args['lose-first-answers'],
  startChild,
  onEvent: (event) => {
    if (event.type === 'StateEntered') visited.push(event.state.name);
  },
});
const report = await result;
report.states = visited;
// process.exit() right after a write to a pipe cuts a long report short:
// end when stdout has taken all of it.
process.exitCode = report.status === 'SUCCEEDED' ? 0 : 1;
process.stdout.write(`${JSON.stringify(report, null, 2)}\n`, () => process.exit());
