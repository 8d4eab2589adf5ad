/* SPDX-License-Identifier: MIT */
/**
 * \file
 * The blocking listener: a bound, listening AF_UNIX stream socket.
 */
#ifndef VHU_LISTENER_H
#define VHU_LISTENER_H

#include <stdbool.h>

#include <vhu/endpoint.h>

#ifdef __cplusplus
extern "C" {
#endif
#if defined(__GNUC__)
#pragma GCC visibility push(default) /* the API: exported even under -fvisibility=hidden */
#endif

struct vhu_listener;

/**
 * Bind and listen on path. With unlink_stale, an existing socket file at
 * path is removed first (a stale socket left by a dead process); without
 * it, an existing path fails with -EADDRINUSE. The listener removes path on
 * destroy when it created it.
 * \return 0, -ENAMETOOLONG if path does not fit in sun_path, or -errno.
 */
int vhu_listener_create(const char *path, bool unlink_stale, struct vhu_listener **out);

/**
 * Wrap an already bound and listening socket (e.g. from systemd socket
 * activation); takes ownership of fd, also on failure (it is then closed).
 * The path is never unlinked.
 * \return 0, -ENOTSOCK, -EINVAL if it is not a listening stream socket.
 */
int vhu_listener_from_fd(int fd, struct vhu_listener **out);

/** Close the socket, remove the path if this listener created it, free. */
void vhu_listener_destroy(struct vhu_listener *l);

/** \return the listening fd (still owned by the listener). */
int vhu_listener_fd(const struct vhu_listener *l);

/** Switch O_NONBLOCK for accept. \return 0 or -errno. */
int vhu_listener_set_nonblocking(struct vhu_listener *l, bool on);

/**
 * Accept one connection as a socket fd (SOCK_CLOEXEC), EINTR retried.
 * \return the fd (>= 0), -VHU_ERETRY when non-blocking and no connection
 *         is pending (or it was aborted), or -errno.
 */
int vhu_listener_accept_fd(struct vhu_listener *l);

/**
 * Accept one connection as an endpoint with the given receive rules (NULL:
 * front-end channel, expecting requests: the back-end side).
 * \return 1 with *out set, 0 when non-blocking and there is no connection
 *         yet (*out is NULL; not an error), or a negative error.
 */
int vhu_listener_accept(struct vhu_listener *l, const struct vhu_rules *rules,
			struct vhu_endpoint **out);

#if defined(__GNUC__)
#pragma GCC visibility pop
#endif
#ifdef __cplusplus
}
#endif
#endif
