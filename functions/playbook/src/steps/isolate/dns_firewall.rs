//! Blocking the domain a DNS finding names, with Route 53 Resolver DNS Firewall.
//!
//! Security groups and network ACLs cannot filter the instance's queries to
//! the VPC resolver, so a miner or implant can keep resolving (and tunnelling
//! through) its domain. With `blockFindingDomain` on, the responder blocks the
//! finding's domain and its subdomains for the VPCs of the instance: a domain
//! list, a rule group with one BLOCK (NXDOMAIN) rule, and its association with
//! the VPC at the lowest free priority. Creations carry a request id derived
//! from the case, so a re-run finds what the first run made. The block applies
//! to every instance of the VPC, which is why it is off by default.

use aws_sdk_route53resolver::types::{Action, BlockResponse, FirewallDomainUpdateOperation};

use crate::case::isolation::DnsFirewallBlock;
use crate::error::{AwsCall, Result};

/// Association priorities DNS Firewall accepts (lowest is evaluated first).
pub const PRIORITIES: std::ops::RangeInclusive<i32> = 100..=9900;

/// Domains the responder refuses to block: resolving them is how the VPC
/// reaches AWS itself (SSM endpoints, the evidence bucket, STS).
const NEVER_BLOCKED: [&str; 4] = ["amazonaws.com", "aws", "amazon.com", "aws.dev"];

/// The domain to block, if `domain` is a plain DNS name that is safe to block.
pub fn blockable(domain: &str) -> std::result::Result<String, String> {
    let domain = domain.trim().trim_end_matches('.').to_ascii_lowercase();
    let labels: Vec<&str> = domain.split('.').collect();
    let well_formed = domain.len() <= 253
        && labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if !well_formed {
        return Err(format!("{domain:?} is not a DNS name"));
    }
    if let Some(aws) = NEVER_BLOCKED
        .iter()
        .find(|s| domain == **s || domain.ends_with(&format!(".{s}")))
    {
        return Err(format!(
            "{domain} is under {aws}: blocking it would cut the VPC off from AWS itself"
        ));
    }
    Ok(domain)
}

/// The lowest priority no other rule group of the VPC holds.
pub fn free_priority(taken: &[i32]) -> Option<i32> {
    PRIORITIES.clone().find(|p| !taken.contains(p))
}

/// Blocks `domain` for `vpc_id`. Returns the record with whatever was made,
/// or the error of the first call that failed (with what was made so far).
pub async fn block(
    r53: &aws_sdk_route53resolver::Client,
    case_id: &str,
    vpc_id: &str,
    domain: &str,
) -> (DnsFirewallBlock, Result<()>) {
    let mut record = DnsFirewallBlock {
        vpc_id: vpc_id.to_owned(),
        domains: vec![domain.to_owned(), format!("*.{domain}")],
        domain_list_id: None,
        rule_group_id: None,
        association_id: None,
        priority: None,
        status: None,
    };
    let result = block_into(r53, case_id, &mut record).await;
    (record, result)
}

async fn block_into(
    r53: &aws_sdk_route53resolver::Client,
    case_id: &str,
    record: &mut DnsFirewallBlock,
) -> Result<()> {
    let name = format!("ec2-forensics-{case_id}");
    let request = |what: &str| format!("ec2-forensics-{case_id}-{}-{what}", record.vpc_id);
    let list = r53
        .create_firewall_domain_list()
        .creator_request_id(request("list"))
        .name(&name)
        .send();
    let group = r53
        .create_firewall_rule_group()
        .creator_request_id(request("group"))
        .name(&name)
        .send();
    let associations = r53
        .list_firewall_rule_group_associations()
        .vpc_id(&record.vpc_id)
        .send();
    let (list, group, associations) = tokio::join!(list, group, associations);
    let list_id = list
        .aws("CreateFirewallDomainList", None)?
        .firewall_domain_list()
        .and_then(|l| l.id())
        .unwrap_or_default()
        .to_owned();
    record.domain_list_id = Some(list_id.clone());
    let group_id = group
        .aws("CreateFirewallRuleGroup", None)?
        .firewall_rule_group()
        .and_then(|g| g.id())
        .unwrap_or_default()
        .to_owned();
    record.rule_group_id = Some(group_id.clone());
    let associations = associations.aws("ListFirewallRuleGroupAssociations", None)?;
    let ours = associations
        .firewall_rule_group_associations()
        .iter()
        .find(|a| a.firewall_rule_group_id() == Some(group_id.as_str()));
    let taken: Vec<i32> = associations
        .firewall_rule_group_associations()
        .iter()
        .filter_map(|a| a.priority())
        .collect();
    let priority = match ours.and_then(|a| a.priority()) {
        Some(p) => p,
        None => free_priority(&taken).ok_or_else(|| crate::PlaybookError::AwsService {
            operation: "AssociateFirewallRuleGroup".into(),
            code: "NoFreePriority".into(),
            message: format!("every priority of {} is taken", record.vpc_id),
        })?,
    };
    record.priority = Some(priority);
    let domains = r53
        .update_firewall_domains()
        .firewall_domain_list_id(&list_id)
        .operation(FirewallDomainUpdateOperation::Add)
        .set_domains(Some(record.domains.clone()))
        .send();
    let rule = r53
        .create_firewall_rule()
        .creator_request_id(request("rule"))
        .firewall_rule_group_id(&group_id)
        .firewall_domain_list_id(&list_id)
        .priority(100)
        .action(Action::Block)
        .block_response(BlockResponse::Nxdomain)
        .name(&name)
        .send();
    let association = r53
        .associate_firewall_rule_group()
        .creator_request_id(request("association"))
        .firewall_rule_group_id(&group_id)
        .vpc_id(&record.vpc_id)
        .priority(priority)
        .name(&name)
        .send();
    let (domains, rule, association) = tokio::join!(domains, rule, association);
    domains.aws("UpdateFirewallDomains", None)?;
    rule.aws("CreateFirewallRule", None)?;
    let association = association.aws("AssociateFirewallRuleGroup", None)?;
    let association = association.firewall_rule_group_association();
    record.association_id = association.and_then(|a| a.id()).map(str::to_owned);
    record.status = association
        .and_then(|a| a.status())
        .map(|s| s.as_str().to_owned());
    Ok(())
}

/// Ends the block: disassociates the rule group from the VPC. The rule group
/// and the domain list stay, inert, for the case's cleanup.
pub async fn unblock(r53: &aws_sdk_route53resolver::Client, association_id: &str) -> Result<()> {
    r53.disassociate_firewall_rule_group()
        .firewall_rule_group_association_id(association_id)
        .send()
        .await
        .aws("DisassociateFirewallRuleGroup", None)
        .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_dns_names_outside_aws_are_blocked() {
        assert_eq!(
            blockable("Pool.MineXMR.example.").as_deref(),
            Ok("pool.minexmr.example")
        );
        assert!(blockable("xmr.pool; rm -rf /").is_err());
        assert!(blockable("localhost").is_err(), "a single label");
        assert!(blockable("-bad.example").is_err());
        assert!(blockable("ssm.us-east-1.amazonaws.com").is_err());
        assert!(blockable("amazonaws.com").is_err());
        assert!(blockable("notamazonaws.com").is_ok());
    }

    #[test]
    fn the_association_takes_the_lowest_free_priority() {
        assert_eq!(free_priority(&[]), Some(100));
        assert_eq!(free_priority(&[100, 101, 200]), Some(102));
        assert_eq!(free_priority(&PRIORITIES.collect::<Vec<_>>()), None);
    }
}
