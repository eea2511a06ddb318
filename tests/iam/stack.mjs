// The deployed templates with every intrinsic function resolved, under fixed
// fake names: what IAM would hold once CloudFormation created the stacks.

export const PARTITION = 'aws'
export const REGION = 'us-east-1'
export const FORENSIC_ACCOUNT = '111122223333'
export const WORKLOAD_ACCOUNT = '444455556666'
export const STACK = 'ec2-forensics'
export const WORKLOAD_ROLE_NAME = 'ec2-forensics-workload'

const NO_VALUE = Symbol('AWS::NoValue')

/** A stable fake physical id for a logical id. */
function suffix(logical) {
  let hash = 7
  for (const c of logical) hash = (hash * 31 + c.charCodeAt(0)) >>> 0
  return hash.toString(16).toUpperCase().padStart(8, '0')
}

function keyId(logical) {
  const h = suffix(logical).toLowerCase()
  return `${h}-0000-4000-8000-${h}0000`
}

/** One deployed stack: a template, its parameters, its account. */
export class Stack {
  constructor(template, { parameters = {}, account, stackName = STACK, region = REGION }) {
    this.template = template
    this.account = account
    this.stackName = stackName
    this.region = region
    this.parameters = {}
    for (const [name, declared] of Object.entries(template.Parameters ?? {})) {
      let value = name in parameters ? parameters[name] : declared.Default
      if (declared.Type === 'CommaDelimitedList' && typeof value === 'string') value = value.split(',')
      this.parameters[name] = value
    }
    this.conditions = {}
    for (const name of Object.keys(template.Conditions ?? {})) this.condition(name)
    this.resources = template.Resources
  }

  condition(name) {
    if (!(name in this.conditions)) this.conditions[name] = this.truth(this.template.Conditions[name])
    return this.conditions[name]
  }

  truth(expression) {
    if ('Fn::Equals' in expression) {
      const [a, b] = expression['Fn::Equals'].map((v) => JSON.stringify(this.resolve(v)))
      return a === b
    }
    if ('Fn::Not' in expression) return !this.truth(expression['Fn::Not'][0])
    if ('Fn::And' in expression) return expression['Fn::And'].every((e) => this.truth(e))
    if ('Fn::Or' in expression) return expression['Fn::Or'].some((e) => this.truth(e))
    if ('Condition' in expression) return this.condition(expression.Condition)
    throw new Error(`unknown condition ${JSON.stringify(expression)}`)
  }

  pseudo(name) {
    return {
      'AWS::AccountId': this.account,
      'AWS::Region': this.region,
      'AWS::Partition': PARTITION,
      'AWS::StackName': this.stackName,
      'AWS::URLSuffix': 'amazonaws.com',
      'AWS::NoValue': NO_VALUE,
      'AWS::StackId': `arn:aws:cloudformation:${this.region}:${this.account}:stack/${this.stackName}/fake`,
    }[name]
  }

  /** What `Ref` returns for a parameter, pseudo parameter or resource. */
  ref(name) {
    if (name.startsWith('AWS::')) return this.pseudo(name)
    if (name in this.parameters) return this.parameters[name]
    const resource = this.resources[name]
    if (!resource) throw new Error(`Ref to unknown ${name}`)
    const props = resource.Properties ?? {}
    const physical = `${this.stackName}-${name}-${suffix(name)}`
    switch (resource.Type) {
      case 'AWS::KMS::Key':
        return keyId(name)
      case 'AWS::S3::Bucket':
        return physical.toLowerCase()
      case 'AWS::IAM::Role':
        return props.RoleName ? this.resolve(props.RoleName) : physical
      case 'AWS::IAM::ManagedPolicy':
        return `arn:${PARTITION}:iam::${this.account}:policy/${physical}`
      case 'AWS::SSM::Parameter':
        return props.Name ? this.resolve(props.Name) : physical
      case 'AWS::SNS::Topic':
        return `arn:${PARTITION}:sns:${this.region}:${this.account}:${physical}`
      case 'AWS::SQS::Queue':
        return `https://sqs.${this.region}.amazonaws.com/${this.account}/${physical}`
      case 'AWS::StepFunctions::StateMachine':
        return `arn:${PARTITION}:states:${this.region}:${this.account}:stateMachine:${props.StateMachineName ? this.resolve(props.StateMachineName) : physical}`
      default:
        return physical
    }
  }

  getAtt(name, attribute) {
    const resource = this.resources[name]
    if (!resource) throw new Error(`GetAtt of unknown ${name}`)
    const props = resource.Properties ?? {}
    const ref = this.ref(name)
    const physical = `${this.stackName}-${name}-${suffix(name)}`
    const a = this.account
    const r = this.region
    switch (`${resource.Type}.${attribute}`) {
      case 'AWS::KMS::Key.Arn':
        return `arn:${PARTITION}:kms:${r}:${a}:key/${ref}`
      case 'AWS::KMS::Key.KeyId':
        return ref
      case 'AWS::S3::Bucket.Arn':
        return `arn:${PARTITION}:s3:::${ref}`
      case 'AWS::IAM::Role.Arn':
        return `arn:${PARTITION}:iam::${a}:role${props.Path ? this.resolve(props.Path) : '/'}${ref}`
      case 'AWS::IAM::InstanceProfile.Arn':
        return `arn:${PARTITION}:iam::${a}:instance-profile/${ref}`
      case 'AWS::SQS::Queue.Arn':
        return `arn:${PARTITION}:sqs:${r}:${a}:${physical}`
      case 'AWS::StepFunctions::StateMachine.Name':
        return props.StateMachineName ? this.resolve(props.StateMachineName) : physical
      case 'AWS::Lambda::Function.Arn':
        return `arn:${PARTITION}:lambda:${r}:${a}:function:${ref}`
      case 'AWS::Logs::LogGroup.Arn':
        return `arn:${PARTITION}:logs:${r}:${a}:log-group:${ref}:*`
      case 'AWS::DynamoDB::Table.Arn':
        return `arn:${PARTITION}:dynamodb:${r}:${a}:table/${ref}`
      case 'AWS::SecurityHub::ActionTarget.ActionTargetArn':
        return `arn:${PARTITION}:securityhub:${r}:${a}:action/custom/${props.Id}`
      default:
        return `${physical}.${attribute}`
    }
  }

  sub(text, variables = {}) {
    return text.replace(/\$\{([^}!]+)\}/g, (_, name) => {
      if (name in variables) return this.resolve(variables[name])
      if (name.includes('.') && !name.startsWith('AWS::')) {
        const [logical, attribute] = name.split('.')
        return this.getAtt(logical, attribute)
      }
      const value = this.ref(name)
      return Array.isArray(value) ? value.join(',') : value
    })
  }

  /** `value` with every intrinsic function replaced by what CloudFormation makes of it. */
  resolve(value) {
    const resolved = this.resolveRaw(value)
    return strip(resolved)
  }

  resolveRaw(value) {
    if (Array.isArray(value)) return value.map((v) => this.resolveRaw(v))
    if (value === null || typeof value !== 'object') return value
    const keys = Object.keys(value)
    if (keys.length === 1) {
      const [fn] = keys
      const arg = value[fn]
      switch (fn) {
        case 'Ref':
          return this.ref(arg)
        case 'Fn::GetAtt': {
          const [logical, attribute] = Array.isArray(arg) ? arg : arg.split('.')
          return this.getAtt(logical, attribute)
        }
        case 'Fn::Sub':
          return Array.isArray(arg) ? this.sub(arg[0], arg[1]) : this.sub(arg)
        case 'Fn::Join':
          return strip(this.resolveRaw(arg[1])).join(arg[0])
        case 'Fn::If':
          return this.resolveRaw(this.condition(arg[0]) ? arg[1] : arg[2])
        case 'Fn::Select':
          return this.resolveRaw(arg[1])[Number(this.resolveRaw(arg[0]))]
        case 'Fn::Split':
          return this.resolveRaw(arg[1]).split(arg[0])
        case 'Fn::ImportValue':
          throw new Error('Fn::ImportValue is not used by these templates')
        default:
          break
      }
    }
    return Object.fromEntries(keys.map((k) => [k, this.resolveRaw(value[k])]))
  }
}

function strip(value) {
  if (Array.isArray(value)) return value.filter((v) => v !== NO_VALUE).map(strip)
  if (value === null || typeof value !== 'object') return value
  return Object.fromEntries(
    Object.entries(value)
      .filter(([, v]) => v !== NO_VALUE)
      .map(([k, v]) => [k, strip(v)]),
  )
}
