/* SPDX-License-Identifier: MIT */
/*
 * fuzz_wire: header and body validation of both channels in every expect
 * mode (format in fuzz_input.h). Beyond "no crash, no read past the body",
 * it holds wire.c to the promises the receive paths build on:
 *  - vhu_msg_check never accepts what vhu_hdr_check rejects, and then fails
 *    with the same code without touching the body;
 *  - the error codes are the documented ones;
 *  - the fd rule is an interval: a message whose body passes is accepted
 *    exactly for fd counts within vhu_msg_fd_bounds, and the bounds known
 *    from the header alone contain the ones the body fixes;
 *  - EITHER decides like REQUEST or REPLY would, by the REPLY flag;
 *  - names are total.
 * The body is a heap copy of exactly the bytes the input has, so ASan sees
 * any read past it.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <vhu/error.h>
#include <vhu/wire.h>

#include "fuzz_common.h"
#include "fuzz_input.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool
is_hdr_error(int r)
{
	return r == -VHU_EVERSION || r == -VHU_EFLAGS || r == -VHU_EREQUEST ||
	       r == -VHU_EOVERSIZED || r == -VHU_EBODYSIZE;
}

static void
check_string(const char *s)
{
	FZ_CHECK(s != NULL, "a name is NULL");
	/* strlen makes ASan read the whole string. */
	FZ_CHECK(strlen(s) < 200, "implausible name");
}

static void
check_names(const struct vhu_rules *rules, const struct vhu_hdr *hdr, uint8_t aux, uint8_t aux2)
{
	const struct vhu_req_info *row = vhu_req_info((enum vhu_channel)rules->channel,
						       hdr->request);
	const char *name = vhu_req_name((enum vhu_channel)rules->channel, hdr->request);
	const char *pf = vhu_protocol_feature_name(aux);
	const char *vf = vhu_feature_name(aux2);
	int err = -(int)(VHU_ERROR_BASE - 16 + aux2);

	check_string(name);
	FZ_CHECK((row == NULL) == (strcmp(name, "UNKNOWN") == 0), "name %s for row %p", name,
		 (const void *)row);
	FZ_CHECK(row == NULL || hdr->request != 0, "code 0 has a row");
	FZ_CHECK(row == NULL || rules->channel <= VHU_CHAN_BACKEND, "row on channel %u",
		 rules->channel);
	if (pf != NULL) {
		check_string(pf);
	}
	FZ_CHECK(pf == NULL || aux < VHU_PROTOCOL_F_MAX, "protocol bit %u named", aux);
	if (vf != NULL) {
		check_string(vf);
	}
	FZ_CHECK(vf == NULL || aux2 < 64, "feature bit %u named", aux2);
	check_string(vhu_strerror(err));
	check_string(vhu_strerror(-err));
	check_string(vhu_errname(err));
	check_string(vhu_strerror(INT32_MIN));
	check_string(vhu_errname(INT32_MIN));
	if (vhu_err_is_invalid_message(err) || vhu_err_is_incorrect_fds(err)) {
		FZ_CHECK(err <= -VHU_ERROR_BASE, "%d classed as a protocol error", err);
	}
}

/* The fd rule is an interval, and the body check does not depend on the fd count. */
static void
check_fd_interval(const struct vhu_rules *rules, const struct vhu_hdr *hdr, const void *body,
		  unsigned int nfds, int mr)
{
	unsigned int min = 99, max = 99, hmin = 99, hmax = 99;
	int r;

	r = vhu_msg_fd_bounds(rules, hdr, body, &min, &max);
	FZ_CHECK(r == 0, "fd_bounds %d after an accepted header", r);
	FZ_CHECK(min <= max && max <= VHU_MAX_FDS, "bounds [%u, %u]", min, max);
	r = vhu_msg_fd_bounds(rules, hdr, NULL, &hmin, &hmax);
	FZ_CHECK(r == 0, "header-only fd_bounds %d", r);
	FZ_CHECK(hmin <= hmax && hmax <= VHU_MAX_FDS, "header bounds [%u, %u]", hmin, hmax);

	if (mr == -VHU_EBODY) {
		/* A bad body is bad whatever fds come with it. */
		FZ_CHECK(vhu_msg_check(rules, hdr, body, min) == -VHU_EBODY, "body check saw fds");
		return;
	}
	if (mr == 0) {
		FZ_CHECK(nfds >= min && nfds <= max, "accepted %u fds outside [%u, %u]", nfds, min,
			 max);
	} else {
		FZ_CHECK(nfds < min || nfds > max, "-VHU_EFDS for %u fds inside [%u, %u]", nfds,
			 min, max);
	}
	FZ_CHECK(hmin <= min && max <= hmax, "body bounds [%u, %u] outside header's [%u, %u]",
		 min, max, hmin, hmax);
	FZ_CHECK(vhu_msg_check(rules, hdr, body, min) == 0, "min %u fds refused", min);
	FZ_CHECK(vhu_msg_check(rules, hdr, body, max) == 0, "max %u fds refused", max);
	FZ_CHECK(vhu_msg_check(rules, hdr, body, max + 1) == -VHU_EFDS, "max + 1 fds accepted");
	if (min > 0) {
		FZ_CHECK(vhu_msg_check(rules, hdr, body, min - 1) == -VHU_EFDS,
			 "min - 1 fds accepted");
	}
}

/* EITHER must decide exactly as the mode the REPLY flag names. */
static void
check_either(const struct vhu_rules *rules, const struct vhu_hdr *hdr, const void *body,
	     bool have_body, unsigned int nfds, int hr, int mr)
{
	struct vhu_rules fixed = *rules;

	fixed.expect = (hdr->flags & VHU_FLAG_REPLY) ? VHU_EXPECT_REPLY : VHU_EXPECT_REQUEST;
	FZ_CHECK(vhu_hdr_check(&fixed, hdr) == hr, "EITHER header differs from expect %u",
		 fixed.expect);
	if (have_body) {
		FZ_CHECK(vhu_msg_check(&fixed, hdr, body, nfds) == mr,
			 "EITHER message differs from expect %u", fixed.expect);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz_reader r = { data, size };
	struct vhu_rules rules;
	struct vhu_hdr hdr;
	uint8_t cfg = fz_u8(&r), aux, aux2;
	unsigned int nfds, min, max;
	bool have_body;
	size_t blen;
	void *body;
	int hr, mr;

	nfds = fz_u8(&r);
	aux = fz_u8(&r);
	aux2 = fz_u8(&r);
	fz_rules(cfg, 0, &rules);
	hdr.request = fz_u32(&r);
	hdr.flags = fz_u32(&r);
	hdr.size = fz_u32(&r);

	/* Exactly hdr.size bytes when the input has them, else all it has. */
	have_body = hdr.size <= r.n;
	blen = have_body ? hdr.size : r.n;
	body = blen ? malloc(blen) : NULL;
	FZ_CHECK(blen == 0 || body != NULL, "malloc");
	if (blen) {
		memcpy(body, r.p, blen);
	}

	check_names(&rules, &hdr, aux, aux2);
	hr = vhu_hdr_check(&rules, &hdr);
	if (rules.expect > VHU_EXPECT_EITHER) {
		FZ_CHECK(hr == -EINVAL, "expect %u: header gave %d", rules.expect, hr);
		FZ_CHECK(vhu_msg_check(&rules, &hdr, body, nfds) == -EINVAL, "expect %u: message",
			 rules.expect);
		FZ_CHECK(vhu_msg_fd_bounds(&rules, &hdr, body, &min, &max) == -EINVAL,
			 "expect %u: fd bounds", rules.expect);
		goto out;
	}
	FZ_CHECK(hr == 0 || is_hdr_error(hr), "header error %d (%s)", hr, vhu_errname(hr));

	if (hr != 0) {
		/* Refused on the header: the body is never looked at, NULL or short. */
		mr = vhu_msg_check(&rules, &hdr, body, nfds);
		FZ_CHECK(mr == hr, "msg_check %d after header %d", mr, hr);
		mr = vhu_msg_check(&rules, &hdr, NULL, nfds);
		FZ_CHECK(mr == hr, "msg_check(NULL body) %d after header %d", mr, hr);
		if (rules.expect == VHU_EXPECT_EITHER) {
			check_either(&rules, &hdr, body, have_body, nfds, hr, mr);
		}
		goto out;
	}

	FZ_CHECK(vhu_req_info((enum vhu_channel)rules.channel, hdr.request) != NULL,
		 "accepted an unknown code %u", hdr.request);
	FZ_CHECK(hdr.size <= (rules.max_size ? rules.max_size : VHU_DEFAULT_MAX_SIZE),
		 "accepted size %u over the limit", hdr.size);
	if (!have_body) {
		goto out;
	}
	mr = vhu_msg_check(&rules, &hdr, body, nfds);
	FZ_CHECK(mr == 0 || mr == -VHU_EBODY || mr == -VHU_EFDS, "message error %d (%s)", mr,
		 vhu_errname(mr));
	FZ_CHECK(vhu_msg_check(&rules, &hdr, body, nfds) == mr, "not deterministic");
	check_fd_interval(&rules, &hdr, body, nfds, mr);
	if (rules.expect == VHU_EXPECT_EITHER) {
		check_either(&rules, &hdr, body, have_body, nfds, hr, mr);
	}
out:
	free(body);
	return 0;
}
