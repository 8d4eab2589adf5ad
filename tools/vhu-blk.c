/* SPDX-License-Identifier: MIT */
/*
 * vhu-blk: a vhost-user-blk back-end on the vhu device layer. Serves a file
 * (or block device), or a null disk, to any number of front-ends on one
 * ring, or with --cpus on one ring per CPU (reactors: each queue served on
 * its home ring's thread, with its disk I/O on that ring); the request
 * handling is tools/blk/. Options, exit statuses,
 * signals, the socket check, the log and the fd budget are those every
 * tool shares (tools/common/).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vhu/device.h>
#include <vhu/uring.h>
#include <vhu/vhu.h>

#include "common/exit.h"
#include "common/fdlimit.h"
#include "common/log.h"
#include "common/num.h"
#include "common/output.h"
#include "common/reactors.h"
#include "common/serve.h"
#include "blk/blkdev.h"
#include "blk/target.h"

#define MAX_QUEUES	64u
/* Long options without a short one (as vhu-bench's --cpus). */
#define OPT_CPUS	0x100

struct options {
	const char *socket;
	const char *file;
	bool read_only;
	bool quiet;
	uint64_t null_bytes;
	unsigned int queues;
	unsigned int mem_slots;
	unsigned int max_conns;
	uint32_t msg_timeout_ms;
	bool poll;
	uint32_t poll_idle_us;
	bool no_event_idx;
	unsigned int cpus[TOOL_MAX_CPUS];
	unsigned int ncpus;		/* 0: one ring, on the calling thread */
};

static void
usage(FILE *out)
{
	fprintf(out,
		"Usage: vhu-blk --socket PATH (--file PATH | --null SIZE) [options]\n"
		"A vhost-user-blk back-end on the vhu io_uring engine.\n"
		"\n"
		"  -s, --socket PATH       listen on PATH (a stale socket file is replaced)\n"
		"  -f, --file PATH         serve this file or block device (capacity: its size)\n"
		"  -z, --null SIZE         serve a null disk of SIZE bytes (K/M/G): reads zeroes,\n"
		"                          writes are discarded\n"
		"  -r, --read-only         refuse writes (VIRTIO_BLK_F_RO)\n"
		"  -n, --queues N          virtqueues, 1..%u (default 1)\n"
		"  -S, --mem-slots N       memory slots offered (GET_MAX_MEM_SLOTS), 1..%u\n"
		"                          (default %u); each is one fd of a front-end's budget\n"
		"  -m, --max-conns N       serve at most N front-ends at once (default: as\n"
		"                          many as RLIMIT_NOFILE holds at their fd budget)\n"
		"  -t, --msg-timeout MS    close a front-end whose message stalls MS ms\n"
		"                          (default 0: never; set it for untrusted front-ends)\n"
		"  -p, --poll              poll mode: spin on the queues with guest kicks off,\n"
		"                          wait for kicks again after an idle interval\n"
		"  -i, --poll-idle-us US   poll mode's idle interval in microseconds\n"
		"                          (default %u)\n"
		"  -E, --no-event-idx      do not offer VIRTIO_RING_F_EVENT_IDX (kicks and\n"
		"                          calls suppressed by flags only)\n"
		"      --cpus LIST         one thread per CPU of LIST (0,1 or 0-3), pinned,\n"
		"                          each with its own io_uring; each front-end's\n"
		"                          queues are spread over them (default: one ring)\n"
		"  -q, --quiet             log faults only\n"
		"  -V, --version           print the version and exit\n"
		"  -h, --help              show this help\n"
		"\n"
		"Exit status: 0 stopped by SIGINT, SIGTERM or SIGHUP (the socket is removed);\n"
		"1 failure (the disk, the ring, output); 2 usage, or --max-conns beyond\n"
		"RLIMIT_NOFILE; 3 cannot listen on PATH; 7 a live back-end already listens\n"
		"on PATH.\n",
		MAX_QUEUES, VHU_MEM_MAX_SLOTS, VHU_MEM_MAX_SLOTS, VHU_DEV_POLL_IDLE_US);
}

/* \return 0 to run, 1 after --help or --version, or 2 on a usage error (message printed). */
static int
parse_options(int argc, char **argv, struct options *o)
{
	static const struct option longopts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "file", required_argument, NULL, 'f' },
		{ "null", required_argument, NULL, 'z' },
		{ "read-only", no_argument, NULL, 'r' },
		{ "queues", required_argument, NULL, 'n' },
		{ "mem-slots", required_argument, NULL, 'S' },
		{ "max-conns", required_argument, NULL, 'm' },
		{ "msg-timeout", required_argument, NULL, 't' },
		{ "poll", no_argument, NULL, 'p' },
		{ "poll-idle-us", required_argument, NULL, 'i' },
		{ "no-event-idx", no_argument, NULL, 'E' },
		{ "cpus", required_argument, NULL, OPT_CPUS },
		{ "quiet", no_argument, NULL, 'q' },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	char why[128];
	uint64_t v;
	int c;

	memset(o, 0, sizeof(*o));
	o->queues = 1;
	o->mem_slots = VHU_MEM_MAX_SLOTS;
	while ((c = getopt_long(argc, argv, "s:f:z:rn:S:m:t:pi:EqVh", longopts, NULL)) != -1) {
		switch (c) {
		case 's':
			o->socket = optarg;
			break;
		case 'f':
			o->file = optarg;
			break;
		case 'z':
			if (tool_parse_size(optarg, BLK_SECTOR, UINT64_MAX, &v) < 0) {
				fprintf(stderr, "vhu-blk: --null needs a size of at least %u "
					"bytes, not '%s'\n", BLK_SECTOR, optarg);
				return TOOL_EXIT_USAGE;
			}
			o->null_bytes = v;
			break;
		case 'r':
			o->read_only = true;
			break;
		case 'n':
			if (tool_parse_u64(optarg, 1, MAX_QUEUES, &v) < 0) {
				fprintf(stderr, "vhu-blk: --queues needs a number from 1 to %u, "
					"not '%s'\n", MAX_QUEUES, optarg);
				return TOOL_EXIT_USAGE;
			}
			o->queues = (unsigned int)v;
			break;
		case 'S':
			if (tool_parse_u64(optarg, 1, VHU_MEM_MAX_SLOTS, &v) < 0) {
				fprintf(stderr, "vhu-blk: --mem-slots needs a number from 1 to %u, "
					"not '%s'\n", VHU_MEM_MAX_SLOTS, optarg);
				return TOOL_EXIT_USAGE;
			}
			o->mem_slots = (unsigned int)v;
			break;
		case 'm':
			if (tool_parse_u64(optarg, 1, 1u << 20, &v) < 0) {
				fprintf(stderr, "vhu-blk: --max-conns needs a number from 1 to %u, "
					"not '%s'\n", 1u << 20, optarg);
				return TOOL_EXIT_USAGE;
			}
			o->max_conns = (unsigned int)v;
			break;
		case 't':
			if (tool_parse_u64(optarg, 0, UINT32_MAX, &v) < 0) {
				fprintf(stderr, "vhu-blk: --msg-timeout needs milliseconds, 0 to %u, "
					"not '%s'\n", UINT32_MAX, optarg);
				return TOOL_EXIT_USAGE;
			}
			o->msg_timeout_ms = (uint32_t)v;
			break;
		case 'p':
			o->poll = true;
			break;
		case 'i':
			if (tool_parse_u64(optarg, 1, 60000000, &v) < 0) {
				fprintf(stderr, "vhu-blk: --poll-idle-us needs microseconds, 1 to "
					"60000000, not '%s'\n", optarg);
				return TOOL_EXIT_USAGE;
			}
			o->poll_idle_us = (uint32_t)v;
			break;
		case 'E':
			o->no_event_idx = true;
			break;
		case OPT_CPUS:
			if (tool_parse_cpus(optarg, o->cpus, &o->ncpus, why, sizeof(why)) < 0) {
				fprintf(stderr, "vhu-blk: --cpus: %s\n", why);
				return TOOL_EXIT_USAGE;
			}
			break;
		case 'q':
			o->quiet = true;
			break;
		case 'V':
			tool_print_version(stdout, "vhu-blk");
			return 1;
		case 'h':
			usage(stdout);
			return 1;
		default:
			usage(stderr);
			return TOOL_EXIT_USAGE;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "vhu-blk: unexpected argument '%s'\n", argv[optind]);
		return TOOL_EXIT_USAGE;
	}
	if (o->socket == NULL || (o->file == NULL) == (o->null_bytes == 0)) {
		fprintf(stderr, "vhu-blk: --socket and one of --file or --null are required\n");
		usage(stderr);
		return TOOL_EXIT_USAGE;
	}
	return 0;
}

static int
on_open(struct vhu_dev *dev, void *ctx)
{
	int rc = blk_dev_ops.open(dev, ctx);

	tool_log_info("device %u: front-end connected", vhu_dev_id(dev));
	return rc;
}

static void
on_close(struct vhu_dev *dev, int reason, void *ctx)
{
	blk_dev_ops.close(dev, reason, ctx);
	if (reason != 0 && reason != -VHU_EDISCONNECT) {
		tool_log_err("device %u: closed: %s", vhu_dev_id(dev), vhu_strerror(reason));
	} else {
		tool_log_info("device %u: closed", vhu_dev_id(dev));
	}
}

static void
on_request_failed(struct vhu_dev *dev, const struct vhu_dev_failure *f, void *ctx)
{
	tool_log_err("device %u: %s failed: %s; %s", vhu_dev_id(dev),
		     vhu_req_name(VHU_CHAN_FRONTEND, f->request), vhu_strerror(f->error),
		     f->nacked ? "sent a failure ack" : "closing");
}

int
main(int argc, char **argv)
{
	static struct vhu_dev_ops ops;
	struct vhu_ring_opts ropts;
	struct vhu_dev_server *srv = NULL;
	struct vhu_dev_opts dopts;
	struct vhu_ring *ring = NULL;
	struct tool_reactors *rx = NULL;
	uint8_t config[BLK_CONFIG_SIZE];
	unsigned int views;
	struct blk_target t;
	struct options o;
	int rc;

	rc = parse_options(argc, argv, &o);
	if (rc == 1) {
		return tool_output_close(stdout, "vhu-blk", "standard output") < 0 ?
		       TOOL_EXIT_FAILURE : TOOL_EXIT_OK;
	}
	if (rc != 0) {
		return rc;
	}
	tool_log_init("vhu-blk", o.quiet);
	/* Replace a socket file a dead back-end left, never a live back-end's. */
	rc = tool_serve_check_path(o.socket);
	if (rc != 0) {
		return rc;
	}
	/*
	 * Each ring with queues of a front-end maps its memory for itself (one fd
	 * per region), and the first ring does even without queues there.
	 */
	views = o.ncpus == 0 ? 1 : o.queues < o.ncpus ? o.queues + 1 : o.ncpus;
	if (tool_fit_fd_limit("vhu-blk", o.mem_slots * views, o.queues, &o.max_conns) < 0) {
		return TOOL_EXIT_USAGE;
	}
	rc = blk_target_open(&t, o.file, o.read_only, o.null_bytes, o.queues);
	if (rc < 0) {
		tool_log_err("cannot open %s: %s", o.file ? o.file : "the null disk",
			     vhu_strerror(rc));
		tool_log_drain(1000);
		return TOOL_EXIT_FAILURE;
	}
	if (tool_serve_prepare() < 0) {
		blk_target_close(&t);
		tool_log_drain(1000);
		return TOOL_EXIT_FAILURE;
	}
	memset(&ropts, 0, sizeof(ropts));
	ropts.max_conns = o.max_conns;
	/* Kick, call and one request per descriptor of a 256-entry queue, per queue. */
	ropts.max_ops = o.queues * (2u + 256u);
	/* Poll mode spins: a ring whose idle pass reads memory and makes no system call. */
	ropts.busy_poll = o.poll;
	if (o.ncpus > 0) {
		rc = tool_reactors_start(o.cpus, o.ncpus, &ropts, &rx);
		ring = rc == 0 ? tool_reactors_rings(rx)[0] : NULL;
	} else {
		rc = vhu_ring_create(&ropts, &ring);
		if (rc < 0) {
			tool_log_err("cannot create the io_uring: %s (%s)", vhu_strerror(rc),
				     vhu_ring_error_hint(rc));
		}
	}
	if (rc < 0) {
		blk_target_close(&t);
		tool_log_drain(1000);
		return TOOL_EXIT_FAILURE;
	}
	blk_dev_opts(&t, config, &dopts);
	ops = blk_dev_ops;
	ops.open = on_open;
	ops.close = on_close;
	ops.request_failed = on_request_failed;
	ops.server_gone = tool_reactors_server_gone;
	dopts.ops = &ops;
	dopts.path = o.socket;
	dopts.unlink_stale = true;
	dopts.max_conns = o.max_conns;
	dopts.msg_timeout_ms = o.msg_timeout_ms;
	dopts.max_mem_slots = o.mem_slots;
	dopts.poll = o.poll;
	dopts.poll_idle_us = o.poll_idle_us;
	if (o.no_event_idx) {
		dopts.features &= ~(1ull << VHU_F_RING_EVENT_IDX);
	}
	if (rx != NULL) {
		rc = vhu_dev_server_create_multi(tool_reactors_rings(rx), tool_reactors_count(rx),
						 &dopts, &srv);
	} else {
		rc = vhu_dev_server_create(ring, &dopts, &srv);
	}
	if (rc < 0) {
		tool_log_err("cannot listen on %s: %s", o.socket, vhu_strerror(rc));
		if (rx != NULL) {
			tool_reactors_stop(rx);
		} else {
			vhu_ring_destroy(ring);
		}
		blk_target_close(&t);
		tool_log_drain(1000);
		return rc == -EADDRINUSE ? TOOL_EXIT_ADDRINUSE : TOOL_EXIT_CONNECT;
	}
	tool_log_info("listening on %s: %llu sectors%s%s, %u queue(s)%s%s%s%s", o.socket,
		      (unsigned long long)t.sectors, t.null ? " (null)" : "",
		      t.fd_direct >= 0 ? " (O_DIRECT)" : "", o.queues,
		      o.read_only ? ", read-only" : "", o.poll ? ", poll mode" : "",
		      o.no_event_idx ? ", no EVENT_IDX" : "", rx != NULL ? ", one ring per CPU" : "");
	if (rx != NULL) {
		rc = tool_reactors_serve(rx, srv, false);
	} else {
		rc = tool_serve(ring, false);
		vhu_dev_server_destroy(srv);
		vhu_ring_destroy(ring);
	}
	blk_target_close(&t);
	tool_log_drain(1000);
	return rc < 0 ? TOOL_EXIT_FAILURE : TOOL_EXIT_OK;
}
