/* SPDX-License-Identifier: MIT */
/*
 * The blocking listener: bind and path ownership (stale sockets, unlink on
 * destroy), accept in blocking and non-blocking mode, adopting an fd.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <vhu/error.h>
#include <vhu/listener.h>

#include "helpers.h"

TestSuite(listener, .init = t_setup, .fini = t_teardown);

static bool
path_is_socket(const char *path)
{
	struct stat st;

	return lstat(path, &st) == 0 && S_ISSOCK(st.st_mode);
}

static bool
path_exists(const char *path)
{
	struct stat st;

	return lstat(path, &st) == 0;
}

Test(listener, create_binds_and_listens)
{
	struct vhu_listener *l;
	const char *p = t_path("l.sock");
	int acc = 0;
	socklen_t sl = sizeof(acc);

	cr_assert_eq(vhu_listener_create(p, false, &l), 0);
	cr_assert_gt(vhu_listener_fd(l), 0);
	cr_assert(path_is_socket(p));
	cr_assert_eq(getsockopt(vhu_listener_fd(l), SOL_SOCKET, SO_ACCEPTCONN, &acc, &sl), 0);
	cr_assert_eq(acc, 1);
	cr_assert(fcntl(vhu_listener_fd(l), F_GETFD) & FD_CLOEXEC);
	vhu_listener_destroy(l);
}

Test(listener, nonblocking_accept_without_client)
{
	struct vhu_listener *l;
	struct vhu_endpoint *ep = (struct vhu_endpoint *)&ep;

	cr_assert_eq(vhu_listener_create(t_path("l.sock"), false, &l), 0);
	cr_assert_eq(vhu_listener_set_nonblocking(l, true), 0);
	cr_assert_eq(vhu_listener_accept(l, NULL, &ep), 0);
	cr_assert_null(ep);
	cr_assert_eq(vhu_listener_accept_fd(l), -VHU_ERETRY);
	vhu_listener_destroy(l);
}

Test(listener, accept_a_client_usable_both_ways)
{
	struct vhu_listener *l;
	struct vhu_endpoint *client, *server;
	struct vhu_hdr hdr = vhu_hdr_request(VHU_REQ_GET_FEATURES, 0, false), got;
	uint64_t feat = 1ull << VHU_F_VERSION_1, r = 0;
	struct vhu_fds fds;
	const char *p = t_path("l.sock");

	cr_assert_eq(vhu_listener_create(p, false, &l), 0);
	cr_assert_eq(vhu_endpoint_connect(p, NULL, &client), 0);
	cr_assert_eq(vhu_listener_accept(l, NULL, &server), 1);
	cr_assert_not_null(server);
	cr_assert(fcntl(vhu_endpoint_fd(server), F_GETFD) & FD_CLOEXEC);
	cr_assert(fcntl(vhu_endpoint_fd(client), F_GETFD) & FD_CLOEXEC);
	/* NULL rules: the accepted side is a back-end, the connected side a front-end. */
	cr_assert_eq(vhu_endpoint_rules(server)->expect, VHU_EXPECT_REQUEST);
	cr_assert_eq(vhu_endpoint_rules(client)->expect, VHU_EXPECT_REPLY);

	cr_assert_eq(vhu_endpoint_send_header(client, &hdr, NULL, 0), 0);
	cr_assert_eq(vhu_endpoint_recv_header(server, &got, &fds), 0);
	cr_assert_eq(got.request, VHU_REQ_GET_FEATURES);
	hdr = vhu_hdr_reply(VHU_REQ_GET_FEATURES, 8);
	cr_assert_eq(vhu_endpoint_send_message(server, &hdr, &feat, 8, NULL, 0), 0);
	cr_assert_eq(vhu_endpoint_recv_body(client, &got, &r, 8, &fds), 0);
	cr_assert_eq(r, feat);
	vhu_endpoint_destroy(client);
	vhu_endpoint_destroy(server);
	vhu_listener_destroy(l);
}

Test(listener, nonblocking_accept_with_a_pending_client)
{
	struct vhu_listener *l;
	struct vhu_endpoint *client, *server;
	const char *p = t_path("l.sock");
	int fd;

	cr_assert_eq(vhu_listener_create(p, false, &l), 0);
	cr_assert_eq(vhu_listener_set_nonblocking(l, true), 0);
	cr_assert_eq(vhu_endpoint_connect(p, NULL, &client), 0);
	cr_assert_eq(vhu_listener_accept(l, NULL, &server), 1);
	/* The accepted socket does not inherit the listener's O_NONBLOCK. */
	cr_assert_eq(fcntl(vhu_endpoint_fd(server), F_GETFL) & O_NONBLOCK, 0);
	vhu_endpoint_destroy(server);
	vhu_endpoint_destroy(client);

	cr_assert_eq(vhu_endpoint_connect(p, NULL, &client), 0);
	fd = vhu_listener_accept_fd(l);
	cr_assert_geq(fd, 0);
	cr_assert(fcntl(fd, F_GETFD) & FD_CLOEXEC);
	close(fd);
	vhu_endpoint_destroy(client);
	vhu_listener_destroy(l);
}

Test(listener, existing_path_needs_unlink_stale)
{
	struct vhu_listener *l1, *l2 = (struct vhu_listener *)&l2, *l3;
	struct vhu_endpoint *client, *server;
	const char *p = t_path("l.sock");

	cr_assert_eq(vhu_listener_create(p, false, &l1), 0);
	cr_assert_eq(vhu_listener_create(p, false, &l2), -EADDRINUSE);
	cr_assert_null(l2);
	cr_assert_eq(vhu_listener_create(p, true, &l3), 0);
	/* The path now leads to the new listener. */
	cr_assert_eq(vhu_endpoint_connect(p, NULL, &client), 0);
	cr_assert_eq(vhu_listener_set_nonblocking(l3, true), 0);
	cr_assert_eq(vhu_listener_accept(l3, NULL, &server), 1);
	vhu_endpoint_destroy(server);
	vhu_endpoint_destroy(client);
	/* Destroying the old one leaves the path it no longer owns alone. */
	vhu_listener_destroy(l1);
	cr_assert(path_is_socket(p));
	vhu_listener_destroy(l3);
	cr_assert_not(path_exists(p));
}

Test(listener, unlink_stale_never_removes_a_regular_file)
{
	struct vhu_listener *l = (struct vhu_listener *)&l;
	const char *p = t_path("not-a-socket");
	int fd = open(p, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);

	cr_assert_geq(fd, 0);
	close(fd);
	cr_assert_eq(vhu_listener_create(p, true, &l), -EADDRINUSE);
	cr_assert_null(l);
	cr_assert(path_exists(p));
}

Test(listener, destroy_removes_the_path_it_created)
{
	struct vhu_listener *l;
	const char *p = t_path("l.sock");

	cr_assert_eq(vhu_listener_create(p, false, &l), 0);
	cr_assert(path_is_socket(p));
	vhu_listener_destroy(l);
	cr_assert_not(path_exists(p));
	/* A fresh bind works again. */
	cr_assert_eq(vhu_listener_create(p, false, &l), 0);
	vhu_listener_destroy(l);
	vhu_listener_destroy(NULL);
}

Test(listener, from_fd_on_a_listening_socket)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct vhu_listener *l;
	struct vhu_endpoint *client, *server;
	const char *p = t_path("sd.sock");
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	strcpy(sa.sun_path, p);
	cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	cr_assert_eq(listen(fd, 4), 0);
	cr_assert_eq(vhu_listener_from_fd(fd, &l), 0);
	cr_assert_eq(vhu_listener_fd(l), fd);
	cr_assert_eq(vhu_endpoint_connect(p, NULL, &client), 0);
	cr_assert_eq(vhu_listener_accept(l, NULL, &server), 1);
	vhu_endpoint_destroy(server);
	vhu_endpoint_destroy(client);
	vhu_listener_destroy(l);
	cr_assert(path_is_socket(p), "an adopted listener never unlinks the path");
}

Test(listener, from_fd_refuses_a_non_listening_socket)
{
	struct vhu_listener *l = (struct vhu_listener *)&l;
	int before = t_fd_count(), sv[2];

	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	cr_assert_eq(vhu_listener_from_fd(sv[0], &l), -EINVAL);
	cr_assert_null(l);
	close(sv[1]);
	cr_assert_eq(vhu_listener_from_fd(t_memfd("x"), &l), -ENOTSOCK);
	cr_assert_eq(t_fd_count(), before, "the fd is closed on failure");
}

Test(listener, path_too_long)
{
	struct vhu_listener *l;
	char longp[sizeof(((struct sockaddr_un *)0)->sun_path) + 1];

	memset(longp, 'a', sizeof(longp) - 1);
	longp[sizeof(longp) - 1] = 0;
	cr_assert_eq(vhu_listener_create(longp, false, &l), -ENAMETOOLONG);
	cr_assert_eq(vhu_listener_create(longp, true, &l), -ENAMETOOLONG);
}
