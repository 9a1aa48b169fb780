// SPDX-License-Identifier: GPL-2.0
/* veth_xmit, where kernels allow fentry or kprobes: the moment a packet
 * crosses a veth pair. The loader turns on one of the two programs. */
/* Holds kprobe programs, whose arguments are plain addresses: copy, never load. */
#define PT_DIRECT 0
#include "common.bpf.h"

static __always_inline void pt_veth(struct sk_buff *skb, struct net_device *dev, __u8 via)
{
	struct pt_where w = { .dev = dev, .hook = PT_HOOK_VETH_XMIT, .via = via };

	pt_observe(skb, pt_l3_of(skb, 0), w);
}

SEC("fentry/veth_xmit")
int BPF_PROG(pt_veth_fentry, struct sk_buff *skb, struct net_device *dev)
{
	pt_veth(skb, dev, PT_VIA_FENTRY);
	return 0;
}

SEC("kprobe/veth_xmit")
int BPF_KPROBE(pt_veth_kprobe, struct sk_buff *skb, struct net_device *dev)
{
	pt_veth(skb, dev, PT_VIA_KPROBE);
	return 0;
}
