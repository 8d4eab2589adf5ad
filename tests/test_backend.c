/* SPDX-License-Identifier: MIT */
/*
 * tools/vhu-backend, driven from outside as a VMM would drive it: the real
 * binary is spawned on a socket under t_dir(), and the blocking endpoint of
 * lib/ plays the front-end. What the back-end keeps is checked in its
 * /proc/PID/fd (same inode as the file sent), what it logs on its stderr.
 */
#define _GNU_SOURCE
#include "tool_helpers.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <vhu/vhu.h>

#define F(n)		(1ull << (n))
#define PF(name)	F(VHU_PROTOCOL_F_##name)

/* What the back-end documents it offers (virtio-blk SEG_MAX, BLK_SIZE, FLUSH, MQ). */
#define EXPECT_FEATURES	(F(2) | F(6) | F(9) | F(12) | F(VHU_F_RING_INDIRECT_DESC) | \
			 F(VHU_F_RING_EVENT_IDX) | F(VHU_F_PROTOCOL_FEATURES) | F(VHU_F_VERSION_1))
/*
 * The device layer's protocol features: RESET_DEVICE is implemented (and so
 * offered) there; INFLIGHT_SHMFD because vhu-backend opts in.
 */
#define EXPECT_PF	(PF(MQ) | PF(REPLY_ACK) | PF(BACKEND_REQ) | PF(CONFIG) | \
			 PF(INFLIGHT_SHMFD) | PF(RESET_DEVICE) | PF(CONFIGURE_MEM_SLOTS) | \
			 PF(STATUS))

/* Upper bound for one wait on the back-end; reaching it fails the test, nothing sleeps. */
#define WAIT_MS		20000
#define NCLIENTS	20
#define VRING_BASE	42u

/* The spawned back-end: t_tool.backend (stdout and stderr on one pipe) ---- */

/* The back-end must never outlive a test, failed or not: t_tool_fini kills it. */
TestSuite(backend, .init = t_setup, .fini = t_tool_fini, .timeout = 60);

static void
be_spawn(const char *const *args)
{
	t_proc_spawn(&t_tool.backend, "vhu-backend", args, true);
}

/* Skip output until a line containing what; fails at EOF. */
static void
be_wait_line(const char *what)
{
	t_proc_wait_line(&t_tool.backend, what);
}

static void
be_start(const char *mode, const char *const *extra)
{
	const char *args[20] = { "--socket", t_path("be.sock"), "--recv-mode", mode };
	unsigned int n = 4;
	char want[256];

	while (extra != NULL && *extra != NULL && n < 19) {
		args[n++] = *extra++;
	}
	args[n] = NULL;
	be_spawn(args);
	snprintf(want, sizeof(want), "vhu-backend: listening on %s", t_path("be.sock"));
	be_wait_line(want);
}

/* Wait for the back-end to exit by itself; \return its wait status. */
static int
be_wait_exit(void)
{
	return t_proc_stop(&t_tool.backend, 0);
}

/* SIGTERM must end it with status 0 (under ASan, that also means no leak). */
static void
be_stop_cleanly(void)
{
	int status;

	cr_assert_eq(kill(t_tool.backend.pid, SIGTERM), 0);
	status = be_wait_exit();
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "wait status 0x%x", status);
}

/* Open fds of the back-end that are file (dev, ino); stat follows /proc's links. */
static int
be_fds_of(dev_t dev, ino_t ino)
{
	char dir[64], path[320];
	struct dirent *e;
	struct stat st;
	DIR *d;
	int n = 0;

	snprintf(dir, sizeof(dir), "/proc/%d/fd", (int)t_tool.backend.pid);
	d = opendir(dir);
	cr_assert_not_null(d);
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.') {
			continue;
		}
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		if (stat(path, &st) == 0 && st.st_dev == dev && st.st_ino == ino) {
			n++;
		}
	}
	closedir(d);
	return n;
}

/* Open fds of the back-end whose link starts with prefix (NULL: all of them). */
static int
be_fds_named(const char *prefix)
{
	return t_fds_of(t_tool.backend.pid, prefix);
}

struct file_id {
	dev_t dev;
	ino_t ino;
};

static struct file_id
file_id(int fd)
{
	struct stat st;

	cr_assert_eq(fstat(fd, &st), 0);
	return (struct file_id){ st.st_dev, st.st_ino };
}

static int
be_holds(struct file_id id)
{
	return be_fds_of(id.dev, id.ino);
}

/* A region's file: as large as the region, since the back-end maps it. */
static int
region_memfd_of(const char *name, off_t size)
{
	int fd = memfd_create(name, MFD_CLOEXEC);

	cr_assert_geq(fd, 0);
	cr_assert_eq(ftruncate(fd, size), 0);
	return fd;
}

static int
region_memfd(const char *name)
{
	return region_memfd_of(name, 4096);
}

/* Front-end side -------------------------------------------------------- */

static struct vhu_endpoint *
fe_connect(void)
{
	struct vhu_endpoint *ep = NULL;
	int rc = vhu_endpoint_connect(t_path("be.sock"), NULL, &ep);

	cr_assert_eq(rc, 0, "connect: %s", vhu_strerror(rc));
	return ep;
}

static void
fe_send(struct vhu_endpoint *ep, uint32_t req, bool need_reply, const void *body, size_t len,
	const int *fds, unsigned int nfds)
{
	struct vhu_hdr h = vhu_hdr_request(req, (uint32_t)len, need_reply);
	int rc;

	if (len == 0) {
		rc = vhu_endpoint_send_header(ep, &h, fds, nfds);
	} else {
		rc = vhu_endpoint_send_message(ep, &h, body, len, fds, nfds);
	}
	cr_assert_eq(rc, 0, "send %s: %s", vhu_req_name(VHU_CHAN_FRONTEND, req), vhu_strerror(rc));
}

static void
fe_send_u64(struct vhu_endpoint *ep, uint32_t req, bool need_reply, uint64_t v,
	    const int *fds, unsigned int nfds)
{
	fe_send(ep, req, need_reply, &v, sizeof(v), fds, nfds);
}

/* Receive the reply to req: flags exactly VERSION|REPLY, no fds. \return body length. */
static size_t
fe_recv(struct vhu_endpoint *ep, uint32_t req, void *buf, size_t len)
{
	struct vhu_hdr h;
	ssize_t n = vhu_endpoint_recv_body_into_buf(ep, &h, buf, len, NULL);

	cr_assert_geq(n, 0, "reply to %s: %s", vhu_req_name(VHU_CHAN_FRONTEND, req),
		      vhu_strerror((int)n));
	cr_assert_eq(h.request, req, "reply code %u to %s", h.request,
		     vhu_req_name(VHU_CHAN_FRONTEND, req));
	cr_assert_eq(h.flags, VHU_VERSION | VHU_FLAG_REPLY);
	cr_assert_eq(h.size, (uint32_t)n);
	return (size_t)n;
}

static uint64_t
fe_recv_u64(struct vhu_endpoint *ep, uint32_t req)
{
	uint64_t v = 0;

	cr_assert_eq(fe_recv(ep, req, &v, sizeof(v)), sizeof(v));
	return v;
}

static uint64_t
fe_get_u64(struct vhu_endpoint *ep, uint32_t req)
{
	fe_send(ep, req, false, NULL, 0, NULL, 0);
	return fe_recv_u64(ep, req);
}

/* Send a request with NEED_REPLY and \return its ack. */
static uint64_t
fe_acked(struct vhu_endpoint *ep, uint32_t req, const void *body, size_t len,
	 const int *fds, unsigned int nfds)
{
	fe_send(ep, req, true, body, len, fds, nfds);
	return fe_recv_u64(ep, req);
}

/* The back-end has closed this connection: the next receive says so. */
static void
fe_expect_closed(struct vhu_endpoint *ep)
{
	struct vhu_hdr h;
	struct vhu_fds fds;
	int rc;

	vhu_fds_init(&fds);
	rc = vhu_endpoint_recv_header(ep, &h, &fds);
	vhu_fds_close(&fds);
	cr_assert_eq(rc, -VHU_EDISCONNECT, "expected Disconnect, got %s (%d)", vhu_strerror(rc),
		     rc);
}

/* The QEMU handshake (wire doc §5) plus device start, one step at a time ----- */

enum step {
	S_GET_FEATURES,
	S_GET_PROTOCOL_FEATURES,
	S_SET_PROTOCOL_FEATURES,
	S_GET_QUEUE_NUM,
	S_GET_MAX_MEM_SLOTS,
	S_SET_BACKEND_REQ_FD,
	S_SET_OWNER,
	S_GET_FEATURES_AGAIN,
	S_SET_VRING_CALL_MASKED,
	S_SET_FEATURES,
	S_SET_MEM_TABLE,
	S_SET_VRING_NUM,
	S_SET_VRING_BASE,
	S_SET_VRING_ADDR,
	S_SET_VRING_KICK,
	S_SET_VRING_CALL,
	S_SET_VRING_ENABLE,
	S_GET_CONFIG,
	S_SET_STATUS,
	S_GET_STATUS,
	S_GET_VRING_BASE,
	S_COUNT,
};

struct client {
	struct vhu_endpoint *ep;
	int chan;			/* our end of the back-end channel */
	struct file_id chan_peer;	/* the end handed to the back-end */
	int mem[2];			/* region memfds, kept to compare with the back-end's */
};

static void
client_init(struct client *c)
{
	c->ep = fe_connect();
	c->chan = -1;
	c->mem[0] = -1;
	c->mem[1] = -1;
}

static void
client_close(struct client *c)
{
	vhu_endpoint_destroy(c->ep);
	c->ep = NULL;
	if (c->chan >= 0) {
		close(c->chan);
		c->chan = -1;
	}
	for (unsigned int i = 0; i < 2; i++) {
		if (c->mem[i] >= 0) {
			close(c->mem[i]);
			c->mem[i] = -1;
		}
	}
}

static void
send_eventfd(struct client *c, uint32_t req, uint64_t index)
{
	int fd = t_eventfd();

	fe_send_u64(c->ep, req, false, index, &fd, 1);
	close(fd);
}

static void
step_send(struct client *c, enum step k)
{
	struct vhu_vring_state st = { 0, 0 };
	struct vhu_endpoint *ep = c->ep;

	switch (k) {
	case S_GET_FEATURES:
	case S_GET_FEATURES_AGAIN:
		fe_send(ep, VHU_REQ_GET_FEATURES, false, NULL, 0, NULL, 0);
		break;
	case S_GET_PROTOCOL_FEATURES:
		fe_send(ep, VHU_REQ_GET_PROTOCOL_FEATURES, false, NULL, 0, NULL, 0);
		break;
	case S_SET_PROTOCOL_FEATURES:
		fe_send_u64(ep, VHU_REQ_SET_PROTOCOL_FEATURES, true, EXPECT_PF, NULL, 0);
		break;
	case S_GET_QUEUE_NUM:
		fe_send(ep, VHU_REQ_GET_QUEUE_NUM, false, NULL, 0, NULL, 0);
		break;
	case S_GET_MAX_MEM_SLOTS:
		fe_send(ep, VHU_REQ_GET_MAX_MEM_SLOTS, false, NULL, 0, NULL, 0);
		break;
	case S_SET_BACKEND_REQ_FD: {
		int sv[2];

		cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
		c->chan = sv[0];
		c->chan_peer = file_id(sv[1]);
		fe_send(ep, VHU_REQ_SET_BACKEND_REQ_FD, true, NULL, 0, &sv[1], 1);
		/* As QEMU does: the back-end holds the only other reference now. */
		close(sv[1]);
		break;
	}
	case S_SET_OWNER:
		fe_send(ep, VHU_REQ_SET_OWNER, false, NULL, 0, NULL, 0);
		break;
	case S_SET_VRING_CALL_MASKED:
		send_eventfd(c, VHU_REQ_SET_VRING_CALL, 0);
		break;
	case S_SET_FEATURES:
		fe_send_u64(ep, VHU_REQ_SET_FEATURES, false, EXPECT_FEATURES, NULL, 0);
		break;
	case S_SET_MEM_TABLE: {
		struct vhu_mem_table t;

		memset(&t, 0, sizeof(t));
		t.nregions = 2;
		/* Region a holds queue 0's rings (256 entries: desc, avail, used). */
		t.regions[0] = (struct vhu_mem_region){ 0, 0x4000, 0x7f0000000000ull, 0 };
		t.regions[1] = (struct vhu_mem_region){ 0x100000, 0x1000, 0x7f0000100000ull, 0 };
		c->mem[0] = region_memfd_of("vhu-region-a", 0x4000);
		c->mem[1] = region_memfd("vhu-region-b");
		fe_send(ep, VHU_REQ_SET_MEM_TABLE, true, &t, VHU_MEM_TABLE_SIZE(2), c->mem, 2);
		break;
	}
	case S_SET_VRING_NUM:
		st.num = 256;
		fe_send(ep, VHU_REQ_SET_VRING_NUM, false, &st, sizeof(st), NULL, 0);
		break;
	case S_SET_VRING_BASE:
		st.num = VRING_BASE;
		fe_send(ep, VHU_REQ_SET_VRING_BASE, false, &st, sizeof(st), NULL, 0);
		break;
	case S_SET_VRING_ADDR: {
		struct vhu_vring_addr a = {
			.index = 0, .flags = 0, .desc = 0x7f0000000000ull,
			.used = 0x7f0000002000ull, .avail = 0x7f0000001000ull, .log = 0,
		};

		fe_send(ep, VHU_REQ_SET_VRING_ADDR, false, &a, sizeof(a), NULL, 0);
		break;
	}
	case S_SET_VRING_KICK:
		send_eventfd(c, VHU_REQ_SET_VRING_KICK, 0);
		break;
	case S_SET_VRING_CALL:
		send_eventfd(c, VHU_REQ_SET_VRING_CALL, 0);
		break;
	case S_SET_VRING_ENABLE:
		st.num = 1;
		fe_send(ep, VHU_REQ_SET_VRING_ENABLE, true, &st, sizeof(st), NULL, 0);
		break;
	case S_GET_CONFIG: {
		uint8_t body[VHU_CONFIG_HDR_SIZE + 60] = { 0 };
		uint32_t size = 60;

		memcpy(body + 4, &size, sizeof(size));
		fe_send(ep, VHU_REQ_GET_CONFIG, false, body, sizeof(body), NULL, 0);
		break;
	}
	case S_SET_STATUS:
		fe_send_u64(ep, VHU_REQ_SET_STATUS, true, 0x0f, NULL, 0);
		break;
	case S_GET_STATUS:
		fe_send(ep, VHU_REQ_GET_STATUS, false, NULL, 0, NULL, 0);
		break;
	case S_GET_VRING_BASE:
		fe_send(ep, VHU_REQ_GET_VRING_BASE, false, &st, sizeof(st), NULL, 0);
		break;
	case S_COUNT:
		break;
	}
}

static void
step_recv(struct client *c, enum step k)
{
	struct vhu_endpoint *ep = c->ep;

	switch (k) {
	case S_GET_FEATURES:
	case S_GET_FEATURES_AGAIN:
		cr_assert_eq(fe_recv_u64(ep, VHU_REQ_GET_FEATURES), EXPECT_FEATURES);
		break;
	case S_GET_PROTOCOL_FEATURES:
		cr_assert_eq(fe_recv_u64(ep, VHU_REQ_GET_PROTOCOL_FEATURES), EXPECT_PF);
		break;
	case S_SET_PROTOCOL_FEATURES:
		cr_assert_eq(fe_recv_u64(ep, VHU_REQ_SET_PROTOCOL_FEATURES), 0);
		break;
	case S_GET_QUEUE_NUM:
		cr_assert_eq(fe_recv_u64(ep, VHU_REQ_GET_QUEUE_NUM), 1);
		break;
	case S_GET_MAX_MEM_SLOTS:
		cr_assert_eq(fe_recv_u64(ep, VHU_REQ_GET_MAX_MEM_SLOTS), 32);
		break;
	case S_SET_BACKEND_REQ_FD:
		cr_assert_eq(fe_recv_u64(ep, VHU_REQ_SET_BACKEND_REQ_FD), 0);
		break;
	case S_SET_MEM_TABLE:
		cr_assert_eq(fe_recv_u64(ep, VHU_REQ_SET_MEM_TABLE), 0);
		break;
	case S_SET_VRING_ENABLE:
		cr_assert_eq(fe_recv_u64(ep, VHU_REQ_SET_VRING_ENABLE), 0);
		break;
	case S_GET_CONFIG: {
		uint8_t r[VHU_CONFIG_HDR_SIZE + 60];
		uint32_t off, size, blk_size;
		uint64_t capacity;
		uint16_t nq;

		cr_assert_eq(fe_recv(ep, VHU_REQ_GET_CONFIG, r, sizeof(r)), sizeof(r));
		memcpy(&off, r, 4);
		memcpy(&size, r + 4, 4);
		memcpy(&capacity, r + VHU_CONFIG_HDR_SIZE, 8);
		memcpy(&blk_size, r + VHU_CONFIG_HDR_SIZE + 20, 4);
		memcpy(&nq, r + VHU_CONFIG_HDR_SIZE + 34, 2);
		cr_assert_eq(off, 0);
		cr_assert_eq(size, 60);
		cr_assert_eq(capacity, (64ull << 20) / 512, "capacity %llu sectors",
			     (unsigned long long)capacity);
		cr_assert_eq(blk_size, 512);
		cr_assert_eq(nq, 1);
		break;
	}
	case S_SET_STATUS:
		cr_assert_eq(fe_recv_u64(ep, VHU_REQ_SET_STATUS), 0);
		break;
	case S_GET_STATUS:
		cr_assert_eq(fe_recv_u64(ep, VHU_REQ_GET_STATUS), 0x0f);
		break;
	case S_GET_VRING_BASE: {
		struct vhu_vring_state st;

		cr_assert_eq(fe_recv(ep, VHU_REQ_GET_VRING_BASE, &st, sizeof(st)), sizeof(st));
		cr_assert_eq(st.index, 0);
		cr_assert_eq(st.num, VRING_BASE);
		break;
	}
	default:
		/* No reply of its own and no NEED_REPLY: nothing comes back. */
		break;
	}
}

static void
steps(struct client *c, enum step from, enum step to)
{
	for (enum step k = from; k < to; k++) {
		step_send(c, k);
		step_recv(c, k);
	}
}

/* Bounded wait for fd to become readable (EOF included). */
static void
wait_readable(int fd)
{
	struct pollfd pfd = { .fd = fd, .events = POLLIN };

	cr_assert_eq(poll(&pfd, 1, WAIT_MS), 1, "fd %d never became readable", fd);
}

/* The whole handshake on one connection, then what the back-end holds. */
static void
handshake_one(const char *mode, const char *const *extra)
{
	struct client c;
	struct file_id mem_a, mem_b, mem_c;
	int events0, fds0, mfd;
	char byte;

	be_start(mode, extra);
	events0 = be_fds_named("anon_inode:[eventfd]");
	fds0 = be_fds_named(NULL);

	client_init(&c);
	steps(&c, 0, S_COUNT);

	mem_a = file_id(c.mem[0]);
	mem_b = file_id(c.mem[1]);
	cr_assert_eq(be_holds(mem_a), 1, "region a is not kept");
	cr_assert_eq(be_holds(mem_b), 1, "region b is not kept");
	cr_assert_eq(be_holds(c.chan_peer), 1, "the back-end channel is not kept");
	/* The first call fd was replaced and the kick fd closed by GET_VRING_BASE. */
	cr_assert_eq(be_fds_named("anon_inode:[eventfd]"), events0 + 1);

	/* A new table replaces the old one, closing its fds. */
	{
		struct vhu_mem_table t;

		memset(&t, 0, sizeof(t));
		t.nregions = 1;
		t.regions[0] = (struct vhu_mem_region){ 0x200000, 0x1000, 0x7f0000200000ull, 0 };
		mfd = region_memfd("vhu-region-c");
		mem_c = file_id(mfd);
		cr_assert_eq(fe_acked(c.ep, VHU_REQ_SET_MEM_TABLE, &t, VHU_MEM_TABLE_SIZE(1),
				      &mfd, 1), 0);
		close(mfd);
	}
	cr_assert_eq(be_holds(mem_a), 0);
	cr_assert_eq(be_holds(mem_b), 0);
	cr_assert_eq(be_holds(mem_c), 1);

	/* Closing the connection releases everything the back-end kept for it. */
	vhu_endpoint_destroy(c.ep);
	c.ep = NULL;
	be_wait_line(": closed");
	cr_assert_eq(be_fds_named(NULL), fds0, "the back-end leaked fds of a closed connection");
	wait_readable(c.chan);
	cr_assert_eq(read(c.chan, &byte, 1), 0, "back-end channel not closed by the back-end");
	client_close(&c);
	be_stop_cleanly();
}

Test(backend, handshake_exact)
{
	handshake_one("exact", NULL);
}

Test(backend, handshake_stream)
{
	handshake_one("stream", NULL);
}

Test(backend, handshake_busy_poll)
{
	const char *extra[] = { "--busy-poll", NULL };

	handshake_one("stream", extra);
}

/* 20 front-ends in lock step: every request of a step is in flight at once. */
static void
many_clients(const char *mode)
{
	struct client c[NCLIENTS];
	int fds0;

	be_start(mode, NULL);
	fds0 = be_fds_named(NULL);
	for (unsigned int i = 0; i < NCLIENTS; i++) {
		client_init(&c[i]);
	}
	for (enum step k = 0; k < S_COUNT; k++) {
		for (unsigned int i = 0; i < NCLIENTS; i++) {
			step_send(&c[i], k);
		}
		for (unsigned int i = 0; i < NCLIENTS; i++) {
			step_recv(&c[i], k);
		}
	}
	for (unsigned int i = 0; i < NCLIENTS; i++) {
		cr_assert_eq(be_holds(file_id(c[i].mem[0])), 1);
		cr_assert_eq(be_holds(c[i].chan_peer), 1);
	}
	for (unsigned int i = 0; i < NCLIENTS; i++) {
		client_close(&c[i]);
	}
	for (unsigned int i = 0; i < NCLIENTS; i++) {
		be_wait_line(": closed");
	}
	cr_assert_eq(be_fds_named(NULL), fds0);
	be_stop_cleanly();
}

Test(backend, twenty_clients_exact)
{
	many_clients("exact");
}

Test(backend, twenty_clients_stream)
{
	many_clients("stream");
}

/* Faults close only the faulty connection -------------------------------- */

Test(backend, unsupported_request_closes_only_that_connection)
{
	struct client b;
	struct vhu_endpoint *a;
	uint64_t mac = 0x0000563412005452ull;
	char want[128];

	be_start("stream", NULL);
	client_init(&b);
	steps(&b, 0, S_GET_MAX_MEM_SLOTS);

	a = fe_connect();
	cr_assert_eq(fe_get_u64(a, VHU_REQ_GET_FEATURES), EXPECT_FEATURES);
	fe_send_u64(a, VHU_REQ_SEND_RARP, false, mac, NULL, 0);
	fe_expect_closed(a);
	be_wait_line("unsupported request SEND_RARP (19); closing");
	snprintf(want, sizeof(want), ": closed: %s", vhu_strerror(-EOPNOTSUPP));
	be_wait_line(want);
	vhu_endpoint_destroy(a);

	steps(&b, S_GET_MAX_MEM_SLOTS, S_COUNT);
	client_close(&b);
}

Test(backend, gated_request_before_negotiation_closes)
{
	struct vhu_endpoint *a = NULL;

	be_start("exact", NULL);
	a = fe_connect();
	cr_assert_eq(fe_get_u64(a, VHU_REQ_GET_FEATURES), EXPECT_FEATURES);
	/* MQ was offered but never acked with SET_PROTOCOL_FEATURES. */
	fe_send(a, VHU_REQ_GET_QUEUE_NUM, false, NULL, 0, NULL, 0);
	fe_expect_closed(a);
	be_wait_line("unsupported request GET_QUEUE_NUM (17) without protocol feature MQ");
	vhu_endpoint_destroy(a);
}

static void
bad_version(const char *mode)
{
	struct client b;
	struct vhu_endpoint *a;
	struct vhu_hdr h = { VHU_REQ_GET_FEATURES, 0x2, 0 };
	struct iovec iov = { &h, sizeof(h) };
	char want[128];
	int rc;

	be_start(mode, NULL);
	client_init(&b);
	steps(&b, 0, S_SET_BACKEND_REQ_FD);

	a = fe_connect();
	rc = vhu_endpoint_send_all(a, &iov, 1, NULL, 0);
	cr_assert_eq(rc, 0, "%s", vhu_strerror(rc));
	fe_expect_closed(a);
	snprintf(want, sizeof(want), ": closed: %s", vhu_strerror(-VHU_EVERSION));
	be_wait_line(want);
	vhu_endpoint_destroy(a);

	steps(&b, S_SET_BACKEND_REQ_FD, S_COUNT);
	client_close(&b);
}

Test(backend, bad_version_closes_only_that_connection_exact)
{
	bad_version("exact");
}

Test(backend, bad_version_closes_only_that_connection_stream)
{
	bad_version("stream");
}

Test(backend, failure_without_reply_ack_closes)
{
	struct vhu_endpoint *a;

	be_start("stream", NULL);
	a = fe_connect();
	cr_assert_eq(fe_get_u64(a, VHU_REQ_GET_FEATURES), EXPECT_FEATURES);
	/* LOG_ALL was not offered; with no ack to carry the failure, the back-end hangs up. */
	fe_send_u64(a, VHU_REQ_SET_FEATURES, true, EXPECT_FEATURES | F(VHU_F_LOG_ALL), NULL, 0);
	fe_expect_closed(a);
	be_wait_line("SET_FEATURES failed");
	vhu_endpoint_destroy(a);
}

/* Failures reported with acks; the connection stays ---------------------- */

Test(backend, failures_are_nacked_with_reply_ack)
{
	struct client c;
	struct vhu_vring_state st;
	uint64_t v;

	be_start("exact", NULL);
	client_init(&c);
	steps(&c, 0, S_GET_QUEUE_NUM);

	v = EXPECT_FEATURES | F(VHU_F_LOG_ALL);
	cr_assert_neq(fe_acked(c.ep, VHU_REQ_SET_FEATURES, &v, sizeof(v), NULL, 0), 0,
		      "a feature that was not offered was accepted");
	v = EXPECT_PF | PF(RARP);
	cr_assert_neq(fe_acked(c.ep, VHU_REQ_SET_PROTOCOL_FEATURES, &v, sizeof(v), NULL, 0), 0,
		      "a protocol feature that was not offered was accepted");
	st = (struct vhu_vring_state){ 0, 100 };
	cr_assert_neq(fe_acked(c.ep, VHU_REQ_SET_VRING_NUM, &st, sizeof(st), NULL, 0), 0,
		      "a ring size that is not a power of two was accepted");
	st = (struct vhu_vring_state){ 1, 256 };
	cr_assert_neq(fe_acked(c.ep, VHU_REQ_SET_VRING_NUM, &st, sizeof(st), NULL, 0), 0,
		      "queue 1 of a 1-queue device was accepted");
	v = 0x100;
	cr_assert_neq(fe_acked(c.ep, VHU_REQ_SET_STATUS, &v, sizeof(v), NULL, 0), 0);

	/* The rejected SET_PROTOCOL_FEATURES left the earlier negotiation in force. */
	cr_assert_eq(fe_get_u64(c.ep, VHU_REQ_GET_QUEUE_NUM), 1);
	v = EXPECT_FEATURES;
	cr_assert_eq(fe_acked(c.ep, VHU_REQ_SET_FEATURES, &v, sizeof(v), NULL, 0), 0);
	cr_assert_eq(fe_get_u64(c.ep, VHU_REQ_GET_FEATURES), EXPECT_FEATURES);
	client_close(&c);
}

Test(backend, get_config_out_of_range_replies_size_zero)
{
	struct client c;
	uint8_t body[VHU_CONFIG_HDR_SIZE + 8] = { 0 };
	uint8_t r[VHU_CONFIG_HDR_SIZE + 8];
	uint32_t off, size, rsize;
	uint32_t blk_size;

	be_start("stream", NULL);
	client_init(&c);
	steps(&c, 0, S_GET_QUEUE_NUM);

	/* Straddling the end of the 60-byte space: an empty reply is the error answer. */
	off = 56;
	size = 8;
	memcpy(body, &off, 4);
	memcpy(body + 4, &size, 4);
	fe_send(c.ep, VHU_REQ_GET_CONFIG, false, body, sizeof(body), NULL, 0);
	cr_assert_eq(fe_recv(c.ep, VHU_REQ_GET_CONFIG, r, sizeof(r)), 0);
	/* Not fatal: the connection goes on. */
	cr_assert_eq(fe_get_u64(c.ep, VHU_REQ_GET_FEATURES), EXPECT_FEATURES);

	/* A window inside the space is served from its offset. */
	off = 20;
	size = 4;
	memcpy(body, &off, 4);
	memcpy(body + 4, &size, 4);
	fe_send(c.ep, VHU_REQ_GET_CONFIG, false, body, VHU_CONFIG_HDR_SIZE + 4, NULL, 0);
	cr_assert_eq(fe_recv(c.ep, VHU_REQ_GET_CONFIG, r, sizeof(r)), VHU_CONFIG_HDR_SIZE + 4);
	memcpy(&rsize, r + 4, 4);
	memcpy(&blk_size, r + VHU_CONFIG_HDR_SIZE, 4);
	cr_assert_eq(rsize, 4);
	cr_assert_eq(blk_size, 512);
	client_close(&c);
}

Test(backend, queues_and_capacity_options)
{
	const char *extra[] = { "--queues", "4", "--capacity", "1G", NULL };
	struct client c;
	uint8_t body[VHU_CONFIG_HDR_SIZE + 60] = { 0 };
	uint8_t r[VHU_CONFIG_HDR_SIZE + 60];
	uint32_t size = 60;
	uint64_t capacity, idx;
	uint16_t nq;
	int fd, events0;

	be_start("exact", extra);
	events0 = be_fds_named("anon_inode:[eventfd]");
	client_init(&c);
	steps(&c, 0, S_GET_QUEUE_NUM);
	cr_assert_eq(fe_get_u64(c.ep, VHU_REQ_GET_QUEUE_NUM), 4);

	memcpy(body + 4, &size, 4);
	fe_send(c.ep, VHU_REQ_GET_CONFIG, false, body, sizeof(body), NULL, 0);
	cr_assert_eq(fe_recv(c.ep, VHU_REQ_GET_CONFIG, r, sizeof(r)), sizeof(r));
	memcpy(&capacity, r + VHU_CONFIG_HDR_SIZE, 8);
	memcpy(&nq, r + VHU_CONFIG_HDR_SIZE + 34, 2);
	cr_assert_eq(capacity, (1ull << 30) / 512);
	cr_assert_eq(nq, 4);

	/* The last queue takes an fd; one past it is refused (and its fd not kept). */
	idx = 3;
	fd = t_eventfd();
	cr_assert_eq(fe_acked(c.ep, VHU_REQ_SET_VRING_CALL, &idx, sizeof(idx), &fd, 1), 0);
	idx = 4;
	cr_assert_neq(fe_acked(c.ep, VHU_REQ_SET_VRING_CALL, &idx, sizeof(idx), &fd, 1), 0);
	close(fd);
	/* NOFD replaces (and closes) the call fd of queue 3. */
	idx = 3 | VHU_VRING_NOFD;
	cr_assert_eq(fe_acked(c.ep, VHU_REQ_SET_VRING_CALL, &idx, sizeof(idx), NULL, 0), 0);
	cr_assert_eq(be_fds_named("anon_inode:[eventfd]"), events0);
	client_close(&c);
}

Test(backend, add_and_remove_memory_regions)
{
	struct client c;
	struct vhu_single_region sr = { 0, { 0x400000, 0x2000, 0x7f0000400000ull, 0 } };
	struct vhu_single_region overlap = { 0, { 0x401000, 0x2000, 0x7f0000500000ull, 0 } };
	struct file_id id;
	int fd, fd2;

	be_start("stream", NULL);
	client_init(&c);
	steps(&c, 0, S_GET_QUEUE_NUM);

	fd = region_memfd_of("vhu-region-x", 0x2000);
	id = file_id(fd);
	cr_assert_eq(fe_acked(c.ep, VHU_REQ_ADD_MEM_REG, &sr, sizeof(sr), &fd, 1), 0);
	close(fd);
	cr_assert_eq(be_holds(id), 1);

	fd2 = region_memfd_of("vhu-region-y", 0x2000);
	cr_assert_neq(fe_acked(c.ep, VHU_REQ_ADD_MEM_REG, &overlap, sizeof(overlap), &fd2, 1), 0,
		      "an overlapping region was accepted");
	cr_assert_eq(be_holds(file_id(fd2)), 0, "the fd of a refused region was kept");
	close(fd2);

	cr_assert_eq(fe_acked(c.ep, VHU_REQ_REM_MEM_REG, &sr, sizeof(sr), NULL, 0), 0);
	cr_assert_eq(be_holds(id), 0, "a removed region's fd is still open");
	cr_assert_neq(fe_acked(c.ep, VHU_REQ_REM_MEM_REG, &sr, sizeof(sr), NULL, 0), 0,
		      "removing a region twice succeeded");
	client_close(&c);
}

Test(backend, max_conns_refuses_the_extra_connection)
{
	const char *extra[] = { "--max-conns", "1", NULL };
	struct vhu_endpoint *a, *b;

	be_start("stream", extra);
	a = fe_connect();
	cr_assert_eq(fe_get_u64(a, VHU_REQ_GET_FEATURES), EXPECT_FEATURES);
	b = fe_connect();
	fe_expect_closed(b);
	cr_assert_eq(fe_get_u64(a, VHU_REQ_GET_FEATURES), EXPECT_FEATURES);
	vhu_endpoint_destroy(b);
	vhu_endpoint_destroy(a);
}

/*
 * The fd budget: with RLIMIT_NOFILE 1024 and --queues 256 a front-end may
 * hold 801 fds, so one fits. Without --max-conns the back-end serves one
 * and refuses the next (a second VMM cannot exhaust the fd table and get
 * an honest VMM's fds truncated); asked for 4, it refuses to start and
 * says why.
 */
static void
nofile_1024(void)
{
	struct rlimit rl = { 1024, 1024 };

	cr_assert_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);
}

Test(backend, fd_limit_bounds_the_connections)
{
	const char *extra[] = { "--queues", "256", NULL };
	struct vhu_endpoint *a, *b;

	nofile_1024();
	be_start("stream", extra);
	a = fe_connect();
	cr_assert_eq(fe_get_u64(a, VHU_REQ_GET_FEATURES), EXPECT_FEATURES);
	b = fe_connect();
	fe_expect_closed(b);
	cr_assert_eq(fe_get_u64(a, VHU_REQ_GET_FEATURES), EXPECT_FEATURES);
	vhu_endpoint_destroy(b);
	vhu_endpoint_destroy(a);
	be_stop_cleanly();
}

Test(backend, max_conns_beyond_fd_limit_is_refused)
{
	const char *args[] = { "--socket", t_path("be.sock"), "--queues", "256", "--max-conns", "4",
			       NULL };
	int status;

	nofile_1024();
	be_spawn(args);
	be_wait_line("RLIMIT_NOFILE is 1024: raise it (ulimit -n) or lower --max-conns to 1");
	status = be_wait_exit();
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 2, "wait status 0x%x", status);
}

/*
 * A front-end that pipelines far deeper than the back-end's reply queue
 * (256), reading replies while it writes (non-blocking), is answered in
 * full, in order, in both receive modes: the back-end stops reading while
 * its queue is full instead of refusing replies and closing.
 */
static void
pipelined_front_end(const char *mode, unsigned int depth)
{
	static const uint8_t req[VHU_HDR_SIZE] = { VHU_REQ_GET_FEATURES, 0, 0, 0, VHU_VERSION };
	uint64_t total = depth * 3u > 20000u ? depth * 3u : 20000u, sent = 0, got = 0;
	uint8_t out[4096 * VHU_HDR_SIZE], in[8192];
	size_t have = 0;
	struct vhu_endpoint *ep;
	int fd;

	for (size_t i = 0; i < sizeof(out); i += VHU_HDR_SIZE) {
		memcpy(out + i, req, VHU_HDR_SIZE);
	}
	be_start(mode, NULL);
	ep = fe_connect();
	fd = vhu_endpoint_fd(ep);
	cr_assert_eq(fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK), 0);
	while (got < total) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		uint64_t room = (got + depth < total ? got + depth : total) * VHU_HDR_SIZE - sent;
		size_t off = (size_t)(sent % sizeof(out)), len = sizeof(out) - off;
		ssize_t n;

		if (room > 0) {
			p.events |= POLLOUT;
		}
		cr_assert_eq(poll(&p, 1, WAIT_MS), 1, "%s depth %u: stuck at %llu of %llu replies",
			     mode, depth, (unsigned long long)got, (unsigned long long)total);
		if (room > 0 && (p.revents & POLLOUT)) {
			n = send(fd, out + off, len < room ? len : (size_t)room, MSG_NOSIGNAL);
			cr_assert(n > 0 || errno == EAGAIN, "send: %s (the back-end closed)",
				  strerror(errno));
			sent += n > 0 ? (uint64_t)n : 0;
		}
		n = recv(fd, in + have, sizeof(in) - have, 0);
		if (n < 0) {
			cr_assert_eq(errno, EAGAIN, "recv: %s", strerror(errno));
			continue;
		}
		cr_assert_gt(n, 0, "%s depth %u: the back-end closed after %llu replies", mode,
			     depth, (unsigned long long)got);
		have += (size_t)n;
		{
			size_t k = 0;

			for (; have - k >= 20; k += 20, got++) {
				struct vhu_hdr h;
				uint64_t v;

				memcpy(&h, in + k, sizeof(h));
				memcpy(&v, in + k + VHU_HDR_SIZE, 8);
				cr_assert(h.request == VHU_REQ_GET_FEATURES && h.size == 8 &&
					  h.flags == (VHU_VERSION | VHU_FLAG_REPLY) &&
					  v == EXPECT_FEATURES, "reply %llu", (unsigned long long)got);
			}
			memmove(in, in + k, have - k);
			have -= k;
		}
	}
	cr_assert_eq(got, total);
	vhu_endpoint_destroy(ep);
	be_wait_line(": closed");
	be_stop_cleanly();
}

Test(backend, pipelining_512_exact) { pipelined_front_end("exact", 512); }
Test(backend, pipelining_512_stream) { pipelined_front_end("stream", 512); }
Test(backend, pipelining_4096_exact) { pipelined_front_end("exact", 4096); }
Test(backend, pipelining_4096_stream) { pipelined_front_end("stream", 4096); }
Test(backend, pipelining_65536_exact) { pipelined_front_end("exact", 65536); }
Test(backend, pipelining_65536_stream) { pipelined_front_end("stream", 65536); }

/* Process life ----------------------------------------------------------- */

Test(backend, sigterm_exits_cleanly_with_connections_open)
{
	struct client c;
	char byte;

	be_start("stream", NULL);
	client_init(&c);
	steps(&c, 0, S_COUNT);
	be_stop_cleanly();
	cr_assert_eq(access(t_path("be.sock"), F_OK), -1, "the socket file was left behind");
	fe_expect_closed(c.ep);
	wait_readable(c.chan);
	cr_assert_eq(read(c.chan, &byte, 1), 0);
	client_close(&c);
}

Test(backend, stale_socket_file_is_replaced)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct vhu_endpoint *a;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	/* A socket file nobody listens on any more: what a killed back-end leaves. */
	cr_assert_geq(fd, 0);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", t_path("be.sock"));
	cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	close(fd);
	be_start("exact", NULL);
	a = fe_connect();
	cr_assert_eq(fe_get_u64(a, VHU_REQ_GET_FEATURES), EXPECT_FEATURES);
	vhu_endpoint_destroy(a);
}

Test(backend, regular_file_at_socket_path_is_kept)
{
	const char *args[] = { "--socket", t_path("be.sock"), NULL };
	int fd = open(t_path("be.sock"), O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
	struct stat st;
	int status;

	cr_assert_geq(fd, 0);
	close(fd);
	be_spawn(args);
	be_wait_line("cannot listen on");
	status = be_wait_exit();
	/* 3: cannot listen, the code every tool uses for it */
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 3, "wait status 0x%x", status);
	cr_assert_eq(stat(t_path("be.sock"), &st), 0);
	cr_assert(S_ISREG(st.st_mode), "a regular file was replaced");
}

Test(backend, listen_failure_is_reported)
{
	const char *args[] = { "--socket", t_path("no-such-dir/be.sock"), NULL };
	int status;

	be_spawn(args);
	be_wait_line("cannot listen on");
	status = be_wait_exit();
	/* 3: cannot listen, the code every tool uses for it */
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 3, "wait status 0x%x", status);
}

Test(backend, usage_errors_exit_2)
{
	const char *no_socket[] = { "--quiet", NULL };
	const char *bad_mode[] = { "--socket", t_path("be.sock"), "--recv-mode", "fast", NULL };
	int status;

	be_spawn(no_socket);
	be_wait_line("--socket PATH is required");
	status = be_wait_exit();
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 2, "wait status 0x%x", status);

	be_spawn(bad_mode);
	be_wait_line("--recv-mode must be exact or stream");
	status = be_wait_exit();
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 2, "wait status 0x%x", status);
}

Test(backend, help_exits_0)
{
	const char *args[] = { "--help", NULL };
	int status;

	be_spawn(args);
	be_wait_line("Usage: vhu-backend --socket PATH");
	status = be_wait_exit();
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "wait status 0x%x", status);
}

/*
 * Logging never blocks the ring: with its stderr a pipe nobody reads (each
 * connection logs two lines, so the pipe is full after a few hundred),
 * 2000 connect / GET_FEATURES / close cycles are all answered. The lines
 * that did not fit are counted, and the count is logged once the reader
 * comes back.
 */
Test(backend, full_log_pipe_does_not_block)
{
	struct vhu_endpoint *ep;
	char junk[4096];
	uint64_t features;
	int out;

	be_start("stream", NULL);
	for (int i = 0; i < 2000; i++) {
		ep = fe_connect();
		fe_send(ep, VHU_REQ_GET_FEATURES, false, NULL, 0, NULL, 0);
		wait_readable(vhu_endpoint_fd(ep));
		cr_assert_eq(fe_recv(ep, VHU_REQ_GET_FEATURES, &features, sizeof(features)), 8,
			     "cycle %d", i);
		vhu_endpoint_destroy(ep);
	}
	/* The reader comes back: the next line says how many were dropped. */
	ep = fe_connect();
	out = t_tool.backend.out;
	cr_assert_eq(fcntl(out, F_SETFL, fcntl(out, F_GETFL) | O_NONBLOCK), 0);
	while (read(out, junk, sizeof(junk)) > 0) {
	}
	cr_assert_eq(fcntl(out, F_SETFL, fcntl(out, F_GETFL) & ~O_NONBLOCK), 0);
	t_tool.backend.len = 0;
	vhu_endpoint_destroy(ep);
	be_wait_line("log lines dropped (stderr was full)");
	be_stop_cleanly();
}

/*
 * --msg-timeout: with --max-conns 1, a front-end that sends 6 header bytes
 * and goes silent is closed at the deadline (-ETIMEDOUT), and the next
 * front-end is served.
 */
Test(backend, msg_timeout_frees_the_slot_of_a_stalled_front_end)
{
	static const char *const extra[] = { "--max-conns", "1", "--msg-timeout", "300", NULL };
	struct vhu_endpoint *stalled, *ep;
	uint8_t six[6] = { 1, 0, 0, 0, 1, 0 };
	uint64_t features;

	be_start("exact", extra);
	stalled = fe_connect();
	be_wait_line("conn 1: accepted");
	cr_assert_eq(send(vhu_endpoint_fd(stalled), six, sizeof(six), MSG_NOSIGNAL), 6);
	be_wait_line("conn 1: closed: Connection timed out");
	wait_readable(vhu_endpoint_fd(stalled));
	ep = fe_connect();
	fe_send(ep, VHU_REQ_GET_FEATURES, false, NULL, 0, NULL, 0);
	wait_readable(vhu_endpoint_fd(ep));
	cr_assert_eq(fe_recv(ep, VHU_REQ_GET_FEATURES, &features, sizeof(features)), 8);
	vhu_endpoint_destroy(ep);
	vhu_endpoint_destroy(stalled);
	be_stop_cleanly();
}
