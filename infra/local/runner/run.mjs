// Runs one execution of a real state machine definition locally: every Task
// state invokes the real Lambda through the Lambda Invoke API that
// `cargo lambda watch` serves (see machine.mjs).
//
// Usage: node run.mjs --definition FILE --input FILE --lambda-endpoint URL
//                     [--region R] [--account A] [--name EXECUTION_NAME]
//                     [--lose-first-answers]
// --lose-first-answers: every Task's first answer is lost after its Lambda
// ran (machine.mjs), so each step runs again after its side effects.
// Prints one JSON object: status, output (the last Case seen), error, cause,
// and the states visited in order. Exits 0 when the execution succeeded.
// A definition with an approval gate needs serve.mjs, which answers it.

import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { execute, loadDefinition } from './machine.mjs';

const { values: args } = parseArgs({
  options: {
    definition: { type: 'string' },
    input: { type: 'string' },
    'lambda-endpoint': { type: 'string' },
    region: { type: 'string', default: 'us-east-1' },
    account: { type: 'string', default: '123456789012' },
    name: { type: 'string', default: 'local-execution' },
    'lose-first-answers': { type: 'boolean', default: false },
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
const visited = [];
const { result } = execute({
  definition,
  input,
  lambdaEndpoint: args['lambda-endpoint'],
  executionArn: `arn:aws:states:${args.region}:${args.account}:execution:forensics:${args.name}`,
  name: args.name,
  loseFirstAnswers: args['lose-first-answers'],
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
