/* SPDX-License-Identifier: MIT */
/* Why the probe stopped: the exit status an error maps to, and its lines on stderr. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>

#include "common/sock.h"
#include "probe.h"

enum status
probe_status_of(int err)
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

const char *
probe_fault_text(const struct fault *f)
{
	if (f->detail[0] != '\0') {
		return f->detail;
	}
	return vhu_strerror(f->err);
}

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

void
probe_print_fault(const struct options *o, const struct fault *f, enum status st)
{
	const struct vhu_hdr *h = &f->msg;
	const char *what;

	if (st == ST_CONNECT) {
		char why[400];

		tool_connect_why(o->socket, f->err, o->timeout_ms, why, sizeof(why));
		fprintf(stderr, "vhu-probe: cannot connect to %s (%s)\n", why,
			vhu_errname(f->err));
		return;
	}
	if (st == ST_TIMEOUT) {
		fprintf(stderr, "vhu-probe: %s: timeout: not answered within %d ms\n",
			vhu_req_name(VHU_CHAN_FRONTEND, f->request), o->timeout_ms);
		return;
	}
	/* A fault before the first request (setting up the socket) is named by the socket. */
	what = f->request != VHU_REQ_NONE ? vhu_req_name(VHU_CHAN_FRONTEND, f->request) : o->socket;
	fprintf(stderr, "vhu-probe: %s: %s: %s (%s)\n", what, status_text(st), probe_fault_text(f),
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
