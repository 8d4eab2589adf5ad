/* SPDX-License-Identifier: MIT */
/*
 * vhu-probe: connect to a vhost-user back-end as a front-end and report
 * what it offers, as a VMM's device initialisation would see it, without
 * setting up memory or rings.
 *
 * The blocking endpoint carries a deadline (--timeout): the connect and
 * each request with its reply must finish within it, so a back-end that
 * never accepts, never answers, or stops half-way through a message cannot
 * hang the probe. Replies are validated with the wire rules of
 * <vhu/wire.h> before anything in them is believed.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "common/output.h"
#include "probe.h"

int
main(int argc, char **argv)
{
	struct options opt;
	struct probe p;
	enum status st;
	int rc, out;

	/* A reader of the report that went away is EPIPE, exit 1, not death by SIGPIPE. */
	signal(SIGPIPE, SIG_IGN);
	rc = probe_parse_options(argc, argv, &opt);
	if (rc >= 0) {
		return rc;
	}
	memset(&p, 0, sizeof(p));
	p.opt = &opt;

	/* --timeout bounds the connect too, and stays the endpoint's timeout for each request. */
	rc = vhu_endpoint_connect_timeout(opt.socket, NULL, opt.timeout_ms, &p.ep);
	if (rc < 0) {
		probe_fail(&p, rc, VHU_REQ_NONE, NULL);
		st = ST_CONNECT;
	} else {
		rc = probe_negotiate(&p);
		vhu_endpoint_destroy(p.ep);
		st = probe_status_of(rc);
	}

	if (opt.json) {
		probe_json_report(&opt, &p.rep, &p.fault, st);
	} else if (st != ST_CONNECT) {
		probe_text_report(&opt, &p.rep);
	}
	/* A report that did not arrive (a full disk, a closed pipe) is a failure too. */
	out = tool_output_flush(stdout);
	if (st != ST_OK) {
		probe_print_fault(&opt, &p.fault, st);
	}
	if (out < 0) {
		fprintf(stderr, "vhu-probe: writing the report: %s\n", strerror(-out));
		if (st == ST_OK) {
			st = ST_FAIL;
		}
	}
	return st;
}
