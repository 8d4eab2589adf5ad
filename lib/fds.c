/* SPDX-License-Identifier: MIT */
/*
 * SCM_RIGHTS fd passing. The receive side treats the control data as
 * peer input: cmsg lengths are bounded by the buffer, every fd the kernel
 * installed is accounted for, and on any fault all of them are closed so
 * that nothing leaks into the process.
 */
#define _GNU_SOURCE
#include <stdbool.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <vhu/error.h>
#include <vhu/fds.h>

_Static_assert(_Alignof(union vhu_cmsg_buf) >= _Alignof(struct cmsghdr),
	       "control buffers must be aligned for struct cmsghdr");

void
vhu_fds_init(struct vhu_fds *fds)
{
	unsigned int i;

	for (i = 0; i < VHU_MAX_FDS; i++) {
		fds->fd[i] = -1;
	}
	fds->n = 0;
}

void
vhu_fds_close(struct vhu_fds *fds)
{
	unsigned int i;

	if (!fds) {
		return;
	}
	for (i = 0; i < fds->n && i < VHU_MAX_FDS; i++) {
		if (fds->fd[i] >= 0) {
			close(fds->fd[i]);
		}
		fds->fd[i] = -1;
	}
	fds->n = 0;
}

int
vhu_fds_take(struct vhu_fds *fds, unsigned int i)
{
	int fd;

	if (!fds || i >= fds->n || i >= VHU_MAX_FDS) {
		return -1;
	}
	fd = fds->fd[i];
	fds->fd[i] = -1;
	return fd;
}

int
vhu_cmsg_build(struct msghdr *mh, union vhu_cmsg_buf *cbuf, const int *fds, unsigned int n)
{
	struct cmsghdr *cm;

	if (n > VHU_MAX_FDS) {
		return -VHU_EFDS;
	}
	if (n == 0) {
		mh->msg_control = NULL;
		mh->msg_controllen = 0;
		return 0;
	}
	memset(cbuf, 0, sizeof(*cbuf));
	mh->msg_control = cbuf->buf;
	mh->msg_controllen = CMSG_SPACE(sizeof(int) * n);
	cm = CMSG_FIRSTHDR(mh);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int) * n);
	memcpy(CMSG_DATA(cm), fds, sizeof(int) * n);
	return 0;
}

void
vhu_cmsg_prep_recv(struct msghdr *mh, union vhu_cmsg_buf *cbuf)
{
	mh->msg_control = cbuf->buf;
	mh->msg_controllen = sizeof(cbuf->buf);
}

/*
 * Number of fds in one SCM_RIGHTS cmsg, bounded by what the control area
 * really holds: cmsg_len is kernel-written, but a truncated last cmsg must
 * not make us read past the buffer.
 */
static size_t
cmsg_nfds(const struct msghdr *mh, const struct cmsghdr *cm)
{
	const char *end = (const char *)mh->msg_control + mh->msg_controllen;
	const char *data = (const char *)CMSG_DATA(cm);
	size_t len;

	if (cm->cmsg_len < CMSG_LEN(0) || data > end) {
		return 0;
	}
	len = cm->cmsg_len - CMSG_LEN(0);
	if (len > (size_t)(end - data)) {
		len = (size_t)(end - data);
	}
	return len / sizeof(int);
}

static bool
is_rights(const struct cmsghdr *cm)
{
	return cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS;
}

static void
close_all(const struct msghdr *mh)
{
	struct cmsghdr *cm;

	for (cm = CMSG_FIRSTHDR(mh); cm; cm = CMSG_NXTHDR((struct msghdr *)mh, cm)) {
		size_t i, n;

		if (!is_rights(cm)) {
			continue;
		}
		n = cmsg_nfds(mh, cm);
		for (i = 0; i < n; i++) {
			int fd;

			memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
			if (fd >= 0) {
				close(fd);
			}
		}
	}
}

int
vhu_cmsg_collect(const struct msghdr *mh, int msg_flags, struct vhu_fds *out)
{
	struct cmsghdr *cm;
	size_t total = 0;
	unsigned int k;

	if (!mh->msg_control) {
		return (msg_flags & MSG_CTRUNC) ? -VHU_ECTRUNC : 0;
	}
	if (mh->msg_controllen < sizeof(struct cmsghdr)) {
		/*
		 * Truncated with nothing delivered although the buffer had room:
		 * the kernel could not install a single fd in this process.
		 */
		return (msg_flags & MSG_CTRUNC) ? -EMFILE : 0;
	}
	for (cm = CMSG_FIRSTHDR(mh); cm; cm = CMSG_NXTHDR((struct msghdr *)mh, cm)) {
		if (is_rights(cm)) {
			total += cmsg_nfds(mh, cm);
		}
	}
	if (msg_flags & MSG_CTRUNC) {
		close_all(mh);
		/*
		 * Every control buffer here has room for VHU_MAX_FDS fds. Fewer
		 * arrived, yet the kernel truncated: it ran out of room in the fd
		 * table (RLIMIT_NOFILE), the receiver's shortage, not the peer's
		 * fault. A full buffer means the peer sent too many.
		 */
		return total < VHU_MAX_FDS ? -EMFILE : -VHU_ECTRUNC;
	}
	if (total == 0) {
		return 0;
	}
	if (!out || out->n > VHU_MAX_FDS || total > VHU_MAX_FDS - out->n) {
		close_all(mh);
		return -VHU_EFDS;
	}
	k = out->n;
	for (cm = CMSG_FIRSTHDR(mh); cm; cm = CMSG_NXTHDR((struct msghdr *)mh, cm)) {
		size_t i, n;

		if (!is_rights(cm)) {
			continue;
		}
		n = cmsg_nfds(mh, cm);
		for (i = 0; i < n; i++) {
			memcpy(&out->fd[k++], CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
		}
	}
	out->n = k;
	return (int)total;
}

int
vhu_fd_same_file(int a, int b)
{
	struct stat sa, sb;

	if (a < 0 || b < 0 || fstat(a, &sa) != 0 || fstat(b, &sb) != 0) {
		return 0;
	}
	return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}
