/* SPDX-License-Identifier: MIT */
/*
 * The fixture shared by the tests of the tools (test_probe.c, test_trace.c,
 * test_backend.c): the processes and sockets a test starts, cleaned up by
 * the suite's .fini even after a failed assert; the result of a tool run
 * to its end; text checks on its output; and a fake back-end played by the
 * test on a raw listening socket. Compiled once (tool_helpers.c).
 * Use: TestSuite(name, .init = t_setup, .fini = t_tool_fini);
 */
#ifndef VHU_TEST_TOOL_HELPERS_H
#define VHU_TEST_TOOL_HELPERS_H

#include <stddef.h>

#include <vhu/vhu.h>

#include "helpers.h"

/* What a tool test may leave running or open; t_tool_fini ends all of it. */
struct t_tool_fixture {
	struct t_proc backend;		/* a spawned vhu-backend */
	struct t_proc probe;		/* a spawned vhu-probe */
	struct t_proc trace;		/* a spawned vhu-trace */
	struct t_peer peer;		/* qemu-storage-daemon or virtiofsd */
	int lfd;			/* fake back-end: listening socket */
	int cfd;			/* fake back-end: accepted connection */
	struct vhu_endpoint *fe;	/* the test as a front-end */
};

extern struct t_tool_fixture t_tool;

/* Suite .fini: SIGKILL and reap every process, close every socket, then t_teardown(). */
void t_tool_fini(void);

/* Close *fd if open and set it to -1. */
void t_close_fd(int *fd);

/* A tool run to its end. */
struct t_result {
	int status;		/* exit status, or -1 if it did not exit normally */
	char out[32768];
	size_t out_len;
	char err[8192];
	size_t err_len;
};

/* Read p's stdout and stderr to EOF into r (each wait bounded), then reap it. */
void t_proc_result(struct t_proc *p, struct t_result *r);

/* text contains (lacks) what. */
void t_expect_has(const char *text, const char *what);
void t_expect_lacks(const char *text, const char *what);

/* The same, with runs of spaces in text squeezed to one (column widths do not matter). */
void t_expect_has_squeezed(const char *text, const char *what);
void t_expect_lacks_squeezed(const char *text, const char *what);

/* A fake back-end listening on t_path(name) (t_tool.lfd); \return the path. */
const char *t_fake_listen(const char *name);

/* Accept the next connection on t_tool.lfd (bounded wait); \return its fd, the caller's. */
int t_fake_accept(void);

#endif
