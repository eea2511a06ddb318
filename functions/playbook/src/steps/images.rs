//! Only approved AMIs (the playbook's backlog): which running instances were
//! launched from an image the policy's `approvedImages` does not approve.
//!
//! An image is approved when the policy lists its id (`imageIds`, or the SSM
//! parameter `parameter`), or when its owner is approved (`owners`: account
//! ids, or an alias EC2 gives, such as `amazon`) and it meets the owner's
//! other criteria (`namePatterns`, `tag`), as EC2's own Allowed AMIs
//! criteria do. A name or a tag alone never approves: anyone can name an
//! image `golden-*` and share it. A tag is as this account sees it (tags are
//! visible only to the account that added them), so it is only as strong
//! as `ec2:CreateTags` on images here. An image EC2 does not show this
//! account (deregistered, or private to another account), or one that is
//! not `available`, is unapproved unless its id is listed: nothing shows it
//! approved.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::aws::clients::Clients;
use crate::case::policy::{glob_match, ApprovedImages};
use crate::error::{PlaybookError, Result};

/// What EC2 says about an image, as far as the check needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageFacts {
    /// The image id.
    pub image_id: String,
    /// EC2 showed the image to this account.
    pub found: bool,
    /// The owner's account id.
    pub owner_id: Option<String>,
    /// The owner's alias (`amazon`, `aws-marketplace`), which only AWS sets.
    pub owner_alias: Option<String>,
    /// The image name.
    pub name: Option<String>,
    /// The image's tags as this account sees them: tags are visible only
    /// to the account that added them.
    pub tags: BTreeMap<String, String>,
    /// The image's state (`available`, `disabled`, `deregistered`, ...).
    pub state: Option<String>,
}

/// Whether an image is approved, and why, in words.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Verdict {
    /// The policy approves the image.
    pub approved: bool,
    /// Why (or why not).
    pub why: String,
}

impl ApprovedImages {
    /// Whether the policy names any approved image at all (the check is off otherwise).
    pub fn is_set(&self) -> bool {
        !self.image_ids.is_empty() || self.parameter.is_some() || !self.owners.is_empty()
    }
}

/// Judges one image against the policy; `listed` holds the ids of `imageIds`
/// and of the SSM parameter.
pub fn judge(rules: &ApprovedImages, listed: &BTreeSet<String>, image: &ImageFacts) -> Verdict {
    let verdict = |approved: bool, why: String| Verdict { approved, why };
    if listed.contains(&image.image_id) {
        return verdict(true, format!("{} is listed as approved", image.image_id));
    }
    if !image.found {
        return verdict(
            false,
            format!(
                "EC2 shows {} to no one here (deregistered, or private to another account): nothing shows it approved",
                image.image_id
            ),
        );
    }
    let state = image.state.as_deref().unwrap_or("of unknown state");
    if state != "available" {
        return verdict(
            false,
            format!(
                "{} is {state}: only a listed id approves an image that is not available",
                image.image_id
            ),
        );
    }
    let owner = image
        .owner_alias
        .as_deref()
        .or(image.owner_id.as_deref())
        .unwrap_or("unknown");
    let owner_approved = rules.owners.iter().any(|o| {
        Some(o.as_str()) == image.owner_id.as_deref()
            || Some(o.as_str()) == image.owner_alias.as_deref()
    });
    if !owner_approved {
        return verdict(false, format!("its owner {owner} is not approved"));
    }
    let name = image.name.as_deref().unwrap_or_default();
    if !rules.name_patterns.is_empty() && !rules.name_patterns.iter().any(|p| glob_match(p, name)) {
        return verdict(
            false,
            format!("owner {owner} is approved, but its name {name:?} matches no approved pattern"),
        );
    }
    if let Some(rule) = &rules.tag {
        if rule.matches(&image.tags).is_none() {
            return verdict(
                false,
                format!(
                    "owner {owner} is approved, but the image lacks the tag {}",
                    rule.key
                ),
            );
        }
    }
    verdict(
        true,
        format!("owner {owner} is approved and the image meets its criteria"),
    )
}

/// One running instance on an unapproved image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UnapprovedInstance {
    /// The instance.
    pub instance_id: String,
    /// Its state: a stopped instance can be started at any time.
    pub state: String,
    /// Its image.
    pub image_id: String,
    /// Why the image is not approved.
    pub why: String,
}

/// What `check-amis` found in a Region.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AmiReport {
    /// The Region checked.
    pub region: String,
    /// Instances checked (pending, running, stopping, stopped).
    pub instances: usize,
    /// Distinct images they were launched from.
    pub images: usize,
    /// The instances on approved images.
    pub approved: usize,
    /// The instances on unapproved images.
    pub unapproved: Vec<UnapprovedInstance>,
}

/// DescribeImages takes this many ids a request here.
const IMAGES_PER_REQUEST: usize = 100;

/// Every instance of the Region that runs or can be started again
/// (pending, running, stopping, stopped), judged by its image.
pub async fn check_running_instances(
    clients: &Clients,
    region: &str,
    rules: &ApprovedImages,
) -> Result<AmiReport> {
    if !rules.is_set() {
        return Err(PlaybookError::InvalidPolicy(
            "the policy's approvedImages names no image, parameter or owner: nothing to check against".into(),
        ));
    }
    let listed = listed_ids(clients, rules).await?;
    let mut instances: Vec<(String, String, String)> = Vec::new();
    for instance in not_terminated(clients).await? {
        if let (Some(id), Some(image)) = (instance.instance_id(), instance.image_id()) {
            let state = instance
                .state()
                .and_then(|s| s.name())
                .map(|n| n.as_str().to_owned())
                .unwrap_or_default();
            instances.push((id.to_owned(), image.to_owned(), state));
        }
    }
    let ids: BTreeSet<String> = instances
        .iter()
        .map(|(_, image, _)| image.clone())
        .collect();
    let facts = image_facts(clients, &ids).await?;
    let mut report = AmiReport {
        region: region.to_owned(),
        instances: instances.len(),
        images: ids.len(),
        approved: 0,
        unapproved: Vec::new(),
    };
    for (instance_id, image_id, state) in instances {
        let verdict = judge(rules, &listed, &facts[&image_id]);
        if verdict.approved {
            report.approved += 1;
        } else {
            report.unapproved.push(UnapprovedInstance {
                instance_id,
                state,
                image_id,
                why: verdict.why,
            });
        }
    }
    Ok(report)
}

/// Every instance of the Region that runs or can be started again
/// (pending, running, stopping, stopped).
pub async fn not_terminated(clients: &Clients) -> Result<Vec<aws_sdk_ec2::types::Instance>> {
    let mut out = Vec::new();
    let mut pages = clients
        .ec2
        .describe_instances()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("instance-state-name")
                .values("pending")
                .values("running")
                .values("stopping")
                .values("stopped")
                .build(),
        )
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| PlaybookError::from_sdk("DescribeInstances", None, &e))?;
        out.extend(
            page.reservations()
                .iter()
                .flat_map(|r| r.instances())
                .cloned(),
        );
    }
    Ok(out)
}

/// The value of the SSM parameter `name` (empty when it has none).
pub async fn parameter_value(clients: &Clients, name: &str) -> Result<String> {
    let answer = clients
        .ssm
        .get_parameter()
        .name(name)
        .send()
        .await
        .map_err(|e| PlaybookError::from_sdk("GetParameter", None, &e))?;
    Ok(answer
        .parameter()
        .and_then(|p| p.value())
        .unwrap_or_default()
        .to_owned())
}

/// The ids `imageIds` and the SSM parameter (a comma-separated list) approve.
pub async fn listed_ids(clients: &Clients, rules: &ApprovedImages) -> Result<BTreeSet<String>> {
    let mut listed: BTreeSet<String> = rules.image_ids.iter().cloned().collect();
    if let Some(name) = &rules.parameter {
        let value = parameter_value(clients, name).await?;
        listed.extend(
            value
                .split(',')
                .map(str::trim)
                .filter(|id| id.starts_with("ami-"))
                .map(str::to_owned),
        );
    }
    Ok(listed)
}

/// What EC2 shows this account of each image (deprecated ones included);
/// an image it does not show is `found: false`.
pub async fn image_facts(
    clients: &Clients,
    ids: &BTreeSet<String>,
) -> Result<BTreeMap<String, ImageFacts>> {
    let mut facts: BTreeMap<String, ImageFacts> = ids
        .iter()
        .map(|id| {
            (
                id.clone(),
                ImageFacts {
                    image_id: id.clone(),
                    ..ImageFacts::default()
                },
            )
        })
        .collect();
    let ids: Vec<&String> = ids.iter().collect();
    for chunk in ids.chunks(IMAGES_PER_REQUEST) {
        let mut call = clients.ec2.describe_images().include_deprecated(true);
        for id in chunk {
            call = call.image_ids(*id);
        }
        let answer = match call.send().await {
            Ok(answer) => answer,
            // One id EC2 does not know fails the whole request: ask one by one.
            Err(e)
                if PlaybookError::from_sdk("DescribeImages", None, &e)
                    .aws_code()
                    .is_some_and(|c| c.starts_with("InvalidAMIID")) =>
            {
                let mut images = Vec::new();
                for id in chunk {
                    match clients
                        .ec2
                        .describe_images()
                        .include_deprecated(true)
                        .image_ids(*id)
                        .send()
                        .await
                    {
                        Ok(one) => images.extend(one.images().iter().cloned()),
                        Err(e) => {
                            let err = PlaybookError::from_sdk("DescribeImages", None, &e);
                            if !err
                                .aws_code()
                                .is_some_and(|c| c.starts_with("InvalidAMIID"))
                            {
                                return Err(err);
                            }
                        }
                    }
                }
                aws_sdk_ec2::operation::describe_images::DescribeImagesOutput::builder()
                    .set_images(Some(images))
                    .build()
            }
            Err(e) => return Err(PlaybookError::from_sdk("DescribeImages", None, &e)),
        };
        for image in answer.images() {
            let Some(id) = image.image_id() else { continue };
            if let Some(fact) = facts.get_mut(id) {
                fact.found = true;
                fact.owner_id = image.owner_id().map(str::to_owned);
                fact.owner_alias = image.image_owner_alias().map(str::to_owned);
                fact.name = image.name().map(str::to_owned);
                fact.state = image.state().map(|s| s.as_str().to_owned());
                fact.tags = crate::steps::capture_metadata::tag_map(image.tags());
            }
        }
    }
    Ok(facts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::case::policy::TagRule;

    fn image(owner: &str, alias: Option<&str>, name: &str, tags: &[(&str, &str)]) -> ImageFacts {
        ImageFacts {
            image_id: "ami-0123456789abcdef0".into(),
            found: true,
            owner_id: Some(owner.into()),
            owner_alias: alias.map(str::to_owned),
            name: Some(name.into()),
            tags: tags
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            state: Some("available".into()),
        }
    }

    fn ours() -> ApprovedImages {
        ApprovedImages {
            owners: vec!["111111111111".into(), "amazon".into()],
            name_patterns: vec!["golden-*".into(), "al2023-ami-*".into()],
            ..ApprovedImages::default()
        }
    }

    #[test]
    fn a_name_alone_never_approves_an_image() {
        let stranger = image("999999999999", None, "golden-web", &[]);
        let verdict = judge(&ours(), &BTreeSet::new(), &stranger);
        assert!(!verdict.approved, "{verdict:?}");
        assert!(
            verdict.why.contains("999999999999 is not approved"),
            "{}",
            verdict.why
        );
    }

    #[test]
    fn an_approved_owner_must_meet_its_name_patterns_and_tag() {
        let rules = ours();
        let none = BTreeSet::new();
        assert!(
            judge(
                &rules,
                &none,
                &image("111111111111", None, "golden-web", &[])
            )
            .approved
        );
        assert!(
            judge(
                &rules,
                &none,
                &image("137112412989", Some("amazon"), "al2023-ami-2023.6", &[])
            )
            .approved
        );
        assert!(!judge(&rules, &none, &image("111111111111", None, "miner", &[])).approved);
        let tagged = ApprovedImages {
            tag: Some(TagRule {
                key: "approved".into(),
                values: vec!["true".into()],
            }),
            ..ours()
        };
        assert!(
            judge(
                &tagged,
                &none,
                &image("111111111111", None, "golden-web", &[("approved", "true")])
            )
            .approved
        );
        let untagged = judge(
            &tagged,
            &none,
            &image("111111111111", None, "golden-web", &[]),
        );
        assert!(
            !untagged.approved && untagged.why.contains("lacks the tag approved"),
            "{untagged:?}"
        );
    }

    #[test]
    fn only_a_listed_id_approves_an_image_ec2_does_not_show() {
        let gone = ImageFacts {
            image_id: "ami-0123456789abcdef0".into(),
            ..ImageFacts::default()
        };
        let verdict = judge(&ours(), &BTreeSet::new(), &gone);
        assert!(
            !verdict.approved && verdict.why.contains("nothing shows it approved"),
            "{verdict:?}"
        );
        let listed = BTreeSet::from(["ami-0123456789abcdef0".to_owned()]);
        assert!(judge(&ours(), &listed, &gone).approved);
    }

    #[test]
    fn an_image_that_is_not_available_is_approved_only_when_listed() {
        let mut recalled = image("111111111111", None, "golden-web", &[]);
        recalled.state = Some("disabled".into());
        let verdict = judge(&ours(), &BTreeSet::new(), &recalled);
        assert!(
            !verdict.approved && verdict.why.contains("is disabled"),
            "{verdict:?}"
        );
        let listed = BTreeSet::from([recalled.image_id.clone()]);
        assert!(judge(&ours(), &listed, &recalled).approved);
    }

    #[test]
    fn a_policy_that_names_nothing_checks_nothing() {
        assert!(!ApprovedImages::default().is_set());
        assert!(ours().is_set());
        let by_parameter = ApprovedImages {
            parameter: Some("/approved".into()),
            ..ApprovedImages::default()
        };
        assert!(by_parameter.is_set());
    }
}
