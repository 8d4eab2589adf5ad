/* SPDX-License-Identifier: MIT */
/*
 * fd sets and SCM_RIGHTS control buffers: ownership (close, take), the
 * exact control data a send builds, and the receive-side collection that
 * must never leak an fd (several cmsgs, MSG_CTRUNC, no room).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <vhu/error.h>
#include <vhu/fds.h>
#include <vhu/wire.h>

#include "helpers.h"

TestSuite(fds, .init = t_setup, .fini = t_teardown);

static bool
is_open(int fd)
{
	return fcntl(fd, F_GETFD) >= 0;
}

Test(fds, close_is_idempotent)
{
	struct vhu_fds s;
	int a = t_eventfd(), b = t_eventfd();

	vhu_fds_init(&s);
	cr_assert_eq(s.n, 0);
	s.fd[s.n++] = a;
	s.fd[s.n++] = b;
	vhu_fds_close(&s);
	cr_assert_eq(s.n, 0);
	cr_assert_not(is_open(a));
	cr_assert_not(is_open(b));
	cr_assert_eq(s.fd[0], -1);
	cr_assert_eq(s.fd[1], -1);
	/* A second close must not touch fd numbers the process reuses meanwhile. */
	a = t_eventfd();
	vhu_fds_close(&s);
	cr_assert(is_open(a));
	close(a);
}

Test(fds, take_moves_ownership_out)
{
	struct vhu_fds s;
	int a = t_eventfd(), b = t_eventfd(), got;

	vhu_fds_init(&s);
	s.fd[s.n++] = a;
	s.fd[s.n++] = b;
	got = vhu_fds_take(&s, 1);
	cr_assert_eq(got, b);
	cr_assert_eq(s.fd[1], -1);
	cr_assert_eq(vhu_fds_take(&s, 1), -1, "already taken");
	cr_assert_eq(vhu_fds_take(&s, 2), -1, "past n");
	cr_assert_eq(vhu_fds_take(&s, VHU_MAX_FDS), -1, "out of range");
	vhu_fds_close(&s);
	cr_assert_not(is_open(a));
	cr_assert(is_open(b), "a taken fd is not closed with the set");
	close(b);
}

Test(fds, build_without_fds_has_no_control_data)
{
	union vhu_cmsg_buf cb;
	struct msghdr mh;

	memset(&mh, 0x5a, sizeof(mh));
	cr_assert_eq(vhu_cmsg_build(&mh, &cb, NULL, 0), 0);
	cr_assert_null(mh.msg_control);
	cr_assert_eq(mh.msg_controllen, 0);
}

Test(fds, build_more_than_max_is_refused)
{
	union vhu_cmsg_buf cb;
	struct msghdr mh = { 0 };
	int fds[VHU_MAX_FDS + 1];

	memset(fds, 0, sizeof(fds));
	cr_assert_eq(vhu_cmsg_build(&mh, &cb, fds, VHU_MAX_FDS + 1), -VHU_EFDS);
	cr_assert_eq(vhu_cmsg_build(&mh, &cb, fds, VHU_MAX_FDS), 0);
	cr_assert_eq(mh.msg_controllen, CMSG_SPACE(sizeof(int) * VHU_MAX_FDS));
}

Test(fds, build_layout_is_one_scm_rights_cmsg)
{
	union vhu_cmsg_buf cb;
	struct msghdr mh = { 0 };
	struct cmsghdr *cm;
	int fds[3] = { 7, 8, 9 }, out[3];

	cr_assert_eq(vhu_cmsg_build(&mh, &cb, fds, 3), 0);
	cr_assert_eq(mh.msg_control, cb.buf);
	cr_assert_eq(mh.msg_controllen, CMSG_SPACE(3 * sizeof(int)));
	cm = CMSG_FIRSTHDR(&mh);
	cr_assert_not_null(cm);
	cr_assert_eq(cm->cmsg_level, SOL_SOCKET);
	cr_assert_eq(cm->cmsg_type, SCM_RIGHTS);
	cr_assert_eq(cm->cmsg_len, CMSG_LEN(3 * sizeof(int)));
	memcpy(out, CMSG_DATA(cm), sizeof(out));
	cr_assert_arr_eq(out, fds, sizeof(out));
	cr_assert_null(CMSG_NXTHDR(&mh, cm));
}

Test(fds, prep_recv_offers_room_for_max_fds)
{
	union vhu_cmsg_buf cb;
	struct msghdr mh = { 0 };

	vhu_cmsg_prep_recv(&mh, &cb);
	cr_assert_eq(mh.msg_control, cb.buf);
	cr_assert_eq(mh.msg_controllen, CMSG_SPACE(sizeof(int) * VHU_MAX_FDS));
}

/* The real kernel path: build, sendmsg, recvmsg with MSG_CMSG_CLOEXEC, collect. */
Test(fds, socket_round_trip_delivers_the_same_files_cloexec)
{
	union vhu_cmsg_buf scb, rcb;
	struct vhu_fds got;
	char data = 'x', rd = 0, content[16];
	struct iovec siov = { &data, 1 }, riov = { &rd, 1 };
	struct msghdr smh = { .msg_iov = &siov, .msg_iovlen = 1 };
	struct msghdr rmh = { .msg_iov = &riov, .msg_iovlen = 1 };
	int sv[2], fds[3], i;

	fds[0] = t_memfd("zero");
	fds[1] = t_memfd("one");
	fds[2] = t_eventfd();
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	cr_assert_eq(vhu_cmsg_build(&smh, &scb, fds, 3), 0);
	cr_assert_eq(sendmsg(sv[0], &smh, MSG_NOSIGNAL), 1);
	vhu_cmsg_prep_recv(&rmh, &rcb);
	cr_assert_eq(recvmsg(sv[1], &rmh, MSG_CMSG_CLOEXEC), 1);
	cr_assert_not(rmh.msg_flags & MSG_CTRUNC);
	vhu_fds_init(&got);
	cr_assert_eq(vhu_cmsg_collect(&rmh, rmh.msg_flags, &got), 3);
	cr_assert_eq(got.n, 3);
	for (i = 0; i < 3; i++) {
		cr_assert_neq(got.fd[i], fds[i], "a new fd number, not the sender's");
		cr_assert(fcntl(got.fd[i], F_GETFD) & FD_CLOEXEC, "fd %d is not CLOEXEC", i);
		cr_assert(vhu_fd_same_file(got.fd[i], fds[i]));
		cr_assert(t_same_file(fds[i], got.fd[i]));
	}
	memset(content, 0, sizeof(content));
	cr_assert_eq(t_read_file(got.fd[1], content, sizeof(content)), 3);
	cr_assert_str_eq(content, "one");
	vhu_fds_close(&got);
	for (i = 0; i < 3; i++) {
		close(fds[i]);
	}
	close(sv[0]);
	close(sv[1]);
}

/* A control buffer with several cmsgs, as a receive with SO_PASSCRED delivers. */
union three_cmsgs {
	struct cmsghdr align;
	char buf[CMSG_SPACE(2 * sizeof(int)) + CMSG_SPACE(sizeof(struct ucred)) +
		 CMSG_SPACE(sizeof(int))];
};

static void
fill_three(struct msghdr *mh, union three_cmsgs *cb, const int *two, int one)
{
	struct cmsghdr *cm;
	struct ucred cred = { .pid = getpid(), .uid = getuid(), .gid = getgid() };

	memset(cb, 0, sizeof(*cb));
	memset(mh, 0, sizeof(*mh));
	mh->msg_control = cb->buf;
	mh->msg_controllen = sizeof(cb->buf);
	cm = CMSG_FIRSTHDR(mh);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(2 * sizeof(int));
	memcpy(CMSG_DATA(cm), two, 2 * sizeof(int));
	cm = CMSG_NXTHDR(mh, cm);
	cr_assert_not_null(cm);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_CREDENTIALS;
	cm->cmsg_len = CMSG_LEN(sizeof(cred));
	memcpy(CMSG_DATA(cm), &cred, sizeof(cred));
	cm = CMSG_NXTHDR(mh, cm);
	cr_assert_not_null(cm);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cm), &one, sizeof(int));
}

Test(fds, collect_walks_every_cmsg_and_appends)
{
	union three_cmsgs cb;
	struct msghdr mh;
	struct vhu_fds out;
	int pre = t_eventfd(), two[2] = { t_eventfd(), t_eventfd() }, one = t_eventfd();

	fill_three(&mh, &cb, two, one);
	vhu_fds_init(&out);
	out.fd[out.n++] = pre;
	/* MSG_CMSG_CLOEXEC echoed in the flags is not an error. */
	cr_assert_eq(vhu_cmsg_collect(&mh, MSG_CMSG_CLOEXEC, &out), 3);
	cr_assert_eq(out.n, 4);
	cr_assert_eq(out.fd[0], pre);
	cr_assert_eq(out.fd[1], two[0]);
	cr_assert_eq(out.fd[2], two[1]);
	cr_assert_eq(out.fd[3], one, "the SCM_CREDENTIALS cmsg in between is skipped");
	vhu_fds_close(&out);
}

Test(fds, collect_ctrunc_closes_all_and_leaves_out_unchanged)
{
	union three_cmsgs cb;
	struct msghdr mh;
	struct vhu_fds out;
	int pre = t_eventfd(), two[2] = { t_eventfd(), t_eventfd() }, one = t_eventfd();

	fill_three(&mh, &cb, two, one);
	vhu_fds_init(&out);
	out.fd[out.n++] = pre;
	/* Truncated with 3 of a 32-fd buffer: what the kernel does when the fd table is full. */
	cr_assert_eq(vhu_cmsg_collect(&mh, MSG_CTRUNC | MSG_CMSG_CLOEXEC, &out), -EMFILE);
	cr_assert_eq(out.n, 1);
	cr_assert_eq(out.fd[0], pre);
	cr_assert_eq(out.fd[1], -1);
	cr_assert_not(is_open(two[0]));
	cr_assert_not(is_open(two[1]));
	cr_assert_not(is_open(one));
	cr_assert(is_open(pre));
	vhu_fds_close(&out);
}

Test(fds, collect_without_room_closes_all_and_leaves_out_unchanged)
{
	union three_cmsgs cb;
	struct msghdr mh;
	struct vhu_fds out;
	int two[2] = { t_eventfd(), t_eventfd() }, one = t_eventfd(), keep = t_eventfd();
	unsigned int i;

	fill_three(&mh, &cb, two, one);
	vhu_fds_init(&out);
	/* 30 slots taken (all the same fd number, closed by hand below): 2 free, 3 arrive. */
	for (i = 0; i < VHU_MAX_FDS - 2; i++) {
		out.fd[out.n++] = keep;
	}
	cr_assert_eq(vhu_cmsg_collect(&mh, 0, &out), -VHU_EFDS);
	cr_assert_eq(out.n, VHU_MAX_FDS - 2);
	cr_assert_eq(out.fd[VHU_MAX_FDS - 2], -1);
	cr_assert_not(is_open(two[0]));
	cr_assert_not(is_open(two[1]));
	cr_assert_not(is_open(one));
	cr_assert(is_open(keep));
	close(keep);
}

Test(fds, collect_without_control_data_is_zero)
{
	struct msghdr mh = { 0 };
	struct vhu_fds out;

	vhu_fds_init(&out);
	cr_assert_eq(vhu_cmsg_collect(&mh, 0, &out), 0);
	cr_assert_eq(out.n, 0);
	cr_assert_eq(vhu_cmsg_collect(&mh, MSG_CTRUNC, &out), -VHU_ECTRUNC);
}

/* 33..40 fds through the kernel into a 32-slot buffer: truncated, nothing leaks. */
Test(fds, kernel_ctrunc_leaks_nothing)
{
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(40 * sizeof(int))];
	} big;
	int base = t_eventfd(), sv[2], sent[40], before;
	unsigned int n, i;

	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	before = t_fd_count();
	for (n = 33; n <= 40; n++) {
		char data = 'd', rd;
		struct iovec siov = { &data, 1 }, riov = { &rd, 1 };
		struct msghdr smh = { .msg_iov = &siov, .msg_iovlen = 1 };
		struct msghdr rmh = { .msg_iov = &riov, .msg_iovlen = 1 };
		union vhu_cmsg_buf rcb;
		struct cmsghdr *cm;
		struct vhu_fds out;

		for (i = 0; i < n; i++) {
			sent[i] = dup(base);
			cr_assert_geq(sent[i], 0);
		}
		memset(&big, 0, sizeof(big));
		smh.msg_control = big.buf;
		smh.msg_controllen = CMSG_SPACE(n * sizeof(int));
		cm = CMSG_FIRSTHDR(&smh);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(n * sizeof(int));
		memcpy(CMSG_DATA(cm), sent, n * sizeof(int));
		cr_assert_eq(sendmsg(sv[0], &smh, MSG_NOSIGNAL), 1);
		for (i = 0; i < n; i++) {
			close(sent[i]);
		}
		vhu_cmsg_prep_recv(&rmh, &rcb);
		cr_assert_eq(recvmsg(sv[1], &rmh, MSG_CMSG_CLOEXEC), 1);
		cr_assert(rmh.msg_flags & MSG_CTRUNC, "%u fds did not truncate", n);
		vhu_fds_init(&out);
		cr_assert_eq(vhu_cmsg_collect(&rmh, rmh.msg_flags, &out), -VHU_ECTRUNC);
		cr_assert_eq(out.n, 0);
		cr_assert_eq(t_fd_count(), before, "%u fds: fds leaked", n);
	}
	close(sv[0]);
	close(sv[1]);
	close(base);
}

/*
 * The receiver's own fd table is full: the kernel installs fewer fds than
 * were sent (none, or some) and truncates. That is the receiver's shortage,
 * named -EMFILE, not the peer's fault (-VHU_ECTRUNC); nothing leaks.
 */
Test(fds, own_fd_shortage_is_emfile)
{
	int base = t_eventfd(), sv[2], fds[3];

	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	for (int i = 0; i < 3; i++) {
		fds[i] = dup(base);
		cr_assert_geq(fds[i], 0);
	}
	/* Room for 0, then for 1, of the 3 fds sent. */
	for (int room = 0; room < 2; room++) {
		char data = 'd', rd;
		struct iovec riov = { &rd, 1 };
		struct msghdr rmh = { .msg_iov = &riov, .msg_iovlen = 1 };
		union vhu_cmsg_buf rcb, scb;
		struct iovec siov = { &data, 1 };
		struct msghdr smh = { .msg_iov = &siov, .msg_iovlen = 1 };
		struct rlimit old, lim;
		struct vhu_fds out;
		int top, before = t_fd_count();

		cr_assert_eq(vhu_cmsg_build(&smh, &scb, fds, 3), 0);
		cr_assert_eq(sendmsg(sv[0], &smh, MSG_NOSIGNAL), 1);
		/* The lowest free number: every one below it is taken. */
		top = dup(base);
		cr_assert_geq(top, 0);
		if (room == 1) {
			close(top);
		}
		cr_assert_eq(getrlimit(RLIMIT_NOFILE, &old), 0);
		lim = old;
		lim.rlim_cur = (rlim_t)top + 1;
		cr_assert_eq(setrlimit(RLIMIT_NOFILE, &lim), 0);
		vhu_cmsg_prep_recv(&rmh, &rcb);
		cr_assert_eq(recvmsg(sv[1], &rmh, MSG_CMSG_CLOEXEC), 1);
		cr_assert_eq(setrlimit(RLIMIT_NOFILE, &old), 0);
		cr_assert(rmh.msg_flags & MSG_CTRUNC, "room for %d: no truncation", room);
		vhu_fds_init(&out);
		cr_assert_eq(vhu_cmsg_collect(&rmh, rmh.msg_flags, &out), -EMFILE,
			     "room for %d fds of 3", room);
		cr_assert_eq(out.n, 0);
		if (room == 0) {
			close(top);
		}
		cr_assert_eq(t_fd_count(), before, "room for %d: fds leaked", room);
	}
	for (int i = 0; i < 3; i++) {
		close(fds[i]);
	}
	close(sv[0]);
	close(sv[1]);
	close(base);
}

/* Each request's fds must be the kind of file it needs (the tables' fd_kind columns). */
Test(fds, kind_checks)
{
	struct vhu_rules fe = { .channel = VHU_CHAN_FRONTEND, .expect = VHU_EXPECT_REQUEST };
	struct vhu_rules fe_reply = { .channel = VHU_CHAN_FRONTEND, .expect = VHU_EXPECT_REPLY };
	struct vhu_hdr call = vhu_hdr_request(VHU_REQ_SET_VRING_CALL, 8, false);
	struct vhu_hdr mem = vhu_hdr_request(VHU_REQ_SET_MEM_TABLE, 40, false);
	struct vhu_hdr chan = vhu_hdr_request(VHU_REQ_SET_BACKEND_REQ_FD, 0, false);
	struct vhu_hdr state = vhu_hdr_request(VHU_REQ_SET_DEVICE_STATE_FD, 8, false);
	struct vhu_hdr inflight = vhu_hdr_reply(VHU_REQ_GET_INFLIGHT_FD, 24);
	int efd = t_eventfd(), mfd = memfd_create("region", MFD_CLOEXEC), conn[2], other[2], p[2];
	int lone = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	cr_assert_geq(mfd, 0);
	cr_assert_geq(lone, 0);
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, conn), 0);
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, other), 0);
	cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
	/* kick/call/err: eventfds only */
	cr_assert_eq(vhu_msg_check_fd_kinds(&fe, &call, &efd, 1, conn[0]), 0);
	cr_assert_eq(vhu_msg_check_fd_kinds(&fe, &call, &mfd, 1, conn[0]), -VHU_EFDKIND);
	cr_assert_eq(vhu_msg_check_fd_kinds(&fe, &call, &conn[1], 1, conn[0]), -VHU_EFDKIND);
	cr_assert_eq(vhu_msg_check_fd_kinds(&fe, &call, &p[0], 1, conn[0]), -VHU_EFDKIND);
	/* memory: regular files (a memfd) */
	cr_assert_eq(vhu_msg_check_fd_kinds(&fe, &mem, &mfd, 1, conn[0]), 0);
	cr_assert_eq(vhu_msg_check_fd_kinds(&fe, &mem, &efd, 1, conn[0]), -VHU_EFDKIND);
	{
		int two[2] = { mfd, efd };

		cr_assert_eq(vhu_msg_check_fd_kinds(&fe, &mem, two, 2, conn[0]), -VHU_EFDKIND,
			     "the second region's fd is judged too");
	}
	/* the back-end channel: a connected unix stream socket that is not this connection */
	cr_assert_eq(vhu_msg_check_fd_kinds(&fe, &chan, &other[0], 1, conn[0]), 0);
	cr_assert_eq(vhu_msg_check_fd_kinds(&fe, &chan, &conn[1], 1, conn[0]), -VHU_EFDKIND,
		     "the peer's own end of the connection");
	cr_assert_eq(vhu_msg_check_fd_kinds(&fe, &chan, &conn[0], 1, conn[0]), -VHU_EFDKIND,
		     "the connection's own socket");
	cr_assert_eq(vhu_msg_check_fd_kinds(&fe, &chan, &lone, 1, conn[0]), -VHU_EFDKIND,
		     "an unconnected socket");
	cr_assert_eq(vhu_msg_check_fd_kinds(&fe, &chan, &efd, 1, conn[0]), -VHU_EFDKIND);
	cr_assert_eq(vhu_msg_check_fd_kinds(&fe, &chan, &conn[1], 1, -1), 0,
		     "self unknown: any connected socket");
	/* device state: a pipe; the inflight area in a reply: a regular file */
	cr_assert_eq(vhu_msg_check_fd_kinds(&fe, &state, &p[1], 1, conn[0]), 0);
	cr_assert_eq(vhu_msg_check_fd_kinds(&fe, &state, &efd, 1, conn[0]), -VHU_EFDKIND);
	cr_assert_eq(vhu_msg_check_fd_kinds(&fe_reply, &inflight, &mfd, 1, conn[0]), 0);
	cr_assert_eq(vhu_msg_check_fd_kinds(&fe_reply, &inflight, &efd, 1, conn[0]), -VHU_EFDKIND);
	/* no fds, nothing to judge; a closed fd is no kind */
	cr_assert_eq(vhu_msg_check_fd_kinds(&fe, &call, NULL, 0, conn[0]), 0);
	{
		int gone = dup(efd);

		close(gone);
		cr_assert_eq(vhu_msg_check_fd_kinds(&fe, &call, &gone, 1, conn[0]), -VHU_EFDKIND);
	}
	close(efd);
	close(mfd);
	close(lone);
	for (int i = 0; i < 2; i++) {
		close(conn[i]);
		close(other[i]);
		close(p[i]);
	}
}

Test(fds, same_file)
{
	int a = t_memfd("a"), b = t_memfd("a"), a2 = dup(a);

	cr_assert(vhu_fd_same_file(a, a2));
	cr_assert_not(vhu_fd_same_file(a, b), "same content, different files");
	cr_assert_not(vhu_fd_same_file(a, -1));
	close(a2);
	cr_assert_not(vhu_fd_same_file(a, a2), "a closed fd is nobody's file");
	close(a);
	close(b);
}
