// SPDX-License-Identifier: GPL-2.0
/* The end of an skb: freed as a drop (with the kernel's reason and the code
 * location), or consumed after normal use (e.g. delivered to a socket). */
#include "common.bpf.h"

SEC("tp_btf/kfree_skb")
int BPF_PROG(pt_drop, struct sk_buff *skb, void *location, enum skb_drop_reason reason)
{
	struct pt_where w = {
		.dev = skb->dev, .location = (__u64)location, .drop_reason = reason,
		.hook = PT_HOOK_DROP, .via = PT_VIA_TP_BTF, .final = 1, .entry = 1,
	};

	pt_observe(skb, pt_l3_of(skb, 0), w);
	return 0;
}

SEC("tp_btf/consume_skb")
int BPF_PROG(pt_consume, struct sk_buff *skb)
{
	struct pt_where w = {
		.dev = skb->dev, .hook = PT_HOOK_CONSUME, .via = PT_VIA_TP_BTF,
		.final = 1,
	};

	pt_observe(skb, pt_l3_of(skb, 0), w);
	return 0;
}
