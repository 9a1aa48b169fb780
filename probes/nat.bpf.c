// SPDX-License-Identifier: GPL-2.0
/* The NAT itself, where kernels allow fentry/fexit or kprobes: the packet on
 * entry to nf_nat_manip_pkt (before translation) and on its return (after).
 * Kernels before 6.4 have no BPF netfilter links; there the NAT view comes
 * from here. */
/* Holds kprobe programs, whose arguments are plain addresses: copy, never load. */
#define PT_DIRECT 0
#include "common.bpf.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u64);
	__type(value, __u64);
} pt_nat_skb SEC(".maps");

static __always_inline void pt_nat(struct sk_buff *skb, struct nf_conn *ct, __u8 mtype,
				   __u16 hook, __u8 via)
{
	struct pt_where w = {
		.dev = BPF_CORE_READ(skb, dev), .net = BPF_CORE_READ(ct, ct_net.net), .hook = hook,
		.via = via, .nf_hook = mtype,
	};

	pt_observe(skb, pt_l3_of(skb, 0), w);
}

SEC("fentry/nf_nat_manip_pkt")
int BPF_PROG(pt_nat_fentry, struct sk_buff *skb, struct nf_conn *ct, int mtype)
{
	pt_nat(skb, ct, mtype, PT_HOOK_NAT_BEFORE, PT_VIA_FENTRY);
	return 0;
}

SEC("fexit/nf_nat_manip_pkt")
int BPF_PROG(pt_nat_fexit, struct sk_buff *skb, struct nf_conn *ct, int mtype)
{
	pt_nat(skb, ct, mtype, PT_HOOK_NAT_AFTER, PT_VIA_FEXIT);
	return 0;
}

SEC("kprobe/nf_nat_manip_pkt")
int BPF_KPROBE(pt_nat_kprobe, struct sk_buff *skb, struct nf_conn *ct, int mtype)
{
	__u64 tid = bpf_get_current_pid_tgid(), at = (__u64)skb;

	bpf_map_update_elem(&pt_nat_skb, &tid, &at, BPF_ANY);
	pt_nat(skb, ct, mtype, PT_HOOK_NAT_BEFORE, PT_VIA_KPROBE);
	return 0;
}

SEC("kretprobe/nf_nat_manip_pkt")
int BPF_KRETPROBE(pt_nat_kretprobe)
{
	__u64 tid = bpf_get_current_pid_tgid();
	__u64 *at = bpf_map_lookup_elem(&pt_nat_skb, &tid);

	if (!at)
		return 0;
	struct sk_buff *skb = (struct sk_buff *)*at;
	bpf_map_delete_elem(&pt_nat_skb, &tid);
	unsigned long nfct = BPF_CORE_READ(skb, _nfct);
	pt_nat(skb, (struct nf_conn *)(nfct & ~7UL), 0, PT_HOOK_NAT_AFTER, PT_VIA_KRETPROBE);
	return 0;
}
