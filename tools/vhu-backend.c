/* SPDX-License-Identifier: MIT */
/*
 * vhu-backend: a reference vhost-user back-end on the vhu io_uring engine.
 * It answers the device-initialisation handshake of a VMM for a virtio-blk
 * disk with no data path, serving any number of front-ends on one ring.
 *
 * This file is the program: options, signals, the ring and its listener,
 * and the glue from engine callbacks to sessions (tools/backend/).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdint.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include <vhu/uring.h>
#include <vhu/vhu.h>

#include "common/num.h"
#include "common/exit.h"
#include "common/output.h"
#include "common/signals.h"
#include "common/sock.h"
#include "backend/device.h"
#include "backend/log.h"
#include "backend/session.h"

/* How long a wait may block before the stop flag is looked at again. */
#define WAIT_SLICE_MS	200

#define DEFAULT_CAPACITY	(64ull << 20)

/* fds the process needs besides its sessions': stdio, the ring, the listener, slack. */
#define FD_RESERVE	64u

struct options {
	const char *socket;
	uint8_t recv_mode;
	bool busy_poll;
	bool quiet;
	unsigned int max_conns;
	uint32_t msg_timeout_ms;
	struct be_device dev;
};

/* One back-end per process; callbacks reach it here, so a conn's ctx is only ever its session. */
static struct {
	struct be_device dev;
	unsigned int next_id;
} app;

static void
usage(FILE *out)
{
	fprintf(out,
		"Usage: vhu-backend --socket PATH [options]\n"
		"A vhost-user back-end (virtio-blk, no data path) on the vhu io_uring engine.\n"
		"\n"
		"  -s, --socket PATH        listen on PATH (a stale socket file is replaced)\n"
		"  -r, --recv-mode MODE     exact or stream (default stream)\n"
		"  -b, --busy-poll          spin on the ring instead of sleeping in it\n"
		"  -m, --max-conns N        serve at most N front-ends at once (default: as\n"
		"                           many as RLIMIT_NOFILE holds at their fd budget)\n"
		"  -t, --msg-timeout MS     close a front-end whose message stalls MS ms\n"
		"                           (default 0: never; set it for untrusted front-ends)\n"
		"  -n, --queues N           virtqueues offered, 1..%u (default 1)\n"
		"  -c, --capacity SIZE      disk size in bytes, K/M/G suffixes (default 64M)\n"
		"  -q, --quiet              log faults only\n"
		"  -V, --version            print the version and exit\n"
		"  -h, --help               show this help\n"
		"\n"
		"Exit status: 0 stopped by SIGINT, SIGTERM or SIGHUP (the socket is removed);\n"
		"1 failure (the ring); 2 usage, or --max-conns beyond RLIMIT_NOFILE; 3 cannot\n"
		"listen on PATH; 7 a live back-end already listens on PATH.\n",
		BE_MAX_QUEUES);
}

/* \return 0 to run, 1 after --help or --version, or 2 on a usage error (message printed). */
static int
parse_options(int argc, char **argv, struct options *o)
{
	static const struct option longopts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "recv-mode", required_argument, NULL, 'r' },
		{ "busy-poll", no_argument, NULL, 'b' },
		{ "max-conns", required_argument, NULL, 'm' },
		{ "msg-timeout", required_argument, NULL, 't' },
		{ "queues", required_argument, NULL, 'n' },
		{ "capacity", required_argument, NULL, 'c' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	uint64_t v;
	int c;

	memset(o, 0, sizeof(*o));
	o->recv_mode = VHU_RECV_STREAM;
	o->dev.queues = 1;
	o->dev.capacity_sectors = DEFAULT_CAPACITY / BE_SECTOR_SIZE;
	while ((c = getopt_long(argc, argv, "s:r:bm:t:n:c:qVh", longopts, NULL)) != -1) {
		switch (c) {
		case 's':
			o->socket = optarg;
			break;
		case 'r':
			if (strcmp(optarg, "exact") == 0) {
				o->recv_mode = VHU_RECV_EXACT;
			} else if (strcmp(optarg, "stream") == 0) {
				o->recv_mode = VHU_RECV_STREAM;
			} else {
				fprintf(stderr, "vhu-backend: --recv-mode must be exact or stream, "
					"not '%s'\n", optarg);
				return 2;
			}
			break;
		case 'b':
			o->busy_poll = true;
			break;
		case 'm':
			if (tool_parse_u64(optarg, 1, 1u << 20, &v) < 0) {
				fprintf(stderr, "vhu-backend: --max-conns needs a number from 1 to "
					"%u, not '%s'\n", 1u << 20, optarg);
				return 2;
			}
			o->max_conns = (unsigned int)v;
			break;
		case 't':
			if (tool_parse_u64(optarg, 0, UINT32_MAX, &v) < 0) {
				fprintf(stderr, "vhu-backend: --msg-timeout needs milliseconds, "
					"0 to %u, not '%s'\n", UINT32_MAX, optarg);
				return 2;
			}
			o->msg_timeout_ms = (uint32_t)v;
			break;
		case 'n':
			if (tool_parse_u64(optarg, 1, BE_MAX_QUEUES, &v) < 0) {
				fprintf(stderr, "vhu-backend: --queues needs a number from 1 "
					"to %u, not '%s'\n", BE_MAX_QUEUES, optarg);
				return 2;
			}
			o->dev.queues = (unsigned int)v;
			break;
		case 'c':
			if (tool_parse_size(optarg, 1, UINT64_MAX, &v) < 0 ||
			    v % BE_SECTOR_SIZE != 0) {
				fprintf(stderr, "vhu-backend: --capacity needs a non-zero "
					"multiple of %u bytes, not '%s'\n", BE_SECTOR_SIZE, optarg);
				return 2;
			}
			o->dev.capacity_sectors = v / BE_SECTOR_SIZE;
			break;
		case 'q':
			o->quiet = true;
			break;
		case 'V':
			tool_print_version(stdout, "vhu-backend");
			return 1;
		case 'h':
			usage(stdout);
			return 1;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "vhu-backend: unexpected argument '%s'\n", argv[optind]);
		return 2;
	}
	if (o->socket == NULL) {
		fprintf(stderr, "vhu-backend: --socket PATH is required\n");
		usage(stderr);
		return 2;
	}
	return 0;
}

/* Engine callbacks -------------------------------------------------- */

static void
on_accept(struct vhu_ulistener *l, struct vhu_conn *conn, void *ctx)
{
	unsigned int id = ++app.next_id;
	struct be_session *s = be_session_new(&app.dev, id);

	if (s == NULL) {
		be_log_err("conn %u: out of memory for its state; closing", id);
		vhu_conn_close_reason(conn, -ENOMEM);
		return;
	}
	vhu_conn_set_ctx(conn, s);
	be_log_info("conn %u: accepted", id);
}

static int
on_message(struct vhu_conn *conn, struct vhu_msg *msg, void *ctx)
{
	struct be_session *s = ctx;
	struct be_reply reply;
	int rc;

	if (s == NULL) {
		return -ENOMEM;
	}
	rc = be_session_handle(s, msg, &reply);
	if (rc < 0 || !reply.present) {
		return rc;
	}
	/* The engine delivers a request only with room for its reply: this cannot be -VHU_EQFULL. */
	rc = vhu_conn_send(conn, &reply.hdr, reply.body, reply.len, NULL, 0, NULL, 0);
	if (rc < 0) {
		be_log_err("conn %u: cannot queue the reply to %s: %s; closing",
			   be_session_id(s), vhu_req_name(VHU_CHAN_FRONTEND, msg->hdr.request),
			   vhu_strerror(rc));
	}
	return rc;
}

static void
on_close(struct vhu_conn *conn, int reason, void *ctx)
{
	struct be_session *s = ctx;
	unsigned int id;

	if (s == NULL) {
		return;
	}
	/* Logged after the state is gone, so a reader of the line sees every fd closed. */
	id = be_session_id(s);
	be_session_free(s);
	if (reason == 0) {
		be_log_info("conn %u: closed", id);
	} else {
		be_log_info("conn %u: closed: %s", id, vhu_strerror(reason));
	}
}

/* Main --------------------------------------------------------------- */

/*
 * Every session's fds are bounded by its state: BE_MAX_MEM_SLOTS regions,
 * kick, call and err per queue, the back-end channel. That is its fd
 * budget, and the connection limit follows from RLIMIT_NOFILE (raised to
 * its hard limit first), so that no front-end can use up the fd table and
 * an honest VMM's fds are never truncated by the kernel for want of room.
 * \return 0, or 2 after a message when --max-conns cannot be honoured.
 */
static int
fit_fd_limit(struct options *o)
{
	unsigned long long budget = BE_MAX_MEM_SLOTS + 3ull * o->dev.queues + 1u;
	unsigned long long fit;
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
		return 0;
	}
	if (rl.rlim_cur < rl.rlim_max) {
		struct rlimit up = { rl.rlim_max, rl.rlim_max };

		if (setrlimit(RLIMIT_NOFILE, &up) == 0) {
			rl = up;
		}
	}
	fit = rl.rlim_cur > FD_RESERVE ? (rl.rlim_cur - FD_RESERVE) / budget : 0;
	if (fit > (1u << 20)) {
		fit = 1u << 20;
	}
	if (o->max_conns == 0) {
		if (fit == 0) {
			fprintf(stderr, "vhu-backend: RLIMIT_NOFILE (%llu) leaves no room for one "
				"front-end's %llu fds; raise it (ulimit -n)\n",
				(unsigned long long)rl.rlim_cur, budget);
			return 2;
		}
		o->max_conns = (unsigned int)fit;
	} else if (o->max_conns > fit) {
		fprintf(stderr, "vhu-backend: --max-conns %u needs up to %llu fds (%llu per "
			"front-end with --queues %u), but RLIMIT_NOFILE is %llu: raise it "
			"(ulimit -n) or lower --max-conns to %llu\n", o->max_conns,
			o->max_conns * budget + FD_RESERVE, budget, o->dev.queues,
			(unsigned long long)rl.rlim_cur, fit);
		return 2;
	}
	be_log_info("at most %u front-ends, %llu fds each (RLIMIT_NOFILE %llu)", o->max_conns,
		    budget, (unsigned long long)rl.rlim_cur);
	return 0;
}

static int
serve(struct vhu_ring *ring, bool busy_poll)
{
	int rc;

	while (!tool_stop_signal()) {
		rc = busy_poll ? vhu_ring_poll(ring) : vhu_ring_wait(ring, WAIT_SLICE_MS);
		be_log_flush();
		if (rc < 0 && rc != -EINTR && rc != -ETIME && rc != -EAGAIN) {
			be_log_err("the ring failed: %s; exiting", vhu_strerror(rc));
			return rc;
		}
	}
	return 0;
}

int
main(int argc, char **argv)
{
	struct vhu_ring_opts ropts;
	struct vhu_ulistener_opts lopts;
	struct vhu_ulistener *listener = NULL;
	struct vhu_ring *ring = NULL;
	struct options o;
	int rc;

	rc = parse_options(argc, argv, &o);
	if (rc == 1) {
		return tool_output_close(stdout, "vhu-backend", "standard output") < 0 ?
		       TOOL_EXIT_FAILURE : TOOL_EXIT_OK;
	}
	if (rc != 0) {
		return rc;
	}
	be_log_set_quiet(o.quiet);
	app.dev = o.dev;
	/* Replace a socket file a dead back-end left, never a live back-end's. */
	{
		char why[300];

		rc = tool_listen_check(o.socket, why, sizeof(why));
		if (rc < 0) {
			be_log_err("cannot listen on %s", why);
			be_log_drain(1000);
			return rc == -EADDRINUSE ? TOOL_EXIT_ADDRINUSE : TOOL_EXIT_CONNECT;
		}
	}
	rc = fit_fd_limit(&o);
	if (rc != 0) {
		return rc;
	}

	rc = tool_signals_install();
	if (rc < 0) {
		be_log_err("cannot install signal handlers: %s", vhu_strerror(rc));
		return 1;
	}

	memset(&ropts, 0, sizeof(ropts));
	ropts.busy_poll = o.busy_poll;
	ropts.max_conns = o.max_conns;
	rc = vhu_ring_create(&ropts, &ring);
	if (rc < 0) {
		be_log_err("cannot create the io_uring: %s (%s)", vhu_strerror(rc),
			   vhu_ring_error_hint(rc));
		return 1;
	}

	memset(&lopts, 0, sizeof(lopts));
	lopts.path = o.socket;
	lopts.unlink_stale = true;
	lopts.max_conns = o.max_conns;
	lopts.conn.recv_mode = o.recv_mode;
	lopts.conn.msg_timeout_ms = o.msg_timeout_ms;
	lopts.conn.rules.channel = VHU_CHAN_FRONTEND;
	lopts.conn.rules.expect = VHU_EXPECT_REQUEST;
	lopts.ops.on_message = on_message;
	lopts.ops.on_close = on_close;
	lopts.on_accept = on_accept;
	rc = vhu_ring_listen(ring, &lopts, &listener);
	if (rc < 0) {
		be_log_err("cannot listen on %s: %s", o.socket, vhu_strerror(rc));
		vhu_ring_destroy(ring);
		be_log_drain(1000);
		return rc == -EADDRINUSE ? TOOL_EXIT_ADDRINUSE : TOOL_EXIT_CONNECT;
	}
	be_log_info("listening on %s", o.socket);

	rc = serve(ring, o.busy_poll);
	if (tool_stop_signal()) {
		be_log_info("%s: shutting down", strsignal(tool_stop_signal()));
	}
	vhu_ulistener_close(listener);
	vhu_ring_destroy(ring);
	/* The last lines (sessions closed, shutting down) get a second to leave. */
	be_log_drain(1000);
	return rc < 0 ? 1 : 0;
}
