/* SPDX-License-Identifier: MIT */
/**
 * \file
 * The two sides of a measurement. A case (struct bench_traffic) says what
 * the client sends; a transport is a server kind (plus the engine's
 * options) and the client that drives it. The runner forks one process for
 * each side and drives them through these operations only, so a new
 * transport or scenario plugs in without touching the runner.
 */
#ifndef VHU_BENCH_PEER_H
#define VHU_BENCH_PEER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include <vhu/endpoint.h>
#include <vhu/uring.h>

#include "cli.h"
#include "common/clock.h"

/** The GET_FEATURES request: a bare header. */
#define BENCH_REQ_SIZE		12u
/** Every reply: header plus a u64 (features, protocol features or an ack). */
#define BENCH_REPLY_SIZE	20u
/** The feature word the servers answer with (VERSION_1 | PROTOCOL_FEATURES). */
#define BENCH_FEATURES		((UINT64_C(1) << 32) | (UINT64_C(1) << VHU_F_PROTOCOL_FEATURES))
/** The protocol features the servers offer. */
#define BENCH_PROTOCOL_FEATURES	(UINT64_C(1) << VHU_PROTOCOL_F_REPLY_ACK)
/** Largest request body: SET_CONFIG with a whole config space. */
#define BENCH_MAX_BODY		(VHU_CONFIG_HDR_SIZE + BENCH_MAX_PAYLOAD)
/** Largest request on the wire. */
#define BENCH_MAX_MSG		(12u + BENCH_MAX_BODY)
/** The servers' size limit: room for the largest request. */
#define BENCH_MAX_SIZE		8192u
/** fds scenario: requests in flight at most (keeps fds in flight under 1024). */
#define BENCH_FDS_DEPTH		64u
/** fds scenario: one message in this many has its fds written to (identity check). */
#define BENCH_PROBE_EVERY	64u

/** The monotonic clock (tools/common/clock.h), unsigned as the harness counts. */
static inline uint64_t
bench_now_ns(void)
{
	return (uint64_t)tool_now_ns();
}

/** What one case sends: the same description for client and server. */
struct bench_traffic {
	enum bench_scenario_id sc;
	unsigned int param;	/**< payload bytes, fds per message or connections */
	unsigned int nconns;
	unsigned int depth;	/**< requests in flight per connection; 0: no replies */
	unsigned int nfds;	/**< fds per request */
	uint32_t request;	/**< request code */
	uint32_t msg_len;	/**< bytes of one request on the wire */
	/** One request, header and body, exactly as sent. */
	uint8_t msg[BENCH_MAX_MSG] __attribute__((aligned(8)));
};

/**
 * Describe a case. depth is --depth: the requests in flight in all (split
 * over the connections of conns, capped for fds, ignored by rt and oneway).
 */
void bench_traffic_init(struct bench_traffic *tr, enum bench_scenario_id sc, unsigned int param,
			unsigned int depth);

/** True when a case has a parameter ("oneway/64"). */
bool bench_scenario_has_param(enum bench_scenario_id sc);

/** One measurement window of a client loop. */
struct bench_window {
	uint64_t deadline_ns;	/**< stop once the clock passes it (count == 0) */
	uint64_t count;		/**< stop after this many messages (0: use the deadline) */
	uint64_t *samples;	/**< rt: one latency per round trip; NULL: none */
	size_t cap;		/**< room in samples; later round trips are not sampled */
	uint64_t msgs;		/**< out: replies received (oneway: requests sent) */
	size_t nsamples;	/**< out */
};

/** True when the window is over after a message at time now. */
static inline bool
bench_window_done(const struct bench_window *w, uint64_t now)
{
	return w->count ? w->msgs >= w->count : now >= w->deadline_ns;
}

struct bench_client {
	const struct bench_traffic *tr;
	bool validate;		/**< check every reply (all but raw) */
	bool foreign;		/**< the server is an outside back-end */
	int *fds;		/**< sockets, one per connection (owned) */
	unsigned int nconns;
	void *priv;		/**< the client kind's state */
	struct vhu_endpoint *ep;	/**< endpoint (rt) */
	struct vhu_fds rfds;	/**< endpoint: fds of a reply (an error) */
	/** fds: the eventfds' counters at the end (how often the server wrote). */
	uint64_t counters[BENCH_MAX_MSG_FDS];
	uint64_t sent;		/**< requests sent, warm-up included */
	uint64_t replies;	/**< replies received, warm-up included */
	char detail[160];	/**< why it failed, in words */
};

struct bench_client_ops {
	/** Take ownership of the sockets and get ready (allocations happen here). */
	int (*open)(struct bench_client *c);
	/** Run one window. */
	int (*run)(struct bench_client *c, struct bench_window *w);
	/** Collect the replies still in flight and close; also after errors. */
	int (*finish)(struct bench_client *c);
};

/** What a server counts (per thread, summed at the end). */
struct bench_counts {
	uint64_t msgs;		/**< requests received */
	uint64_t replies;	/**< replies built for sending (a failed send ends the case) */
	uint64_t fds;		/**< fds received */
	uint64_t fd_msgs;	/**< requests that carried fds */
	uint64_t probes;	/**< requests whose fds were written to */
};

struct bench_server {
	const struct bench_transport *t;
	const struct bench_traffic *tr;
	int *fds;		/**< sockets, one per connection (owned) */
	unsigned int nconns;
	void *priv;		/**< the server kind's state */
	struct bench_counts k;
	bool has_stats;
	struct vhu_ring_stats stats;
	char detail[160];	/**< why setup or run failed, in words */
};

struct bench_server_ops {
	/** Take ownership of the sockets and get ready; fill detail on failure. */
	int (*setup)(struct bench_server *s);
	/** Serve until every client closes: 0 then, or the error that stopped it. */
	int (*run)(struct bench_server *s);
	void (*teardown)(struct bench_server *s);
	/**
	 * --listen: serve every connection on path, printing a line for each
	 * to stdout as it closes; return once exit_after connections have
	 * closed (0: never) or on SIGINT/SIGTERM. NULL: not offered.
	 */
	int (*listen)(const struct bench_transport *t, const char *path, unsigned int exit_after);
};

struct bench_transport {
	const char *name;
	const struct bench_client_ops *rt_client;	/**< the rt scenario's client */
	const struct bench_server_ops *server;		/**< NULL: an outside back-end */
	uint8_t recv_mode;	/**< engine servers: enum vhu_recv_mode */
	bool busy_poll;		/**< the server spins */
	unsigned int wait_spin_us;	/**< engine servers: vhu_ring_opts.wait_spin_us */
	bool validate;		/**< the bulk client checks every reply */
	const char *path;	/**< --connect: the back-end's socket */
};

extern const struct bench_client_ops bench_client_endpoint;
extern const struct bench_client_ops bench_client_raw;
extern const struct bench_client_ops bench_client_bulk;
extern const struct bench_server_ops bench_server_blocking;
extern const struct bench_server_ops bench_server_uring;
extern const struct bench_server_ops bench_server_raw;

/** \return the built-in transport's description. */
const struct bench_transport *bench_transport_get(enum bench_transport_id id);

/** Send all len bytes (MSG_NOSIGNAL, EINTR retried). \return 0 or -errno. */
int bench_send_all(int fd, const uint8_t *p, size_t len);

/** Fill buf with n copies of the case's request. */
void bench_fill_requests(const struct bench_traffic *tr, uint8_t *buf, size_t n);

/**
 * A bench server's handling of one validated request: count it and its
 * fds, write to the fds of one request in BENCH_PROBE_EVERY (so the client
 * can tell they are its eventfds), and build the reply if it wants one:
 * GET_FEATURES and GET_PROTOCOL_FEATURES get their feature words, a request
 * with NEED_REPLY an ack of 0.
 * \return 1 with reply filled, 0 for no reply, or -VHU_EFDS if a probed fd
 *         cannot be written to as an eventfd.
 */
int bench_serve(struct bench_counts *k, const struct vhu_hdr *hdr, const int *fds,
		unsigned int nfds, uint8_t reply[BENCH_REPLY_SIZE]);

/** The rules bench servers receive with. */
extern const struct vhu_rules bench_server_rules;

/** Heap allocations made by this process so far (0 when not counted). */
uint64_t bench_allocs(void);
/** True when bench_allocs() counts (not under a sanitizer). */
bool bench_allocs_counted(void);

#endif
