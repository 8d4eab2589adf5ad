/* SPDX-License-Identifier: MIT */
#include "sock.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <vhu/endpoint.h>

/*
 * How long a listener that took our connection has to hang up before it
 * counts as live. A back-end just killed can hold its listening socket a
 * little longer than its process: an io_uring's pending accept keeps the
 * file open until the ring's teardown, which the kernel finishes in a
 * worker after the process is gone (10-30 ms measured). Closing the socket
 * then resets the connections in its backlog, ours among them.
 */
#define CLOSING_LISTENER_MS	500

/* Does the connection fd hang up within ms (its listener closed with it unaccepted)? */
static bool
hangs_up(int fd, int ms)
{
	struct pollfd p = { .fd = fd, .events = 0 };
	int n;

	do {
		n = poll(&p, 1, ms);
	} while (n < 0 && errno == EINTR);
	return n > 0 && (p.revents & (POLLHUP | POLLERR)) != 0;
}

int
tool_listen_check(const char *path, char *why, size_t len)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct stat st;
	int fd, rc, err;
	bool again = true;

	if (lstat(path, &st) != 0) {
		if (errno == ENOENT) {
			return 0;
		}
		err = errno;
		snprintf(why, len, "%s: %s", path, strerror(err));
		return -err;
	}
	if (!S_ISSOCK(st.st_mode)) {
		snprintf(why, len, "%s exists and is not a socket; not replacing it", path);
		return -EEXIST;
	}
	if (strlen(path) >= sizeof(sa.sun_path)) {
		snprintf(why, len, "%s: the path is too long for a socket", path);
		return -ENAMETOOLONG;
	}
	memcpy(sa.sun_path, path, strlen(path) + 1);
	for (;;) {
		/* Non-blocking: a listener whose backlog is full answers EAGAIN at once. */
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		if (fd < 0) {
			err = errno;
			snprintf(why, len, "socket: %s", strerror(err));
			return -err;
		}
		rc = connect(fd, (const struct sockaddr *)&sa, sizeof(sa));
		err = rc == 0 ? 0 : errno;
		/*
		 * Hung up: it was closing, or drops connections; once more then.
		 * A listener that answers again is live.
		 */
		if (rc == 0 && again && hangs_up(fd, CLOSING_LISTENER_MS)) {
			close(fd);
			again = false;
			continue;
		}
		close(fd);
		break;
	}
	if (rc == 0 || err == EAGAIN || err == EINPROGRESS) {
		snprintf(why, len, "%s: a live listener answers there (another back-end is "
			 "running); not taking its socket over", path);
		return -EADDRINUSE;
	}
	if (err == ECONNREFUSED) {
		return 0;	/* a socket file left by a dead process: replace it */
	}
	snprintf(why, len, "%s: %s", path, strerror(err));
	return -err;
}

void
tool_connect_why(const char *path, int err, int timeout_ms, char *why, size_t len)
{
	struct stat st;
	int serr = stat(path, &st) == 0 ? 0 : errno;

	if (err == -ETIMEDOUT) {
		snprintf(why, len, "%s: the listener did not accept within %d ms (its backlog is "
			 "full: does it serve one front-end at a time, and is another one "
			 "connected?)", path, timeout_ms);
	} else if (err == -ENOENT || serr == ENOENT) {
		snprintf(why, len, "%s: no such socket (is the back-end running?)", path);
	} else if (serr == 0 && !S_ISSOCK(st.st_mode)) {
		snprintf(why, len, "%s: not a socket", path);
	} else if (err == -EACCES || err == -EPERM) {
		snprintf(why, len, "%s: permission denied (connecting needs write permission "
			 "on the socket)", path);
	} else if (err == -ECONNREFUSED) {
		snprintf(why, len, "%s: connection refused (a stale socket file: nothing "
			 "listens there)", path);
	} else if (err == -EAGAIN) {
		snprintf(why, len, "%s: the listener's backlog is full", path);
	} else {
		snprintf(why, len, "%s: %s", path, strerror(-err));
	}
}

int
tool_connect_check(const char *path, int timeout_ms, char *why, size_t len)
{
	struct vhu_endpoint *ep;
	int rc = vhu_endpoint_connect_timeout(path, NULL, timeout_ms, &ep);

	if (rc < 0) {
		tool_connect_why(path, rc, timeout_ms, why, len);
		return rc;
	}
	vhu_endpoint_destroy(ep);
	return 0;
}
