/* SPDX-License-Identifier: MIT */
#include "serve.h"

#include <errno.h>
#include <string.h>

#include <vhu/error.h>
#include <vhu/guest_mem.h>
#include <vhu/uring.h>

#include "exit.h"
#include "log.h"
#include "signals.h"
#include "sock.h"

/* How long a wait may block before the stop flag is looked at again. */
#define WAIT_SLICE_MS	200

int
tool_serve_check_path(const char *path)
{
	char why[300];
	int rc = tool_listen_check(path, why, sizeof(why));

	if (rc == 0) {
		return 0;
	}
	tool_log_err("cannot listen on %s", why);
	tool_log_drain(1000);
	return rc == -EADDRINUSE ? TOOL_EXIT_ADDRINUSE : TOOL_EXIT_CONNECT;
}

int
tool_serve_prepare(void)
{
	int rc = tool_signals_install();

	if (rc < 0) {
		tool_log_err("cannot install signal handlers: %s", vhu_strerror(rc));
		return rc;
	}
	rc = vhu_mem_sigbus_guard();
	if (rc < 0) {
		tool_log_err("cannot install the SIGBUS guard: %s", vhu_strerror(rc));
	}
	return rc;
}

int
tool_serve(struct vhu_ring *ring, bool busy_poll)
{
	int rc = 0;

	while (!tool_stop_signal()) {
		rc = busy_poll ? vhu_ring_poll(ring) : vhu_ring_wait(ring, WAIT_SLICE_MS);
		tool_log_flush();
		if (rc < 0 && rc != -EINTR && rc != -ETIME && rc != -EAGAIN) {
			tool_log_err("the ring failed: %s; exiting", vhu_strerror(rc));
			return rc;
		}
	}
	tool_log_info("%s: shutting down", strsignal(tool_stop_signal()));
	return 0;
}
