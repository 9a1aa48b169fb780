"""A two-node VXLAN overlay as flannel builds it, for tests and benchmarks.

node-a and node-b joined by an underlay veth (ul0, 172.30.0.1-2/24), each with
flannel.1 (VXLAN VNI 1, UDP 8472, no learning, MAC 02:00:00:00:0N:01), a bridge
cni0 (10.244.N.1/24) and a pod (pod-a 10.244.0.2, pod-b 10.244.1.2); the route,
neighbour and FDB entries flannel writes for the other node. Run it in a
scratch host only (tests/scratch.py): it names its namespaces plainly.
"""

SETUP = r"""set -e
for n in node-a node-b pod-a pod-b; do ip netns add $n; ip -n $n link set lo up; done
ip link add ula type veth peer name ulb
ip link set ula netns node-a; ip link set ulb netns node-b
ip -n node-a link set ula name ul0; ip -n node-b link set ulb name ul0
ip -n node-a addr add 172.30.0.1/24 dev ul0; ip -n node-b addr add 172.30.0.2/24 dev ul0
ip -n node-a link set ul0 up; ip -n node-b link set ul0 up
i=0
for side in a b; do
  n=node-$side; p=pod-$side
  ip -n $n link add flannel.1 address 02:00:00:00:0$i:01 type vxlan id 1 dstport 8472 \
    local 172.30.0.$((i+1)) dev ul0 nolearning
  ip -n $n addr add 10.244.$i.0/32 dev flannel.1; ip -n $n link set flannel.1 up
  ip -n $n link add cni0 type bridge; ip -n $n addr add 10.244.$i.1/24 dev cni0
  ip -n $n link set cni0 up
  ip link add pv$side type veth peer name eth0
  ip link set eth0 netns $p; ip link set pv$side netns $n
  ip -n $n link set pv$side master cni0; ip -n $n link set pv$side up
  ip -n $p addr add 10.244.$i.2/24 dev eth0; ip -n $p link set eth0 up
  ip -n $p route add default via 10.244.$i.1
  ip netns exec $n sysctl -qw net.ipv4.ip_forward=1
  i=$((i+1))
done
ip -n node-a route add 10.244.1.0/24 via 10.244.1.0 dev flannel.1 onlink
ip -n node-a neigh add 10.244.1.0 lladdr 02:00:00:00:01:01 dev flannel.1 nud permanent
ip netns exec node-a bridge fdb add 02:00:00:00:01:01 dev flannel.1 dst 172.30.0.2 self permanent
ip -n node-b route add 10.244.0.0/24 via 10.244.0.0 dev flannel.1 onlink
ip -n node-b neigh add 10.244.0.0 lladdr 02:00:00:00:00:01 dev flannel.1 nud permanent
ip netns exec node-b bridge fdb add 02:00:00:00:00:01 dev flannel.1 dst 172.30.0.1 self permanent
"""
