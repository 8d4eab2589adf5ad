/* SPDX-License-Identifier: MIT */
/*
 * vhu-trace: an interposer between a vhost-user front-end and its back-end
 * that prints every message it forwards.
 *
 * The front-end connects to --listen; for each front-end, vhu-trace
 * connects to the real back-end at --connect and forwards every message
 * both ways on one io_uring (the vhu engine), unmodified and in order, fds
 * included. With --keep-listening many front-ends are served at once, each
 * in a session of its own.
 *
 * Flow and lifecycle are forwarded too: a full send queue pauses the
 * connection that feeds it (VHU_MSG_HOLD, resumed from on_writable), so a
 * peer that reads slowly slows the one writing to it, as without the
 * tracer; a half-close (shutdown(SHUT_WR), or EOF) is passed on as a
 * half-close once what came before it has left, and a connection pair ends
 * when both directions are over. The back-end channel is traced too: the fd of
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
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "common/clock.h"
#include "common/exit.h"
#include "common/json.h"
#include "common/output.h"
#include "common/signals.h"
#include "trace.h"

struct trace_app app;

static int
serve(void)
{
	int rc;

	/* A trace that cannot be written (a full disk, a closed pipe) ends it. */
	while (!app.done && !tool_stop_signal() && !ferror(app.out)) {
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
	ropts.max_conns = RING_CONNS(app.opt.max_sessions);
	rc = vhu_ring_create(&ropts, &app.ring);
	if (rc < 0) {
		fprintf(stderr, "vhu-trace: cannot create the io_uring: %s (%s)\n",
			vhu_strerror(rc), vhu_ring_error_hint(rc));
		return ST_FAIL;
	}

	memset(&lopts, 0, sizeof(lopts));
	lopts.path = app.opt.listen;
	lopts.unlink_stale = true;
	/*
	 * Without --keep-listening one front-end, and the listener goes when it
	 * comes; with it, up to --max-sessions at once, each with a back-end
	 * connection of its own (a back-end serving several VMs sees several
	 * front-ends). One over the limit is accepted and closed at once.
	 */
	lopts.max_conns = app.opt.max_sessions;
	conn_opts(&lopts.conn, VHU_CHAN_FRONTEND);
	lopts.ops = conn_ops;
	lopts.on_accept = on_accept;
	rc = vhu_ring_listen(app.ring, &lopts, &app.listener);
	if (rc < 0) {
		fprintf(stderr, "vhu-trace: cannot listen on %s: %s (%s)\n", app.opt.listen,
			vhu_strerror(rc), vhu_errname(rc));
		vhu_ring_destroy(app.ring);
		return rc == -EADDRINUSE ? TOOL_EXIT_ADDRINUSE : ST_CONNECT;
	}
	fprintf(stderr, "vhu-trace: listening on %s\n", app.opt.listen);
	fflush(stderr);

	if (app.opt.json) {
		/* The first line says which vhu wrote the trace. */
		fprintf(app.out, "{\"t\":0.000000,\"event\":\"start\",\"session\":0,\"vhu_version\":");
		tool_json_str(app.out, vhu_version());
		fputs("}\n", app.out);
		fflush(app.out);
	}
	app.status = ST_OK;
	rc = serve();
	if (app.listener != NULL) {
		vhu_ulistener_close(app.listener);
		app.listener = NULL;
	}
	vhu_ring_destroy(app.ring);
	if (tool_output_close(app.out, "vhu-trace", app.opt.output ? app.opt.output
								     : "standard output") < 0) {
		return ST_FAIL;
	}
	return rc < 0 ? ST_FAIL : app.status;
}
