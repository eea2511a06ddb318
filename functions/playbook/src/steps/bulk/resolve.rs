//! Selectors to instances, by reads alone.
//!
//! Every selector is one filtered, paginated `DescribeInstances` (filters keep
//! the calls in EC2's larger non-mutating bucket); Auto Scaling groups are
//! read for their members first, findings are parsed as a trigger is. An id
//! that matches nothing is said, never silently dropped.

use std::collections::BTreeMap;

use aws_sdk_ec2::types::{Filter, Instance};

use super::subnets::subnet_interfaces;
use super::{plan, Resolved, SubnetInterface};
use crate::aws::Clients;
use crate::case::bulk::{BulkAction, BulkPlan, BulkRequest, PlannedInstance, Skipped};
use crate::case::custody::now_utc;
use crate::error::{AwsCall, PlaybookError, Result};
use crate::findings::{looks_like_instance_id, parse_event, ParseContext};

/// EC2 takes at most this many values in one filter.
pub const FILTER_VALUES: usize = 200;

/// Resolves the request's selectors and plans the run: reads only.
pub async fn plan_bulk(clients: &Clients, request: BulkRequest) -> Result<BulkPlan> {
    let resolved = resolve(clients, &request).await?;
    Ok(plan(request, resolved, now_utc()))
}

/// One `DescribeInstances` query: the filter, and how the plan names it.
struct Query {
    filter: Filter,
    label: String,
}

fn filter(name: &str, values: &[String]) -> Filter {
    Filter::builder()
        .name(name)
        .set_values(Some(values.to_vec()))
        .build()
}

fn invalid(what: &str, value: &str, shape: &str) -> PlaybookError {
    PlaybookError::InvalidRequest(format!("{what} {value:?} is not {shape}"))
}

/// Checks every selector's shape before any call: a bad one fails the
/// request, it is not skipped.
fn queries(request: &BulkRequest) -> Result<Vec<Query>> {
    let selection = &request.selection;
    let mut queries = Vec::new();
    if let Some(bad) = selection
        .instance_ids
        .iter()
        .find(|id| !looks_like_instance_id(id))
    {
        return Err(invalid("instance id", bad, "an EC2 instance id"));
    }
    for ids in selection.instance_ids.chunks(FILTER_VALUES) {
        queries.push(Query {
            filter: filter("instance-id", ids),
            label: "instance-id".into(),
        });
    }
    for tag in &selection.tags {
        let Some((key, value)) = tag.split_once('=').filter(|(k, _)| !k.is_empty()) else {
            return Err(invalid("tag", tag, "key=value"));
        };
        queries.push(Query {
            filter: filter(&format!("tag:{key}"), &[value.to_owned()]),
            label: format!("tag:{tag}"),
        });
    }
    for (values, name, prefix) in [
        (&selection.subnets, "network-interface.subnet-id", "subnet-"),
        (&selection.vpcs, "vpc-id", "vpc-"),
    ] {
        for value in values.iter() {
            if !resource_id(value, prefix) {
                return Err(invalid(name, value, &format!("a {prefix}… id")));
            }
            queries.push(Query {
                filter: filter(name, std::slice::from_ref(value)),
                label: format!("{}:{value}", prefix.trim_end_matches('-')),
            });
        }
    }
    Ok(queries)
}

/// `subnet-0abc…`: the prefix, then 8 or 17 hex digits.
fn resource_id(value: &str, prefix: &str) -> bool {
    value.strip_prefix(prefix).is_some_and(|hex| {
        matches!(hex.len(), 8 | 17) && hex.bytes().all(|b| b.is_ascii_hexdigit())
    })
}

/// Every selected instance, with the selectors that chose it.
pub async fn resolve(clients: &Clients, request: &BulkRequest) -> Result<Resolved> {
    let mut queries = queries(request)?;
    let mut resolved = Resolved::default();
    let mut findings: BTreeMap<String, serde_json::Value> = BTreeMap::new();
    let ctx = ParseContext {
        default_region: Some(request.region.clone()),
        default_account: request.account.clone(),
    };
    for (index, event) in request.selection.findings.iter().enumerate() {
        match parse_event(event, &ctx) {
            Ok(parsed) => {
                for finding in parsed.findings {
                    let incident = &finding.incident;
                    if incident.region != request.region {
                        resolved.skipped.push(Skipped {
                            target: format!("finding {index}"),
                            why: format!(
                                "about region {}, not {}",
                                incident.region, request.region
                            ),
                        });
                        continue;
                    }
                    for id in &incident.instance_ids {
                        findings
                            .entry(id.clone())
                            .or_insert_with(|| finding.event.clone());
                    }
                }
            }
            Err(err) => resolved.skipped.push(Skipped {
                target: format!("finding {index}"),
                why: err.to_string(),
            }),
        }
    }
    let from_findings: Vec<String> = findings.keys().cloned().collect();
    for ids in from_findings.chunks(FILTER_VALUES) {
        queries.push(Query {
            filter: filter("instance-id", ids),
            label: "finding".into(),
        });
    }
    for group in &request.selection.auto_scaling_groups {
        let members = group_members(clients, group).await?;
        match members {
            Some(ids) if !ids.is_empty() => queries.push(Query {
                filter: filter("instance-id", &ids),
                label: format!("asg:{group}"),
            }),
            Some(_) => resolved.skipped.push(Skipped {
                target: format!("asg:{group}"),
                why: "the Auto Scaling group has no instance".into(),
            }),
            None => resolved.skipped.push(Skipped {
                target: format!("asg:{group}"),
                why: "no such Auto Scaling group in this account and Region".into(),
            }),
        }
    }
    for query in queries {
        for instance in describe(&clients.ec2, query.filter).await? {
            let Some(id) = instance.instance_id().map(str::to_owned) else {
                continue;
            };
            let planned = resolved
                .instances
                .entry(id.clone())
                .or_insert_with(|| planned_instance(&instance));
            if !planned.selected_by.contains(&query.label) {
                planned.selected_by.push(query.label.clone());
            }
            if planned.finding.is_none() {
                planned.finding = findings.get(&id).cloned();
            }
        }
    }
    let asked = request.selection.instance_ids.iter().chain(findings.keys());
    for id in asked {
        if !resolved.instances.contains_key(id) && !resolved.skipped.iter().any(|s| &s.target == id)
        {
            resolved.skipped.push(Skipped {
                target: id.clone(),
                why: format!("not found in this account and {}", request.region),
            });
        }
    }
    if request.action == BulkAction::QuarantineSubnets {
        let mut subnets: Vec<String> = resolved
            .instances
            .values()
            .flat_map(|i| i.subnet_ids.iter().cloned())
            .collect();
        subnets.sort();
        subnets.dedup();
        resolved.interfaces = interfaces_in(&clients.ec2, &subnets).await?;
    }
    Ok(resolved)
}

fn planned_instance(instance: &Instance) -> PlannedInstance {
    let mut subnet_ids: Vec<String> = instance
        .network_interfaces()
        .iter()
        .filter_map(|eni| eni.subnet_id().map(str::to_owned))
        .collect();
    if let Some(primary) = instance.subnet_id() {
        subnet_ids.push(primary.to_owned());
    }
    subnet_ids.sort();
    subnet_ids.dedup();
    PlannedInstance {
        instance_id: instance.instance_id().unwrap_or_default().to_owned(),
        state: instance
            .state()
            .and_then(|s| s.name())
            .map(|n| n.as_str().to_owned())
            .unwrap_or_else(|| "unknown".into()),
        vpc_id: instance.vpc_id().map(str::to_owned),
        subnet_id: instance.subnet_id().map(str::to_owned),
        subnet_ids,
        selected_by: Vec::new(),
        finding: None,
    }
}

/// Every instance one filter matches, page by page.
async fn describe(ec2: &aws_sdk_ec2::Client, filter: Filter) -> Result<Vec<Instance>> {
    let mut found = Vec::new();
    let mut token = None;
    loop {
        let page = ec2
            .describe_instances()
            .filters(filter.clone())
            .max_results(1000)
            .set_next_token(token)
            .send()
            .await
            .aws("DescribeInstances", None)?;
        found.extend(
            page.reservations()
                .iter()
                .flat_map(|r| r.instances().iter().cloned()),
        );
        token = page.next_token().map(str::to_owned);
        if token.is_none() {
            return Ok(found);
        }
    }
}

/// An Auto Scaling group's member instances; `None` when there is no such group.
async fn group_members(clients: &Clients, group: &str) -> Result<Option<Vec<String>>> {
    let out = clients
        .autoscaling
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(group)
        .send()
        .await
        .aws("DescribeAutoScalingGroups", None)?;
    Ok(out
        .auto_scaling_groups()
        .iter()
        .find(|g| g.auto_scaling_group_name() == Some(group))
        .map(|g| {
            g.instances()
                .iter()
                .filter_map(|i| i.instance_id().map(str::to_owned))
                .collect()
        }))
}

/// Every network interface in `subnets`: what a cut of them would also cut.
async fn interfaces_in(
    ec2: &aws_sdk_ec2::Client,
    subnets: &[String],
) -> Result<Vec<SubnetInterface>> {
    Ok(subnet_interfaces(ec2, subnets)
        .await?
        .iter()
        .map(|eni| SubnetInterface {
            network_interface_id: eni.network_interface_id().unwrap_or_default().to_owned(),
            subnet_id: eni.subnet_id().unwrap_or_default().to_owned(),
            vpc_id: eni.vpc_id().unwrap_or_default().to_owned(),
            instance_id: eni
                .attachment()
                .and_then(|a| a.instance_id())
                .map(str::to_owned),
            interface_type: eni
                .interface_type()
                .map(|t| t.as_str().to_owned())
                .unwrap_or_else(|| "interface".into()),
            description: eni
                .description()
                .filter(|d| !d.is_empty())
                .map(str::to_owned),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::case::bulk::Selection;

    fn request(selection: Selection) -> BulkRequest {
        BulkRequest {
            action: BulkAction::Contain,
            selection,
            reason: "r".into(),
            region: "us-east-1".into(),
            account: None,
            whole_subnet: false,
            requested_by: None,
            requested_at: "t".into(),
            release_of: None,
            without_snapshots: false,
        }
    }

    #[test]
    fn malformed_selectors_fail_the_request_before_any_call() {
        for selection in [
            Selection {
                instance_ids: vec!["i-1; rm -rf /".into()],
                ..Selection::default()
            },
            Selection {
                tags: vec!["no-equals-sign".into()],
                ..Selection::default()
            },
            Selection {
                tags: vec!["=value".into()],
                ..Selection::default()
            },
            Selection {
                subnets: vec!["vpc-0123abcd".into()],
                ..Selection::default()
            },
            Selection {
                vpcs: vec!["vpc-xyz".into()],
                ..Selection::default()
            },
        ] {
            let err = queries(&request(selection.clone())).err();
            assert_eq!(
                err.as_ref().map(PlaybookError::error_type),
                Some("InvalidRequest"),
                "{selection:?}"
            );
        }
    }

    #[test]
    fn each_selector_is_one_filtered_query() {
        let selection = Selection {
            instance_ids: vec!["i-0123456789abcdef0".into()],
            tags: vec!["campaign=miner=2".into()],
            subnets: vec!["subnet-0123abcd".into()],
            vpcs: vec!["vpc-0123456789abcdef0".into()],
            ..Selection::default()
        };
        let labels: Vec<String> = queries(&request(selection))
            .unwrap_or_default()
            .into_iter()
            .map(|q| format!("{} {:?}", q.label, q.filter.values()))
            .collect();
        assert_eq!(
            labels,
            [
                r#"instance-id ["i-0123456789abcdef0"]"#,
                r#"tag:campaign=miner=2 ["miner=2"]"#,
                r#"subnet:subnet-0123abcd ["subnet-0123abcd"]"#,
                r#"vpc:vpc-0123456789abcdef0 ["vpc-0123456789abcdef0"]"#,
            ]
        );
    }
}
