// The Distributed Map as machine.mjs plays it (distributed.mjs): items from
// S3 through ItemReader, ItemSelector, MaxConcurrency, tolerated failures,
// the ResultWriter files, and the errors AWS gives.

import { after, before, beforeEach, test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { execute, loadDefinition } from '../machine.mjs';
import { MapRuns } from '../distributed.mjs';
import { fixture, lambdaStandIn, s3, startMoto } from './helpers.mjs';

const BUCKET = 'bulk-plans';
let moto;
let lambdas;
let bulk;
let inline;

// `work`: doubles item.n after item.sleepMs; fails (ItemFailed) when item.fail.
before(async () => {
  moto = await startMoto();
  process.env.AWS_ENDPOINT_URL = moto.url;
  await s3(moto.url, 'PUT', BUCKET);
  lambdas = await lambdaStandIn({
    work: async ({ item, index, bulk: tag }) => {
      await sleep(item.sleepMs ?? 0);
      if (item.fail) throw Object.assign(new Error(`item ${index} failed`), { name: 'ItemFailed' });
      return { doubled: item.n * 2, index, bulk: tag };
    },
  });
  bulk = await loadDefinition(fixture('bulk-s3.asl.json'), 'us-east-1', '123456789012');
  inline = await loadDefinition(fixture('bulk-inline.asl.json'), 'us-east-1', '123456789012');
});
after(async () => {
  await lambdas?.close();
  await moto?.stop();
});
beforeEach(() => lambdas.reset());

async function run(definition, input, name) {
  const mapRuns = new MapRuns();
  const report = await execute({
    definition, input, lambdaEndpoint: lambdas.url, name, mapRuns,
    executionArn: `arn:aws:states:us-east-1:123456789012:execution:bulk:${name}`,
  }).result;
  return { report, mapRuns: [...mapRuns.runs.values()] };
}

async function plan(name, items, limits) {
  await s3(moto.url, 'PUT', `${BUCKET}/plans/${name}.json`, JSON.stringify(items));
  return {
    plan: { bucket: BUCKET, itemsKey: `plans/${name}.json`, resultsPrefix: `results/${name}` },
    bulk: { tag: name },
    limits,
  };
}

const readJson = async (key) => JSON.parse(await s3(moto.url, 'GET', `${BUCKET}/${key}`));

test('items from S3, ItemSelector, MaxConcurrency and the ResultWriter files', async () => {
  const items = [1, 2, 3, 4, 5].map((n) => ({ n, sleepMs: 150 }));
  const input = await plan('all-good', items, { concurrency: 2, toleratedFailures: 0 });
  const { report, mapRuns } = await run(bulk, input, 'all-good');
  assert.equal(report.status, 'SUCCEEDED', JSON.stringify(report));

  // Each Lambda got the selected item: value, index and the state input's bulk.
  const payloads = lambdas.state.calls.map((call) => call.payload).sort((a, b) => a.index - b.index);
  assert.deepEqual(payloads, items.map((item, index) => ({ item, index, bulk: { tag: 'all-good' } })));
  assert.equal(lambdas.state.peak, 2, 'at most MaxConcurrency at once, and that many when items allow');

  // The state's result: the Map Run and where its manifest is.
  const [mapRun] = mapRuns;
  assert.match(mapRun.mapRunArn, /^arn:aws:states:us-east-1:123456789012:mapRun:bulk\/[0-9a-f-]{36}:[0-9a-f-]{36}$/);
  const runId = mapRun.mapRunArn.split(':').pop();
  assert.deepEqual(report.output.map, {
    MapRunArn: mapRun.mapRunArn,
    ResultWriterDetails: { Bucket: BUCKET, Key: `results/all-good/${runId}/manifest.json` },
  });

  const manifest = await readJson(`results/all-good/${runId}/manifest.json`);
  const succeededKey = `results/all-good/${runId}/SUCCEEDED_0.json`;
  const succeededText = await s3(moto.url, 'GET', `${BUCKET}/${succeededKey}`);
  assert.deepEqual(manifest, {
    DestinationBucket: BUCKET,
    MapRunArn: mapRun.mapRunArn,
    ResultFiles: { FAILED: [], PENDING: [], SUCCEEDED: [{ Key: succeededKey, Size: Buffer.byteLength(succeededText) }] },
  });
  const succeeded = JSON.parse(succeededText);
  assert.equal(succeeded.length, 5);
  for (const [index, entry] of succeeded.entries()) {
    assert.deepEqual(Object.keys(entry), [
      'ExecutionArn', 'Input', 'InputDetails', 'Name', 'Output', 'OutputDetails', 'RedriveCount',
      'RedriveStatus', 'RedriveStatusReason', 'StartDate', 'StateMachineArn', 'Status', 'StopDate',
    ]);
    const machine = mapRun.mapRunArn.replace(':mapRun:', ':stateMachine:').split(':').slice(0, -1).join(':');
    assert.equal(entry.StateMachineArn, machine);
    assert.equal(entry.ExecutionArn, `${machine.replace(':stateMachine:', ':execution:')}:${entry.Name}`);
    assert.deepEqual(JSON.parse(entry.Input), { item: items[index], index, bulk: { tag: 'all-good' } });
    assert.deepEqual(JSON.parse(entry.Output), { doubled: items[index].n * 2, index, bulk: { tag: 'all-good' } });
    assert.deepEqual(entry.InputDetails, { Included: true });
    assert.equal(entry.Status, 'SUCCEEDED');
    assert.equal(entry.RedriveCount, 0);
    assert.ok(Date.parse(entry.StartDate) <= Date.parse(entry.StopDate));
  }
  assert.equal(mapRun.status, 'SUCCEEDED');
  assert.deepEqual(mapRun.itemCounts, {
    total: 5, pending: 0, running: 0, succeeded: 5, failed: 0, timedOut: 0, aborted: 0, resultsWritten: 5,
  });
});

test('MaxConcurrency 3 over 7 items runs 3 at once', async () => {
  const items = Array.from({ length: 7 }, (_, n) => ({ n, sleepMs: 120 }));
  const { report } = await run(bulk, await plan('three', items, { concurrency: 3, toleratedFailures: 0 }), 'three');
  assert.equal(report.status, 'SUCCEEDED');
  assert.equal(lambdas.state.peak, 3);
});

test('failures under the threshold: the map succeeds and FAILED_0.json lists them', async () => {
  const items = [{ n: 1 }, { n: 2, fail: true }, { n: 3 }, { n: 4 }];
  const { report, mapRuns } = await run(bulk, await plan('tolerated', items, { concurrency: 1, toleratedFailures: 1 }), 'tolerated');
  assert.equal(report.status, 'SUCCEEDED', JSON.stringify(report));
  assert.equal(report.output.error, undefined);
  const runId = mapRuns[0].mapRunArn.split(':').pop();
  const manifest = await readJson(`results/tolerated/${runId}/manifest.json`);
  assert.equal(manifest.ResultFiles.FAILED[0].Key, `results/tolerated/${runId}/FAILED_0.json`);
  const failed = await readJson(`results/tolerated/${runId}/FAILED_0.json`);
  assert.equal(failed.length, 1);
  assert.deepEqual(Object.keys(failed[0]), [
    'ExecutionArn', 'Input', 'InputDetails', 'Name', 'Error', 'Cause', 'RedriveCount', 'RedriveStatus',
    'StartDate', 'StateMachineArn', 'Status', 'StopDate',
  ]);
  assert.equal(failed[0].Status, 'FAILED');
  assert.equal(failed[0].Error, 'ItemFailed');
  assert.equal(failed[0].Cause, 'item 1 failed');
  assert.equal(JSON.parse(failed[0].Input).index, 1);
  assert.equal((await readJson(`results/tolerated/${runId}/SUCCEEDED_0.json`)).length, 3);
  assert.equal(mapRuns[0].itemCounts.failed, 1);
  assert.equal(mapRuns[0].toleratedFailureCount, 1);
});

test('failures over the threshold: States.ExceedToleratedFailureThreshold, caught by the Map\'s Catch', async () => {
  // Two at once: item 0 fails (within the threshold) and item 2 starts;
  // item 1 fails later and crosses it while item 2 runs.
  const items = [{ n: 1, fail: true }, { n: 2, fail: true, sleepMs: 300 }, { n: 3, sleepMs: 3000 }, { n: 4 }, { n: 5 }];
  const started = Date.now();
  const { report, mapRuns } = await run(bulk, await plan('over', items, { concurrency: 2, toleratedFailures: 1 }), 'over');
  assert.equal(report.status, 'SUCCEEDED', JSON.stringify(report));
  assert.equal(report.output.error.Error, 'States.ExceedToleratedFailureThreshold');
  assert.equal(report.output.map, undefined);
  // As AWS: the child still running is aborted, the pending items never start.
  assert.ok(Date.now() - started < 2500, 'the running child was aborted, not awaited');
  const [mapRun] = mapRuns;
  assert.equal(mapRun.status, 'FAILED');
  assert.deepEqual(mapRun.itemCounts, {
    total: 5, pending: 2, running: 0, succeeded: 0, failed: 2, timedOut: 0, aborted: 1, resultsWritten: 3,
  });
  assert.equal(mapRun.executionCounts.total, 3);
  assert.equal(lambdas.state.calls.filter((call) => call.payload.index >= 3).length, 0);
});

test('no tolerated failure set: one failed item fails the map run', async () => {
  const definition = structuredClone(bulk);
  delete definition.States.Items.ToleratedFailureCountPath;
  const { report } = await run(definition, await plan('strict', [{ n: 1 }, { n: 2, fail: true }], { concurrency: 1 }), 'strict');
  assert.equal(report.output.error.Error, 'States.ExceedToleratedFailureThreshold');
});

test('ItemReader with VersionId reads that version only, not a newer one someone wrote after', async () => {
  const bucket = 'bulk-versioned';
  await s3(moto.url, 'PUT', bucket);
  await s3(moto.url, 'PUT', `${bucket}?versioning`, '<VersioningConfiguration><Status>Enabled</Status></VersioningConfiguration>');
  const put = async (items) => {
    const response = await fetch(`${moto.url}/${bucket}/plans/pinned.json`, {
      method: 'PUT',
      headers: { authorization: 'AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0' },
      body: JSON.stringify(items),
    });
    assert.equal(response.status, 200);
    return response.headers.get('x-amz-version-id');
  };
  const planned = await put([{ n: 1 }, { n: 2 }]);
  const forged = await put([{ n: 100 }, { n: 200 }, { n: 300 }]);
  assert.ok(planned && forged && planned !== forged, 'the bucket keeps both versions');
  const definition = await loadDefinition(fixture('bulk-s3-versioned.asl.json'), 'us-east-1', '123456789012');
  const input = {
    plan: { bucket, itemsKey: 'plans/pinned.json', versionId: planned, resultsPrefix: 'results/pinned' },
    bulk: { tag: 'pinned' },
    limits: { concurrency: 2, toleratedFailures: 0 },
  };
  const { report } = await run(definition, input, 'pinned');
  assert.equal(report.status, 'SUCCEEDED', JSON.stringify(report));
  const seen = lambdas.state.calls.map((c) => c.payload.item.n).sort((a, b) => a - b);
  assert.deepEqual(seen, [1, 2]);
});

test('ItemReader on a missing key: States.ItemReaderFailed', async () => {
  const input = await plan('missing', [], { concurrency: 1, toleratedFailures: 0 });
  input.plan.itemsKey = 'plans/no-such-key.json';
  const { report } = await run(bulk, input, 'missing');
  assert.equal(report.output.error.Error, 'States.ItemReaderFailed');
  assert.match(report.output.error.Cause, /NoSuchKey/);
});

test('ItemReader on an object that is not a JSON array: States.ItemReaderFailed', async () => {
  const input = await plan('object', [], { concurrency: 1, toleratedFailures: 0 });
  await s3(moto.url, 'PUT', `${BUCKET}/plans/not-an-array.json`, '{"not": "an array"}');
  input.plan.itemsKey = 'plans/not-an-array.json';
  const { report } = await run(bulk, input, 'object');
  assert.equal(report.output.error.Error, 'States.ItemReaderFailed');
});

test('ResultWriter to a missing bucket: States.ResultWriterFailed', async () => {
  const input = await plan('nobucket', [{ n: 1 }], { concurrency: 1, toleratedFailures: 0 });
  const definition = structuredClone(bulk);
  definition.States.Items.ResultWriter.Parameters = { Bucket: 'no-such-bucket', Prefix: 'x' };
  const { report } = await run(definition, input, 'nobucket');
  assert.equal(report.output.error.Error, 'States.ResultWriterFailed');
});

test('inline items (ItemsPath), no ResultWriter: the array of outputs, through ResultSelector and OutputPath', async () => {
  const items = [{ n: 1 }, { n: 2, fail: true }, { n: 3 }, { n: 4 }];
  const { report } = await run(inline, { items }, 'inline');
  assert.equal(report.status, 'SUCCEEDED', JSON.stringify(report));
  assert.equal(report.output.length, 4);
  assert.deepEqual(report.output[0], { doubled: 2, index: 0 });
  assert.equal(report.output[1].Status, 'FAILED');
  assert.equal(report.output[1].Error, 'ItemFailed');
  assert.equal(lambdas.state.peak, 2);

  // 2 failures of 4 is 50 %: not over ToleratedFailurePercentage 50; 3 is.
  const over = await run(inline, { items: [{ n: 1, fail: true }, { n: 2, fail: true }, { n: 3, fail: true }, { n: 4 }] }, 'inline-over');
  assert.equal(over.report.status, 'FAILED');
  assert.equal(over.report.error, 'States.ExceedToleratedFailureThreshold');
});

test('without AWS_ENDPOINT_URL the ItemReader fails clearly', async () => {
  const input = await plan('no-endpoint', [{ n: 1 }], { concurrency: 1, toleratedFailures: 0 });
  delete process.env.AWS_ENDPOINT_URL;
  try {
    const { report } = await run(bulk, input, 'no-endpoint');
    assert.equal(report.output.error.Error, 'States.ItemReaderFailed');
    assert.match(report.output.error.Cause, /AWS_ENDPOINT_URL/);
  } finally {
    process.env.AWS_ENDPOINT_URL = moto.url;
  }
});
