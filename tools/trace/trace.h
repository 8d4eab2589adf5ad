/* SPDX-License-Identifier: MIT */
/*
 * vhu-trace's parts: options.c (command line), emit.c (fields in text or
 * JSON), describe.c (a message body, by the layout lib/ gives its
 * request), record.c (trace lines: messages, events, hex), session.c
 * (sessions and their connections, from accept to the last close),
 * relay.c (forwarding, the back-end channel interposed), main.c.
 */
#ifndef VHU_TRACE_H
#define VHU_TRACE_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <vhu/uring.h>
#include <vhu/vhu.h>

/* Largest body forwarded: above any real message, small enough to hold per connection. */
#define TRACE_MAX_SIZE		(64u * 1024u)
/*
 * Room for several largest messages, so a burst does not hit backpressure
 * at once. When a queue is full the connection feeding it is paused
 * (VHU_MSG_HOLD) until it drains to half: a slow reader slows the writer.
 */
#define SENDQ_BYTES		(4u * (TRACE_MAX_SIZE + VHU_HDR_SIZE + 64u))
#define SENDQ_MSGS		1024u
/* Sessions at once with --keep-listening unless --max-sessions says otherwise. */
#define DEFAULT_MAX_SESSIONS	64u
#define MAX_SESSIONS_LIMIT	4096u
/*
 * A session needs four connections (main and back-end channel, each side);
 * a channel set up again keeps the old pair while it drains, and a
 * front-end over the limit is accepted before it is closed: a margin.
 */
#define RING_CONNS(sessions)	(4u * (sessions) + 16u)
/* How long a wait may block before the stop flag and the drains are looked at again. */
#define WAIT_SLICE_MS		200
/* Messages to a side that is being closed get this long to leave (a peer may stop reading). */
#define DRAIN_NS		(2ll * 1000000000)

/* Exit status; documented in usage() and vhu-trace.1. */
enum status {
	ST_OK = 0,
	ST_FAIL = 1,
	ST_USAGE = 2,
	ST_CONNECT = 3,
	ST_PROTOCOL = 5,
};

/* The peer a connection of ours faces. */
enum side {
	SIDE_FRONT = 0,
	SIDE_BACK = 1,
};

struct options {
	const char *listen;
	const char *connect;
	const char *output;
	uint8_t recv_mode;
	bool strict;
	bool json;
	bool hex;
	bool verbose;
	bool keep;
	unsigned int max_sessions;	/* sessions at once (1 without --keep-listening) */
};

struct session;

/* One engine connection of a session; the conn's ctx. */
struct end {
	struct session *s;
	struct vhu_conn *conn;
	struct end *peer;	/* where its messages go; NULL once that side is gone */
	struct end *next;	/* in the session's list */
	uint8_t chan;		/* enum vhu_channel */
	uint8_t side;		/* enum side: the peer this connection faces */
	bool draining;		/* close once the send queue is empty */
	bool held;		/* a message of ours waits (VHU_MSG_HOLD) for room at peer */
	bool rx_over;		/* the peer shut down its sending side (on_hangup) */
	bool tx_shut;		/* vhu_conn_shutdown() called: the peer reads EOF after the queue */
	int64_t drain_until;
	struct vhu_rules strict;	/* what a well-formed message from this peer obeys */
};

struct session {
	unsigned int id;
	struct end *ends;	/* every end not yet closed */
	bool ending;		/* the main channel lost a side, or --strict refused one */
	bool connect_failed;	/* the back-end could not be reached */
	int fault;		/* first error that ended the session, 0 if none */
	int refused;		/* the error --strict closed a side with, 0 if none */
	struct session *next;
};

struct trace_app {
	struct options opt;
	FILE *out;
	int64_t t0;
	struct vhu_ring *ring;
	struct vhu_ulistener *listener;
	struct session *sessions;
	unsigned int next_id;
	bool done;
	int status;
};

/* The one tracer of this process (main.c); callbacks reach it here. */
extern struct trace_app app;

/* options.c: \return -1 to run, or the exit status (after --help or a usage error). */
int parse_options(int argc, char **argv, struct options *o);

/*
 * emit.c: fields of a decoded body, written in either format: text as
 * key=value separated by spaces with {...} and [...] for nesting; JSON as
 * members. sep[depth] says whether a separator is due before the next item.
 */
struct emit {
	FILE *f;
	bool json;
	unsigned int depth;
	bool sep[8];
};

void e_key(struct emit *e, const char *key);
void e_open(struct emit *e, const char *key, char bracket);
void e_close(struct emit *e, char bracket);
void e_dec(struct emit *e, const char *key, uint64_t v);
/* Addresses, sizes and masks: hex, and a string in JSON (no precision lost past 2^53). */
void e_hex(struct emit *e, const char *key, uint64_t v);
void e_str(struct emit *e, const char *key, const char *v);
void e_bool(struct emit *e, const char *key, bool v);

/* describe.c: the fields of h's body b (NULL or h->size bytes) on chan. */
void describe_body(struct emit *e, uint8_t chan, const struct vhu_hdr *h, const uint8_t *b);

/* record.c */
const char *chan_name(uint8_t chan);
const char *side_name(uint8_t side);
/*
 * One message, as received from the peer e faces. bad is its strict
 * verdict (0 or a vhu code); note is an extra remark (NULL for none).
 */
void trace_message(const struct end *e, const struct vhu_msg *m, int bad, const char *note);
/* An event line: session start and end, channels opened, sides closed. */
void trace_event(const struct session *s, const char *event, const char *chan, const char *side,
		 int reason, const char *text);

/* session.c */
void session_fault(struct session *s, int err);
void session_shutdown(struct session *s);
/* Close e once what is queued to its peer has left (at once if nothing is). */
void end_close_after_drain(struct end *e);
/* Both directions of e are over: it closes by itself once its queue is out. */
bool end_finishing(const struct end *e);
struct end *end_new(struct session *s, uint8_t chan, uint8_t side);
void end_link(struct end *e);
/* Attach fd (consumed either way) as the end of s on chan facing side. */
int end_attach(struct session *s, uint8_t chan, uint8_t side, int fd, struct end **out);
void on_close(struct vhu_conn *conn, int reason, void *ctx);
/* Close the ends whose queues have drained, or whose peer stopped reading for too long. */
void drain_check(void);

/* relay.c */
extern const struct vhu_conn_ops conn_ops;
/* Framing only: the strict verdict is ours to give, and the message goes on either way. */
void conn_opts(struct vhu_conn_opts *o, uint8_t chan);
/* A front-end connected: connect to the back-end for it. */
void on_accept(struct vhu_ulistener *l, struct vhu_conn *conn, void *ctx);

#endif
