/* SPDX-License-Identifier: MIT */
/* The tool-test fixture of tool_helpers.h; each function is documented there. */
#define _GNU_SOURCE
#include "tool_helpers.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

struct t_tool_fixture t_tool = {
	.backend = T_PROC_INIT, .probe = T_PROC_INIT, .trace = T_PROC_INIT, .lfd = -1, .cfd = -1,
};

void
t_close_fd(int *fd)
{
	if (*fd >= 0) {
		close(*fd);
		*fd = -1;
	}
}

void
t_tool_fini(void)
{
	vhu_endpoint_destroy(t_tool.fe);
	t_tool.fe = NULL;
	t_proc_stop(&t_tool.probe, SIGKILL);
	t_proc_stop(&t_tool.trace, SIGKILL);
	t_proc_stop(&t_tool.backend, SIGKILL);
	t_peer_stop(&t_tool.peer);
	t_close_fd(&t_tool.cfd);
	t_close_fd(&t_tool.lfd);
	t_teardown();
}

void
t_proc_result(struct t_proc *p, struct t_result *r)
{
	int status;

	r->out_len = 0;
	r->err_len = 0;
	r->out[0] = '\0';
	r->err[0] = '\0';
	t_proc_drain(p, r->out, sizeof(r->out), &r->out_len, r->err, sizeof(r->err), &r->err_len);
	status = t_proc_stop(p, 0);
	r->status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

void
t_expect_has(const char *text, const char *what)
{
	cr_assert_not_null(strstr(text, what), "expected \"%s\" in:\n%s", what, text);
}

void
t_expect_lacks(const char *text, const char *what)
{
	cr_assert_null(strstr(text, what), "did not expect \"%s\" in:\n%s", what, text);
}

/* text with runs of spaces made one, in a buffer the caller frees. */
static char *
squeeze(const char *text)
{
	char *out = malloc(strlen(text) + 1);
	size_t o = 0;

	cr_assert_not_null(out);
	for (; *text != '\0'; text++) {
		if (*text == ' ' && o > 0 && out[o - 1] == ' ') {
			continue;
		}
		out[o++] = *text;
	}
	out[o] = '\0';
	return out;
}

void
t_expect_has_squeezed(const char *text, const char *what)
{
	char *sq = squeeze(text);
	bool found = strstr(sq, what) != NULL;

	free(sq);
	cr_assert(found, "expected \"%s\" in:\n%s", what, text);
}

void
t_expect_lacks_squeezed(const char *text, const char *what)
{
	char *sq = squeeze(text);
	bool found = strstr(sq, what) != NULL;

	free(sq);
	cr_assert(!found, "did not expect \"%s\" in:\n%s", what, text);
}

const char *
t_fake_listen(const char *name)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	const char *path = t_path(name);

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	t_tool.lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	cr_assert_geq(t_tool.lfd, 0, "socket: %s", strerror(errno));
	cr_assert_eq(bind(t_tool.lfd, (struct sockaddr *)&sa, sizeof(sa)), 0, "bind: %s",
		     strerror(errno));
	cr_assert_eq(listen(t_tool.lfd, 4), 0);
	return path;
}

int
t_fake_accept(void)
{
	struct pollfd p = { .fd = t_tool.lfd, .events = POLLIN };
	int fd;

	cr_assert_eq(poll(&p, 1, T_PROC_WAIT_MS), 1, "no connection to the fake back-end");
	fd = accept4(t_tool.lfd, NULL, NULL, SOCK_CLOEXEC);
	cr_assert_geq(fd, 0, "accept: %s", strerror(errno));
	return fd;
}
