// A recorded request (infra/local/moto_bench.py) as what IAM authorizes: one
// or more (action, resource ARN, condition keys) the caller must be allowed,
// from the service authorization reference, with the calls the service
// makes in the caller's name (S3 and EC2 to KMS).

import { PARTITION } from './stack.mjs'

/** The S3 operation of a REST request, and the actions it is authorized as. */
export function s3Operation(entry) {
  const [, bucket, ...rest] = entry.path.split('/')
  const key = decodeURIComponent(rest.join('/'))
  const q = entry.query ?? {}
  const has = (name) => name in q
  const m = entry.method
  let operation
  if (key) {
    if (m === 'PUT') operation = has('partNumber') ? 'UploadPart' : has('retention') ? 'PutObjectRetention' : has('legal-hold') ? 'PutObjectLegalHold' : entry.headers['x-amz-copy-source'] ? 'CopyObject' : 'PutObject'
    else if (m === 'POST') operation = has('uploads') ? 'CreateMultipartUpload' : has('uploadId') ? 'CompleteMultipartUpload' : 'PostObject'
    else if (m === 'DELETE') operation = has('uploadId') ? 'AbortMultipartUpload' : 'DeleteObject'
    else if (m === 'GET') operation = has('uploadId') ? 'ListParts' : has('attributes') ? 'GetObjectAttributes' : has('retention') ? 'GetObjectRetention' : 'GetObject'
    else if (m === 'HEAD') operation = 'HeadObject'
  } else if (m === 'GET') {
    operation = has('versions') ? 'ListObjectVersions' : has('object-lock') ? 'GetObjectLockConfiguration' : has('uploads') ? 'ListMultipartUploads' : has('encryption') ? 'GetBucketEncryption' : has('versioning') ? 'GetBucketVersioning' : has('publicAccessBlock') ? 'GetPublicAccessBlock' : has('policy') ? 'GetBucketPolicy' : 'ListObjects'
  } else if (m === 'HEAD') operation = 'HeadBucket'
  return { bucket, key, operation: operation ?? `${m} (unknown)` }
}

const S3_ACTIONS = {
  PutObject: ['s3:PutObject'],
  UploadPart: ['s3:PutObject'],
  CreateMultipartUpload: ['s3:PutObject'],
  CompleteMultipartUpload: ['s3:PutObject'],
  CopyObject: ['s3:PutObject'],
  PutObjectRetention: ['s3:PutObjectRetention'],
  PutObjectLegalHold: ['s3:PutObjectLegalHold'],
  AbortMultipartUpload: ['s3:AbortMultipartUpload'],
  DeleteObject: ['s3:DeleteObject'],
  ListParts: ['s3:ListMultipartUploadParts'],
  GetObjectAttributes: ['s3:GetObjectAttributes'],
  GetObjectRetention: ['s3:GetObjectRetention'],
  GetObject: ['s3:GetObject'],
  HeadObject: ['s3:GetObject'],
  ListObjectVersions: ['s3:ListBucketVersions'],
  GetObjectLockConfiguration: ['s3:GetBucketObjectLockConfiguration'],
  GetPublicAccessBlock: ['s3:GetBucketPublicAccessBlock'],
  ListMultipartUploads: ['s3:ListBucketMultipartUploads'],
  GetBucketEncryption: ['s3:GetEncryptionConfiguration'],
  GetBucketVersioning: ['s3:GetBucketVersioning'],
  ListObjects: ['s3:ListBucket'],
  HeadBucket: ['s3:ListBucket'],
}

/** The EBS encryption actions (Amazon EBS User Guide, "Permissions for users"). */
export const EBS_KMS = ['kms:CreateGrant', 'kms:Decrypt', 'kms:DescribeKey', 'kms:GenerateDataKeyWithoutPlaintext', 'kms:ReEncryptFrom', 'kms:ReEncryptTo']

function listParam(params, prefix) {
  const out = []
  for (let i = 1; `${prefix}.${i}` in params; i++) out.push(params[`${prefix}.${i}`])
  return out
}

/** Tag specifications of an EC2 query request: resource type -> {key: value}. */
export function tagSpecifications(params) {
  const specs = {}
  for (let i = 1; `TagSpecification.${i}.ResourceType` in params; i++) {
    const type = params[`TagSpecification.${i}.ResourceType`]
    const tags = (specs[type] ??= {})
    for (let j = 1; `TagSpecification.${i}.Tag.${j}.Key` in params; j++) {
      tags[params[`TagSpecification.${i}.Tag.${j}.Key`]] = params[`TagSpecification.${i}.Tag.${j}.Value`] ?? ''
    }
  }
  return specs
}

function requestTagContext(tags) {
  if (!tags) return {}
  const context = { 'aws:TagKeys': Object.keys(tags) }
  for (const [k, v] of Object.entries(tags)) context[`aws:RequestTag/${k}`] = v
  return context
}

function resourceTagContext(facts) {
  const context = {}
  for (const [k, v] of Object.entries(facts?.tags ?? {})) {
    context[`aws:ResourceTag/${k}`] = v
    context[`ec2:ResourceTag/${k}`] = v
  }
  return context
}

const EC2_TYPES = { i: 'instance', vol: 'volume', snap: 'snapshot', sg: 'security-group', eni: 'network-interface', subnet: 'subnet', vpc: 'vpc', acl: 'network-acl', ami: 'image', eipalloc: 'elastic-ip' }

/**
 * Everything IAM checks for one recorded request, in a deployment `d`:
 * [{action, resource, context, note}]; `d` maps the emulator's names to the
 * deployment's (keys, bucket, accounts).
 */
export function authorizations(entry, d) {
  const service = entry.service
  const params = entry.params ?? {}
  const out = []
  const add = (action, resource, context = {}, note = '') => out.push({ action, resource, context, note })
  const ec2Arn = (id, facts) => {
    const type = EC2_TYPES[id.split('-')[0]]
    if (type === 'snapshot' || type === 'image') return `arn:${PARTITION}:ec2:${d.region}::${type}/${id}`
    return `arn:${PARTITION}:ec2:${d.region}:${d.ec2Account}:${type}/${id}`
  }
  const kmsArn = (keyId) => d.key(keyId)
  const ebsKeys = (keyArn, actions, note) => {
    for (const action of actions) add(action, keyArn, { 'kms:ViaService': `ec2.${d.region}.amazonaws.com`, 'kms:CallerAccount': d.callerAccount, ...(action === 'kms:CreateGrant' ? { 'kms:GrantIsForAWSResource': 'true' } : {}) }, note)
  }

  if (service === 's3') {
    const { bucket, key, operation } = s3Operation(entry)
    const bucketArn = `arn:${PARTITION}:s3:::${d.bucket(bucket)}`
    const resource = key ? `${bucketArn}/${key}` : bucketArn
    const h = entry.headers
    const presigned = 'X-Amz-Credential' in (entry.query ?? {})
    const context = { 's3:authType': presigned ? 'REST-QUERY-STRING' : 'REST-HEADER', 's3:signatureversion': 'AWS4-HMAC-SHA256' }
    if (['PutObject', 'CreateMultipartUpload', 'CopyObject'].includes(operation)) {
      if (h['x-amz-server-side-encryption']) context['s3:x-amz-server-side-encryption'] = h['x-amz-server-side-encryption']
      if (h['x-amz-server-side-encryption-aws-kms-key-id']) context['s3:x-amz-server-side-encryption-aws-kms-key-id'] = kmsArn(h['x-amz-server-side-encryption-aws-kms-key-id'])
      if (h['x-amz-object-lock-mode']) context['s3:object-lock-mode'] = h['x-amz-object-lock-mode']
      if (h['x-amz-object-lock-retain-until-date']) {
        context['s3:object-lock-retain-until-date'] = h['x-amz-object-lock-retain-until-date']
        const days = Math.ceil((Date.parse(h['x-amz-object-lock-retain-until-date']) - Date.parse(entry.time)) / 86400000)
        context['s3:object-lock-remaining-retention-days'] = String(days)
      }
    }
    if (operation === 'ListObjectVersions' || operation === 'ListObjects') {
      if (entry.query.prefix) context['s3:prefix'] = entry.query.prefix[0]
    }
    for (const action of S3_ACTIONS[operation] ?? [`s3:${operation}`]) {
      const versioned = action === 's3:GetObject' && entry.query.versionId
      add(versioned ? 's3:GetObjectVersion' : action, resource, context, operation)
    }
    if (h['x-amz-object-lock-mode'] && ['PutObject', 'CreateMultipartUpload'].includes(operation)) add('s3:PutObjectRetention', resource, context, `${operation} with Object Lock headers`)
    // SSE-KMS: the key the object is (or is to be) encrypted under.
    const objectKey = h['x-amz-server-side-encryption-aws-kms-key-id'] ? kmsArn(h['x-amz-server-side-encryption-aws-kms-key-id']) : d.bucketKey(bucket)
    if (objectKey && key) {
      const via = { 'kms:ViaService': `s3.${d.region}.amazonaws.com`, 'kms:CallerAccount': d.callerAccount }
      const note = `S3 ${operation} under SSE-KMS`
      if (['PutObject', 'CreateMultipartUpload', 'CopyObject'].includes(operation)) add('kms:GenerateDataKey', objectKey, via, note)
      if (['UploadPart', 'CompleteMultipartUpload', 'GetObject', 'HeadObject', 'CopyObject'].includes(operation)) add('kms:Decrypt', objectKey, via, note)
      if (operation === 'UploadPart') add('kms:GenerateDataKey', objectKey, via, note)
    }
    return out
  }

  const operation = params.Action ?? (entry.headers['x-amz-target'] ?? '').split('.').pop()
  const facts = entry.resources ?? {}

  if (service === 'ec2') {
    const specs = tagSpecifications(params)
    const tagOnCreate = (type, newId) => {
      if (specs[type]) add('ec2:CreateTags', ec2Arn(newId), { ...requestTagContext(specs[type]), 'ec2:CreateAction': operation }, `tags on ${operation}`)
    }
    switch (operation) {
      case 'RunInstances': {
        add('ec2:RunInstances', ec2Arn('i-0new'), requestTagContext(specs.instance))
        add('ec2:RunInstances', ec2Arn('vol-0new'), requestTagContext(specs.volume))
        add('ec2:RunInstances', ec2Arn('eni-0new'), requestTagContext(specs['network-interface']))
        add('ec2:RunInstances', ec2Arn(params.ImageId), resourceTagContext(facts[params.ImageId]))
        const subnet = params.SubnetId ?? params['NetworkInterface.1.SubnetId']
        if (subnet) add('ec2:RunInstances', ec2Arn(subnet), resourceTagContext(facts[subnet]))
        for (const g of [...listParam(params, 'SecurityGroupId'), ...listParam(params, 'NetworkInterface.1.SecurityGroupId')]) add('ec2:RunInstances', ec2Arn(g), resourceTagContext(facts[g]))
        tagOnCreate('instance', 'i-0new')
        tagOnCreate('volume', 'vol-0new')
        tagOnCreate('network-interface', 'eni-0new')
        if (params['IamInstanceProfile.Arn'] || params['IamInstanceProfile.Name']) {
          add('iam:PassRole', d.instanceProfileRole(params['IamInstanceProfile.Arn'] ?? params['IamInstanceProfile.Name']), { 'iam:PassedToService': 'ec2.amazonaws.com' }, 'the instance profile of RunInstances')
        }
        return out
      }
      case 'CreateSnapshots': {
        const instance = params['InstanceSpecification.InstanceId']
        add('ec2:CreateSnapshots', ec2Arn(instance), resourceTagContext(facts[instance]))
        for (const v of facts[instance]?.volumes ?? []) add('ec2:CreateSnapshots', ec2Arn(v), {})
        add('ec2:CreateSnapshots', ec2Arn('snap-0new'), requestTagContext(specs.snapshot))
        tagOnCreate('snapshot', 'snap-0new')
        return out
      }
      case 'CopySnapshot': {
        const source = params.SourceSnapshotId
        add('ec2:CopySnapshot', ec2Arn('snap-0new'), requestTagContext(specs.snapshot))
        tagOnCreate('snapshot', 'snap-0new')
        const sourceKey = facts[source]?.kmsKeyId
        const targetKey = params.KmsKeyId ? kmsArn(params.KmsKeyId) : sourceKey ? kmsArn(sourceKey) : null
        if (sourceKey) ebsKeys(kmsArn(sourceKey), ['kms:Decrypt', 'kms:ReEncryptFrom', 'kms:DescribeKey', 'kms:CreateGrant'], 'EC2 CopySnapshot: the source key')
        if (targetKey) ebsKeys(targetKey, EBS_KMS.filter((a) => a !== 'kms:ReEncryptFrom'), 'EC2 CopySnapshot: the copy key')
        return out
      }
      case 'CreateVolume': {
        const snapshot = params.SnapshotId
        add('ec2:CreateVolume', ec2Arn('vol-0new'), requestTagContext(specs.volume))
        if (snapshot) add('ec2:CreateVolume', ec2Arn(snapshot), resourceTagContext(facts[snapshot]))
        tagOnCreate('volume', 'vol-0new')
        const key = params.KmsKeyId ?? facts[snapshot]?.kmsKeyId
        if (key) ebsKeys(kmsArn(key), EBS_KMS, 'EC2 CreateVolume: the volume key')
        return out
      }
      case 'AttachVolume':
        add('ec2:AttachVolume', ec2Arn(params.InstanceId), resourceTagContext(facts[params.InstanceId]))
        add('ec2:AttachVolume', ec2Arn(params.VolumeId), resourceTagContext(facts[params.VolumeId]))
        return out
      case 'CreateSecurityGroup':
        add('ec2:CreateSecurityGroup', ec2Arn('sg-0new'), requestTagContext(specs['security-group']))
        if (params.VpcId) add('ec2:CreateSecurityGroup', ec2Arn(params.VpcId), resourceTagContext(facts[params.VpcId]))
        tagOnCreate('security-group', 'sg-0new')
        return out
      case 'CreateTags':
      case 'DeleteTags': {
        const tags = {}
        for (let i = 1; `Tag.${i}.Key` in params; i++) tags[params[`Tag.${i}.Key`]] = params[`Tag.${i}.Value`] ?? ''
        for (const id of listParam(params, 'ResourceId')) add(`ec2:${operation}`, ec2Arn(id), { ...requestTagContext(tags), ...resourceTagContext(facts[id]) })
        return out
      }
      case 'ModifySnapshotAttribute': {
        const users = []
        const groups = []
        for (let i = 1; `CreateVolumePermission.Add.${i}.UserId` in params || `CreateVolumePermission.Add.${i}.Group` in params; i++) {
          if (params[`CreateVolumePermission.Add.${i}.UserId`]) users.push(params[`CreateVolumePermission.Add.${i}.UserId`])
          if (params[`CreateVolumePermission.Add.${i}.Group`]) groups.push(params[`CreateVolumePermission.Add.${i}.Group`])
        }
        const adding = (params.OperationType ?? 'add') === 'add'
        if (adding) {
          users.push(...listParam(params, 'UserId'))
          groups.push(...listParam(params, 'UserGroup'))
        }
        const context = { 'ec2:Attribute': params.Attribute ?? 'createVolumePermission', ...resourceTagContext(facts[params.SnapshotId]) }
        // ec2:Add/userId and ec2:Add/group are single-valued (service authorization reference).
        if (users.length) context['ec2:Add/userId'] = users.length === 1 ? d.account(users[0]) : users.map(d.account)
        if (groups.length) context['ec2:Add/group'] = groups.length === 1 ? groups[0] : groups
        add('ec2:ModifySnapshotAttribute', ec2Arn(params.SnapshotId), context)
        return out
      }
      default: {
        const ids = [params.InstanceId, params.VolumeId, params.SnapshotId, params.GroupId, params.NetworkInterfaceId, params.NetworkAclId, params.AllocationId, ...listParam(params, 'SecurityGroupId'), ...listParam(params, 'InstanceId')].filter(Boolean)
        return d.ec2Default(operation, ids.map((id) => ({ arn: ec2Arn(id), type: EC2_TYPES[id.split('-')[0]], context: resourceTagContext(facts[id]) })), out)
      }
    }
  }

  if (service === 'kms') {
    const context = {}
    if (params.SigningAlgorithm) context['kms:SigningAlgorithm'] = params.SigningAlgorithm
    if (params.MessageType) context['kms:MessageType'] = params.MessageType
    if (params.GranteePrincipal) context['kms:GranteePrincipal'] = d.principal(params.GranteePrincipal)
    if (params.RetiringPrincipal) context['kms:RetiringPrincipal'] = d.principal(params.RetiringPrincipal)
    if (params.Operations) context['kms:GrantOperations'] = params.Operations
    context['kms:CallerAccount'] = d.callerAccount
    add(`kms:${operation}`, params.KeyId && !d.wildcardOnly(`kms:${operation}`) ? kmsArn(params.KeyId) : '*', context)
    return out
  }

  if (service === 'ssm') {
    const ssmArn = (type, name) => `arn:${PARTITION}:ssm:${d.region}:${d.forensicAccount}:${type}${name.startsWith('/') ? '' : '/'}${name}`
    if (operation === 'SendCommand') {
      const document = ssmArn('document', d.document(params.DocumentName))
      // Another account's document is used only once shared with this one
      // (README: modify-document-permission), which acts as its resource policy.
      const shared = d.callerAccount === d.forensicAccount ? undefined : { resource: document, policy: { Version: '2012-10-17', Statement: [{ Effect: 'Allow', Principal: { AWS: `arn:${PARTITION}:iam::${d.callerAccount}:root` }, Action: 'ssm:SendCommand', Resource: document }] } }
      out.push({ action: 'ssm:SendCommand', resource: document, context: {}, note: shared ? 'a document shared with the workload account' : '', unheldPolicy: shared })
      for (const id of params.InstanceIds ?? []) add('ssm:SendCommand', `arn:${PARTITION}:ec2:${d.region}:${d.ec2Account}:instance/${id}`)
    } else if (operation === 'GetParameter' || operation === 'GetParameters') {
      for (const name of params.Names ?? [params.Name]) add(`ssm:${operation}`, ssmArn('parameter', d.parameter(name)))
    } else add(`ssm:${operation}`, '*')
    return out
  }

  if (service === 'sts') {
    if (operation === 'GetCallerIdentity') return out // needs no permission (STS API reference)
    if (operation === 'AssumeRole') add('sts:AssumeRole', d.roleArn(params.RoleArn), { 'sts:RoleSessionName': params.RoleSessionName })
    return out
  }

  if (service === 'sns') {
    add(`sns:${operation}`, params.TopicArn ? d.topic(params.TopicArn) : '*')
    return out
  }

  if (service === 'monitoring') {
    // CloudWatch (the bench hands its CBOR requests to moto as the JSON
    // protocol: X-Amz-Target names the operation). Alarms are resources.
    const alarm = (name) => `arn:${PARTITION}:cloudwatch:${d.region}:${d.callerAccount}:alarm:${name}`
    if (operation === 'PutMetricAlarm') {
      add('cloudwatch:PutMetricAlarm', alarm(params.AlarmName))
      if ((params.Tags ?? []).length) add('cloudwatch:TagResource', alarm(params.AlarmName))
    } else if (operation === 'DeleteAlarms' || operation === 'SetAlarmState') {
      for (const name of params.AlarmNames ?? [params.AlarmName]) add(`cloudwatch:${operation}`, alarm(name))
    } else add(`cloudwatch:${operation}`, '*')
    return out
  }

  if (service === 'securityhub') {
    // REST: BatchUpdateFindings is PATCH /findings/batchupdate, on the
    // caller's own hub; its condition keys name the ASFF fields it sets.
    if (entry.method === 'PATCH' && entry.path === '/findings/batchupdate') {
      const context = {}
      const set = (field, value) => { if (value !== undefined) context[`securityhub:ASFFSyntaxPath/${field}`] = value }
      set('Workflow.Status', params.Workflow?.Status)
      set('Note.Text', params.Note?.Text)
      set('Note.UpdatedBy', params.Note?.UpdatedBy)
      set('Severity.Label', params.Severity?.Label)
      set('Severity.Normalized', params.Severity?.Normalized)
      set('Confidence', params.Confidence)
      set('Types', params.Types)
      set('VerificationState', params.VerificationState)
      if (params.UserDefinedFields) set('UserDefinedFields', Object.keys(params.UserDefinedFields))
      add('securityhub:BatchUpdateFindings', `arn:${PARTITION}:securityhub:${d.region}:${d.callerAccount}:hub/default`, context)
    } else if (entry.method === 'POST' && entry.path === '/findings') {
      add('securityhub:GetFindings', `arn:${PARTITION}:securityhub:${d.region}:${d.callerAccount}:hub/default`)
    } else if (entry.method === 'GET' && entry.path === '/accounts') {
      add('securityhub:DescribeHub', `arn:${PARTITION}:securityhub:${d.region}:${d.callerAccount}:hub/default`)
    } else add(`securityhub:${entry.method} ${entry.path}`, '*')
    return out
  }

  if (service === 'guardduty') {
    // REST: GET /detector lists, GET /detector/{id} reads one.
    const [, first, id, more] = entry.path.split('/')
    if (entry.method === 'GET' && first === 'detector' && !id) add('guardduty:ListDetectors', '*')
    else if (entry.method === 'GET' && first === 'detector' && id && !more) add('guardduty:GetDetector', `arn:${PARTITION}:guardduty:${d.region}:${d.callerAccount}:detector/${id}`)
    else add(`guardduty:${entry.method} ${entry.path}`, '*')
    return out
  }

  if (service === 'sqs') {
    add(`sqs:${operation}`, params.QueueUrl ? d.queue(params.QueueUrl) : '*')
    return out
  }

  if (service === 'autoscaling') {
    const group = params.AutoScalingGroupName
    add(`autoscaling:${operation}`, group && !operation.startsWith('Describe') ? `arn:${PARTITION}:autoscaling:${d.region}:${d.ec2Account}:autoScalingGroup:00000000-0000-4000-8000-000000000000:autoScalingGroupName/${group}` : '*')
    return out
  }

  if (service === 'elasticloadbalancing') {
    if (operation.startsWith('Describe')) add(`elasticloadbalancing:${operation}`, '*')
    else if (params.TargetGroupArn) add(`elasticloadbalancing:${operation}`, d.rehome(params.TargetGroupArn, d.ec2Account))
    else add(`elasticloadbalancing:${operation}`, `arn:${PARTITION}:elasticloadbalancing:${d.region}:${d.ec2Account}:loadbalancer/${params.LoadBalancerName}`)
    return out
  }

  if (service === 'iam') {
    if (params.RoleName) add(`iam:${operation}`, `arn:${PARTITION}:iam::${d.ec2Account}:role/${params.RoleName}`)
    else if (params.InstanceProfileName) add(`iam:${operation}`, `arn:${PARTITION}:iam::${d.ec2Account}:instance-profile/${params.InstanceProfileName}`)
    else add(`iam:${operation}`, '*')
    return out
  }

  if (service === 'dynamodb') {
    const table = d.table(params.TableName ?? '')
    const context = {}
    const item = params.Key ?? params.Item ?? {}
    const value = table.hashKey ? item[table.hashKey] : undefined
    if (value) context['dynamodb:LeadingKeys'] = [Object.values(value)[0]]
    add(`dynamodb:${operation}`, params.TableName ? `arn:${PARTITION}:dynamodb:${d.region}:${d.forensicAccount}:table/${table.name}` : '*', context)
    return out
  }

  if (service === 'route53resolver') {
    if (operation.startsWith('List') || operation.startsWith('Get')) add(`route53resolver:${operation}`, '*')
    else {
      const id = params.FirewallRuleGroupId ?? params.FirewallDomainListId ?? params.FirewallRuleGroupAssociationId
      const type = params.FirewallRuleGroupAssociationId ? 'firewall-rule-group-association' : params.FirewallRuleGroupId ? 'firewall-rule-group' : 'firewall-domain-list'
      add(`route53resolver:${operation}`, `arn:${PARTITION}:route53resolver:${d.region}:${d.ec2Account}:${type}/${id ?? 'rslvr-new'}`)
    }
    return out
  }

  add(`${service}:${operation}`, '*')
  return out
}
