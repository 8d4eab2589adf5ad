/* SPDX-License-Identifier: MIT */
/*
 * Helpers for the behavioural tests of the io_uring engine (test_conn.c,
 * test_send.c, test_stream.c, test_torture.c): a ring in the test process,
 * connections attached to one end of a socketpair, a recorder that copies
 * every delivered message (or checks sequence numbers, for runs too long to
 * keep) and counts on_close, peer-side writers and readers, proofs that
 * sent fds were closed, the table of hostile inputs, and loops that drive
 * the ring until a condition holds (with a hang guard instead of sleeps).
 * Compiled once (uring_helpers.c, hostile.c); the test bodies live next to
 * their Test()s.
 */
#ifndef VHU_TEST_URING_HELPERS_H
#define VHU_TEST_URING_HELPERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <vhu/uring.h>
#include <vhu/vhu.h>

#include "helpers.h"

/*
 * A stretch with no completion this long means the engine hangs (nothing
 * else is timed; generous because sanitizer builds share a loaded machine).
 */
#define TH_HANG_MS	20000
/*
 * Upper bound on ring iterations of one wait loop (a livelock guard), sized
 * for the torture flood of a million messages read one at a time.
 */
#define TH_MAX_ITERS	50000000ul
/* The kernel's most fds per SCM_RIGHTS message (include/net/scm.h SCM_MAX_FD). */
#define TH_SCM_MAX_FD	253u

/* ------------------------------------------------------------------ */
/* Recorder: what on_message and on_close saw on one connection        */

struct th_msg {
	struct vhu_hdr hdr;
	uint8_t *body;		/* hdr.size bytes, copied */
	int fd[VHU_MAX_FDS];	/* taken out of the message: the recorder owns them */
	unsigned int nfds;
};

struct th_rec;

/* Runs after a message was recorded (not in sequence mode); its return value is on_message's. */
typedef int (*th_hook_fn)(struct th_rec *rec, struct vhu_conn *conn, struct th_msg *m);

struct th_rec {
	struct vhu_conn *conn;	/* NULL once on_close ran */
	struct th_msg *msg;
	size_t n, cap;
	unsigned int closes;	/* on_close calls: must end at exactly 1 */
	int reason;		/* on_close's reason */
	unsigned int late;	/* callbacks after on_close: must stay 0 */
	unsigned int wrong_conn; /* callbacks with a conn pointer not ours */
	th_hook_fn hook;
	long idx;		/* free for the test: an index among several */
	int hook_rc;		/* free for hooks: a return code to check later */
	unsigned int hook_calls;

	/* Sequence mode (th_rec_init_seq): nothing kept, numbers checked. */
	bool seq;
	bool seq_bad;		/* a message out of sequence arrived */
	uint64_t seq_at;	/* index of the first disorder */
	uint64_t seq_got;	/* what it carried */
	uint64_t nfds;		/* fds that came with the messages (left to the engine) */
	/* Replies (sequence mode): answer each message with the u64 it carries (or its index). */
	bool reply;
	uint32_t reply_pad;	/* payload bytes appended to each reply */
	uint64_t replied;	/* replies queued */
	uint64_t eqfull;	/* replies refused by a full send queue (and dropped) */
	unsigned int q_peak;	/* longest send queue seen after a reply was queued */
};

/* Keep every message: header, a copy of the body, and its fds (taken). */
void th_rec_init(struct th_rec *r);

/*
 * Sequence mode, for a million messages: message i of a stream built with
 * th_put_seq must be the i-th delivered, else the first disorder is
 * recorded (seq_bad, seq_at, seq_got), so a lost, repeated or reordered
 * message is caught where it happened. Nothing is kept; fds are counted and
 * left to the engine, which closes them.
 */
void th_rec_init_seq(struct th_rec *r);

void th_rec_fini(struct th_rec *r);

int th_on_message(struct vhu_conn *conn, struct vhu_msg *m, void *ctx);

void th_on_close(struct vhu_conn *conn, int reason, void *ctx);

extern const struct vhu_conn_ops th_ops;

/* on_close fired exactly once, with this reason, and nothing came after it. */
void th_assert_closed(const struct th_rec *r, int reason, const char *what);

/* Still open, no foreign conn pointer, and (sequence mode) nothing out of order. */
void th_assert_open(const struct th_rec *r, const char *what);

/* Sequence mode: no message was lost, repeated or reordered. */
void th_assert_seq(const struct th_rec *r, const char *what);

/* ------------------------------------------------------------------ */
/* Ring and connections                                                */
struct vhu_ring *th_ring(unsigned int max_conns);

/* A ring with small stream buffers (8 x 4352 bytes): easy to exhaust. */
struct vhu_ring *th_ring_small_bufs(void);

/* Receive options of a back-end on the main socket: requests in. */
struct vhu_conn_opts th_opts(uint8_t mode);

/*
 * Attach one end of a fresh socketpair to the ring with rec as ctx; return
 * the other end (the peer), owned by the caller.
 */
int th_attach(struct vhu_ring *ring, const struct vhu_conn_opts *o, struct th_rec *rec);

/* ------------------------------------------------------------------ */
/* Driving the ring                                                    */

typedef bool (*th_done_fn)(void *arg);

/*
 * Drive the ring until done(arg). Fails the test if no completion arrives
 * for TH_HANG_MS (a hang, not a slow run: nothing is timed otherwise).
 */
void th_run_until(struct vhu_ring *ring, th_done_fn done, void *arg, const char *what);

/* Reap whatever is ready without blocking. */
void th_flush(struct vhu_ring *ring);

struct th_want {
	struct th_rec *rec;
	size_t n;
	struct vhu_conn *conn;
	int fd;
};

bool th_done_msgs(void *arg);

bool th_done_closed(void *arg);

bool th_done_sent(void *arg);

int th_inq(int fd);

/* done(arg) for th_run_until: the fd *arg is readable (data, or a hang-up). */
bool th_done_readable(void *arg);

/*
 * A front-end's request on ep to a device served on ring: sends it; with
 * want != NULL drives the ring until the reply is there (ring NULL: the
 * ring runs on other threads, the reply is simply waited for) and reads its
 * body into want (failing the test on anything but that request's reply);
 * with fd != NULL the reply must carry one fd, moved to *fd. \return the
 * reply's body bytes (0 without want).
 */
size_t th_call(struct vhu_ring *ring, struct vhu_endpoint *ep, uint32_t req, const void *body,
	       size_t len, const int *fds, unsigned int nfds, bool need_reply, void *want,
	       size_t want_len, int *fd);

bool th_done_drained(void *arg);

/*
 * Drive until rec has exactly n messages; fails if the connection closed
 * first. what (or NULL) names the wait in failures, as in the other waits.
 */
void th_wait_msgs(struct vhu_ring *ring, struct th_rec *rec, size_t n, const char *what);

/* Drive until on_close ran. */
void th_wait_closed(struct vhu_ring *ring, struct th_rec *rec, const char *what);

/* Drive until the connection's send queue is empty (all bytes handed to the kernel). */
void th_wait_sent(struct vhu_ring *ring, struct th_rec *rec);

/*
 * Drive until the engine has read every byte waiting on its socket, so the
 * next write from the peer lands in a later read.
 */
void th_drain(struct vhu_ring *ring, struct th_rec *rec);

/* ------------------------------------------------------------------ */
/* Building messages                                                   */

/* Append a header with explicit flags and size, then len body bytes. */
size_t th_put_raw(uint8_t *buf, size_t off, uint32_t req, uint32_t flags, uint32_t size,
	   const void *body, size_t len);

/* Append a well-formed request (flags = version 1). */
size_t th_put(uint8_t *buf, size_t off, uint32_t req, const void *body, uint32_t len);

size_t th_put_u64(uint8_t *buf, size_t off, uint32_t req, uint64_t v);

/*
 * Message i of a sequenced stream: cycles through SET_FEATURES carrying i,
 * SET_VRING_NUM carrying i in num, and GET_FEATURES (th_seq_req(i)).
 */
size_t th_put_seq(uint8_t *buf, size_t off, uint64_t i);

/* The request code of message i of a sequenced stream. */
uint32_t th_seq_req(uint64_t i);

struct vhu_vring_addr th_vring_addr(uint32_t index, uint64_t desc);

/* A valid memory table of n disjoint 1 MiB regions, 1 GiB apart; returns its size field. */
uint32_t th_mem_table(struct vhu_mem_table *mt, unsigned int n);

/* Deterministic filler, different per seed. */
void th_pattern(uint8_t *p, size_t len, unsigned int seed);

/* ------------------------------------------------------------------ */
/* Peer side                                                           */

/*
 * One sendmsg of buf with nfds fds, up to TH_SCM_MAX_FD (no assertions:
 * a forked writer uses it).
 * \return what sendmsg returned; -1 with errno set on failure.
 */
ssize_t th_sendmsg(int fd, const void *buf, size_t len, const int *fds, unsigned int nfds);

/* One sendmsg of buf with fds; the whole buffer must go. */
void th_send(int fd, const void *buf, size_t len, const int *fds, unsigned int nfds);

/* Read exactly len bytes; fails after TH_HANG_MS without data, or on EOF. */
void th_read_exact(int fd, void *buf, size_t len);

/* Nothing more is waiting on the peer's socket (and it is not at EOF). */
void th_assert_no_more(int fd);

/*
 * Read the peer's socket until EOF, closing any fds that arrive.
 * \return bytes read.
 */
size_t th_read_to_eof(int fd, unsigned int *nfds_out);

/*
 * The peer sees EOF (or a reset) right away, with no byte before it: the
 * engine closed its socket.
 */
void th_assert_peer_eof(int fd, const char *what);

/* Compare bytes, naming the first difference. */
void th_assert_bytes(const void *got, const void *want, size_t len, const char *what);

/* Recorded message i has this header and body (and nfds fds). */
void th_assert_msg(const struct th_rec *r, size_t i, uint32_t req, const void *body, uint32_t len,
	      unsigned int nfds);

uint64_t th_msg_u64(const struct th_rec *r, size_t i);

int th_dup(int fd);

bool th_fd_open(int fd);

void th_close_all(int *fds, unsigned int n);

/* No fd opened during a case is left open, and none of ours was closed. */
void th_fd_check(int mark, const char *what);

/* ------------------------------------------------------------------ */
/* Shared cases: each takes the receive mode; both test files run them  */

/* ------------------------------------------------------------------ */
/* Proofs that fds were closed                                         */

/*
 * A pipe whose write end is what a hostile peer sends (as many copies as it
 * likes). Once the sender's copies are closed, the read end reports EOF only
 * when every copy the receiver got is closed too: proof that no fd leaked.
 */
struct th_probe {
	int rd;
	int wr;
};

struct th_probe th_probe_new(void);

/* Fill fds[0..n) with the probe's write end (the kernel installs n distinct fds). */
void th_probe_fds(const struct th_probe *p, int *fds, unsigned int n);

/* Close the sender's copy of the write end. */
void th_probe_drop_wr(struct th_probe *p);

/* Every copy of the write end is closed (bounded wait: fput may be deferred); closes the probe. */
void th_probe_assert_all_closed(struct th_probe *p, const char *what);

/* ------------------------------------------------------------------ */
/* Hostile inputs (hostile.c)                                          */

/* One hostile input, written on a connection of its own. */
struct th_hostile {
	const char *name;
	uint8_t chan;		/* channel of the offender's receive rules */
	uint8_t expect;		/* VHU_EXPECT_REQUEST or VHU_EXPECT_REPLY */
	uint32_t max_size;	/* 0: default */
	size_t len;		/* bytes written, in one sendmsg (0: none) */
	unsigned int nfds;	/* fds attached to that sendmsg */
	bool shut;		/* the peer closes its end after writing */
	int reason[2];		/* on_close reason, by receive mode (VHU_RECV_EXACT, _STREAM) */
	size_t msgs;		/* valid messages (th_put_seq 0) delivered before the close */
};

/* Room build needs in buf. */
#define TH_HOSTILE_BUF	8192
/* Inputs in the table. */
#define TH_NHOSTILE	70

/* Build hostile input i into buf (TH_HOSTILE_BUF bytes); false past the last one. */
bool th_hostile_build(unsigned int i, uint8_t *buf, struct th_hostile *c);

/* Apply c's channel, expectation and max_size to o. */
void th_hostile_opts(const struct th_hostile *c, struct vhu_conn_opts *o);

/* ------------------------------------------------------------------ */

/* Destroy the ring, then check rec saw on_close(0) exactly once and free it. */
void th_finish(struct vhu_ring *ring, struct th_rec *rec, int peer);

void th_set_sndbuf(int fd, int bytes);

#endif
