//! The AWS stack's templates, read as data: every function the state machine
//! calls exists as a binary and in the template, every function has its own
//! role, and no role or policy grants every action on every resource.

use std::collections::BTreeSet;

use serde_json::Value;
use system_tests::repo_root;
use system_tests::template::load_template;

const TEMPLATES: &[&str] = &[
    "infra/aws/template.yaml",
    "infra/aws/forensic-vpc.yaml",
    "infra/aws/workload-role.yaml",
    "infra/aws/logging.yaml",
];

fn resources_of<'a>(
    template: &'a Value,
    kind: &'a str,
) -> impl Iterator<Item = (&'a String, &'a Value)> {
    template["Resources"]
        .as_object()
        .expect("Resources")
        .iter()
        .filter(move |(_, r)| r["Type"] == kind)
}

/// `${NameFunctionArn}` placeholders of a definition, as `name` in kebab case.
fn placeholders(definition: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for part in definition.split("${").skip(1) {
        let Some(end) = part.find('}') else { continue };
        let name = &part[..end];
        if let Some(stem) = name.strip_suffix("FunctionArn") {
            found.insert(stem.to_owned());
        }
    }
    found
}

fn kebab(camel: &str) -> String {
    let mut out = String::new();
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('-');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// The Lambda crates of the workspace (`functions/*` except the library).
fn workspace_functions() -> BTreeSet<String> {
    std::fs::read_dir(repo_root().join("functions"))
        .expect("functions/")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name != "playbook")
        .filter(|name| {
            repo_root()
                .join("functions")
                .join(name)
                .join("src/main.rs")
                .exists()
        })
        .collect()
}

fn makefile_functions() -> BTreeSet<String> {
    let makefile = std::fs::read_to_string(repo_root().join("Makefile")).expect("Makefile");
    let start = makefile
        .find("FUNCTIONS :=")
        .expect("FUNCTIONS in the Makefile");
    let mut names = BTreeSet::new();
    for line in makefile[start + "FUNCTIONS :=".len()..].lines() {
        let continued = line.trim_end().ends_with('\\');
        names.extend(
            line.trim_end_matches('\\')
                .split_whitespace()
                .map(str::to_owned),
        );
        if !continued {
            break;
        }
    }
    names
}

#[test]
fn every_function_the_state_machine_calls_is_a_binary_and_in_the_template() {
    let template = load_template("infra/aws/template.yaml");
    let functions: Vec<(&String, &Value)> =
        resources_of(&template, "AWS::Serverless::Function").collect();
    let binaries: BTreeSet<String> = functions
        .iter()
        .map(|(id, f)| {
            assert_eq!(
                f["Metadata"]["BuildMethod"], "rust-cargolambda",
                "{id} is built by cargo-lambda"
            );
            f["Metadata"]["BuildProperties"]["Binary"]
                .as_str()
                .unwrap_or_else(|| panic!("{id} names its binary"))
                .to_owned()
        })
        .collect();
    let workspace = workspace_functions();
    assert_eq!(
        binaries, workspace,
        "the template's functions are the workspace's Lambda crates"
    );
    assert_eq!(
        makefile_functions(),
        workspace,
        "make build/package cover every function"
    );

    let globals = &template["Globals"]["Function"];
    assert_eq!(globals["Runtime"], "provided.al2023");
    assert_eq!(
        globals["Architectures"],
        serde_json::json!(["x86_64"]),
        "what `make package` builds"
    );
    assert_eq!(globals["MemorySize"], 128);

    let machine = &template["Resources"]["Forensics"];
    assert_eq!(machine["Type"], "AWS::Serverless::StateMachine");
    let uri = machine["Properties"]["DefinitionUri"]
        .as_str()
        .expect("DefinitionUri");
    let definition =
        std::fs::read_to_string(repo_root().join("infra/aws").join(uri)).expect("the definition");
    let used = placeholders(&definition);
    let substitutions = machine["Properties"]["DefinitionSubstitutions"]
        .as_object()
        .expect("substitutions");
    for stem in &used {
        let binary = kebab(stem);
        assert!(
            workspace.contains(&binary),
            "{stem}FunctionArn: no binary {binary}"
        );
        let value = &substitutions
            .get(&format!("{stem}FunctionArn"))
            .unwrap_or_else(|| panic!("{stem}FunctionArn is not substituted"))["Fn::GetAtt"];
        let logical = value
            .as_str()
            .and_then(|v| v.strip_suffix(".Arn"))
            .expect("a function's Arn");
        let function = &template["Resources"][logical];
        assert_eq!(function["Type"], "AWS::Serverless::Function", "{logical}");
        assert_eq!(
            function["Metadata"]["BuildProperties"]["Binary"],
            binary.as_str(),
            "{logical}"
        );
        let invokable = machine["Properties"]["Policies"].to_string();
        assert!(
            invokable.contains(&format!("\"{logical}.Arn\"")),
            "the state machine may invoke {logical}"
        );
    }
    assert_eq!(
        substitutions.len(),
        used.len(),
        "every substitution is used by the definition"
    );
}

#[test]
fn every_function_has_its_own_role() {
    let template = load_template("infra/aws/template.yaml");
    let mut roles = BTreeSet::new();
    for (id, function) in resources_of(&template, "AWS::Serverless::Function") {
        let properties = &function["Properties"];
        match properties.get("Role") {
            // SAM creates one role per function from its Policies.
            None => assert!(
                properties["Policies"]
                    .as_array()
                    .is_some_and(|p| !p.is_empty()),
                "{id} has policies of its own"
            ),
            Some(role) => assert!(roles.insert(role.to_string()), "{id} shares role {role}"),
        }
    }
}

/// Every IAM policy statement of a template, with where it is.
fn statements(template: &Value) -> Vec<(String, Value)> {
    let mut found = Vec::new();
    for (id, resource) in template["Resources"].as_object().expect("Resources") {
        let properties = &resource["Properties"];
        let mut documents: Vec<&Value> = Vec::new();
        match resource["Type"].as_str().unwrap_or_default() {
            "AWS::Serverless::Function" | "AWS::Serverless::StateMachine" => {
                if let Some(policies) = properties["Policies"].as_array() {
                    documents.extend(policies.iter().filter(|p| p.get("Statement").is_some()));
                }
            }
            "AWS::IAM::ManagedPolicy" | "AWS::IAM::Policy" => {
                documents.push(&properties["PolicyDocument"])
            }
            "AWS::IAM::Role" => {
                if let Some(policies) = properties["Policies"].as_array() {
                    documents.extend(policies.iter().map(|p| &p["PolicyDocument"]));
                }
            }
            _ => {}
        }
        for document in documents {
            for statement in document["Statement"].as_array().into_iter().flatten() {
                found.push((id.clone(), statement.clone()));
            }
        }
    }
    found
}

fn as_list(value: &Value) -> Vec<String> {
    match value {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| v.to_string())
            })
            .collect(),
        Value::Null => Vec::new(),
        other => vec![other.to_string()],
    }
}

#[test]
fn no_role_grants_every_action_or_a_whole_service() {
    let mut checked = 0;
    for path in TEMPLATES {
        let template = load_template(path);
        for (id, statement) in statements(&template) {
            checked += 1;
            if statement["Effect"] == "Deny" {
                continue;
            }
            assert!(
                statement.get("NotAction").is_none(),
                "{path} {id}: NotAction in an Allow"
            );
            let actions = as_list(&statement["Action"]);
            let resources = as_list(&statement["Resource"]);
            assert!(
                !actions.is_empty(),
                "{path} {id}: a statement without actions"
            );
            for action in &actions {
                assert!(action != "*", "{path} {id}: Action * ({statement})");
                assert!(
                    !action.ends_with(":*"),
                    "{path} {id}: every action of a service: {action}"
                );
            }
            if resources.iter().any(|r| r == "*") {
                assert!(
                    actions.iter().all(|a| !a.contains('*')
                        || a.starts_with("kms:ReEncrypt")
                        || a.starts_with("kms:GenerateDataKey")),
                    "{path} {id}: wildcard actions on every resource: {statement}"
                );
            }
        }
    }
    assert!(checked > 40, "the statements were found ({checked})");
}

/// The forensic workstation reads hostile volumes and may be compromised by
/// them: its role holds what the SSM agent needs (the AWS managed core
/// policy) and nothing else, so it cannot write any object, another case's
/// results included, nor use a key. Its results go over pre-signed URLs.
#[test]
fn the_workstation_holds_no_credential_worth_stealing() {
    let template = load_template("infra/aws/template.yaml");
    let role = &template["Resources"]["WorkstationRole"]["Properties"];
    for policy in role["Policies"].as_array().into_iter().flatten() {
        for statement in policy["PolicyDocument"]["Statement"]
            .as_array()
            .expect("statements")
        {
            assert_eq!(
                statement["Effect"], "Deny",
                "the workstation's inline policies only take away: {statement:#}"
            );
        }
    }
    let managed = role["ManagedPolicyArns"].to_string();
    assert!(
        managed.contains("AmazonSSMManagedInstanceCore")
            && !managed.contains("S3")
            && !managed.contains("KMS"),
        "{managed}"
    );
    for (name, policy) in resources_of(&template, "AWS::IAM::Policy")
        .chain(resources_of(&template, "AWS::IAM::ManagedPolicy"))
    {
        let attached = policy["Properties"]["Roles"].to_string();
        assert!(
            !attached.contains("WorkstationRole"),
            "{name} is attached to the workstation role"
        );
    }
}

/// Whether an IAM action pattern (`kms:Sign`, `kms:*`, `kms:S*`, `*`) covers `action`.
fn covers(pattern: &str, action: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => action
            .to_ascii_lowercase()
            .starts_with(&prefix.to_ascii_lowercase()),
        None => pattern.eq_ignore_ascii_case(action),
    }
}

#[test]
fn only_the_sealing_roles_may_sign_with_the_custody_key() {
    // The two functions that seal a case: seal-evidence, and cleanup-case
    // (holds, releases and clean-ups are recorded and sealed again).
    const SIGNERS: [&str; 2] = ["SealEvidence", "CleanupCase"];
    let signer_path = r#"{"Fn::Sub":"/${AWS::StackName}/custody-signer/"}"#;
    for path in TEMPLATES {
        let template = load_template(path);
        // Identity policies: kms:Sign is allowed to the sealing roles alone.
        for (id, statement) in statements(&template) {
            if statement["Effect"] != "Allow" {
                continue;
            }
            let signs = as_list(&statement["Action"])
                .iter()
                .any(|a| covers(a, "kms:Sign"));
            assert!(
                !signs || (*path == "infra/aws/template.yaml" && SIGNERS.contains(&id.as_str())),
                "{path} {id} may kms:Sign: {statement}"
            );
        }
        // Roles: only the sealing roles are under the custody-signer path.
        for (id, function) in resources_of(&template, "AWS::Serverless::Function") {
            let role_path = function["Properties"]["RolePath"].to_string();
            assert_eq!(
                role_path == signer_path,
                SIGNERS.contains(&id.as_str()),
                "{path} {id}: RolePath {role_path}"
            );
        }
        for (id, role) in resources_of(&template, "AWS::IAM::Role") {
            assert!(
                !role["Properties"]["Path"]
                    .to_string()
                    .contains("custody-signer"),
                "{path} {id} is under the custody-signer path"
            );
        }
    }
    // The key policy: whatever an identity policy or a grant says, no one
    // outside that path signs.
    let template = load_template("infra/aws/template.yaml");
    let statements = template["Resources"]["SigningKey"]["Properties"]["KeyPolicy"]["Statement"]
        .as_array()
        .expect("the signing key's policy");
    let deny = statements
        .iter()
        .find(|s| s["Effect"] == "Deny" && as_list(&s["Action"]).iter().any(|a| a == "kms:Sign"))
        .expect("a Deny of kms:Sign in the signing key's policy");
    assert_eq!(deny["Principal"]["AWS"], "*");
    assert_eq!(
        deny["Condition"]["ArnNotLike"]["aws:PrincipalArn"]["Fn::Sub"],
        "arn:${AWS::Partition}:iam::${AWS::AccountId}:role/${AWS::StackName}/custody-signer/*"
    );
    for statement in statements.iter().filter(|s| s["Effect"] == "Allow") {
        let principal = statement["Principal"]["AWS"].to_string();
        assert!(
            principal.contains(":root"),
            "the key policy allows only the account (IAM decides, the Deny bounds it): {statement}"
        );
    }
}

/// What IAM would do with the evidence bucket's denies, not what the emulator
/// does: a negated operator matches a request that lacks the key, so a deny
/// on "not this key" must also require the key (`Null` false), or it denies
/// every UploadPart and pre-signed PUT (which name no key and get the default).
#[test]
fn the_bucket_denies_other_keys_never_writes_that_name_none() {
    let template = load_template("infra/aws/template.yaml");
    let statements = template["Resources"]["EvidenceBucketPolicy"]["Properties"]["PolicyDocument"]
        ["Statement"]
        .as_array()
        .expect("statements")
        .clone();
    let mut checked = 0;
    for statement in &statements {
        let Some(condition) = statement["Condition"].as_object() else {
            continue;
        };
        for (operator, keys) in condition {
            assert!(
                !operator.ends_with("IfExists"),
                "{}: {operator} denies requests without the key",
                statement["Sid"]
            );
            if operator.contains("Not") && statement["Effect"] == "Deny" {
                for key in keys.as_object().expect("keys").keys() {
                    if key.starts_with("s3:x-amz-server-side-encryption") {
                        assert_eq!(
                            condition["Null"][key], "false",
                            "{}: {key} must be present for the deny to apply",
                            statement["Sid"]
                        );
                        checked += 1;
                    }
                }
            }
        }
    }
    assert!(checked >= 2, "the key and the algorithm are both checked");
}

/// EC2 snapshot ARNs carry no account (`arn:aws:ec2:region::snapshot/id`): a
/// statement naming one with an account matches nothing.
#[test]
fn snapshot_arns_name_no_account() {
    let text = std::fs::read_to_string(repo_root().join("infra/aws/template.yaml")).unwrap();
    for line in text.lines().filter(|l| l.contains(":snapshot/")) {
        assert!(
            line.contains("::snapshot/"),
            "a snapshot ARN with an account: {line}"
        );
    }
}

/// Every Task state of `states`, at any depth: (name, state).
fn tasks_of(states: &Value, found: &mut Vec<(String, Value)>) {
    for (name, state) in states.as_object().expect("States") {
        if state["Type"] == "Task" {
            found.push((name.clone(), state.clone()));
        }
        for branch in state["Branches"].as_array().into_iter().flatten() {
            tasks_of(&branch["States"], found);
        }
    }
}

/// Step Functions' guide ("Handle Lambda service exceptions") names the
/// transient Lambda errors to retry; a Task without TimeoutSeconds waits up to
/// a year on an invocation that never answers, so each has one, no shorter
/// than its function's own timeout. A decision the definition does not know
/// ends the execution failed, never in a Succeed state.
#[test]
fn every_task_retries_lambdas_transient_errors_and_times_out_after_its_function() {
    let template = load_template("infra/aws/template.yaml");
    let default_timeout = template["Globals"]["Function"]["Timeout"]
        .as_i64()
        .expect("a global timeout");
    let machine = &template["Resources"]["Forensics"]["Properties"];
    let text = std::fs::read_to_string(
        repo_root()
            .join("infra/aws")
            .join(machine["DefinitionUri"].as_str().unwrap()),
    )
    .unwrap();
    let definition: Value = serde_json::from_str(&text).unwrap();
    let mut tasks = Vec::new();
    tasks_of(&definition["States"], &mut tasks);
    assert!(tasks.len() >= 19, "{} tasks", tasks.len());
    for (name, task) in &tasks {
        let retried: BTreeSet<&str> = task["Retry"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|r| r["ErrorEquals"].as_array().unwrap())
            .filter_map(Value::as_str)
            .collect();
        for error in [
            "Lambda.ClientExecutionTimeoutException",
            "Lambda.ServiceException",
            "Lambda.AWSLambdaException",
            "Lambda.SdkClientException",
            "Lambda.TooManyRequestsException",
        ] {
            assert!(retried.contains(error), "{name} retries {error}");
        }
        // A function that ran out of time or memory may have made its side
        // effects: every step is safe to run again, so it is retried once.
        // (A callback task's function only sends the request; it is not.)
        let callback = task["Resource"]
            .as_str()
            .is_some_and(|r| r.ends_with(".waitForTaskToken"));
        for error in ["Lambda.Unknown", "Sandbox.Timedout"] {
            assert!(
                callback || retried.contains(error),
                "{name} retries {error}"
            );
        }
        if task["TimeoutSecondsPath"].is_string() {
            continue;
        }
        let placeholder = task["Resource"].as_str().unwrap();
        let stem = placeholder
            .trim_start_matches("${")
            .trim_end_matches("FunctionArn}");
        let logical = machine["DefinitionSubstitutions"][format!("{stem}FunctionArn")]
            ["Fn::GetAtt"]
            .as_str()
            .and_then(|v| v.strip_suffix(".Arn"))
            .unwrap_or_else(|| panic!("{name}: {placeholder}"));
        let function_timeout = template["Resources"][logical]["Properties"]["Timeout"]
            .as_i64()
            .unwrap_or(default_timeout);
        let timeout = task["TimeoutSeconds"]
            .as_i64()
            .unwrap_or_else(|| panic!("{name} has TimeoutSeconds"));
        assert!(
            timeout > function_timeout,
            "{name}: TimeoutSeconds {timeout} outlasts {logical}'s {function_timeout} s"
        );
    }
    let decide = &definition["States"]["Decide"];
    let default = decide["Default"].as_str().expect("Decide has a Default");
    assert_eq!(definition["States"][default]["Type"], "Fail");
    let actions: BTreeSet<&str> = decide["Choices"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["StringEquals"].as_str())
        .collect();
    assert_eq!(
        actions,
        BTreeSet::from(["respond", "approve", "observe", "ignore"])
    );
}

/// The deployed run-script document takes its script only over HTTPS (a
/// pre-signed S3 URL): the bench's plain-http loopback allowance lives in the
/// bench's copy (`infra/local/forensic.py`), never in the product.
#[test]
fn the_deployed_document_takes_scripts_over_https_only() {
    let template = load_template("infra/aws/template.yaml");
    let parameters =
        &template["Resources"]["RunScriptDocument"]["Properties"]["Content"]["parameters"];
    let pattern = parameters["scriptUrl"]["allowedPattern"]
        .as_str()
        .expect("scriptUrl has an allowedPattern");
    assert_eq!(pattern, "^https://[!-~]{1,4000}$");
    for (name, parameter) in parameters.as_object().unwrap() {
        let pattern = parameter["allowedPattern"].as_str().unwrap_or_default();
        assert!(!pattern.contains("127"), "{name}: {pattern}");
        assert!(!pattern.contains("http:"), "{name}: {pattern}");
    }
}

/// Every transition of a state, by `Next`, a Choice, `Default` or a Catch.
fn transitions(state: &Value) -> Vec<&str> {
    let mut out: Vec<&str> = Vec::new();
    out.extend(state["Next"].as_str());
    out.extend(state["Default"].as_str());
    for list in ["Choices", "Catch"] {
        for item in state[list].as_array().into_iter().flatten() {
            out.extend(item["Next"].as_str());
        }
    }
    out
}

#[test]
fn every_way_to_the_seal_tells_security_hub_again_first() {
    let text = std::fs::read_to_string(repo_root().join("statemachine/forensics.asl.json"))
        .expect("definition");
    let definition: Value = serde_json::from_str(&text).expect("JSON");
    let states = definition["States"].as_object().expect("States");
    let into_seal: Vec<&String> = states
        .iter()
        .filter(|(_, s)| transitions(s).contains(&"SealEvidence"))
        .map(|(name, _)| name)
        .collect();
    assert_eq!(
        into_seal,
        vec!["FindingToldAgain"],
        "only the second telling leads to the seal"
    );
    let again = &states["FindingToldAgain"];
    assert_eq!(again["Resource"], "${UpdateFindingsFunctionArn}");
    assert_eq!(again["Parameters"]["moment"], "again");
    assert_eq!(
        transitions(again),
        vec!["SealEvidence", "SealEvidence"],
        "a failure to tell never stops the seal"
    );
    assert!(
        states
            .values()
            .any(|s| transitions(s).contains(&"FindingToldAgain")),
        "reached at all"
    );
}

/// The pool domains of a text: each `name\.tld` the pattern escapes.
fn escaped_domains(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for word in
        text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '\\' || c == '.' || c == '-'))
    {
        // A trailing escaped dot is DNS's root (`name.tld.`).
        let parts: Vec<&str> = word.trim_end_matches("\\.").split("\\.").collect();
        if parts.len() == 2
            && !parts[0].is_empty()
            && parts[1].chars().all(|c| c.is_ascii_lowercase())
            && parts[1].len() >= 3
        {
            out.insert(format!("{}.{}", parts[0].trim_start_matches('}'), parts[1]));
        }
    }
    out
}

#[test]
fn the_crypto_mining_signals_are_off_by_default_and_use_the_yara_rules_domains() {
    let template = load_template("infra/aws/template.yaml");
    let parameters = &template["Parameters"];
    for name in [
        "SyncMiningAlarms",
        "MiningPoolFlowLogs",
        "MiningPoolDnsLogs",
    ] {
        assert_eq!(
            parameters[name]["Default"], "false",
            "{name} costs money: off by default"
        );
    }
    let resources = &template["Resources"];
    for (resource, condition) in [
        ("MiningFlowLogGroup", "UseMiningFlowLogs"),
        ("MiningPoolConnectionsFilter", "UseMiningFlowLogs"),
        ("MiningDnsLogGroup", "UseMiningDnsLogs"),
        ("MiningDnsQueryLogging", "UseMiningDnsLogs"),
        ("MiningPoolDnsFilter", "UseMiningDnsLogs"),
    ] {
        assert_eq!(resources[resource]["Condition"], condition, "{resource}");
    }
    let schedule = &resources["SyncAlarms"]["Properties"]["Events"]["Every15Minutes"]["Properties"];
    assert_eq!(schedule["State"]["Fn::If"][0], "UseMiningAlarms");

    // One domain list: the YARA rule's KnownPoolDomain and the DNS filter.
    let yara = std::fs::read_to_string(repo_root().join("infra/host/rules/crypto-mining.yar"))
        .expect("the YARA rules");
    let rule = yara
        .split("rule KnownPoolDomain")
        .nth(1)
        .and_then(|r| r.split("\nrule ").next())
        .expect("KnownPoolDomain");
    let from_yara = escaped_domains(rule);
    assert!(from_yara.len() >= 9, "{from_yara:?}");
    let filter = resources["MiningPoolDnsFilter"]["Properties"]["FilterPattern"]
        .as_str()
        .expect("a pattern");
    assert_eq!(escaped_domains(filter), from_yara, "{filter}");
    // CloudWatch Logs' limits: at most two regular expressions a pattern,
    // and no parentheses inside one.
    for pattern in [filter.to_owned(), flow_log_pattern(&template)] {
        let regexes: Vec<&str> = pattern.split('%').skip(1).step_by(2).collect();
        assert!(regexes.len() <= 2, "{pattern}");
        // Only the characters CloudWatch Logs takes in a regular expression:
        // letters, digits, `:_#=@/;,-` and the operators `^$?[]{}|\*+.`.
        let allowed = |c: char| c.is_ascii_alphanumeric() || ":_#=@/;,-^$?[]{}|\\*+.".contains(c);
        assert!(regexes.iter().all(|r| r.chars().all(allowed)), "{pattern}");
    }
    // Each metric names its instance, as the alarm convention needs.
    for filter in ["MiningPoolConnectionsFilter", "MiningPoolDnsFilter"] {
        let transformation = &resources[filter]["Properties"]["MetricTransformations"][0];
        assert_eq!(transformation["MetricNamespace"], "EC2Forensics");
        assert_eq!(
            transformation["Dimensions"][0]["Key"], "InstanceId",
            "{filter}"
        );
    }
    // The flow log format the filter reads: the instance id third, the
    // direction and TCP flags last.
    let format = template["Outputs"]["MiningFlowLogFormat"]["Value"]
        .as_str()
        .expect("the format");
    let fields: Vec<&str> = format.split(' ').collect();
    assert_eq!(fields[2], "${instance-id}");
    assert_eq!(fields[7], "${dstport}");
    assert_eq!(fields[13], "${action}");
    assert_eq!(fields[15], "${flow-direction}");
    assert_eq!(fields[16], "${tcp-flags}");
}

/// The flow-log pattern with the template's default pool ports joined in.
fn flow_log_pattern(template: &Value) -> String {
    let parts = template["Resources"]["MiningPoolConnectionsFilter"]["Properties"]["FilterPattern"]
        ["Fn::Join"][1]
        .as_array()
        .expect("a joined pattern");
    let ports = template["Parameters"]["MiningPoolPorts"]["Default"]
        .as_str()
        .expect("default ports");
    parts
        .iter()
        .map(|part| match part {
            Value::String(text) => text.clone(),
            joined => {
                let separator = joined["Fn::Join"][0].as_str().expect("a separator");
                assert_eq!(joined["Fn::Join"][1]["Ref"], "MiningPoolPorts");
                ports.split(',').collect::<Vec<_>>().join(separator)
            }
        })
        .collect()
}

/// Whether a space-delimited CloudWatch Logs pattern of the kind the
/// template uses (`[a, b = 6, c != "-", d = %regex%]`: names, equality,
/// inequality, regular expressions) matches a log line.
fn delimited_match(pattern: &str, line: &str) -> bool {
    let body = pattern
        .strip_prefix('[')
        .and_then(|p| p.strip_suffix(']'))
        .expect("a delimited pattern");
    let fields: Vec<&str> = body.split(", ").collect();
    let tokens: Vec<&str> = line.split(' ').collect();
    assert_eq!(fields.len(), tokens.len(), "one token a field: {line}");
    fields.iter().zip(&tokens).all(|(field, token)| {
        if let Some((_, value)) = field.split_once(" != ") {
            return *token != value.trim_matches('"');
        }
        let Some((_, value)) = field.split_once(" = ") else {
            return true;
        };
        match value.strip_prefix('%').and_then(|v| v.strip_suffix('%')) {
            Some(regex) => regex_lite::Regex::new(regex).expect(regex).is_match(token),
            None => *token == value.trim_matches('"'),
        }
    })
}

/// A flow log record in the order of the template's MiningFlowLogFormat
/// output (so the format and the pattern cannot drift apart unseen).
fn flow_record(
    template: &Value,
    instance: &str,
    ports: (u16, u16),
    action: &str,
    direction: &str,
    flags: u8,
) -> String {
    let (srcport, dstport) = ports;
    let value = |field: &str| -> String {
        match field {
            "${version}" => "5".into(),
            "${account-id}" => "111122223333".into(),
            "${instance-id}" => instance.into(),
            "${interface-id}" => "eni-0a1b2c3d".into(),
            "${srcaddr}" => "10.0.0.5".into(),
            "${dstaddr}" => "203.0.113.9".into(),
            "${srcport}" => srcport.to_string(),
            "${dstport}" => dstport.to_string(),
            "${protocol}" => "6".into(),
            "${packets}" => "4".into(),
            "${bytes}" => "240".into(),
            "${start}" => "1700000000".into(),
            "${end}" => "1700000060".into(),
            "${action}" => action.into(),
            "${log-status}" => "OK".into(),
            "${flow-direction}" => direction.into(),
            "${tcp-flags}" => flags.to_string(),
            other => panic!("a field the test does not know: {other}"),
        }
    };
    template["Outputs"]["MiningFlowLogFormat"]["Value"]
        .as_str()
        .expect("the format")
        .split(' ')
        .map(value)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The attack first: an outsider who reaches the instance from a pool port,
/// or connects to one of its ports that happens to be a pool port, must not
/// raise the crypto-mining alarm; only a connection the instance opens does.
#[test]
fn only_a_connection_the_instance_opens_to_a_pool_port_counts() {
    let template = load_template("infra/aws/template.yaml");
    let pattern = flow_log_pattern(&template);
    let counts = |record: String| delimited_match(&pattern, &record);
    let instance = "i-0123456789abcdef0";
    // The instance opens connections to a pool: SYN, SYN+FIN, SYN+RST.
    for flags in [2, 3, 6, 7] {
        assert!(
            counts(flow_record(
                &template,
                instance,
                (50412, 3333),
                "ACCEPT",
                "egress",
                flags
            )),
            "SYN flags {flags}"
        );
    }
    // Someone connected from port 3333: the instance's replies (SYN-ACK,
    // with FIN or RST) go out to 3333 and are not its own connections.
    for flags in [18, 19, 22, 23] {
        assert!(
            !counts(flow_record(
                &template,
                instance,
                (22, 3333),
                "ACCEPT",
                "egress",
                flags
            )),
            "a reply, flags {flags}"
        );
    }
    // Traffic from outside to the instance's port 4444, or a later record of
    // the instance's connection without the SYN.
    assert!(!counts(flow_record(
        &template,
        instance,
        (50412, 4444),
        "ACCEPT",
        "ingress",
        2
    )));
    assert!(!counts(flow_record(
        &template,
        instance,
        (50412, 3333),
        "ACCEPT",
        "egress",
        1
    )));
    assert!(!counts(flow_record(
        &template,
        instance,
        (50412, 3333),
        "ACCEPT",
        "egress",
        0
    )));
    // Refused, not a pool port, not TCP-like instance traffic.
    assert!(!counts(flow_record(
        &template,
        instance,
        (50412, 3333),
        "REJECT",
        "egress",
        2
    )));
    assert!(!counts(flow_record(
        &template,
        instance,
        (50412, 443),
        "ACCEPT",
        "egress",
        2
    )));
    assert!(!counts(flow_record(
        &template,
        instance,
        (50412, 33330),
        "ACCEPT",
        "egress",
        2
    )));
    assert!(!counts(flow_record(
        &template,
        "-",
        (50412, 3333),
        "ACCEPT",
        "egress",
        2
    )));
}

/// A pool domain and names under it count; look-alikes around it do not.
#[test]
fn the_dns_signal_counts_pool_domains_and_their_names_only() {
    let template = load_template("infra/aws/template.yaml");
    let pattern = template["Resources"]["MiningPoolDnsFilter"]["Properties"]["FilterPattern"]
        .as_str()
        .expect("a pattern")
        .to_owned();
    let query_regex = pattern
        .split("$.query_name = %")
        .nth(1)
        .and_then(|rest| rest.split('%').next())
        .expect("the query name's regular expression");
    let regex = regex_lite::Regex::new(query_regex).expect("a regular expression");
    for name in [
        "supportxmr.com",
        "supportxmr.com.",
        "pool.supportxmr.com.",
        "xmr-eu1.nanopool.org.",
        "gulf.moneroocean.stream.",
    ] {
        assert!(regex.is_match(name), "{name}");
    }
    for name in [
        "notsupportxmr.com.",
        "supportxmr.com.example.net.",
        "supportxmrXcom.",
        "example.com.",
        "nanopool.org.evil",
    ] {
        assert!(!regex.is_match(name), "{name}");
    }
}
