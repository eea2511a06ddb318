// Crypto-mining indicators for analyse-volume.sh: miner binaries, their
// configurations and pool addresses. Matched against files extracted from an
// evidence volume, never against a live host.

rule StratumPoolUrl
{
    meta:
        description = "A mining pool address (Stratum protocol)"
    strings:
        $tcp = "stratum+tcp://" nocase
        $ssl = "stratum+ssl://" nocase
        $tls = "stratum2+tcp://" nocase
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
        $banner = "XMRig/" ascii
    condition:
        2 of them
}

rule MinerConfiguration
{
    meta:
        description = "A miner's JSON configuration: pools with a wallet as user"
    strings:
        $pools = "\"pools\"" ascii
        $url = "\"url\"" ascii
        $user = "\"user\"" ascii
        $algo = "\"algo\"" ascii
        $coin = "\"coin\"" ascii
    condition:
        $pools and $url and ($user or $algo or $coin)
}

rule KnownPoolDomain
{
    meta:
        description = "A public mining pool's domain"
    strings:
        $a = "supportxmr.com" nocase
        $b = "minexmr.com" nocase
        $c = "nanopool.org" nocase
        $d = "moneroocean.stream" nocase
        $e = "hashvault.pro" nocase
        $f = "2miners.com" nocase
        $g = "f2pool.com" nocase
        $h = "c3pool.com" nocase
        $i = "herominers.com" nocase
    condition:
        any of them
}
