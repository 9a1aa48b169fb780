/* What every probe shares: the maps (one set, shared by all objects through
 * map fd reuse), the tag matcher, skb tracking, and event emission.
 *
 * A packet is recognised by its tag (see pathtrace.h) before any event is
 * emitted; an skb once recognised is followed by its address, so hooks where
 * the tag cannot be read still report it. Addresses are reused after free: an
 * entry is dropped when its skb is freed, and a tracked address that turns up
 * carrying another packet (IP id or protocol differ) is forgotten, so one
 * packet's history never carries over to the next.
 */
#ifndef PT_COMMON_BPF_H
#define PT_COMMON_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "pathtrace.h"

#define PT_ETH_P_IP 0x0800
#define PT_ETH_P_IPV6 0x86DD
#define PT_IPPROTO_ICMPV6 58 /* a #define in the kernel: not in vmlinux.h */
#define PT_NEXTHDR_HOP 0
#define PT_NEXTHDR_ROUTING 43
#define PT_NEXTHDR_FRAGMENT 44
#define PT_NEXTHDR_DEST 60
#define PT_NF_ACCEPT 1
#define PT_CLOCK_TAI 1
#define PT_CLOCK_BOOTTIME 2

char LICENSE[] SEC("license") = "GPL";

/* Set by the loader before load. */
const volatile __u32 pt_run = 0;
const volatile __u32 pt_index_limit = 65536; /* tags at or above it are not ours */
/* 1: the run's UDP probes are also known by their flows (pt_flows). */
const volatile __u8 pt_by_flow = 0;
/* 1: `watch`: no tags; packets the filter (pt_watch_vm) matches where they enter
 * the traced set start flows, followed by their skbs and their flows' keys
 * (TCP, UDP, ICMP echo), as many as pt_watch_flows. */
const volatile __u8 pt_watch = 0;
const volatile __u32 pt_watch_flows = 0;

/* Anchors struct pt_event in the object's BTF, where user space reads its layout. */
const volatile struct pt_event pt_event_layout = {};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 8 << 20);
} pt_events SEC(".maps");

struct pt_tracked {
	__u64 skb_id;
	__u32 index;
	__u16 ip_id;
	__u8 protocol;
	__u8 kind;
	__u32 fixed; /* pt_pkt.fixed when first seen */
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct pt_tracked);
} pt_tracked SEC(".maps");

/* UDP probes known by their flow, keyed by what a packet carries: its
 * destination address and its ports. A probe's request, at each hop, writes the
 * key its answer will carry there (to the probe's source as seen at that hop,
 * from the port it was sent to), so any datagram of the reverse flow is its
 * answer, whatever the payload and whichever address answers; the loader
 * writes the request's own key where the request carries no tag (DNS). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, struct pt_flow_key);
	__type(value, struct pt_flow);
} pt_flows SEC(".maps");

/* The UDP ports (network order) of the traced namespaces' VXLAN and Geneve
 * devices, as netlink gives them, and which encapsulation each carries: a
 * datagram to one of them is looked into for a tagged packet. A map, not
 * read-only data: the loader writes it once it has read the namespaces, which
 * it does while the kernel verifies the programs. */
struct pt_tunnels {
	__u16 port[PT_TUNNEL_PORTS];
	__u8 kind[PT_TUNNEL_PORTS];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct pt_tunnels);
} pt_tunnels SEC(".maps");

/* Events that found the ring buffer full, per hook. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, PT_HOOK_MAX);
	__type(key, __u32);
	__type(value, __u64);
} pt_lost SEC(".maps");

/* [0]: the last skb id given; [1]: entries in pt_tracked (never below the truth:
 * LRU evictions are not counted), so untagged packets skip the hash lookup
 * while nothing is being followed; [2]: flows watched so far. One set for all
 * objects. */
#define PT_ID_NEXT 0
#define PT_ID_LIVE 1
#define PT_ID_FLOWS 2
#define PT_ID_MATCHES 3 /* watch: new flows the filter matched, sampled or not */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u64);
} pt_ids SEC(".maps");

/* Reading packet bytes. Where the kernel allows a read-only cast of any
 * address (bpf_rdonly_cast to type 0, kernels of 2025 on), reads are plain
 * loads guarded by the JIT's exception table: a few nanoseconds, where a
 * bpf_probe_read_kernel call costs tens, on every packet of every hook. The
 * build makes each object both ways (*.compat.bpf.o: helper reads) and the
 * loader falls back when the kernel refuses the cast. A faulting load reads
 * as zeros, which no check below accepts. */
#ifndef PT_CAST_READS
#define PT_CAST_READS 0
#endif
#if PT_CAST_READS
extern void *bpf_rdonly_cast(const void *obj, __u32 btf_id) __ksym;

static __always_inline int pt_read(__u32 *dst, __u32 words, const void *src)
{
	const __u32 *from = bpf_rdonly_cast(src, 0);

	for (__u32 i = 0; i < words; i++)
		dst[i] = from[i];
	return 0;
}
#else
static __always_inline int pt_read(__u32 *dst, __u32 words, const void *src)
{
	return bpf_probe_read_kernel(dst, words * 4, src);
}
#endif

/* `watch`: the namespaces (inode numbers) where the filter picks packets. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u8);
} pt_watch_ns SEC(".maps");

/* `watch`: devices (namespace inode, ifindex) whose packets come from a namespace
 * where the filter picks too (a veth whose peer is there): a packet received on
 * one was filtered already, as it left the other side. */
struct pt_watch_dev {
	__u32 netns;
	__u32 ifindex;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct pt_watch_dev);
	__type(value, __u8);
} pt_watch_inside SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct pt_watch_gate);
} pt_watch_gate SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, PT_WATCH_STATS);
	__type(key, __u32);
	__type(value, __u64);
} pt_watch_stats SEC(".maps");

/* `watch`'s map keys, built off the stack: the probes' parsing fills it, and on
 * kernels before 6.4 (or so) the filter's bpf_loop frame counts on top of it. */
struct pt_watch_scratch {
	struct pt_flow_key k;
	struct pt_flow f;
	struct pt_watch_dev d;
	__u32 word; /* an atom's bytes (pt_watch_bytes) */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct pt_watch_scratch);
} pt_watch_scratch SEC(".maps");

/* Constant keys in read-only data: a map key's pointer without a stack slot. */
static const __u32 pt_keys[16] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};

#include "filter.bpf.h"

struct pt_pkt {
	__u32 saddr, daddr, index; /* the run: pt_run, whenever tagged */
	__u32 saddr6[4], daddr6[4];
	__u16 sport, dport, ip_id, tot_len, l4_off, tcp_payload;
	__u8 protocol, ttl, icmp_type, icmp_code, tcp_flags, tag_kind, family;
	__u8 by_key; /* known here by its flow's key (pt_flows) */
	/* `watch`: its TCP header went unread, as neither the filter (its atoms,
	 * its protocol) nor a followed flow can want it: pt_watch_pick need not
	 * try the atoms again. */
	__u8 unwanted;
	/* What no hop on the way rewrites (not NAT, not a tunnel): TCP's sequence,
	 * UDP's length, ICMP's type and echo sequence or the id of the packet an
	 * error quotes. With the IP id, it tells a followed packet from another
	 * at the same address: kernels send SYN-ACKs and RSTs with IP id 0. */
	__u32 fixed;
};

/* `watch`: the size bytes at off from l3, big-endian, read as one word (the one
 * ending with them: packets have 4 bytes at least); -1 where they are not all
 * within avail. */
static __always_inline __s64 pt_watch_bytes(const unsigned char *l3, __u32 avail, __u32 off,
					    __u32 size, __u32 *word)
{
	__u32 end = off + size;

	if (off > 0xffff || end > avail || avail < 4)
		return -1;
	__u32 start = end >= 4 ? end - 4 : 0;
	if (pt_read(word, 1, l3 + start))
		return -1;
	return bpf_ntohl(*word) >> (((start + 4 - end) & 3) * 8);
}

/* `watch`: whether the packet at l3 passes one of the gate's atoms (a comparison
 * every packet the filter accepts passes one of), or the gate has none. */
static __always_inline int pt_watch_atoms_pass(const struct pt_watch_gate *g,
					       struct pt_watch_scratch *s,
					       const unsigned char *l3, __u32 avail)
{
	__u32 n = g->atoms;

	if (!n)
		return 1;
	for (__u32 i = 0; i < PT_WATCH_ATOMS; i++) {
		if (i >= n)
			break;
		const struct pt_watch_atom *a = &g->atom[i];
		__u32 off = a->off;
		__s64 v;

		if (a->base) {
			v = pt_watch_bytes(l3, avail, a->base - 1, 1, &s->word);
			if (v < 0)
				continue;
			off += ((__u32)v & 0xf) * 4;
		}
		v = pt_watch_bytes(l3, avail, off, a->size, &s->word);
		if (v >= 0 && ((__u32)v & a->mask) == a->value)
			return 1;
	}
	return 0;
}

/* `watch`: whether the filter can accept a packet of p's version and protocol. */
static __always_inline int pt_watch_may_pick(const struct pt_pkt *p)
{
	struct pt_watch_gate *g = bpf_map_lookup_elem(&pt_watch_gate, &pt_keys[0]);

	if (!g)
		return 1;
	if (p->family == 6) /* past extension headers, the first protocol byte is gone */
		return p->l4_off == 40 ? g->pick[1][p->protocol] : g->pick6_extended;
	return g->pick[0][p->protocol];
}

/* `watch`: whether a packet's headers past IP are wanted: the filter may pick it,
 * or a flow of its protocol may be followed already (and found by its key). */
static __always_inline int pt_watch_wants(const struct pt_pkt *p, const unsigned char *l3,
					  __u32 avail)
{
	struct pt_watch_gate *g = bpf_map_lookup_elem(&pt_watch_gate, &pt_keys[0]);
	__u64 *started = bpf_map_lookup_elem(&pt_ids, &pt_keys[PT_ID_FLOWS]);
	struct pt_watch_scratch *s = bpf_map_lookup_elem(&pt_watch_scratch, &pt_keys[0]);

	if (!g || !s)
		return 1;
	/* The same reads, over the same bytes, as pt_watch_pick's: what it may
	 * pick is wanted here, and what is not wanted it need not try again. */
	if (pt_watch_may_pick(p) && pt_watch_atoms_pass(g, s, l3, avail))
		return 1;
	return started && *started && g->keyed[p->family == 6][p->protocol];
}

static __always_inline int pt_tag_words(const __u32 *tag, struct pt_pkt *p, __u8 kind)
{
	if (pt_watch)
		return 0;
	if (tag[1] != bpf_htonl(pt_run) || bpf_ntohl(tag[2]) >= pt_index_limit)
		return 0;
	if (tag[0] == bpf_htonl(PT_TAG_MAGIC))
		p->tag_kind = kind;
	else if (tag[0] == bpf_htonl(PT_TAG_MAGIC_REPLY))
		/* An answer, or an ICMP error quoting one: still an ICMP error. */
		p->tag_kind = kind == PT_TAG_ICMP_ERROR ? PT_TAG_ICMP_ERROR : PT_TAG_REPLY;
	else
		return 0;
	p->index = bpf_ntohl(tag[2]);
	return 1;
}

static __always_inline int pt_payload_tag(const void *at, struct pt_pkt *p, __u8 kind)
{
	__u32 tag[3];

	if (pt_read(tag, 3, at))
		return 0;
	return pt_tag_words(tag, p, kind);
}

static __always_inline int pt_seq_tag(__u32 seq, struct pt_pkt *p, __u8 kind)
{
	if (pt_watch)
		return 0;
	if ((seq >> 16) != (pt_run & 0xffff) || (seq & 0xffff) >= pt_index_limit)
		return 0;
	p->index = seq & 0xffff;
	p->tag_kind = kind;
	return 1;
}

/* A datagram known by its flow: ports as read (network order; ICMP echo: the
 * id alone), the destination address in the packet's family. Run: UDP only;
 * watch: TCP, UDP and ICMP echo. */
static __always_inline int pt_flow_tag(const void *daddr, __u8 family, __u8 protocol,
				       __u32 ports, struct pt_pkt *p, int quoted)
{
	struct pt_flow_key k = {.family = family, .protocol = protocol};

	if (!pt_by_flow)
		return 0;
	if (pt_watch) {
		/* No flow started yet, no key to find: unmatched traffic skips the lookup. */
		__u64 *started = bpf_map_lookup_elem(&pt_ids, &pt_keys[PT_ID_FLOWS]);

		if (!started || !*started)
			return 0;
	}
	if (family == 6)
		__builtin_memcpy(k.addr, daddr, 16);
	else
		k.addr[0] = *(const __u32 *)daddr;
	k.sport = ports & 0xffff;
	k.dport = ports >> 16;
	struct pt_flow *f = bpf_map_lookup_elem(&pt_flows, &k);
	if (!f || f->index >= pt_index_limit)
		return 0;
	p->index = f->index;
	p->tag_kind = quoted ? PT_TAG_ICMP_ERROR : f->kind;
	p->by_key = 1;
	return 1;
}

/* The tag behind an L4 header of a packet an ICMP error quotes (daddr: the
 * quoted packet's destination). */
static __always_inline int pt_quoted_l4(const unsigned char *l4, __u8 protocol,
					const void *daddr, __u8 family, struct pt_pkt *p)
{
	__u32 seq, ports;

	if (protocol == IPPROTO_UDP && pt_by_flow && !pt_read(&ports, 1, l4) &&
	    pt_flow_tag(daddr, family, IPPROTO_UDP, ports, p, 1))
		return 1;
	if (pt_watch && protocol == IPPROTO_TCP && !pt_read(&ports, 1, l4))
		return pt_flow_tag(daddr, family, protocol, ports, p, 1);
	if (pt_watch && (protocol == IPPROTO_ICMP || protocol == PT_IPPROTO_ICMPV6)) {
		__u32 echo[2]; /* type, code, checksum; id, sequence */

		if (pt_read(echo, 2, l4))
			return 0;
		return pt_flow_tag(daddr, family, protocol, echo[1] & 0xffff, p, 1);
	}
	if (protocol == IPPROTO_ICMP || protocol == IPPROTO_UDP || protocol == PT_IPPROTO_ICMPV6)
		return pt_payload_tag(l4 + 8, p, PT_TAG_ICMP_ERROR);
	if (protocol == IPPROTO_TCP && !pt_read(&seq, 1, l4 + 4))
		return pt_seq_tag(bpf_ntohl(seq), p, PT_TAG_ICMP_ERROR);
	return 0;
}

/* The tag of a packet quoted by an ICMP error. */
static __always_inline int pt_quoted_tag(const unsigned char *l3, struct pt_pkt *p)
{
	struct iphdr iph;

	if (pt_read((__u32 *)&iph, 5, l3) || iph.version != 4)
		return 0;
	return pt_quoted_l4(l3 + iph.ihl * 4, iph.protocol, &iph.daddr, 4, p);
}

/* The tag of a packet quoted by an ICMPv6 error (our probes carry no
 * extension headers, so the quoted L4 header follows the fixed one). */
static __always_inline int pt_quoted_tag6(const unsigned char *l3, struct pt_pkt *p)
{
	struct ipv6hdr ip6;

	if (pt_read((__u32 *)&ip6, 10, l3) || ip6.version != 6)
		return 0;
	return pt_quoted_l4(l3 + 40, ip6.nexthdr, &ip6.daddr, 6, p);
}

static __always_inline int pt_parse_l4(const unsigned char *l4, __u32 l4_len,
				       struct pt_pkt *p, __u32 outer);

/* Reads the IPv6 packet at l3 into p: the fixed header, then up to three
 * extension headers (hop-by-hop, routing, destination options, a first
 * fragment) skipped by their lengths. */
static __always_inline int pt_parse6(const unsigned char *l3, struct pt_pkt *p, __u32 outer)
{
	struct ipv6hdr ip6;

	if (pt_read((__u32 *)&ip6, 10, l3) || ip6.version != 6)
		return -1;
	p->family = 6;
	__builtin_memcpy(p->saddr6, &ip6.saddr, 16);
	__builtin_memcpy(p->daddr6, &ip6.daddr, 16);
	p->ttl = ip6.hop_limit;
	/* No IP id in IPv6: the flow label's low bits tell packets apart. */
	p->ip_id = (__u16)((ip6.flow_lbl[1] << 8) | ip6.flow_lbl[2]);
	__u16 payload = bpf_ntohs(ip6.payload_len);
	p->tot_len = payload + 40;
	__u8 next = ip6.nexthdr;
	__u32 off = 40;

	for (int i = 0; i < 3; i++) {
		__u32 ext[2];

		if (next != PT_NEXTHDR_HOP && next != PT_NEXTHDR_ROUTING &&
		    next != PT_NEXTHDR_DEST && next != PT_NEXTHDR_FRAGMENT)
			break;
		if (pt_read(ext, 2, l3 + off))
			return 0;
		__u8 *b = (__u8 *)ext;
		if (next == PT_NEXTHDR_FRAGMENT) {
			if (bpf_ntohs(*(__u16 *)(b + 2)) & ~7)
				return 0; /* a later fragment: no L4 header here */
			off += 8;
		} else {
			off += (b[1] + 1) * 8;
		}
		next = b[0];
	}
	p->protocol = next;
	p->l4_off = off;
	if (off > payload + 40)
		return 0;
	return pt_parse_l4(l3 + off, payload + 40 - off, p, outer);
}

/* Reads the IP packet at l3 into p. Returns 1 if it carries this run's tag,
 * 0 if not, -1 if it is no IP packet. outer: 0 for a packet inside a tunnel's;
 * else, under `watch`, the bytes readable from l3 (skb->tail), which bound the
 * filter's atoms (pt_watch_wants), and under `run` any non-zero value. */
static __always_inline int pt_parse(const unsigned char *l3, struct pt_pkt *p, __u32 outer)
{
	struct iphdr iph;

	if (!l3 || pt_read((__u32 *)&iph, 5, l3))
		return -1;
	if (iph.version == 6)
		return pt_parse6(l3, p, outer);
	if (iph.version != 4)
		return -1;
	p->family = 4;
	p->saddr = iph.saddr;
	p->daddr = iph.daddr;
	p->protocol = iph.protocol;
	p->ttl = iph.ttl;
	p->ip_id = iph.id;
	p->tot_len = bpf_ntohs(iph.tot_len);
	p->l4_off = iph.ihl * 4;
	if (iph.frag_off & bpf_htons(0x1fff))
		return 0; /* a later fragment: no L4 header here */
	return pt_parse_l4(l3 + iph.ihl * 4, p->tot_len - iph.ihl * 4, p, outer);
}

/* The L4 header at l4 (l4_len bytes to the packet's end) and the tag behind it. */
static __always_inline int pt_parse_l4(const unsigned char *l4, __u32 l4_len,
				       struct pt_pkt *p, __u32 outer)
{
	/* One read for the L4 header and the tag behind it: ICMP and UDP headers
	 * are 8 bytes, the tag 12; TCP needs its first 16. */
	__u32 w[5];

	if (p->protocol == IPPROTO_ICMP || p->protocol == PT_IPPROTO_ICMPV6) {
		int v6 = p->protocol == PT_IPPROTO_ICMPV6;

		if (pt_read(w, 5, l4))
			return 0;
		struct icmphdr *ic = (struct icmphdr *)w;
		p->icmp_type = ic->type;
		p->icmp_code = ic->code;
		p->sport = ic->un.echo.id;
		p->dport = ic->un.echo.sequence;
		p->fixed = (__u32)ic->type << 16 ^ (ic->type == 0 || ic->type == 8 || ic->type > 127
							? ic->un.echo.sequence : w[3]);
		if (pt_watch && (ic->type == (v6 ? 128 : 8) || ic->type == (v6 ? 129 : 0)))
			return pt_flow_tag(p->family == 6 ? (void *)p->daddr6 : (void *)&p->daddr,
					   p->family, p->protocol, p->sport, p, 0);
		/* Echo request, echo reply: ICMP 8, 0; ICMPv6 128, 129. */
		if (ic->type == (v6 ? 128 : 8))
			return pt_tag_words(&w[2], p, PT_TAG_REQUEST);
		if (ic->type == (v6 ? 129 : 0))
			return pt_tag_words(&w[2], p, PT_TAG_REPLY);
		/* Errors quoting the packet: ICMP unreachable, time exceeded, parameter
		 * problem; ICMPv6 unreachable, packet too big, time exceeded, parameter. */
		if (v6 && ic->type >= 1 && ic->type <= 4)
			return pt_quoted_tag6(l4 + 8, p);
		if (!v6 && (ic->type == 3 || ic->type == 11 || ic->type == 12))
			return pt_quoted_tag(l4 + 8, p);
		return 0;
	}
	if (p->protocol == IPPROTO_UDP) {
		if (pt_read(w, 5, l4))
			return 0;
		p->sport = w[0] & 0xffff;
		p->dport = w[0] >> 16;
		p->fixed = w[1] & 0xffff;
		/* The flow first: an echo server's answer carries the request's tag. */
		if (pt_flow_tag(p->family == 6 ? (void *)p->daddr6 : (void *)&p->daddr, p->family,
				IPPROTO_UDP, w[0], p, 0))
			return 1;
		return pt_tag_words(&w[2], p, PT_TAG_REQUEST);
	}
	if (p->protocol == IPPROTO_TCP) {
		/* A probe's handshake segments carry no payload: a segment longer than
		 * the largest TCP header is bulk data, decided without reading it. */
		if (l4_len > 60 && !pt_watch)
			return 0;
		/* Watch: a segment the filter cannot pick and no flow can own is not
		 * read (a tunnel's inner packet always is: its outer one was picked). */
		if (pt_watch && outer && !pt_watch_wants(p, l4 - p->l4_off, outer)) {
			p->unwanted = 1;
			return 0;
		}
		if (pt_read(w, 4, l4)) /* ports, seq, ack, offset and flags */
			return 0;
		p->sport = w[0] & 0xffff;
		p->dport = w[0] >> 16;
		__u8 flags = (bpf_ntohl(w[3]) >> 16) & 0xff;
		__u32 seq = bpf_ntohl(w[1]), ack = bpf_ntohl(w[2]);
		p->tcp_flags = flags;
		p->fixed = w[1];
		__u32 header = (bpf_ntohl(w[3]) >> 28) * 4;
		p->tcp_payload = l4_len > header ? l4_len - header : 0;
		if (pt_watch)
			return pt_flow_tag(p->family == 6 ? (void *)p->daddr6 : (void *)&p->daddr,
					   p->family, IPPROTO_TCP, w[0], p, 0);
		/* Only the segments of a probe's handshake: data never matches. */
		if ((flags & 0x12) == 0x02) /* SYN: the probe */
			return pt_seq_tag(seq, p, PT_TAG_REQUEST);
		if ((flags & 0x12) == 0x12 || (flags & 0x14) == 0x14) /* SYN-ACK, RST-ACK */
			return pt_seq_tag(ack - 1, p, PT_TAG_REPLY);
		if (flags & 0x04) /* RST from the prober, after a SYN-ACK */
			return pt_seq_tag(seq - 1, p, PT_TAG_REQUEST);
		return 0;
	}
	return 0;
}

struct pt_outer {
	__u32 saddr[4], daddr[4], vni;
	__u16 sport, dport;
	__u8 family, encap;
};

/* The packet inside a tunnel packet p (parsed at l3), or 0: the inner IP header
 * behind IPIP (protocol 4, 41), GRE (47) or, for the UDP ports the loader named,
 * VXLAN or Geneve and their inner Ethernet header. The outer headers go to o. */
static __always_inline const unsigned char *pt_tunnel_inner(const unsigned char *l3,
							     const struct pt_pkt *p,
							     struct pt_outer *o)
{
	const unsigned char *l4 = l3 + p->l4_off;
	const unsigned char *inner = 0;
	__u8 encap = 0;
	__u32 hdr[2];

	if (p->protocol == 4 || p->protocol == 41) {
		encap = PT_ENCAP_IPIP;
		inner = l4;
	} else if (p->protocol == 47) {
		if (pt_read(hdr, 2, l4))
			return 0;
		__u16 flags = bpf_ntohs(hdr[0] & 0xffff), proto = bpf_ntohs(hdr[0] >> 16);
		__u32 skip = 4 + ((flags & 0x8000) ? 4 : 0);

		if (flags & 0x0007)
			return 0; /* not version 0: PPTP's enhanced GRE */
		if (flags & 0x2000) { /* the key follows the checksum, if any */
			__u32 key;
			if (pt_read(&key, 1, l4 + skip))
				return 0;
			o->vni = bpf_ntohl(key);
			skip += 4;
		}
		skip += (flags & 0x1000) ? 4 : 0;
		if (proto == 0x6558)
			skip += 14; /* gretap: an Ethernet frame inside */
		else if (proto != PT_ETH_P_IP && proto != PT_ETH_P_IPV6)
			return 0;
		encap = PT_ENCAP_GRE;
		inner = l4 + skip;
	} else if (p->protocol == IPPROTO_UDP) {
		__u32 zero = 0;
		struct pt_tunnels *t = bpf_map_lookup_elem(&pt_tunnels, &zero);
		if (!t || !t->port[0])
			return 0;
		for (int i = 0; i < PT_TUNNEL_PORTS; i++)
			if (t->port[i] && t->port[i] == p->dport)
				encap = t->kind[i];
		if (!encap || pt_read(hdr, 2, l4 + 8))
			return 0;
		__u8 *b = (__u8 *)hdr;
		__u32 skip = 8;
		if (encap == PT_ENCAP_VXLAN && !(b[0] & 0x08))
			return 0; /* no VNI: not a VXLAN header */
		if (encap == PT_ENCAP_GENEVE) {
			if (bpf_ntohs(*(__u16 *)(b + 2)) != 0x6558)
				return 0; /* carries no Ethernet frame */
			skip += (b[0] & 0x3f) * 4;
		}
		o->vni = bpf_ntohl(hdr[1]) >> 8;
		o->sport = p->sport;
		o->dport = p->dport;
		inner = l4 + 8 + skip + 14; /* past the inner Ethernet header */
	} else {
		return 0;
	}
	o->encap = encap;
	o->family = p->family;
	if (p->family == 6) {
		__builtin_memcpy(o->saddr, p->saddr6, 16);
		__builtin_memcpy(o->daddr, p->daddr6, 16);
	} else {
		o->saddr[0] = p->saddr;
		o->daddr[0] = p->daddr;
	}
	return inner;
}

/* `watch`: pt_watch_may_pick for the packet the filter runs on, the outer one
 * where p is a tunnel's inner packet (o->encap): its protocol is the tunnel's. */
static __always_inline int pt_watch_may_pick_outer(const struct pt_pkt *p,
						   const struct pt_outer *o)
{
	struct pt_watch_gate *g;
	__u8 f;

	if (!o->encap)
		return pt_watch_may_pick(p);
	g = bpf_map_lookup_elem(&pt_watch_gate, &pt_keys[0]);
	if (!g)
		return 1;
	f = o->family == 6;
	if (f && g->pick6_extended)
		return 1; /* the outer IPv6 header's extensions are not known here */
	if (o->encap == PT_ENCAP_GRE)
		return g->pick[f][47];
	if (o->encap == PT_ENCAP_IPIP)
		return g->pick[f][4] || g->pick[f][41];
	return g->pick[f][IPPROTO_UDP]; /* VXLAN, Geneve */
}

static __always_inline __u64 *pt_counter(__u32 which)
{
	return bpf_map_lookup_elem(&pt_ids, &which);
}

static __always_inline __u64 pt_next_id(void)
{
	__u64 *next = pt_counter(PT_ID_NEXT);

	return next ? __sync_fetch_and_add(next, 1) + 1 : 0;
}

static __always_inline void pt_forget(__u64 *key)
{
	__u64 *live = pt_counter(PT_ID_LIVE);

	if (bpf_map_delete_elem(&pt_tracked, key) == 0 && live && *live)
		__sync_fetch_and_add(live, -1);
}

static __always_inline __u64 pt_now(__u8 *clock)
{
	/* TAI moves with the wall clock (NTP steps included) and differs from it
	 * by a constant, so events convert exactly to capture timestamps. */
	if (bpf_core_enum_value_exists(enum bpf_func_id, BPF_FUNC_ktime_get_tai_ns)) {
		*clock = PT_CLOCK_TAI;
		return bpf_ktime_get_tai_ns();
	}
	*clock = PT_CLOCK_BOOTTIME;
	return bpf_ktime_get_boot_ns();
}

/* The IPv4 header: where the network header was set, else right after
 * Ethernet. Programs with typed arguments (tp_btf, fentry, netfilter) read the
 * skb with plain loads; kprobes must copy (PT_DIRECT is 0 in their objects). */
#ifndef PT_DIRECT
#define PT_DIRECT 1
#endif
#if PT_DIRECT
#define PT_SKB(skb, field) ((skb)->field)
#else
#define PT_SKB(skb, field) BPF_CORE_READ(skb, field)
#endif

/* Where the verifier explores pt_observe whole within its million instructions
 * (6.18), it is one inlined body: the fastest. 6.1's does not under `watch`
 * (E2BIG: the parse's branches times the filter's); its build (PT_SPLIT, the
 * *.compat.bpf.o) has the parse verified on its own, once for every caller
 * (a global function), with pointers passed as numbers (helper reads take
 * them so) and the packets in a per-CPU scratch, one per hook so that hooks
 * nesting on a CPU do not share one, as the frames must fit 512 bytes
 * together. */
#ifndef PT_SPLIT
#define PT_SPLIT 0
#endif
#if PT_SPLIT
#define PT_SKB_PTR(skb, field) BPF_CORE_READ(skb, field) /* a number, not a typed pointer */

struct pt_observe_scratch {
	struct pt_pkt p, q; /* the packet, and the one inside a tunnel's */
	struct pt_outer outer;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 16);
	__type(key, __u32);
	__type(value, struct pt_observe_scratch);
} pt_observe_scratch SEC(".maps");

__noinline int pt_parse_apart(__u64 l3, struct pt_pkt *p, __u32 outer)
{
	if (!p)
		return -1;
	return pt_parse((const unsigned char *)l3, p, outer);
}

__noinline __u64 pt_tunnel_inner_apart(__u64 l3, struct pt_pkt *p, struct pt_outer *o)
{
	if (!p || !o)
		return 0;
	return (__u64)pt_tunnel_inner((const unsigned char *)l3, p, o);
}
#define PT_PARSE(l3, p, outer) pt_parse_apart((__u64)(l3), p, outer)
#define PT_TUNNEL_INNER(l3, p, o) ((const unsigned char *)pt_tunnel_inner_apart((__u64)(l3), p, o))
#else
#define PT_SKB_PTR PT_SKB
#define PT_PARSE pt_parse
#define PT_TUNNEL_INNER pt_tunnel_inner
#endif

static __always_inline const unsigned char *pt_l3_of(struct sk_buff *skb, int from_data)
{
	__be16 proto = PT_SKB(skb, protocol);

	if (proto != bpf_htons(PT_ETH_P_IP) && proto != bpf_htons(PT_ETH_P_IPV6))
		return 0;
	if (from_data)
		return PT_SKB_PTR(skb, data);
	__u16 nh = PT_SKB(skb, network_header);
	if (nh == (__u16)~0U)
		return PT_SKB_PTR(skb, data) + 14;
	return PT_SKB_PTR(skb, head) + nh;
}

struct pt_where {
	struct net_device *dev;
	struct net *net; /* where there is no device */
	__u64 location;
	__u32 drop_reason;
	__u16 hook;
	__u8 via;
	__u8 nf_hook;
	__u8 final; /* the skb is being freed: stop following it */
	/* Only skbs already followed: a hook every packet reaches after one that
	 * reads tags costs untagged traffic a map read, not a header read. */
	__u8 follow_only;
	/* `watch`: a hook where packets enter the traced set (a device sends or
	 * receives, the host's own packets leave OUTPUT, a drop): the filter runs
	 * here, on packets not yet followed, and nowhere else. */
	__u8 entry;
};

static __always_inline void pt_watch_count(__u32 which)
{
	__u64 *n = bpf_map_lookup_elem(&pt_watch_stats, &pt_keys[which & 7]);

	if (n)
		*n += 1;
}

/* `watch`: whether the packet at l3 (read into p; avail bytes readable from l3,
 * the bound pt_parse gave the atoms) starts a flow: it enters the
 * set of namespaces the filter watches here, the filter matches it, and the
 * flow limit is not reached. p becomes the flow's first packet. A packet enters
 * where its namespace made it (a send with a socket, OUTPUT, a drop) or where a
 * device receives it from outside that set; a forwarded or bridged packet on
 * its way out, and one that crossed a veth from a watched namespace, were
 * filtered where they entered: once per packet. */
static __always_inline int pt_watch_pick(struct sk_buff *skb, const unsigned char *l3,
					 __u32 avail, struct pt_pkt *p, struct net_device *dev,
					 struct net *net, __u16 hook)
{
	if (hook == PT_HOOK_DEV_XMIT && !PT_SKB(skb, sk))
		return 0;
	struct pt_watch_gate *g = bpf_map_lookup_elem(&pt_watch_gate, &pt_keys[0]);
	struct pt_watch_scratch *s = bpf_map_lookup_elem(&pt_watch_scratch, &pt_keys[0]);

	if (!g || !s)
		return 0;
	/* First: its few loads cost less than the lookups below (the device's, the
	 * namespace's), and most traffic the filter does not match fails it. */
	if (p->unwanted || !pt_watch_atoms_pass(g, s, l3, avail)) {
		pt_watch_count(PT_WATCH_RULED_OUT);
		return 0;
	}
	/* Typed pointers where the program has them: loads, not helper calls. */
#if PT_DIRECT
	__u32 inum = dev ? dev->nd_net.net->ns.inum : net ? net->ns.inum : 0;
#else
	__u32 inum = dev ? BPF_CORE_READ(dev, nd_net.net, ns.inum)
			 : net ? BPF_CORE_READ(net, ns.inum) : 0;
#endif

	if (hook == PT_HOOK_DEV_RECV && dev) {
		/* First: most of what devices receive comes from a watched peer. */
		s->d.netns = inum;
		s->d.ifindex = PT_SKB(dev, ifindex);
		if (bpf_map_lookup_elem(&pt_watch_inside, &s->d))
			return 0;
	}
	if (!bpf_map_lookup_elem(&pt_watch_ns, &inum))
		return 0;
	pt_watch_count(PT_WATCH_RUNS);
	int match = pt_filter_match(l3, p->tot_len, avail);

	if (match < 0)
		pt_watch_count(PT_WATCH_UNDECIDED);
	if (match <= 0)
		return 0;
	__u64 *matches = bpf_map_lookup_elem(&pt_ids, &pt_keys[PT_ID_MATCHES]);
	__u64 *started = pt_counter(PT_ID_FLOWS);
	__u32 every = g->sample_every;

	/* Past the flow limit nothing more is followed, silently or not: a silent
	 * flow holds map entries the followed ones need. */
	if (started && *started >= pt_watch_flows) {
		pt_watch_count(PT_WATCH_OVER);
		return 0;
	}
	/* The reader is behind (half the ring buffer waits to be read): a flow
	 * started now would lose events. Left out, followed silently, counted; the
	 * reader's own rate (sample_every) follows within half a second. */
	if (bpf_ringbuf_query(&pt_events, BPF_RB_AVAIL_DATA) >
	    bpf_ringbuf_query(&pt_events, BPF_RB_RING_SIZE) / 2) {
		pt_watch_count(PT_WATCH_BEHIND);
		p->index = PT_FLOW_SILENT;
		p->tag_kind = PT_TAG_REQUEST;
		return 1;
	}
	if (every > 1 && matches && __sync_fetch_and_add(matches, 1) % every) {
		/* Left out: followed silently, so its later packets and answers are
		 * known by key and none of them starts a flow mid-way. */
		pt_watch_count(PT_WATCH_SAMPLED_OUT);
		p->index = PT_FLOW_SILENT;
		p->tag_kind = PT_TAG_REQUEST;
		return 1;
	}
	__u64 *flows = pt_counter(PT_ID_FLOWS);
	if (!flows)
		return 0;
	__u64 n = __sync_fetch_and_add(flows, 1);
	if (n >= pt_watch_flows) {
		pt_watch_count(PT_WATCH_OVER);
		return 0;
	}
	pt_watch_count(PT_WATCH_MATCHED);
	p->index = n;
	p->tag_kind = PT_TAG_REQUEST;
	return 1;
}

/* `watch`: a followed packet's flow keys as seen at this hop, its own way and
 * the way back, so that the flow's next packets and its answers (whatever NAT
 * made of them) are known by key from here on. Written where the packet was
 * not known by its key, and after each translation: a key holds no source
 * address, so a packet an SNAT rewrote is still known by the key of its way,
 * while its answer will come back to the new source. */
static __always_inline void pt_watch_keys(const struct pt_pkt *p, __u16 hook)
{
	__u8 icmp = p->protocol == IPPROTO_ICMP || p->protocol == PT_IPPROTO_ICMPV6;

	if (p->by_key && hook != PT_HOOK_NF_AFTER && hook != PT_HOOK_NAT_AFTER)
		return;
	if (!p->family || (p->tag_kind != PT_TAG_REQUEST && p->tag_kind != PT_TAG_REPLY))
		return;
	if (p->protocol != IPPROTO_TCP && p->protocol != IPPROTO_UDP && !icmp)
		return;
	if (icmp && p->icmp_type != 8 && p->icmp_type != 0 && p->icmp_type != 128 &&
	    p->icmp_type != 129)
		return;
	struct pt_watch_scratch *s = bpf_map_lookup_elem(&pt_watch_scratch, &pt_keys[0]);

	if (!s)
		return;
	__builtin_memset(&s->k, 0, sizeof(s->k));
	s->k.family = p->family;
	s->k.protocol = p->protocol;
	s->k.sport = p->sport;
	s->k.dport = icmp ? 0 : p->dport;
	if (p->family == 6)
		__builtin_memcpy(s->k.addr, p->daddr6, 16);
	else
		s->k.addr[0] = p->daddr;
	s->f.index = p->index;
	s->f.kind = p->tag_kind;
	bpf_map_update_elem(&pt_flows, &s->k, &s->f, BPF_NOEXIST);
	if (p->family == 6)
		__builtin_memcpy(s->k.addr, p->saddr6, 16);
	else
		s->k.addr[0] = p->saddr;
	s->k.sport = icmp ? p->sport : p->dport;
	s->k.dport = icmp ? 0 : p->sport;
	s->f.kind = p->tag_kind == PT_TAG_REQUEST ? PT_TAG_REPLY : PT_TAG_REQUEST;
	bpf_map_update_elem(&pt_flows, &s->k, &s->f, BPF_NOEXIST);
}

/* Who owns the sk_buff: what tells a socket that took a copy from a packet
 * nobody took. */
static __always_inline void pt_socket_of(struct sk_buff *skb, struct pt_event *e)
{
	struct sock *sk = PT_SKB(skb, sk);

	e->sk_family = e->sk_type = e->sk_protocol = e->sk_state = 0;
	e->sk_netns = 0;
	e->sk_destructor = 0;
	if (!sk)
		return;
	e->sk_destructor = (__u64)PT_SKB(skb, destructor);
#if PT_DIRECT
	e->sk_netns = sk->__sk_common.skc_net.net->ns.inum;
#else
	e->sk_netns = BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
#endif
	e->sk_family = PT_SKB(sk, __sk_common.skc_family);
	e->sk_state = PT_SKB(sk, __sk_common.skc_state);
	if (e->sk_state == TCP_TIME_WAIT || e->sk_state == TCP_NEW_SYN_RECV)
		return; /* struct sock's later fields are not there */
	e->sk_type = PT_SKB(sk, sk_type);
	e->sk_protocol = PT_SKB(sk, sk_protocol);
}

static __always_inline void pt_observe(struct sk_buff *skb, const unsigned char *l3,
				       struct pt_where w)
{
	__u64 key = (__u64)skb;
	__u64 skb_id;
	__u8 followed = 0;
	struct pt_tracked *t = 0;
	__u64 *live = pt_counter(PT_ID_LIVE);

	if (w.follow_only) {
		if (!live || !*live)
			return;
		t = bpf_map_lookup_elem(&pt_tracked, &key);
		if (!t)
			return;
	}
#if PT_SPLIT
	struct pt_observe_scratch *o = bpf_map_lookup_elem(&pt_observe_scratch,
							    &pt_keys[w.hook & 15]);
	if (!o)
		return;
	struct pt_pkt *p = &o->p, *q = &o->q;
	struct pt_outer *outer = &o->outer;

	__builtin_memset(p, 0, sizeof(*p));
	__builtin_memset(outer, 0, sizeof(*outer));
#else
	struct pt_pkt pkt = {}, inside;
	struct pt_outer around = {};
	struct pt_pkt *p = &pkt, *q = &inside;
	struct pt_outer *outer = &around;
#endif
	/* For `watch`: what the filter may read (padding past the IP packet
	 * included), so that the atoms read alike in the parse and in the pick. */
	const unsigned char *tail = pt_watch ? PT_SKB_PTR(skb, head) + PT_SKB(skb, tail) : 0;
	__u32 avail = tail > l3 ? tail - l3 : 0;
	int tagged = PT_PARSE(l3, p, pt_watch ? avail : 1);

	if (tagged == 0) {
		/* Encapsulated: the tag is in the packet inside. */
		const unsigned char *inner = PT_TUNNEL_INNER(l3, p, outer);
		int found = -1;

		if (inner) {
			__builtin_memset(q, 0, sizeof(*q));
			found = PT_PARSE(inner, q, 0);
		}

		if (found >= 0) {
			tagged = found;
			*p = *q;
		} else {
			outer->encap = 0;
		}
	}

	if (!w.follow_only && (tagged == 1 || (live && *live)))
		t = bpf_map_lookup_elem(&pt_tracked, &key);
	/* Watch: the filter sees what tcpdump on the device would, the outer packet;
	 * one of a version and protocol it never accepts enters nothing here (and
	 * costs no lookup). */
	if (pt_watch && tagged == 0 && !t && w.entry && pt_watch_may_pick_outer(p, outer)) {
		if (!pt_watch_pick(skb, l3, avail, p, w.dev, w.net, w.hook))
			return;
		tagged = 1;
	}
	if (tagged == 1) {
		/* Watch: a flow's packets share its number; the IP id tells them apart
		 * where an address freed on a path without a hook is reused. */
		if (t && t->index == p->index && t->kind == p->tag_kind &&
		    (!pt_watch || (t->ip_id == p->ip_id && t->fixed == p->fixed))) {
			skb_id = t->skb_id;
		} else {
			struct pt_tracked fresh = {
				.skb_id = pt_next_id(), .index = p->index,
				.ip_id = p->ip_id, .protocol = p->protocol, .kind = p->tag_kind,
				.fixed = p->fixed,
			};
			skb_id = fresh.skb_id;
			if (!w.final && bpf_map_update_elem(&pt_tracked, &key, &fresh, BPF_ANY) == 0
			    && !t && live)
				__sync_fetch_and_add(live, 1);
		}
	} else {
		if (!t)
			return;
		if (tagged < 0 || p->ip_id != t->ip_id || p->protocol != t->protocol ||
		    p->fixed != t->fixed) {
			pt_forget(&key); /* another packet at a reused address */
			return;
		}
		skb_id = t->skb_id;
		p->index = t->index;
		p->tag_kind = t->kind;
		followed = 1;
	}
	if (w.final)
		pt_forget(&key);
	if (pt_watch) {
		pt_watch_keys(p, w.hook);
		if (p->index == PT_FLOW_SILENT)
			return;
	} else if (pt_by_flow && p->tag_kind == PT_TAG_REQUEST && p->protocol == IPPROTO_UDP && p->family) {
		/* Where this hop's answer will be: to the source as seen here. */
		struct pt_flow_key back = {.family = p->family, .protocol = IPPROTO_UDP,
					   .sport = p->dport, .dport = p->sport};
		struct pt_flow answer = {.index = p->index, .kind = PT_TAG_REPLY};
		if (p->family == 6)
			__builtin_memcpy(back.addr, p->saddr6, 16);
		else
			back.addr[0] = p->saddr;
		bpf_map_update_elem(&pt_flows, &back, &answer, BPF_NOEXIST);
	}

	struct pt_event *e = bpf_ringbuf_reserve(&pt_events, sizeof(*e), 0);
	if (!e) {
		__u32 hook = w.hook;
		__u64 *lost = bpf_map_lookup_elem(&pt_lost, &hook);
		if (lost)
			*lost += 1;
		return;
	}
	e->time_ns = pt_now(&e->clock);
	e->skb = key;
	e->skb_id = skb_id;
	e->location = w.location;
	e->drop_reason = w.drop_reason;
	e->hook = w.hook;
	e->via = w.via;
	e->nf_hook = w.nf_hook;
	e->followed = followed;
	/* The packet's own length, the same at every hop: skb->len depends on
	 * which headers the layer at hand has pushed or pulled. */
	e->len = p->tot_len;
	e->mark = PT_SKB(skb, mark);
	pt_socket_of(skb, e);
	e->pkt_type = BPF_CORE_READ_BITFIELD_PROBED(skb, pkt_type);
	/* The frame's MACs, where a device or the bridge handles it: what the
	 * bridge's FDB decides on (forward, flood, deliver up). */
	__u8 eth[12] = {};
	if (w.hook == PT_HOOK_DEV_XMIT || w.hook == PT_HOOK_DEV_RECV ||
	    w.hook == PT_HOOK_BR_HANDLE_FRAME || w.hook == PT_HOOK_BR_FORWARD) {
		__u16 mh = PT_SKB(skb, mac_header);
		if (mh != (__u16)~0U && bpf_probe_read_kernel(eth, sizeof(eth), PT_SKB(skb, head) + mh))
			__builtin_memset(eth, 0, sizeof(eth));
	}
	__builtin_memcpy(e->dmac, eth, 6);
	__builtin_memcpy(e->smac, eth + 6, 6);
	e->run = pt_run; /* tagged or followed: this run's (pt_tracked is the tracer's) */
	e->index = p->index;
	e->tag_kind = p->tag_kind;
	e->saddr = p->saddr;
	e->daddr = p->daddr;
	e->family = p->family;
	__builtin_memcpy(e->saddr6, p->saddr6, 16);
	__builtin_memcpy(e->daddr6, p->daddr6, 16);
	e->sport = p->sport;
	e->dport = p->dport;
	e->ip_id = p->ip_id;
	e->protocol = p->protocol;
	e->ttl = p->ttl;
	e->icmp_type = p->icmp_type;
	e->icmp_code = p->icmp_code;
	e->tcp_flags = p->tcp_flags;
	e->tcp_seq = p->protocol == IPPROTO_TCP ? bpf_ntohl(p->fixed) : 0;
	e->tcp_payload = p->tcp_payload;
	e->encap = outer->encap;
	e->outer_family = outer->family;
	e->outer_sport = outer->sport;
	e->outer_dport = outer->dport;
	e->vni = outer->vni;
	__builtin_memcpy(e->outer_saddr, outer->saddr, 16);
	__builtin_memcpy(e->outer_daddr, outer->daddr, 16);
	/* Locals, not w....: CO-RE must not relocate our own struct pt_where. */
	struct net_device *dev = w.dev;
	struct net *net = w.net;
	if (dev) {
		e->ifindex = BPF_CORE_READ(dev, ifindex);
		BPF_CORE_READ_STR_INTO(&e->ifname, dev, name);
		e->netns = BPF_CORE_READ(dev, nd_net.net, ns.inum);
	} else {
		e->ifindex = 0;
		e->ifname[0] = 0;
		e->netns = net ? BPF_CORE_READ(net, ns.inum) : 0;
	}
	unsigned long nfct = PT_SKB(skb, _nfct);
	struct nf_conn *ct = (struct nf_conn *)(nfct & ~7UL);
	e->ct = (__u64)ct;
	e->ct_info = nfct ? nfct & 7 : PT_CT_NONE;
	if (ct && p->family == 4) {
		struct nf_conntrack_tuple orig, reply;
		bpf_core_read(&orig, sizeof(orig), &ct->tuplehash[0].tuple);
		bpf_core_read(&reply, sizeof(reply), &ct->tuplehash[1].tuple);
		e->ct_orig_src = orig.src.u3.ip;
		e->ct_orig_dst = orig.dst.u3.ip;
		e->ct_orig_sport = orig.src.u.all;
		e->ct_orig_dport = orig.dst.u.all;
		e->ct_reply_src = reply.src.u3.ip;
		e->ct_reply_dst = reply.dst.u3.ip;
		e->ct_reply_sport = reply.src.u.all;
		e->ct_reply_dport = reply.dst.u.all;
		e->ct_status = BPF_CORE_READ(ct, status);
	}
	bpf_ringbuf_submit(e, 0);
}

#endif
