/* SPDX-License-Identifier: MIT */
/*
 * vhu-trace: an interposer between a vhost-user front-end and its back-end
 * that prints every message it forwards.
 *
 * The front-end connects to --listen; for each front-end, vhu-trace
 * connects to the real back-end at --connect and forwards every message
 * both ways on one io_uring (the vhu engine), unmodified and in order, fds
 * included. The back-end channel is traced too: the fd of
 * SET_BACKEND_REQ_FD is replaced by one end of a socketpair of ours, and
 * both the front-end's channel socket and our other end become engine
 * connections like the main pair.
 *
 * Transparency versus validation: the tracer's connections deliver every
 * message that frames (frames_only: a body of at most 64 KiB, at most
 * VHU_MAX_FDS fds) without judging it, and the tracer checks each message
 * against the strict rules of its direction itself, only to flag it in the
 * trace (or, with --strict, to close both sides). So a malformed message
 * (bad version, reserved flags, unknown code, body or fd count wrong) is
 * forwarded unmodified, as the other peer would have received it directly.
 * Only what cannot be framed (a larger body, more fds) ends the session.
 *
 * The peers are not trusted: every decoded field is read through memcpy
 * within the body's size, and no value from the wire indexes anything.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <vhu/uring.h>
#include <vhu/vhu.h>

#include "common/clock.h"
#include "common/json.h"
#include "common/signals.h"

/* Largest body forwarded: above any real message, small enough to hold per connection. */
#define TRACE_MAX_SIZE		(64u * 1024u)
/* Room for several largest messages, so a burst does not hit backpressure at once. */
#define SENDQ_BYTES		(4u * (TRACE_MAX_SIZE + VHU_HDR_SIZE + 64u))
#define SENDQ_MSGS		1024u
/* A session needs four connections; a few sessions may overlap while one drains. */
#define RING_CONNS		32u
/* How long a wait may block before the stop flag and the drains are looked at again. */
#define WAIT_SLICE_MS		200
/* Messages to a side that is being closed get this long to leave (a peer may stop reading). */
#define DRAIN_NS		(2ll * 1000000000)

/* Exit status; documented in usage() and vhu-trace.1. */
enum status {
	ST_OK = 0,
	ST_FAIL = 1,
	ST_USAGE = 2,
	ST_CONNECT = 3,
	ST_PROTOCOL = 5,
};

/* The peer a connection of ours faces. */
enum side {
	SIDE_FRONT = 0,
	SIDE_BACK = 1,
};

struct options {
	const char *listen;
	const char *connect;
	const char *output;
	uint8_t recv_mode;
	bool strict;
	bool json;
	bool hex;
	bool verbose;
	bool keep;
};

struct session;

/* One engine connection of a session; the conn's ctx. */
struct end {
	struct session *s;
	struct vhu_conn *conn;
	struct end *peer;	/* where its messages go; NULL once that side is gone */
	struct end *next;	/* in the session's list */
	uint8_t chan;		/* enum vhu_channel */
	uint8_t side;		/* enum side: the peer this connection faces */
	bool draining;		/* close once the send queue is empty */
	int64_t drain_until;
	struct vhu_rules strict;	/* what a well-formed message from this peer obeys */
};

struct session {
	unsigned int id;
	struct end *ends;	/* every end not yet closed */
	bool ending;		/* the main channel lost a side, or --strict refused one */
	bool connect_failed;	/* the back-end could not be reached */
	int fault;		/* first error that ended the session, 0 if none */
	int refused;		/* the error --strict closed a side with, 0 if none */
	struct session *next;
};

static struct {
	struct options opt;
	FILE *out;
	int64_t t0;
	struct vhu_ring *ring;
	struct vhu_ulistener *listener;
	struct session *sessions;
	unsigned int next_id;
	bool done;
	int status;
} app;

/* Options ------------------------------------------------------------ */

static void
usage(FILE *out)
{
	fprintf(out,
		"Usage: vhu-trace --listen PATH --connect PATH [options]\n"
		"Interpose between a vhost-user front-end and back-end and print every message.\n"
		"The front-end connects to the --listen path; vhu-trace connects to the back-end\n"
		"at the --connect path and forwards every message both ways, unmodified, fds\n"
		"included, tracing the back-end channel (SET_BACKEND_REQ_FD) as well.\n"
		"\n"
		"Options:\n"
		"  -l, --listen PATH        socket path the front-end connects to\n"
		"  -c, --connect PATH       socket path of the real back-end\n"
		"  -r, --recv-mode MODE     exact (default) or stream\n"
		"  -s, --strict             close both sides on a message that breaks the rules\n"
		"                           of its direction (default: forward it, flagged)\n"
		"  -k, --keep-listening     serve the next front-end when a session ends\n"
		"  -j, --json               one JSON object per line\n"
		"  -x, --hex                raw bytes of each message after its line\n"
		"  -v, --verbose            name the type of each passed fd (memfd, eventfd, ...)\n"
		"  -o, --output FILE        write the trace to FILE instead of stdout\n"
		"  -h, --help               show this help\n"
		"\n"
		"Line format:\n"
		"  SECONDS DIR CHANNEL REQUEST flags=0xF(NAMES) size=N fds=N FIELDS...\n"
		"  DIR is F->B or B->F, CHANNEL main or backend-channel; a message that breaks\n"
		"  the strict rules ends with INVALID and the fault. Lines with ---- are events.\n"
		"\n"
		"Exit status:\n"
		"  0  the session ended because a side closed (or a signal stopped vhu-trace)\n"
		"  1  other failure (out of memory, a peer that stopped reading, ...)\n"
		"  2  usage error\n"
		"  3  cannot listen on --listen or connect to --connect\n"
		"  5  protocol error: a message could not be framed, or --strict refused one\n"
		"\n"
		"Examples:\n"
		"  vhu-trace --listen /tmp/trace.sock --connect /run/vhost-user-blk.sock\n"
		"  vhu-trace -l /tmp/trace.sock -c /tmp/vfsd.sock --json -o trace.jsonl\n"
		"  vhu-trace -l /tmp/trace.sock -c /tmp/be.sock --strict --hex -v\n");
}

/* \return -1 to run, or the exit status (after --help or a usage error). */
static int
parse_options(int argc, char **argv, struct options *o)
{
	static const struct option longopts[] = {
		{ "listen", required_argument, NULL, 'l' },
		{ "connect", required_argument, NULL, 'c' },
		{ "recv-mode", required_argument, NULL, 'r' },
		{ "strict", no_argument, NULL, 's' },
		{ "keep-listening", no_argument, NULL, 'k' },
		{ "json", no_argument, NULL, 'j' },
		{ "hex", no_argument, NULL, 'x' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "output", required_argument, NULL, 'o' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	memset(o, 0, sizeof(*o));
	o->recv_mode = VHU_RECV_EXACT;
	while ((c = getopt_long(argc, argv, "l:c:r:skjxvo:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'l':
			o->listen = optarg;
			break;
		case 'c':
			o->connect = optarg;
			break;
		case 'r':
			if (strcmp(optarg, "exact") == 0) {
				o->recv_mode = VHU_RECV_EXACT;
			} else if (strcmp(optarg, "stream") == 0) {
				o->recv_mode = VHU_RECV_STREAM;
			} else {
				fprintf(stderr, "vhu-trace: --recv-mode must be exact or stream, "
					"not \"%s\"\n", optarg);
				return ST_USAGE;
			}
			break;
		case 's':
			o->strict = true;
			break;
		case 'k':
			o->keep = true;
			break;
		case 'j':
			o->json = true;
			break;
		case 'x':
			o->hex = true;
			break;
		case 'v':
			o->verbose = true;
			break;
		case 'o':
			o->output = optarg;
			break;
		case 'h':
			usage(stdout);
			return ST_OK;
		default:
			usage(stderr);
			return ST_USAGE;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "vhu-trace: unexpected argument \"%s\"\n", argv[optind]);
		usage(stderr);
		return ST_USAGE;
	}
	if (o->listen == NULL || o->connect == NULL) {
		fprintf(stderr, "vhu-trace: %s is required\n",
			o->listen == NULL ? "--listen PATH" : "--connect PATH");
		usage(stderr);
		return ST_USAGE;
	}
	if (strcmp(o->listen, o->connect) == 0) {
		fprintf(stderr, "vhu-trace: --listen and --connect must differ\n");
		return ST_USAGE;
	}
	return -1;
}

/* Output primitives ---------------------------------------------------- */

/* Seconds since start with microseconds: the same text in both formats. */
static void
put_time(void)
{
	int64_t us = (tool_now_ns() - app.t0) / 1000;

	if (us < 0) {
		us = 0;
	}
	if (app.opt.json) {
		fprintf(app.out, "{\"t\":%" PRId64 ".%06" PRId64, us / 1000000, us % 1000000);
	} else {
		fprintf(app.out, "%5" PRId64 ".%06" PRId64, us / 1000000, us % 1000000);
	}
}

/*
 * Fields of a decoded body, written in either format: text as key=value
 * separated by spaces with {...} and [...] for nesting; JSON as members.
 * sep[depth] says whether a separator is due before the next item.
 */
struct emit {
	unsigned int depth;
	bool sep[8];
};

static void
e_key(struct emit *e, const char *key)
{
	FILE *f = app.out;

	if (e->sep[e->depth]) {
		putc(app.opt.json ? ',' : ' ', f);
	}
	e->sep[e->depth] = true;
	if (key == NULL) {
		return;
	}
	if (app.opt.json) {
		tool_json_str(app.out, key);
		putc(':', f);
	} else {
		fprintf(f, "%s=", key);
	}
}

static void
e_open(struct emit *e, const char *key, char bracket)
{
	e_key(e, key);
	putc(bracket, app.out);
	if (e->depth + 1 < sizeof(e->sep) / sizeof(e->sep[0])) {
		e->depth++;
	}
	e->sep[e->depth] = false;
}

static void
e_close(struct emit *e, char bracket)
{
	putc(bracket, app.out);
	if (e->depth > 0) {
		e->depth--;
	}
}

static void
e_dec(struct emit *e, const char *key, uint64_t v)
{
	e_key(e, key);
	fprintf(app.out, "%" PRIu64, v);
}

/* Addresses, sizes and masks: hex, and a string in JSON (no precision lost past 2^53). */
static void
e_hex(struct emit *e, const char *key, uint64_t v)
{
	e_key(e, key);
	fprintf(app.out, app.opt.json ? "\"0x%" PRIx64 "\"" : "0x%" PRIx64, v);
}

static void
e_str(struct emit *e, const char *key, const char *v)
{
	e_key(e, key);
	if (app.opt.json) {
		tool_json_str(app.out, v);
	} else {
		fputs(v, app.out);
	}
}

static void
e_bool(struct emit *e, const char *key, bool v)
{
	e_key(e, key);
	fputs(v ? "true" : "false", app.out);
}

/* A feature mask with the name of each bit set (unnamed bits as "bit N"). */
static void
e_bits(struct emit *e, uint64_t mask, bool protocol)
{
	const char *key = protocol ? "protocol_features" : "features";
	char buf[16];
	unsigned int bit;
	bool first = true;

	e_hex(e, key, mask);
	if (app.opt.json) {
		e_open(e, protocol ? "protocol_feature_names" : "feature_names", '[');
	} else {
		putc('(', app.out);
	}
	for (bit = 0; bit < 64; bit++) {
		const char *name;

		if ((mask & (1ull << bit)) == 0) {
			continue;
		}
		name = protocol ? vhu_protocol_feature_name(bit) : vhu_feature_name(bit);
		if (name == NULL) {
			/* Text fields are space-separated: no space inside a name there. */
			snprintf(buf, sizeof(buf), app.opt.json ? "bit %u" : "bit%u", bit);
			name = buf;
		}
		if (app.opt.json) {
			e_key(e, NULL);
			tool_json_str(app.out, name);
		} else {
			fprintf(app.out, "%s%s", first ? "" : ",", name);
		}
		first = false;
	}
	if (app.opt.json) {
		e_close(e, ']');
	} else {
		putc(')', app.out);
	}
}

/* Body decoding ------------------------------------------------------ */

static uint64_t
rd64(const uint8_t *b, size_t off)
{
	uint64_t v;

	memcpy(&v, b + off, sizeof(v));
	return v;
}

static uint32_t
rd32(const uint8_t *b, size_t off)
{
	uint32_t v;

	memcpy(&v, b + off, sizeof(v));
	return v;
}

static uint16_t
rd16(const uint8_t *b, size_t off)
{
	uint16_t v;

	memcpy(&v, b + off, sizeof(v));
	return v;
}

static void
d_region(struct emit *e, const char *key, const uint8_t *b)
{
	e_open(e, key, '{');
	e_hex(e, "gpa", rd64(b, offsetof(struct vhu_mem_region, guest_phys_addr)));
	e_hex(e, "size", rd64(b, offsetof(struct vhu_mem_region, size)));
	e_hex(e, "uaddr", rd64(b, offsetof(struct vhu_mem_region, user_addr)));
	e_hex(e, "offset", rd64(b, offsetof(struct vhu_mem_region, mmap_offset)));
	e_close(e, '}');
}

static void
d_mem_table(struct emit *e, const uint8_t *b, uint32_t size)
{
	uint32_t n = rd32(b, offsetof(struct vhu_mem_table, nregions));
	uint32_t i;

	e_dec(e, "nregions", n);
	e_open(e, "regions", '[');
	/* The count is the peer's word: show only the regions the body really holds. */
	for (i = 0; i < n && VHU_MEM_TABLE_SIZE(i + 1) <= size; i++) {
		d_region(e, NULL, b + VHU_MEM_TABLE_SIZE(i));
	}
	e_close(e, ']');
}

static void
d_vring_state(struct emit *e, const uint8_t *b)
{
	e_dec(e, "index", rd32(b, offsetof(struct vhu_vring_state, index)));
	e_dec(e, "num", rd32(b, offsetof(struct vhu_vring_state, num)));
}

static void
d_vring_addr(struct emit *e, const uint8_t *b)
{
	e_dec(e, "index", rd32(b, offsetof(struct vhu_vring_addr, index)));
	e_hex(e, "addr_flags", rd32(b, offsetof(struct vhu_vring_addr, flags)));
	e_hex(e, "desc", rd64(b, offsetof(struct vhu_vring_addr, desc)));
	e_hex(e, "used", rd64(b, offsetof(struct vhu_vring_addr, used)));
	e_hex(e, "avail", rd64(b, offsetof(struct vhu_vring_addr, avail)));
	e_hex(e, "log", rd64(b, offsetof(struct vhu_vring_addr, log)));
}

/* SET_VRING_KICK/CALL/ERR: queue index and the no-fd bit, with the raw word. */
static void
d_vring_file(struct emit *e, const uint8_t *b)
{
	uint64_t v = rd64(b, 0);

	e_dec(e, "index", v & VHU_VRING_IDX_MASK);
	e_bool(e, "nofd", (v & VHU_VRING_NOFD) != 0);
	e_hex(e, "u64", v);
}

static void
d_config(struct emit *e, const uint8_t *b)
{
	e_dec(e, "config_offset", rd32(b, offsetof(struct vhu_config, offset)));
	e_dec(e, "config_size", rd32(b, offsetof(struct vhu_config, size)));
	e_hex(e, "config_flags", rd32(b, offsetof(struct vhu_config, flags)));
}

static void
d_log(struct emit *e, const uint8_t *b)
{
	e_hex(e, "mmap_size", rd64(b, offsetof(struct vhu_log, mmap_size)));
	e_hex(e, "mmap_offset", rd64(b, offsetof(struct vhu_log, mmap_offset)));
}

static void
d_inflight(struct emit *e, const uint8_t *b)
{
	e_hex(e, "mmap_size", rd64(b, offsetof(struct vhu_inflight, mmap_size)));
	e_hex(e, "mmap_offset", rd64(b, offsetof(struct vhu_inflight, mmap_offset)));
	e_dec(e, "num_queues", rd16(b, offsetof(struct vhu_inflight, num_queues)));
	e_dec(e, "queue_size", rd16(b, offsetof(struct vhu_inflight, queue_size)));
}

static void
d_iotlb(struct emit *e, const uint8_t *b)
{
	e_hex(e, "iova", rd64(b, offsetof(struct vhu_iotlb, iova)));
	e_hex(e, "iotlb_size", rd64(b, offsetof(struct vhu_iotlb, size)));
	e_hex(e, "uaddr", rd64(b, offsetof(struct vhu_iotlb, uaddr)));
	e_dec(e, "perm", b[offsetof(struct vhu_iotlb, perm)]);
	e_dec(e, "type", b[offsetof(struct vhu_iotlb, type)]);
}

static void
d_uuid(struct emit *e, const uint8_t *b)
{
	char s[33];
	unsigned int i;

	for (i = 0; i < 16; i++) {
		snprintf(s + 2 * i, 3, "%02x", b[i]);
	}
	e_str(e, "uuid", s);
}

static void
d_vring_area(struct emit *e, const uint8_t *b)
{
	d_vring_file(e, b);
	e_hex(e, "area_size", rd64(b, offsetof(struct vhu_vring_area, size)));
	e_hex(e, "area_offset", rd64(b, offsetof(struct vhu_vring_area, offset)));
}

static void
d_shmem_map(struct emit *e, const uint8_t *b)
{
	e_dec(e, "shmid", b[offsetof(struct vhu_shmem_map, shmid)]);
	e_hex(e, "fd_offset", rd64(b, offsetof(struct vhu_shmem_map, fd_offset)));
	e_hex(e, "shm_offset", rd64(b, offsetof(struct vhu_shmem_map, shm_offset)));
	e_hex(e, "len", rd64(b, offsetof(struct vhu_shmem_map, len)));
	e_hex(e, "map_flags", rd64(b, offsetof(struct vhu_shmem_map, flags)));
}

static void
d_main_request(struct emit *e, uint32_t req, const uint8_t *b, uint32_t size)
{
	switch (req) {
	case VHU_REQ_SET_FEATURES:
		if (size >= 8) {
			e_bits(e, rd64(b, 0), false);
		}
		break;
	case VHU_REQ_SET_PROTOCOL_FEATURES:
		if (size >= 8) {
			e_bits(e, rd64(b, 0), true);
		}
		break;
	case VHU_REQ_SET_MEM_TABLE:
		if (size >= VHU_MEM_TABLE_SIZE(0)) {
			d_mem_table(e, b, size);
		}
		break;
	case VHU_REQ_ADD_MEM_REG:
	case VHU_REQ_REM_MEM_REG:
		if (size >= sizeof(struct vhu_single_region)) {
			d_region(e, "region", b + offsetof(struct vhu_single_region, region));
		}
		break;
	case VHU_REQ_SET_LOG_BASE:
		if (size >= sizeof(struct vhu_log)) {
			d_log(e, b);
		}
		break;
	case VHU_REQ_SET_VRING_NUM:
	case VHU_REQ_SET_VRING_BASE:
	case VHU_REQ_GET_VRING_BASE:
	case VHU_REQ_SET_VRING_ENABLE:
	case VHU_REQ_SET_VRING_ENDIAN:
	case VHU_REQ_VRING_KICK:
		if (size >= sizeof(struct vhu_vring_state)) {
			d_vring_state(e, b);
		}
		break;
	case VHU_REQ_SET_VRING_ADDR:
		if (size >= sizeof(struct vhu_vring_addr)) {
			d_vring_addr(e, b);
		}
		break;
	case VHU_REQ_SET_VRING_KICK:
	case VHU_REQ_SET_VRING_CALL:
	case VHU_REQ_SET_VRING_ERR:
		if (size >= 8) {
			d_vring_file(e, b);
		}
		break;
	case VHU_REQ_GET_CONFIG:
	case VHU_REQ_SET_CONFIG:
		if (size >= VHU_CONFIG_HDR_SIZE) {
			d_config(e, b);
		}
		break;
	case VHU_REQ_GET_INFLIGHT_FD:
	case VHU_REQ_SET_INFLIGHT_FD:
		if (size >= sizeof(struct vhu_inflight)) {
			d_inflight(e, b);
		}
		break;
	case VHU_REQ_IOTLB_MSG:
		if (size >= sizeof(struct vhu_iotlb)) {
			d_iotlb(e, b);
		}
		break;
	case VHU_REQ_SET_DEVICE_STATE_FD:
		if (size >= sizeof(struct vhu_device_state)) {
			e_dec(e, "direction",
			      rd32(b, offsetof(struct vhu_device_state, direction)));
			e_dec(e, "phase", rd32(b, offsetof(struct vhu_device_state, phase)));
		}
		break;
	case VHU_REQ_GET_SHARED_OBJECT:
		if (size >= sizeof(struct vhu_shared_object)) {
			d_uuid(e, b);
		}
		break;
	default:
		/* SET_STATUS, SEND_RARP, NET_SET_MTU, CLOSE_CRYPTO_SESSION, ... */
		if (size == 8) {
			e_dec(e, "u64", rd64(b, 0));
		}
		break;
	}
}

static void
d_main_reply(struct emit *e, uint32_t req, const uint8_t *b, uint32_t size)
{
	const struct vhu_req_info *row = vhu_req_info(VHU_CHAN_FRONTEND, req);

	switch (req) {
	case VHU_REQ_GET_FEATURES:
		if (size >= 8) {
			e_bits(e, rd64(b, 0), false);
		}
		return;
	case VHU_REQ_GET_PROTOCOL_FEATURES:
		if (size >= 8) {
			e_bits(e, rd64(b, 0), true);
		}
		return;
	case VHU_REQ_GET_VRING_BASE:
		if (size >= sizeof(struct vhu_vring_state)) {
			d_vring_state(e, b);
		}
		return;
	case VHU_REQ_GET_CONFIG:
		if (size >= VHU_CONFIG_HDR_SIZE) {
			d_config(e, b);
		}
		return;
	case VHU_REQ_GET_INFLIGHT_FD:
		if (size >= sizeof(struct vhu_inflight)) {
			d_inflight(e, b);
		}
		return;
	case VHU_REQ_GET_SHMEM_CONFIG:
		if (size >= 8) {
			e_dec(e, "nregions", rd32(b, 0));
		}
		return;
	case VHU_REQ_SET_MEM_TABLE:
		/* Postcopy answers with the table itself, everyone else with an ack. */
		if (size > 8) {
			d_mem_table(e, b, size);
			return;
		}
		break;
	case VHU_REQ_ADD_MEM_REG:
		if (size >= sizeof(struct vhu_single_region)) {
			d_region(e, "region", b + offsetof(struct vhu_single_region, region));
			return;
		}
		break;
	default:
		break;
	}
	if (size == 8) {
		e_dec(e, row != NULL && row->reply == VHU_REPLY_ACK ? "ack" : "u64", rd64(b, 0));
	}
}

static void
d_backend_request(struct emit *e, uint32_t req, const uint8_t *b, uint32_t size)
{
	switch (req) {
	case VHU_BREQ_IOTLB_MSG:
		if (size >= sizeof(struct vhu_iotlb)) {
			d_iotlb(e, b);
		}
		break;
	case VHU_BREQ_VRING_HOST_NOTIFIER_MSG:
		if (size >= sizeof(struct vhu_vring_area)) {
			d_vring_area(e, b);
		}
		break;
	case VHU_BREQ_VRING_CALL:
	case VHU_BREQ_VRING_ERR:
		if (size >= sizeof(struct vhu_vring_state)) {
			d_vring_state(e, b);
		}
		break;
	case VHU_BREQ_SHARED_OBJECT_ADD:
	case VHU_BREQ_SHARED_OBJECT_REMOVE:
	case VHU_BREQ_SHARED_OBJECT_LOOKUP:
		if (size >= sizeof(struct vhu_shared_object)) {
			d_uuid(e, b);
		}
		break;
	case VHU_BREQ_SHMEM_MAP:
	case VHU_BREQ_SHMEM_UNMAP:
		if (size >= sizeof(struct vhu_shmem_map)) {
			d_shmem_map(e, b);
		}
		break;
	default:
		if (size == 8) {
			e_dec(e, "u64", rd64(b, 0));
		}
		break;
	}
}

static void
d_body(struct emit *e, uint8_t chan, const struct vhu_hdr *h, const uint8_t *b)
{
	const struct vhu_req_info *row;
	bool reply = (h->flags & VHU_FLAG_REPLY) != 0;

	if (h->size == 0 || b == NULL) {
		return;
	}
	if (chan == VHU_CHAN_FRONTEND) {
		if (reply) {
			d_main_reply(e, h->request, b, h->size);
		} else {
			d_main_request(e, h->request, b, h->size);
		}
		return;
	}
	if (!reply) {
		d_backend_request(e, h->request, b, h->size);
		return;
	}
	row = vhu_req_info(VHU_CHAN_BACKEND, h->request);
	if (h->size == 8) {
		e_dec(e, row != NULL && row->reply == VHU_REPLY_ACK ? "ack" : "u64", rd64(b, 0));
	}
}

/* Trace records ------------------------------------------------------- */

/* What a passed fd refers to, from its /proc link (memfd, eventfd, socket, ...). */
static const char *
fd_type(int fd, char *buf, size_t len)
{
	char link[64], target[256];
	struct stat st;
	ssize_t n;

	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	n = readlink(link, target, sizeof(target) - 1);
	if (n > 0) {
		target[n] = '\0';
		if (strncmp(target, "/memfd:", 7) == 0) {
			return "memfd";
		}
		if (strncmp(target, "socket:", 7) == 0) {
			return "socket";
		}
		if (strncmp(target, "pipe:", 5) == 0) {
			return "pipe";
		}
		if (strncmp(target, "anon_inode:", 11) == 0) {
			/* "anon_inode:[eventfd]" and the like: the name in brackets. */
			const char *name = target + 11;
			size_t l;

			if (*name == '[') {
				name++;
			}
			l = strcspn(name, "]");
			snprintf(buf, len, "%.*s", (int)l, name);
			return buf;
		}
	}
	if (fstat(fd, &st) != 0) {
		return "unknown";
	}
	if (S_ISREG(st.st_mode)) {
		return "file";
	}
	if (S_ISDIR(st.st_mode)) {
		return "directory";
	}
	if (S_ISCHR(st.st_mode)) {
		return "chardev";
	}
	if (S_ISBLK(st.st_mode)) {
		return "blockdev";
	}
	return "other";
}

static const char *
chan_name(uint8_t chan)
{
	return chan == VHU_CHAN_BACKEND ? "backend-channel" : "main";
}

static const char *
side_name(uint8_t side)
{
	return side == SIDE_BACK ? "back-end" : "front-end";
}

static void
hexdump(const struct vhu_hdr *h, const uint8_t *body)
{
	uint8_t hb[VHU_HDR_SIZE];
	uint32_t total = VHU_HDR_SIZE + h->size;
	uint32_t i, j;

	memcpy(hb, h, VHU_HDR_SIZE);
	for (i = 0; i < total; i += 16) {
		fprintf(app.out, "        %04" PRIx32 " ", i);
		for (j = i; j < i + 16 && j < total; j++) {
			uint8_t c = j < VHU_HDR_SIZE ? hb[j] : body[j - VHU_HDR_SIZE];

			fprintf(app.out, " %02x", c);
		}
		putc('\n', app.out);
	}
}

static void
json_hex(const struct vhu_hdr *h, const uint8_t *body)
{
	uint8_t hb[VHU_HDR_SIZE];
	uint32_t i;

	memcpy(hb, h, VHU_HDR_SIZE);
	fputs(",\"hex\":\"", app.out);
	for (i = 0; i < VHU_HDR_SIZE; i++) {
		fprintf(app.out, "%02x", hb[i]);
	}
	for (i = 0; i < h->size; i++) {
		fprintf(app.out, "%02x", body[i]);
	}
	putc('"', app.out);
}

/*
 * One message, as received from the peer e faces. bad is its strict
 * verdict (0 or a vhu code); note is an extra remark (NULL for none).
 */
static void
trace_message(const struct end *e, const struct vhu_msg *m, int bad, const char *note)
{
	const struct vhu_hdr *h = &m->hdr;
	const char *dir = e->side == SIDE_FRONT ? "F->B" : "B->F";
	const char *name = vhu_req_name((enum vhu_channel)e->chan, h->request);
	bool reply = (h->flags & VHU_FLAG_REPLY) != 0;
	bool need = (h->flags & VHU_FLAG_NEED_REPLY) != 0;
	const uint8_t *body = m->body;
	struct emit em = { 0 };
	char tbuf[32];
	unsigned int i;
	FILE *f = app.out;

	put_time();
	if (app.opt.json) {
		fprintf(f, ",\"dir\":\"%s\",\"channel\":\"%s\",\"request\":", dir,
			chan_name(e->chan));
		tool_json_str(app.out, name);
		fprintf(f, ",\"code\":%" PRIu32 ",\"flags\":\"0x%" PRIx32 "\",\"reply\":%s"
			",\"need_reply\":%s,\"size\":%" PRIu32 ",\"fds\":%u", h->request, h->flags,
			reply ? "true" : "false", need ? "true" : "false", h->size, m->fds.n);
		if (app.opt.verbose) {
			fputs(",\"fd_types\":[", f);
			for (i = 0; i < m->fds.n; i++) {
				fprintf(f, "%s", i ? "," : "");
				tool_json_str(app.out, fd_type(m->fds.fd[i], tbuf, sizeof(tbuf)));
			}
			putc(']', f);
		}
		fputs(",\"body\":{", f);
		d_body(&em, e->chan, h, body);
		fprintf(f, "},\"valid\":%s", bad == 0 ? "true" : "false");
		if (bad != 0) {
			fputs(",\"error\":", f);
			tool_json_str(app.out, vhu_errname(bad));
			fputs(",\"error_text\":", f);
			tool_json_str(app.out, vhu_strerror(bad));
		}
		if (note != NULL) {
			fputs(",\"note\":", f);
			tool_json_str(app.out, note);
		}
		if (app.opt.hex) {
			json_hex(h, body);
		}
		fputs("}\n", f);
		fflush(f);
		return;
	}
	fprintf(f, " %s %-15s %-22s flags=0x%" PRIx32, dir, chan_name(e->chan), name, h->flags);
	if (reply || need) {
		fprintf(f, "(%s%s%s)", reply ? "REPLY" : "", reply && need ? "|" : "",
			need ? "NEED_REPLY" : "");
	}
	fprintf(f, " size=%" PRIu32 " fds=%u", h->size, m->fds.n);
	if (app.opt.verbose && m->fds.n > 0) {
		putc('(', f);
		for (i = 0; i < m->fds.n; i++) {
			fprintf(f, "%s%s", i ? "," : "", fd_type(m->fds.fd[i], tbuf, sizeof(tbuf)));
		}
		putc(')', f);
	}
	em.sep[0] = true;
	d_body(&em, e->chan, h, body);
	if (note != NULL) {
		fprintf(f, " [%s]", note);
	}
	if (bad != 0) {
		fprintf(f, " INVALID %s: %s", vhu_errname(bad), vhu_strerror(bad));
	}
	putc('\n', f);
	if (app.opt.hex) {
		hexdump(h, body);
	}
	fflush(f);
}

/* An event line: session start and end, channels opened, sides closed. */
static void
trace_event(const struct session *s, const char *event, const char *chan, const char *side,
	    int reason, const char *text)
{
	FILE *f = app.out;

	put_time();
	if (app.opt.json) {
		fprintf(f, ",\"event\":\"%s\",\"session\":%u", event, s != NULL ? s->id : 0);
		if (chan != NULL) {
			fprintf(f, ",\"channel\":\"%s\"", chan);
		}
		if (side != NULL) {
			fprintf(f, ",\"side\":\"%s\"", side);
		}
		if (reason != 0) {
			fputs(",\"reason\":", f);
			tool_json_str(app.out, vhu_errname(reason));
		}
		fputs(",\"text\":", f);
		tool_json_str(app.out, text);
		fputs("}\n", f);
	} else {
		fprintf(f, " ---- session %u: %s\n", s != NULL ? s->id : 0, text);
	}
	fflush(f);
}

/* Sessions ------------------------------------------------------------ */

static bool
is_benign_close(int reason)
{
	switch (-reason) {
	case 0:
	case VHU_EDISCONNECT:
	case VHU_EPARTIAL:
	case ECONNRESET:
	case EPIPE:
		return true;
	default:
		return false;
	}
}

static bool
is_protocol_fault(int err)
{
	return vhu_err_is_invalid_message(err) || vhu_err_is_incorrect_fds(err) ||
	       err == -VHU_EOVERSIZED;
}

static void
session_fault(struct session *s, int err)
{
	if (s->fault == 0 && !is_benign_close(err)) {
		s->fault = err;
	}
}

/* Close e once what is queued to its peer has left (at once if nothing is). */
static void
end_close_after_drain(struct end *e)
{
	if (e == NULL || e->draining) {
		return;
	}
	e->draining = true;
	e->drain_until = tool_now_ns() + DRAIN_NS;
	if (vhu_conn_sendq_len(e->conn) == 0) {
		vhu_conn_close(e->conn);
	}
}

static int on_message(struct vhu_conn *conn, struct vhu_msg *msg, void *ctx);
static void on_close(struct vhu_conn *conn, int reason, void *ctx);

static const struct vhu_conn_ops conn_ops = {
	.on_message = on_message,
	.on_close = on_close,
};

/* Framing only: the strict verdict is ours to give, and the message goes on either way. */
static void
conn_opts(struct vhu_conn_opts *o, uint8_t chan)
{
	memset(o, 0, sizeof(*o));
	o->recv_mode = app.opt.recv_mode;
	o->frames_only = true;
	o->rules.channel = chan;
	o->rules.expect = VHU_EXPECT_EITHER;
	o->rules.max_size = TRACE_MAX_SIZE;
	o->sendq_bytes = SENDQ_BYTES;
	o->sendq_msgs = SENDQ_MSGS;
}

/*
 * An end of s on chan facing side, not yet attached. On the main channel
 * the front-end sends requests and the back-end replies; on the back-end
 * channel the roles are reversed.
 */
static struct end *
end_new(struct session *s, uint8_t chan, uint8_t side)
{
	struct end *e = calloc(1, sizeof(*e));
	bool requests = (chan == VHU_CHAN_FRONTEND) == (side == SIDE_FRONT);

	if (e == NULL) {
		return NULL;
	}
	e->s = s;
	e->chan = chan;
	e->side = side;
	e->strict.channel = chan;
	e->strict.expect = requests ? VHU_EXPECT_REQUEST : VHU_EXPECT_REPLY;
	e->strict.max_size = VHU_DEFAULT_MAX_SIZE;
	return e;
}

static void
end_link(struct end *e)
{
	e->next = e->s->ends;
	e->s->ends = e;
}

static void
end_unlink(struct end *e)
{
	struct end **p;

	for (p = &e->s->ends; *p != NULL; p = &(*p)->next) {
		if (*p == e) {
			*p = e->next;
			return;
		}
	}
}

/* Attach fd (consumed either way) as the end of s on chan facing side. */
static int
end_attach(struct session *s, uint8_t chan, uint8_t side, int fd, struct end **out)
{
	struct vhu_conn_opts o;
	struct end *e = end_new(s, chan, side);
	int rc;

	if (e == NULL) {
		close(fd);
		return -ENOMEM;
	}
	conn_opts(&o, chan);
	rc = vhu_conn_attach(app.ring, fd, &o, &conn_ops, e, &e->conn);
	if (rc < 0) {
		free(e);
		return rc;
	}
	end_link(e);
	*out = e;
	return 0;
}

static void
session_unlink(struct session *s)
{
	struct session **p;

	for (p = &app.sessions; *p != NULL; p = &(*p)->next) {
		if (*p == s) {
			*p = s->next;
			return;
		}
	}
}

static enum status
session_status(const struct session *s)
{
	if (s->connect_failed) {
		return ST_CONNECT;
	}
	if (s->fault == 0) {
		return ST_OK;
	}
	return is_protocol_fault(s->fault) ? ST_PROTOCOL : ST_FAIL;
}

/* The last end of s is gone. */
static void
session_end(struct session *s)
{
	enum status st = session_status(s);
	char text[64];

	snprintf(text, sizeof(text), "ended (exit status %d)", (int)st);
	trace_event(s, "session_end", NULL, NULL, s->fault, text);
	session_unlink(s);
	free(s);
	if (!app.opt.keep) {
		app.status = st;
		app.done = true;
	}
}

/* End every connection of s, each once its queued messages have left. */
static void
session_shutdown(struct session *s)
{
	struct end *e;

	s->ending = true;
	for (e = s->ends; e != NULL; e = e->next) {
		end_close_after_drain(e);
	}
}

static void
on_close(struct vhu_conn *conn, int reason, void *ctx)
{
	struct end *e = ctx;
	struct session *s;
	struct end *peer;
	uint8_t chan, side;
	char text[256];

	if (e == NULL) {
		/* Accepted, but no session could be set up for it; already reported. */
		return;
	}
	s = e->s;
	chan = e->chan;
	side = e->side;
	peer = e->peer;
	if (peer != NULL) {
		peer->peer = NULL;
	}
	end_unlink(e);
	free(e);
	if (reason == 0) {
		snprintf(text, sizeof(text), "%s: closed the %s side", chan_name(chan),
			 side_name(side));
	} else if (reason == s->refused) {
		/* Our own doing, already explained on stderr. */
		snprintf(text, sizeof(text), "%s: closed the %s side: %s", chan_name(chan),
			 side_name(side), vhu_strerror(reason));
	} else {
		snprintf(text, sizeof(text), "%s: the %s side closed: %s", chan_name(chan),
			 side_name(side), vhu_strerror(reason));
	}
	trace_event(s, "close", chan_name(chan), side_name(side), reason, text);
	if (!is_benign_close(reason) && reason != s->refused) {
		fprintf(stderr, "vhu-trace: session %u: %s, %s side: %s (%s); closing both sides\n",
			s->id, chan_name(chan), side_name(side), vhu_strerror(reason),
			vhu_errname(reason));
		session_fault(s, reason);
	}
	if (chan == VHU_CHAN_FRONTEND || s->ending) {
		session_shutdown(s);
	} else {
		/* The back-end channel ends alone; the main channel goes on. */
		end_close_after_drain(peer);
	}
	if (s->ends == NULL) {
		session_end(s);
	}
}

/* Forwarding ----------------------------------------------------------- */

static bool
is_unix_stream(int fd)
{
	int v;
	socklen_t len = sizeof(v);

	if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &v, &len) != 0 || v != AF_UNIX) {
		return false;
	}
	len = sizeof(v);
	return getsockopt(fd, SOL_SOCKET, SO_TYPE, &v, &len) == 0 && v == SOCK_STREAM;
}

/*
 * SET_BACKEND_REQ_FD: the front-end's channel socket (taken from msg)
 * becomes an end of ours, and one end of a new socketpair goes to the
 * back-end in its place (*subst). A channel set up earlier is closed.
 */
static int
backend_channel_open(struct session *s, struct vhu_msg *msg, int *subst)
{
	struct end *old, *fe, *be;
	int sp[2], rc;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) != 0) {
		return -errno;
	}
	for (old = s->ends; old != NULL; old = old->next) {
		if (old->chan == VHU_CHAN_BACKEND) {
			end_close_after_drain(old);
		}
	}
	rc = end_attach(s, VHU_CHAN_BACKEND, SIDE_FRONT, vhu_fds_take(&msg->fds, 0), &fe);
	if (rc < 0) {
		close(sp[0]);
		close(sp[1]);
		return rc;
	}
	rc = end_attach(s, VHU_CHAN_BACKEND, SIDE_BACK, sp[0], &be);
	if (rc < 0) {
		vhu_conn_close(fe->conn);
		close(sp[1]);
		return rc;
	}
	fe->peer = be;
	be->peer = fe;
	*subst = sp[1];
	return 0;
}

/* Queue msg to the peer of e; its fds (subst first, if any) go with it. */
static int
forward(struct end *e, struct vhu_msg *msg, int subst)
{
	int fds[VHU_MAX_FDS];
	unsigned int n = 0, i;
	int rc;

	if (subst >= 0) {
		fds[n++] = subst;
	}
	for (i = 0; i < msg->fds.n && n < VHU_MAX_FDS; i++) {
		int fd = vhu_fds_take(&msg->fds, i);

		if (fd >= 0) {
			fds[n++] = fd;
		}
	}
	rc = vhu_conn_send(e->peer->conn, &msg->hdr, msg->body, msg->hdr.size, NULL, 0, fds, n);
	if (rc == 0) {
		return 0;
	}
	for (i = 0; i < n; i++) {
		close(fds[i]);
	}
	if (rc == -ENOTCONN) {
		/* That side is already closing: the message has nowhere to go. */
		return 0;
	}
	fprintf(stderr, "vhu-trace: session %u: cannot forward %s to the %s: %s (%s)\n",
		e->s->id, vhu_req_name((enum vhu_channel)e->chan, msg->hdr.request),
		side_name(!e->side), vhu_strerror(rc), vhu_errname(rc));
	session_fault(e->s, rc);
	e->s->ending = true;
	return rc;
}

static int
on_message(struct vhu_conn *conn, struct vhu_msg *msg, void *ctx)
{
	struct end *e = ctx;
	struct session *s = e->s;
	const struct vhu_hdr *h = &msg->hdr;
	int bad = vhu_msg_check(&e->strict, h, msg->body, msg->fds.n);
	bool interpose;
	int subst = -1;
	int rc;

	if (e->peer == NULL) {
		trace_message(e, msg, bad, "dropped: the other side is gone");
		return 0;
	}
	if (bad != 0 && app.opt.strict) {
		trace_message(e, msg, bad, "strict: not forwarded");
		fprintf(stderr, "vhu-trace: session %u: %s from the %s breaks the rules: %s (%s); "
			"--strict: closing both sides\n", s->id,
			vhu_req_name((enum vhu_channel)e->chan, h->request), side_name(e->side),
			vhu_strerror(bad), vhu_errname(bad));
		session_fault(s, bad);
		s->refused = bad;
		s->ending = true;
		return bad;
	}
	interpose = e->chan == VHU_CHAN_FRONTEND && e->side == SIDE_FRONT &&
		    h->request == VHU_REQ_SET_BACKEND_REQ_FD && (h->flags & VHU_FLAG_REPLY) == 0 &&
		    msg->fds.n == 1 && is_unix_stream(msg->fds.fd[0]);
	/* Traced first: the fd types shown are the front-end's, before any is replaced. */
	trace_message(e, msg, bad, interpose ? "back-end channel interposed" : NULL);
	if (interpose) {
		rc = backend_channel_open(s, msg, &subst);
		if (rc < 0) {
			fprintf(stderr, "vhu-trace: session %u: cannot set up the back-end "
				"channel: %s\n", s->id, vhu_strerror(rc));
			session_fault(s, rc);
			s->ending = true;
			return rc;
		}
		trace_event(s, "backend_channel", chan_name(VHU_CHAN_BACKEND), NULL, 0,
			    "backend-channel: opened, traced through a socketpair");
	}
	return forward(e, msg, subst);
}

/* A front-end connected: connect to the back-end for it. */
static void
on_accept(struct vhu_ulistener *l, struct vhu_conn *conn, void *ctx)
{
	struct vhu_conn_opts o;
	struct session *s = calloc(1, sizeof(*s));
	struct end *front = NULL, *back = NULL;
	char text[256];
	int rc;

	if (!app.opt.keep) {
		/* One session only: no second front-end can find the path from now on. */
		vhu_ulistener_close(l);
		app.listener = NULL;
	}
	if (s != NULL) {
		front = end_new(s, VHU_CHAN_FRONTEND, SIDE_FRONT);
		back = end_new(s, VHU_CHAN_FRONTEND, SIDE_BACK);
	}
	if (s == NULL || front == NULL || back == NULL) {
		fprintf(stderr, "vhu-trace: out of memory for a session; closing the front-end\n");
		free(front);
		free(back);
		free(s);
		vhu_conn_close_reason(conn, -ENOMEM);
		if (!app.opt.keep) {
			app.status = ST_FAIL;
			app.done = true;
		}
		return;
	}
	s->id = ++app.next_id;
	s->next = app.sessions;
	app.sessions = s;
	front->conn = conn;
	vhu_conn_set_ctx(conn, front);
	end_link(front);
	snprintf(text, sizeof(text), "front-end connected; connecting to %s", app.opt.connect);
	trace_event(s, "session_start", NULL, NULL, 0, text);

	conn_opts(&o, VHU_CHAN_FRONTEND);
	rc = vhu_conn_connect(app.ring, app.opt.connect, &o, &conn_ops, back, &back->conn);
	if (rc < 0) {
		free(back);
		fprintf(stderr, "vhu-trace: cannot connect to %s: %s (%s)\n", app.opt.connect,
			vhu_strerror(rc), vhu_errname(rc));
		snprintf(text, sizeof(text), "cannot connect to the back-end: %s",
			 vhu_strerror(rc));
		trace_event(s, "connect_failed", NULL, NULL, rc, text);
		s->connect_failed = true;
		s->fault = rc;
		session_shutdown(s);
		return;
	}
	end_link(back);
	front->peer = back;
	back->peer = front;
}

/* Main --------------------------------------------------------------- */

/* Close the ends whose queues have drained, or whose peer stopped reading for too long. */
static void
drain_check(void)
{
	int64_t now = tool_now_ns();
	struct session *s;
	struct end *e;

	for (s = app.sessions; s != NULL; s = s->next) {
		for (e = s->ends; e != NULL; e = e->next) {
			if (e->draining &&
			    (vhu_conn_sendq_len(e->conn) == 0 || now >= e->drain_until)) {
				vhu_conn_close(e->conn);
			}
		}
	}
}

static int
serve(void)
{
	int rc;

	while (!app.done && !tool_stop_signal()) {
		rc = vhu_ring_wait(app.ring, WAIT_SLICE_MS);
		if (rc < 0 && rc != -EINTR && rc != -ETIME && rc != -EAGAIN) {
			fprintf(stderr, "vhu-trace: the ring failed: %s\n", vhu_strerror(rc));
			return rc;
		}
		drain_check();
	}
	return 0;
}

int
main(int argc, char **argv)
{
	struct vhu_ring_opts ropts;
	struct vhu_ulistener_opts lopts;
	int rc;

	rc = parse_options(argc, argv, &app.opt);
	if (rc >= 0) {
		return rc;
	}
	app.t0 = tool_now_ns();
	app.out = stdout;
	if (app.opt.output != NULL) {
		app.out = fopen(app.opt.output, "we");
		if (app.out == NULL) {
			rc = errno;
			fprintf(stderr, "vhu-trace: cannot open %s: %s\n", app.opt.output,
				strerror(rc));
			return ST_FAIL;
		}
	}
	rc = tool_signals_install();
	if (rc < 0) {
		fprintf(stderr, "vhu-trace: cannot install signal handlers: %s\n",
			vhu_strerror(rc));
		return ST_FAIL;
	}

	memset(&ropts, 0, sizeof(ropts));
	ropts.max_conns = RING_CONNS;
	rc = vhu_ring_create(&ropts, &app.ring);
	if (rc < 0) {
		fprintf(stderr, "vhu-trace: cannot create the io_uring: %s (%s)\n",
			vhu_strerror(rc), vhu_ring_error_hint(rc));
		return ST_FAIL;
	}

	memset(&lopts, 0, sizeof(lopts));
	lopts.path = app.opt.listen;
	lopts.unlink_stale = true;
	/* One front-end at a time: a back-end serves one, and a second would see EOF at once. */
	lopts.max_conns = 1;
	conn_opts(&lopts.conn, VHU_CHAN_FRONTEND);
	lopts.ops = conn_ops;
	lopts.on_accept = on_accept;
	rc = vhu_ring_listen(app.ring, &lopts, &app.listener);
	if (rc < 0) {
		fprintf(stderr, "vhu-trace: cannot listen on %s: %s (%s)\n", app.opt.listen,
			vhu_strerror(rc), vhu_errname(rc));
		vhu_ring_destroy(app.ring);
		return ST_CONNECT;
	}
	fprintf(stderr, "vhu-trace: listening on %s\n", app.opt.listen);
	fflush(stderr);

	app.status = ST_OK;
	rc = serve();
	if (app.listener != NULL) {
		vhu_ulistener_close(app.listener);
		app.listener = NULL;
	}
	vhu_ring_destroy(app.ring);
	if (app.out != stdout && fclose(app.out) != 0) {
		rc = errno;
		fprintf(stderr, "vhu-trace: cannot write %s: %s\n", app.opt.output, strerror(rc));
		return ST_FAIL;
	}
	fflush(stdout);
	return rc < 0 ? ST_FAIL : app.status;
}
