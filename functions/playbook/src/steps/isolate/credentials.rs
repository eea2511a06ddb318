//! The instance's role credentials: the profile association, and the deny
//! policy that ends the instance's own role sessions issued before isolation.
//!
//! Credentials an instance receives from its profile carry the instance's ARN
//! (`ec2:SourceInstanceARN`) wherever they are used, and their issue time
//! (`aws:TokenIssueTime`). A Deny conditioned on both cuts exactly the
//! sessions the suspect may have stolen; other instances and people using the
//! same role keep working. One policy per instance, so a second revocation of
//! the same instance replaces the first instead of growing the role's inline
//! policies towards their size limit.

use aws_sdk_ec2::types::{Filter, IamInstanceProfileAssociation};
use serde_json::json;

use crate::case::isolation::{InstanceProfileRecord, SessionRevocation};
use crate::error::{AwsCall, Result};

/// The inline policies of one role may hold this many characters in all (IAM quota).
pub const ROLE_INLINE_POLICY_LIMIT: usize = 10_240;

/// The live (associated) profile associations of the instances.
pub async fn live_associations(
    ec2: &aws_sdk_ec2::Client,
    instance_ids: &[String],
) -> Result<Vec<IamInstanceProfileAssociation>> {
    let out = ec2
        .describe_iam_instance_profile_associations()
        .filters(
            Filter::builder()
                .name("instance-id")
                .set_values(Some(instance_ids.to_vec()))
                .build(),
        )
        .send()
        .await
        .aws(
            "DescribeIamInstanceProfileAssociations",
            instance_ids.first().map(String::as_str),
        )?;
    Ok(out
        .iam_instance_profile_associations()
        .iter()
        .filter(|a| a.state().is_none_or(|s| s.as_str() == "associated"))
        .cloned()
        .collect())
}

/// The instance's live profile association and the role inside the profile.
pub async fn describe_profile(
    ec2: &aws_sdk_ec2::Client,
    iam: &aws_sdk_iam::Client,
    instance_id: &str,
) -> Result<Option<InstanceProfileRecord>> {
    let associations = live_associations(ec2, &[instance_id.to_owned()]).await?;
    let Some(ours) = associations
        .iter()
        .find(|a| a.instance_id() == Some(instance_id))
    else {
        return Ok(None);
    };
    let arn = ours
        .iam_instance_profile()
        .and_then(|p| p.arn())
        .unwrap_or_default()
        .to_owned();
    let profile_name = arn.rsplit('/').next().unwrap_or_default();
    let role_name = iam
        .get_instance_profile()
        .instance_profile_name(profile_name)
        .send()
        .await
        .aws("GetInstanceProfile", Some(instance_id))?
        .instance_profile()
        .and_then(|p| p.roles().first())
        .map(|r| r.role_name().to_owned());
    Ok(Some(InstanceProfileRecord {
        association_id: ours.association_id().unwrap_or_default().to_owned(),
        arn,
        role_name,
    }))
}

/// The ARN of an instance, in the partition of its region.
pub fn instance_arn(region: &str, account: &str, instance_id: &str) -> String {
    let partition = if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else {
        "aws"
    };
    format!("arn:{partition}:ec2:{region}:{account}:instance/{instance_id}")
}

/// The revocation for one instance's role sessions.
pub fn revocation(
    role_name: &str,
    instance_id: &str,
    instance_arn: String,
    now: String,
) -> SessionRevocation {
    SessionRevocation {
        role_name: role_name.to_owned(),
        policy_name: format!("ec2-forensics-revoke-{instance_id}"),
        instance_arn,
        issued_before: now,
    }
}

/// The IAM policy that denies everything to the instance's own sessions
/// issued before the revocation time. Compact JSON: inline policy size counts.
pub fn revocation_policy(revocation: &SessionRevocation) -> String {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "Ec2ForensicsRevokeInstanceSessions",
            "Effect": "Deny",
            "Action": "*",
            "Resource": "*",
            "Condition": {
                "ArnEquals": { "ec2:SourceInstanceARN": revocation.instance_arn },
                "DateLessThan": { "aws:TokenIssueTime": revocation.issued_before }
            }
        }]
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_revocation_names_the_instance_and_the_time() {
        let arn = instance_arn("us-east-1", "123456789012", "i-0abc");
        assert_eq!(arn, "arn:aws:ec2:us-east-1:123456789012:instance/i-0abc");
        let r = revocation(
            "web-role",
            "i-0abc",
            arn.clone(),
            "2026-11-28T10:00:00Z".into(),
        );
        assert_eq!(r.policy_name, "ec2-forensics-revoke-i-0abc");
        let policy: serde_json::Value = serde_json::from_str(&revocation_policy(&r)).unwrap();
        let statement = &policy["Statement"][0];
        assert_eq!(statement["Effect"], "Deny");
        assert_eq!(
            statement["Condition"]["ArnEquals"]["ec2:SourceInstanceARN"],
            arn
        );
        assert_eq!(
            statement["Condition"]["DateLessThan"]["aws:TokenIssueTime"],
            "2026-11-28T10:00:00Z"
        );
        assert!(revocation_policy(&r).len() < ROLE_INLINE_POLICY_LIMIT / 20);
    }

    #[test]
    fn partitions_follow_the_region() {
        assert!(instance_arn("cn-north-1", "1", "i-1").starts_with("arn:aws-cn:"));
        assert!(instance_arn("us-gov-west-1", "1", "i-1").starts_with("arn:aws-us-gov:"));
    }
}
