// serve.mjs with two definitions: a Distributed Map whose items start
// executions of the other one (startExecution.sync:2); ListExecutions,
// ListMapRuns, DescribeMapRun and DescribeExecution on what it started.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { fixture, s3, startMoto, startServe } from './helpers.mjs';

const ARN = 'arn:aws:states:us-east-1:123456789012';
let moto;
let serve;

before(async () => {
  moto = await startMoto();
  await s3(moto.url, 'PUT', 'bulk-results-bucket');
  serve = await startServe([
    '--definition', `bulk=${fixture('bulk-children.asl.json')}`,
    '--definition', `child=${fixture('child.asl.json')}`,
    '--lambda-endpoint', 'http://127.0.0.1:9',
  ], { AWS_ENDPOINT_URL: moto.url });
});
after(async () => {
  await serve?.stop();
  await moto?.stop();
});

async function ended(call, executionArn) {
  for (let i = 0; i < 100; i += 1) {
    const execution = await call('DescribeExecution', { executionArn });
    if (execution.status !== 'RUNNING') return execution;
    await sleep(100);
  }
  throw new Error(`${executionArn} did not end`);
}

test('a Distributed Map starting executions of another served state machine', async () => {
  const { call } = serve;
  const { executionArn } = await call('StartExecution', {
    stateMachineArn: `${ARN}:stateMachine:bulk`, name: 'bulk-1',
    input: JSON.stringify({ items: [10, 20, 30], bucket: 'bulk-results-bucket' }),
  });
  const execution = await ended(call, executionArn);
  assert.equal(execution.status, 'SUCCEEDED', JSON.stringify(execution));

  // The children, under their own state machine, named by the ItemSelector.
  const children = await call('ListExecutions', { stateMachineArn: `${ARN}:stateMachine:child` });
  assert.deepEqual(children.executions.map((e) => e.name).sort(), ['child-0', 'child-1', 'child-2']);
  assert.ok(children.executions.every((e) => e.status === 'SUCCEEDED'));
  const bulkExecutions = await call('ListExecutions', { stateMachineArn: `${ARN}:stateMachine:bulk` });
  assert.deepEqual(bulkExecutions.executions.map((e) => e.name), ['bulk-1']);

  const child = await call('DescribeExecution', { executionArn: `${ARN}:execution:child:child-1` });
  assert.equal(child.status, 'SUCCEEDED');
  assert.deepEqual(JSON.parse(child.output), { answer: 20 });
  assert.deepEqual(JSON.parse(child.input), { value: 20, fail: false });

  // The Map Run and its counts.
  const { mapRuns } = await call('ListMapRuns', { executionArn });
  assert.equal(mapRuns.length, 1);
  const output = JSON.parse(execution.output);
  assert.equal(output.map.MapRunArn, mapRuns[0].mapRunArn);
  const mapRun = await call('DescribeMapRun', { mapRunArn: mapRuns[0].mapRunArn });
  assert.equal(mapRun.status, 'SUCCEEDED');
  assert.equal(mapRun.executionArn, executionArn);
  assert.equal(mapRun.maxConcurrency, 2);
  assert.equal(mapRun.toleratedFailurePercentage, 0);
  assert.equal(mapRun.toleratedFailureCount, 0);
  assert.equal(typeof mapRun.startDate, 'number');
  assert.ok(mapRun.stopDate >= mapRun.startDate);
  for (const counts of [mapRun.itemCounts, mapRun.executionCounts]) {
    assert.equal(counts.total, 3);
    assert.equal(counts.succeeded, 3);
    assert.equal(counts.failed, 0);
    assert.equal(counts.running, 0);
    assert.equal(counts.resultsWritten, 3);
  }

  // The Map Run's own child executions, listed by its ARN, each described.
  const { executions: runChildren } = await call('ListExecutions', { mapRunArn: mapRun.mapRunArn });
  assert.equal(runChildren.length, 3);
  assert.ok(runChildren.every((e) => e.mapRunArn === mapRun.mapRunArn && e.status === 'SUCCEEDED'));
  const described = await call('DescribeExecution', { executionArn: runChildren[0].executionArn });
  assert.equal(described.mapRunArn, mapRun.mapRunArn);
  assert.ok(Object.keys(JSON.parse(described.output)).includes('answer'));
  const history = await call('GetExecutionHistory', { executionArn: runChildren[0].executionArn });
  assert.equal(history.events[0].type, 'ExecutionStarted');

  // The manifest where the state's output says.
  const manifest = JSON.parse(await s3(moto.url, 'GET', `bulk-results-bucket/${output.map.ResultWriterDetails.Key}`));
  assert.equal(manifest.ResultFiles.SUCCEEDED.length, 1);

  // Starting the same child name again, once it ended, is refused.
  await assert.rejects(
    call('StartExecution', { stateMachineArn: `${ARN}:stateMachine:child`, name: 'child-0', input: '{}' }),
    (error) => error.type === 'ExecutionAlreadyExists',
  );
  await assert.rejects(
    call('StartExecution', { stateMachineArn: `${ARN}:stateMachine:nope`, input: '{}' }),
    (error) => error.type === 'StateMachineDoesNotExist',
  );
});

test('the one-definition form still serves (--definition FILE --name NAME)', async () => {
  const single = await startServe([
    '--definition', fixture('child.asl.json'), '--name', 'forensics', '--lambda-endpoint', 'http://127.0.0.1:9',
  ]);
  try {
    const { executionArn } = await single.call('StartExecution', {
      stateMachineArn: `${ARN}:stateMachine:forensics`, name: 'one', input: JSON.stringify({ value: 3, fail: false }),
    });
    const execution = await ended(single.call, executionArn);
    assert.equal(execution.status, 'SUCCEEDED');
    assert.deepEqual(JSON.parse(execution.output), { answer: 3 });
    const { executions } = await single.call('ListExecutions', { stateMachineArn: `${ARN}:stateMachine:forensics` });
    assert.deepEqual(executions.map((e) => e.name), ['one']);
  } finally {
    await single.stop();
  }
});
