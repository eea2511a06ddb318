//! `readiness --fix allowed-amis` and the checks moto cannot answer, with
//! aws-smithy-mocks (moto has neither EC2's Allowed AMIs setting nor EBS
//! snapshot Block Public Access).

use aws_sdk_ec2::operation::enable_allowed_images_settings::EnableAllowedImagesSettingsOutput;
use aws_sdk_ec2::operation::get_allowed_images_settings::GetAllowedImagesSettingsOutput;
use aws_sdk_ec2::operation::replace_image_criteria_in_allowed_images_settings::ReplaceImageCriteriaInAllowedImagesSettingsOutput;
use aws_sdk_ec2::types::AllowedImagesSettingsEnabledState;
use aws_smithy_mocks::{mock, mock_client, RuleMode};

mod common;
use playbook::aws::{Clients, Config};
use playbook::case::policy::ApprovedImages;
use playbook::steps::readiness::fix_allowed_images;

fn settings(state: &'static str) -> aws_smithy_mocks::Rule {
    mock!(aws_sdk_ec2::Client::get_allowed_images_settings).then_output(move || {
        GetAllowedImagesSettingsOutput::builder()
            .state(state)
            .build()
    })
}

fn approving_owners() -> ApprovedImages {
    ApprovedImages {
        owners: vec!["123456789012".into(), "amazon".into()],
        name_patterns: vec!["golden-*".into()],
        image_ids: vec!["ami-0aaaabbbbccccdddd".into()],
        ..ApprovedImages::default()
    }
}

#[tokio::test]
async fn the_policy_s_criteria_are_set_in_audit_mode_never_enabled() {
    let replace = mock!(aws_sdk_ec2::Client::replace_image_criteria_in_allowed_images_settings)
        .match_requests(|r| {
            let criteria = r.image_criteria();
            criteria.len() == 1
                && criteria[0].image_providers() == ["123456789012", "amazon"]
                && criteria[0].image_names() == ["golden-*"]
        })
        .then_output(|| ReplaceImageCriteriaInAllowedImagesSettingsOutput::builder().build());
    let enable = mock!(aws_sdk_ec2::Client::enable_allowed_images_settings)
        .match_requests(|r| {
            r.allowed_images_settings_state() == Some(&AllowedImagesSettingsEnabledState::AuditMode)
        })
        .then_output(|| {
            EnableAllowedImagesSettingsOutput::builder()
                .allowed_images_settings_state(
                    aws_sdk_ec2::types::AllowedImagesSettingsEnabledState::AuditMode,
                )
                .build()
        });
    let disabled = settings("disabled");
    let clients = Clients {
        ec2: mock_client!(
            aws_sdk_ec2,
            RuleMode::MatchAny,
            &[&disabled, &replace, &enable]
        ),
        ..common::quiet_clients()
    };
    let mut responder = common::responder(clients, "tests", Config::default());
    responder.policy.approved_images = approving_owners();
    let fixed = fix_allowed_images(&responder).await.expect("fixed");
    assert_eq!(fixed.state_before, "disabled");
    assert_eq!(fixed.state, "audit-mode");
    assert_eq!(fixed.plan.not_expressible.len(), 1, "{:?}", fixed.plan);
    assert!(fixed.plan.not_expressible[0].contains("ami-0aaaabbbbccccdddd"));
    assert_eq!(replace.num_calls(), 1);
    assert_eq!(enable.num_calls(), 1);
}

/// An enabled setting refuses launches: new criteria there are not tried
/// in audit mode first, so the fix refuses and changes nothing.
#[tokio::test]
async fn an_enabled_setting_is_left_alone() {
    let replace = mock!(aws_sdk_ec2::Client::replace_image_criteria_in_allowed_images_settings)
        .then_output(|| ReplaceImageCriteriaInAllowedImagesSettingsOutput::builder().build());
    let enabled = settings("enabled");
    let clients = Clients {
        ec2: mock_client!(aws_sdk_ec2, RuleMode::MatchAny, &[&enabled, &replace]),
        ..common::quiet_clients()
    };
    let mut responder = common::responder(clients, "tests", Config::default());
    responder.policy.approved_images = approving_owners();
    let err = fix_allowed_images(&responder).await.unwrap_err();
    assert_eq!(err.error_type(), "InvalidRequest");
    assert!(err.to_string().contains("already enabled"), "{err}");
    assert_eq!(replace.num_calls(), 0);
}

/// A policy that approves no owner would make Allowed AMIs refuse every
/// launch: refused before any call.
#[tokio::test]
async fn a_policy_without_owners_is_refused_before_any_call() {
    let disabled = settings("disabled");
    let clients = Clients {
        ec2: mock_client!(aws_sdk_ec2, RuleMode::MatchAny, &[&disabled]),
        ..common::quiet_clients()
    };
    let mut responder = common::responder(clients, "tests", Config::default());
    responder.policy.approved_images = ApprovedImages {
        image_ids: vec!["ami-0aaaabbbbccccdddd".into()],
        ..ApprovedImages::default()
    };
    let err = fix_allowed_images(&responder).await.unwrap_err();
    assert_eq!(err.error_type(), "InvalidPolicy");
    assert_eq!(disabled.num_calls(), 0);
}
