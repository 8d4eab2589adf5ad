/* SPDX-License-Identifier: MIT */
/*
 * tools/vhu-trace, run as a user runs it: the real binary is spawned
 * between a front-end and a back-end and judged by what arrives on each
 * side, by its trace and by its exit status.
 *
 * Front-ends: vhu-probe, and the test itself on the blocking endpoint.
 * Back-ends: vhu-backend, qemu-storage-daemon, and a fake played by the
 * test on a raw socket, which reads what the tracer forwards with plain
 * recvmsg so that bytes and fds can be compared with what was sent.
 * Nothing sleeps: every wait is a bounded poll() on a pipe or socket.
 */
#define _GNU_SOURCE
#include "tool_helpers.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <vhu/vhu.h>

#define F(n)		(1ull << (n))
#define PF(name)	F(VHU_PROTOCOL_F_##name)

/* Upper bound for one wait; reaching it fails the test, nothing sleeps. */
#define WAIT_MS		20000
#define REGION_SIZE	0x100000u

/* What the tracer (t_tool.trace) wrote on its stdout and stderr. */
static struct {
	char out[131072];
	size_t out_len;
	char err[16384];
	size_t err_len;
} g;

TestSuite(trace, .init = t_setup, .fini = t_tool_fini, .timeout = 60);

/* Processes ----------------------------------------------------------- */

/* Reap a child whose pipes are at EOF; \return its exit status, or -1 if it did not exit. */
static int
wait_exit(struct t_proc *p)
{
	int status = t_proc_stop(p, 0);

	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* The tracer ------------------------------------------------------------ */

static const char *
trace_sock(void)
{
	return t_path("tr.sock");
}

/* Spawn vhu-trace with argv[1..] = args; the pipes collect into g. */
static void
trace_spawn(const char *const *args)
{
	g.out_len = 0;
	g.err_len = 0;
	g.out[0] = '\0';
	g.err[0] = '\0';
	t_proc_spawn(&t_tool.trace, "vhu-trace", args, false);
}

/* Start the tracer between trace_sock() and connect; returns once it says it listens. */
static void
trace_start(const char *connect, const char *const *extra)
{
	const char *args[24] = { "--listen", trace_sock(), "--connect", connect };
	unsigned int n = 4;
	char want[256];

	while (extra != NULL && *extra != NULL && n < 23) {
		args[n++] = *extra++;
	}
	args[n] = NULL;
	trace_spawn(args);
	snprintf(want, sizeof(want), "vhu-trace: listening on %s\n", trace_sock());
	t_proc_read_until(t_tool.trace.err, g.err, sizeof(g.err), &g.err_len, want, "vhu-trace");
}

/* Read the trace until it holds what (e.g. an event line). */
static void
trace_read_until(const char *what)
{
	t_proc_read_until(t_tool.trace.out, g.out, sizeof(g.out), &g.out_len, what, "vhu-trace");
}

/* Wait for the tracer to exit by itself; \return its exit status. */
static int
trace_finish(void)
{
	t_proc_drain(&t_tool.trace, g.out, sizeof(g.out), &g.out_len, g.err, sizeof(g.err), &g.err_len);
	return wait_exit(&t_tool.trace);
}

static void
expect_exit(int status, int want)
{
	cr_assert_eq(status, want, "vhu-trace exited %d, expected %d\nstdout:\n%s\nstderr:\n%s",
		     status, want, g.out, g.err);
}

/* The fake back-end and raw transfers ------------------------------------- */

static struct vhu_endpoint *
fe_connect(void)
{
	int rc = vhu_endpoint_connect(trace_sock(), NULL, &t_tool.fe);

	cr_assert_eq(rc, 0, "connect to the tracer: %s", vhu_strerror(rc));
	return t_tool.fe;
}

static void
fe_close(void)
{
	vhu_endpoint_destroy(t_tool.fe);
	t_tool.fe = NULL;
}

/* Exactly len bytes from fd with plain recvmsg; fds (if any arrive) into fds. */
static void
raw_recv(int fd, void *buf, size_t len, struct vhu_fds *fds)
{
	size_t got = 0;

	if (fds != NULL) {
		vhu_fds_init(fds);
	}
	while (got < len) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		struct iovec iov = { .iov_base = (uint8_t *)buf + got, .iov_len = len - got };
		union vhu_cmsg_buf cb;
		struct vhu_fds extra;
		struct msghdr mh;
		ssize_t n;

		memset(&mh, 0, sizeof(mh));
		mh.msg_iov = &iov;
		mh.msg_iovlen = 1;
		vhu_cmsg_prep_recv(&mh, &cb);
		cr_assert_eq(poll(&p, 1, WAIT_MS), 1, "nothing arrived after %zu of %zu bytes", got,
			     len);
		n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC);
		cr_assert_gt(n, 0, "recvmsg after %zu of %zu bytes: %zd (%s)", got, len, n,
			     n < 0 ? strerror(errno) : "EOF");
		vhu_fds_init(&extra);
		cr_assert_geq(vhu_cmsg_collect(&mh, mh.msg_flags, fds != NULL ? fds : &extra), 0);
		cr_assert_eq(extra.n, 0, "unexpected fds");
		got += (size_t)n;
	}
}

static void
raw_send(int fd, const void *buf, size_t len, const int *fds, unsigned int nfds)
{
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
	union vhu_cmsg_buf cb;
	struct msghdr mh;

	memset(&mh, 0, sizeof(mh));
	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	cr_assert_eq(vhu_cmsg_build(&mh, &cb, fds, nfds), 0);
	cr_assert_eq(sendmsg(fd, &mh, MSG_NOSIGNAL), (ssize_t)len, "sendmsg: %s", strerror(errno));
}

/* The peer on fd closes with nothing more to say. */
static void
expect_eof(int fd, const char *who)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	char c;
	ssize_t n;

	cr_assert_eq(poll(&p, 1, WAIT_MS), 1, "%s: no EOF within %d ms", who, WAIT_MS);
	n = recv(fd, &c, 1, 0);
	cr_assert(n == 0 || (n < 0 && errno == ECONNRESET), "%s: expected EOF, got %zd (%s)",
		  who, n, n < 0 ? strerror(errno) : "a byte");
}

/* A message as bytes: header, then len body bytes. \return its total length. */
static size_t
msg_bytes(uint8_t *out, uint32_t req, uint32_t flags, const void *body, uint32_t len)
{
	struct vhu_hdr h = { req, flags, len };

	memcpy(out, &h, VHU_HDR_SIZE);
	if (len > 0) {
		memcpy(out + VHU_HDR_SIZE, body, len);
	}
	return VHU_HDR_SIZE + len;
}

/* Send raw bytes as the front-end, receive them at the fake back-end, compare. */
static void
fe_to_be(int be, const uint8_t *msg, size_t len, const int *fds, unsigned int nfds,
	 struct vhu_fds *got_fds)
{
	uint8_t got[8192];

	cr_assert_leq(len, sizeof(got));
	raw_send(vhu_endpoint_fd(t_tool.fe), msg, len, fds, nfds);
	raw_recv(be, got, len, got_fds);
	cr_assert_arr_eq(got, msg, len, "the back-end got different bytes");
}

static void
be_to_fe(int be, const uint8_t *msg, size_t len)
{
	uint8_t got[8192];

	cr_assert_leq(len, sizeof(got));
	raw_send(be, msg, len, NULL, 0);
	raw_recv(vhu_endpoint_fd(t_tool.fe), got, len, NULL);
	cr_assert_arr_eq(got, msg, len, "the front-end got different bytes");
}

/* Test data ---------------------------------------------------------- */

static int
region_memfd(const char *content)
{
	int fd = t_memfd(content);

	cr_assert_eq(ftruncate(fd, REGION_SIZE), 0);
	return fd;
}

/* Two adjacent 1 MiB regions at guest address 0, mapped at distinct user addresses. */
static uint32_t
mem_table(struct vhu_mem_table *t)
{
	memset(t, 0, sizeof(*t));
	t->nregions = 2;
	t->regions[0] = (struct vhu_mem_region){ 0, REGION_SIZE, 0x7f0000000000ull, 0 };
	t->regions[1] = (struct vhu_mem_region){ REGION_SIZE, REGION_SIZE,
						 0x7f0000000000ull + REGION_SIZE, 0 };
	return VHU_MEM_TABLE_SIZE(2);
}

#define TRACE_MEM_TABLE \
	"nregions=2 regions=[{gpa=0x0 size=0x100000 uaddr=0x7f0000000000 offset=0x0} " \
	"{gpa=0x100000 size=0x100000 uaddr=0x7f0000100000 offset=0x0}]"

/* Byte-exact forwarding ------------------------------------------------- */

/*
 * SET_MEM_TABLE with two memfds, SET_VRING_KICK/CALL with eventfds and
 * SET_VRING_ERR without an fd reach the back-end byte for byte, with the
 * very files the front-end sent; the ack comes back the same way.
 */
static void
forward_exact(const char *mode)
{
	const char *extra[] = { "-v", "--recv-mode", mode, NULL };
	struct vhu_mem_table t;
	struct vhu_fds got;
	uint8_t msg[512];
	uint64_t v;
	size_t len;
	int be, m[2], kick, call, i;

	trace_start(t_fake_listen("be.sock"), extra);
	fe_connect();
	be = t_fake_accept();
	/* One session only: the listening path went away when the front-end came. */
	cr_assert_neq(access(trace_sock(), F_OK), 0, "the listening socket is still there");

	m[0] = region_memfd("region 0");
	m[1] = region_memfd("region 1");
	len = msg_bytes(msg, VHU_REQ_SET_MEM_TABLE, 0x9, &t, mem_table(&t));
	fe_to_be(be, msg, len, m, 2, &got);
	cr_assert_eq(got.n, 2);
	for (i = 0; i < 2; i++) {
		cr_assert(t_same_file(got.fd[i], m[i]), "region %d fd is another file", i);
	}
	vhu_fds_close(&got);
	v = 0;
	be_to_fe(be, msg, msg_bytes(msg, VHU_REQ_SET_MEM_TABLE, 0x5, &v, 8));

	kick = t_eventfd();
	v = 0;
	fe_to_be(be, msg, msg_bytes(msg, VHU_REQ_SET_VRING_KICK, 0x1, &v, 8), &kick, 1, &got);
	cr_assert_eq(got.n, 1);
	cr_assert(t_same_file(got.fd[0], kick), "the kick eventfd is another file");
	vhu_fds_close(&got);

	call = t_eventfd();
	v = 1;
	fe_to_be(be, msg, msg_bytes(msg, VHU_REQ_SET_VRING_CALL, 0x1, &v, 8), &call, 1, &got);
	cr_assert_eq(got.n, 1);
	cr_assert(t_same_file(got.fd[0], call), "the call eventfd is another file");
	vhu_fds_close(&got);

	v = VHU_VRING_NOFD;
	fe_to_be(be, msg, msg_bytes(msg, VHU_REQ_SET_VRING_ERR, 0x1, &v, 8), NULL, 0, &got);
	cr_assert_eq(got.n, 0);

	fe_close();
	expect_eof(be, "the fake back-end");
	close(be);
	expect_exit(trace_finish(), 0);
	close(m[0]);
	close(m[1]);
	close(kick);
	close(call);

	t_expect_has_squeezed(g.out, " ---- session 1: front-end connected; connecting to ");
	t_expect_has_squeezed(g.out, " F->B main SET_MEM_TABLE flags=0x9(NEED_REPLY) size=72 "
		   "fds=2(memfd,memfd) " TRACE_MEM_TABLE "\n");
	t_expect_has_squeezed(g.out, " B->F main SET_MEM_TABLE flags=0x5(REPLY) size=8 fds=0 ack=0\n");
	t_expect_has_squeezed(g.out, " F->B main SET_VRING_KICK flags=0x1 size=8 fds=1(eventfd) "
		   "index=0 nofd=false u64=0x0\n");
	t_expect_has_squeezed(g.out, " F->B main SET_VRING_CALL flags=0x1 size=8 fds=1(eventfd) "
		   "index=1 nofd=false u64=0x1\n");
	t_expect_has_squeezed(g.out, " F->B main SET_VRING_ERR flags=0x1 size=8 fds=0 "
		   "index=0 nofd=true u64=0x100\n");
	t_expect_has_squeezed(g.out, " ---- session 1: main: the front-end side closed: Disconnect");
	t_expect_has_squeezed(g.out, " ---- session 1: main: closed the back-end side\n");
	t_expect_has_squeezed(g.out, " ---- session 1: ended (exit status 0)\n");
	t_expect_lacks_squeezed(g.out, "INVALID");
}

Test(trace, forwards_bytes_and_fds_exactly)
{
	forward_exact("exact");
}

Test(trace, forwards_bytes_and_fds_exactly_stream_mode)
{
	forward_exact("stream");
}

/* Real back-ends ---------------------------------------------------------- */

static uint64_t
call_u64(uint32_t req, bool need_reply, const void *body, uint32_t len, const int *fds,
	 unsigned int nfds)
{
	struct vhu_hdr h = vhu_hdr_request(req, len, need_reply);
	uint64_t reply = ~0ull;
	ssize_t n = vhu_endpoint_call(t_tool.fe, &h, body, len, fds, nfds, &reply, sizeof(reply), NULL);

	cr_assert_eq(n, (ssize_t)sizeof(reply), "%s through the tracer: %s",
		     vhu_req_name(VHU_CHAN_FRONTEND, req), n < 0 ? vhu_strerror((int)n) : "size");
	return reply;
}

/*
 * The set-up a VMM does before starting a ring, through the tracer, with
 * every step acked (REPLY_ACK): the replies come back through it.
 */
static void
setup_through_trace(const char *backend)
{
	const char *extra[] = { "-v", NULL };
	struct vhu_mem_table t;
	uint64_t features, pf, v;
	int m[2], kick, call;

	trace_start(backend, extra);
	fe_connect();
	features = call_u64(VHU_REQ_GET_FEATURES, false, NULL, 0, NULL, 0);
	cr_assert(features & F(VHU_F_PROTOCOL_FEATURES), "features 0x%" PRIx64, features);
	pf = call_u64(VHU_REQ_GET_PROTOCOL_FEATURES, false, NULL, 0, NULL, 0);
	cr_assert(pf & PF(REPLY_ACK), "protocol features 0x%" PRIx64, pf);
	v = PF(REPLY_ACK);
	cr_assert_eq(call_u64(VHU_REQ_SET_PROTOCOL_FEATURES, true, &v, 8, NULL, 0), 0);
	cr_assert_eq(call_u64(VHU_REQ_SET_OWNER, true, NULL, 0, NULL, 0), 0);

	m[0] = region_memfd("region 0");
	m[1] = region_memfd("region 1");
	cr_assert_eq(call_u64(VHU_REQ_SET_MEM_TABLE, true, &t, mem_table(&t), m, 2), 0);
	call = t_eventfd();
	v = 0;
	cr_assert_eq(call_u64(VHU_REQ_SET_VRING_CALL, true, &v, 8, &call, 1), 0);
	kick = t_eventfd();
	cr_assert_eq(call_u64(VHU_REQ_SET_VRING_KICK, true, &v, 8, &kick, 1), 0);
	/* Still in step after all of it. */
	cr_assert_eq(call_u64(VHU_REQ_GET_FEATURES, false, NULL, 0, NULL, 0), features);

	fe_close();
	expect_exit(trace_finish(), 0);
	close(m[0]);
	close(m[1]);
	close(kick);
	close(call);

	t_expect_has_squeezed(g.out, " F->B main SET_PROTOCOL_FEATURES flags=0x9(NEED_REPLY) size=8 fds=0 "
		   "protocol_features=0x8(REPLY_ACK)\n");
	t_expect_has_squeezed(g.out, " B->F main SET_PROTOCOL_FEATURES flags=0x5(REPLY) size=8 fds=0 ack=0\n");
	t_expect_has_squeezed(g.out, " B->F main SET_OWNER flags=0x5(REPLY) size=8 fds=0 ack=0\n");
	t_expect_has_squeezed(g.out, " F->B main SET_MEM_TABLE flags=0x9(NEED_REPLY) size=72 "
		   "fds=2(memfd,memfd) " TRACE_MEM_TABLE "\n");
	t_expect_has_squeezed(g.out, " B->F main SET_MEM_TABLE flags=0x5(REPLY) size=8 fds=0 ack=0\n");
	t_expect_has_squeezed(g.out, " F->B main SET_VRING_CALL flags=0x9(NEED_REPLY) size=8 "
		   "fds=1(eventfd) index=0 nofd=false u64=0x0\n");
	t_expect_has_squeezed(g.out, " B->F main SET_VRING_CALL flags=0x5(REPLY) size=8 fds=0 ack=0\n");
	t_expect_has_squeezed(g.out, " F->B main SET_VRING_KICK flags=0x9(NEED_REPLY) size=8 "
		   "fds=1(eventfd) index=0 nofd=false u64=0x0\n");
	t_expect_has_squeezed(g.out, " B->F main SET_VRING_KICK flags=0x5(REPLY) size=8 fds=0 ack=0\n");
	t_expect_has_squeezed(g.out, " ---- session 1: ended (exit status 0)\n");
	t_expect_lacks_squeezed(g.out, "INVALID");
}

/* Start vhu-backend with 2 queues and a 1 MiB disk; returns once it says it listens. */
static const char *
backend_start(void)
{
	t_proc_start_backend(&t_tool.backend, t_path("be.sock"));
	return t_path("be.sock");
}

Test(trace, vhu_backend_acks_come_back_through_the_tracer)
{
	setup_through_trace(backend_start());
}

Test(trace, qemu_storage_daemon_acks_come_back_through_the_tracer)
{
	t_peer_start_qsd(&t_tool.peer);
	setup_through_trace(t_tool.peer.path);
}

/* vhu-probe through the tracer ---------------------------------------------- */

static void
probe_run(const char *sock, struct t_result *r)
{
	const char *args[] = { "--json", "--device", "blk", sock, NULL };

	t_proc_spawn(&t_tool.probe, "vhu-probe", args, false);
	t_proc_result(&t_tool.probe, r);
	cr_assert_eq(r->status, 0, "vhu-probe on %s exited %d:\n%s\n%s", sock, r->status, r->out,
		     r->err);
}

/* The report without the socket path and the round-trip times, which differ by nature. */
static void
report_core(const char *json, char *buf, size_t len)
{
	const char *a = strstr(json, "\",\"features\":");
	const char *b = strstr(json, ",\"round_trips_us\":");

	cr_assert(a != NULL && b != NULL && a < b, "unexpected report:\n%s", json);
	snprintf(buf, len, "%.*s", (int)(b - a), a);
}

Test(trace, probe_report_is_the_same_through_the_tracer)
{
	static const char *const names[] = {
		"GET_FEATURES", "GET_PROTOCOL_FEATURES", "SET_PROTOCOL_FEATURES", "GET_QUEUE_NUM",
		"GET_MAX_MEM_SLOTS", "GET_CONFIG", "GET_STATUS",
	};
	const char *be = backend_start();
	static struct t_result direct, traced;
	char a[4096], b[4096], want[128];
	size_t i;

	probe_run(be, &direct);
	trace_start(be, NULL);
	probe_run(trace_sock(), &traced);
	expect_exit(trace_finish(), 0);

	report_core(direct.out, a, sizeof(a));
	report_core(traced.out, b, sizeof(b));
	cr_assert_str_eq(b, a, "the report differs through the tracer");
	t_expect_has_squeezed(traced.out, "\"queues\":2,");

	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		snprintf(want, sizeof(want), " F->B main %s flags=0x", names[i]);
		t_expect_has_squeezed(g.out, want);
		snprintf(want, sizeof(want), " B->F main %s flags=0x5(REPLY) ", names[i]);
		t_expect_has_squeezed(g.out, want);
	}
	t_expect_has_squeezed(g.out, " B->F main GET_FEATURES flags=0x5(REPLY) size=8 fds=0 "
		   "features=0x170001244(bit2,bit6,bit9,bit12,RING_INDIRECT_DESC,RING_EVENT_IDX,"
		   "PROTOCOL_FEATURES,VERSION_1)\n");
	t_expect_has_squeezed(g.out, " B->F main GET_PROTOCOL_FEATURES flags=0x5(REPLY) size=8 fds=0 "
		   "protocol_features=0x1b229(MQ,REPLY_ACK,BACKEND_REQ,CONFIG,"
		   "INFLIGHT_SHMFD,RESET_DEVICE,CONFIGURE_MEM_SLOTS,STATUS)\n");
	t_expect_has_squeezed(g.out, " B->F main GET_QUEUE_NUM flags=0x5(REPLY) size=8 fds=0 u64=2\n");
	t_expect_has_squeezed(g.out, " F->B main GET_CONFIG flags=0x1 size=268 fds=0 config_offset=0 "
		   "config_size=256 config_flags=0x0\n");
	/* The refusal of 256 bytes, then the 60 bytes the blk retry asks for. */
	t_expect_has_squeezed(g.out, " B->F main GET_CONFIG flags=0x5(REPLY) size=0 fds=0\n");
	t_expect_has_squeezed(g.out, " B->F main GET_CONFIG flags=0x5(REPLY) size=72 fds=0 config_offset=0 "
		   "config_size=60 config_flags=0x0\n");
	t_expect_lacks_squeezed(g.out, "INVALID");
	snprintf(want, sizeof(want), "vhu-trace: listening on %s\n", trace_sock());
	cr_assert_str_eq(g.err, want, "unexpected stderr");
}

/* The back-end channel ----------------------------------------------------- */

Test(trace, backend_channel_is_traced_both_ways)
{
	struct vhu_fds got;
	uint8_t msg[64];
	uint64_t v = 0;
	size_t len;
	struct stat st;
	int be, sv[2], ch;

	trace_start(t_fake_listen("be.sock"), NULL);
	fe_connect();
	be = t_fake_accept();

	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	len = msg_bytes(msg, VHU_REQ_SET_BACKEND_REQ_FD, 0x1, NULL, 0);
	fe_to_be(be, msg, len, &sv[1], 1, &got);
	close(sv[1]);
	cr_assert_eq(got.n, 1);
	ch = vhu_fds_take(&got, 0);
	cr_assert_eq(fstat(ch, &st), 0);
	cr_assert(S_ISSOCK(st.st_mode), "the back-end channel is not a socket");

	/* The back-end asks, the front-end gets the very bytes and acks. */
	len = msg_bytes(msg, VHU_BREQ_CONFIG_CHANGE_MSG, 0x9, NULL, 0);
	raw_send(ch, msg, len, NULL, 0);
	{
		uint8_t in[64];

		raw_recv(sv[0], in, len, NULL);
		cr_assert_arr_eq(in, msg, len);
		len = msg_bytes(msg, VHU_BREQ_CONFIG_CHANGE_MSG, 0x5, &v, 8);
		raw_send(sv[0], msg, len, NULL, 0);
		raw_recv(ch, in, len, NULL);
		cr_assert_arr_eq(in, msg, len);
	}

	/* The channel ends alone: the front-end closes it, the main channel goes on. */
	close(sv[0]);
	expect_eof(ch, "the back-end channel");
	close(ch);
	trace_read_until("backend-channel: closed the back-end side\n");
	len = msg_bytes(msg, VHU_REQ_GET_FEATURES, 0x1, NULL, 0);
	fe_to_be(be, msg, len, NULL, 0, NULL);

	fe_close();
	expect_eof(be, "the fake back-end");
	close(be);
	expect_exit(trace_finish(), 0);

	t_expect_has_squeezed(g.out, " F->B main SET_BACKEND_REQ_FD flags=0x1 size=0 fds=1 "
		   "[back-end channel interposed]\n");
	t_expect_has_squeezed(g.out, " ---- session 1: backend-channel: opened, traced through a "
		   "socketpair\n");
	t_expect_has_squeezed(g.out, " B->F backend-channel BACKEND_CONFIG_CHANGE_MSG flags=0x9(NEED_REPLY) "
		   "size=0 fds=0\n");
	t_expect_has_squeezed(g.out, " F->B backend-channel BACKEND_CONFIG_CHANGE_MSG flags=0x5(REPLY) "
		   "size=8 fds=0 ack=0\n");
	t_expect_has_squeezed(g.out, " ---- session 1: backend-channel: the front-end side closed: "
		   "Disconnect");
	t_expect_has_squeezed(g.out, " ---- session 1: ended (exit status 0)\n");
	t_expect_lacks_squeezed(g.out, "INVALID");
}

/* JSON lines ------------------------------------------------------------ */

/* Every line of the trace is one JSON object; \return the number of lines. */
static unsigned int
expect_json_lines(const char *text)
{
	unsigned int n = 0;

	while (*text != '\0') {
		const char *end;

		cr_assert_eq(*text, '{', "line %u is not a JSON object:\n%s", n + 1, text);
		end = t_json_end(text);
		cr_assert_not_null(end, "line %u is not valid JSON:\n%s", n + 1, text);
		cr_assert_eq(*end, '\n', "line %u: trailing text:\n%s", n + 1, end);
		cr_assert_eq(strncmp(text, "{\"t\":", 5), 0, "line %u has no time first", n + 1);
		text = end + 1;
		n++;
	}
	return n;
}

Test(trace, json_lines_parse)
{
	const char *extra[] = { "--json", "--hex", "-v", NULL };
	struct vhu_mem_table t;
	struct vhu_fds got;
	uint8_t msg[512];
	uint64_t v = F(VHU_F_PROTOCOL_FEATURES) | F(VHU_F_VERSION_1);
	int be, m[2];

	trace_start(t_fake_listen("be.sock"), extra);
	fe_connect();
	be = t_fake_accept();
	m[0] = region_memfd("a");
	m[1] = region_memfd("b");
	fe_to_be(be, msg, msg_bytes(msg, VHU_REQ_SET_MEM_TABLE, 0x9, &t, mem_table(&t)), m, 2,
		 &got);
	vhu_fds_close(&got);
	close(m[0]);
	close(m[1]);
	fe_to_be(be, msg, msg_bytes(msg, VHU_REQ_GET_FEATURES, 0x1, NULL, 0), NULL, 0, NULL);
	be_to_fe(be, msg, msg_bytes(msg, VHU_REQ_GET_FEATURES, 0x5, &v, 8));
	fe_close();
	expect_eof(be, "the fake back-end");
	close(be);
	expect_exit(trace_finish(), 0);

	t_expect_has_squeezed(g.out, ",\"session\":1,\"dir\":\"F->B\",\"channel\":\"main\","
			      "\"request\":\"GET_FEATURES\",");
	/* start, session_start, 3 messages, 2 closes, session_end. */
	cr_assert_eq(expect_json_lines(g.out), 8, "unexpected line count:\n%s", g.out);
	t_expect_has(g.out, "{\"t\":0.000000,\"event\":\"start\",\"session\":0,\"vhu_version\":\"");
	t_expect_has_squeezed(g.out, ",\"event\":\"session_start\",\"session\":1,\"text\":\"front-end "
		   "connected; connecting to ");
	t_expect_has_squeezed(g.out, ",\"dir\":\"F->B\",\"channel\":\"main\",\"request\":\"SET_MEM_TABLE\","
		   "\"code\":5,\"flags\":\"0x9\",\"reply\":false,\"need_reply\":true,\"size\":72,"
		   "\"fds\":2,\"fd_types\":[\"memfd\",\"memfd\"],\"body\":{\"nregions\":2,"
		   "\"regions\":[{\"gpa\":\"0x0\",\"size\":\"0x100000\","
		   "\"uaddr\":\"0x7f0000000000\","
		   "\"offset\":\"0x0\"},{\"gpa\":\"0x100000\",\"size\":\"0x100000\","
		   "\"uaddr\":\"0x7f0000100000\",\"offset\":\"0x0\"}]},\"valid\":true,"
		   "\"hex\":\"050000000900000048000000020000000000000000000000");
	t_expect_has_squeezed(g.out, ",\"dir\":\"F->B\",\"channel\":\"main\",\"request\":\"GET_FEATURES\","
		   "\"code\":1,\"flags\":\"0x1\",\"reply\":false,\"need_reply\":false,\"size\":0,"
		   "\"fds\":0,\"fd_types\":[],\"body\":{},\"valid\":true,"
		   "\"hex\":\"010000000100000000000000\"}\n");
	t_expect_has_squeezed(g.out, ",\"dir\":\"B->F\",\"channel\":\"main\",\"request\":\"GET_FEATURES\","
		   "\"code\":1,\"flags\":\"0x5\",\"reply\":true,\"need_reply\":false,\"size\":8,"
		   "\"fds\":0,\"fd_types\":[],\"body\":{\"features\":\"0x140000000\","
		   "\"feature_names\":[\"PROTOCOL_FEATURES\",\"VERSION_1\"]},\"valid\":true,"
		   "\"hex\":\"0100000005000000080000000000004001000000\"}\n");
	t_expect_has_squeezed(g.out, ",\"event\":\"close\",\"session\":1,\"channel\":\"main\","
		   "\"side\":\"front-end\",\"reason\":\"VHU_EDISCONNECT\",");
	t_expect_has_squeezed(g.out, ",\"event\":\"session_end\",\"session\":1,\"text\":\"ended (exit "
		   "status 0)\"}\n");
}

/* Malformed messages ------------------------------------------------------ */

/* A header whose version is 2: no back-end accepts it. */
static size_t
bad_version(uint8_t *msg)
{
	return msg_bytes(msg, VHU_REQ_GET_FEATURES, 0x2, NULL, 0);
}

Test(trace, strict_closes_both_sides_on_a_bad_version)
{
	const char *extra[] = { "--strict", NULL };
	uint8_t msg[64];
	int be;

	trace_start(t_fake_listen("be.sock"), extra);
	fe_connect();
	be = t_fake_accept();
	raw_send(vhu_endpoint_fd(t_tool.fe), msg, bad_version(msg), NULL, 0);
	/* Nothing of it reaches the back-end: EOF is the first thing it reads. */
	expect_eof(be, "the fake back-end");
	expect_eof(vhu_endpoint_fd(t_tool.fe), "the front-end");
	close(be);
	expect_exit(trace_finish(), 5);
	t_expect_has_squeezed(g.out, " F->B main GET_FEATURES flags=0x2 size=0 fds=0 "
		   "[strict: not forwarded] INVALID VHU_EVERSION: ");
	t_expect_has_squeezed(g.out, " ---- session 1: main: closed the front-end side: InvalidMessage: "
		   "header version is not 1\n");
	t_expect_has_squeezed(g.out, " ---- session 1: ended (exit status 5)\n");
	t_expect_has_squeezed(g.err, "GET_FEATURES from the front-end breaks the rules: ");
	t_expect_has_squeezed(g.err, "(VHU_EVERSION); --strict: closing both sides\n");
}

Test(trace, strict_refuses_a_reply_from_the_front_end)
{
	const char *extra[] = { "--strict", NULL };
	uint8_t msg[64];
	uint64_t v = 1;
	int be;

	trace_start(t_fake_listen("be.sock"), extra);
	fe_connect();
	be = t_fake_accept();
	/* Framable and well-formed as a reply, but a front-end only sends requests. */
	raw_send(vhu_endpoint_fd(t_tool.fe), msg, msg_bytes(msg, VHU_REQ_GET_FEATURES, 0x5, &v, 8),
		 NULL, 0);
	expect_eof(be, "the fake back-end");
	expect_eof(vhu_endpoint_fd(t_tool.fe), "the front-end");
	close(be);
	expect_exit(trace_finish(), 5);
	t_expect_has_squeezed(g.out, " F->B main GET_FEATURES flags=0x5(REPLY) size=8 fds=0 "
		   "features=0x1(bit0) [strict: not forwarded] INVALID VHU_EFLAGS: ");
	t_expect_has_squeezed(g.err, "GET_FEATURES from the front-end breaks the rules: ");
	t_expect_has_squeezed(g.err, "--strict: closing both sides\n");
	/* Said once: the close that follows is the tracer's own. */
	t_expect_lacks_squeezed(g.err, "main, front-end side:");
	t_expect_has_squeezed(g.out, " ---- session 1: main: closed the front-end side: InvalidMessage: ");
	t_expect_has_squeezed(g.out, " ---- session 1: main: closed the back-end side\n");
	t_expect_has_squeezed(g.out, " ---- session 1: ended (exit status 5)\n");
}

/*
 * Without --strict, whatever frames is forwarded byte for byte and flagged:
 * a REPLY from the front-end, a body over the strict 4 KiB, a bad version,
 * an unknown request code, reserved flag bits, an fd where the request has
 * none. The back-end answers in between, so nothing ended the session.
 */
static void
malformed_forwarded(const char *mode)
{
	const char *extra[] = { "--recv-mode", mode, NULL };
	static uint8_t msg[8192];
	static uint8_t body[5000];
	struct vhu_fds got;
	uint64_t v = 1;
	size_t len;
	int be, memfd;

	trace_start(t_fake_listen("be.sock"), extra);
	fe_connect();
	be = t_fake_accept();

	len = msg_bytes(msg, VHU_REQ_GET_FEATURES, 0x5, &v, 8);
	fe_to_be(be, msg, len, NULL, 0, NULL);
	/* Above the 4 KiB every strict receiver allows, within what the tracer frames. */
	memset(body, 0xa5, sizeof(body));
	len = msg_bytes(msg, VHU_REQ_CREATE_CRYPTO_SESSION, 0x1, body, sizeof(body));
	fe_to_be(be, msg, len, NULL, 0, NULL);
	fe_to_be(be, msg, bad_version(msg), NULL, 0, NULL);
	len = msg_bytes(msg, 9999, 0x1, &v, 5);
	fe_to_be(be, msg, len, NULL, 0, NULL);
	len = msg_bytes(msg, VHU_REQ_SET_FEATURES, 0x101, &v, 8);
	fe_to_be(be, msg, len, NULL, 0, NULL);
	memfd = t_memfd("not for SET_OWNER");
	len = msg_bytes(msg, VHU_REQ_SET_OWNER, 0x1, NULL, 0);
	fe_to_be(be, msg, len, &memfd, 1, &got);
	cr_assert_eq(got.n, 1u, "the fd was not forwarded");
	cr_assert(t_same_file(got.fd[0], memfd));
	vhu_fds_close(&got);
	close(memfd);
	/* The session is still up: a reply comes back. */
	len = msg_bytes(msg, VHU_REQ_GET_FEATURES, 0x5, &v, 8);
	be_to_fe(be, msg, len);
	close(be);
	expect_eof(vhu_endpoint_fd(t_tool.fe), "the front-end");
	expect_exit(trace_finish(), 0);

	t_expect_has_squeezed(g.out, " F->B main GET_FEATURES flags=0x5(REPLY) size=8 fds=0 "
		   "features=0x1(bit0) INVALID VHU_EFLAGS: ");
	t_expect_has_squeezed(g.out, " F->B main CREATE_CRYPTO_SESSION flags=0x1 size=5000 fds=0 "
		   "INVALID VHU_EOVERSIZED: ");
	t_expect_has_squeezed(g.out, " F->B main GET_FEATURES flags=0x2 size=0 fds=0 "
		   "INVALID VHU_EVERSION: ");
	t_expect_has_squeezed(g.out, " size=5 fds=0 INVALID VHU_EREQUEST: ");
	t_expect_has_squeezed(g.out, " F->B main SET_FEATURES flags=0x101 size=8 fds=0 features=0x1(bit0) "
		   "INVALID VHU_EFLAGS: ");
	t_expect_has_squeezed(g.out, " F->B main SET_OWNER flags=0x1 size=0 fds=1 INVALID VHU_EFDS: ");
	t_expect_has_squeezed(g.out, " B->F main GET_FEATURES flags=0x5(REPLY) size=8 fds=0 ");
	t_expect_has_squeezed(g.out, " ---- session 1: ended (exit status 0)\n");
	t_expect_lacks_squeezed(g.err, "closing both sides");
}

Test(trace, malformed_messages_are_forwarded_and_flagged)
{
	malformed_forwarded("exact");
}

Test(trace, malformed_messages_are_forwarded_and_flagged_stream_mode)
{
	malformed_forwarded("stream");
}

/* Either side closing ------------------------------------------------------ */

/*
 * A message sent right before the close still reaches the other side: the
 * close is held back until the forwarded messages have left. In stream
 * mode the message and the EOF tend to arrive in one batch of completions.
 */
static void
close_after_message(const char *mode)
{
	const char *extra[] = { "--recv-mode", mode, NULL };
	uint8_t msg[64], got[64];
	size_t len;
	int be;

	trace_start(t_fake_listen("be.sock"), extra);
	fe_connect();
	be = t_fake_accept();
	len = msg_bytes(msg, VHU_REQ_RESET_OWNER, 0x1, NULL, 0);
	raw_send(vhu_endpoint_fd(t_tool.fe), msg, len, NULL, 0);
	fe_close();
	raw_recv(be, got, len, NULL);
	cr_assert_arr_eq(got, msg, len);
	expect_eof(be, "the fake back-end");
	close(be);
	expect_exit(trace_finish(), 0);
	t_expect_has_squeezed(g.out, " F->B main RESET_OWNER flags=0x1 size=0 fds=0\n");
	t_expect_has_squeezed(g.out, " ---- session 1: ended (exit status 0)\n");
}

Test(trace, frontend_closing_ends_the_session_after_its_last_message)
{
	close_after_message("exact");
}

Test(trace, frontend_closing_ends_the_session_after_its_last_message_stream_mode)
{
	close_after_message("stream");
}

/*
 * A burst larger than the socket buffers, then the close: what the tracer
 * still holds for a back-end that reads late is delivered before the EOF.
 */
Test(trace, frontend_closing_after_a_burst_loses_nothing)
{
	enum { NMSG = 100, BODY = 4000 };
	static uint8_t body[BODY], msg[VHU_HDR_SIZE + BODY], got[VHU_HDR_SIZE + BODY];
	size_t len = 0;
	int be, i;

	trace_start(t_fake_listen("be.sock"), NULL);
	fe_connect();
	be = t_fake_accept();
	for (i = 0; i < NMSG; i++) {
		memset(body, i, sizeof(body));
		len = msg_bytes(msg, VHU_REQ_CREATE_CRYPTO_SESSION, 0x1, body, BODY);
		raw_send(vhu_endpoint_fd(t_tool.fe), msg, len, NULL, 0);
	}
	fe_close();
	for (i = 0; i < NMSG; i++) {
		memset(body, i, sizeof(body));
		msg_bytes(msg, VHU_REQ_CREATE_CRYPTO_SESSION, 0x1, body, BODY);
		raw_recv(be, got, len, NULL);
		cr_assert_arr_eq(got, msg, len, "message %d differs", i);
	}
	expect_eof(be, "the fake back-end");
	close(be);
	expect_exit(trace_finish(), 0);
}

Test(trace, backend_closing_ends_the_session_after_its_last_message)
{
	uint8_t msg[64], got[64];
	uint64_t v = 3;
	size_t len;
	int be;

	trace_start(t_fake_listen("be.sock"), NULL);
	fe_connect();
	be = t_fake_accept();
	fe_to_be(be, msg, msg_bytes(msg, VHU_REQ_GET_QUEUE_NUM, 0x1, NULL, 0), NULL, 0, NULL);
	len = msg_bytes(msg, VHU_REQ_GET_QUEUE_NUM, 0x5, &v, 8);
	raw_send(be, msg, len, NULL, 0);
	close(be);
	raw_recv(vhu_endpoint_fd(t_tool.fe), got, len, NULL);
	cr_assert_arr_eq(got, msg, len);
	expect_eof(vhu_endpoint_fd(t_tool.fe), "the front-end");
	expect_exit(trace_finish(), 0);
	t_expect_has_squeezed(g.out, " B->F main GET_QUEUE_NUM flags=0x5(REPLY) size=8 fds=0 u64=3\n");
	t_expect_has_squeezed(g.out, " ---- session 1: main: the back-end side closed: Disconnect");
	t_expect_has_squeezed(g.out, " ---- session 1: main: closed the front-end side\n");
}

Test(trace, keep_listening_serves_the_next_frontend)
{
	const char *extra[] = { "--keep-listening", NULL };
	uint8_t msg[64];
	int be, i, st;

	trace_start(t_fake_listen("be.sock"), extra);
	for (i = 1; i <= 2; i++) {
		char want[64];

		fe_connect();
		be = t_fake_accept();
		fe_to_be(be, msg, msg_bytes(msg, VHU_REQ_GET_FEATURES, 0x1, NULL, 0), NULL, 0,
			 NULL);
		fe_close();
		expect_eof(be, "the fake back-end");
		close(be);
		snprintf(want, sizeof(want), "session %d: ended (exit status 0)\n", i);
		trace_read_until(want);
	}
	cr_assert_eq(access(trace_sock(), F_OK), 0, "the listening socket is gone");
	cr_assert_eq(kill(t_tool.trace.pid, SIGTERM), 0);
	st = trace_finish();
	expect_exit(st, 0);
	cr_assert_neq(access(trace_sock(), F_OK), 0, "the listening socket was left behind");
}

/* Options and failures ----------------------------------------------------- */

Test(trace, output_file_and_hex)
{
	const char *file = t_path("trace.txt");
	const char *extra[] = { "-o", file, "--hex", NULL };
	struct vhu_vring_state vs = { 0, 256 };
	uint8_t msg[64];
	char text[4096];
	ssize_t n;
	int be, fd;

	trace_start(t_fake_listen("be.sock"), extra);
	fe_connect();
	be = t_fake_accept();
	fe_to_be(be, msg, msg_bytes(msg, VHU_REQ_SET_VRING_NUM, 0x1, &vs, sizeof(vs)), NULL, 0,
		 NULL);
	fe_close();
	expect_eof(be, "the fake back-end");
	close(be);
	expect_exit(trace_finish(), 0);
	cr_assert_eq(g.out_len, 0, "stdout is not empty:\n%s", g.out);

	fd = open(file, O_RDONLY | O_CLOEXEC);
	cr_assert_geq(fd, 0);
	n = read(fd, text, sizeof(text) - 1);
	close(fd);
	cr_assert_gt(n, 0);
	text[n] = '\0';
	t_expect_has_squeezed(text, " F->B main SET_VRING_NUM flags=0x1 size=8 fds=0 index=0 num=256\n"
		   " 0000 08 00 00 00 01 00 00 00 08 00 00 00 00 00 00 00\n"
		   " 0010 00 01 00 00\n");
}

Test(trace, connect_failure_exits_3)
{
	char want[256];

	trace_start(t_path("nobody.sock"), NULL);
	fe_connect();
	expect_eof(vhu_endpoint_fd(t_tool.fe), "the front-end");
	expect_exit(trace_finish(), 3);
	snprintf(want, sizeof(want), "vhu-trace: cannot connect to %s: ", t_path("nobody.sock"));
	t_expect_has_squeezed(g.err, want);
	t_expect_has_squeezed(g.out, " ---- session 1: ended (exit status 3)\n");
}

Test(trace, usage_errors_and_help)
{
	const char *none[] = { NULL };
	const char *one[] = { "--listen", "a.sock", NULL };
	const char *same[] = { "--listen", "a.sock", "--connect", "a.sock", NULL };
	const char *mode[] = { "-l", "a.sock", "-c", "b.sock", "--recv-mode", "fast", NULL };
	const char *extra_arg[] = { "-l", "a.sock", "-c", "b.sock", "stray", NULL };
	const char *help[] = { "--help", NULL };
	const char *nodir[] = { "-l", "/nonexistent-dir/tr.sock", "-c", "b.sock", NULL };
	const char *max_alone[] = { "-l", "a.sock", "-c", "b.sock", "--max-sessions", "4", NULL };
	const char *max_zero[] = { "-l", "a.sock", "-c", "b.sock", "-k", "-m", "0", NULL };
	const char *max_junk[] = { "-l", "a.sock", "-c", "b.sock", "-k", "-m", "4x", NULL };
	const char *const *bad[] = { none, one, same, mode, extra_arg };
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		trace_spawn(bad[i]);
		expect_exit(trace_finish(), 2);
		t_expect_has_squeezed(g.err, "vhu-trace: ");
	}
	t_expect_has_squeezed(g.err, "\"stray\"");
	trace_spawn(max_alone);
	expect_exit(trace_finish(), 2);
	t_expect_has_squeezed(g.err, "vhu-trace: --max-sessions needs --keep-listening\n");
	trace_spawn(max_zero);
	expect_exit(trace_finish(), 2);
	t_expect_has_squeezed(g.err, "vhu-trace: --max-sessions must be 1..4096, not \"0\"\n");
	trace_spawn(max_junk);
	expect_exit(trace_finish(), 2);
	t_expect_has_squeezed(g.err, "vhu-trace: --max-sessions must be 1..4096, not \"4x\"\n");

	trace_spawn(help);
	expect_exit(trace_finish(), 0);
	t_expect_has_squeezed(g.out, "Usage: vhu-trace --listen PATH --connect PATH [options]\n");
	t_expect_has_squeezed(g.out, "Exit status:\n");
	t_expect_has_squeezed(g.out, "Examples:\n");

	trace_spawn(nodir);
	expect_exit(trace_finish(), 3);
	t_expect_has_squeezed(g.err, "vhu-trace: cannot listen on /nonexistent-dir/tr.sock: ");
}

/* Flow control, half-close, many sessions ----------------------------------- */

/*
 * A stream of n numbered messages written by src (non-blocking) and read
 * back at dst, each compared byte for byte with what was sent: a message
 * lost, reordered or duplicated shows as a mismatch. Message i is a header
 * (req, flags, body bytes) and a body whose first 4 bytes are tag (the
 * session, or a vring index), the next 4 are i, and the rest (uint8)(i + tag).
 * With fd >= 0 every message carries a copy of it, which dst must get once.
 */
struct flow {
	int src, dst;
	uint32_t req, flags, body, tag;
	int fd;
	unsigned int n, sent, got;
	size_t out_off, in_off;
	bool stalled;		/* src's writes blocked while dst did not read */
	uint8_t *out, *in, *want;
	const char *what;
};

/* How long the writer must make no progress for the pipeline to count as full. */
#define QUIET_MS	300

static void
flow_msg(const struct flow *f, uint8_t *buf, unsigned int i)
{
	struct vhu_hdr h = { f->req, f->flags, f->body };
	uint32_t seq = i;

	memcpy(buf, &h, VHU_HDR_SIZE);
	memset(buf + VHU_HDR_SIZE, (int)((i + f->tag) & 0xff), f->body);
	memcpy(buf + VHU_HDR_SIZE, &f->tag, 4);
	memcpy(buf + VHU_HDR_SIZE + 4, &seq, 4);
}

static void
flow_init(struct flow *f, int src, int dst, uint32_t req, uint32_t flags, uint32_t body,
	  uint32_t tag, unsigned int n, int fd, const char *what)
{
	size_t len = VHU_HDR_SIZE + body;

	cr_assert_geq(body, 8);
	memset(f, 0, sizeof(*f));
	f->src = src;
	f->dst = dst;
	f->req = req;
	f->flags = flags;
	f->body = body;
	f->tag = tag;
	f->n = n;
	f->fd = fd;
	f->what = what;
	f->out = malloc(len);
	f->in = malloc(len);
	f->want = malloc(len);
	cr_assert(f->out != NULL && f->in != NULL && f->want != NULL);
	flow_msg(f, f->out, 0);
}

static void
flow_fini(struct flow *f)
{
	free(f->out);
	free(f->in);
	free(f->want);
}

/* Write what src takes without blocking; \return whether anything went. */
static bool
flow_write(struct flow *f)
{
	size_t len = VHU_HDR_SIZE + f->body;
	bool moved = false;

	while (f->sent < f->n) {
		struct iovec iov = { .iov_base = f->out + f->out_off, .iov_len = len - f->out_off };
		union vhu_cmsg_buf cb;
		struct msghdr mh;
		ssize_t k;

		memset(&mh, 0, sizeof(mh));
		mh.msg_iov = &iov;
		mh.msg_iovlen = 1;
		/* The fd goes with the first byte of its message. */
		cr_assert_eq(vhu_cmsg_build(&mh, &cb, &f->fd, f->fd >= 0 && f->out_off == 0 ? 1 : 0),
			     0);
		k = sendmsg(f->src, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (k < 0) {
			cr_assert_eq(errno, EAGAIN, "%s: writing message %u of %u: %s (the tracer "
				     "ended the session)", f->what, f->sent, f->n, strerror(errno));
			break;
		}
		moved = true;
		f->out_off += (size_t)k;
		if (f->out_off == len) {
			f->out_off = 0;
			if (++f->sent < f->n) {
				flow_msg(f, f->out, f->sent);
			}
		}
	}
	return moved;
}

/* Read what dst has without blocking, checking each whole message; \return whether any came. */
static bool
flow_read(struct flow *f)
{
	size_t len = VHU_HDR_SIZE + f->body;
	bool moved = false;

	while (f->got < f->n) {
		struct iovec iov = { .iov_base = f->in + f->in_off, .iov_len = len - f->in_off };
		union vhu_cmsg_buf cb;
		struct vhu_fds fds;
		struct msghdr mh;
		ssize_t k;

		memset(&mh, 0, sizeof(mh));
		mh.msg_iov = &iov;
		mh.msg_iovlen = 1;
		vhu_cmsg_prep_recv(&mh, &cb);
		k = recvmsg(f->dst, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
		if (k < 0) {
			cr_assert_eq(errno, EAGAIN, "%s: reading message %u of %u: %s", f->what,
				     f->got, f->n, strerror(errno));
			break;
		}
		cr_assert_gt(k, 0, "%s: EOF after %u of %u messages (the tracer ended the session)",
			     f->what, f->got, f->n);
		vhu_fds_init(&fds);
		cr_assert_geq(vhu_cmsg_collect(&mh, mh.msg_flags, &fds), 0);
		if (f->fd >= 0 && f->in_off == 0) {
			cr_assert_eq(fds.n, 1, "%s: message %u came with %u fds", f->what, f->got,
				     fds.n);
			cr_assert(t_same_file(fds.fd[0], f->fd), "%s: message %u: another file",
				  f->what, f->got);
		} else {
			cr_assert_eq(fds.n, 0, "%s: unexpected fds on message %u", f->what, f->got);
		}
		vhu_fds_close(&fds);
		moved = true;
		f->in_off += (size_t)k;
		if (f->in_off == len) {
			flow_msg(f, f->want, f->got);
			cr_assert_arr_eq(f->in, f->want, len, "%s: message %u differs (lost, "
					 "reordered or duplicated)", f->what, f->got);
			f->in_off = 0;
			f->got++;
		}
	}
	return moved;
}

/*
 * Write without reading until the pipeline is full: the writer's socket
 * refuses more and no room comes back within QUIET_MS. Fails if the
 * session ends meanwhile, or if everything fit.
 */
static void
flow_until_stalled(struct flow *f)
{
	for (;;) {
		struct pollfd p = { .fd = f->src, .events = POLLOUT };
		int r;

		flow_write(f);
		cr_assert_lt(f->sent, f->n, "%s: all %u messages fit without the reader", f->what,
			     f->n);
		r = poll(&p, 1, QUIET_MS);
		cr_assert_geq(r, 0);
		if (r == 0) {
			f->stalled = true;
			return;
		}
		cr_assert_eq(p.revents & (POLLERR | POLLHUP), 0, "%s: the tracer closed the "
			     "connection after %u messages", f->what, f->sent);
	}
}

/* Write and read until every message has arrived; fails on a stall of WAIT_MS. */
static void
flow_finish(struct flow *f)
{
	while (f->got < f->n) {
		bool moved = flow_write(f);

		moved |= flow_read(f);
		if (!moved && f->got < f->n) {
			struct pollfd p[2] = {
				{ .fd = f->dst, .events = POLLIN },
				{ .fd = f->src, .events = POLLOUT },
			};

			cr_assert_gt(poll(p, f->sent < f->n ? 2 : 1, WAIT_MS), 0,
				     "%s: stuck after %u sent, %u received", f->what, f->sent,
				     f->got);
		}
	}
}

/* Run f with the reader away until the writer blocks, then reading everything. */
static void
flow_with_slow_reader(struct flow *f)
{
	flow_until_stalled(f);
	flow_finish(f);
	cr_assert(f->stalled);
}

/* The trace goes to a file in the flood tests: nobody reads a pipe of that size meanwhile. */
static const char *
trace_file(void)
{
	return t_path("flood.trace");
}

/* The trace file's text (the caller frees it). */
static char *
trace_file_text(void)
{
	int fd = open(trace_file(), O_RDONLY | O_CLOEXEC);
	struct stat st;
	char *text;
	ssize_t n;

	cr_assert_geq(fd, 0);
	cr_assert_eq(fstat(fd, &st), 0);
	text = malloc((size_t)st.st_size + 1);
	cr_assert_not_null(text);
	n = read(fd, text, (size_t)st.st_size);
	close(fd);
	cr_assert_eq(n, st.st_size);
	text[n] = '\0';
	return text;
}

/*
 * A half-close is forwarded as one: the front-end sends 20 requests and
 * shuts down its sending side; the back-end reads the 20, then EOF, and
 * its 20 replies still reach the front-end. Then the back-end half-closes
 * too: the front-end reads EOF after the last reply, and with both
 * directions over the session ends by itself (nobody closed a socket).
 */
Test(trace, frontend_half_close_is_forwarded_and_replies_still_arrive)
{
	uint8_t msg[64], got[64];
	uint64_t v;
	size_t len;
	int be, fe, i;

	trace_start(t_fake_listen("be.sock"), NULL);
	fe = vhu_endpoint_fd(fe_connect());
	be = t_fake_accept();
	for (i = 0; i < 20; i++) {
		v = (uint64_t)i;
		len = msg_bytes(msg, VHU_REQ_GET_QUEUE_NUM, 0x1, NULL, 0);
		raw_send(fe, msg, len, NULL, 0);
	}
	cr_assert_eq(shutdown(fe, SHUT_WR), 0);
	for (i = 0; i < 20; i++) {
		raw_recv(be, got, len, NULL);
		cr_assert_arr_eq(got, msg, len, "request %d", i);
	}
	expect_eof(be, "the back-end, after the front-end's half-close");
	for (i = 0; i < 20; i++) {
		v = 1000u + (uint64_t)i;
		len = msg_bytes(msg, VHU_REQ_GET_QUEUE_NUM, 0x5, &v, 8);
		raw_send(be, msg, len, NULL, 0);
	}
	for (i = 0; i < 20; i++) {
		v = 1000u + (uint64_t)i;
		len = msg_bytes(msg, VHU_REQ_GET_QUEUE_NUM, 0x5, &v, 8);
		raw_recv(fe, got, len, NULL);
		cr_assert_arr_eq(got, msg, len, "reply %d of 20 through the tracer", i);
	}
	cr_assert_eq(shutdown(be, SHUT_WR), 0);
	expect_eof(fe, "the front-end, after the back-end's half-close");
	expect_exit(trace_finish(), 0);
	close(be);
	t_expect_has_squeezed(g.out, " ---- session 1: main: the front-end side shut down its "
			      "sending side; forwarded\n");
	t_expect_has_squeezed(g.out, " ---- session 1: main: the back-end side shut down its "
			      "sending side; forwarded\n");
	t_expect_has_squeezed(g.out, " B->F main GET_QUEUE_NUM flags=0x5(REPLY) size=8 fds=0 "
			      "u64=1019\n");
	t_expect_has_squeezed(g.out, " ---- session 1: ended (exit status 0)\n");
	cr_assert_str_eq(g.err + strcspn(g.err, "\n") + 1, "", "unexpected stderr:\n%s", g.err);
}

/* Set up the back-end channel: *fe_ch is the front-end's end, *be_ch the back-end's. */
static void
backend_channel_setup(int be, int *fe_ch, int *be_ch)
{
	struct vhu_fds got;
	uint8_t msg[64];
	int sv[2];

	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	fe_to_be(be, msg, msg_bytes(msg, VHU_REQ_SET_BACKEND_REQ_FD, 0x1, NULL, 0), &sv[1], 1,
		 &got);
	close(sv[1]);
	cr_assert_eq(got.n, 1);
	*fe_ch = sv[0];
	*be_ch = vhu_fds_take(&got, 0);
}

/*
 * The same on the back-end channel: the back-end sends 20 requests and
 * shuts down its side; the front-end reads them and EOF, and its 20 acks
 * still reach the back-end; the front-end's half-close then ends the
 * channel, and the main channel goes on.
 */
Test(trace, backend_channel_half_close_is_forwarded)
{
	uint8_t msg[64], got[64];
	uint64_t v = 0;
	size_t len;
	int be, fe_ch, be_ch, i;

	trace_start(t_fake_listen("be.sock"), NULL);
	fe_connect();
	be = t_fake_accept();
	backend_channel_setup(be, &fe_ch, &be_ch);
	len = msg_bytes(msg, VHU_BREQ_CONFIG_CHANGE_MSG, 0x9, NULL, 0);
	for (i = 0; i < 20; i++) {
		raw_send(be_ch, msg, len, NULL, 0);
	}
	cr_assert_eq(shutdown(be_ch, SHUT_WR), 0);
	for (i = 0; i < 20; i++) {
		raw_recv(fe_ch, got, len, NULL);
		cr_assert_arr_eq(got, msg, len);
	}
	expect_eof(fe_ch, "the front-end's channel, after the back-end's half-close");
	len = msg_bytes(msg, VHU_BREQ_CONFIG_CHANGE_MSG, 0x5, &v, 8);
	for (i = 0; i < 20; i++) {
		raw_send(fe_ch, msg, len, NULL, 0);
	}
	for (i = 0; i < 20; i++) {
		raw_recv(be_ch, got, len, NULL);
		cr_assert_arr_eq(got, msg, len, "ack %d of 20 through the tracer", i);
	}
	cr_assert_eq(shutdown(fe_ch, SHUT_WR), 0);
	expect_eof(be_ch, "the back-end's channel");
	trace_read_until("backend-channel: the front-end side closed: ");
	close(fe_ch);
	close(be_ch);
	/* The main channel is still up. */
	fe_to_be(be, msg, msg_bytes(msg, VHU_REQ_GET_FEATURES, 0x1, NULL, 0), NULL, 0, NULL);
	fe_close();
	expect_eof(be, "the fake back-end");
	close(be);
	expect_exit(trace_finish(), 0);
	t_expect_has_squeezed(g.out, " ---- session 1: backend-channel: the back-end side shut "
			      "down its sending side; forwarded\n");
	t_expect_has_squeezed(g.out, " ---- session 1: ended (exit status 0)\n");
}

/*
 * A back-end that stops reading for a while: the front-end keeps sending
 * SET_VRING_CALL, each with an eventfd, until its writes block (the tracer
 * held what it could, then stopped reading); nothing ends. Then the
 * back-end reads: all 3000 arrive in order, each with the very eventfd,
 * once. Before: the tracer's queue filled and it ended the session.
 */
static void
backend_stops_reading(const char *mode)
{
	const char *extra[] = { "-o", trace_file(), "--recv-mode", mode, NULL };
	struct flow f;
	char *text;
	int be, efd;

	trace_start(t_fake_listen("be.sock"), extra);
	fe_connect();
	be = t_fake_accept();
	efd = t_eventfd();
	flow_init(&f, vhu_endpoint_fd(t_tool.fe), be, VHU_REQ_SET_VRING_CALL, 0x1, 8, 0, 3000, efd,
		  "front-end to a back-end that stops reading");
	flow_with_slow_reader(&f);
	flow_fini(&f);
	close(efd);
	fe_close();
	expect_eof(be, "the fake back-end");
	close(be);
	expect_exit(trace_finish(), 0);
	t_expect_lacks_squeezed(g.err, "cannot forward");
	text = trace_file_text();
	t_expect_has_squeezed(text, " ---- session 1: ended (exit status 0)\n");
	free(text);
}

Test(trace, backend_that_stops_reading_slows_the_frontend)
{
	backend_stops_reading("exact");
}

Test(trace, backend_that_stops_reading_slows_the_frontend_stream_mode)
{
	backend_stops_reading("stream");
}

/*
 * 5000 VRING_CALL notifications from the back-end on its channel while
 * the front-end does not read them: the back-end's writes block, the
 * session stays, and once the front-end reads every one arrives in order.
 */
Test(trace, backend_channel_flood_while_the_frontend_does_not_read)
{
	const char *extra[] = { "-o", trace_file(), NULL };
	struct flow f;
	uint8_t msg[64];
	char *text;
	int be, fe_ch, be_ch;

	trace_start(t_fake_listen("be.sock"), extra);
	fe_connect();
	be = t_fake_accept();
	backend_channel_setup(be, &fe_ch, &be_ch);
	flow_init(&f, be_ch, fe_ch, VHU_BREQ_VRING_CALL, 0x1, 8, 0, 5000, -1,
		  "back-end channel to a front-end that does not read");
	flow_with_slow_reader(&f);
	flow_fini(&f);
	/* Both channels still work. */
	fe_to_be(be, msg, msg_bytes(msg, VHU_REQ_GET_FEATURES, 0x1, NULL, 0), NULL, 0, NULL);
	close(fe_ch);
	close(be_ch);
	fe_close();
	expect_eof(be, "the fake back-end");
	close(be);
	expect_exit(trace_finish(), 0);
	t_expect_lacks_squeezed(g.err, "cannot forward");
	text = trace_file_text();
	t_expect_has_squeezed(text, " B->F backend-channel BACKEND_VRING_CALL flags=0x1 size=8 fds=0 ");
	t_expect_has_squeezed(text, " ---- session 1: ended (exit status 0)\n");
	free(text);
}

static int
raw_connect(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	cr_assert_geq(fd, 0);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0, "connect %s: %s", path,
		     strerror(errno));
	return fd;
}

/*
 * Eight front-ends at once with --keep-listening, one back-end connection
 * each. Front-end 0 stops reading while its back-end floods it; the other
 * seven exchange their messages meanwhile, byte-exact both ways; then
 * front-end 0 reads everything, in order. No session ends early, and once
 * all have ended the tracer holds as many fds as before the first came.
 */
Test(trace, eight_frontends_at_once_one_a_slow_reader)
{
	enum { N = 8 };
	const char *extra[] = { "--keep-listening", "-o", trace_file(), NULL };
	int fe[N], be[N], i, base, st;
	struct flow slow, f;
	char want[64], *text;

	trace_start(t_fake_listen("be.sock"), extra);
	base = t_fds_of(t_tool.trace.pid, NULL);
	for (i = 0; i < N; i++) {
		fe[i] = raw_connect(trace_sock());
		be[i] = t_fake_accept();
	}
	/* All eight are up before any has ended: served at once, not one after another. */
	flow_init(&slow, be[0], fe[0], VHU_REQ_GET_CONFIG, 0x5, 2000, 0, 1000, -1,
		  "session 1: back-end to a front-end that stopped reading");
	flow_until_stalled(&slow);
	for (i = 1; i < N; i++) {
		flow_init(&f, fe[i], be[i], VHU_REQ_SET_CONFIG, 0x1, 1000, (uint32_t)i, 200, -1,
			  "front-end to back-end beside a slow reader");
		flow_finish(&f);
		flow_fini(&f);
		flow_init(&f, be[i], fe[i], VHU_REQ_GET_CONFIG, 0x5, 1000, (uint32_t)i, 200, -1,
			  "back-end to front-end beside a slow reader");
		flow_finish(&f);
		flow_fini(&f);
	}
	flow_finish(&slow);
	flow_fini(&slow);
	flow_init(&f, fe[0], be[0], VHU_REQ_SET_CONFIG, 0x1, 1000, 0, 200, -1,
		  "session 1: front-end to back-end after reading");
	flow_finish(&f);
	flow_fini(&f);
	for (i = 0; i < N; i++) {
		close(fe[i]);
		expect_eof(be[i], "a fake back-end");
		close(be[i]);
	}
	for (i = 1; i <= N; i++) {
		snprintf(want, sizeof(want), " ---- session %d: ended (exit status 0)\n", i);
		for (;;) {
			text = trace_file_text();
			if (strstr(text, want) != NULL) {
				break;
			}
			free(text);
			/* The trace file has no event to wait on; the tracer's stderr stays quiet. */
			cr_assert_eq(kill(t_tool.trace.pid, 0), 0, "vhu-trace is gone");
			{
				struct pollfd p = { .fd = t_tool.trace.err, .events = POLLIN };

				cr_assert_eq(poll(&p, 1, 10), 0, "vhu-trace wrote on stderr");
			}
		}
		free(text);
	}
	cr_assert_eq(t_fds_of(t_tool.trace.pid, NULL), base, "the tracer's fds: %d before, %d after",
		     base, t_fds_of(t_tool.trace.pid, NULL));
	cr_assert_eq(kill(t_tool.trace.pid, SIGTERM), 0);
	st = trace_finish();
	expect_exit(st, 0);
	t_expect_lacks_squeezed(g.err, "cannot forward");
	text = trace_file_text();
	t_expect_lacks_squeezed(text, "closing both sides");
	t_expect_has_squeezed(text, " ---- session 8: front-end connected; connecting to ");
	/* With --keep-listening message lines name their session too. */
	t_expect_has_squeezed(text, " #8 F->B main SET_CONFIG flags=0x1 size=1000 fds=0 ");
	t_expect_has_squeezed(text, " #1 B->F main GET_CONFIG flags=0x5(REPLY) size=2000 fds=0 ");
	free(text);
}

/*
 * A front-end passes its own main-channel socket as the back-end channel:
 * interposing it would have the tracer hold the far end of its own
 * connection, so the session would outlive the front-end. The tracer
 * refuses it (VHU_EFDKIND): nothing reaches the back-end, both sides are
 * closed, the session ends with status 5, its fds are all given back, and
 * the next front-end is served.
 */
Test(trace, own_socket_as_backend_channel_is_refused)
{
	const char *extra[] = { "--keep-listening", NULL };
	uint8_t msg[64];
	int be, base, fd, st;

	trace_start(t_fake_listen("be.sock"), extra);
	base = t_fds_of(t_tool.trace.pid, NULL);
	fd = vhu_endpoint_fd(fe_connect());
	be = t_fake_accept();
	raw_send(fd, msg, msg_bytes(msg, VHU_REQ_SET_BACKEND_REQ_FD, 0x1, NULL, 0), &fd, 1);
	expect_eof(be, "the fake back-end");
	close(be);
	fe_close();
	trace_read_until(" ---- session 1: ended (exit status 5)\n");
	t_proc_read_until(t_tool.trace.err, g.err, sizeof(g.err), &g.err_len, "VHU_EFDKIND",
			  "vhu-trace");
	cr_assert_eq(t_fds_of(t_tool.trace.pid, NULL), base, "the tracer's fds: %d before, %d after",
		     base, t_fds_of(t_tool.trace.pid, NULL));
	/* The tracer goes on serving. */
	fe_connect();
	be = t_fake_accept();
	fe_to_be(be, msg, msg_bytes(msg, VHU_REQ_GET_FEATURES, 0x1, NULL, 0), NULL, 0, NULL);
	fe_close();
	expect_eof(be, "the fake back-end");
	close(be);
	trace_read_until(" ---- session 2: ended (exit status 0)\n");
	cr_assert_eq(kill(t_tool.trace.pid, SIGTERM), 0);
	st = trace_finish();
	expect_exit(st, 0);
	t_expect_has_squeezed(g.out, " F->B main SET_BACKEND_REQ_FD flags=0x1 size=0 fds=1 "
			      "[refused: not forwarded] INVALID VHU_EFDKIND: ");
	t_expect_has_squeezed(g.err, "vhu-trace: session 1: SET_BACKEND_REQ_FD from the front-end: "
			      "the back-end channel fd leads back to vhu-trace's own connection "
			      "(VHU_EFDKIND); closing both sides\n");
}

/* --max-sessions: a front-end over the limit is closed at once; the others go on. */
Test(trace, max_sessions_closes_the_extra_frontend)
{
	const char *extra[] = { "--keep-listening", "--max-sessions", "2", NULL };
	uint8_t msg[64], got[64];
	int fe[3], be[2], i, st;
	size_t len;

	trace_start(t_fake_listen("be.sock"), extra);
	for (i = 0; i < 2; i++) {
		fe[i] = raw_connect(trace_sock());
		be[i] = t_fake_accept();
	}
	fe[2] = raw_connect(trace_sock());
	expect_eof(fe[2], "the third front-end");
	close(fe[2]);
	len = msg_bytes(msg, VHU_REQ_GET_FEATURES, 0x1, NULL, 0);
	for (i = 0; i < 2; i++) {
		raw_send(fe[i], msg, len, NULL, 0);
		raw_recv(be[i], got, len, NULL);
		cr_assert_arr_eq(got, msg, len);
		close(fe[i]);
		expect_eof(be[i], "a fake back-end");
		close(be[i]);
	}
	trace_read_until(" ---- session 2: ended (exit status 0)\n");
	cr_assert_eq(kill(t_tool.trace.pid, SIGTERM), 0);
	st = trace_finish();
	expect_exit(st, 0);
	t_expect_lacks_squeezed(g.out, "session 3");
}
