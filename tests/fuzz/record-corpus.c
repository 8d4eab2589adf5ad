/* SPDX-License-Identifier: MIT */
/*
 * record-corpus: regenerate the fuzz seed corpus from real handshakes.
 *
 * It starts qemu-storage-daemon (vhost-user-blk) and virtiofsd, plays
 * QEMU's front-end part against each (device init, then device start and
 * stop: wire doc section 5), and records every message on the wire: the
 * requests as sent (header, body, fd count) and the replies as they came
 * back. The sessions, plus a few hand-made edge cases, are written in the
 * input format of each target (fuzz_input.h) to OUTDIR/<target>/. Files
 * of the same name are overwritten; others (crash regressions) are kept.
 *
 * Usage: record-corpus OUTDIR      (see README.md)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <vhu/endpoint.h>
#include <vhu/error.h>
#include <vhu/wire.h>

#include "fuzz_input.h"

#define QSD_BIN		"/usr/bin/qemu-storage-daemon"
#define VIRTIOFSD_BIN	"/usr/lib/qemu/virtiofsd"

#define MAX_MSGS	96
#define MAX_MSG_LEN	(VHU_HDR_SIZE + 512)
#define MAX_QUEUES	2u
#define RING_SIZE	128u
#define MEM_SIZE	0x100000ull
#define GUEST_UADDR	0x7f0000000000ull
#define LOG_SIZE	0x1000ull
/* QEMU's SET_MEM_TABLE limit without CONFIGURE_MEM_SLOTS. */
#define EDGE_REGIONS	8u

/* What a QEMU front-end of these devices negotiates, when offered. */
#define WANT_PROTOCOL \
	((1ull << VHU_PROTOCOL_F_MQ) | (1ull << VHU_PROTOCOL_F_REPLY_ACK) | \
	 (1ull << VHU_PROTOCOL_F_LOG_SHMFD) | \
	 (1ull << VHU_PROTOCOL_F_BACKEND_REQ) | (1ull << VHU_PROTOCOL_F_CONFIG) | \
	 (1ull << VHU_PROTOCOL_F_INFLIGHT_SHMFD) | (1ull << VHU_PROTOCOL_F_RESET_DEVICE) | \
	 (1ull << VHU_PROTOCOL_F_CONFIGURE_MEM_SLOTS) | (1ull << VHU_PROTOCOL_F_STATUS))
#define WANT_FEATURES \
	((1ull << VHU_F_VERSION_1) | (1ull << VHU_F_PROTOCOL_FEATURES) | \
	 (1ull << VHU_F_RING_INDIRECT_DESC) | (1ull << VHU_F_RING_EVENT_IDX))

struct rec_msg {
	bool reply;
	unsigned int nfds;
	size_t len;
	uint8_t b[MAX_MSG_LEN];
};

struct session {
	const char *peer;
	struct vhu_endpoint *ep;
	uint64_t protocol;		/* agreed protocol features */
	struct rec_msg msgs[MAX_MSGS];
	unsigned int n;
};

struct peer {
	pid_t pid;
	char dir[64];
	char path[108];
};

static const char *outdir;
static unsigned int files_written;

/* Files --------------------------------------------------------------- */

static int
write_seed(const char *target, const char *name, const struct fz_buf *w)
{
	char path[512];
	FILE *f;

	if (w->overflow) {
		fprintf(stderr, "record-corpus: %s/%s too large, skipped\n", target, name);
		return -EOVERFLOW;
	}
	snprintf(path, sizeof(path), "%s/%s", outdir, target);
	if (mkdir(path, 0755) != 0 && errno != EEXIST) {
		perror(path);
		return -errno;
	}
	snprintf(path, sizeof(path), "%s/%s/%s", outdir, target, name);
	f = fopen(path, "wb");
	if (!f || fwrite(w->b, 1, w->n, f) != w->n || fclose(f) != 0) {
		perror(path);
		return -EIO;
	}
	files_written++;
	return 0;
}

/* Peers --------------------------------------------------------------- */

/* Bind the socket here and hand it over as an fd: connect() works at once. */
static int
peer_start(struct peer *p, const char *bin, bool blk)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char fdarg[160], srcarg[160];
	int lfd;

	memset(p, 0, sizeof(*p));
	snprintf(p->dir, sizeof(p->dir), "/tmp/vhu-record-XXXXXX");
	if (!mkdtemp(p->dir)) {
		perror("mkdtemp");
		return -1;
	}
	snprintf(p->path, sizeof(p->path), "%s/peer.sock", p->dir);
	strcpy(sa.sun_path, p->path);
	lfd = socket(AF_UNIX, SOCK_STREAM, 0);	/* inherited by the daemon */
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
	    listen(lfd, 4) != 0) {
		perror("listen");
		return -1;
	}
	if (blk) {
		snprintf(fdarg, sizeof(fdarg),
			 "type=vhost-user-blk,id=exp0,node-name=null0,num-queues=1,"
			 "addr.type=fd,addr.str=%d", lfd);
	} else {
		snprintf(fdarg, sizeof(fdarg), "--fd=%d", lfd);
		snprintf(srcarg, sizeof(srcarg), "source=%s", p->dir);
	}
	p->pid = fork();
	if (p->pid == 0) {
		int null = open("/dev/null", O_RDWR);

		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (null >= 0 && !getenv("VHU_RECORD_PEER_LOG")) {
			dup2(null, 1);
			dup2(null, 2);
		}
		if (blk) {
			execl(bin, "qemu-storage-daemon", "--blockdev",
			      "driver=null-co,node-name=null0,size=67108864", "--export", fdarg,
			      (char *)NULL);
		} else {
			execl(bin, "virtiofsd", fdarg, "-o", srcarg, "-o", "cache=none",
			      (char *)NULL);
		}
		_exit(127);
	}
	close(lfd);
	return p->pid > 0 ? 0 : -1;
}

static void
peer_stop(struct peer *p)
{
	if (p->pid > 0) {
		kill(p->pid, SIGKILL);
		while (waitpid(p->pid, NULL, 0) < 0 && errno == EINTR) {
		}
	}
	unlink(p->path);
	rmdir(p->dir);
}

/* Session ------------------------------------------------------------- */

static void
record(struct session *s, bool reply, const void *hdr, const void *body, size_t blen,
       unsigned int nfds)
{
	struct rec_msg *m;

	if (s->n == MAX_MSGS || blen > MAX_MSG_LEN - VHU_HDR_SIZE) {
		fprintf(stderr, "record-corpus: %s: message not recorded\n", s->peer);
		return;
	}
	m = &s->msgs[s->n++];
	m->reply = reply;
	m->nfds = nfds;
	m->len = VHU_HDR_SIZE + blen;
	memcpy(m->b, hdr, VHU_HDR_SIZE);
	if (blen) {
		memcpy(m->b + VHU_HDR_SIZE, body, blen);
	}
}

static int
send_req(struct session *s, uint32_t req, bool need_reply, const void *body, uint32_t len,
	 const int *fds, unsigned int nfds)
{
	struct vhu_hdr hdr = vhu_hdr_request(req, len, need_reply);
	int r;

	record(s, false, &hdr, body, len, nfds);
	r = vhu_endpoint_send_message(s->ep, &hdr, body, len, fds, nfds);
	if (r < 0) {
		fprintf(stderr, "record-corpus: %s: send %s: %s\n", s->peer,
			vhu_req_name(VHU_CHAN_FRONTEND, req), vhu_strerror(r));
	}
	return r;
}

/* The reply to req: recorded as it came; body copied to out, fds to fds_out or closed. */
static int
recv_rep(struct session *s, uint32_t req, void *out, size_t out_len, struct vhu_fds *fds_out)
{
	union {
		uint64_t align;
		uint8_t b[MAX_MSG_LEN];
	} body;
	struct vhu_fds fds;
	struct vhu_hdr hdr;
	int r;

	r = vhu_endpoint_recv_header(s->ep, &hdr, &fds);
	if (r == 0 && hdr.request != req) {
		vhu_fds_close(&fds);
		r = -VHU_EREPLY;
	}
	if (r == 0) {
		r = vhu_endpoint_recv_body_bytes(s->ep, &hdr, body.b, sizeof(body.b), &fds);
	}
	if (r < 0) {
		fprintf(stderr, "record-corpus: %s: reply to %s: %s\n", s->peer,
			vhu_req_name(VHU_CHAN_FRONTEND, req), vhu_strerror(r));
		return r;
	}
	record(s, true, &hdr, body.b, hdr.size, fds.n);
	if (out) {
		memset(out, 0, out_len);
		memcpy(out, body.b, hdr.size < out_len ? hdr.size : out_len);
	}
	if (fds_out) {
		*fds_out = fds;
	} else {
		vhu_fds_close(&fds);
	}
	return (int)hdr.size;
}

static int
call(struct session *s, uint32_t req, const void *body, uint32_t len, void *out, size_t out_len,
     struct vhu_fds *fds_out)
{
	int r = send_req(s, req, false, body, len, NULL, 0);

	return r < 0 ? r : recv_rep(s, req, out, out_len, fds_out);
}

static uint64_t
get_u64(struct session *s, uint32_t req, int *err)
{
	uint64_t v = 0;
	int r = call(s, req, NULL, 0, &v, sizeof(v), NULL);

	if (r < 0) {
		*err = r;
	}
	return v;
}

/* A request QEMU sends with NEED_REPLY when REPLY_ACK is agreed; the ack is recorded. */
static int
acked(struct session *s, uint32_t req, const void *body, uint32_t len, const int *fds,
      unsigned int nfds)
{
	bool ack = s->protocol & (1ull << VHU_PROTOCOL_F_REPLY_ACK);
	int r = send_req(s, req, ack, body, len, fds, nfds);

	if (r < 0 || !ack) {
		return r;
	}
	r = recv_rep(s, req, NULL, 0, NULL);
	return r < 0 ? r : 0;
}

static int
u64_req(struct session *s, uint32_t req, uint64_t v, bool need_ack, const int *fds,
	unsigned int nfds)
{
	return need_ack ? acked(s, req, &v, sizeof(v), fds, nfds)
			: send_req(s, req, false, &v, sizeof(v), fds, nfds);
}

static int
vring_state(struct session *s, uint32_t req, uint32_t idx, uint32_t num, bool need_ack)
{
	struct vhu_vring_state st = { .index = idx, .num = num };

	return need_ack ? acked(s, req, &st, sizeof(st), NULL, 0)
			: send_req(s, req, false, &st, sizeof(st), NULL, 0);
}

static bool
has(const struct session *s, unsigned int bit)
{
	return (s->protocol & (1ull << bit)) != 0;
}

/* Device init, as QEMU's vhost_user_backend_init and vhost_dev_init do it. */
static int
device_init(struct session *s, uint64_t *features, unsigned int *nq, int backend_sv[2],
	    int calls[MAX_QUEUES])
{
	uint64_t offered, queues = 1;
	unsigned int i;
	int err = 0;

	*features = get_u64(s, VHU_REQ_GET_FEATURES, &err);
	if (err || !(*features & (1ull << VHU_F_PROTOCOL_FEATURES))) {
		return err ? err : -EPROTO;
	}
	offered = get_u64(s, VHU_REQ_GET_PROTOCOL_FEATURES, &err);
	s->protocol = offered & WANT_PROTOCOL;
	if (err || u64_req(s, VHU_REQ_SET_PROTOCOL_FEATURES, s->protocol, false, NULL, 0) < 0) {
		return -EPROTO;
	}
	if (has(s, VHU_PROTOCOL_F_MQ)) {
		queues = get_u64(s, VHU_REQ_GET_QUEUE_NUM, &err);
	}
	*nq = queues < MAX_QUEUES ? (unsigned int)queues : MAX_QUEUES;
	if (has(s, VHU_PROTOCOL_F_CONFIGURE_MEM_SLOTS)) {
		get_u64(s, VHU_REQ_GET_MAX_MEM_SLOTS, &err);
	}
	if (!err && has(s, VHU_PROTOCOL_F_BACKEND_REQ)) {
		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, backend_sv) != 0) {
			return -errno;
		}
		err = acked(s, VHU_REQ_SET_BACKEND_REQ_FD, NULL, 0, &backend_sv[1], 1);
		close(backend_sv[1]);
		backend_sv[1] = -1;
	}
	if (err || send_req(s, VHU_REQ_SET_OWNER, false, NULL, 0, NULL, 0) < 0) {
		return -EPROTO;
	}
	get_u64(s, VHU_REQ_GET_FEATURES, &err);
	for (i = 0; !err && i < *nq; i++) {
		err = u64_req(s, VHU_REQ_SET_VRING_CALL, i, false, &calls[i], 1);
	}
	return err < 0 ? err : 0;
}

/* The virtio config space: virtio-blk's first 60 bytes, or virtio-fs's 40. */
static int
get_config(struct session *s, uint32_t len)
{
	union {
		uint64_t align;
		uint8_t b[VHU_CONFIG_HDR_SIZE + 64];
	} req;
	struct vhu_config cfg = { .offset = 0, .size = len, .flags = 0 };

	memset(&req, 0, sizeof(req));
	memcpy(req.b, &cfg, VHU_CONFIG_HDR_SIZE);
	return call(s, VHU_REQ_GET_CONFIG, req.b, VHU_CONFIG_HDR_SIZE + len, NULL, 0, NULL);
}

static int
inflight(struct session *s, unsigned int nq)
{
	struct vhu_inflight inf = { .num_queues = (uint16_t)nq, .queue_size = RING_SIZE };
	struct vhu_fds fds;
	int r;

	r = call(s, VHU_REQ_GET_INFLIGHT_FD, &inf, sizeof(inf), &inf, sizeof(inf), &fds);
	if (r < 0) {
		return r;
	}
	inf.num_queues = (uint16_t)nq;
	inf.queue_size = RING_SIZE;
	r = send_req(s, VHU_REQ_SET_INFLIGHT_FD, false, &inf, sizeof(inf), fds.fd,
		     fds.n > 1 ? 1 : fds.n);
	vhu_fds_close(&fds);
	return r;
}

static int
mem_table(struct session *s, int memfd)
{
	struct {
		uint32_t nregions;
		uint32_t padding;
		struct vhu_mem_region r;
	} t = {
		.nregions = 1,
		.r = { .guest_phys_addr = 0, .size = MEM_SIZE, .user_addr = GUEST_UADDR },
	};

	return acked(s, VHU_REQ_SET_MEM_TABLE, &t, sizeof(t), &memfd, 1);
}

static int
start_queue(struct session *s, unsigned int i, int kick, int call_fd)
{
	uint64_t base = GUEST_UADDR + i * 0x4000ull;
	struct vhu_vring_addr a = {
		.index = i, .desc = base, .avail = base + 0x1000, .used = base + 0x2000,
	};

	if (vring_state(s, VHU_REQ_SET_VRING_NUM, i, RING_SIZE, false) < 0 ||
	    vring_state(s, VHU_REQ_SET_VRING_BASE, i, 0, false) < 0 ||
	    send_req(s, VHU_REQ_SET_VRING_ADDR, false, &a, sizeof(a), NULL, 0) < 0 ||
	    u64_req(s, VHU_REQ_SET_VRING_KICK, i, false, &kick, 1) < 0 ||
	    u64_req(s, VHU_REQ_SET_VRING_CALL, i, false, &call_fd, 1) < 0) {
		return -EPROTO;
	}
	return 0;
}

static int
hotplug_region(struct session *s, int memfd)
{
	struct vhu_single_region reg = {
		.region = {
			.guest_phys_addr = MEM_SIZE, .size = MEM_SIZE,
			.user_addr = GUEST_UADDR + MEM_SIZE,
		},
	};

	if (acked(s, VHU_REQ_ADD_MEM_REG, &reg, sizeof(reg), &memfd, 1) < 0) {
		return -EPROTO;
	}
	return acked(s, VHU_REQ_REM_MEM_REG, &reg, sizeof(reg), NULL, 0);
}

/* Dirty logging as migration starts it: the log area is shared memory. */
static int
log_base(struct session *s, int logfd)
{
	struct vhu_log log = { .mmap_size = LOG_SIZE, .mmap_offset = 0 };

	if (send_req(s, VHU_REQ_SET_LOG_BASE, false, &log, sizeof(log), &logfd, 1) < 0) {
		return -EPROTO;
	}
	return recv_rep(s, VHU_REQ_SET_LOG_BASE, NULL, 0, NULL) < 0 ? -EPROTO : 0;
}

/* Device start and stop, as vhost_dev_start / vhost_dev_stop order them. */
static int
device_run(struct session *s, uint64_t features, unsigned int nq, const int *kicks,
	   const int *calls, int mem0, int mem1, int logfd, uint32_t config_len)
{
	struct vhu_vring_state st;
	unsigned int i;
	int err = 0;

	if (has(s, VHU_PROTOCOL_F_CONFIG) && get_config(s, config_len) < 0) {
		return -EPROTO;
	}
	if (u64_req(s, VHU_REQ_SET_FEATURES, features & WANT_FEATURES, false, NULL, 0) < 0) {
		return -EPROTO;
	}
	if (has(s, VHU_PROTOCOL_F_INFLIGHT_SHMFD) && inflight(s, nq) < 0) {
		return -EPROTO;
	}
	if (mem_table(s, mem0) < 0) {
		return -EPROTO;
	}
	for (i = 0; i < nq; i++) {
		if (start_queue(s, i, kicks[i], calls[i]) < 0) {
			return -EPROTO;
		}
	}
	for (i = 0; i < nq; i++) {
		if (vring_state(s, VHU_REQ_SET_VRING_ENABLE, i, 1, true) < 0) {
			return -EPROTO;
		}
	}
	if (has(s, VHU_PROTOCOL_F_STATUS)) {
		if (u64_req(s, VHU_REQ_SET_STATUS, 0xf, true, NULL, 0) < 0) {
			return -EPROTO;
		}
		get_u64(s, VHU_REQ_GET_STATUS, &err);
	}
	if (!err && has(s, VHU_PROTOCOL_F_CONFIGURE_MEM_SLOTS) && hotplug_region(s, mem1) < 0) {
		return -EPROTO;
	}
	if (!err && has(s, VHU_PROTOCOL_F_LOG_SHMFD) && log_base(s, logfd) < 0) {
		return -EPROTO;
	}
	for (i = 0; !err && i < nq; i++) {
		if (vring_state(s, VHU_REQ_SET_VRING_ENABLE, i, 0, true) < 0) {
			return -EPROTO;
		}
		st.index = i;
		st.num = 0;
		if (call(s, VHU_REQ_GET_VRING_BASE, &st, sizeof(st), NULL, 0, NULL) < 0) {
			return -EPROTO;
		}
		err = u64_req(s, VHU_REQ_SET_VRING_CALL, i | VHU_VRING_NOFD, false, NULL, 0);
	}
	if (err < 0) {
		return err;
	}
	if (has(s, VHU_PROTOCOL_F_RESET_DEVICE) &&
	    send_req(s, VHU_REQ_RESET_DEVICE, false, NULL, 0, NULL, 0) < 0) {
		return -EPROTO;
	}
	/* QEMU's barrier when there is no ack: the answer proves all went before it. */
	get_u64(s, VHU_REQ_GET_FEATURES, &err);
	return err;
}

static int
run_session(struct session *s, bool blk)
{
	int kicks[MAX_QUEUES], calls[MAX_QUEUES], backend_sv[2] = { -1, -1 };
	int mem0 = memfd_create("vhu-guest0", MFD_CLOEXEC);
	int mem1 = memfd_create("vhu-guest1", MFD_CLOEXEC);
	int logfd = memfd_create("vhu-log", MFD_CLOEXEC);
	const struct vhu_rules rules = {
		.channel = VHU_CHAN_FRONTEND, .expect = VHU_EXPECT_REPLY,
	};
	struct peer p;
	uint64_t features = 0;
	unsigned int i, nq = 1;
	int r;

	for (i = 0; i < MAX_QUEUES; i++) {
		kicks[i] = eventfd(0, EFD_CLOEXEC);
		calls[i] = eventfd(0, EFD_CLOEXEC);
	}
	if (mem0 < 0 || mem1 < 0 || logfd < 0 || ftruncate(mem0, MEM_SIZE) != 0 ||
	    ftruncate(mem1, MEM_SIZE) != 0 || ftruncate(logfd, LOG_SIZE) != 0) {
		perror("memfd");
		return -1;
	}
	r = peer_start(&p, blk ? QSD_BIN : VIRTIOFSD_BIN, blk);
	if (r == 0) {
		r = vhu_endpoint_connect(p.path, &rules, &s->ep);
	}
	if (r == 0) {
		r = device_init(s, &features, &nq, backend_sv, calls);
	}
	if (r == 0) {
		r = device_run(s, features, nq, kicks, calls, mem0, mem1, logfd,
			       blk ? 60 : 40);
	}
	vhu_endpoint_destroy(s->ep);
	s->ep = NULL;
	peer_stop(&p);
	for (i = 0; i < MAX_QUEUES; i++) {
		close(kicks[i]);
		close(calls[i]);
	}
	if (backend_sv[0] >= 0) {
		close(backend_sv[0]);
	}
	close(mem0);
	close(mem1);
	close(logfd);
	fprintf(stderr, "record-corpus: %s: %u messages%s\n", s->peer, s->n,
		r < 0 ? " (session ended early)" : "");
	return r;
}

/* Seeds from a session ------------------------------------------------ */

/* One fuzz_wire seed per (code, direction, fd count) seen. */
static void
wire_seeds(const struct session *s)
{
	static uint32_t seen[128][3];
	static unsigned int nseen;
	unsigned int i, j;

	for (i = 0; i < s->n; i++) {
		const struct rec_msg *m = &s->msgs[i];
		struct fz_buf *w = calloc(1, sizeof(*w));
		struct vhu_hdr hdr;
		char name[96];

		memcpy(&hdr, m->b, sizeof(hdr));
		for (j = 0; j < nseen; j++) {
			if (seen[j][0] == hdr.request && seen[j][1] == m->reply &&
			    seen[j][2] == m->nfds) {
				break;
			}
		}
		if (j < nseen || nseen == 128 || !w) {
			free(w);
			continue;
		}
		seen[nseen][0] = hdr.request;
		seen[nseen][1] = m->reply;
		seen[nseen][2] = m->nfds;
		nseen++;
		fz_put_u8(w, FZ_CFG(VHU_CHAN_FRONTEND,
				    m->reply ? VHU_EXPECT_REPLY : VHU_EXPECT_REQUEST,
				    FZ_MAXSEL_DEFAULT, 0));
		fz_put_u8(w, (uint8_t)m->nfds);
		fz_put_u8(w, 0);
		fz_put_u8(w, 0);
		fz_put(w, m->b, m->len);
		snprintf(name, sizeof(name), "%s-%02u-%s-%s", s->peer, i,
			 vhu_req_name(VHU_CHAN_FRONTEND, hdr.request), m->reply ? "rep" : "req");
		write_seed("fuzz_wire", name, w);
		free(w);
	}
}

enum split {
	SPLIT_MESSAGE,		/* one sendmsg per message (QEMU, vhu) */
	SPLIT_HEADER_BODY,	/* header + fds, then the body (libvhost-user) */
	SPLIT_COALESCED,	/* as a stream read sees them: an fd-carrying message ends it */
};

/* The plan and stream of one direction of a session. */
static void
stream_of(const struct session *s, bool replies, enum split split, struct fz_buf *plan,
	  struct fz_buf *stream)
{
	struct fz_buf *entries = calloc(1, sizeof(*entries));
	unsigned int i, n = 0;
	size_t pending = 0;

	if (!entries) {
		plan->overflow = 1;
		return;
	}
	for (i = 0; i < s->n; i++) {
		const struct rec_msg *m = &s->msgs[i];

		if (m->reply != replies) {
			continue;
		}
		fz_put(stream, m->b, m->len);
		if (split == SPLIT_COALESCED) {
			pending += m->len;
			if (m->nfds > 0 || pending > 200) {
				fz_put_chunk(entries, pending, m->nfds);
				pending = 0;
				n++;
			}
		} else if (split == SPLIT_HEADER_BODY && m->len > VHU_HDR_SIZE) {
			fz_put_chunk(entries, VHU_HDR_SIZE, m->nfds);
			fz_put_chunk(entries, m->len - VHU_HDR_SIZE, 0);
			n += 2;
		} else {
			fz_put_chunk(entries, m->len, m->nfds);
			n++;
		}
	}
	if (n > FZ_MAX_CHUNKS) {
		fprintf(stderr, "record-corpus: %s: %u chunks, %u kept\n", s->peer, n,
			FZ_MAX_CHUNKS);
		n = FZ_MAX_CHUNKS;
	}
	fz_put_u8(plan, (uint8_t)n);
	fz_put(plan, entries->b, (size_t)n * 3);
	free(entries);
}

static void
stream_seed(const struct session *s, const char *target, bool replies, enum split split,
	    const uint8_t *ops, size_t nops, const char *suffix)
{
	struct fz_buf *w = calloc(1, sizeof(*w));
	struct fz_buf *stream = calloc(1, sizeof(*stream));
	uint8_t expect = replies ? VHU_EXPECT_REPLY : VHU_EXPECT_REQUEST;
	char name[96];

	if (!w || !stream) {
		free(w);
		free(stream);
		return;
	}
	fz_put_u8(w, FZ_CFG(VHU_CHAN_FRONTEND, expect, FZ_MAXSEL_DEFAULT, 0));
	if (strcmp(target, "fuzz_framer") == 0) {
		fz_put_u8(w, 0);	/* never stop */
		stream_of(s, replies, split, w, stream);
	} else {
		stream_of(s, replies, split, w, stream);
		fz_put_u8(w, (uint8_t)(nops / 2));
		fz_put(w, ops, nops);
	}
	fz_put(w, stream->b, stream->n);
	w->overflow |= stream->overflow;
	snprintf(name, sizeof(name), "%s-%s%s", s->peer, replies ? "replies" : "requests", suffix);
	write_seed(target, name, w);
	free(stream);
	free(w);
}

/* qsd gives every kind of seed; virtiofsd (two queues) adds a request stream. */
static void
session_seeds(const struct session *s, bool all)
{
	/* body_into_buf 4096, then recv_payload_into_buf body 8 / payload 4096, split. */
	static const uint8_t mixed_ops[] = { 2, 0xcb, 3, 0xe2 };

	wire_seeds(s);
	stream_seed(s, "fuzz_framer", false, SPLIT_MESSAGE, NULL, 0, "");
	if (!all) {
		return;
	}
	stream_seed(s, "fuzz_framer", true, SPLIT_HEADER_BODY, NULL, 0, "");
	stream_seed(s, "fuzz_framer", false, SPLIT_COALESCED, NULL, 0, "-coalesced");
	stream_seed(s, "fuzz_endpoint", false, SPLIT_MESSAGE, NULL, 0, "");
	stream_seed(s, "fuzz_endpoint", true, SPLIT_HEADER_BODY, NULL, 0, "");
	stream_seed(s, "fuzz_endpoint", false, SPLIT_MESSAGE, mixed_ops, sizeof(mixed_ops),
		    "-mixed-ops");
}

/* Hand-made edge cases ------------------------------------------------ */

static void
put_hdr(struct fz_buf *w, uint32_t req, uint32_t flags, uint32_t size)
{
	struct vhu_hdr h = { req, flags, size };

	fz_put(w, &h, sizeof(h));
}

static void
put_u64(struct fz_buf *w, uint64_t v)
{
	fz_put(w, &v, sizeof(v));
}

static void
wire_edge(const char *name, uint8_t cfg, uint8_t nfds, uint32_t req, uint32_t flags,
	  uint32_t size, const void *body, size_t blen)
{
	struct fz_buf *w = calloc(1, sizeof(*w));

	if (!w) {
		return;
	}
	fz_put_u8(w, cfg);
	fz_put_u8(w, nfds);
	fz_put_u8(w, VHU_PROTOCOL_F_REPLY_ACK);
	fz_put_u8(w, VHU_F_VERSION_1);
	put_hdr(w, req, flags, size);
	fz_put(w, body, blen);
	write_seed("fuzz_wire", name, w);
	free(w);
}

static void
wire_edges(void)
{
	const uint8_t req = FZ_CFG(VHU_CHAN_FRONTEND, VHU_EXPECT_REQUEST, 0, 0);
	const uint8_t rep = FZ_CFG(VHU_CHAN_FRONTEND, VHU_EXPECT_REPLY, 0, 0);
	const uint8_t either = FZ_CFG(VHU_CHAN_FRONTEND, VHU_EXPECT_EITHER, 0, 0);
	const uint8_t breq = FZ_CFG(VHU_CHAN_BACKEND, VHU_EXPECT_REQUEST, 0, 0);
	uint8_t big[VHU_MEM_TABLE_SIZE(EDGE_REGIONS)];
	struct vhu_mem_region *regs = (struct vhu_mem_region *)(big + 8);
	struct vhu_vring_addr addr = { .index = 0, .desc = 0x1008, .avail = 0x2000 };
	struct vhu_config cfg = { .offset = 0xff0, .size = 0x20 };
	struct vhu_vring_area area = { .u64 = VHU_VRING_NOFD, .size = 4096 };
	struct vhu_shmem_map map = { .shmid = 0, .len = 4096, .flags = 1 };
	struct vhu_inflight inf = { .mmap_size = 4096, .num_queues = 1, .queue_size = 128 };
	uint8_t cfgbody[VHU_CONFIG_HDR_SIZE + 0x20] = { 0 };
	uint32_t i;

	wire_edge("edge-version0", req, 0, VHU_REQ_GET_FEATURES, 0, 0, NULL, 0);
	wire_edge("edge-reserved-flag", req, 0, VHU_REQ_GET_FEATURES, 0x11, 0, NULL, 0);
	wire_edge("edge-unknown-code", req, 0, VHU_REQ_MAX + 1, 1, 0, NULL, 0);
	wire_edge("edge-code0", req, 0, 0, 1, 0, NULL, 0);
	wire_edge("edge-oversized", req, 0, VHU_REQ_SET_CONFIG, 1, VHU_DEFAULT_MAX_SIZE + 1, NULL,
		  0);
	memset(big, 0, sizeof(big));
	big[0] = EDGE_REGIONS;
	for (i = 0; i < EDGE_REGIONS; i++) {
		regs[i].guest_phys_addr = (uint64_t)i << 20;
		regs[i].size = 1u << 20;
		regs[i].user_addr = GUEST_UADDR + ((uint64_t)i << 20);
	}
	wire_edge("edge-mem-table-8", req, EDGE_REGIONS, VHU_REQ_SET_MEM_TABLE, 1,
		  sizeof(big), big, sizeof(big));
	big[0] = 2;
	regs[1].guest_phys_addr = 0x80000;	/* overlaps region 0 */
	wire_edge("edge-mem-table-overlap", req, 2, VHU_REQ_SET_MEM_TABLE, 1,
		  VHU_MEM_TABLE_SIZE(2), big, VHU_MEM_TABLE_SIZE(2));
	memcpy(cfgbody, &cfg, VHU_CONFIG_HDR_SIZE);
	wire_edge("edge-config-bounds", req, 0, VHU_REQ_SET_CONFIG, 1, sizeof(cfgbody), cfgbody,
		  sizeof(cfgbody));
	wire_edge("edge-vring-addr-misaligned", req, 0, VHU_REQ_SET_VRING_ADDR, 1, sizeof(addr),
		  &addr, sizeof(addr));
	wire_edge("edge-get-config-empty-reply", rep, 0, VHU_REQ_GET_CONFIG,
		  VHU_VERSION | VHU_FLAG_REPLY, 0, NULL, 0);
	wire_edge("edge-inflight-reply-fd", rep, 1, VHU_REQ_GET_INFLIGHT_FD,
		  VHU_VERSION | VHU_FLAG_REPLY, sizeof(inf), &inf, sizeof(inf));
	wire_edge("edge-either-ack", either, 0, VHU_REQ_SET_MEM_TABLE,
		  VHU_VERSION | VHU_FLAG_REPLY, 8, "\0\0\0\0\0\0\0\0", 8);
	wire_edge("edge-backend-notifier-nofd", breq, 0, VHU_BREQ_VRING_HOST_NOTIFIER_MSG,
		  VHU_VERSION | VHU_FLAG_NEED_REPLY, sizeof(area), &area, sizeof(area));
	wire_edge("edge-backend-shmem-map", breq, 1, VHU_BREQ_SHMEM_MAP, 1, sizeof(map), &map,
		  sizeof(map));
}

/* A framer or endpoint seed from (len, nfds) chunks over a stream. */
static void
stream_edge(const char *target, const char *name, uint8_t cfg, const uint8_t *ops,
	    size_t nops, const size_t *lens, const unsigned int *nfds, unsigned int nchunks,
	    const struct fz_buf *stream)
{
	struct fz_buf *w = calloc(1, sizeof(*w));
	unsigned int i;

	if (!w) {
		return;
	}
	fz_put_u8(w, cfg);
	if (strcmp(target, "fuzz_framer") == 0) {
		fz_put_u8(w, 0);
	}
	fz_put_u8(w, (uint8_t)nchunks);
	for (i = 0; i < nchunks; i++) {
		fz_put_chunk(w, lens[i], nfds[i]);
	}
	if (strcmp(target, "fuzz_endpoint") == 0) {
		fz_put_u8(w, (uint8_t)(nops / 2));
		fz_put(w, ops, nops);
	}
	fz_put(w, stream->b, stream->n);
	write_seed(target, name, w);
	free(w);
}

static void
stream_edges(void)
{
	const uint8_t req = FZ_CFG(VHU_CHAN_FRONTEND, VHU_EXPECT_REQUEST, 0, 0);
	struct fz_buf *s = calloc(1, sizeof(*s));
	struct vhu_mem_region r = { .size = MEM_SIZE, .user_addr = GUEST_UADDR };
	uint8_t cfgbody[VHU_CONFIG_HDR_SIZE + 60] = { 0 };
	struct vhu_config cfg = { .offset = 0, .size = 60 };
	static const uint8_t payload_ops[] = { 3, 0x93, 3 | 0x10, 0x93 };
	size_t lens[32];
	unsigned int nfds[32], i;

	if (!s) {
		return;
	}
	/* SET_MEM_TABLE whose body brings an fd of its own. */
	put_hdr(s, VHU_REQ_SET_MEM_TABLE, 1, VHU_MEM_TABLE_SIZE(1));
	put_u64(s, 1);
	fz_put(s, &r, sizeof(r));
	lens[0] = VHU_HDR_SIZE;
	nfds[0] = 1;
	lens[1] = VHU_MEM_TABLE_SIZE(1);
	nfds[1] = 1;
	stream_edge("fuzz_framer", "edge-fds-on-body", req, NULL, 0, lens, nfds, 2, s);
	stream_edge("fuzz_endpoint", "edge-fds-on-body", req, NULL, 0, lens, nfds, 2, s);

	/* SET_VRING_KICK with its fd, then GET_FEATURES, one byte per chunk. */
	s->n = 0;
	put_hdr(s, VHU_REQ_SET_VRING_KICK, 1, 8);
	put_u64(s, 0);
	put_hdr(s, VHU_REQ_GET_FEATURES, 1, 0);
	for (i = 0; i < 32; i++) {
		lens[i] = 1;
		nfds[i] = i == 0;
	}
	stream_edge("fuzz_framer", "edge-byte-by-byte", req, NULL, 0, lens, nfds, 32, s);

	/* The same with 40 fds: more than one receive holds (MSG_CTRUNC). */
	lens[0] = 20;
	nfds[0] = 40;
	stream_edge("fuzz_endpoint", "edge-ctrunc", req, NULL, 0, lens, nfds, 1, s);

	/* A limit of 12 bytes: the kick's 8-byte body is fine, a config is not. */
	lens[0] = 20;
	nfds[0] = 1;
	memcpy(cfgbody, &cfg, VHU_CONFIG_HDR_SIZE);
	put_hdr(s, VHU_REQ_SET_CONFIG, 1, sizeof(cfgbody));
	fz_put(s, cfgbody, sizeof(cfgbody));
	stream_edge("fuzz_framer", "edge-max-size-12",
		    FZ_CFG(VHU_CHAN_FRONTEND, VHU_EXPECT_REQUEST, 1, 0), NULL, 0, lens, nfds, 1,
		    s);

	/* GET_CONFIG into body + payload buffers, apart and adjacent; then cut short. */
	s->n = 0;
	for (i = 0; i < 2; i++) {
		put_hdr(s, VHU_REQ_GET_CONFIG, 1, sizeof(cfgbody));
		fz_put(s, cfgbody, sizeof(cfgbody));
	}
	put_hdr(s, VHU_REQ_GET_CONFIG, 1, sizeof(cfgbody));
	fz_put(s, cfgbody, 20);
	stream_edge("fuzz_endpoint", "edge-payload-partial", req, payload_ops,
		    sizeof(payload_ops), lens, nfds, 0, s);
	free(s);
}

int
main(int argc, char **argv)
{
	static struct session qsd = { .peer = "qsd" };
	static struct session vfs = { .peer = "virtiofsd" };
	int bad = 0;

	if (argc != 2) {
		fprintf(stderr, "usage: %s OUTDIR\n", argv[0]);
		return 2;
	}
	outdir = argv[1];
	if (mkdir(outdir, 0755) != 0 && errno != EEXIST) {
		perror(outdir);
		return 1;
	}
	signal(SIGPIPE, SIG_IGN);
	bad |= run_session(&qsd, true) < 0;
	bad |= run_session(&vfs, false) < 0;
	session_seeds(&qsd, true);
	session_seeds(&vfs, false);
	wire_edges();
	stream_edges();
	fprintf(stderr, "record-corpus: %u files in %s\n", files_written, outdir);
	return bad;
}
