/* Classic BPF, as libpcap compiles a pcap-filter expression, run on a packet's
 * bytes from its IP header on (linktype RAW): `pathtrace watch`'s filter.
 *
 * An interpreter, not a translation to eBPF: the probes are verified once,
 * before the filter is known (the loader writes it into pt_watch_vm), and the
 * verifier sees one instruction's step (bpf_loop's callback), not a loop over
 * every path a filter may take. Loads past the bytes the kernel holds in one
 * piece (skb->tail) fail the match, as loads past a packet's end do in
 * classic BPF: a filter on headers always has them there.
 */
#ifndef PT_FILTER_BPF_H
#define PT_FILTER_BPF_H

struct pt_filter_vm {
	const unsigned char *pkt;
	__u32 len;   /* the packet's length (classic BPF's len) */
	__u32 avail; /* bytes readable from pkt */
	__u32 a, x, pc, ret;
	__u32 word; /* a load's bytes: the step keeps nothing on the stack */
	__u32 runs; /* runs begun on this CPU: a run that finds it moved was interrupted */
	__u32 mem[16];
	struct pt_watch_filter prog; /* the loader writes it on every CPU */
};

/* The machine (registers, scratch memory, its program): per CPU, off the probes'
 * stack (which the packet's own parsing fills), one lookup per step. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct pt_filter_vm);
} pt_watch_vm SEC(".maps");

/* Classic BPF's opcode fields (linux/bpf_common.h, linux/filter.h). */
#define PT_C_CLASS(c) ((c) & 0x07)
#define PT_C_SIZE(c) ((c) & 0x18)
#define PT_C_MODE(c) ((c) & 0xe0)
#define PT_C_OP(c) ((c) & 0xf0)
#define PT_C_SRC(c) ((c) & 0x08)

/* Loads size bytes (1, 2, 4) at off, big-endian; 0 and the end of the run when
 * they are not all there. */
static __always_inline int pt_filter_load(struct pt_filter_vm *vm, __u32 off, __u32 size,
					  __u32 *out)
{
	__u32 word;

	if (off > 0xffff || off + size > vm->avail)
		return -1;
	/* Into the map value: a stack slot here would stack on the probe's own. */
	if (pt_read(&vm->word, 1, vm->pkt + off))
		return -1;
	word = bpf_ntohl(vm->word);
	*out = size == 4 ? word : size == 2 ? word >> 16 : word >> 24;
	return 0;
}

/* One instruction; 1 ends the run (vm->ret holds the answer). */
static long pt_filter_step(__u32 i, void *ctx)
{
	struct pt_filter_vm *vm = bpf_map_lookup_elem(&pt_watch_vm, &pt_keys[0]);

	if (!vm)
		return 1;
	__u32 pc = vm->pc;
	vm->ret = 0;
	if (pc >= vm->prog.len || pc >= PT_FILTER_INSNS)
		return 1;
	const struct pt_watch_insn *in = &vm->prog.insn[pc];
	__u32 k = in->k, size, v, src;
	__u16 c = in->code;

	vm->pc = pc + 1;
	switch (PT_C_CLASS(c)) {
	case 0x00: /* LD */
	case 0x01: /* LDX */
		size = PT_C_SIZE(c) == 0x10 ? 1 : PT_C_SIZE(c) == 0x08 ? 2 : 4;
		switch (PT_C_MODE(c)) {
		case 0x00: v = k; break;                   /* IMM */
		case 0x80: v = vm->len; break;             /* LEN */
		case 0x60: v = vm->mem[k & 15]; break;     /* MEM */
		case 0x20:                                 /* ABS */
			if (pt_filter_load(vm, k, size, &v))
				return 1;
			break;
		case 0x40:                                 /* IND */
			if (pt_filter_load(vm, vm->x + k, size, &v))
				return 1;
			break;
		case 0xa0:                                 /* MSH: 4 * (byte & 0xf) */
			if (pt_filter_load(vm, k, 1, &v))
				return 1;
			v = (v & 0xf) << 2;
			break;
		default:
			return 1;
		}
		if (PT_C_CLASS(c) == 0x00)
			vm->a = v;
		else
			vm->x = v;
		return 0;
	case 0x02: /* ST */
		vm->mem[k & 15] = vm->a;
		return 0;
	case 0x03: /* STX */
		vm->mem[k & 15] = vm->x;
		return 0;
	case 0x04: /* ALU */
		src = PT_C_SRC(c) ? vm->x : k;
		switch (PT_C_OP(c)) {
		case 0x00: vm->a += src; break;
		case 0x10: vm->a -= src; break;
		case 0x20: vm->a *= src; break;
		case 0x30:
			if (!src)
				return 1;
			vm->a /= src;
			break;
		case 0x90:
			if (!src)
				return 1;
			vm->a %= src;
			break;
		case 0x40: vm->a |= src; break;
		case 0x50: vm->a &= src; break;
		case 0x60: vm->a = src < 32 ? vm->a << src : 0; break;
		case 0x70: vm->a = src < 32 ? vm->a >> src : 0; break;
		case 0x80: vm->a = -vm->a; break;
		case 0xa0: vm->a ^= src; break;
		default: return 1;
		}
		return 0;
	case 0x05: /* JMP */
		src = PT_C_SRC(c) ? vm->x : k;
		switch (PT_C_OP(c)) {
		case 0x00: vm->pc += k; return 0;          /* JA */
		case 0x10: v = vm->a == src; break;
		case 0x20: v = vm->a > src; break;
		case 0x30: v = vm->a >= src; break;
		case 0x40: v = (vm->a & src) != 0; break;
		default: return 1;
		}
		vm->pc += v ? in->jt : in->jf;
		return 0;
	case 0x06: /* RET */
		vm->ret = PT_C_SIZE(c) == 0x10 ? vm->a : PT_C_SIZE(c) == 0x08 ? vm->x : k;
		return 1;
	case 0x07: /* MISC: TAX, TXA */
		if (PT_C_OP(c) == 0x80)
			vm->a = vm->x;
		else
			vm->x = vm->a;
		return 0;
	}
	return 1;
}

/* One run of the filter: 1 a match, 0 none, -1 when another run on this CPU came
 * in between (its answer is then not this packet's). */
static __always_inline int pt_filter_run(struct pt_filter_vm *vm, const unsigned char *l3,
					 __u32 len, __u32 avail)
{
	__u32 run = ++vm->runs;

	vm->pkt = l3;
	vm->len = len;
	vm->avail = avail < len ? avail : len;
	vm->a = vm->x = vm->pc = vm->ret = 0;
	bpf_loop(PT_FILTER_INSNS, pt_filter_step, 0, 0);
	__u32 ret = vm->ret;
	return vm->runs == run ? ret != 0 : -1;
}

/* Whether the packet at l3 (len bytes long, avail of them readable) matches.
 * A probe in process context (OUTPUT, say) can be interrupted by a softirq whose
 * probe runs the filter on this CPU's machine too: the interrupted run starts
 * again (the interrupting one ran whole, inside the interruption). */
static __always_inline int pt_filter_match(const unsigned char *l3, __u32 len, __u32 avail)
{
	struct pt_filter_vm *vm = bpf_map_lookup_elem(&pt_watch_vm, &pt_keys[0]);

	if (!vm)
		return 0;
	int match = pt_filter_run(vm, l3, len, avail);

	if (match < 0)
		match = pt_filter_run(vm, l3, len, avail);
	if (match < 0)
		match = pt_filter_run(vm, l3, len, avail);
	return match; /* -1: interrupted three times, not decided */
}

#endif
