// SPDX-License-Identifier: GPL-2.0
/* Device hooks, on every kernel with BTF: a device starts transmitting, a
 * device receives. Together they show each veth crossing, each bridge port,
 * the bridge delivering up to its host, and the uplink. */
#include "common.bpf.h"

SEC("tp_btf/net_dev_start_xmit")
int BPF_PROG(pt_dev_xmit, struct sk_buff *skb, struct net_device *dev)
{
	struct pt_where w = { .dev = dev, .hook = PT_HOOK_DEV_XMIT, .via = PT_VIA_TP_BTF,
			     .entry = 1 };

	pt_observe(skb, pt_l3_of(skb, 0), w);
	return 0;
}

SEC("tp_btf/netif_receive_skb")
int BPF_PROG(pt_dev_recv, struct sk_buff *skb)
{
	/* The driver has pulled the Ethernet header: data is at the IP header,
	 * while network_header may still be the sender's. */
	struct pt_where w = {
		.dev = skb->dev, .hook = PT_HOOK_DEV_RECV, .via = PT_VIA_TP_BTF, .entry = 1,
	};

	pt_observe(skb, pt_l3_of(skb, 1), w);
	return 0;
}
