/* SPDX-License-Identifier: MIT */
/*
 * vhu-probe: connect to a vhost-user back-end as a front-end and report
 * what it offers, as a VMM's device initialisation would see it, without
 * setting up memory or rings.
 *
 * Every request has its own deadline (--timeout). The endpoint runs in
 * non-blocking mode and each transfer waits with poll() for the time left,
 * so a back-end that never answers, or stops half-way through a message,
 * cannot hang the probe. Replies are validated with the wire rules of
 * <vhu/wire.h> before anything in them is believed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <vhu/vhu.h>

#include "common/clock.h"
#include "common/json.h"
#include "common/num.h"

#define BIT(n)			(1ull << (n))

/* What this probe can use. Acking a bit it does not handle would be a lie to the back-end. */
#define PROBE_PROTOCOL_FEATURES	(BIT(VHU_PROTOCOL_F_MQ) | BIT(VHU_PROTOCOL_F_REPLY_ACK) | \
				 BIT(VHU_PROTOCOL_F_CONFIG) | \
				 BIT(VHU_PROTOCOL_F_CONFIGURE_MEM_SLOTS) | \
				 BIT(VHU_PROTOCOL_F_STATUS))

#define DEFAULT_TIMEOUT_MS	2000
#define MAX_TIMEOUT_MS		3600000
#define DEFAULT_CONFIG_SIZE	256u
/* virtio-blk config space up to write_zeroes_may_unmap and its padding (QEMU's size). */
#define BLK_CONFIG_SIZE		60u
#define SECTOR_SIZE		512u
/* GET_FEATURES .. GET_STATUS with one GET_CONFIG retry: 8; some slack. */
#define MAX_SAMPLES		12

/* Exit status; documented in usage() and vhu-probe.1. */
enum status {
	ST_OK = 0,
	ST_FAIL = 1,
	ST_USAGE = 2,
	ST_CONNECT = 3,
	ST_CLOSED = 4,
	ST_PROTOCOL = 5,
	ST_TIMEOUT = 6,
};

enum device {
	DEV_NONE = 0,
	DEV_BLK,
};

struct options {
	const char *socket;
	int timeout_ms;
	uint32_t config_size;
	enum device device;
	bool json;
};

/* One request's round trip; replied is false when nothing was due back. */
struct sample {
	uint32_t request;
	bool replied;
	uint64_t usec;
};

/* Everything learnt from the back-end; each have_* says whether it was asked and answered. */
struct report {
	bool have_features;
	uint64_t features;
	bool have_protocol;
	uint64_t protocol;
	bool have_acked;
	uint64_t acked;
	bool have_queues;
	uint64_t queues;
	bool have_slots;
	uint64_t slots;
	uint32_t refused[2];	/* GET_CONFIG sizes answered with an empty config */
	unsigned int nrefused;
	bool have_config;
	uint32_t config_size;
	uint8_t config[VHU_CONFIG_MAX_PAYLOAD];
	bool have_status;
	uint64_t status;
	struct sample samples[MAX_SAMPLES];
	unsigned int nsamples;
};

/* Why the probe stopped early. */
struct fault {
	int err;		/* negative errno or vhu code */
	uint32_t request;	/* the request in flight; VHU_REQ_NONE while connecting */
	bool have_msg;
	struct vhu_hdr msg;	/* header of the offending message */
	char detail[160];
};

struct probe {
	const struct options *opt;
	struct vhu_endpoint *ep;
	struct report rep;
	struct fault fault;
};

/* Reply bodies are read into this; large enough for any size vhu_hdr_check lets through. */
union reply_buf {
	uint64_t u64;
	uint8_t bytes[VHU_DEFAULT_MAX_SIZE];
};

/* Options ------------------------------------------------------------ */

static void
usage(FILE *out)
{
	fprintf(out,
		"Usage: vhu-probe [options] SOCKET\n"
		"Connect to the vhost-user back-end listening on SOCKET as a front-end, run the\n"
		"negotiation a VMM would (without starting the device) and report what it offers.\n"
		"\n"
		"Requests: GET_FEATURES; if PROTOCOL_FEATURES (bit 30) is offered,\n"
		"GET_PROTOCOL_FEATURES and SET_PROTOCOL_FEATURES acking only MQ, REPLY_ACK,\n"
		"CONFIG, CONFIGURE_MEM_SLOTS and STATUS among those offered; then\n"
		"GET_QUEUE_NUM, GET_MAX_MEM_SLOTS, GET_CONFIG and GET_STATUS, each only if\n"
		"its feature is offered.\n"
		"\n"
		"Options:\n"
		"  -t, --timeout MS       limit for each request, 1..%d ms (default %d)\n"
		"  -c, --config-size N    GET_CONFIG size in bytes, 1..%u (default %u)\n"
		"  -d, --device TYPE      decode the config space as TYPE (blk); if GET_CONFIG\n"
		"                         is refused, retry once with the size TYPE has (blk: %u)\n"
		"  -j, --json             print the report as one JSON object\n"
		"  -h, --help             show this help\n"
		"\n"
		"Exit status:\n"
		"  0  success\n"
		"  1  other failure (out of memory, ...)\n"
		"  2  usage error\n"
		"  3  cannot connect to SOCKET\n"
		"  4  the back-end closed the connection\n"
		"  5  protocol error (the offending message is printed, decoded)\n"
		"  6  timeout: a request was not answered within --timeout\n"
		"\n"
		"Examples:\n"
		"  vhu-probe /run/vhost-user-blk.sock\n"
		"  vhu-probe --device blk --timeout 500 /run/vhost-user-blk.sock\n"
		"  vhu-probe --json --config-size 60 /tmp/vfsd.sock\n",
		MAX_TIMEOUT_MS, DEFAULT_TIMEOUT_MS, VHU_CONFIG_MAX_PAYLOAD, DEFAULT_CONFIG_SIZE,
		BLK_CONFIG_SIZE);
}

/* \return -1 to run, or the exit status (after --help or a usage error). */
static int
parse_options(int argc, char **argv, struct options *o)
{
	static const struct option longopts[] = {
		{ "timeout", required_argument, NULL, 't' },
		{ "config-size", required_argument, NULL, 'c' },
		{ "device", required_argument, NULL, 'd' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	unsigned int v;
	int c;

	o->timeout_ms = DEFAULT_TIMEOUT_MS;
	o->config_size = DEFAULT_CONFIG_SIZE;
	o->device = DEV_NONE;
	o->json = false;
	o->socket = NULL;
	while ((c = getopt_long(argc, argv, "t:c:d:jh", longopts, NULL)) != -1) {
		switch (c) {
		case 't':
			if (tool_parse_uint(optarg, 1, MAX_TIMEOUT_MS, &v) < 0) {
				fprintf(stderr, "vhu-probe: --timeout needs a number of ms "
					"from 1 to %d, not \"%s\"\n", MAX_TIMEOUT_MS, optarg);
				return ST_USAGE;
			}
			o->timeout_ms = (int)v;
			break;
		case 'c':
			if (tool_parse_uint(optarg, 1, VHU_CONFIG_MAX_PAYLOAD, &v) < 0) {
				fprintf(stderr, "vhu-probe: --config-size needs a number "
					"from 1 to %u, not \"%s\"\n", VHU_CONFIG_MAX_PAYLOAD,
					optarg);
				return ST_USAGE;
			}
			o->config_size = (uint32_t)v;
			break;
		case 'd':
			if (strcmp(optarg, "blk") != 0) {
				fprintf(stderr, "vhu-probe: --device knows blk only, not \"%s\"\n",
					optarg);
				return ST_USAGE;
			}
			o->device = DEV_BLK;
			break;
		case 'j':
			o->json = true;
			break;
		case 'h':
			usage(stdout);
			return ST_OK;
		default:
			usage(stderr);
			return ST_USAGE;
		}
	}
	if (optind != argc - 1) {
		fprintf(stderr, "vhu-probe: %s\n",
			optind >= argc ? "SOCKET is required" : "only one SOCKET is allowed");
		usage(stderr);
		return ST_USAGE;
	}
	o->socket = argv[optind];
	return -1;
}

/* Transfers with a deadline --------------------------------------------- */

/* Wait until the socket is ready for events or the deadline passes (-ETIMEDOUT). */
static int
wait_ready(int sock, short events, int64_t deadline)
{
	for (;;) {
		struct pollfd pfd = { .fd = sock, .events = events };
		int64_t left = deadline - tool_now_ns();
		int n, err;

		if (left <= 0) {
			return -ETIMEDOUT;
		}
		/* Round up: a wait that ends just short of the deadline would spin. */
		n = poll(&pfd, 1, (int)((left + 999999) / 1000000));
		if (n > 0) {
			/* Errors and hang-ups included: the next transfer names them. */
			return 0;
		}
		if (n < 0) {
			err = errno;
			if (err != EINTR) {
				return -err;
			}
		}
	}
}

static int
send_timed(struct vhu_endpoint *ep, const uint8_t *buf, size_t len, int64_t deadline)
{
	size_t off = 0;

	while (off < len) {
		/* sendmsg does not write through the iovec; the cast only drops const. */
		struct iovec iov = { .iov_base = (uint8_t *)buf + off, .iov_len = len - off };
		ssize_t n = vhu_endpoint_send_iov(ep, &iov, 1, NULL, 0);
		int rc;

		if (n == -VHU_ERETRY) {
			rc = wait_ready(vhu_endpoint_fd(ep), POLLOUT, deadline);
			if (rc < 0) {
				return rc;
			}
			continue;
		}
		if (n < 0) {
			return (int)n;
		}
		if (n == 0) {
			return -VHU_EPARTIAL;
		}
		off += (size_t)n;
	}
	return 0;
}

/*
 * Fill buf. fds are accepted only on the first chunk of a message (the
 * header: in_msg false, nothing read yet); on any later chunk they are
 * closed by the endpoint and the read fails.
 */
static int
recv_timed(struct vhu_endpoint *ep, void *buf, size_t len, struct vhu_fds *fds, bool in_msg,
	   int64_t deadline)
{
	size_t off = 0;

	while (off < len) {
		struct iovec iov = { .iov_base = (uint8_t *)buf + off, .iov_len = len - off };
		bool first = off == 0 && !in_msg;
		ssize_t n = vhu_endpoint_recv_iov(ep, &iov, 1, first ? fds : NULL);
		int rc;

		if (n == -VHU_ERETRY) {
			rc = wait_ready(vhu_endpoint_fd(ep), POLLIN, deadline);
			if (rc < 0) {
				return rc;
			}
			continue;
		}
		if (n == -VHU_EDISCONNECT && !first) {
			return -VHU_EPARTIAL;
		}
		if (n < 0) {
			return (int)n;
		}
		off += (size_t)n;
	}
	return 0;
}

/* Requests ------------------------------------------------------------- */

static int
fail(struct probe *p, int err, uint32_t request, const struct vhu_hdr *msg)
{
	p->fault.err = err;
	p->fault.request = request;
	p->fault.have_msg = msg != NULL;
	if (msg != NULL) {
		p->fault.msg = *msg;
	}
	return err;
}

static void
record(struct probe *p, uint32_t request, bool replied, int64_t start)
{
	struct sample *s;
	int64_t ns = tool_now_ns() - start;

	if (p->rep.nsamples >= MAX_SAMPLES) {
		return;
	}
	s = &p->rep.samples[p->rep.nsamples++];
	s->request = request;
	s->replied = replied;
	s->usec = ns > 0 ? (uint64_t)ns / 1000 : 0;
}

/*
 * An empty config is how a back-end refuses GET_CONFIG: libvhost-user
 * sends no body at all, others echo the 12-byte config header with size 0.
 * The wire rules reject the second shape as a malformed body, so it is
 * recognised here first.
 */
static bool
config_refused(const struct vhu_hdr *rh, const union reply_buf *r)
{
	uint32_t size;

	if (rh->request != VHU_REQ_GET_CONFIG) {
		return false;
	}
	if (rh->size == 0) {
		return true;
	}
	if (rh->size != VHU_CONFIG_HDR_SIZE) {
		return false;
	}
	memcpy(&size, r->bytes + offsetof(struct vhu_config, size), sizeof(size));
	return size == 0;
}

/*
 * Send one request and, when want_reply, receive and validate its answer
 * into r. The whole exchange has one deadline. \return the reply's body
 * length (0 when no reply was due), or a negative error with p->fault set.
 */
static int
transact(struct probe *p, uint32_t request, bool need_reply, const void *body, uint32_t len,
	 bool want_reply, union reply_buf *r)
{
	static const struct vhu_rules rules = {
		.channel = VHU_CHAN_FRONTEND,
		.expect = VHU_EXPECT_REPLY,
		.max_size = sizeof(r->bytes),
	};
	uint8_t out[VHU_HDR_SIZE + VHU_CONFIG_HDR_SIZE + VHU_CONFIG_MAX_PAYLOAD];
	struct vhu_hdr hdr = vhu_hdr_request(request, len, need_reply);
	int64_t start = tool_now_ns();
	int64_t deadline = start + (int64_t)p->opt->timeout_ms * 1000000;
	struct vhu_fds fds;
	struct vhu_hdr rh;
	int rc;

	if (len > sizeof(out) - VHU_HDR_SIZE) {
		return fail(p, -VHU_EOVERSIZED, request, NULL);
	}
	memcpy(out, &hdr, VHU_HDR_SIZE);
	if (len > 0) {
		memcpy(out + VHU_HDR_SIZE, body, len);
	}
	rc = send_timed(p->ep, out, VHU_HDR_SIZE + len, deadline);
	if (rc < 0) {
		return fail(p, rc, request, NULL);
	}
	if (!want_reply) {
		record(p, request, false, start);
		return 0;
	}

	vhu_fds_init(&fds);
	rc = recv_timed(p->ep, &rh, VHU_HDR_SIZE, &fds, false, deadline);
	if (rc < 0) {
		vhu_fds_close(&fds);
		return fail(p, rc, request, NULL);
	}
	/* Header first: its size must be sane before a body is read on its word. */
	rc = vhu_hdr_check(&rules, &rh);
	if (rc == 0 && rh.request != request) {
		/* No message ids on this channel: the next message must be the answer. */
		rc = -VHU_EREPLY;
	}
	if (rc == 0) {
		rc = recv_timed(p->ep, r->bytes, rh.size, NULL, true, deadline);
	}
	if (rc == 0) {
		if (config_refused(&rh, r)) {
			rc = fds.n > 0 ? -VHU_EFDS : 0;
		} else {
			rc = vhu_msg_check(&rules, &rh, r->bytes, fds.n);
		}
	}
	/* None of the replies this probe asks for carries fds. */
	vhu_fds_close(&fds);
	if (rc < 0) {
		return fail(p, rc, request, &rh);
	}
	record(p, request, true, start);
	return (int)rh.size;
}

static int
get_u64(struct probe *p, uint32_t request, uint64_t *out)
{
	union reply_buf r;
	int rc = transact(p, request, false, NULL, 0, true, &r);

	if (rc < 0) {
		return rc;
	}
	*out = r.u64;
	return 0;
}

static int
set_protocol_features(struct probe *p, uint64_t acked)
{
	bool ack = (acked & BIT(VHU_PROTOCOL_F_REPLY_ACK)) != 0;
	union reply_buf r;
	int rc;

	/* With REPLY_ACK in the set it takes effect for this very message (QEMU does the same). */
	rc = transact(p, VHU_REQ_SET_PROTOCOL_FEATURES, ack, &acked, sizeof(acked), ack, &r);
	if (rc < 0) {
		return rc;
	}
	if (ack && r.u64 != 0) {
		snprintf(p->fault.detail, sizeof(p->fault.detail),
			 "the back-end refused the protocol features 0x%" PRIx64
			 " (ack %" PRIu64 ")",
			 acked, r.u64);
		return fail(p, -EPROTO, VHU_REQ_SET_PROTOCOL_FEATURES, NULL);
	}
	p->rep.have_acked = true;
	p->rep.acked = acked;
	return 0;
}

/* One GET_CONFIG of size bytes at offset 0. \return 1 if refused, 0 if read, or an error. */
static int
get_config(struct probe *p, uint32_t size)
{
	/* Offset 0 is the start of the device's config space, as QEMU sends it. */
	struct vhu_config cfg = { .offset = 0, .size = size, .flags = 0 };
	uint8_t req[VHU_CONFIG_HDR_SIZE + VHU_CONFIG_MAX_PAYLOAD] = { 0 };
	union reply_buf r;
	struct vhu_config got;
	int rc;

	memcpy(req, &cfg, VHU_CONFIG_HDR_SIZE);
	rc = transact(p, VHU_REQ_GET_CONFIG, false, req, VHU_CONFIG_HDR_SIZE + size, true, &r);
	if (rc < 0) {
		return rc;
	}
	/* transact() let only two shapes through: a refusal, or a config that fits its size. */
	if (rc >= (int)VHU_CONFIG_HDR_SIZE) {
		memcpy(&got, r.bytes, VHU_CONFIG_HDR_SIZE);
	} else {
		got.size = 0;
	}
	if (got.size == 0) {
		if (p->rep.nrefused < sizeof(p->rep.refused) / sizeof(p->rep.refused[0])) {
			p->rep.refused[p->rep.nrefused++] = size;
		}
		return 1;
	}
	if (got.offset != 0 || got.size != size) {
		struct vhu_hdr rh = vhu_hdr_reply(VHU_REQ_GET_CONFIG, (uint32_t)rc);

		snprintf(p->fault.detail, sizeof(p->fault.detail),
			 "GET_CONFIG answered offset %" PRIu32 " size %" PRIu32
			 " for offset 0 size %" PRIu32, got.offset, got.size, size);
		return fail(p, -VHU_EBODY, VHU_REQ_GET_CONFIG, &rh);
	}
	p->rep.have_config = true;
	p->rep.config_size = size;
	memcpy(p->rep.config, r.bytes + VHU_CONFIG_HDR_SIZE, size);
	return 0;
}

static uint32_t
device_config_size(enum device dev)
{
	return dev == DEV_BLK ? BLK_CONFIG_SIZE : 0;
}

static int
run(struct probe *p)
{
	struct report *rep = &p->rep;
	uint32_t plausible;
	uint64_t acked;
	int rc;

	rc = get_u64(p, VHU_REQ_GET_FEATURES, &rep->features);
	if (rc < 0) {
		return rc;
	}
	rep->have_features = true;
	if ((rep->features & BIT(VHU_F_PROTOCOL_FEATURES)) == 0) {
		return 0;
	}
	rc = get_u64(p, VHU_REQ_GET_PROTOCOL_FEATURES, &rep->protocol);
	if (rc < 0) {
		return rc;
	}
	rep->have_protocol = true;
	acked = rep->protocol & PROBE_PROTOCOL_FEATURES;
	rc = set_protocol_features(p, acked);
	if (rc < 0) {
		return rc;
	}
	if (acked & BIT(VHU_PROTOCOL_F_MQ)) {
		rc = get_u64(p, VHU_REQ_GET_QUEUE_NUM, &rep->queues);
		if (rc < 0) {
			return rc;
		}
		rep->have_queues = true;
	}
	if (acked & BIT(VHU_PROTOCOL_F_CONFIGURE_MEM_SLOTS)) {
		rc = get_u64(p, VHU_REQ_GET_MAX_MEM_SLOTS, &rep->slots);
		if (rc < 0) {
			return rc;
		}
		rep->have_slots = true;
	}
	if (acked & BIT(VHU_PROTOCOL_F_CONFIG)) {
		rc = get_config(p, p->opt->config_size);
		plausible = device_config_size(p->opt->device);
		/* Back-ends refuse sizes beyond their config space; ask for what the device has. */
		if (rc == 1 && plausible != 0 && plausible < p->opt->config_size) {
			rc = get_config(p, plausible);
		}
		if (rc < 0) {
			return rc;
		}
	}
	if (acked & BIT(VHU_PROTOCOL_F_STATUS)) {
		rc = get_u64(p, VHU_REQ_GET_STATUS, &rep->status);
		if (rc < 0) {
			return rc;
		}
		rep->have_status = true;
	}
	return 0;
}

static enum status
status_of(int err)
{
	switch (-err) {
	case 0:
		return ST_OK;
	case ETIMEDOUT:
		return ST_TIMEOUT;
	case VHU_EDISCONNECT:
	case VHU_EPARTIAL:
	case EPIPE:
	case ECONNRESET:
		return ST_CLOSED;
	case EPROTO:
		return ST_PROTOCOL;
	default:
		break;
	}
	if (vhu_err_is_invalid_message(err) || vhu_err_is_incorrect_fds(err) ||
	    err == -VHU_EOVERSIZED || err == -VHU_EREPLY) {
		return ST_PROTOCOL;
	}
	return ST_FAIL;
}

/* Names --------------------------------------------------------------- */

/* virtio-blk device feature bits (virtio 1.2, 5.2.3). */
static const char *const blk_feature_names[24] = {
	[0] = "BARRIER",
	[1] = "SIZE_MAX",
	[2] = "SEG_MAX",
	[4] = "GEOMETRY",
	[5] = "RO",
	[6] = "BLK_SIZE",
	[7] = "SCSI",
	[9] = "FLUSH",
	[10] = "TOPOLOGY",
	[11] = "CONFIG_WCE",
	[12] = "MQ",
	[13] = "DISCARD",
	[14] = "WRITE_ZEROES",
	[15] = "LIFETIME",
	[16] = "SECURE_ERASE",
	[17] = "ZONED",
};

static const char *
feature_name(enum device dev, unsigned int bit)
{
	if (dev == DEV_BLK && bit < sizeof(blk_feature_names) / sizeof(blk_feature_names[0])) {
		return blk_feature_names[bit];
	}
	return vhu_feature_name(bit);
}

static const char *
bit_name(bool protocol, enum device dev, unsigned int bit, char *buf, size_t len)
{
	const char *name = protocol ? vhu_protocol_feature_name(bit) : feature_name(dev, bit);

	if (name != NULL) {
		return name;
	}
	snprintf(buf, len, "bit %u", bit);
	return buf;
}

/* Device status bits (virtio 1.2, 2.1). */
static const struct {
	uint8_t bit;
	const char *name;
} status_names[] = {
	{ 1, "ACKNOWLEDGE" },
	{ 2, "DRIVER" },
	{ 4, "DRIVER_OK" },
	{ 8, "FEATURES_OK" },
	{ 64, "DEVICE_NEEDS_RESET" },
	{ 128, "FAILED" },
};

/* virtio-blk config space fields (virtio 1.2, 5.2.4), in offset order. */
enum blk_kind {
	BLK_NUM = 0,
	BLK_CAPACITY,	/* u64 sectors, shown in bytes too */
	BLK_GEOMETRY,	/* u16 cylinders, u8 heads, u8 sectors */
};

struct blk_field {
	const char *name;
	uint8_t off;
	uint8_t width;
	uint8_t kind;
};

static const struct blk_field blk_fields[] = {
	{ "capacity", 0, 8, BLK_CAPACITY },
	{ "size_max", 8, 4, BLK_NUM },
	{ "seg_max", 12, 4, BLK_NUM },
	{ "geometry", 16, 4, BLK_GEOMETRY },
	{ "blk_size", 20, 4, BLK_NUM },
	{ "physical_block_exp", 24, 1, BLK_NUM },
	{ "alignment_offset", 25, 1, BLK_NUM },
	{ "min_io_size", 26, 2, BLK_NUM },
	{ "opt_io_size", 28, 4, BLK_NUM },
	{ "writeback", 32, 1, BLK_NUM },
	{ "num_queues", 34, 2, BLK_NUM },
	{ "max_discard_sectors", 36, 4, BLK_NUM },
	{ "max_discard_seg", 40, 4, BLK_NUM },
	{ "discard_sector_alignment", 44, 4, BLK_NUM },
	{ "max_write_zeroes_sectors", 48, 4, BLK_NUM },
	{ "max_write_zeroes_seg", 52, 4, BLK_NUM },
	{ "write_zeroes_may_unmap", 56, 1, BLK_NUM },
};

/* Config fields are little-endian (virtio 1.x), as is every host vhu targets. */
static uint64_t
cfg_read(const struct report *rep, unsigned int off, unsigned int width)
{
	uint64_t v = 0;

	memcpy(&v, rep->config + off, width);
	return v;
}

static bool
cfg_has(const struct report *rep, unsigned int off, unsigned int width)
{
	return rep->have_config && off + width <= rep->config_size;
}

/* Text report ------------------------------------------------------------ */

static void
text_bits(const char *title, uint64_t mask, bool protocol, enum device dev)
{
	char buf[16];
	unsigned int bit;

	printf("%-18s0x%016" PRIx64 "\n", title, mask);
	for (bit = 0; bit < 64; bit++) {
		if (mask & BIT(bit)) {
			printf("  %2u  %s\n", bit, bit_name(protocol, dev, bit, buf, sizeof(buf)));
		}
	}
}

static void
text_hexdump(const uint8_t *b, uint32_t len)
{
	uint32_t i, j;

	for (i = 0; i < len; i += 16) {
		printf("  %04" PRIx32 " ", i);
		for (j = i; j < i + 16; j++) {
			if (j < len) {
				printf(" %02x", b[j]);
			} else {
				printf("   ");
			}
		}
		printf("  |");
		for (j = i; j < i + 16 && j < len; j++) {
			putchar(b[j] >= 0x20 && b[j] < 0x7f ? b[j] : '.');
		}
		printf("|\n");
	}
}

static void
text_blk(const struct report *rep)
{
	uint64_t v, bytes;
	size_t i;

	printf("virtio-blk config\n");
	for (i = 0; i < sizeof(blk_fields) / sizeof(blk_fields[0]); i++) {
		const struct blk_field *f = &blk_fields[i];

		if (!cfg_has(rep, f->off, f->width)) {
			continue;
		}
		v = cfg_read(rep, f->off, f->width);
		printf("  %-26s", f->name);
		switch (f->kind) {
		case BLK_CAPACITY:
			printf("%" PRIu64 " sectors", v);
			if (!__builtin_mul_overflow(v, (uint64_t)SECTOR_SIZE, &bytes)) {
				printf(" (%" PRIu64 " bytes)", bytes);
			}
			printf("\n");
			break;
		case BLK_GEOMETRY:
			printf("%" PRIu64 " cylinders, %" PRIu64 " heads, %" PRIu64 " sectors\n",
			       v & 0xffff, (v >> 16) & 0xff, (v >> 24) & 0xff);
			break;
		default:
			printf("%" PRIu64 "\n", v);
			break;
		}
	}
}

static void
text_report(const struct options *o, const struct report *rep)
{
	unsigned int i;
	size_t k;

	printf("%-18s%s\n", "socket", o->socket);
	if (rep->have_features) {
		text_bits("features", rep->features, false, o->device);
	}
	if (rep->have_protocol) {
		text_bits("protocol features", rep->protocol, true, o->device);
	}
	if (rep->have_acked) {
		printf("%-18s0x%016" PRIx64 "\n", "acked", rep->acked);
	}
	if (rep->have_queues) {
		printf("%-18s%" PRIu64 "\n", "queues", rep->queues);
	}
	if (rep->have_slots) {
		printf("%-18s%" PRIu64 "\n", "memory slots", rep->slots);
	}
	for (i = 0; i < rep->nrefused; i++) {
		printf("%-18srefused for %" PRIu32 " bytes at offset 0\n", "config",
		       rep->refused[i]);
	}
	if (rep->have_config) {
		printf("%-18s%" PRIu32 " bytes at offset 0\n", "config", rep->config_size);
		text_hexdump(rep->config, rep->config_size);
		if (o->device == DEV_BLK) {
			text_blk(rep);
		}
	}
	if (rep->have_status) {
		printf("%-18s0x%02" PRIx64, "status", rep->status);
		for (k = 0; k < sizeof(status_names) / sizeof(status_names[0]); k++) {
			if (rep->status & status_names[k].bit) {
				printf(" %s", status_names[k].name);
			}
		}
		printf("\n");
	}
	if (rep->nsamples > 0) {
		printf("round trips (us)\n");
	}
	for (i = 0; i < rep->nsamples; i++) {
		const struct sample *s = &rep->samples[i];
		const char *name = vhu_req_name(VHU_CHAN_FRONTEND, s->request);

		if (s->replied) {
			printf("  %-24s%" PRIu64 "\n", name, s->usec);
		} else {
			printf("  %-24s- (no reply due; sent in %" PRIu64 ")\n", name, s->usec);
		}
	}
}

/* JSON report ------------------------------------------------------------ */

static void
json_bits(const char *key, const char *names_key, uint64_t mask, bool protocol, enum device dev)
{
	char buf[16];
	unsigned int bit;
	bool first = true;

	printf(",\"%s\":\"0x%016" PRIx64 "\",\"%s\":[", key, mask, names_key);
	for (bit = 0; bit < 64; bit++) {
		if (mask & BIT(bit)) {
			printf(first ? "" : ",");
			tool_json_str(stdout, bit_name(protocol, dev, bit, buf, sizeof(buf)));
			first = false;
		}
	}
	printf("]");
}

static void
json_blk(const struct report *rep)
{
	const char *sep = "";
	uint64_t v, bytes;
	size_t i;

	printf(",\"blk\":{");
	for (i = 0; i < sizeof(blk_fields) / sizeof(blk_fields[0]); i++) {
		const struct blk_field *f = &blk_fields[i];

		if (!cfg_has(rep, f->off, f->width)) {
			continue;
		}
		v = cfg_read(rep, f->off, f->width);
		switch (f->kind) {
		case BLK_CAPACITY:
			printf("%s\"capacity_sectors\":%" PRIu64, sep, v);
			if (!__builtin_mul_overflow(v, (uint64_t)SECTOR_SIZE, &bytes)) {
				printf(",\"capacity_bytes\":%" PRIu64, bytes);
			}
			break;
		case BLK_GEOMETRY:
			printf("%s\"geometry\":{\"cylinders\":%" PRIu64 ",\"heads\":%" PRIu64
			       ",\"sectors\":%" PRIu64 "}", sep, v & 0xffff, (v >> 16) & 0xff,
			       (v >> 24) & 0xff);
			break;
		default:
			printf("%s\"%s\":%" PRIu64, sep, f->name, v);
			break;
		}
		sep = ",";
	}
	printf("}");
}

static void
json_hdr(const struct vhu_hdr *h)
{
	printf("{\"request\":");
	tool_json_str(stdout, vhu_req_name(VHU_CHAN_FRONTEND, h->request));
	printf(",\"code\":%" PRIu32 ",\"flags\":\"0x%" PRIx32 "\",\"size\":%" PRIu32 "}",
	       h->request, h->flags, h->size);
}

static const char *
fault_text(const struct fault *f)
{
	if (f->detail[0] != '\0') {
		return f->detail;
	}
	return vhu_strerror(f->err);
}

static void
json_report(const struct options *o, const struct report *rep, const struct fault *f,
	    enum status st)
{
	unsigned int i;

	printf("{\"socket\":");
	tool_json_str(stdout, o->socket);
	if (rep->have_features) {
		json_bits("features", "feature_names", rep->features, false, o->device);
	}
	if (rep->have_protocol) {
		json_bits("protocol_features", "protocol_feature_names", rep->protocol, true,
			  o->device);
	}
	if (rep->have_acked) {
		printf(",\"protocol_features_acked\":\"0x%016" PRIx64 "\"", rep->acked);
	}
	if (rep->have_queues) {
		printf(",\"queues\":%" PRIu64, rep->queues);
	}
	if (rep->have_slots) {
		printf(",\"max_mem_slots\":%" PRIu64, rep->slots);
	}
	if (rep->have_config || rep->nrefused > 0) {
		printf(",\"config\":{\"refused_sizes\":[");
		for (i = 0; i < rep->nrefused; i++) {
			printf("%s%" PRIu32, i ? "," : "", rep->refused[i]);
		}
		printf("]");
		if (rep->have_config) {
			printf(",\"offset\":0,\"size\":%" PRIu32 ",\"hex\":\"", rep->config_size);
			for (i = 0; i < rep->config_size; i++) {
				printf("%02x", rep->config[i]);
			}
			printf("\"");
		}
		printf("}");
		if (rep->have_config && o->device == DEV_BLK) {
			json_blk(rep);
		}
	}
	if (rep->have_status) {
		printf(",\"status\":%" PRIu64, rep->status);
	}
	printf(",\"round_trips_us\":[");
	for (i = 0; i < rep->nsamples; i++) {
		const struct sample *s = &rep->samples[i];

		printf("%s{\"request\":", i ? "," : "");
		tool_json_str(stdout, vhu_req_name(VHU_CHAN_FRONTEND, s->request));
		printf(",\"replied\":%s,\"us\":%" PRIu64 "}", s->replied ? "true" : "false",
		       s->usec);
	}
	printf("],\"exit_status\":%d", (int)st);
	if (st != ST_OK) {
		printf(",\"error\":{\"request\":");
		if (f->request != VHU_REQ_NONE) {
			tool_json_str(stdout, vhu_req_name(VHU_CHAN_FRONTEND, f->request));
		} else {
			printf("null");
		}
		printf(",\"code\":");
		tool_json_str(stdout, vhu_errname(f->err));
		printf(",\"message\":");
		tool_json_str(stdout, fault_text(f));
		if (f->have_msg) {
			printf(",\"offending_message\":");
			json_hdr(&f->msg);
		}
		printf("}");
	}
	printf("}\n");
}

/* Errors -------------------------------------------------------------- */

static const char *
status_text(enum status st)
{
	switch (st) {
	case ST_CONNECT:
		return "cannot connect";
	case ST_CLOSED:
		return "the back-end closed the connection";
	case ST_PROTOCOL:
		return "protocol error";
	case ST_TIMEOUT:
		return "timeout";
	default:
		return "failed";
	}
}

static void
print_fault(const struct options *o, const struct fault *f, enum status st)
{
	const struct vhu_hdr *h = &f->msg;
	const char *what;

	if (st == ST_CONNECT) {
		fprintf(stderr, "vhu-probe: cannot connect to %s: %s (%s)\n", o->socket,
			vhu_strerror(f->err), vhu_errname(f->err));
		return;
	}
	if (st == ST_TIMEOUT) {
		fprintf(stderr, "vhu-probe: %s: timeout: not answered within %d ms\n",
			vhu_req_name(VHU_CHAN_FRONTEND, f->request), o->timeout_ms);
		return;
	}
	/* A fault before the first request (setting up the socket) is named by the socket. */
	what = f->request != VHU_REQ_NONE ? vhu_req_name(VHU_CHAN_FRONTEND, f->request) : o->socket;
	fprintf(stderr, "vhu-probe: %s: %s: %s (%s)\n", what, status_text(st), fault_text(f),
		vhu_errname(f->err));
	if (f->have_msg) {
		fprintf(stderr, "vhu-probe: offending message: request %s (%" PRIu32 "), "
			"flags 0x%" PRIx32 " (version %" PRIu32 "%s%s%s), size %" PRIu32 "\n",
			vhu_req_name(VHU_CHAN_FRONTEND, h->request), h->request, h->flags,
			h->flags & VHU_FLAG_VERSION_MASK,
			(h->flags & VHU_FLAG_REPLY) ? ", REPLY" : "",
			(h->flags & VHU_FLAG_NEED_REPLY) ? ", NEED_REPLY" : "",
			(h->flags & VHU_FLAG_RESERVED_MASK) ? ", reserved bits" : "", h->size);
	}
}

int
main(int argc, char **argv)
{
	struct options opt;
	struct probe p;
	enum status st;
	int rc;

	rc = parse_options(argc, argv, &opt);
	if (rc >= 0) {
		return rc;
	}
	memset(&p, 0, sizeof(p));
	p.opt = &opt;

	rc = vhu_endpoint_connect(opt.socket, NULL, &p.ep);
	if (rc < 0) {
		fail(&p, rc, VHU_REQ_NONE, NULL);
		st = ST_CONNECT;
	} else {
		rc = vhu_endpoint_set_nonblocking(p.ep, true);
		if (rc < 0) {
			fail(&p, rc, VHU_REQ_NONE, NULL);
		} else {
			rc = run(&p);
		}
		vhu_endpoint_destroy(p.ep);
		st = status_of(rc);
	}

	if (opt.json) {
		json_report(&opt, &p.rep, &p.fault, st);
	} else if (st != ST_CONNECT) {
		text_report(&opt, &p.rep);
	}
	fflush(stdout);
	if (st != ST_OK) {
		print_fault(&opt, &p.fault, st);
	}
	return st;
}
