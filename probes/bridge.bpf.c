// SPDX-License-Identifier: GPL-2.0
/* The bridge's own decisions, where kernels allow fentry or kprobes: a port
 * receives a frame (br_handle_frame), the bridge forwards it to a port
 * (br_forward). Without them the engine infers forwarding from receive on one
 * port and transmit on another. */
/* Holds kprobe programs, whose arguments are plain addresses: copy, never load. */
#define PT_DIRECT 0
#include "common.bpf.h"

static __always_inline void pt_handle_frame(struct sk_buff **pskb, __u8 via)
{
	struct sk_buff *skb = 0;

	bpf_probe_read_kernel(&skb, sizeof(skb), pskb);
	if (!skb)
		return;
	struct pt_where w = {
		.dev = BPF_CORE_READ(skb, dev), .hook = PT_HOOK_BR_HANDLE_FRAME, .via = via,
	};
	pt_observe(skb, pt_l3_of(skb, 1), w);
}

static __always_inline void pt_forward(const struct net_bridge_port *to, struct sk_buff *skb,
				       __u8 via)
{
	struct pt_where w = {
		.dev = BPF_CORE_READ(to, dev), .hook = PT_HOOK_BR_FORWARD, .via = via,
	};

	pt_observe(skb, pt_l3_of(skb, 0), w);
}

SEC("fentry/br_handle_frame")
int BPF_PROG(pt_br_handle_frame_fentry, struct sk_buff **pskb)
{
	pt_handle_frame(pskb, PT_VIA_FENTRY);
	return 0;
}

SEC("kprobe/br_handle_frame")
int BPF_KPROBE(pt_br_handle_frame_kprobe, struct sk_buff **pskb)
{
	pt_handle_frame(pskb, PT_VIA_KPROBE);
	return 0;
}

SEC("fentry/br_forward")
int BPF_PROG(pt_br_forward_fentry, const struct net_bridge_port *to, struct sk_buff *skb)
{
	pt_forward(to, skb, PT_VIA_FENTRY);
	return 0;
}

SEC("kprobe/br_forward")
int BPF_KPROBE(pt_br_forward_kprobe, const struct net_bridge_port *to, struct sk_buff *skb)
{
	pt_forward(to, skb, PT_VIA_KPROBE);
	return 0;
}
