//! Every GuardDuty finding type that can name an EC2 instance, as GuardDuty's
//! user guide describes it, and what it says of the instance: compromised,
//! exposed (the passive target of outside activity) or a weakness. Each
//! entry's comment is the guide's one-line summary of the type.
//! Sources: the user guide's EC2, Runtime Monitoring, Malware Protection for EC2
//! and for Backup, attack sequence, retired-types and Security Hub pages, read
//! 2026-11-30 from stored copies of the guide.

use super::classify::{GuardDutyFamily, GuardDutyType, RoleMatch::*};
use crate::case::Indication::*;

/// Every GuardDuty type that can name an instance, per resource role.
pub const GUARDDUTY_TYPES: &[GuardDutyType] = &[
    // EC2 finding types
    // "An EC2 instance is querying an IP that is associated with a known command and control
    // server."
    GuardDutyType::new("Backdoor:EC2/C&CActivity.B", AnyRole, Compromised),
    // "An EC2 instance is querying a domain name that is associated with a known command and
    // control server." — GuardDuty names the querying instance TARGET here.
    GuardDutyType::new("Backdoor:EC2/C&CActivity.B!DNS", AnyRole, Compromised),
    // "An EC2 instance is behaving in a manner that may indicate it is being used to perform a
    // Denial of Service (DoS) attack using the DNS protocol."
    GuardDutyType::new("Backdoor:EC2/DenialOfService.Dns", AnyRole, Compromised),
    // "An EC2 instance is behaving in a manner indicating it is being used to perform a Denial of
    // Service (DoS) attack using the TCP protocol."
    GuardDutyType::new("Backdoor:EC2/DenialOfService.Tcp", AnyRole, Compromised),
    // "An EC2 instance is behaving in a manner indicating it is being used to perform a Denial of
    // Service (DoS) attack using the UDP protocol."
    GuardDutyType::new("Backdoor:EC2/DenialOfService.Udp", AnyRole, Compromised),
    // "An EC2 instance is behaving in a manner that may indicate it is being used to perform a
    // Denial of Service (DoS) attack using the UDP protocol on a TCP port."
    GuardDutyType::new(
        "Backdoor:EC2/DenialOfService.UdpOnTcpPorts",
        AnyRole,
        Compromised,
    ),
    // "An EC2 instance is behaving in a manner that may indicate it is being used to perform a
    // Denial of Service (DoS) attack using an unusual protocol."
    GuardDutyType::new(
        "Backdoor:EC2/DenialOfService.UnusualProtocol",
        AnyRole,
        Compromised,
    ),
    // "An EC2 instance is exhibiting unusual behavior by communicating with a remote host on port
    // 25."
    GuardDutyType::new("Backdoor:EC2/Spambot", AnyRole, Compromised),
    // "An EC2 instance is communicating with a remote host on an unusual server port." — the
    // instance's own traffic, off its baseline.
    GuardDutyType::new("Behavior:EC2/NetworkPortUnusual", AnyRole, Compromised),
    // "An EC2 instance is generating unusually large amounts of network traffic to a remote host."
    // — the instance's own traffic, off its baseline.
    GuardDutyType::new("Behavior:EC2/TrafficVolumeUnusual", AnyRole, Compromised),
    // "An EC2 instance is querying an IP address that is associated with cryptocurrency-related
    // activity."
    GuardDutyType::new("CryptoCurrency:EC2/BitcoinTool.B", AnyRole, Compromised),
    // "An EC2 instance is querying a domain name that is associated with cryptocurrency-related
    // activity." — GuardDuty names the querying instance TARGET here.
    GuardDutyType::new("CryptoCurrency:EC2/BitcoinTool.B!DNS", AnyRole, Compromised),
    // "An Amazon EC2 instance is communicating with an unusual public DNS resolver."
    GuardDutyType::new(
        "DefenseEvasion:EC2/UnusualDNSResolver",
        AnyRole,
        Compromised,
    ),
    // "An Amazon EC2 instance is performing an unusual DNS over HTTPS (DoH) communication."
    GuardDutyType::new(
        "DefenseEvasion:EC2/UnusualDoHActivity",
        AnyRole,
        Compromised,
    ),
    // "An Amazon EC2 instance is performing an unusual DNS over TLS (DoT) communication."
    GuardDutyType::new(
        "DefenseEvasion:EC2/UnusualDoTActivity",
        AnyRole,
        Compromised,
    ),
    // "An EC2 instance is querying a low reputation domain name that is associated with known
    // abused domains." — a DNS finding: the instance made the query, whatever the role.
    GuardDutyType::new(
        "Impact:EC2/AbusedDomainRequest.Reputation",
        AnyRole,
        Compromised,
    ),
    // "An EC2 instance is querying a low reputation domain name that is associated with
    // cryptocurrency-related activity." — a DNS finding: the instance made the query, whatever the
    // role.
    GuardDutyType::new(
        "Impact:EC2/BitcoinDomainRequest.Reputation",
        AnyRole,
        Compromised,
    ),
    // "An EC2 instance is querying a domain on a custom threat entity list." — a DNS finding: the
    // instance made the query, whatever the role.
    GuardDutyType::new(
        "Impact:EC2/MaliciousDomainRequest.Custom",
        AnyRole,
        Compromised,
    ),
    // "An EC2 instance is querying a low reputation domain that is associated with known malicious
    // domains." — a DNS finding: the instance made the query, whatever the role.
    GuardDutyType::new(
        "Impact:EC2/MaliciousDomainRequest.Reputation",
        AnyRole,
        Compromised,
    ),
    // "An EC2 instance is probing a port on a large number of IP addresses." — outbound: the
    // instance is the one probing.
    GuardDutyType::new("Impact:EC2/PortSweep", AnyRole, Compromised),
    // "An EC2 instance is querying a low reputation domain name that is suspicious in nature due
    // to its age, or low popularity." — a DNS finding: the instance made the query, whatever the
    // role.
    GuardDutyType::new(
        "Impact:EC2/SuspiciousDomainRequest.Reputation",
        AnyRole,
        Compromised,
    ),
    // "An EC2 instance is performing an outbound Windows Remote Management brute force attack." —
    // the guide rates it low as TARGET (the instance is attacked) and high as ACTOR (it attacks).
    GuardDutyType::new("Impact:EC2/WinRMBruteForce", Actor, Compromised),
    GuardDutyType::new("Impact:EC2/WinRMBruteForce", Target, Exposed),
    // "An EC2 instance has an unprotected EMR related port which is being probed by a known
    // malicious host." — the instance is only probed; the open port is the exposure.
    GuardDutyType::new("Recon:EC2/PortProbeEMRUnprotectedPort", AnyRole, Exposed),
    // "An EC2 instance has an unprotected port that is being probed by a known malicious host." —
    // the instance is only probed; the open port is the exposure.
    GuardDutyType::new("Recon:EC2/PortProbeUnprotectedPort", AnyRole, Exposed),
    // "An EC2 instance is performing outbound port scans to a remote host."
    GuardDutyType::new("Recon:EC2/Portscan", AnyRole, Compromised),
    // "An EC2 instance is attempting to communicate with an IP address of a remote host that is a
    // known black hole."
    GuardDutyType::new("Trojan:EC2/BlackholeTraffic", AnyRole, Compromised),
    // "An EC2 instance is querying a domain name that is being redirected to a black hole IP
    // address." — GuardDuty names the querying instance TARGET here.
    GuardDutyType::new("Trojan:EC2/BlackholeTraffic!DNS", AnyRole, Compromised),
    // "An EC2 instance is querying algorithmically generated domains. Such domains are commonly
    // used by malware and could be an indication of a compromised EC2 instance."
    GuardDutyType::new("Trojan:EC2/DGADomainRequest.B", AnyRole, Compromised),
    // "An EC2 instance is querying algorithmically generated domains. Such domains are commonly
    // used by malware and could be an indication of a compromised EC2 instance." — GuardDuty names
    // the querying instance TARGET here.
    GuardDutyType::new("Trojan:EC2/DGADomainRequest.C!DNS", AnyRole, Compromised),
    // "An EC2 instance is exfiltrating data through DNS queries."
    GuardDutyType::new("Trojan:EC2/DNSDataExfiltration", AnyRole, Compromised),
    // "An EC2 instance is querying a domain name of a remote host that is a known source of
    // Drive-By download attacks." — GuardDuty names the querying instance TARGET here.
    GuardDutyType::new("Trojan:EC2/DriveBySourceTraffic!DNS", AnyRole, Compromised),
    // "An EC2 instance is attempting to communicate with an IP address of a remote host that is
    // known to hold credentials and other stolen data captured by malware."
    GuardDutyType::new("Trojan:EC2/DropPoint", AnyRole, Compromised),
    // "An EC2 instance is querying a domain name of a remote host that is known to hold
    // credentials and other stolen data captured by malware." — GuardDuty names the querying
    // instance TARGET here.
    GuardDutyType::new("Trojan:EC2/DropPoint!DNS", AnyRole, Compromised),
    // "An EC2 instance is querying domains involved in phishing attacks. Your EC2 instance might
    // be compromised." — GuardDuty names the querying instance TARGET here.
    GuardDutyType::new("Trojan:EC2/PhishingDomainRequest!DNS", AnyRole, Compromised),
    // "An EC2 instance is making connections to an IP address on a custom threat list." — as ACTOR
    // the instance connects out to the listed address; as TARGET the listed address connected in,
    // which exposes the instance but does not show it compromised.
    GuardDutyType::new(
        "UnauthorizedAccess:EC2/MaliciousIPCaller.Custom",
        Actor,
        Compromised,
    ),
    GuardDutyType::new(
        "UnauthorizedAccess:EC2/MaliciousIPCaller.Custom",
        Target,
        Exposed,
    ),
    // "An EC2 instance is performing DNS lookups that resolve to the instance metadata service." —
    // the guide calls the instance the target of DNS rebinding, but the lookup is its own: an
    // application on it is already being steered to read the instance's credentials.
    GuardDutyType::new(
        "UnauthorizedAccess:EC2/MetadataDNSRebind",
        AnyRole,
        Compromised,
    ),
    // "An EC2 instance has been involved in RDP brute force attacks." — as ACTOR the instance
    // brute-forces others; as TARGET it is the victim.
    GuardDutyType::new("UnauthorizedAccess:EC2/RDPBruteForce", Actor, Compromised),
    GuardDutyType::new("UnauthorizedAccess:EC2/RDPBruteForce", Target, Exposed),
    // "An EC2 instance has been involved in SSH brute force attacks." — as ACTOR the instance
    // brute-forces others; as TARGET it is the victim.
    GuardDutyType::new("UnauthorizedAccess:EC2/SSHBruteForce", Actor, Compromised),
    GuardDutyType::new("UnauthorizedAccess:EC2/SSHBruteForce", Target, Exposed),
    // "Your EC2 instance is making connections to a Tor Guard or an Authority node."
    GuardDutyType::new("UnauthorizedAccess:EC2/TorClient", AnyRole, Compromised),
    // "Your EC2 instance is making connections to a Tor network as a Tor relay."
    GuardDutyType::new("UnauthorizedAccess:EC2/TorRelay", AnyRole, Compromised),
    // EC2 finding types the guide lists as retired (kept for old findings)
    // "An EC2 instance is attempting to communicate with an IP address that is associated with
    // XorDDos malware." — retired.
    GuardDutyType::new("Backdoor:EC2/XORDDOS", AnyRole, Compromised),
    // "EC2 instance is communicating with Bitcoin mining pools." — retired.
    GuardDutyType::new("CryptoCurrency:EC2/BitcoinTool.A", AnyRole, Compromised),
    // "Your EC2 instance is receiving inbound connections from a Tor exit node." — retired;
    // inbound only, so the instance is exposed, not shown compromised.
    GuardDutyType::new("UnauthorizedAccess:EC2/TorIPCaller", AnyRole, Exposed),
    // Extended Threat Detection attack sequences
    // "A sequence of suspicious actions indicating potentially compromised Amazon EC2 instances."
    GuardDutyType::new(
        "AttackSequence:EC2/CompromisedInstanceGroup",
        AnyRole,
        Compromised,
    ),
    // Runtime Monitoring finding types (the resource type is Instance when the agent runs on EC2;
    // the guide leaves the resource role unset)
    // "An Amazon EC2 instance or a container is querying an IP that is associated with a known
    // command and control server."
    GuardDutyType::new("Backdoor:Runtime/C&CActivity.B", AnyRole, Compromised),
    // "An Amazon EC2 instance or a container is querying a domain name that is associated with a
    // known command and control server."
    GuardDutyType::new("Backdoor:Runtime/C&CActivity.B!DNS", AnyRole, Compromised),
    // "An Amazon EC2 instance or a container is querying an IP address that is associated with a
    // cryptocurrency-related activity."
    GuardDutyType::new("CryptoCurrency:Runtime/BitcoinTool.B", AnyRole, Compromised),
    // "An Amazon EC2 instance or a container is querying a domain name that is associated with a
    // cryptocurrency activity."
    GuardDutyType::new(
        "CryptoCurrency:Runtime/BitcoinTool.B!DNS",
        AnyRole,
        Compromised,
    ),
    // "A process in a container or an Amazon EC2 instance is executing code from memory."
    GuardDutyType::new(
        "DefenseEvasion:Runtime/FilelessExecution",
        AnyRole,
        Compromised,
    ),
    // "A kernel module was loaded on an Amazon EC2 instance, indicating an attempt to gain
    // kernel-level access."
    GuardDutyType::new(
        "DefenseEvasion:Runtime/KernelModuleLoaded",
        AnyRole,
        Compromised,
    ),
    // "A process injection using proc filesystem was detected in a container or an Amazon EC2
    // instance."
    GuardDutyType::new(
        "DefenseEvasion:Runtime/ProcessInjection.Proc",
        AnyRole,
        Compromised,
    ),
    // "A process injection using ptrace system call was detected in a container or an Amazon EC2
    // instance."
    GuardDutyType::new(
        "DefenseEvasion:Runtime/ProcessInjection.Ptrace",
        AnyRole,
        Compromised,
    ),
    // "A process injection through a direct write to virtual memory was detected in a container or
    // an Amazon EC2 instance."
    GuardDutyType::new(
        "DefenseEvasion:Runtime/ProcessInjection.VirtualMemoryWrite",
        AnyRole,
        Compromised,
    ),
    // "A process in a container or an Amazon EC2 instance has executed an anti-debugging measure
    // using the ptrace system call."
    GuardDutyType::new(
        "DefenseEvasion:Runtime/PtraceAntiDebugging",
        AnyRole,
        Compromised,
    ),
    // A sensitive system file (logs, audit settings, command history) was changed to evade
    // detection; the guide's one-line summary was not at hand, this is its launch description.
    GuardDutyType::new(
        "DefenseEvasion:Runtime/SensitiveFileModified",
        AnyRole,
        Compromised,
    ),
    // "A command has been executed on the listed Amazon EC2 instance or a container, it attempts
    // to modify or disable a Linux defense mechanism, such as firewall or essential system
    // services."
    GuardDutyType::new(
        "DefenseEvasion:Runtime/SuspiciousCommand",
        AnyRole,
        Compromised,
    ),
    // "A suspicious command has been executed on an Amazon EC2 instance or in a container, which
    // allows an attacker to gain information about the local system, surrounding AWS
    // infrastructure, or container infrastructure."
    GuardDutyType::new("Discovery:Runtime/SuspiciousCommand", AnyRole, Compromised),
    // "A known malicious executable file has been executed on an Amazon EC2 instance or a
    // container."
    GuardDutyType::new(
        "Execution:Runtime/MaliciousFileExecuted",
        AnyRole,
        Compromised,
    ),
    // The same, matched against your own threat list (.Custom); the guide lists it on the Runtime
    // Monitoring page, its summary was not at hand.
    GuardDutyType::new(
        "Execution:Runtime/MaliciousFileExecuted.Custom",
        AnyRole,
        Compromised,
    ),
    // "A newly created or recently modified binary file in a container has been executed."
    GuardDutyType::new("Execution:Runtime/NewBinaryExecuted", AnyRole, Compromised),
    // "A newly created or recently modified library was loaded by a process inside a container."
    GuardDutyType::new("Execution:Runtime/NewLibraryLoaded", AnyRole, Compromised),
    // "A process in a container or an Amazon EC2 instance has created a reverse shell."
    GuardDutyType::new("Execution:Runtime/ReverseShell", AnyRole, Compromised),
    // "A suspicious command has been executed on an Amazon EC2 instance or a container that is
    // indicative of a compromise."
    GuardDutyType::new("Execution:Runtime/SuspiciousCommand", AnyRole, Compromised),
    // "A network service or network-accessible process on an Amazon EC2 instance, or in a
    // container has started an interactive shell process."
    GuardDutyType::new(
        "Execution:Runtime/SuspiciousShellCreated",
        AnyRole,
        Compromised,
    ),
    // "A container or an Amazon EC2 instance is running a binary file or script that is frequently
    // used in offensive security scenarios such as pentesting engagement." — dual-use tools can be
    // benign, but the guide treats an unexpected one as a compromise.
    GuardDutyType::new("Execution:Runtime/SuspiciousTool", AnyRole, Compromised),
    // "An Amazon EC2 instance or a container is querying a low reputation domain name that is
    // associated with known abused domains."
    GuardDutyType::new(
        "Impact:Runtime/AbusedDomainRequest.Reputation",
        AnyRole,
        Compromised,
    ),
    // "An Amazon EC2 instance or a container is querying a low reputation domain name that is
    // associated with cryptocurrency-related activity."
    GuardDutyType::new(
        "Impact:Runtime/BitcoinDomainRequest.Reputation",
        AnyRole,
        Compromised,
    ),
    // "A container or an Amazon EC2 instance is executing a binary file that is associated with a
    // cryptocurrency mining activity."
    GuardDutyType::new("Impact:Runtime/CryptoMinerExecuted", AnyRole, Compromised),
    // "An Amazon EC2 instance or a container is querying a low reputation domain that is
    // associated with known malicious domains."
    GuardDutyType::new(
        "Impact:Runtime/MaliciousDomainRequest.Reputation",
        AnyRole,
        Compromised,
    ),
    // "An Amazon EC2 instance or a container is querying a low reputation domain name that is
    // suspicious in nature due to its age, or low popularity."
    GuardDutyType::new(
        "Impact:Runtime/SuspiciousDomainRequest.Reputation",
        AnyRole,
        Compromised,
    ),
    // A sensitive system file (SSH keys, passwd/shadow, scheduled tasks, start-up scripts) was
    // changed to keep access; the guide's one-line summary was not at hand, this is its launch
    // description.
    GuardDutyType::new(
        "Persistence:Runtime/SensitiveFileModified",
        AnyRole,
        Compromised,
    ),
    // "A suspicious command has been executed on an Amazon EC2 instance or in a container, which
    // allows an attacker to persist access and control in your AWS environment."
    GuardDutyType::new(
        "Persistence:Runtime/SuspiciousCommand",
        AnyRole,
        Compromised,
    ),
    // "A container escape attempt through CGroups release agent was detected." — retired.
    GuardDutyType::new(
        "PrivilegeEscalation:Runtime/CGroupsReleaseAgentModified",
        AnyRole,
        Compromised,
    ),
    // "A process inside a container mounted a host filesystem at runtime." — retired.
    GuardDutyType::new(
        "PrivilegeEscalation:Runtime/ContainerMountsHostDirectory",
        AnyRole,
        Compromised,
    ),
    // "A process inside a container is communicating with Docker daemon using Docker socket." —
    // retired.
    GuardDutyType::new(
        "PrivilegeEscalation:Runtime/DockerSocketAccessed",
        AnyRole,
        Compromised,
    ),
    // "A process running on the listed Amazon EC2 instance or container has assumed root
    // privileges." — retired.
    GuardDutyType::new(
        "PrivilegeEscalation:Runtime/ElevationToRoot",
        AnyRole,
        Compromised,
    ),
    // "A container escape attempt through runC was detected." — retired.
    GuardDutyType::new(
        "PrivilegeEscalation:Runtime/RuncContainerEscape",
        AnyRole,
        Compromised,
    ),
    // A sensitive system file (sudoers, PAM, authentication files) was changed to escalate
    // privileges; the guide's one-line summary was not at hand, this is its launch description.
    GuardDutyType::new(
        "PrivilegeEscalation:Runtime/SensitiveFileModified",
        AnyRole,
        Compromised,
    ),
    // "A suspicious command has been executed on an Amazon EC2 instance or in a container, which
    // allows an attacker to escalate privileges."
    GuardDutyType::new(
        "PrivilegeEscalation:Runtime/SuspiciousCommand",
        AnyRole,
        Compromised,
    ),
    // "A process used `userfaultfd` system calls to handle page faults in user space." — retired.
    GuardDutyType::new(
        "PrivilegeEscalation:Runtime/UserfaultfdUsage",
        AnyRole,
        Compromised,
    ),
    // "An Amazon EC2 instance or a container is attempting to communicate with an IP address of a
    // remote host that is a known black hole."
    GuardDutyType::new("Trojan:Runtime/BlackholeTraffic", AnyRole, Compromised),
    // "An Amazon EC2 instance or a container is querying a domain name that is being redirected to
    // a black hole IP address."
    GuardDutyType::new("Trojan:Runtime/BlackholeTraffic!DNS", AnyRole, Compromised),
    // "An Amazon EC2 instance or a container is querying algorithmically generated domains. Such
    // domains are commonly used by malware and could be an indication of a compromised EC2
    // instance or a container."
    GuardDutyType::new(
        "Trojan:Runtime/DGADomainRequest.C!DNS",
        AnyRole,
        Compromised,
    ),
    // "An Amazon EC2 instance or a container is querying a domain name of a remote host that is a
    // known source of Drive-By download attacks."
    GuardDutyType::new(
        "Trojan:Runtime/DriveBySourceTraffic!DNS",
        AnyRole,
        Compromised,
    ),
    // "An Amazon EC2 instance or a container is attempting to communicate with an IP address of a
    // remote host that is known to hold credentials and other stolen data captured by malware."
    GuardDutyType::new("Trojan:Runtime/DropPoint", AnyRole, Compromised),
    // "An Amazon EC2 instance or a container is querying a domain name of a remote host that is
    // known to hold credentials and other stolen data captured by malware."
    GuardDutyType::new("Trojan:Runtime/DropPoint!DNS", AnyRole, Compromised),
    // "An Amazon EC2 instance or a container is querying domains involved in phishing attacks."
    GuardDutyType::new(
        "Trojan:Runtime/PhishingDomainRequest!DNS",
        AnyRole,
        Compromised,
    ),
    // "An Amazon EC2 instance or a container is performing DNS lookups that resolve to the
    // instance metadata service." — as for the EC2 type: the lookup is the workload's own.
    GuardDutyType::new(
        "UnauthorizedAccess:Runtime/MetadataDNSRebind",
        AnyRole,
        Compromised,
    ),
    // "Your Amazon EC2 instance or a container is making connections to a Tor Guard or an
    // Authority node."
    GuardDutyType::new("UnauthorizedAccess:Runtime/TorClient", AnyRole, Compromised),
    // "Your Amazon EC2 instance or a container is making connections to a Tor network as a Tor
    // relay."
    GuardDutyType::new("UnauthorizedAccess:Runtime/TorRelay", AnyRole, Compromised),
    // Malware Protection for EC2 finding types
    // "A malicious file has been detected on an EC2 instance."
    GuardDutyType::new("Execution:EC2/MaliciousFile", AnyRole, Compromised),
    // "A suspicious file has been detected on an EC2 instance." — potentially unwanted or dual-use
    // programs; the guide treats an unexpected one as a compromise.
    GuardDutyType::new("Execution:EC2/SuspiciousFile", AnyRole, Compromised),
    // Malware Protection for Backup finding types
    // "A malicious file has been detected in an EC2 AMI." — names the AMI, not a running instance.
    GuardDutyType::new("Execution:EC2/MaliciousFile!AMI", AnyRole, Compromised),
    // "A malicious file has been detected in an AWS Backup EC2 Recovery Point." — names the
    // recovery point, not a running instance.
    GuardDutyType::new(
        "Execution:EC2/MaliciousFile!RecoveryPoint",
        AnyRole,
        Compromised,
    ),
    // "A malicious file has been detected in an EBS snapshot." — names the snapshot, not a running
    // instance.
    GuardDutyType::new("Execution:EC2/MaliciousFile!Snapshot", AnyRole, Compromised),
];

/// For a type GuardDuty adds later: its family (`ThreatPurpose:ResourceTypeAffected`)
/// decides, per role. A type whose family is not here is unclassified.
pub const GUARDDUTY_FAMILIES: &[GuardDutyFamily] = &[
    // AttackSequence (Extended Threat Detection): a correlated sequence of the signals above,
    // always about compromised instances.
    GuardDutyFamily::new("AttackSequence:EC2", AnyRole, Compromised),
    // Backdoor: "This value indicates that an adversary has compromised an AWS resource and
    // altered the resource so that it is capable of contacting its home command and control (C&C)
    // server to receive further instructions for malicious activity."
    GuardDutyFamily::new("Backdoor:EC2", AnyRole, Compromised),
    // Behavior: "This value indicates that GuardDuty has detected activity or activity patterns
    // that are different from the established baseline for the AWS resources involved."
    GuardDutyFamily::new("Behavior:EC2", AnyRole, Compromised),
    // CryptoCurrency: "This value indicates that GuardDuty has detected that an AWS resource in
    // your environment is hosting software that is associated with cryptocurrencies (for example,
    // Bitcoin)."
    GuardDutyFamily::new("CryptoCurrency:EC2", AnyRole, Compromised),
    // DefenseEvasion: "This value indicates that GuardDuty has detected activity or activity
    // patterns that an adversary may use to avoid detection while infiltrating your environment."
    GuardDutyFamily::new("DefenseEvasion:EC2", AnyRole, Compromised),
    // Execution: the guide's purpose list, as read, has no text for it; its types report malicious
    // code found on, or run by, the resource.
    GuardDutyFamily::new("Execution:EC2", AnyRole, Compromised),
    // Impact: "This value indicates that GuardDuty has detected activity or activity patterns that
    // suggest that an adversary is attempting to manipulate, interrupt, or destroy your systems
    // and data." — as TARGET too: GuardDuty names the querying instance TARGET in its
    // domain-request types, and those are most of this family.
    GuardDutyFamily::new("Impact:EC2", Actor, Compromised),
    GuardDutyFamily::new("Impact:EC2", Target, Compromised),
    // Recon: "This value indicates that GuardDuty has detected activity or activity patterns that
    // an adversary may use when preforming reconnaissance of your network to determine how they
    // can broaden their access or utilize your resources." — as TARGET the instance is probed from
    // outside; as ACTOR it scans others.
    GuardDutyFamily::new("Recon:EC2", Actor, Compromised),
    GuardDutyFamily::new("Recon:EC2", Target, Exposed),
    // Trojan: "This value indicates that an attack is using Trojan programs that silently carry
    // out malicious activity."
    GuardDutyFamily::new("Trojan:EC2", AnyRole, Compromised),
    // UnauthorizedAccess: "This value indicates that GuardDuty is detecting suspicious activity or
    // a suspicious activity pattern by an unauthorized individual." — as TARGET the instance is
    // attacked from outside (brute force, Tor exit nodes); as ACTOR it attacks or hides its own
    // traffic.
    GuardDutyFamily::new("UnauthorizedAccess:EC2", Actor, Compromised),
    GuardDutyFamily::new("UnauthorizedAccess:EC2", Target, Exposed),
    // Backdoor: "This value indicates that an adversary has compromised an AWS resource and
    // altered the resource so that it is capable of contacting its home command and control (C&C)
    // server to receive further instructions for malicious activity."
    GuardDutyFamily::new("Backdoor:Runtime", AnyRole, Compromised),
    // CryptoCurrency: "This value indicates that GuardDuty has detected that an AWS resource in
    // your environment is hosting software that is associated with cryptocurrencies (for example,
    // Bitcoin)."
    GuardDutyFamily::new("CryptoCurrency:Runtime", AnyRole, Compromised),
    // DefenseEvasion: "This value indicates that GuardDuty has detected activity or activity
    // patterns that an adversary may use to avoid detection while infiltrating your environment."
    GuardDutyFamily::new("DefenseEvasion:Runtime", AnyRole, Compromised),
    // Discovery: "This value indicates that GuardDuty has detected activity or activity patterns
    // that an adversary may use to expand their knowledge of your systems and internal networks."
    // — on the host itself, run by a process on the instance.
    GuardDutyFamily::new("Discovery:Runtime", AnyRole, Compromised),
    // Execution: the guide's purpose list, as read, has no text for it; its types report malicious
    // code found on, or run by, the resource.
    GuardDutyFamily::new("Execution:Runtime", AnyRole, Compromised),
    // Impact: "This value indicates that GuardDuty has detected activity or activity patterns that
    // suggest that an adversary is attempting to manipulate, interrupt, or destroy your systems
    // and data."
    GuardDutyFamily::new("Impact:Runtime", AnyRole, Compromised),
    // Persistence: "This value indicates that GuardDuty has detected activity or activity patterns
    // that an adversary may use to try and maintain access to your systems even if their initial
    // access route is cut off."
    GuardDutyFamily::new("Persistence:Runtime", AnyRole, Compromised),
    // PrivilegeEscalation: "This value informs you that the involved principal within your AWS
    // environment is exhibiting behavior that an adversary may use to gain higher-level
    // permissions to your network."
    GuardDutyFamily::new("PrivilegeEscalation:Runtime", AnyRole, Compromised),
    // Trojan: "This value indicates that an attack is using Trojan programs that silently carry
    // out malicious activity."
    GuardDutyFamily::new("Trojan:Runtime", AnyRole, Compromised),
    // UnauthorizedAccess: "This value indicates that GuardDuty is detecting suspicious activity or
    // a suspicious activity pattern by an unauthorized individual." — Runtime Monitoring reports
    // what the workload itself does.
    GuardDutyFamily::new("UnauthorizedAccess:Runtime", AnyRole, Compromised),
];
