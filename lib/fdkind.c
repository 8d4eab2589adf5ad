/* SPDX-License-Identifier: MIT */
/*
 * The kind of file each fd of a message must be (the request tables'
 * fd_kind columns): a front-end that sends its own connection socket as a
 * call eventfd, or as the back-end channel, would otherwise leave the
 * back-end holding the far end of that very connection, which then never
 * sees EOF. One fstat per fd; for a socket also one sock_diag query that
 * names its peer.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <linux/unix_diag.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <vhu/error.h>
#include <vhu/wire.h>

/*
 * An eventfd is an anonymous inode: no file type bits. fstat cannot tell it
 * from the other anonymous-inode files (timerfd, signalfd, epoll), which
 * share one inode; those are harmless in its place (they carry no data to
 * the peer and hold no connection), while what must be refused — a socket,
 * a regular file, a pipe — has a type. Naming it exactly would take a
 * /proc readlink per fd, several times the cost of the message.
 */
static bool
is_eventfd(const struct stat *st)
{
	return (st->st_mode & S_IFMT) == 0;
}

/*
 * The inode of the peer of an AF_UNIX socket, by sock_diag; 0 if it has
 * none, -1 if the kernel cannot say (no unix_diag): not checked then.
 */
static long long
unix_peer_ino(ino_t ino)
{
	struct {
		struct nlmsghdr nlh;
		struct unix_diag_req req;
	} q;
	union {
		struct nlmsghdr nlh;
		char buf[1024];
	} a;
	struct sockaddr_nl nl = { .nl_family = AF_NETLINK };
	long long peer = -1;
	ssize_t n;
	int s = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);

	if (s < 0) {
		return -1;
	}
	memset(&q, 0, sizeof(q));
	q.nlh.nlmsg_len = sizeof(q);
	q.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
	q.nlh.nlmsg_flags = NLM_F_REQUEST;
	q.req.sdiag_family = AF_UNIX;
	q.req.udiag_states = ~0u;
	q.req.udiag_ino = (unsigned int)ino;
	q.req.udiag_show = UDIAG_SHOW_PEER;
	q.req.udiag_cookie[0] = ~0u;
	q.req.udiag_cookie[1] = ~0u;
	if (sendto(s, &q, sizeof(q), 0, (struct sockaddr *)&nl, sizeof(nl)) != (ssize_t)sizeof(q)) {
		close(s);
		return -1;
	}
	n = recv(s, &a, sizeof(a), 0);
	close(s);
	if (n < (ssize_t)sizeof(struct nlmsghdr) || !NLMSG_OK(&a.nlh, (size_t)n) ||
	    a.nlh.nlmsg_type != SOCK_DIAG_BY_FAMILY) {
		return -1;
	}
	{
		struct unix_diag_msg *m = NLMSG_DATA(&a.nlh);
		struct rtattr *at = (struct rtattr *)(m + 1);
		int len = (int)a.nlh.nlmsg_len - (int)NLMSG_LENGTH(sizeof(*m));

		peer = 0;
		for (; RTA_OK(at, len); at = RTA_NEXT(at, len)) {
			if (at->rta_type == UNIX_DIAG_PEER && RTA_PAYLOAD(at) >= sizeof(uint32_t)) {
				uint32_t v;

				memcpy(&v, RTA_DATA(at), sizeof(v));
				peer = v;
			}
		}
	}
	return peer;
}

/* A connected AF_UNIX stream socket that does not lead back to the connection self. */
static bool
is_channel(int fd, const struct stat *st, int self)
{
	struct stat ss;
	struct sockaddr_un_min {
		sa_family_t family;
		char path[108];
	} peer;
	socklen_t len = sizeof(peer);
	int domain = 0, type = 0;
	socklen_t olen = sizeof(int);
	long long pino;

	if (!S_ISSOCK(st->st_mode) ||
	    getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &olen) != 0 || domain != AF_UNIX ||
	    getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &olen) != 0 || type != SOCK_STREAM ||
	    getpeername(fd, (struct sockaddr *)&peer, &len) != 0) {
		return false;
	}
	if (self < 0 || fstat(self, &ss) != 0) {
		return true;
	}
	if (ss.st_ino == st->st_ino) {
		return false;		/* this connection's own socket */
	}
	pino = unix_peer_ino(st->st_ino);
	return pino < 0 || (unsigned long long)pino != (unsigned long long)ss.st_ino;
}

static bool
kind_ok(int fd, enum vhu_fd_kind kind, int self)
{
	struct stat st;

	if (kind == VHU_FDK_ANY) {
		return true;
	}
	if (fstat(fd, &st) != 0) {
		return false;
	}
	switch (kind) {
	case VHU_FDK_EVENTFD:
		return is_eventfd(&st);
	case VHU_FDK_FILE:
		return S_ISREG(st.st_mode);
	case VHU_FDK_MAP:
		return S_ISREG(st.st_mode) || S_ISCHR(st.st_mode);
	case VHU_FDK_SOCKET:
		return is_channel(fd, &st, self);
	case VHU_FDK_PIPE:
		return S_ISFIFO(st.st_mode);
	default:
		return false;
	}
}

int
vhu_msg_check_fd_kinds(const struct vhu_rules *rules, const struct vhu_hdr *hdr,
		       const int *fds, unsigned int nfds, int self)
{
	const struct vhu_req_info *row;
	bool reply;
	uint8_t kind;

	if (nfds == 0) {
		return 0;
	}
	row = vhu_req_info((enum vhu_channel)rules->channel, hdr->request);
	if (row == NULL) {
		return -VHU_EREQUEST;
	}
	reply = rules->expect == VHU_EXPECT_REPLY ||
		(rules->expect == VHU_EXPECT_EITHER && (hdr->flags & VHU_FLAG_REPLY));
	kind = reply ? row->reply_fd_kind : row->fd_kind;
	for (unsigned int i = 0; i < nfds; i++) {
		if (fds[i] < 0 || !kind_ok(fds[i], (enum vhu_fd_kind)kind, self)) {
			return -VHU_EFDKIND;
		}
	}
	return 0;
}
