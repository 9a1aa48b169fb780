// SPDX-License-Identifier: GPL-2.0
/* BPF netfilter programs (kernel >= 6.4), linked in each traced namespace
 * just before and just after the NAT priorities (and the filter priority in
 * FORWARD), so each packet is seen before and after translation. They only
 * look: the verdict is always accept. libbpf 1.1 does not know this program
 * type; the loader sets it (BPF_PROG_TYPE_NETFILTER) before load. */
#include "common.bpf.h"

#define PT_NF_INET_LOCAL_OUT 3

static __always_inline int pt_nf(struct bpf_nf_ctx *ctx, __u16 hook)
{
	struct sk_buff *skb = ctx->skb;
	const struct nf_hook_state *state = ctx->state;
	/* Typed pointers: plain loads, no probe-read helper calls on the hot path. */
	struct net_device *out = state->out;
	__u8 nf_hook = state->hook;
	/* Every IPv4 packet meets the device receive hook before PREROUTING, and
	 * PREROUTING or OUTPUT before the other hooks: only OUTPUT, where the
	 * host's own packets (ICMP errors, resets, replies) first appear, reads
	 * tags; elsewhere the untagged bulk costs one map read. */
	struct pt_where w = {
		.dev = out ? out : state->in, .net = state->net, .hook = hook,
		.via = PT_VIA_NETFILTER, .nf_hook = nf_hook,
		.follow_only = nf_hook != PT_NF_INET_LOCAL_OUT,
		.entry = nf_hook == PT_NF_INET_LOCAL_OUT,
	};

	pt_observe(skb, pt_l3_of(skb, 1), w);
	return PT_NF_ACCEPT;
}

SEC("netfilter")
int pt_nf_before(struct bpf_nf_ctx *ctx)
{
	return pt_nf(ctx, PT_HOOK_NF_BEFORE);
}

SEC("netfilter")
int pt_nf_after(struct bpf_nf_ctx *ctx)
{
	return pt_nf(ctx, PT_HOOK_NF_AFTER);
}
