#!/usr/bin/env bash
# Regenerates the example bundles with pathtrace itself (as root, lab up or not):
# a delivered ping, a tcp through the host's DNAT, a drop, and IPv6 through NAT66.
set -euo pipefail
cd "$(dirname "$0")"
pt=../../.venv/bin/pathtrace
rm -rf ping-answered tcp-dnat forward-drop ping6-nat66
$pt lab up >/dev/null
$pt run ping 8.8.8.8 -c 2 --save ping-answered >/dev/null
$pt run tcp 198.51.100.2:8080 --from wan -c 1 --save tcp-dnat >/dev/null
$pt lab break forward-drop >/dev/null
$pt run ping 8.8.8.8 -c 1 --save forward-drop >/dev/null || true
$pt lab fix >/dev/null
$pt run ping 2001:4860:4860::8888 -c 2 --save ping6-nat66 >/dev/null
ls -d */
