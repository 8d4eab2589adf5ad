/* SPDX-License-Identifier: MIT */
/**
 * \file
 * The two sides of a measurement. A transport is a client kind and a server
 * kind (plus the engine's options); the runner forks one process for each
 * side and drives them through these operations only, so a new transport
 * or scenario plugs in without touching the runner.
 */
#ifndef VHU_BENCH_PEER_H
#define VHU_BENCH_PEER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <vhu/endpoint.h>
#include <vhu/uring.h>

#include "cli.h"

/** The request: a GET_FEATURES header, no body. */
#define BENCH_REQ_SIZE		12u
/** The reply: header plus a u64. */
#define BENCH_REPLY_SIZE	20u
/** The feature word the servers answer with (VERSION_1 | PROTOCOL_FEATURES). */
#define BENCH_FEATURES		((UINT64_C(1) << 32) | (UINT64_C(1) << 30))

static inline uint64_t
bench_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/** One measurement window of a client loop. */
struct bench_window {
	uint64_t deadline_ns;	/**< stop once the clock passes it (count == 0) */
	uint64_t count;		/**< stop after this many replies (0: use the deadline) */
	uint64_t *samples;	/**< rt: one latency per round trip; NULL: none */
	size_t cap;		/**< room in samples; later round trips are not sampled */
	uint64_t msgs;		/**< out: replies received */
	size_t nsamples;	/**< out */
};

struct bench_client {
	int fd;
	struct vhu_endpoint *ep;
	struct vhu_fds fds;
	unsigned int depth;	/**< pipe: requests in flight at most */
	unsigned int batch;	/**< pipe: refill once this many slots are free */
	unsigned int inflight;
	uint8_t *reqs;		/**< depth requests back to back, sent in one go */
	uint8_t *rbuf;		/**< raw: receive buffer */
	size_t rbuf_len;
	unsigned int partial;	/**< raw: bytes of a reply read so far */
};

struct bench_client_ops {
	/** Take ownership of fd and get ready (allocations happen here). */
	int (*open)(struct bench_client *c, int fd);
	int (*rt)(struct bench_client *c, struct bench_window *w);
	int (*pipe)(struct bench_client *c, struct bench_window *w);
	/** Collect the replies still in flight and close; also after errors. */
	int (*finish)(struct bench_client *c);
};

struct bench_server {
	const struct bench_transport *t;
	unsigned int depth;
	int fd;
	struct vhu_endpoint *ep;
	struct vhu_ring *ring;
	struct vhu_conn *conn;
	bool closed;
	int close_reason;
	uint64_t owed;		/**< replies the full send queue could not take yet */
	uint64_t msgs;		/**< replies sent */
	uint8_t *buf;		/**< raw: receive buffer */
	uint8_t *replies;	/**< raw: replies back to back */
	size_t buf_len;
	bool has_stats;
	struct vhu_ring_stats stats;
	char detail[160];	/**< why setup or run failed, in words */
};

struct bench_server_ops {
	/** Take ownership of fd and get ready; fill detail on failure. */
	int (*setup)(struct bench_server *s, int fd);
	/** Serve until the client closes: 0 then, or the error that stopped it. */
	int (*run)(struct bench_server *s);
	void (*teardown)(struct bench_server *s);
};

struct bench_transport {
	enum bench_transport_id id;
	const struct bench_client_ops *client;
	const struct bench_server_ops *server;
	uint8_t recv_mode;	/**< engine servers: enum vhu_recv_mode */
	bool busy_poll;		/**< engine servers: spin on vhu_ring_poll() */
};

extern const struct bench_client_ops bench_client_endpoint;
extern const struct bench_client_ops bench_client_raw;
extern const struct bench_server_ops bench_server_blocking;
extern const struct bench_server_ops bench_server_uring;
extern const struct bench_server_ops bench_server_raw;

/** \return the transport's description. */
const struct bench_transport *bench_transport_get(enum bench_transport_id id);

/** True when the window is over after a reply at time now. */
static inline bool
bench_window_done(const struct bench_window *w, uint64_t now)
{
	return w->count ? w->msgs >= w->count : now >= w->deadline_ns;
}

/** Fill buf with n GET_FEATURES requests. */
void bench_fill_requests(uint8_t *buf, unsigned int n);

/** Fill buf with n GET_FEATURES replies. */
void bench_fill_replies(uint8_t *buf, unsigned int n);

#endif
