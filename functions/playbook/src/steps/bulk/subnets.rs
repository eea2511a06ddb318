//! `quarantine-subnets`: the fast cut, and its exact release.
//!
//! Each VPC gets one deny-all network ACL, prepared once before the map.
//! Each affected subnet's ACL association then moves to it: one
//! `ReplaceNetworkAclAssociation` per subnet. Network ACLs are stateless, so
//! open connections across the subnet's edge stop with the next packet.
//!
//! A subnet is held by one run at a time, like an instance by one case: the
//! responder's lease table gets `subnet:<account>/<region>/<subnet>` with the
//! original ACL before the cut (a conditional write, so two runs never both
//! cut and each later release knows exactly what to put back). A second run
//! finds the hold and only records it. Release puts the original ACL back
//! only while the subnet is still on the deny-all ACL of that cut: a change
//! someone made since is left alone and said.
//!
//! "Deny-all" is checked, never assumed from a name or tag: an ACL with no
//! ALLOW entry denies every packet, because what no entry allows falls to
//! the `*` DENY that every ACL ends with and that cannot be removed.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_ec2::types::{
    Filter, NetworkAcl, NetworkInterface, ResourceType, Tag, TagSpecification,
};

use crate::aws::{attempt, Responder};
use crate::case::bulk::{QuarantineAcl, SubnetCut, SubnetItem, SubnetRelease};
use crate::case::custody::{now_utc, sha256_hex};
use crate::case::{ActionRecord, Outcome};
use crate::error::{AwsCall, PlaybookError, Result};
use crate::steps::isolate::acl::{allows_nothing, describe_acl};
use crate::steps::lease::conditional;
use crate::steps::ROLE_TAG;

/// The role tag value of a VPC's deny-all ACL.
pub const QUARANTINE_ROLE: &str = "quarantine-acl";

/// Whether `acl` may serve as a VPC's deny-all ACL: not the VPC's default
/// ACL, and denying every packet in both directions (no ALLOW entry).
pub fn denies_everything(acl: &NetworkAcl) -> bool {
    !acl.is_default().unwrap_or(false) && allows_nothing(acl, false) && allows_nothing(acl, true)
}

fn filter(name: &str, value: &str) -> Filter {
    Filter::builder().name(name).values(value).build()
}

async fn describe(ec2: &aws_sdk_ec2::Client, filters: Vec<Filter>) -> Result<Vec<NetworkAcl>> {
    let out = ec2
        .describe_network_acls()
        .set_filters(Some(filters))
        .send()
        .await
        .aws("DescribeNetworkAcls", None)?;
    Ok(out.network_acls().to_vec())
}

/// The VPC's deny-all ACL: one found by its role tag and checked to deny
/// everything, else a new one (made idempotent for this run by its client
/// token), read back.
pub async fn prepare_quarantine_acl(
    ec2: &aws_sdk_ec2::Client,
    vpc_id: &str,
    bulk_id: &str,
    dry_run: bool,
) -> Result<QuarantineAcl> {
    let target = format!("deny-all network ACL of {vpc_id}");
    let found = describe(
        ec2,
        vec![
            filter("vpc-id", vpc_id),
            filter(&format!("tag:{ROLE_TAG}"), QUARANTINE_ROLE),
        ],
    )
    .await?;
    let usable = found
        .iter()
        .filter(|acl| acl.vpc_id() == Some(vpc_id) && denies_everything(acl))
        .filter_map(|acl| acl.network_acl_id())
        .min();
    if let Some(acl_id) = usable {
        return Ok(QuarantineAcl {
            vpc_id: vpc_id.to_owned(),
            network_acl_id: Some(acl_id.to_owned()),
            verified: true,
            action: ActionRecord::already_done("prepare a deny-all network ACL", &target),
        });
    }
    let untrusted = found.len();
    let token = &sha256_hex(format!("{bulk_id}\n{vpc_id}\n{QUARANTINE_ROLE}").as_bytes())[..32];
    let (mut action, made) = attempt(
        dry_run,
        "prepare a deny-all network ACL",
        &target,
        || async {
            let out = ec2
                .create_network_acl()
                .vpc_id(vpc_id)
                .client_token(token)
                .tag_specifications(
                    TagSpecification::builder()
                        .resource_type(ResourceType::NetworkAcl)
                        .tags(Tag::builder().key(ROLE_TAG).value(QUARANTINE_ROLE).build())
                        .tags(
                            Tag::builder()
                                .key("Name")
                                .value("ec2-forensics-quarantine")
                                .build(),
                        )
                        .build(),
                )
                .send()
                .await
                .aws("CreateNetworkAcl", None)?;
            out.network_acl()
                .and_then(|a| a.network_acl_id())
                .map(str::to_owned)
                .ok_or_else(|| PlaybookError::AwsService {
                    operation: "CreateNetworkAcl".into(),
                    code: "IncompleteResponse".into(),
                    message: "no network ACL id in the answer".into(),
                })
        },
    )
    .await;
    if untrusted > 0 {
        action.detail = Some(format!(
            "{untrusted} ACL(s) carry the quarantine tag but allow traffic: not used"
        ));
    }
    let Some(acl_id) = made else {
        return Ok(QuarantineAcl {
            vpc_id: vpc_id.to_owned(),
            network_acl_id: None,
            verified: false,
            action,
        });
    };
    let read = describe_acl(ec2, &acl_id).await?;
    let verified = read
        .iter()
        .any(|acl| acl.vpc_id() == Some(vpc_id) && denies_everything(acl));
    Ok(QuarantineAcl {
        vpc_id: vpc_id.to_owned(),
        network_acl_id: Some(acl_id),
        verified,
        action,
    })
}

/// A subnet's ACL association as read now: the ACL and the association id.
#[derive(Debug, Clone, PartialEq)]
struct Association {
    acl: NetworkAcl,
    association_id: String,
}

async fn association_of(ec2: &aws_sdk_ec2::Client, subnet_id: &str) -> Result<Association> {
    let acls = describe(ec2, vec![filter("association.subnet-id", subnet_id)]).await?;
    acls.into_iter()
        .find_map(|acl| {
            let association_id = acl
                .associations()
                .iter()
                .find(|a| a.subnet_id() == Some(subnet_id))?
                .network_acl_association_id()?
                .to_owned();
            Some(Association {
                acl,
                association_id,
            })
        })
        .ok_or_else(|| PlaybookError::AwsService {
            operation: "DescribeNetworkAcls".into(),
            code: "InvalidSubnetID.NotFound".into(),
            message: format!("no network ACL association of {subnet_id} was read"),
        })
}

/// Every network interface in `subnets`, page by page.
pub async fn subnet_interfaces(
    ec2: &aws_sdk_ec2::Client,
    subnets: &[String],
) -> Result<Vec<NetworkInterface>> {
    let mut found = Vec::new();
    for chunk in subnets.chunks(super::resolve::FILTER_VALUES) {
        let mut token = None;
        loop {
            let page = ec2
                .describe_network_interfaces()
                .filters(
                    Filter::builder()
                        .name("subnet-id")
                        .set_values(Some(chunk.to_vec()))
                        .build(),
                )
                .max_results(1000)
                .set_next_token(token)
                .send()
                .await
                .aws("DescribeNetworkInterfaces", None)?;
            found.extend(page.network_interfaces().iter().cloned());
            token = page.next_token().map(str::to_owned);
            if token.is_none() {
                break;
            }
        }
    }
    Ok(found)
}

/// The network interfaces of `subnet_id`: (interface, attached instance).
async fn interfaces_of(
    ec2: &aws_sdk_ec2::Client,
    subnet_id: &str,
) -> Result<Vec<(String, Option<String>)>> {
    Ok(subnet_interfaces(ec2, &[subnet_id.to_owned()])
        .await?
        .iter()
        .map(|eni| {
            (
                eni.network_interface_id().unwrap_or_default().to_owned(),
                eni.attachment()
                    .and_then(|a| a.instance_id())
                    .map(str::to_owned),
            )
        })
        .collect())
}

/// The instances with a network interface in `subnet_id`.
pub async fn instances_in_subnet(
    ec2: &aws_sdk_ec2::Client,
    subnet_id: &str,
) -> Result<Vec<String>> {
    let mut instances: Vec<String> = interfaces_of(ec2, subnet_id)
        .await?
        .into_iter()
        .filter_map(|(_, instance)| instance)
        .collect();
    instances.sort();
    instances.dedup();
    Ok(instances)
}

/// The holds of subnets in the responder's lease table: one run per subnet.
pub struct SubnetHolds<'a> {
    db: &'a aws_sdk_dynamodb::Client,
    table: &'a str,
    account: String,
    region: String,
}

/// A subnet's hold as the table keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct Hold {
    /// The run that holds the subnet.
    pub bulk_id: String,
    /// The ACL before the cut.
    pub original_acl_id: String,
    /// The association before the cut.
    pub original_association_id: String,
    /// The association the cut made, once made.
    pub association_id: Option<String>,
    /// The deny-all ACL of the cut, once made.
    pub quarantine_acl_id: Option<String>,
    /// Later runs that found the subnet cut by this one and count on it:
    /// the holder's release is refused while any is listed.
    pub relied_on_by: Vec<String>,
    /// The subnet's VPC.
    pub vpc_id: Option<String>,
}

fn relied_on_by(item: &HashMap<String, AttributeValue>) -> Vec<String> {
    item.get("reliedOnBy")
        .and_then(|v| v.as_ss().ok())
        .cloned()
        .unwrap_or_default()
}

fn s(value: &str) -> AttributeValue {
    AttributeValue::S(value.to_owned())
}

fn text(item: &HashMap<String, AttributeValue>, name: &str) -> Option<String> {
    item.get(name).and_then(|v| v.as_s().ok()).cloned()
}

impl<'a> SubnetHolds<'a> {
    /// The holds in `LEASE_TABLE`, for subnets of `account` in the responder's Region.
    pub fn of(responder: &'a Responder, account: &str) -> Option<SubnetHolds<'a>> {
        Some(SubnetHolds {
            db: &responder.clients.dynamodb,
            table: responder.config.lease_table.as_deref()?,
            account: account.to_owned(),
            region: responder.region.clone(),
        })
    }

    fn key(&self, subnet_id: &str) -> String {
        format!("subnet:{}/{}/{subnet_id}", self.account, self.region)
    }

    /// The subnet's hold, if any run holds it.
    pub async fn get(&self, subnet_id: &str) -> Result<Option<Hold>> {
        let out = self
            .db
            .get_item()
            .table_name(self.table)
            .key("instance", s(&self.key(subnet_id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| PlaybookError::from_sdk("GetItem", None, &e))?;
        Ok(out.item().and_then(|item| {
            Some(Hold {
                bulk_id: text(item, "bulkId")?,
                original_acl_id: text(item, "originalAclId")?,
                original_association_id: text(item, "originalAssociationId")?,
                association_id: text(item, "associationId"),
                quarantine_acl_id: text(item, "quarantineAclId"),
                relied_on_by: relied_on_by(item),
                vpc_id: text(item, "vpcId"),
            })
        }))
    }

    /// Takes the subnet for `hold.bulk_id`: `false` when another run took it first.
    pub async fn take(&self, subnet_id: &str, hold: &Hold) -> Result<bool> {
        let put = self
            .db
            .put_item()
            .table_name(self.table)
            .set_item(Some(
                [
                    ("instance", s(&self.key(subnet_id))),
                    ("bulkId", s(&hold.bulk_id)),
                    ("originalAclId", s(&hold.original_acl_id)),
                    ("originalAssociationId", s(&hold.original_association_id)),
                    ("since", s(&now_utc())),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .chain(hold.vpc_id.as_deref().map(|v| ("vpcId".to_owned(), s(v))))
                .collect(),
            ))
            .condition_expression("attribute_not_exists(#key)")
            .expression_attribute_names("#key", "instance")
            .send()
            .await;
        conditional("PutItem", put)
    }

    /// Records the association the cut made and its ACL, on this run's own hold.
    pub async fn record_cut(
        &self,
        subnet_id: &str,
        bulk_id: &str,
        association: &str,
        quarantine_acl_id: &str,
    ) -> Result<bool> {
        let update = self
            .db
            .update_item()
            .table_name(self.table)
            .key("instance", s(&self.key(subnet_id)))
            .update_expression("SET associationId = :association, quarantineAclId = :acl")
            .condition_expression("bulkId = :bulk")
            .expression_attribute_values(":association", s(association))
            .expression_attribute_values(":acl", s(quarantine_acl_id))
            .expression_attribute_values(":bulk", s(bulk_id))
            .send()
            .await;
        conditional("UpdateItem", update)
    }

    /// The subnets of this account and Region that `bulk_id` holds, or
    /// relies on another run's cut of, with their VPCs: what its release
    /// undoes, read from the responder's own table (a Scan, consistent: the
    /// table holds one item per held instance or subnet, and a release is
    /// rare), never from the bucket or from execution history that Step
    /// Functions forgets 90 days after a run ends.
    pub async fn of_run(&self, bulk_id: &str) -> Result<Vec<(String, String)>> {
        let prefix = self.key("");
        let mut found = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .db
                .scan()
                .table_name(self.table)
                .consistent_read(true)
                .filter_expression(
                    "begins_with(#key, :prefix) AND (bulkId = :run OR contains(reliedOnBy, :run))",
                )
                .expression_attribute_names("#key", "instance")
                .expression_attribute_values(":prefix", s(&prefix))
                .expression_attribute_values(":run", s(bulk_id))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| PlaybookError::from_sdk("Scan", None, &e))?;
            for item in page.items() {
                let held = text(item, "bulkId").as_deref() == Some(bulk_id)
                    || relied_on_by(item).iter().any(|r| r == bulk_id);
                let subnet = text(item, "instance")
                    .and_then(|key| key.strip_prefix(&prefix).map(str::to_owned));
                if let (true, Some(subnet)) = (held, subnet) {
                    found.push((subnet, text(item, "vpcId").unwrap_or_default()));
                }
            }
            start = page.last_evaluated_key().cloned();
            if start.is_none() {
                break;
            }
        }
        found.sort();
        Ok(found)
    }

    /// Records that `bulk_id` relies on `holder`'s cut of the subnet:
    /// `false` when `holder` no longer holds it.
    pub async fn rely(&self, subnet_id: &str, holder: &str, bulk_id: &str) -> Result<bool> {
        let update = self
            .db
            .update_item()
            .table_name(self.table)
            .key("instance", s(&self.key(subnet_id)))
            .update_expression("ADD reliedOnBy :run")
            .condition_expression("bulkId = :holder AND attribute_not_exists(releasing)")
            .expression_attribute_values(":run", AttributeValue::Ss(vec![bulk_id.to_owned()]))
            .expression_attribute_values(":holder", s(holder))
            .send()
            .await;
        conditional("UpdateItem", update)
    }

    /// Marks this run's hold as being released, so that no run comes to
    /// rely on the cut from now on: `false` when another run relies on it
    /// already (or the hold is not this run's).
    pub async fn begin_release(&self, subnet_id: &str, bulk_id: &str) -> Result<bool> {
        let update = self
            .db
            .update_item()
            .table_name(self.table)
            .key("instance", s(&self.key(subnet_id)))
            .update_expression("SET releasing = :now")
            .condition_expression("bulkId = :bulk AND attribute_not_exists(reliedOnBy)")
            .expression_attribute_values(":now", s(&now_utc()))
            .expression_attribute_values(":bulk", s(bulk_id))
            .send()
            .await;
        conditional("UpdateItem", update)
    }

    /// Ends this run's release of its hold without releasing it (refused,
    /// failed): other runs may come to rely on the cut again.
    pub async fn end_release(&self, subnet_id: &str, bulk_id: &str) -> Result<bool> {
        let update = self
            .db
            .update_item()
            .table_name(self.table)
            .key("instance", s(&self.key(subnet_id)))
            .update_expression("REMOVE releasing")
            .condition_expression("bulkId = :bulk")
            .expression_attribute_values(":bulk", s(bulk_id))
            .send()
            .await;
        conditional("UpdateItem", update)
    }

    /// Ends `bulk_id`'s reliance on the subnet's cut: `false` when it had none.
    pub async fn let_go(&self, subnet_id: &str, bulk_id: &str) -> Result<bool> {
        let update = self
            .db
            .update_item()
            .table_name(self.table)
            .key("instance", s(&self.key(subnet_id)))
            .update_expression("DELETE reliedOnBy :run")
            .condition_expression("contains(reliedOnBy, :id)")
            .expression_attribute_values(":run", AttributeValue::Ss(vec![bulk_id.to_owned()]))
            .expression_attribute_values(":id", s(bulk_id))
            .send()
            .await;
        conditional("UpdateItem", update)
    }

    /// Frees this run's hold of the subnet.
    pub async fn free(&self, subnet_id: &str, bulk_id: &str) -> Result<bool> {
        let delete = self
            .db
            .delete_item()
            .table_name(self.table)
            .key("instance", s(&self.key(subnet_id)))
            .condition_expression("bulkId = :bulk")
            .expression_attribute_values(":bulk", s(bulk_id))
            .send()
            .await;
        conditional("DeleteItem", delete)
    }
}

const CUT: &str = "cut the subnet off (deny-all network ACL)";

/// Cuts one subnet: holds it, moves its association to the VPC's deny-all
/// ACL, and reads it back. Without a lease table (a command-line run with
/// none configured) the cut is made and recorded, but no hold keeps out a
/// second run.
pub async fn cut_subnet(
    ec2: &aws_sdk_ec2::Client,
    holds: Option<&SubnetHolds<'_>>,
    item: &SubnetItem,
    quarantine_acl_id: &str,
    dry_run: bool,
) -> Result<SubnetCut> {
    let subnet_id = item.subnet_id.as_str();
    let mut cut = SubnetCut {
        bulk_id: item.bulk_id.clone(),
        subnet_id: subnet_id.to_owned(),
        vpc_id: item.vpc_id.clone(),
        original_acl_id: None,
        original_association_id: None,
        quarantine_acl_id: Some(quarantine_acl_id.to_owned()),
        association_id: None,
        held_by: None,
        verified: false,
        verified_at: None,
        actions: Vec::new(),
    };
    let quarantine = describe_acl(ec2, quarantine_acl_id).await?;
    if !quarantine
        .iter()
        .any(|acl| acl.vpc_id() == Some(item.vpc_id.as_str()) && denies_everything(acl))
    {
        cut.actions.push(ActionRecord::failed(
            CUT,
            subnet_id,
            "QuarantineAclNotDenyAll",
            format!(
                "{quarantine_acl_id} is not a deny-all ACL of {}: nothing changed",
                item.vpc_id
            ),
        ));
        return Ok(cut);
    }
    let now = association_of(ec2, subnet_id).await?;
    if now.acl.vpc_id() != Some(item.vpc_id.as_str()) {
        cut.actions.push(ActionRecord::failed(
            CUT,
            subnet_id,
            "SubnetNotInVpc",
            format!(
                "{subnet_id} is not in {} as planned: nothing changed",
                item.vpc_id
            ),
        ));
        return Ok(cut);
    }
    let now_acl = now.acl.network_acl_id().unwrap_or_default().to_owned();
    let on_quarantine = now_acl == quarantine_acl_id;
    if !item.whole_subnet && !on_quarantine {
        // What was planned may have changed while the run waited for its
        // approval: a cut never takes along an interface no one accepted.
        let others: Vec<String> = interfaces_of(ec2, subnet_id)
            .await?
            .into_iter()
            .filter(|(_, instance)| instance.as_ref().is_none_or(|i| !item.selected.contains(i)))
            .map(|(eni, _)| eni)
            .collect();
        if !others.is_empty() {
            cut.actions.push(ActionRecord::failed(
                CUT,
                subnet_id,
                "SubnetHoldsOthers",
                format!(
                    "{subnet_id} now also holds {} outside the selection: not cut without the whole-subnet option",
                    others.join(", ")
                ),
            ));
            return Ok(cut);
        }
    }
    let held = match holds {
        Some(holds) => holds.get(subnet_id).await?,
        None => None,
    };
    match (&held, holds) {
        (Some(hold), Some(holds)) if hold.bulk_id != item.bulk_id => {
            cut.held_by = Some(hold.bulk_id.clone());
            // This run counts on the other's cut: said on the hold, so the
            // other's release cannot un-cut the subnet under it unrecorded.
            let relied = dry_run
                || hold.relied_on_by.contains(&item.bulk_id)
                || holds.rely(subnet_id, &hold.bulk_id, &item.bulk_id).await?;
            if !relied {
                cut.actions.push(ActionRecord::failed(
                    CUT,
                    subnet_id,
                    "SubnetHoldChanged",
                    format!(
                        "{}'s hold of the subnet ended while this run read it: nothing changed; run the item again",
                        hold.bulk_id
                    ),
                ));
                return Ok(cut);
            }
            cut.verified = denies_everything(&now.acl);
            cut.verified_at = cut.verified.then(now_utc);
            cut.actions.push(ActionRecord {
                detail: Some(format!(
                    "{} holds the subnet's cut; this run relies on it (recorded on the hold: {}'s release is refused until this run's release lets go)",
                    hold.bulk_id, hold.bulk_id
                )),
                ..ActionRecord::already_done(CUT, subnet_id)
            });
            return Ok(cut);
        }
        (Some(hold), _) => {
            cut.original_acl_id = Some(hold.original_acl_id.clone());
            cut.original_association_id = Some(hold.original_association_id.clone());
        }
        (None, _) if on_quarantine => {
            cut.verified = denies_everything(&now.acl);
            cut.verified_at = cut.verified.then(now_utc);
            cut.association_id = Some(now.association_id.clone());
            cut.actions.push(ActionRecord {
                detail: Some(
                    "found on the deny-all ACL with no run holding it: the ACL before is unknown, so release will not change it".into(),
                ),
                ..ActionRecord::already_done(CUT, subnet_id)
            });
            return Ok(cut);
        }
        (None, Some(holds)) if !dry_run => {
            let hold = Hold {
                bulk_id: item.bulk_id.clone(),
                original_acl_id: now_acl.clone(),
                original_association_id: now.association_id.clone(),
                association_id: None,
                quarantine_acl_id: None,
                relied_on_by: Vec::new(),
                vpc_id: Some(item.vpc_id.clone()),
            };
            if !holds.take(subnet_id, &hold).await? {
                // Another run took it between the read and the write: read who.
                let other = holds.get(subnet_id).await?.map(|h| h.bulk_id);
                cut.held_by = other.clone();
                cut.actions.push(ActionRecord::failed(
                    CUT,
                    subnet_id,
                    "SubnetHeld",
                    format!(
                        "{} took the subnet first; this run did not cut it",
                        other.as_deref().unwrap_or("another run")
                    ),
                ));
                return Ok(cut);
            }
            cut.original_acl_id = Some(now_acl.clone());
            cut.original_association_id = Some(now.association_id.clone());
        }
        (None, _) => {
            cut.original_acl_id = Some(now_acl.clone());
            cut.original_association_id = Some(now.association_id.clone());
        }
    }
    let lost_hold = |cut: &mut SubnetCut| {
        cut.actions.push(ActionRecord::failed(
            CUT,
            subnet_id,
            "SubnetHoldLost",
            "this run's hold of the subnet is gone (released meanwhile): the cut is not recorded as this run's",
        ));
    };
    if on_quarantine {
        if let (Some(holds), false) = (holds, dry_run) {
            let recorded = holds
                .record_cut(
                    subnet_id,
                    &item.bulk_id,
                    &now.association_id,
                    quarantine_acl_id,
                )
                .await?;
            if !recorded {
                lost_hold(&mut cut);
                return Ok(cut);
            }
        }
        cut.association_id = Some(now.association_id.clone());
        cut.actions.push(ActionRecord::already_done(CUT, subnet_id));
    } else {
        let (action, made) = attempt(dry_run, CUT, subnet_id, || async {
            let out = ec2
                .replace_network_acl_association()
                .association_id(&now.association_id)
                .network_acl_id(quarantine_acl_id)
                .send()
                .await
                .aws("ReplaceNetworkAclAssociation", None)?;
            Ok(out.new_association_id().map(str::to_owned))
        })
        .await;
        let failed = action.outcome == Outcome::Failed;
        cut.actions.push(action);
        let Some(association) = made.flatten() else {
            if let (true, Some(holds), None) = (failed, holds, &held) {
                // The hold this attempt took, for a cut that was not made:
                // freed, so it blocks no other run.
                holds.free(subnet_id, &item.bulk_id).await?;
            }
            return Ok(cut);
        };
        if let Some(holds) = holds {
            let recorded = holds
                .record_cut(subnet_id, &item.bulk_id, &association, quarantine_acl_id)
                .await?;
            if !recorded {
                lost_hold(&mut cut);
                return Ok(cut);
            }
        }
        cut.association_id = Some(association);
    }
    let after = association_of(ec2, subnet_id).await?;
    cut.verified = after.acl.network_acl_id() == Some(quarantine_acl_id)
        && after.acl.vpc_id() == Some(item.vpc_id.as_str())
        && denies_everything(&after.acl);
    cut.verified_at = cut.verified.then(now_utc);
    if cut.verified {
        cut.association_id = Some(after.association_id);
    }
    Ok(cut)
}

const RESTORE: &str = "put back the subnet's network ACL";

/// Releases one cut of `bulk_id` exactly, from its hold (the responder's
/// own table: the original ACL as read before the cut): the original ACL
/// goes back only while the subnet is still on the deny-all ACL that cut
/// made; then it is read back and the hold freed. A subnet another run
/// holds, or that someone moved since, is left as it is and said.
pub async fn release_subnet(
    ec2: &aws_sdk_ec2::Client,
    holds: &SubnetHolds<'_>,
    bulk_id: &str,
    subnet_id: &str,
    dry_run: bool,
) -> Result<SubnetRelease> {
    let mut release = SubnetRelease {
        subnet_id: subnet_id.to_owned(),
        restored_acl_id: None,
        restored: false,
        reliance_ended: false,
        actions: Vec::new(),
    };
    let refuse = |release: &mut SubnetRelease, error_type: &str, why: String| {
        release
            .actions
            .push(ActionRecord::failed(RESTORE, subnet_id, error_type, why));
    };
    let hold = match holds.get(subnet_id).await? {
        Some(hold) if hold.bulk_id == bulk_id => hold,
        Some(hold) if hold.relied_on_by.iter().any(|r| r == bulk_id) => {
            let action = attempt(dry_run, RESTORE, subnet_id, || async {
                holds.let_go(subnet_id, bulk_id).await.map(|_| ())
            })
            .await
            .0;
            release.reliance_ended = action.outcome == Outcome::Changed;
            release.actions.push(ActionRecord {
                detail: Some(format!(
                    "{bulk_id} relied on {}'s cut and no longer does; the subnet stays cut, {}'s to release",
                    hold.bulk_id, hold.bulk_id
                )),
                ..action
            });
            return Ok(release);
        }
        Some(hold) => {
            refuse(
                &mut release,
                "SubnetHeld",
                format!(
                    "{} holds the subnet, not {bulk_id}: nothing changed",
                    hold.bulk_id
                ),
            );
            return Ok(release);
        }
        None => {
            refuse(
                &mut release,
                "NotThisRunsCut",
                format!("{bulk_id} holds no cut of {subnet_id} (never made, or already released): nothing changed"),
            );
            return Ok(release);
        }
    };
    if !hold.relied_on_by.is_empty()
        || !(dry_run || holds.begin_release(subnet_id, bulk_id).await?)
    {
        let relying = match holds.get(subnet_id).await? {
            Some(now) if !now.relied_on_by.is_empty() => now.relied_on_by,
            _ => hold.relied_on_by.clone(),
        };
        refuse(
            &mut release,
            "SubnetReliedOn",
            format!(
                "{} found the subnet cut by {bulk_id} and rely on it: release them first; nothing changed",
                if relying.is_empty() { "other runs".to_owned() } else { relying.join(", ") }
            ),
        );
        return Ok(release);
    }
    let restored = restore(ec2, &hold, subnet_id, dry_run, release).await;
    if dry_run {
        return restored;
    }
    match restored {
        Ok(release) if release.restored => {
            holds.free(subnet_id, bulk_id).await?;
            Ok(release)
        }
        // Not released: the hold stays this run's cut, open to reliance again.
        other => {
            holds.end_release(subnet_id, bulk_id).await?;
            other
        }
    }
}

/// Puts the original ACL back while the subnet is still on the cut's
/// deny-all ACL, and reads it back.
async fn restore(
    ec2: &aws_sdk_ec2::Client,
    hold: &Hold,
    subnet_id: &str,
    dry_run: bool,
    mut release: SubnetRelease,
) -> Result<SubnetRelease> {
    let refuse = |release: &mut SubnetRelease, error_type: &str, why: String| {
        release
            .actions
            .push(ActionRecord::failed(RESTORE, subnet_id, error_type, why));
    };
    let original = hold.original_acl_id.as_str();
    let now = association_of(ec2, subnet_id).await?;
    let now_acl = now.acl.network_acl_id().unwrap_or_default();
    if now_acl == original {
        release
            .actions
            .push(ActionRecord::already_done(RESTORE, subnet_id));
    } else if Some(now_acl) != hold.quarantine_acl_id.as_deref() {
        refuse(
            &mut release,
            "ChangedSinceCut",
            format!(
                "{subnet_id} is on {now_acl} now, neither the cut's deny-all ACL ({}) nor the original {original}: someone changed it since the cut; left as it is",
                hold.quarantine_acl_id.as_deref().unwrap_or("never recorded")
            ),
        );
        return Ok(release);
    } else {
        let action = attempt(dry_run, RESTORE, subnet_id, || async {
            ec2.replace_network_acl_association()
                .association_id(&now.association_id)
                .network_acl_id(original)
                .send()
                .await
                .aws("ReplaceNetworkAclAssociation", None)
                .map(|_| ())
        })
        .await
        .0;
        let changed = action.outcome == Outcome::Changed;
        release.actions.push(action);
        if !changed {
            return Ok(release);
        }
    }
    let after = association_of(ec2, subnet_id).await?;
    release.restored = after.acl.network_acl_id() == Some(original);
    release.restored_acl_id = after.acl.network_acl_id().map(str::to_owned);
    Ok(release)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_ec2::types::{NetworkAclEntry, RuleAction};

    fn entry(rule: i32, action: RuleAction, egress: bool) -> NetworkAclEntry {
        NetworkAclEntry::builder()
            .rule_number(rule)
            .rule_action(action)
            .egress(egress)
            .protocol("-1")
            .cidr_block("0.0.0.0/0")
            .build()
    }

    #[test]
    fn an_acl_denies_everything_only_without_any_allow_entry() {
        let deny_only = NetworkAcl::builder()
            .is_default(false)
            .entries(entry(32767, RuleAction::Deny, false))
            .entries(entry(32767, RuleAction::Deny, true))
            .build();
        assert!(denies_everything(&deny_only));
        // An ALLOW anywhere, even behind DENYs, lets something through.
        let allow_late = NetworkAcl::builder()
            .is_default(false)
            .entries(entry(1, RuleAction::Deny, false))
            .entries(entry(200, RuleAction::Allow, true))
            .build();
        assert!(!denies_everything(&allow_late));
        // A VPC's default ACL is never the quarantine, whatever it holds.
        let default = NetworkAcl::builder().is_default(true).build();
        assert!(!denies_everything(&default));
    }
}
