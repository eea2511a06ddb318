// `states:startExecution.sync:2`, `.sync` and the plain form through run.mjs,
// the started state machine given by --definition-for.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile, mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fixture, runScript } from './helpers.mjs';

async function runParent(input, extra = []) {
  const dir = await mkdtemp(join(tmpdir(), 'runner-nested-'));
  await writeFile(join(dir, 'input.json'), JSON.stringify(input));
  return runScript([
    '--definition', fixture('parent-sync.asl.json'), '--input', join(dir, 'input.json'),
    '--lambda-endpoint', 'http://127.0.0.1:9', '--name', 'parent', ...extra,
  ]);
}

const CHILD = 'arn:aws:states:us-east-1:123456789012:stateMachine:child';

test('startExecution.sync:2 and .sync: the DescribeExecution response, Output parsed or a string', async () => {
  const { code, report } = await runParent({ id: 'ok', value: 7, fail: false }, ['--definition-for', `child=${fixture('child.asl.json')}`]);
  assert.equal(code, 0, JSON.stringify(report));
  const { sync2, sync, fired } = report.output;
  assert.equal(sync2.Status, 'SUCCEEDED');
  assert.deepEqual(sync2.Output, { answer: 7 });
  assert.deepEqual(sync2.Input, { value: 7, fail: false });
  assert.equal(sync2.ExecutionArn, 'arn:aws:states:us-east-1:123456789012:execution:child:ok-sync2');
  assert.equal(sync2.StateMachineArn, CHILD);
  assert.equal(sync2.Name, 'ok-sync2');
  assert.equal(typeof sync2.StartDate, 'number');
  assert.equal(sync.Output, '{"answer":7}');
  assert.equal(sync.Input, '{"value":7,"fail":false}');
  assert.deepEqual(Object.keys(fired), ['ExecutionArn', 'StartDate']);
  assert.match(fired.ExecutionArn, /^arn:aws:states:us-east-1:123456789012:execution:child:[0-9a-f-]{36}$/);
});

test('a failed child fails the task with States.TaskFailed, its description as the Cause', async () => {
  const { code, report } = await runParent({ id: 'bad', value: 1, fail: true }, ['--definition-for', `child=${fixture('child.asl.json')}`]);
  assert.equal(code, 1);
  assert.equal(report.status, 'FAILED');
  assert.equal(report.error, 'States.TaskFailed');
  const cause = JSON.parse(report.cause);
  assert.equal(cause.Status, 'FAILED');
  assert.equal(cause.Error, 'ChildFailed');
  assert.equal(cause.Cause, 'the input asked for a failure');
  assert.equal(cause.ExecutionArn, 'arn:aws:states:us-east-1:123456789012:execution:child:bad-sync2');
});

test('an unknown state machine is refused: StepFunctions.StateMachineDoesNotExistException', async () => {
  const { code, report } = await runParent({ id: 'none', value: 1, fail: false });
  assert.equal(code, 1);
  assert.equal(report.error, 'StepFunctions.StateMachineDoesNotExistException');
});
