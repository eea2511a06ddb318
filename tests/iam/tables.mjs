// The requests the end-to-end runs cannot show, and the requests that must be denied.

import { readFileSync } from 'node:fs'
import { EBS_KMS } from './requests.mjs'
import { FORENSIC_ACCOUNT, PARTITION, REGION, STACK, WORKLOAD_ACCOUNT } from './stack.mjs'

const OTHER_ACCOUNT = '999988887777'
const viaEc2 = (account) => ({ 'kms:ViaService': `ec2.${REGION}.amazonaws.com`, 'kms:CallerAccount': account })
// The operations share-snapshots grants, read from the product's own constant
// (share::GRANTED_OPERATIONS), so the proof tests what the code asks for.
const GRANTED_OPERATIONS = (() => {
  const source = readFileSync(new URL('../../functions/playbook/src/steps/disk/share.rs', import.meta.url), 'utf8')
  const list = source.match(/pub const GRANTED_OPERATIONS: &\[&str\] = &\[([^\]]*)\]/)
  if (!list) throw new Error('share.rs has no GRANTED_OPERATIONS')
  return [...list[1].matchAll(/"([A-Za-z]+)"/g)].map((m) => m[1])
})()
const caseTags = (role) => ({ 'aws:RequestTag/ec2-forensics:case-id': 'gd-0123', 'aws:RequestTag/ec2-forensics:role': role, 'aws:TagKeys': ['ec2-forensics:case-id', 'ec2-forensics:role', 'ec2-forensics:source-snapshot-id', 'ec2-forensics:volume-id'] })
const snapshot = (id) => `arn:${PARTITION}:ec2:${REGION}::snapshot/${id}`

/** The roles that assume the workload role: those the template gives WorkloadAccessPolicy. */
export function responderRoles(stack) {
  return Object.entries(stack.resources)
    .filter(([, r]) => r.Type === 'AWS::IAM::Role' && (r.Properties.ManagedPolicyArns ?? []).some((p) => p?.Ref === 'WorkloadAccessPolicy'))
    .map(([name]) => name)
}

/** A workload account's AWS managed EBS key (aws/ebs): its key policy lets the account use it through EC2. */
const awsManagedEbsKey = `arn:${PARTITION}:kms:${REGION}:${WORKLOAD_ACCOUNT}:key/aws-ebs`
const awsManagedEbsKeyPolicy = {
  resource: awsManagedEbsKey,
  policy: {
    Version: '2012-10-17',
    Statement: [{ Effect: 'Allow', Principal: { AWS: '*' }, Action: ['kms:Encrypt', 'kms:Decrypt', 'kms:ReEncrypt*', 'kms:GenerateDataKey*', 'kms:CreateGrant', 'kms:DescribeKey'], Resource: '*', Condition: { StringEquals: { 'kms:CallerAccount': WORKLOAD_ACCOUNT, 'kms:ViaService': `ec2.${REGION}.amazonaws.com` } } }],
  },
}

/**
 * The multi-account sharing path (share-snapshots in the workload account
 * through the workload role): the emulator cannot show a snapshot shared
 * with another account, so the e2e runs are single-account there.
 */
export function multiAccountRequests(d, { principalOf }) {
  const workload = principalOf(d.workload, 'WorkloadRole')
  const sharingKey = d.multi.getAtt('SharingKey', 'Arn')
  const forensicKey = d.multi.getAtt('ForensicKey', 'Arn')
  const customerKey = `arn:${PARTITION}:kms:${REGION}:${WORKLOAD_ACCOUNT}:key/workload-volume-key`
  const who = 'share-snapshots (workload role)'
  const out = []
  const grant = (key, what) =>
    out.push({ who, what, principal: workload, action: 'kms:CreateGrant', resource: key, context: { 'kms:GranteePrincipal': `arn:${PARTITION}:iam::${FORENSIC_ACCOUNT}:root`, 'kms:RetiringPrincipal': `arn:${PARTITION}:iam::${FORENSIC_ACCOUNT}:root`, 'kms:GrantOperations': GRANTED_OPERATIONS, 'kms:CallerAccount': WORKLOAD_ACCOUNT } })
  grant(customerKey, 'grant the forensic account the volume\'s customer key')
  out.push({ who, what: 're-encrypt an aws/ebs snapshot under the sharing key (CopySnapshot)', principal: workload, action: 'ec2:CopySnapshot', resource: snapshot('snap-0copy'), context: caseTags('sharing-copy') })
  out.push({ who, what: 'tag the re-encrypted copy at creation', principal: workload, action: 'ec2:CreateTags', resource: snapshot('snap-0copy'), context: { ...caseTags('sharing-copy'), 'ec2:CreateAction': 'CopySnapshot' } })
  for (const action of ['kms:Decrypt', 'kms:ReEncryptFrom', 'kms:DescribeKey', 'kms:CreateGrant']) {
    out.push({ who, what: `CopySnapshot through EC2: ${action} on aws/ebs`, principal: workload, action, resource: awsManagedEbsKey, context: viaEc2(WORKLOAD_ACCOUNT), unheldPolicy: awsManagedEbsKeyPolicy })
  }
  for (const action of EBS_KMS.filter((a) => a !== 'kms:ReEncryptFrom')) {
    out.push({ who, what: `CopySnapshot through EC2: ${action} on the sharing key`, principal: workload, action, resource: sharingKey, context: { ...viaEc2(WORKLOAD_ACCOUNT), ...(action === 'kms:CreateGrant' ? { 'kms:GrantIsForAWSResource': 'true' } : {}) } })
  }
  grant(sharingKey, 'grant the forensic account the sharing key')
  out.push({ who, what: 'share the copy with the forensic account', principal: workload, action: 'ec2:ModifySnapshotAttribute', resource: snapshot('snap-0copy'), context: { 'ec2:Attribute': 'createVolumePermission', 'ec2:Add/userId': FORENSIC_ACCOUNT, 'aws:ResourceTag/ec2-forensics:role': 'sharing-copy', 'ec2:ResourceTag/ec2-forensics:role': 'sharing-copy' } })
  out.push({ who, what: 'read the create-volume permissions back', principal: workload, action: 'ec2:DescribeSnapshotAttribute', resource: '*', context: {} })
  // The forensic account copies what was shared, under the forensic key.
  const copier = principalOf(d.multi, 'CopySnapshotsRole')
  for (const action of ['kms:Decrypt', 'kms:ReEncryptFrom', 'kms:DescribeKey', 'kms:CreateGrant']) {
    out.push({ who: 'copy-snapshots', what: `copy a shared snapshot: ${action} on the sharing key through EC2`, principal: copier, action, resource: sharingKey, context: viaEc2(FORENSIC_ACCOUNT) })
  }
  for (const action of EBS_KMS.filter((a) => a !== 'kms:ReEncryptFrom')) {
    out.push({ who: 'copy-snapshots', what: `copy a shared snapshot: ${action} on the forensic key through EC2`, principal: copier, action, resource: forensicKey, context: { ...viaEc2(FORENSIC_ACCOUNT), ...(action === 'kms:CreateGrant' ? { 'kms:GrantIsForAWSResource': 'true' } : {}) } })
  }
  // update-findings in a workload account: the finding's own account's hub.
  out.push({ who: 'update-findings (workload role)', what: 'a finding in the workload account: NOTIFIED, a note, the case field', principal: workload, action: 'securityhub:BatchUpdateFindings', resource: `arn:${PARTITION}:securityhub:${REGION}:${WORKLOAD_ACCOUNT}:hub/default`, context: { 'securityhub:ASFFSyntaxPath/Workflow.Status': 'NOTIFIED', 'securityhub:ASFFSyntaxPath/Note.Text': 'ec2-forensics case gd-0123: ...', 'securityhub:ASFFSyntaxPath/Note.UpdatedBy': 'ec2-forensics', 'securityhub:ASFFSyntaxPath/UserDefinedFields': ['ec2ForensicsCaseId'] } })
  // cleanup-case, through the workload role: the case's snapshots and
  // sharing copies, the forensic account's permission on them, a grant the
  // forensic account could not retire, the DNS Firewall group and list.
  const cleaning = 'cleanup-case (workload role)'
  const caseSnapshot = { 'aws:ResourceTag/ec2-forensics:role': 'sharing-copy', 'ec2:ResourceTag/ec2-forensics:role': 'sharing-copy', 'aws:ResourceTag/ec2-forensics:case-id': 'gd-0123', 'ec2:ResourceTag/ec2-forensics:case-id': 'gd-0123' }
  out.push({ who: cleaning, what: 'take back the forensic account\'s create-volume permission', principal: workload, action: 'ec2:ModifySnapshotAttribute', resource: snapshot('snap-0copy'), context: { ...caseSnapshot, 'ec2:Attribute': 'createVolumePermission', 'ec2:Remove/userId': FORENSIC_ACCOUNT } })
  out.push({ who: cleaning, what: 'delete the sharing copy', principal: workload, action: 'ec2:DeleteSnapshot', resource: snapshot('snap-0copy'), context: caseSnapshot })
  const firewall = (type, id) => `arn:${PARTITION}:route53resolver:${REGION}:${WORKLOAD_ACCOUNT}:${type}/${id}`
  for (const [action, resource] of [
    ['route53resolver:ListFirewallRules', firewall('firewall-rule-group', 'rslvr-frg-1')],
    ['route53resolver:DeleteFirewallRule', firewall('firewall-rule-group', 'rslvr-frg-1')],
    ['route53resolver:DeleteFirewallRuleGroup', firewall('firewall-rule-group', 'rslvr-frg-1')],
    ['route53resolver:DeleteFirewallDomainList', firewall('firewall-domain-list', 'rslvr-fdl-1')],
  ]) out.push({ who: cleaning, what: `the case's DNS Firewall block: ${action}`, principal: workload, action, resource, context: {} })
  // RetireGrant by cleanup-case rests on the grant too (the forensic account
  // is its retiring principal), which no policy evaluation shows; its IAM
  // permission is in the template. No grant is ever revoked.
  // Every responder function assumes the workload role.
  const workloadRoleArn = d.workload.getAtt('WorkloadRole', 'Arn')
  for (const role of responderRoles(d.multi)) {
    out.push({ who: role.replace(/Role$/, ''), what: `${role} assumes the workload role`, principal: principalOf(d.multi, role), action: 'sts:AssumeRole', resource: workloadRoleArn, context: { 'sts:RoleSessionName': 'ec2-forensics-gd-0123' } })
  }
  return out
}

/** What AWS services do in the stack's name: Lambda's dead letters, CloudTrail's key, the golden-AMI build. */
export function serviceRequests(d, { principalOf, functionRoles }) {
  const out = []
  for (const [binary, role] of Object.entries(functionRoles(d.multi))) {
    const fn = Object.values(d.multi.resources).find((r) => r.Type === 'AWS::Lambda::Function' && r.Metadata?.BuildProperties?.Binary === binary)
    const dlq = fn.Properties.DeadLetterConfig?.TargetArn
    if (!dlq) continue
    const queue = d.multi.resolve(dlq)
    const queueName = Object.keys(d.multi.resources).find((n) => d.multi.resources[n].Type === 'AWS::SQS::Queue' && d.multi.getAtt(n, 'Arn') === queue)
    const key = d.multi.resolve(d.multi.resources[queueName].Properties.KmsMasterKeyId)
    const keyArn = key.startsWith('arn:') ? key : `arn:${PARTITION}:kms:${REGION}:${FORENSIC_ACCOUNT}:key/${key}`
    const principal = principalOf(d.multi, role)
    const who = `${binary} (Lambda, dead letters)`
    out.push({ who, what: 'Lambda sends a failed event to the dead-letter queue', principal, action: 'sqs:SendMessage', resource: queue, context: {} })
    for (const action of ['kms:GenerateDataKey', 'kms:Decrypt']) {
      out.push({ who, what: `the dead-letter queue's encryption: ${action}`, principal, action, resource: keyArn, context: { 'kms:ViaService': `sqs.${REGION}.amazonaws.com`, 'kms:CallerAccount': FORENSIC_ACCOUNT } })
    }
  }
  // Step Functions: the local Step Functions API (infra/local/runner) is not
  // the emulator's and records nothing; these are the calls the functions make to it.
  const machine = d.multi.ref('Forensics')
  const execution = `arn:${PARTITION}:states:${REGION}:${FORENSIC_ACCOUNT}:execution:${d.multi.getAtt('Forensics', 'Name')}:gd-0123`
  const dispatch = principalOf(d.multi, functionRoles(d.multi).dispatch)
  const answer = principalOf(d.multi, functionRoles(d.multi)['answer-approval'])
  out.push({ who: 'dispatch', what: 'start the case\'s execution', principal: dispatch, action: 'states:StartExecution', resource: machine, context: {} })
  out.push({ who: 'dispatch', what: 'read an execution that already exists', principal: dispatch, action: 'states:DescribeExecution', resource: execution, context: {} })
  // Whether a failed case was released since (only after a failed attempt).
  const leases = d.multi.getAtt('CaseLeases', 'Arn')
  out.push({ who: 'dispatch', what: 'whether a failed case was released since', principal: dispatch, action: 'dynamodb:GetItem', resource: leases, context: { 'dynamodb:LeadingKeys': ['released:gd-0123'] } })
  // A case taking a lease asks whether the holder's execution still runs.
  for (const fn of ['triage', 'record-approval']) {
    const principal = principalOf(d.multi, functionRoles(d.multi)[fn])
    out.push({ who: fn, what: 'whether a lease holder\'s execution still runs', principal, action: 'states:DescribeExecution', resource: execution, context: {} })
  }
  for (const action of ['states:DescribeExecution', 'states:GetExecutionHistory']) {
    out.push({ who: 'answer-approval', what: `find the wait's task token: ${action}`, principal: answer, action, resource: execution, context: {} })
  }
  for (const action of ['states:SendTaskSuccess', 'states:SendTaskFailure']) {
    out.push({ who: 'answer-approval', what: `answer the approval wait: ${action}`, principal: answer, action, resource: '*', context: {} })
  }
  // Bulk runs: started by the start function, planned and followed by the
  // bulk function, answered by the approval function; the bulk state
  // machine runs its Distributed Map's child executions and starts one
  // forensics execution per contain item. Resource forms from the service
  // authorization reference: execution:<machine>:<name>, a map run's child
  // execution:<machine>/<map run label>:<name>, mapRun:<machine>/<label>:<id>.
  const bulkMachine = d.multi.ref('BulkStateMachine')
  const bulkName = `${STACK}-bulk`
  const bulkExecution = `arn:${PARTITION}:states:${REGION}:${FORENSIC_ACCOUNT}:execution:${bulkName}:bulk-0123`
  const childExecution = `arn:${PARTITION}:states:${REGION}:${FORENSIC_ACCOUNT}:execution:${bulkName}/ItemsMap:bulk-0123-item-1`
  const mapRun = `arn:${PARTITION}:states:${REGION}:${FORENSIC_ACCOUNT}:mapRun:${bulkName}/ItemsMap:0123-4567`
  const starter = principalOf(d.multi, functionRoles(d.multi)['start-run'])
  const bulk = principalOf(d.multi, functionRoles(d.multi).bulk)
  const bulkRole = principalOf(d.multi, 'BulkStateMachineRole')
  out.push({ who: 'start-run', what: 'start a bulk run for an authenticated requester', principal: starter, action: 'states:StartExecution', resource: bulkMachine, context: {} })
  for (const action of ['states:DescribeExecution', 'states:GetExecutionHistory']) {
    out.push({ who: 'answer-approval', what: `find a bulk run's wait and requester: ${action}`, principal: answer, action, resource: bulkExecution, context: {} })
    out.push({ who: 'bulk', what: `read a bulk run (a release's, a status): ${action}`, principal: bulk, action, resource: bulkExecution, context: {} })
    out.push({ who: 'bulk', what: `read a contain item's case: ${action}`, principal: bulk, action, resource: execution, context: {} })
  }
  out.push({ who: 'bulk', what: 'count a map run\'s items', principal: bulk, action: 'states:DescribeMapRun', resource: mapRun, context: {} })
  out.push({ who: 'bulk state machine', what: 'start the Distributed Map\'s child executions', principal: bulkRole, action: 'states:StartExecution', resource: bulkMachine, context: {} })
  for (const action of ['states:DescribeExecution', 'states:StopExecution']) {
    out.push({ who: 'bulk state machine', what: `follow a child execution: ${action}`, principal: bulkRole, action, resource: childExecution, context: {} })
  }
  out.push({ who: 'bulk state machine', what: 'start one forensics execution per contain item', principal: bulkRole, action: 'states:StartExecution', resource: machine, context: {} })
  // CloudTrail: the trail's key, as the service principal.
  const trailKey = d.logging.getAtt('TrailKey', 'Arn')
  const trailArn = `arn:${PARTITION}:cloudtrail:${REGION}:${FORENSIC_ACCOUNT}:trail/${d.logging.ref('Trail')}`
  const cloudtrail = { service: 'cloudtrail.amazonaws.com', account: FORENSIC_ACCOUNT }
  const source = { 'aws:SourceAccount': FORENSIC_ACCOUNT, 'aws:SourceArn': trailArn }
  out.push({ who: 'cloudtrail.amazonaws.com', what: 'CloudTrail describes the trail key', principal: cloudtrail, action: 'kms:DescribeKey', resource: trailKey, context: source, stacks: [d.logging] })
  out.push({ who: 'cloudtrail.amazonaws.com', what: 'CloudTrail encrypts a log file', principal: cloudtrail, action: 'kms:GenerateDataKey', resource: trailKey, context: { ...source, 'kms:EncryptionContext:aws:cloudtrail:arn': trailArn, 'kms:EncryptionContextKeys': ['aws:cloudtrail:arn'] }, stacks: [d.logging] })
  // The golden-AMI build instance downloads the host scripts (SSE-KMS under the forensic key).
  const build = principalOf(d.golden, 'BuildRole')
  const bucket = d.single.getAtt('EvidenceBucket', 'Arn')
  const stacks = [d.golden, d.single]
  out.push({ who: 'golden-AMI build', what: 'list the host scripts', principal: build, action: 's3:ListBucket', resource: bucket, context: { 's3:prefix': 'tools/host/' }, stacks })
  out.push({ who: 'golden-AMI build', what: 'download a host script', principal: build, action: 's3:GetObject', resource: `${bucket}/tools/host/capture-memory.sh`, context: {}, stacks })
  out.push({ who: 'golden-AMI build', what: 'S3 decrypts it under the forensic key', principal: build, action: 'kms:Decrypt', resource: d.single.getAtt('ForensicKey', 'Arn'), context: { 'kms:ViaService': `s3.${REGION}.amazonaws.com`, 'kms:CallerAccount': FORENSIC_ACCOUNT }, stacks })
  return out
}

/** Requests that must be denied (issue 16). */
export function deniedTable(d, { principalOf, functionRoles }) {
  const out = []
  const roles = functionRoles(d.multi)
  const workload = principalOf(d.workload, 'WorkloadRole')
  const everyFunction = Object.entries(roles).map(([binary, role]) => ({ binary, principal: principalOf(d.multi, role) }))
  // A role writing its own policies, or another role's of the stack.
  const other = principalOf(d.multi, roles['seal-evidence'])
  for (const { binary, principal } of everyFunction) {
    for (const action of ['iam:PutRolePolicy', 'iam:AttachRolePolicy', 'iam:DeleteRolePolicy', 'iam:UpdateAssumeRolePolicy']) {
      out.push({ what: `${binary}: ${action} on its own role`, principal, action, resource: principal.roleArn })
    }
    if (binary !== 'seal-evidence') out.push({ what: `${binary}: iam:PutRolePolicy on seal-evidence's role`, principal, action: 'iam:PutRolePolicy', resource: other.roleArn })
  }
  // Reading executions of the stack's own state machine only: another state
  // machine's input and output are not the responder's.
  for (const fn of ['triage', 'record-approval']) {
    const principal = principalOf(d.multi, roles[fn])
    out.push({ what: `${fn}: states:DescribeExecution of another state machine`, principal, action: 'states:DescribeExecution', resource: `arn:${PARTITION}:states:${REGION}:${FORENSIC_ACCOUNT}:execution:payroll:run-1` })
  }
  // sync-alarms puts and deletes its own alarms only, never a person's.
  const syncAlarms = principalOf(d.multi, roles['sync-alarms'])
  for (const action of ['cloudwatch:PutMetricAlarm', 'cloudwatch:DeleteAlarms']) {
    for (const name of ['ec2-forensics-crypto-mining-by-hand', 'billing-alarm']) {
      out.push({ what: `sync-alarms: ${action} on a person's alarm ${name}`, principal: syncAlarms, action, resource: `arn:${PARTITION}:cloudwatch:${REGION}:${FORENSIC_ACCOUNT}:alarm:${name}` })
    }
  }
  // readiness reads settings and counts dead letters: it never reads
  // evidence, takes a dead letter off the queue, or publishes elsewhere.
  const readiness = principalOf(d.multi, roles.readiness)
  const evidenceBucket = `arn:${PARTITION}:s3:::${d.multi.ref('EvidenceBucket')}`
  const deadLetters = d.multi.getAtt('DispatchDeadLetters', 'Arn')
  out.push({ what: 'readiness: s3:GetObject of evidence', principal: readiness, action: 's3:GetObject', resource: `${evidenceBucket}/cases/gd-0123/case.json` })
  out.push({ what: 'readiness: s3:PutBucketPolicy on the evidence bucket', principal: readiness, action: 's3:PutBucketPolicy', resource: evidenceBucket })
  for (const action of ['sqs:ReceiveMessage', 'sqs:DeleteMessage', 'sqs:PurgeQueue']) {
    out.push({ what: `readiness: ${action} on the dead-letter queue`, principal: readiness, action, resource: deadLetters })
  }
  out.push({ what: 'readiness: sns:Publish to another topic', principal: readiness, action: 'sns:Publish', resource: `arn:${PARTITION}:sns:${REGION}:${FORENSIC_ACCOUNT}:payroll` })
  out.push({ what: 'readiness: ec2:EnableAllowedImagesSettings (the fix is a person\'s, from the CLI)', principal: readiness, action: 'ec2:EnableAllowedImagesSettings', resource: '*' })
  // cleanup-case removes only what the responder made, by its tags: never
  // the suspect, a person's volume or snapshot, or evidence objects.
  const cleaner = principalOf(d.multi, roles['cleanup-case'])
  const ec2Arn = (type, id) => `arn:${PARTITION}:ec2:${REGION}:${FORENSIC_ACCOUNT}:${type}/${id}`
  for (const [action, type, role] of [
    ['ec2:TerminateInstances', 'instance', 'suspect'],
    ['ec2:ModifyInstanceAttribute', 'instance', undefined],
    ['ec2:DeleteVolume', 'volume', 'evidence'],
    ['ec2:DeleteVolume', 'volume', undefined],
  ]) {
    const context = role ? { 'aws:ResourceTag/ec2-forensics:role': role } : {}
    out.push({ what: `cleanup-case: ${action} on a ${type} ${role ? `tagged ${role}` : 'without the responder\'s tag'}`, principal: cleaner, action, resource: ec2Arn(type, `${type === 'instance' ? 'i' : 'vol'}-0other`), context })
  }
  out.push({ what: 'cleanup-case: share a case snapshot with another account', principal: cleaner, action: 'ec2:ModifySnapshotAttribute', resource: snapshot('snap-0evidence'), context: { 'aws:ResourceTag/ec2-forensics:role': 'evidence', 'ec2:ResourceTag/ec2-forensics:role': 'evidence', 'ec2:Attribute': 'createVolumePermission', 'ec2:Add/userId': OTHER_ACCOUNT } })
  out.push({ what: 'workload role: kms:RevokeGrant (any grant on a workload key, an AWS service\'s included)', principal: workload, action: 'kms:RevokeGrant', resource: `arn:${PARTITION}:kms:${REGION}:${WORKLOAD_ACCOUNT}:key/workload-volume-key` })
  out.push({ what: 'workload role: tag an existing snapshot as a case\'s evidence (then clean-up could delete it)', principal: workload, action: 'ec2:CreateTags', resource: snapshot('snap-0backup'), context: { 'aws:TagKeys': ['ec2-forensics:case-id', 'ec2-forensics:role'], 'aws:RequestTag/ec2-forensics:role': 'evidence' } })
  out.push({ what: 'workload role: ec2:DeleteSnapshot of a snapshot that is not the case\'s', principal: workload, action: 'ec2:DeleteSnapshot', resource: snapshot('snap-0person'), context: {} })
  out.push({ what: 'workload role: ec2:DeleteSnapshot of an evidence snapshot without a case', principal: workload, action: 'ec2:DeleteSnapshot', resource: snapshot('snap-0person'), context: { 'aws:ResourceTag/ec2-forensics:role': 'evidence', 'ec2:ResourceTag/ec2-forensics:role': 'evidence' } })
  out.push({ what: 'cleanup-case: ec2:DeleteSnapshot of an untagged snapshot', principal: cleaner, action: 'ec2:DeleteSnapshot', resource: snapshot('snap-0person'), context: {} })
  out.push({ what: 'cleanup-case: ec2:UnlockSnapshot of a snapshot that is not a forensic copy', principal: cleaner, action: 'ec2:UnlockSnapshot', resource: snapshot('snap-0person'), context: { 'aws:ResourceTag/ec2-forensics:role': 'evidence' } })
  out.push({ what: 'cleanup-case: s3:DeleteObjectVersion of evidence', principal: cleaner, action: 's3:DeleteObjectVersion', resource: `arn:${PARTITION}:s3:::${d.multi.ref('EvidenceBucket')}/cases/gd-0123/case.json`, stacks: [d.multi] })
  out.push({ what: 'cleanup-case: s3:PutObjectLegalHold outside cases/', principal: cleaner, action: 's3:PutObjectLegalHold', resource: `arn:${PARTITION}:s3:::${d.multi.ref('EvidenceBucket')}/tools/avml` })
  // Dispatch and check-ami read release marks only, never an instance's lease.
  for (const fn of ['dispatch', 'check-ami']) {
    const principal = principalOf(d.multi, roles[fn])
    out.push({ what: `${fn}: dynamodb:GetItem of an instance's lease`, principal, action: 'dynamodb:GetItem', resource: d.multi.getAtt('CaseLeases', 'Arn'), context: { 'dynamodb:LeadingKeys': ['i-0123456789abcdef0'] } })
    out.push({ what: `${fn}: dynamodb:PutItem of a release mark`, principal, action: 'dynamodb:PutItem', resource: d.multi.getAtt('CaseLeases', 'Arn'), context: { 'dynamodb:LeadingKeys': ['released:gd-0123'] } })
  }
  // In single-account mode the victims' roles share the account with the responder's.
  const singleIsolate = principalOf(d.single, functionRoles(d.single)['isolate-network'])
  const singleRelease = principalOf(d.single, functionRoles(d.single)['release-instance'])
  for (const p of [singleIsolate, singleRelease]) {
    for (const target of [p, principalOf(d.single, functionRoles(d.single)['seal-evidence']), principalOf(d.single, 'WorkstationRole')]) {
      for (const action of ['iam:PutRolePolicy', 'iam:DeleteRolePolicy']) out.push({ what: `single-account ${p.logical}: ${action} on ${target.logical}`, principal: p, action, resource: target.roleArn, stacks: [d.single] })
    }
  }
  for (const action of ['iam:PutRolePolicy', 'iam:AttachRolePolicy', 'iam:DeleteRolePolicy', 'iam:UpdateAssumeRolePolicy']) {
    out.push({ what: `workload role: ${action} on itself`, principal: workload, action, resource: workload.roleArn })
  }
  // Snapshots: never public, never shared but with the forensic account.
  const evidence = { 'aws:ResourceTag/ec2-forensics:role': 'evidence', 'ec2:ResourceTag/ec2-forensics:role': 'evidence', 'ec2:Attribute': 'createVolumePermission' }
  const shareSingle = principalOf(d.single, functionRoles(d.single)['share-snapshots'])
  for (const [name, p, stacks] of [['workload role', workload, undefined], ['single-account share-snapshots', shareSingle, [d.single]]]) {
    out.push({ what: `${name}: make an evidence snapshot public (ec2:Add/group all)`, principal: p, action: 'ec2:ModifySnapshotAttribute', resource: snapshot('snap-0evidence'), context: { ...evidence, 'ec2:Add/group': 'all' }, stacks })
    out.push({ what: `${name}: share an evidence snapshot with another account`, principal: p, action: 'ec2:ModifySnapshotAttribute', resource: snapshot('snap-0evidence'), context: { ...evidence, 'ec2:Add/userId': OTHER_ACCOUNT }, stacks })
  }
  // Key grants to the forensic account carry only the operations a copy needs.
  const grantee = `arn:${PARTITION}:iam::${FORENSIC_ACCOUNT}:root`
  const volumeKey = `arn:${PARTITION}:kms:${REGION}:${WORKLOAD_ACCOUNT}:key/workload-volume-key`
  const singleKey = `arn:${PARTITION}:kms:${REGION}:${FORENSIC_ACCOUNT}:key/workload-volume-key`
  for (const [name, p, key, stacks] of [['workload role', workload, volumeKey, undefined], ['single-account share-snapshots', shareSingle, singleKey, [d.single]]]) {
    for (const operations of [['Decrypt', 'Encrypt'], ['GenerateDataKey'], ['Decrypt', 'RetireGrant', 'CreateGrant']]) {
      out.push({ what: `${name}: a grant to the forensic account for ${operations.join(', ')}`, principal: p, action: 'kms:CreateGrant', resource: key, context: { 'kms:GranteePrincipal': grantee, 'kms:GrantOperations': operations, 'kms:CallerAccount': stacks ? FORENSIC_ACCOUNT : WORKLOAD_ACCOUNT }, stacks })
    }
  }
  // The workstation's launch makes only tagged resources, its ENI included.
  const launcher = principalOf(d.multi, roles['launch-forensic-instance'])
  out.push({ what: 'launch-forensic-instance: RunInstances making an untagged ENI', principal: launcher, action: 'ec2:RunInstances', resource: `arn:${PARTITION}:ec2:${REGION}:${FORENSIC_ACCOUNT}:network-interface/eni-0new`, context: {} })
  out.push({ what: 'launch-forensic-instance: RunInstances making an ENI tagged for something else', principal: launcher, action: 'ec2:RunInstances', resource: `arn:${PARTITION}:ec2:${REGION}:${FORENSIC_ACCOUNT}:network-interface/eni-0new`, context: { 'aws:RequestTag/ec2-forensics:role': 'evidence-volume', 'aws:TagKeys': ['ec2-forensics:role'] } })
  // The workstation writes nothing.
  const workstation = principalOf(d.single, 'WorkstationRole')
  const bucket = d.single.getAtt('EvidenceBucket', 'Arn')
  for (const key of ['cases/gd-0123/analysis/vol-0/report.json', 'cases/gd-0123/manifest.json', 'tools/host/run-forensics.sh']) {
    out.push({ what: `workstation role: s3:PutObject ${key}`, principal: workstation, action: 's3:PutObject', resource: `${bucket}/${key}`, context: { 's3:x-amz-server-side-encryption': 'aws:kms', 's3:x-amz-server-side-encryption-aws-kms-key-id': d.single.getAtt('ForensicKey', 'Arn') }, stacks: [d.single] })
  }
  // Only the sealing functions sign: seal-evidence, and cleanup-case
  // (holds, releases and clean-ups are sealed again).
  const signingKey = d.multi.getAtt('SigningKey', 'Arn')
  const sign = { 'kms:SigningAlgorithm': 'ECDSA_SHA_256', 'kms:MessageType': 'DIGEST' }
  for (const { binary, principal } of everyFunction) {
    if (binary !== 'seal-evidence' && binary !== 'cleanup-case') out.push({ what: `${binary}: kms:Sign with the custody key`, principal, action: 'kms:Sign', resource: signingKey, context: sign })
  }
  out.push({ what: 'workload role: kms:Sign with the custody key', principal: workload, action: 'kms:Sign', resource: signingKey, context: sign })
  out.push({ what: 'workstation role: kms:Sign with the custody key', principal: principalOf(d.multi, 'WorkstationRole'), action: 'kms:Sign', resource: signingKey, context: sign })
  // An administrator of the forensic account who grants itself kms:Sign is still refused by the key.
  const admin = { logical: 'Admin', roleArn: `arn:${PARTITION}:iam::${FORENSIC_ACCOUNT}:role/${STACK}-Admin`, account: FORENSIC_ACCOUNT, sessionArn: `arn:${PARTITION}:sts::${FORENSIC_ACCOUNT}:assumed-role/${STACK}-Admin/session`, policies: [{ name: 'admin', policy: { Version: '2012-10-17', Statement: [{ Effect: 'Allow', Action: '*', Resource: '*' }] } }] }
  out.push({ what: `an administrator role (${STACK}-Admin): kms:Sign with the custody key`, principal: admin, action: 'kms:Sign', resource: signingKey, context: sign })
  // Only the approval function and the start function make the MACs that
  // make an answer, or a run's requester, count.
  const macKey = d.multi.getAtt('ApprovalMacKey', 'Arn')
  const mac = { 'kms:MacAlgorithm': 'HMAC_SHA_256' }
  for (const { binary, principal } of everyFunction) {
    if (binary !== 'answer-approval' && binary !== 'start-run') out.push({ what: `${binary}: kms:GenerateMac with the approval key`, principal, action: 'kms:GenerateMac', resource: macKey, context: mac })
  }
  out.push({ what: 'workload role: kms:GenerateMac with the approval key', principal: workload, action: 'kms:GenerateMac', resource: macKey, context: mac })
  out.push({ what: `an administrator role (${STACK}-Admin): kms:GenerateMac with the approval key`, principal: admin, action: 'kms:GenerateMac', resource: macKey, context: mac })
  // Evidence only under the forensic key, only over TLS.
  const writers = Object.entries(roles).filter(([, role]) => (d.multi.resources[role].Properties.ManagedPolicyArns ?? []).some((p) => p?.Ref === 'EvidenceWritePolicy'))
  const otherKey = `arn:${PARTITION}:kms:${REGION}:${FORENSIC_ACCOUNT}:key/another-key`
  for (const [binary, role] of writers) {
    const principal = principalOf(d.multi, role)
    const object = `${bucket}/cases/gd-0123/metadata/i-0.json`
    out.push({ what: `${binary}: s3:PutObject under another KMS key`, principal, action: 's3:PutObject', resource: object, context: { 's3:x-amz-server-side-encryption': 'aws:kms', 's3:x-amz-server-side-encryption-aws-kms-key-id': otherKey }, stacks: [d.multi] })
    out.push({ what: `${binary}: s3:PutObject under SSE-S3`, principal, action: 's3:PutObject', resource: object, context: { 's3:x-amz-server-side-encryption': 'AES256' }, stacks: [d.multi] })
    out.push({ what: `${binary}: s3:PutObject without TLS`, principal, action: 's3:PutObject', resource: object, context: { 's3:x-amz-server-side-encryption': 'aws:kms', 's3:x-amz-server-side-encryption-aws-kms-key-id': d.multi.getAtt('ForensicKey', 'Arn') }, secureTransport: false, stacks: [d.multi] })
  }
  // Evidence locked only as configured: a writer cannot lock the bucket for years.
  const mode = String(d.multi.parameters.EvidenceRetentionMode)
  const days = Number(d.multi.parameters.EvidenceRetentionDays)
  const sealer = principalOf(d.multi, roles['seal-evidence'])
  const object = `${bucket}/cases/gd-0123/report.json`
  out.push({ what: `seal-evidence: lock an object for ${days + 3650} days`, principal: sealer, action: 's3:PutObjectRetention', resource: object, context: { 's3:object-lock-mode': mode, 's3:object-lock-remaining-retention-days': String(days + 3650) }, stacks: [d.multi] })
  const otherMode = mode === 'COMPLIANCE' ? 'GOVERNANCE' : 'COMPLIANCE'
  out.push({ what: `seal-evidence: lock an object in ${otherMode} mode`, principal: sealer, action: 's3:PutObjectRetention', resource: object, context: { 's3:object-lock-mode': otherMode, 's3:object-lock-remaining-retention-days': String(days) }, stacks: [d.multi] })
  // Security Hub: update-findings sets NOTIFIED, a note and its own field,
  // in its own account's hub; closing, suppressing or reopening a finding,
  // its severity and its verification are never the responder's. No other
  // function updates findings but cleanup-case (a note that the case was
  // cleaned up), under the same policy.
  const hub = (account) => `arn:${PARTITION}:securityhub:${REGION}:${account}:hub/default`
  const updater = principalOf(d.multi, roles['update-findings'])
  const note = { 'securityhub:ASFFSyntaxPath/Note.Text': 'ec2-forensics case gd-0123: ...', 'securityhub:ASFFSyntaxPath/Note.UpdatedBy': 'ec2-forensics' }
  const cleanerNotes = principalOf(d.multi, roles['cleanup-case'])
  for (const [name, p, account] of [['update-findings', updater, FORENSIC_ACCOUNT], ['cleanup-case', cleanerNotes, FORENSIC_ACCOUNT], ['workload role', workload, WORKLOAD_ACCOUNT]]) {
    for (const status of ['RESOLVED', 'SUPPRESSED', 'NEW']) {
      out.push({ what: `${name}: a finding's workflow set to ${status}`, principal: p, action: 'securityhub:BatchUpdateFindings', resource: hub(account), context: { ...note, 'securityhub:ASFFSyntaxPath/Workflow.Status': status } })
    }
    const fields = [
      ['its severity label', 'Severity.Label', 'INFORMATIONAL'],
      ['its severity by number (Normalized sets the label)', 'Severity.Normalized', '0'],
      ['its product severity', 'Severity.Product', '0'],
      ['marked a false positive', 'VerificationState', 'FALSE_POSITIVE'],
      ['its confidence', 'Confidence', '0'],
      ['its criticality', 'Criticality', '0'],
      ['its types', 'Types', ['Software and Configuration Checks']],
      ['related to another finding', 'RelatedFindings.Id', 'arn:aws:guardduty:x'],
    ]
    for (const [what, field, value] of fields) {
      out.push({ what: `${name}: a finding's ${what}`, principal: p, action: 'securityhub:BatchUpdateFindings', resource: hub(account), context: { ...note, [`securityhub:ASFFSyntaxPath/${field}`]: value } })
    }
    for (const field of ['StatusId', 'SeverityId', 'Comment']) {
      out.push({ what: `${name}: BatchUpdateFindingsV2 (${field})`, principal: p, action: 'securityhub:BatchUpdateFindings', resource: hub(account), context: { [`securityhub:OCSFSyntaxPath/${field}`]: '1' } })
    }
  }
  for (const { binary, principal } of everyFunction) {
    if (binary !== 'update-findings' && binary !== 'cleanup-case') out.push({ what: `${binary}: securityhub:BatchUpdateFindings`, principal, action: 'securityhub:BatchUpdateFindings', resource: hub(FORENSIC_ACCOUNT), context: note })
  }
  // Only the responder's functions assume the workload role.
  const workloadRoleArn = d.workload.getAtt('WorkloadRole', 'Arn')
  const responders = new Set(responderRoles(d.multi))
  const assume = { 'sts:RoleSessionName': 'ec2-forensics-gd-0123' }
  for (const { binary, principal } of everyFunction) {
    if (!responders.has(principal.logical)) out.push({ what: `${binary}: sts:AssumeRole into the workload role`, principal, action: 'sts:AssumeRole', resource: workloadRoleArn, context: assume })
  }
  out.push({ what: 'workstation role: sts:AssumeRole into the workload role', principal: principalOf(d.multi, 'WorkstationRole'), action: 'sts:AssumeRole', resource: workloadRoleArn, context: assume })
  out.push({ what: `an administrator role named like the stack (${STACK}-Admin): sts:AssumeRole into the workload role`, principal: admin, action: 'sts:AssumeRole', resource: workloadRoleArn, context: assume })
  return out
}
