// Crypto-mining indicators for analyse-volume.sh: miner binaries, their
// configurations and pool addresses. Matched against files extracted from an
// evidence volume, never against a live host. Strings are written so that
// what `yara -s` prints is the evidence itself: the whole pool URL, the pool's
// host name, the wallet or user a configuration mines for.

rule StratumPoolUrl
{
    meta:
        description = "A mining pool address (Stratum protocol)"
    strings:
        $tcp = /stratum\+tcp:\/\/[A-Za-z0-9._:@\/%?=&~+-]{0,200}/ nocase
        $ssl = /stratum\+ssl:\/\/[A-Za-z0-9._:@\/%?=&~+-]{0,200}/ nocase
        $tls = /stratum2\+tcp:\/\/[A-Za-z0-9._:@\/%?=&~+-]{0,200}/ nocase
    condition:
        any of them
}

rule XmrigMiner
{
    meta:
        description = "XMRig, or a build of it: the miner most often dropped on compromised instances"
    strings:
        $name = "xmrig" nocase
        $donate = "donate-level" nocase
        $randomx = "randomx" nocase
        $banner = /XMRig\/[0-9][0-9.]{0,15}/
    condition:
        2 of them
}

rule MinerConfiguration
{
    meta:
        description = "A miner's JSON configuration: pools with a wallet as user"
    strings:
        $pools = "\"pools\"" ascii
        $url = /"url"[ \t\r\n]*:[ \t\r\n]*"[^"\r\n]{0,200}"?/
        $user = /"user"[ \t\r\n]*:[ \t\r\n]*("[^"\r\n]{0,200}"?)?/
        $algo = /"algo"[ \t\r\n]*:[ \t\r\n]*("[^"\r\n]{0,60}"?)?/
        $coin = /"coin"[ \t\r\n]*:[ \t\r\n]*("[^"\r\n]{0,60}"?)?/
    condition:
        $pools and $url and ($user or $algo or $coin)
}

rule KnownPoolDomain
{
    meta:
        description = "A public mining pool's domain"
    strings:
        $a = /([a-z0-9-]{1,63}\.){0,4}supportxmr\.com(:[0-9]{1,5})?/ nocase
        $b = /([a-z0-9-]{1,63}\.){0,4}minexmr\.com(:[0-9]{1,5})?/ nocase
        $c = /([a-z0-9-]{1,63}\.){0,4}nanopool\.org(:[0-9]{1,5})?/ nocase
        $d = /([a-z0-9-]{1,63}\.){0,4}moneroocean\.stream(:[0-9]{1,5})?/ nocase
        $e = /([a-z0-9-]{1,63}\.){0,4}hashvault\.pro(:[0-9]{1,5})?/ nocase
        $f = /([a-z0-9-]{1,63}\.){0,4}2miners\.com(:[0-9]{1,5})?/ nocase
        $g = /([a-z0-9-]{1,63}\.){0,4}f2pool\.com(:[0-9]{1,5})?/ nocase
        $h = /([a-z0-9-]{1,63}\.){0,4}c3pool\.com(:[0-9]{1,5})?/ nocase
        $i = /([a-z0-9-]{1,63}\.){0,4}herominers\.com(:[0-9]{1,5})?/ nocase
    condition:
        any of them
}
