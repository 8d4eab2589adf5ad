/* SPDX-License-Identifier: MIT */
/*
 * The blocking listener. It removes a socket path only when it can tell
 * the file is the one it bound: a later listener that took the path over
 * (unlink_stale) keeps its socket when this one is destroyed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <vhu/error.h>
#include <vhu/listener.h>

#define LISTEN_BACKLOG 128

struct vhu_listener {
	int fd;
	bool owns_path;
	dev_t dev;			/* of the socket file we bound */
	ino_t ino;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
};

static const struct vhu_rules rules_front_request = {
	.channel = VHU_CHAN_FRONTEND, .expect = VHU_EXPECT_REQUEST,
};

/* Only a socket file counts as stale: never remove a regular file or directory. */
static int
unlink_stale_socket(const char *path)
{
	struct stat st;
	int err;

	if (lstat(path, &st) != 0) {
		err = errno;
		return err == ENOENT ? 0 : -err;
	}
	if (!S_ISSOCK(st.st_mode)) {
		return 0;
	}
	if (unlink(path) != 0) {
		err = errno;
		return err == ENOENT ? 0 : -err;
	}
	return 0;
}

int
vhu_listener_create(const char *path, bool unlink_stale, struct vhu_listener **out)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct vhu_listener *l;
	struct stat st;
	size_t len;
	int fd, rc, err;

	if (!path || !out) {
		return -EINVAL;
	}
	*out = NULL;
	len = strlen(path);
	if (len >= sizeof(sa.sun_path)) {
		return -ENAMETOOLONG;
	}
	if (len == 0) {
		return -EINVAL;
	}
	memcpy(sa.sun_path, path, len + 1);
	if (unlink_stale) {
		rc = unlink_stale_socket(path);
		if (rc < 0) {
			return rc;
		}
	}
	l = calloc(1, sizeof(*l));
	if (!l) {
		return -ENOMEM;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		err = errno;
		free(l);
		return -err;
	}
	if (bind(fd, (const struct sockaddr *)&sa, sizeof(sa)) != 0) {
		err = errno;
		goto fail;
	}
	if (lstat(path, &st) == 0) {
		l->owns_path = true;
		l->dev = st.st_dev;
		l->ino = st.st_ino;
	}
	if (listen(fd, LISTEN_BACKLOG) != 0) {
		err = errno;
		if (l->owns_path) {
			unlink(path);
		}
		goto fail;
	}
	l->fd = fd;
	memcpy(l->path, path, len + 1);
	*out = l;
	return 0;
fail:
	close(fd);
	free(l);
	return -err;
}

int
vhu_listener_from_fd(int fd, struct vhu_listener **out)
{
	struct vhu_listener *l;
	socklen_t sl = sizeof(int);
	int type = 0, acc = 0, err;

	if (!out) {
		if (fd >= 0) {
			close(fd);
		}
		return -EINVAL;
	}
	*out = NULL;
	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &sl) != 0) {
		err = errno;
		if (err != EBADF) {
			close(fd);
		}
		return -err;
	}
	sl = sizeof(int);
	if (type != SOCK_STREAM ||
	    getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &sl) != 0 || !acc) {
		close(fd);
		return -EINVAL;
	}
	l = calloc(1, sizeof(*l));
	if (!l) {
		close(fd);
		return -ENOMEM;
	}
	l->fd = fd;
	*out = l;
	return 0;
}

void
vhu_listener_destroy(struct vhu_listener *l)
{
	struct stat st;

	if (!l) {
		return;
	}
	close(l->fd);
	if (l->owns_path && lstat(l->path, &st) == 0 && S_ISSOCK(st.st_mode) &&
	    st.st_dev == l->dev && st.st_ino == l->ino) {
		unlink(l->path);
	}
	free(l);
}

int
vhu_listener_fd(const struct vhu_listener *l)
{
	return l->fd;
}

int
vhu_listener_set_nonblocking(struct vhu_listener *l, bool on)
{
	int fl = fcntl(l->fd, F_GETFL), err;

	if (fl < 0) {
		err = errno;
		return -err;
	}
	fl = on ? (fl | O_NONBLOCK) : (fl & ~O_NONBLOCK);
	if (fcntl(l->fd, F_SETFL, fl) != 0) {
		err = errno;
		return -err;
	}
	return 0;
}

int
vhu_listener_accept_fd(struct vhu_listener *l)
{
	int fd, err;

	for (;;) {
		fd = accept4(l->fd, NULL, NULL, SOCK_CLOEXEC);
		if (fd >= 0) {
			return fd;
		}
		err = errno;
		if (err == EINTR) {
			continue;
		}
		/* A client that gave up before we got to it is not the listener's fault. */
		if (err == EAGAIN || err == ECONNABORTED) {
			return -VHU_ERETRY;
		}
		return -err;
	}
}

int
vhu_listener_accept(struct vhu_listener *l, const struct vhu_rules *rules,
		    struct vhu_endpoint **out)
{
	int fd, rc;

	if (!out) {
		return -EINVAL;
	}
	*out = NULL;
	fd = vhu_listener_accept_fd(l);
	if (fd == -VHU_ERETRY) {
		return 0;
	}
	if (fd < 0) {
		return fd;
	}
	rc = vhu_endpoint_from_fd(fd, rules ? rules : &rules_front_request, out);
	return rc < 0 ? rc : 1;
}
