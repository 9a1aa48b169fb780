// SPDX-License-Identifier: GPL-2.0
/* conntrack's own reason for refusing a packet (INVALID: no entry), where it
 * gives one: its protocol trackers pass the message to nf_l4proto_log_invalid
 * (nf_ct_l4proto_log_invalid where an entry exists), which test themselves
 * whether logging is on (net.netfilter.nf_conntrack_log_invalid): the call is
 * made either way, and nothing is changed to see it. kprobes: the functions
 * take variable arguments, which fentry cannot attach to. Only packets already
 * followed are reported; a message's text is kept once in pt_notes, by its
 * address, which the event carries as its location. */
/* Holds kprobe programs, whose arguments are plain addresses: copy, never load. */
#define PT_DIRECT 0
#include "common.bpf.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256); /* messages are the kernel's constant strings */
	__type(key, __u64);
	__type(value, struct pt_note);
} pt_notes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct pt_note);
} pt_note_scratch SEC(".maps");

/* The message: the format itself, a "%s" format's argument (tcp_error_log and
 * its kind), or the format a "%pV" format's struct va_format carries (how
 * nf_tcp_log_invalid and nf_ct_l4proto_log_invalid pass their own on). */
static __always_inline __u64 pt_message(const char *fmt, __u64 arg)
{
	char head[4] = {};

	if (bpf_probe_read_kernel(head, sizeof(head), fmt))
		return 0;
	if (head[0] == '%' && head[1] == 's' && head[2] == 0)
		return arg;
	if (head[0] == '%' && head[1] == 'p' && head[2] == 'V' && head[3] == 0)
		return (__u64)BPF_CORE_READ((struct va_format *)arg, fmt);
	return (__u64)fmt;
}

static __always_inline void pt_ct_invalid(struct sk_buff *skb, const struct nf_hook_state *state,
					  const char *fmt, __u64 arg)
{
	__u64 key = (__u64)skb;
	__u64 *live = pt_counter(PT_ID_LIVE);

	if (!live || !*live || !bpf_map_lookup_elem(&pt_tracked, &key))
		return; /* not a followed packet: nothing read */
	__u64 message = pt_message(fmt, arg);
	if (!message)
		return;
	if (!bpf_map_lookup_elem(&pt_notes, &message)) {
		struct pt_note *n = bpf_map_lookup_elem(&pt_note_scratch, &pt_keys[0]);

		if (n && bpf_probe_read_kernel_str(n->text, sizeof(n->text), (void *)message) > 0)
			bpf_map_update_elem(&pt_notes, &message, n, BPF_NOEXIST);
	}
	struct pt_where w = {
		.net = BPF_CORE_READ(state, net), .location = message, .hook = PT_HOOK_CT_INVALID,
		.via = PT_VIA_KPROBE, .follow_only = 1,
	};

	pt_observe(skb, pt_l3_of(skb, 0), w);
}

SEC("kprobe/nf_l4proto_log_invalid")
int BPF_KPROBE(pt_ct_log_invalid, struct sk_buff *skb, const struct nf_hook_state *state,
	       __u8 protonum, const char *fmt)
{
	pt_ct_invalid(skb, state, fmt, PT_REGS_PARM5(ctx));
	return 0;
}

SEC("kprobe/nf_ct_l4proto_log_invalid")
int BPF_KPROBE(pt_ct_entry_log_invalid, struct sk_buff *skb, const struct nf_conn *ct,
	       const struct nf_hook_state *state, const char *fmt)
{
	pt_ct_invalid(skb, state, fmt, PT_REGS_PARM5(ctx));
	return 0;
}
