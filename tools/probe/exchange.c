/* SPDX-License-Identifier: MIT */
/*
 * One request and its reply, over the blocking endpoint. The endpoint
 * carries the deadline (its timeout is --timeout, connect included) and
 * every check on the reply (vhu_endpoint_call_hdr: it answers this
 * request, header, body and fd rules); what is left here is what the
 * probe adds on top: the round-trip samples, the fault record with the
 * offending header, a more precise name for a reply that answers wrongly,
 * and the one reply shape the wire rules reject that means "refused".
 */
#include <string.h>

#include "common/clock.h"
#include "probe.h"

int
probe_fail(struct probe *p, int err, uint32_t request, const struct vhu_hdr *msg)
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
 * sends no body at all (the wire rules allow that), others echo the
 * 12-byte config header with size 0, which the wire rules reject as a
 * malformed body (-VHU_EBODY). That second shape is recognised here.
 */
static bool
config_refused(const struct vhu_hdr *rh, const union reply_buf *r)
{
	uint32_t size;

	if (rh->request != VHU_REQ_GET_CONFIG || rh->size != VHU_CONFIG_HDR_SIZE) {
		return false;
	}
	memcpy(&size, r->bytes + offsetof(struct vhu_config, size), sizeof(size));
	return size == 0;
}

/*
 * The endpoint calls any reply with the wrong code or flags -VHU_EREPLY;
 * when the header breaks a rule of its own (version, reserved flags, a
 * size beyond the limit), that rule names the fault better.
 */
static int
name_fault(int err, const struct vhu_hdr *rh)
{
	static const struct vhu_rules rules = {
		.channel = VHU_CHAN_FRONTEND,
		.expect = VHU_EXPECT_REPLY,
		.max_size = sizeof(((union reply_buf *)0)->bytes),
	};
	int hdr_err;

	if (err != -VHU_EREPLY) {
		return err;
	}
	hdr_err = vhu_hdr_check(&rules, rh);
	return hdr_err < 0 ? hdr_err : err;
}

/* Whether a reply header came in (the endpoint zeroes it until then). */
static bool
hdr_received(const struct vhu_hdr *rh)
{
	return rh->request != 0 || rh->flags != 0 || rh->size != 0;
}

int
probe_transact(struct probe *p, uint32_t request, bool need_reply, const void *body,
	       uint32_t len, bool want_reply, union reply_buf *r)
{
	struct vhu_hdr hdr = vhu_hdr_request(request, len, need_reply);
	int64_t start = tool_now_ns();
	struct vhu_fds fds;
	struct vhu_hdr rh;
	ssize_t n;

	if (!want_reply) {
		n = vhu_endpoint_send_message(p->ep, &hdr, body, len, NULL, 0);
		if (n < 0) {
			return probe_fail(p, (int)n, request, NULL);
		}
		record(p, request, false, start);
		return 0;
	}
	n = vhu_endpoint_call_hdr(p->ep, &hdr, body, len, NULL, 0, &rh, r->bytes,
				  sizeof(r->bytes), &fds);
	/* None of the replies this probe asks for carries fds. */
	vhu_fds_close(&fds);
	if (n == -VHU_EBODY && config_refused(&rh, r)) {
		n = rh.size;
	}
	if (n < 0) {
		return probe_fail(p, name_fault((int)n, &rh), request,
				  hdr_received(&rh) ? &rh : NULL);
	}
	record(p, request, true, start);
	return (int)n;
}
