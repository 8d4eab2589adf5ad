/* SPDX-License-Identifier: MIT */
/*
 * The ring: setup, the poll/wait loop, dispatch of completions to their
 * slots, work deferred to the end of a reaping pass (re-arms after
 * -ENOBUFS, freeing closed connections and listeners), and the provided
 * buffer ring of stream receives.
 *
 * One io_uring_enter per poll()/wait() carries the SQEs queued since the
 * last one and fetches completions; SQEs that callbacks queue go out with
 * the next poll()/wait(), so the application calls one of them in its loop.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

#define DEFAULT_SQ	256u
#define DEFAULT_CONNS	1024u
#define CQ_SLACK	64u	/* listeners: accepts, their timers and cancels */
#define SQE_TRIES	64

/*
 * The ring being driven on this thread (reactors: which ring a callback
 * runs on). Initial-exec: read on every poll(), it must not cost a
 * __tls_get_addr call (one pointer of the static TLS surplus, which a
 * dlopen()ed libvhu gets too).
 */
static __thread struct vhu_ring *current __attribute__((tls_model("initial-exec")));

struct vhu_ring *
vhu__ring_current(void)
{
	return current;
}

uint64_t
vhu__now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static unsigned int
pow2_at_least(uint64_t n)
{
	uint64_t v = 1;

	while (v < n && v < (1u << 30)) {
		v <<= 1;
	}
	return (unsigned int)v;
}

/* ------------------------------------------------------------------ */
/* Creation                                                            */

/*
 * A DEFER_TASKRUN or COOP_TASKRUN ring without TASKRUN_FLAG (a borrowed
 * one) gives no sign of completions waiting to be posted: poll() must
 * enter every time.
 */
static bool
enter_to_reap(unsigned int setup_flags)
{
	return (setup_flags & (IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_COOP_TASKRUN)) &&
	       !(setup_flags & IORING_SETUP_TASKRUN_FLAG);
}

static int
setup_own(struct vhu_ring *r, const struct vhu_ring_opts *o)
{
	/*
	 * Flags tried in order; -EINVAL means "this kernel lacks one", so the
	 * next, older set is tried. DEFER_TASKRUN posts completions in batches
	 * when the ring enters, the cheapest way to run task work; with
	 * TASKRUN_FLAG the kernel also sets IORING_SQ_TASKRUN whenever such
	 * work is waiting (and again when an enter leaves some for later), so
	 * a spinning poll() enters only when there is something to post.
	 * COOP_TASKRUN is the fall-back: work queued without an IPI to the
	 * ring's CPU, flagged the same way.
	 */
	static const unsigned int normal[] = {
		IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_TASKRUN_FLAG,
		IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
		IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG,
		IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG,
		0,
	};
	/* Spinning: never a DEFER_TASKRUN ring that cannot say when to enter. */
	static const unsigned int spin[] = {
		IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_TASKRUN_FLAG,
		IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG,
		IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG,
		0,
	};
	const unsigned int *tries = o->busy_poll ? spin : normal;
	size_t ntries = o->busy_poll ? sizeof(spin) / sizeof(spin[0])
				     : sizeof(normal) / sizeof(normal[0]);
	unsigned int sq = o->sq_entries ? o->sq_entries : DEFAULT_SQ;
	/*
	 * Per connection at most one receive (whose multishot CQEs are bounded
	 * by the provided buffers), one send and one cancel are in flight; per
	 * application op one operation and, at worst, one cancel.
	 */
	unsigned int cq = pow2_at_least(4ull * r->max_conns + r->nbufs + CQ_SLACK +
					2ull * r->max_ops);
	int ret = -EINVAL;
	size_t i;

	for (i = 0; i < ntries; i++) {
		struct io_uring_params p;

		memset(&p, 0, sizeof(p));
		p.flags = tries[i] | IORING_SETUP_CQSIZE | IORING_SETUP_CLAMP |
			  IORING_SETUP_SUBMIT_ALL;
		p.cq_entries = cq;
		ret = io_uring_queue_init_params(sq, &r->own, &p);
		if (ret != -EINVAL) {
			break;
		}
	}
	if (ret == -EINVAL) {
		struct io_uring_params p;

		/* A kernel too old for SUBMIT_ALL also lacks buffer rings; the probe says so. */
		memset(&p, 0, sizeof(p));
		ret = io_uring_queue_init_params(sq, &r->own, &p);
		i = ntries - 1;
	}
	if (ret < 0) {
		return ret;
	}
	r->uring = &r->own;
	r->setup_flags = r->own.flags;
	r->enter_to_reap = enter_to_reap(r->own.flags);
	return 0;
}

/* A buffer-ring registration that is undone at once: proves the kernel has them. */
static int
trial_buf_ring(struct io_uring *u)
{
	struct io_uring_buf_reg reg;
	size_t sz = (size_t)sysconf(_SC_PAGESIZE);
	void *mem;
	int ret;

	mem = mmap(NULL, sz, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED) {
		return -ENOMEM;
	}
	memset(&reg, 0, sizeof(reg));
	reg.ring_addr = (uint64_t)(uintptr_t)mem;
	reg.ring_entries = 8;
	reg.bgid = VHU_BGID;
	ret = io_uring_register_buf_ring(u, &reg, 0);
	if (ret == 0) {
		io_uring_unregister_buf_ring(u, VHU_BGID);
	}
	munmap(mem, sz);
	if (ret == -EINVAL || ret == -EOPNOTSUPP || ret == -ENOSYS) {
		return -EOPNOTSUPP;
	}
	return ret;
}

static int
probe(struct io_uring *u)
{
	static const int needed[] = {
		IORING_OP_SENDMSG, IORING_OP_RECVMSG, IORING_OP_ASYNC_CANCEL, IORING_OP_ACCEPT,
	};
	struct io_uring_probe *p = io_uring_get_probe_ring(u);
	size_t i;

	if (!p) {
		return -EOPNOTSUPP;
	}
	for (i = 0; i < sizeof(needed) / sizeof(needed[0]); i++) {
		if (!io_uring_opcode_supported(p, needed[i])) {
			io_uring_free_probe(p);
			return -EOPNOTSUPP;
		}
	}
	io_uring_free_probe(p);
	/* Buffer rings (5.19) postdate cmsg over io_uring (5.12): this covers fds too. */
	return trial_buf_ring(u);
}

int
vhu_ring_create(const struct vhu_ring_opts *opts, struct vhu_ring **out)
{
	struct vhu_ring_opts o;
	struct vhu_ring *r;
	int ret;

	if (!out) {
		return -EINVAL;
	}
	*out = NULL;
	memset(&o, 0, sizeof(o));
	if (opts) {
		o = *opts;
	}
	r = calloc(1, sizeof(*r));
	if (!r) {
		return -ENOMEM;
	}
	r->max_conns = o.max_conns ? o.max_conns : DEFAULT_CONNS;
	r->wait_spin_ns = (uint64_t)o.wait_spin_us * 1000u;
	r->nbufs = o.stream_bufs ? o.stream_bufs : VHU_NBUFS;
	r->buf_stride = o.stream_buf_size ? o.stream_buf_size : VHU_BUF_STRIDE;
	if (r->nbufs < VHU_NBUFS_MIN || r->nbufs > VHU_NBUFS_MAX ||
	    (r->nbufs & (r->nbufs - 1)) != 0 || r->buf_stride < VHU_BUF_STRIDE_MIN ||
	    r->buf_stride > VHU_BUF_STRIDE_MAX || r->buf_stride % 8 != 0 ||
	    (uint64_t)r->nbufs * r->buf_stride > SIZE_MAX / 2) {
		free(r);
		return -EINVAL;
	}
	r->foreign_cqe = o.foreign_cqe;
	r->foreign_ctx = o.foreign_ctx;
	vlist_init(&r->conns);
	vlist_init(&r->listeners);
	vlist_init(&r->reap);
	vlist_init(&r->lreap);
	vlist_init(&r->rearm);
	vlist_init(&r->flush);
	vlist_init(&r->deadlines);
	vlist_init(&r->app);
	vlist_init(&r->dev_calls);
	vhu__xring_init(r);
	vlist_init(&r->poll.queues);
	r->max_ops = o.max_ops;
	if (o.borrow) {
		r->uring = o.borrow;
		r->borrowed = true;
		r->setup_flags = o.borrow->flags;
		r->enter_to_reap = enter_to_reap(o.borrow->flags);
	} else {
		ret = setup_own(r, &o);
		if (ret < 0) {
			free(r);
			return ret;
		}
	}
	ret = probe(r->uring);
	if (ret < 0) {
		if (!r->borrowed) {
			io_uring_queue_exit(&r->own);
		}
		free(r);
		return ret;
	}
	*out = r;
	return 0;
}

const char *
vhu_ring_error_hint(int err)
{
	switch (err < 0 ? -err : err) {
	case ENOSYS:
		return "the kernel has no io_uring (built without CONFIG_IO_URING, older than 5.1, "
		       "or a seccomp filter answers ENOSYS); use the blocking endpoint instead";
	case EPERM:
		return "io_uring is disabled: sysctl kernel.io_uring_disabled is set, or a seccomp "
		       "filter (e.g. a container runtime's default profile) forbids io_uring_setup";
	case EOPNOTSUPP:
		return "the kernel's io_uring lacks what vhu needs: SENDMSG/RECVMSG with fds "
		       "(5.12) and provided buffer rings (5.19); upgrade the kernel";
	case ENOMEM:
		return "not enough memory for the ring: lower max_conns or sq_entries, or raise "
		       "RLIMIT_MEMLOCK (kernels before 5.12 charge io_uring memory to it)";
	case EMFILE:
	case ENFILE:
		return "out of file descriptors: raise RLIMIT_NOFILE";
	case EINVAL:
		return "invalid ring options, or a borrowed ring set up with incompatible flags";
	case EEXIST:
		return "the borrowed ring already uses vhu's provided-buffer group id";
	default:
		return "unexpected error from io_uring_setup; see vhu_strerror()";
	}
}

/* ------------------------------------------------------------------ */
/* Submission                                                          */

/* Never drops: a full SQ is submitted, then the SQE is taken again. */
struct io_uring_sqe *
vhu__ring_sqe(struct vhu_ring *r)
{
	int i;

	for (i = 0; i < SQE_TRIES; i++) {
		struct io_uring_sqe *sqe = io_uring_get_sqe(r->uring);
		int n;

		if (sqe) {
			return sqe;
		}
		n = io_uring_submit(r->uring);
		r->st.enters++;
		if (n > 0) {
			r->st.sqes += (uint64_t)n;
		}
	}
	return NULL;
}

void
vhu__op_begin(struct vhu_ring *r, unsigned int *owner_ops, struct slot *s,
	      struct io_uring_sqe *sqe)
{
	io_uring_sqe_set_data64(sqe, vhu__tag(s));
	s->busy = 1;
	(*owner_ops)++;
	r->ops++;
}

void
vhu__op_end(struct vhu_ring *r, unsigned int *owner_ops, struct slot *s)
{
	s->busy = 0;
	(*owner_ops)--;
	r->ops--;
}

/* ------------------------------------------------------------------ */
/* Provided buffers                                                    */

static size_t
br_bytes(const struct vhu_ring *r)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	size_t sz = r->nbufs * sizeof(struct io_uring_buf);

	return (sz + page - 1) / page * page;
}

int
vhu__ring_bufs_setup(struct vhu_ring *r)
{
	struct io_uring_buf_reg reg;
	size_t bsz = (size_t)r->nbufs * r->buf_stride;
	void *ring_mem, *bufs;
	unsigned int i;
	int ret;

	if (r->br) {
		return 0;
	}
	/* liburing 2.3 has no io_uring_setup_buf_ring: map page-aligned memory ourselves. */
	ring_mem = mmap(NULL, br_bytes(r), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
			-1, 0);
	if (ring_mem == MAP_FAILED) {
		return -ENOMEM;
	}
	bufs = mmap(NULL, bsz, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (bufs == MAP_FAILED) {
		munmap(ring_mem, br_bytes(r));
		return -ENOMEM;
	}
	memset(&reg, 0, sizeof(reg));
	reg.ring_addr = (uint64_t)(uintptr_t)ring_mem;
	reg.ring_entries = r->nbufs;
	reg.bgid = VHU_BGID;
	ret = io_uring_register_buf_ring(r->uring, &reg, 0);
	if (ret < 0) {
		munmap(bufs, bsz);
		munmap(ring_mem, br_bytes(r));
		return ret;
	}
	r->br = ring_mem;
	r->bufs = bufs;
	io_uring_buf_ring_init(r->br);
	for (i = 0; i < r->nbufs; i++) {
		io_uring_buf_ring_add(r->br, r->bufs + (size_t)i * r->buf_stride + VHU_BUF_SKEW,
				      r->buf_stride - VHU_BUF_SKEW, (unsigned short)i,
				      io_uring_buf_ring_mask(r->nbufs), (int)i);
	}
	io_uring_buf_ring_advance(r->br, r->nbufs);
	return 0;
}

static void
bufs_teardown(struct vhu_ring *r)
{
	if (!r->br) {
		return;
	}
	io_uring_unregister_buf_ring(r->uring, VHU_BGID);
	munmap(r->bufs, (size_t)r->nbufs * r->buf_stride);
	munmap(r->br, br_bytes(r));
	r->br = NULL;
	r->bufs = NULL;
}

/* The start of buffer bid's slot; the kernel writes from VHU_BUF_SKEW on. */
uint8_t *
vhu__ring_buf(struct vhu_ring *r, unsigned int bid)
{
	if (!r->bufs || bid >= r->nbufs) {
		return NULL;
	}
	return r->bufs + (size_t)bid * r->buf_stride;
}

void
vhu__ring_buf_put(struct vhu_ring *r, unsigned int bid)
{
	io_uring_buf_ring_add(r->br, vhu__ring_buf(r, bid) + VHU_BUF_SKEW,
			      r->buf_stride - VHU_BUF_SKEW, (unsigned short)bid,
			      io_uring_buf_ring_mask(r->nbufs), 0);
	io_uring_buf_ring_advance(r->br, 1);
}

/* ------------------------------------------------------------------ */
/* Completions                                                         */

static void
dispatch(struct vhu_ring *r, struct io_uring_cqe *cqe)
{
	struct slot *s = vhu__untag(cqe->user_data);
	struct vhu_conn *c = NULL;

	r->st.cqes++;
	if (vhu__is_xsend(cqe->user_data)) {
		vhu__xring_sent(r, cqe->user_data, cqe->res);
		return;
	}
	switch (s->kind) {
	case SLOT_RECV:
		c = vhu_container_of(s, struct vhu_conn, rx.s);
		vhu__recv_complete(c, cqe);
		break;
	case SLOT_SEND:
		c = vhu_container_of(s, struct vhu_conn, tx.s);
		vhu__send_complete(c, cqe);
		break;
	case SLOT_CANCEL:
		c = vhu_container_of(s, struct vhu_conn, cancel);
		vhu__conn_cancel_complete(c, cqe);
		break;
	case SLOT_ACCEPT:
		vhu__ulistener_accept_complete(vhu_container_of(s, struct vhu_ulistener, accept),
					       cqe);
		break;
	case SLOT_ACCEPT_CANCEL:
		vhu__ulistener_cancel_complete(vhu_container_of(s, struct vhu_ulistener, cancel),
					       cqe);
		break;
	case SLOT_ACCEPT_TIMER:
		vhu__ulistener_timer_complete(vhu_container_of(s, struct vhu_ulistener, timer),
					      cqe);
		break;
	case SLOT_APP:
	case SLOT_APP_CANCEL:
		vhu__op_complete(r, s, cqe);
		break;
	case SLOT_XWAKE:
		vhu__xring_drain(r);
		break;
	case SLOT_TIMER_CANCEL:
		vhu__ulistener_tcancel_complete(vhu_container_of(s, struct vhu_ulistener,
								 tcancel),
						cqe);
		break;
	default:
		break;
	}
	if (c) {
		vhu__conn_settle(c);
	}
}

static void
check_deadlines(struct vhu_ring *r)
{
	struct vlist *n, *next;
	uint64_t now;

	if (vlist_empty(&r->deadlines)) {
		return;
	}
	now = vhu__now_ns();
	for (n = r->deadlines.next; n != &r->deadlines; n = next) {
		struct vhu_conn *c = vhu_container_of(n, struct vhu_conn, dl_link);

		next = n->next;
		if (c->deadline_ns <= now) {
			vhu_conn_close_reason(c, -ETIMEDOUT);
		}
	}
}

static void
flush_sends(struct vhu_ring *r)
{
	while (!vlist_empty(&r->flush)) {
		struct vhu_conn *c = vhu_container_of(r->flush.next, struct vhu_conn, flush_link);

		vlist_del(&c->flush_link);
		vhu__send_flush(c);
	}
	r->unflushed = 0;
}

void
vhu__ring_flush_early(struct vhu_ring *r)
{
	int n;

	flush_sends(r);
	if (io_uring_sq_ready(r->uring) == 0) {
		return;		/* each had a send in flight already */
	}
	n = io_uring_submit(r->uring);
	r->st.enters++;
	if (n > 0) {
		r->st.sqes += (uint64_t)n;
	}
}

void
vhu__ring_deferred(struct vhu_ring *r)
{
	while (!vlist_empty(&r->rearm) || !vlist_empty(&r->flush) || !vlist_empty(&r->reap) ||
	       !vlist_empty(&r->lreap) || !vlist_empty(&r->dev_calls)) {
		/* Device queues that pushed completions this pass: one call each (device_queue.c). */
		vhu__dev_pass_end(r);
		/* Replies before receives: a reply must not wait behind a re-armed read. */
		flush_sends(r);
		while (!vlist_empty(&r->rearm)) {
			struct vhu_conn *c = vhu_container_of(r->rearm.next, struct vhu_conn,
							      rearm_link);

			vlist_del(&c->rearm_link);
			vhu__recv_pump(c);
		}
		while (!vlist_empty(&r->reap)) {
			struct vhu_conn *c = vhu_container_of(r->reap.next, struct vhu_conn,
							      reap_link);

			vlist_del(&c->reap_link);
			vhu__conn_finish(c);
		}
		while (!vlist_empty(&r->lreap)) {
			struct vhu_ulistener *l = vhu_container_of(r->lreap.next,
								   struct vhu_ulistener,
								   reap_link);

			vlist_del(&l->reap_link);
			vhu__ulistener_free(l);
		}
	}
	/* A pass whose connections closed before their flush leaves no count behind. */
	r->unflushed = 0;
}

static int
reap(struct vhu_ring *r)
{
	struct io_uring *u = r->uring;
	struct io_uring_cqe *cqe;
	unsigned int head, seen = 0, mine = 0;
	/* Handlers may cause inline completions; bound one pass to one CQ's worth. */
	unsigned int limit = u->cq.ring_entries;
	struct vhu_ring *outer = current;

	current = r;
	r->depth++;
	io_uring_for_each_cqe(u, head, cqe) {
		if (vhu__is_tag(cqe->user_data)) {
			dispatch(r, cqe);
			mine++;
		} else if (r->foreign_cqe) {
			r->foreign_cqe(cqe, r->foreign_ctx);
		}
		if (++seen == limit) {
			break;
		}
	}
	io_uring_cq_advance(u, seen);
	r->depth--;
	check_deadlines(r);
	if (r->depth == 0) {
		vhu__ring_deferred(r);
	}
	current = outer;
	return (int)mine;
}

/*
 * Work queued outside a pass (vhu_conn_resume_recv, a close) runs first;
 * its SQEs go with this call. \return the messages it delivered plus the
 * connections it closed (capped): progress, so the caller must not then
 * block.
 */
static int
run_queued(struct vhu_ring *r)
{
	uint64_t msgs = r->st.msgs_in;
	unsigned int conns = r->nconns;
	struct vhu_ring *outer = current;
	uint64_t done;

	if (r->depth > 0) {
		return 0;
	}
	current = r;
	vhu__ring_deferred(r);
	current = outer;
	done = (r->st.msgs_in - msgs) + (conns - r->nconns);
	return done > 1024 ? 1024 : (int)done;
}

static bool
transient(int ret)
{
	return ret == -EINTR || ret == -EAGAIN || ret == -EBUSY || ret == -ETIME;
}

int
vhu_ring_poll(struct vhu_ring *r)
{
	struct io_uring *u = r->uring;
	unsigned int pending, kflags;
	int early = run_queued(r), ret;

	/* Polled device queues first: the I/O their requests start goes out with this enter. */
	if (r->poll.n > 0) {
		early += vhu__dev_poll_pass(r);
	}
	pending = io_uring_sq_ready(u);
	kflags = IO_URING_READ_ONCE(*u->sq.kflags);

	/*
	 * An idle poll is a read of the SQ flags and the CQ tail: we enter only
	 * to submit, when the kernel flags task work (completions to post) or
	 * an overflowed CQ, or on a ring that cannot flag its task work.
	 */
	if (r->enter_to_reap || pending ||
	    (kflags & (IORING_SQ_CQ_OVERFLOW | IORING_SQ_TASKRUN))) {
		ret = io_uring_submit_and_get_events(u);
		r->st.enters++;
		if (ret > 0) {
			r->st.sqes += (uint64_t)ret;
		} else if (ret < 0 && !transient(ret)) {
			return ret;
		}
	}
	ret = reap(r);
	return ret < 0 ? ret : ret + early;
}

/* Milliseconds until the nearest stalled-message deadline, or -1. */
static long long
deadline_ms(struct vhu_ring *r)
{
	struct vlist *n;
	uint64_t now, first = UINT64_MAX;

	if (vlist_empty(&r->deadlines)) {
		return -1;
	}
	for (n = r->deadlines.next; n != &r->deadlines; n = n->next) {
		struct vhu_conn *c = vhu_container_of(n, struct vhu_conn, dl_link);

		if (c->deadline_ns < first) {
			first = c->deadline_ns;
		}
	}
	now = vhu__now_ns();
	if (first <= now) {
		return 0;
	}
	return (long long)((first - now + 999999u) / 1000000u);
}

/*
 * vhu_ring_opts.wait_spin_us: poll passes until work turns up or the
 * interval (at most the caller's timeout) has passed; *spun is the time
 * spent. \return what the pass that found work returned, or 0.
 */
static int
wait_spin(struct vhu_ring *r, int timeout_ms, uint64_t *spun)
{
	uint64_t spin = r->wait_spin_ns, start = vhu__now_ns(), now;
	int ret;

	if (timeout_ms > 0 && spin > (uint64_t)timeout_ms * 1000000u) {
		spin = (uint64_t)timeout_ms * 1000000u;
	}
	do {
		ret = vhu_ring_poll(r);
		now = vhu__now_ns();
	} while (ret == 0 && now - start < spin);
	if (ret > 0) {
		r->st.wait_spin_hits++;
	}
	*spun = now - start;
	return ret;
}

static int
wait_block(struct vhu_ring *r, int timeout_ms)
{
	struct io_uring *u = r->uring;
	struct __kernel_timespec ts, *tsp = NULL;
	struct io_uring_cqe *cqe;
	long long ns = timeout_ms < 0 ? -1 : (long long)timeout_ms * 1000000;
	long long dl;
	uint64_t spun = 0;
	unsigned int pending;
	int early, ret;

	/*
	 * Poll mode: a pass without blocking while the polled queues have
	 * work or the idle interval has not passed; then notifications go
	 * back on and, if the re-check finds nothing, the ring blocks.
	 */
	if (r->poll.spinning) {
		ret = vhu_ring_poll(r);
		if (ret != 0 || !vhu__dev_poll_idle(r)) {
			return ret;
		}
		ret = vhu__dev_poll_sleep(r);
		if (ret != 0) {
			return ret;
		}
	}
	early = run_queued(r);
	if (early > 0) {
		ns = 0;		/* something happened already: do not wait */
	} else if (r->wait_spin_ns > 0 && r->wait_found && timeout_ms != 0 && r->poll.n == 0 &&
		   !r->enter_to_reap) {
		ret = wait_spin(r, timeout_ms, &spun);
		if (ret != 0) {
			return ret;
		}
		if (ns > 0) {
			ns = ns > (long long)spun ? ns - (long long)spun : 0;	/* the spin was part of it */
		}
	}
	dl = deadline_ms(r);
	pending = io_uring_sq_ready(u);
	if (dl >= 0 && (ns < 0 || dl * 1000000 < ns)) {
		ns = dl * 1000000;
	}
	if (ns >= 0) {
		ts.tv_sec = ns / 1000000000;
		ts.tv_nsec = ns % 1000000000;
		tsp = &ts;
	}
	ret = io_uring_submit_and_wait_timeout(u, &cqe, 1, tsp, NULL);
	r->st.enters++;
	r->st.sqes += pending;
	if (ret < 0 && !transient(ret)) {
		return ret;
	}
	ret = reap(r);
	return ret < 0 ? ret : ret + early;
}

int
vhu_ring_wait(struct vhu_ring *r, int timeout_ms)
{
	int ret = wait_block(r, timeout_ms);

	r->wait_found = ret > 0;
	return ret;
}

int
vhu_ring_handle_cqe(struct vhu_ring *r, struct io_uring_cqe *cqe)
{
	struct vhu_ring *outer = current;

	if (!vhu__is_tag(cqe->user_data)) {
		return 0;
	}
	current = r;
	r->depth++;
	dispatch(r, cqe);
	r->depth--;
	if (r->depth == 0) {
		vhu__ring_deferred(r);
	}
	current = outer;
	return 1;
}

unsigned int
vhu_ring_conn_count(const struct vhu_ring *r)
{
	return r->nconns;
}

void
vhu_ring_get_stats(const struct vhu_ring *r, struct vhu_ring_stats *st)
{
	*st = r->st;
}

/* ------------------------------------------------------------------ */
/* Teardown                                                            */

void
vhu_ring_destroy(struct vhu_ring *r)
{
	struct vhu_ring *outer;
	struct io_uring *u;

	if (!r) {
		return;
	}
	u = r->uring;
	outer = current;
	current = r;
	r->destroying = true;
	while (!vlist_empty(&r->listeners)) {
		struct vhu_ulistener *l = vhu_container_of(r->listeners.next,
							   struct vhu_ulistener, link);

		/* Take it off the list first: close may free it at once. */
		vlist_del(&l->link);
		vhu_ulistener_close(l);
	}
	{
		struct vlist *n;

		for (n = r->conns.next; n != &r->conns; n = n->next) {
			vhu_conn_close(vhu_container_of(n, struct vhu_conn, link));
		}
	}
	vhu__ring_deferred(r);
	vhu__op_cancel_all(r);
	/* Every slot points into memory we are about to free: wait for all of them. */
	while (r->ops > 0) {
		int ret = io_uring_submit_and_wait(u, 1);

		r->st.enters++;
		if (ret < 0 && !transient(ret)) {
			break;
		}
		reap(r);
	}
	vhu__ring_deferred(r);
	bufs_teardown(r);
	if (!r->borrowed) {
		io_uring_queue_exit(&r->own);
	}
	current = outer;
	free(r);
}
