/* The event every probe emits, and the names of hooks and tags.
 *
 * Plain C with fixed-width types and no vmlinux.h, so that user space can read
 * it too. The Python side does not copy this layout: it reads struct
 * pt_event from each object's BTF (pathtrace/kernel/layout.py), and a test
 * checks every field it uses.
 */
#ifndef PATHTRACE_H
#define PATHTRACE_H

#define PT_EVENT_VERSION 1
#define PT_IFNAMSIZ 16

/* The tag an injected packet carries, where NAT never rewrites it:
 * ICMP echo and UDP: the first 12 payload bytes, big-endian
 *   PT_TAG_MAGIC, run, index;
 * TCP SYN: the initial sequence number, (run & 0xffff) << 16 | index,
 *   which comes back as ack - 1 in the SYN-ACK or RST.
 * ICMP errors quote the packet that caused them, tag included. */
#define PT_TAG_MAGIC 0x50545243       /* "PTRC" */
#define PT_TAG_MAGIC_REPLY 0x50545252 /* "PTRR": the lab's echo services answer with it */

enum pt_hook {
	PT_HOOK_DEV_XMIT = 1,       /* a device starts transmitting */
	PT_HOOK_DEV_RECV = 2,       /* a device receives (after the driver) */
	PT_HOOK_DROP = 3,           /* kfree_skb: freed as a drop, with a reason */
	PT_HOOK_CONSUME = 4,        /* consume_skb: freed after normal use */
	PT_HOOK_NF_BEFORE = 5,      /* netfilter, just before NAT (or filter) */
	PT_HOOK_NF_AFTER = 6,       /* netfilter, just after NAT (or filter) */
	PT_HOOK_VETH_XMIT = 7,      /* veth_xmit */
	PT_HOOK_BR_HANDLE_FRAME = 8, /* br_handle_frame: a bridge port receives */
	PT_HOOK_BR_FORWARD = 9,     /* br_forward: the bridge forwards to a port */
	PT_HOOK_NAT_BEFORE = 10,    /* nf_nat_manip_pkt entry: before translation */
	PT_HOOK_NAT_AFTER = 11,     /* nf_nat_manip_pkt exit: after translation */
	PT_HOOK_CT_INVALID = 12,    /* conntrack says why it refuses it (location: the message) */
	PT_HOOK_MAX = 13,
};

enum pt_via {
	PT_VIA_TP_BTF = 1,
	PT_VIA_NETFILTER = 2,
	PT_VIA_FENTRY = 3,
	PT_VIA_FEXIT = 4,
	PT_VIA_KPROBE = 5,
	PT_VIA_KRETPROBE = 6,
};

enum pt_tag_kind {
	PT_TAG_REQUEST = 1,    /* the injected packet itself */
	PT_TAG_REPLY = 2,      /* the answer that echoes its tag */
	PT_TAG_ICMP_ERROR = 3, /* an ICMP error quoting a tagged packet */
};

struct pt_event {
	__u64 time_ns;  /* CLOCK_TAI: wall-clock time plus a constant, even across NTP steps */
	__u64 skb;      /* address of the sk_buff (reused after free) */
	__u64 skb_id;   /* unique id of this sk_buff's life in the trace */
	__u64 location; /* DROP: the kernel address that freed it */
	__u64 ct;       /* address of the conntrack entry, 0 if none */
	__u32 netns;    /* inode number of the network namespace */
	__u32 ifindex;
	__u32 len;      /* the IP header's total length */
	__u32 mark;
	__u32 drop_reason; /* enum skb_drop_reason */
	__u32 run;      /* the tag: run id and packet index */
	__u32 index;
	__u32 saddr;    /* IPv4, network order */
	__u32 daddr;
	__u32 ct_orig_src; /* conntrack tuples, network order */
	__u32 ct_orig_dst;
	__u32 ct_reply_src;
	__u32 ct_reply_dst;
	__u32 ct_status;
	__u16 ct_orig_sport;
	__u16 ct_orig_dport;
	__u16 ct_reply_sport;
	__u16 ct_reply_dport;
	__u16 sport;    /* network order; ICMP: id */
	__u16 dport;    /* network order; ICMP: sequence */
	__u16 ip_id;
	__u16 hook;     /* enum pt_hook */
	__u8 via;       /* enum pt_via */
	__u8 nf_hook;   /* netfilter hooks: NF_INET_*; NAT hooks: 0 SNAT, 1 DNAT */
	__u8 protocol;
	__u8 ttl;
	__u8 icmp_type;
	__u8 icmp_code;
	__u8 tcp_flags;
	__u8 tag_kind;  /* enum pt_tag_kind */
	__u8 followed;  /* 1: recognised by its skb, the tag was not readable here */
	__u8 pkt_type;
	__u8 clock;     /* 1: CLOCK_TAI, 2: CLOCK_BOOTTIME (kernels before 6.1) */
	__u8 dmac[6];   /* device and bridge hooks: the frame's Ethernet addresses */
	__u8 smac[6];   /* (zero where no Ethernet header is set) */
	__u8 family;    /* 4 or 6: which of saddr/daddr and saddr6/daddr6 hold the addresses */
	/* What conntrack made of the skb here: skb->_nfct's low bits (enum
	 * ip_conntrack_info: 0 established, 1 related, 2 new, 3 established reply,
	 * 4 related reply, 7 untracked), or PT_CT_NONE where no entry is attached
	 * (not seen by conntrack yet, or seen and found INVALID). */
	__u8 ct_info;
	char ifname[PT_IFNAMSIZ];
	__u8 saddr6[16]; /* IPv6, network order (family 6); ip_id holds the flow label's */
	__u8 daddr6[16]; /* low 16 bits, ttl the hop limit; conntrack tuples stay zero */
	/* A tagged packet inside a tunnel: the outer headers around it. */
	__u8 encap;        /* enum pt_encap */
	__u8 outer_family; /* 4 or 6 */
	__u16 outer_sport; /* network order */
	__u16 outer_dport;
	__u32 vni;         /* VXLAN/Geneve network identifier; GRE: the key, if any */
	__u8 outer_saddr[16]; /* IPv4: the first 4 bytes */
	__u8 outer_daddr[16];
	/* The socket the sk_buff belongs to here, if any: its sender's (even past a
	 * veth, on some kernels), or once queued to a receiver, the receiver's (still
	 * set when it is freed); the destructor says which. 0 where none; type and
	 * protocol 0 for a mini socket (a request or time-wait), which has neither. */
	__u64 sk_destructor; /* skb->destructor: sock_rfree once in a receive queue */
	__u32 sk_netns;      /* the socket's network namespace (inode) */
	__u16 sk_family;   /* AF_* */
	__u16 sk_type;     /* SOCK_* */
	__u16 sk_protocol; /* IPPROTO_*; AF_PACKET: the ethertype, network order */
	__u16 sk_state;    /* TCP_* (a socket of any kind has one) */
	/* TCP: what tells a segment sent again from a new one. Run: probes' handshake
	 * segments only (bulk data is not parsed). */
	__u32 tcp_seq;     /* host order */
	__u16 tcp_payload; /* bytes after the TCP header */
};

enum pt_encap {
	PT_ENCAP_NONE = 0,
	PT_ENCAP_VXLAN = 1,  /* UDP, 8-byte VXLAN header, inner Ethernet */
	PT_ENCAP_GENEVE = 2, /* UDP, Geneve header and options, inner Ethernet */
	PT_ENCAP_IPIP = 3,   /* IP protocol 4 or 41: the inner IP header right after */
	PT_ENCAP_GRE = 4,    /* IP protocol 47: GRE (key in vni), inner IP or Ethernet */
};

#define PT_TUNNEL_PORTS 4 /* UDP ports of tunnel devices the loader can name */

/* A UDP probe known by its flow (pt_flows in common.bpf.h): the key is what a
 * datagram carries, its destination address and ports; the loader writes
 * entries too, so user space reads this layout from the objects' BTF. */
struct pt_flow_key {
	__u32 addr[4]; /* IPv4: addr[0] */
	__u16 sport;   /* network order */
	__u16 dport;
	__u8 family;
	__u8 protocol;
	__u8 pad[2];
};

struct pt_flow {
	__u32 index;
	__u8 kind; /* enum pt_tag_kind: REQUEST or REPLY */
	__u8 pad[3];
};

/* `pathtrace watch`: real packets chosen by a pcap-filter expression, compiled
 * by libpcap for raw IP (the bytes from the IP header on, at every hook) into
 * classic BPF, which the probes run where a packet enters the traced set
 * (filter.bpf.h). The loader writes it into pt_watch_vm. */
#define PT_FILTER_INSNS 128

struct pt_watch_insn {
	__u16 code;
	__u8 jt;
	__u8 jf;
	__u32 k;
};

struct pt_watch_filter {
	__u32 len; /* instructions in use */
	__u32 pad;
	struct pt_watch_insn insn[PT_FILTER_INSNS];
};

/* `watch`: a comparison every packet the filter accepts passes one of (the
 * loader reads them off the filter: pathtrace/kernel/needs.py): the size bytes
 * at off from the IP header, plus 4 * (the low nibble of byte base - 1) where
 * base is set (classic BPF's MSH: how libpcap finds ports past IPv4's header),
 * big-endian, masked, equal to value. */
#define PT_WATCH_ATOMS 8

struct pt_watch_atom {
	__u16 off;
	__u8 size; /* 1, 2 or 4 */
	__u8 base;
	__u32 mask;
	__u32 value;
};

/* `watch`: what the filter can accept at all, by IP version (0: 4, 1: 6) and the
 * protocol byte of the IP header, worked out by the loader from the filter
 * (pathtrace/kernel/reach.py). Traffic of a protocol the filter never accepts
 * is not run through it, and its headers past IP are not read where no flow of
 * that protocol can be followed (keyed). */
struct pt_watch_gate {
	__u8 pick[2][256];
	__u8 keyed[2][256];
	__u8 pick6_extended; /* an IPv6 packet with extension headers */
	__u8 pad[3];
	/* Sampling: of the new flows the filter matches, 1 in sample_every is
	 * followed and reported; the others are followed silently (their packets
	 * known by key, so none is picked again mid-flow) and counted. 0 or 1:
	 * every flow. The loader changes it while armed. */
	__u32 sample_every;
	/* Packets that fail every atom are not run through the filter; 0 atoms:
	 * every packet is (some path of the filter tests no usable equality). */
	__u32 atoms;
	struct pt_watch_atom atom[PT_WATCH_ATOMS];
};

#define PT_CT_NONE 0x80

/* conntrack's message on an invalid packet (conntrack.bpf.c's pt_notes). */
#define PT_NOTE_LEN 96

struct pt_note {
	char text[PT_NOTE_LEN];
};

/* A silent flow's index: followed for its identity only, no events. */
#define PT_FLOW_SILENT 0xfffffffeU

/* pt_watch_stats (per CPU): what the filter cost and found. */
enum pt_watch_stat {
	PT_WATCH_RUNS = 0,      /* packets the filter was run on */
	PT_WATCH_MATCHED = 1,   /* of those, matched: a new flow followed */
	PT_WATCH_OVER = 2,      /* matched past the flow limit: not followed */
	PT_WATCH_UNDECIDED = 3, /* runs interrupted (by another probe on the CPU) thrice */
	PT_WATCH_SAMPLED_OUT = 4, /* matched, a new flow, left out by sampling (silent) */
	PT_WATCH_BEHIND = 5,      /* the same, left out while the reader was behind */
	PT_WATCH_RULED_OUT = 6,   /* not run: they failed every atom of pt_watch_gate */
	PT_WATCH_STATS = 7,
};

#endif
