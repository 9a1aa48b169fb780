#!/usr/bin/env bash
# Runs inside the second kernel (virtme-ng guest sharing this machine's files):
# load what Debian's 6.1 builds as modules, then the `vm` tests.
set -euo pipefail
cd "$(dirname "$0")/../.."
# No fallback tunnels (tunl0, gre0) in every new namespace once ipip and ip_gre load.
sysctl -qw net.core.fb_tunnels_only_for_init_net=2 || echo "guest: fallback tunnels stay"
for m in veth bridge br_netfilter nf_tables nf_conntrack nf_nat nft_chain_nat nft_masq \
         nft_nat nft_ct nf_conntrack_netlink ipip ip_gre; do
  modprobe "$m" 2>/dev/null || echo "guest: no module $m"
done
mkdir -p /run/netns
export PATHTRACE_KERNEL_VM=1
exec .venv/bin/python -m pytest -q -p no:cacheprovider -m vm tests/vm "$@"
