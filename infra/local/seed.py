#!/usr/bin/env python3
"""Seed a realistic victim estate (and the forensic side) into the local emulator.

Usage: seed.py ENDPOINT_URL [--region R] [--name NAME]

Every resource name carries NAME, so several estates can live side by side in
one emulator (each test seeds its own). Prints the ids of what it made as one
JSON object on stdout.
"""

import argparse
import json
import sys

import boto3

from forensic import SSM_AGENT_POLICY, create_forensic_side

ACCOUNT = "123456789012"


def client(service, endpoint, region):
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=region,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("endpoint")
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("--name", default="demo")
    args = parser.parse_args()
    endpoint, region, name = args.endpoint, args.region, args.name

    ec2 = client("ec2", endpoint, region)
    kms = client("kms", endpoint, region)
    iam = client("iam", endpoint, region)
    asg = client("autoscaling", endpoint, region)
    elb = client("elb", endpoint, region)
    elbv2 = client("elbv2", endpoint, region)
    s3 = client("s3", endpoint, region)

    def tags(resource_type, **pairs):
        return [{"ResourceType": resource_type,
                 "Tags": [{"Key": k, "Value": v} for k, v in pairs.items()]}]

    # Network: a VPC with two subnets in two zones, a web and an admin group.
    vpc = ec2.create_vpc(CidrBlock="10.20.0.0/16",
                         TagSpecifications=tags("vpc", Name=f"{name}-workload"))["Vpc"]["VpcId"]
    subnet_a = ec2.create_subnet(VpcId=vpc, CidrBlock="10.20.1.0/24",
                                 AvailabilityZone=f"{region}a")["Subnet"]["SubnetId"]
    subnet_b = ec2.create_subnet(VpcId=vpc, CidrBlock="10.20.2.0/24",
                                 AvailabilityZone=f"{region}b")["Subnet"]["SubnetId"]
    web_sg = ec2.create_security_group(GroupName=f"{name}-web", Description="web tier",
                                       VpcId=vpc)["GroupId"]
    ec2.authorize_security_group_ingress(GroupId=web_sg, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443,
         "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
    admin_sg = ec2.create_security_group(GroupName=f"{name}-admin", Description="admin access",
                                         VpcId=vpc)["GroupId"]
    ec2.authorize_security_group_ingress(GroupId=admin_sg, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22,
         "IpRanges": [{"CidrIp": "10.0.0.0/8"}]}])

    # Credentials the attacker would want: a role in an instance profile.
    role = f"{name}-web-role"
    iam.create_role(RoleName=role, AssumeRolePolicyDocument=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"},
                       "Action": "sts:AssumeRole"}]}))
    profile = iam.create_instance_profile(InstanceProfileName=f"{name}-web-profile")
    iam.add_role_to_instance_profile(InstanceProfileName=f"{name}-web-profile", RoleName=role)
    # The SSM agent talks to SSM with the instance's role; without that the
    # bench's agent is not Online (on AWS: AmazonSSMManagedInstanceCore,
    # which moto's server does not load; the agent's own actions, attached here).
    agent = iam.create_policy(PolicyName=f"{name}-ssm-agent", PolicyDocument=SSM_AGENT_POLICY)
    iam.attach_role_policy(RoleName=role, PolicyArn=agent["Policy"]["Arn"])
    profile_arn = profile["InstanceProfile"]["Arn"]

    workload_key = kms.create_key(Description=f"{name} workload volumes")["KeyMetadata"]["Arn"]
    ec2.create_key_pair(KeyName=f"{name}-ops")
    # A Linux AMI: memory is captured from Linux hosts (moto lists Windows first).
    image = next(i["ImageId"] for i in ec2.describe_images(Owners=["amazon"])["Images"]
                 if i.get("Platform") != "windows")

    # The AWS managed EBS key. (moto creates it on first use of its alias; its
    # DescribeKey says CUSTOMER where AWS says AWS: the alias still tells.)
    aws_ebs_key = kms.describe_key(KeyId="alias/aws/ebs")["KeyMetadata"]["Arn"]

    # The suspect: two ENIs in different groups; a root volume under a customer
    # key, a data volume under the AWS managed key, an unencrypted scratch
    # volume (the three ways a snapshot is shared); a profile.
    victim = ec2.run_instances(
        ImageId=image, InstanceType="t3.medium", MinCount=1, MaxCount=1,
        KeyName=f"{name}-ops",
        IamInstanceProfile={"Arn": profile_arn},
        # A shutdown from inside would destroy the evidence: protection sets "stop".
        InstanceInitiatedShutdownBehavior="terminate",
        NetworkInterfaces=[
            {"DeviceIndex": 0, "SubnetId": subnet_a, "Groups": [web_sg]},
            {"DeviceIndex": 1, "SubnetId": subnet_a, "Groups": [admin_sg]},
        ],
        BlockDeviceMappings=[
            {"DeviceName": "/dev/xvda", "Ebs": {"VolumeSize": 16, "VolumeType": "gp3",
                                                "Encrypted": True, "KmsKeyId": workload_key,
                                                "DeleteOnTermination": True}},
            {"DeviceName": "/dev/sdf", "Ebs": {"VolumeSize": 32, "VolumeType": "gp3",
                                               "Encrypted": True, "KmsKeyId": aws_ebs_key,
                                               "DeleteOnTermination": True}},
            {"DeviceName": "/dev/sdg", "Ebs": {"VolumeSize": 8, "VolumeType": "gp3",
                                               "Encrypted": False,
                                               "DeleteOnTermination": True}},
        ],
        # The test bench's SSM agent runs commands sent to an instance with this tag.
        TagSpecifications=tags("instance", Name=f"{name}-web-1", Environment="staging",
                               Application="storefront",
                               **{"ec2-forensics-bench:ssm-agent": "online"}),
    )["Instances"][0]
    victim_id = victim["InstanceId"]
    enis = sorted(victim["NetworkInterfaces"],
                  key=lambda e: e["Attachment"]["DeviceIndex"])
    eni_ids = [e["NetworkInterfaceId"] for e in enis]

    # The victim serves traffic: an EIP, an ASG, two target groups, a classic ELB.
    eip = ec2.allocate_address(Domain="vpc")
    ec2.associate_address(AllocationId=eip["AllocationId"], NetworkInterfaceId=eni_ids[0])

    template = ec2.create_launch_template(
        LaunchTemplateName=f"{name}-web",
        LaunchTemplateData={"ImageId": image, "InstanceType": "t3.medium"})
    asg_name = f"{name}-web-asg"
    asg.create_auto_scaling_group(
        AutoScalingGroupName=asg_name,
        LaunchTemplate={"LaunchTemplateId": template["LaunchTemplate"]["LaunchTemplateId"]},
        MinSize=1, MaxSize=4, DesiredCapacity=1,
        VPCZoneIdentifier=f"{subnet_a},{subnet_b}")
    asg.attach_instances(AutoScalingGroupName=asg_name, InstanceIds=[victim_id])

    alb = elbv2.create_load_balancer(Name=f"{name}-alb", Subnets=[subnet_a, subnet_b],
                                     SecurityGroups=[web_sg])["LoadBalancers"][0]
    target_groups = []
    for port in (443, 8443):
        tg = elbv2.create_target_group(Name=f"{name}-tg-{port}", Protocol="HTTPS", Port=port,
                                       VpcId=vpc, TargetType="instance")["TargetGroups"][0]
        elbv2.register_targets(TargetGroupArn=tg["TargetGroupArn"],
                               Targets=[{"Id": victim_id, "Port": port}])
        target_groups.append({"arn": tg["TargetGroupArn"], "port": port})
    # An IP-type target group holding the victim by its private IP.
    victim_ip = enis[0]["PrivateIpAddress"]
    ip_tg = elbv2.create_target_group(Name=f"{name}-tg-ip", Protocol="TCP", Port=9000,
                                      VpcId=vpc, TargetType="ip")["TargetGroups"][0]
    elbv2.register_targets(TargetGroupArn=ip_tg["TargetGroupArn"],
                           Targets=[{"Id": victim_ip, "Port": 9000,
                                     "AvailabilityZone": f"{region}a"}])
    elbv2.create_listener(LoadBalancerArn=alb["LoadBalancerArn"], Protocol="HTTP", Port=80,
                          DefaultActions=[{"Type": "forward",
                                           "TargetGroupArn": target_groups[0]["arn"]}])

    classic = f"{name}-classic"
    elb.create_load_balancer(LoadBalancerName=classic, Subnets=[subnet_a],
                             Listeners=[{"Protocol": "TCP", "LoadBalancerPort": 443,
                                         "InstancePort": 443}])
    elb.register_instances_with_load_balancer(LoadBalancerName=classic,
                                              Instances=[{"InstanceId": victim_id}])

    # A bare instance: one ENI, no profile, in no ASG or load balancer.
    # (Instances are launched with an explicit ENI: moto 5.2.5 keeps the
    # launch-time SecurityGroupIds on the primary ENI whatever
    # ModifyNetworkInterfaceAttribute sets, where AWS replaces them.)
    bare = ec2.run_instances(
        ImageId=image, InstanceType="t3.micro", MinCount=1, MaxCount=1,
        NetworkInterfaces=[{"DeviceIndex": 0, "SubnetId": subnet_b, "Groups": [admin_sg]}],
        TagSpecifications=tags("instance", Name=f"{name}-bastion"),
    )["Instances"][0]

    # A peer that shares the victim's instance profile.
    peer = ec2.run_instances(
        ImageId=image, InstanceType="t3.micro", MinCount=1, MaxCount=1,
        NetworkInterfaces=[{"DeviceIndex": 0, "SubnetId": subnet_b, "Groups": [web_sg]}],
        IamInstanceProfile={"Arn": profile_arn},
        TagSpecifications=tags("instance", Name=f"{name}-web-2"),
    )["Instances"][0]

    # An instance in Standby in the victim's Auto Scaling group.
    standby = ec2.run_instances(
        ImageId=image, InstanceType="t3.micro", MinCount=1, MaxCount=1,
        NetworkInterfaces=[{"DeviceIndex": 0, "SubnetId": subnet_a, "Groups": [web_sg]}],
        TagSpecifications=tags("instance", Name=f"{name}-web-standby"),
    )["Instances"][0]
    asg.attach_instances(AutoScalingGroupName=asg_name, InstanceIds=[standby["InstanceId"]])
    asg.enter_standby(AutoScalingGroupName=asg_name, InstanceIds=[standby["InstanceId"]],
                      ShouldDecrementDesiredCapacity=True)

    # A dual-homed instance: a second ENI from another VPC of the same zone.
    shared_vpc = ec2.create_vpc(CidrBlock="10.30.0.0/16",
                                TagSpecifications=tags("vpc", Name=f"{name}-shared"))["Vpc"]["VpcId"]
    shared_subnet = ec2.create_subnet(VpcId=shared_vpc, CidrBlock="10.30.1.0/24",
                                      AvailabilityZone=f"{region}a")["Subnet"]["SubnetId"]
    shared_sg = ec2.create_security_group(GroupName=f"{name}-shared", Description="shared services",
                                          VpcId=shared_vpc)["GroupId"]
    dual = ec2.run_instances(
        ImageId=image, InstanceType="t3.micro", MinCount=1, MaxCount=1,
        NetworkInterfaces=[{"DeviceIndex": 0, "SubnetId": subnet_a, "Groups": [admin_sg]}],
        TagSpecifications=tags("instance", Name=f"{name}-dual-homed"),
    )["Instances"][0]
    second_eni = ec2.create_network_interface(SubnetId=shared_subnet, Groups=[shared_sg])
    second_eni_id = second_eni["NetworkInterface"]["NetworkInterfaceId"]
    ec2.attach_network_interface(NetworkInterfaceId=second_eni_id,
                                 InstanceId=dual["InstanceId"], DeviceIndex=1)

    # The forensic side: keys, the locked bucket, the workstation's VPC and AMI.
    forensic = create_forensic_side(kms, s3, client("sns", endpoint, region), client("sqs", endpoint, region),
                                    client("ssm", endpoint, region), ec2, client("iam", endpoint, region),
                                    name, region)

    json.dump({
        "region": region,
        "account": ACCOUNT,
        "vpcId": vpc,
        "subnetIds": [subnet_a, subnet_b],
        "victim": {
            "instanceId": victim_id,
            "networkInterfaceIds": eni_ids,
            "securityGroupIds": [web_sg, admin_sg],
            "elasticIp": {"allocationId": eip["AllocationId"], "publicIp": eip["PublicIp"]},
            "volumeIds": [b["Ebs"]["VolumeId"] for b in victim["BlockDeviceMappings"]],
            "instanceProfileArn": profile_arn,
            "roleName": role,
            "autoScalingGroup": asg_name,
            "targetGroups": target_groups,
            "ipTargetGroup": {"arn": ip_tg["TargetGroupArn"], "port": 9000, "ip": victim_ip},
            "classicLoadBalancer": classic,
            "kmsKeyArn": workload_key,
            "awsManagedKeyArn": aws_ebs_key,
        },
        "bare": {"instanceId": bare["InstanceId"], "securityGroupIds": [admin_sg]},
        "peer": {"instanceId": peer["InstanceId"]},
        "standby": {"instanceId": standby["InstanceId"]},
        "dualHomed": {"instanceId": dual["InstanceId"], "secondVpcId": shared_vpc,
                      "secondNetworkInterfaceId": second_eni_id},
        "forensic": forensic,
    }, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
