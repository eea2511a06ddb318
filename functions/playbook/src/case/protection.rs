//! What protect-instance records: the configuration before protection, and every change.

use serde::{Deserialize, Serialize};

use super::actions::ActionRecord;
use super::PerInstance;

/// A volume's DeleteOnTermination setting before protection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceSetting {
    /// Device name on the instance.
    pub device_name: String,
    /// Volume id.
    pub volume_id: String,
    /// The setting before protection.
    pub delete_on_termination: bool,
}

/// The instance's Auto Scaling group before protection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AsgMembership {
    /// Group name.
    pub name: String,
    /// The instance's lifecycle state in the group (InService, Standby, Pending:Wait...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifecycle_state: Option<String>,
    /// Whether the instance was protected from scale-in before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protected_from_scale_in: Option<bool>,
    /// Minimum size before detaching.
    pub min_size: Option<i32>,
    /// Maximum size before detaching.
    pub max_size: Option<i32>,
    /// Desired capacity before detaching.
    pub desired_capacity: Option<i32>,
    /// Whether the detach decremented the desired capacity (no replacement launched).
    pub decremented: bool,
}

impl AsgMembership {
    /// Whether Auto Scaling lets the instance be detached in its lifecycle
    /// state: only `InService` and `Standby` instances can be.
    pub fn detachable(&self) -> bool {
        matches!(
            self.lifecycle_state.as_deref(),
            None | Some("InService" | "Standby")
        )
    }
}

/// What the Auto Scaling group can still do to the instance after protection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AutoScalingExposure {
    /// The group.
    pub group: String,
    /// Whether the group can still replace, and so terminate, the instance
    /// (isolation makes its health checks fail; Auto Scaling ignores
    /// termination protection).
    pub can_terminate_instance: bool,
    /// Why, in words.
    pub reason: String,
}

/// A target-group registration before it was deregistered: by instance id,
/// or by one of the instance's private IPs in an IP-type group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetRegistration {
    /// Target group ARN.
    pub target_group_arn: String,
    /// The target id: the instance id, or a private IP address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_id: Option<String>,
    /// The port it was registered on.
    pub port: Option<i32>,
    /// The availability zone given at registration (IP targets outside the VPC say `all`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub availability_zone: Option<String>,
}

/// Everything protect-instance changes, as it was before.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct OriginalConfiguration {
    /// `DisableApiTermination` before protection.
    pub termination_protection: Option<bool>,
    /// `InstanceInitiatedShutdownBehavior` before protection.
    pub shutdown_behavior: Option<String>,
    /// DeleteOnTermination of every EBS volume.
    pub delete_on_termination: Vec<DeviceSetting>,
    /// The Auto Scaling group, if the instance was in one.
    pub auto_scaling_group: Option<AsgMembership>,
    /// ELBv2 target-group registrations (instance and IP targets).
    pub target_groups: Vec<TargetRegistration>,
    /// Classic load balancers the instance was registered with.
    pub load_balancers: Vec<String>,
}

impl OriginalConfiguration {
    /// Keeps what an earlier run recorded: after a first run changed things, a
    /// second run sees the protected state, which is not the original.
    pub fn keep_earlier(self, earlier: &OriginalConfiguration) -> OriginalConfiguration {
        let mut devices = earlier.delete_on_termination.clone();
        for device in self.delete_on_termination {
            if !devices.iter().any(|d| d.volume_id == device.volume_id) {
                devices.push(device);
            }
        }
        OriginalConfiguration {
            termination_protection: earlier
                .termination_protection
                .or(self.termination_protection),
            shutdown_behavior: earlier.shutdown_behavior.clone().or(self.shutdown_behavior),
            delete_on_termination: devices,
            auto_scaling_group: earlier
                .auto_scaling_group
                .clone()
                .or(self.auto_scaling_group),
            target_groups: union(&earlier.target_groups, self.target_groups),
            load_balancers: union(&earlier.load_balancers, self.load_balancers),
        }
    }
}

fn union<T: Clone + PartialEq>(first: &[T], then: Vec<T>) -> Vec<T> {
    let mut all = first.to_vec();
    for item in then {
        if !all.contains(&item) {
            all.push(item);
        }
    }
    all
}

/// What protect-instance did to one instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceProtection {
    /// Instance id.
    pub instance_id: String,
    /// The instance's VPC (isolation needs it; saves a lookup).
    pub vpc_id: Option<String>,
    /// The configuration before protection.
    pub original: OriginalConfiguration,
    /// What its Auto Scaling group can still do to it, when it is in one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_scaling: Option<AutoScalingExposure>,
    /// Every change made, already so, would be made (dry run) or failed.
    pub actions: Vec<ActionRecord>,
    /// What a responder should know (a terminated instance...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// Every change is made or was already so.
    pub complete: bool,
    /// UTC time.
    pub protected_at: String,
}

impl PerInstance for InstanceProtection {
    fn instance_id(&self) -> &str {
        &self.instance_id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_run_keeps_the_first_runs_originals() {
        let first = OriginalConfiguration {
            termination_protection: Some(false),
            shutdown_behavior: Some("terminate".into()),
            delete_on_termination: vec![DeviceSetting {
                device_name: "/dev/xvda".into(),
                volume_id: "vol-1".into(),
                delete_on_termination: true,
            }],
            auto_scaling_group: Some(AsgMembership {
                name: "web".into(),
                lifecycle_state: Some("InService".into()),
                protected_from_scale_in: Some(false),
                min_size: Some(1),
                max_size: Some(3),
                desired_capacity: Some(2),
                decremented: false,
            }),
            target_groups: vec![TargetRegistration {
                target_group_arn: "tg".into(),
                target_id: Some("10.0.0.5".into()),
                port: Some(80),
                availability_zone: Some("us-east-1a".into()),
            }],
            load_balancers: vec!["classic".into()],
        };
        let seen_later = OriginalConfiguration {
            termination_protection: Some(true),
            shutdown_behavior: Some("stop".into()),
            delete_on_termination: vec![DeviceSetting {
                device_name: "/dev/xvda".into(),
                volume_id: "vol-1".into(),
                delete_on_termination: false,
            }],
            auto_scaling_group: None,
            target_groups: Vec::new(),
            load_balancers: Vec::new(),
        };
        assert_eq!(seen_later.keep_earlier(&first), first);
    }

    #[test]
    fn only_in_service_and_standby_instances_can_be_detached() {
        let mut asg = AsgMembership {
            name: "web".into(),
            lifecycle_state: Some("Standby".into()),
            protected_from_scale_in: None,
            min_size: None,
            max_size: None,
            desired_capacity: None,
            decremented: false,
        };
        assert!(asg.detachable());
        asg.lifecycle_state = Some("Pending:Wait".into());
        assert!(!asg.detachable());
        asg.lifecycle_state = Some("Terminating:Wait".into());
        assert!(!asg.detachable());
    }
}
