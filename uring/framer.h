/* SPDX-License-Identifier: MIT */
/*
 * The stream framer: splits a byte stream (chunks as a multishot receive
 * returns them, each with the fds that came with it) into whole, validated
 * vhost-user messages. Pure code, no io_uring: tests and fuzzers can feed it.
 *
 * fd attribution: the fds of a chunk belong to the last message that begins
 * in that chunk (its first header byte is in it). fds in a chunk where no
 * message begins came with body bytes: -VHU_EINVALID.
 */
#ifndef VHU_URING_FRAMER_H
#define VHU_URING_FRAMER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <vhu/fds.h>
#include <vhu/uring.h>
#include <vhu/wire.h>

/*
 * Receives one whole message (validated, unless frames_only is set after
 * init: then only its size and fd count are bounded). body is 8-byte aligned and valid only during
 * the call; the callee owns *fds and must leave the set empty (moved out or
 * closed). \return 0 to go on, a negative error to fail the stream, or a
 * positive value to stop feeding (the connection went away).
 */
typedef int (*vhu_framer_deliver_fn)(void *arg, const struct vhu_hdr *hdr, void *body,
				     struct vhu_fds *fds);

struct vhu_framer {
	struct vhu_rules rules;		/* max_size resolved (never 0) */
	bool frames_only;		/* only max_size and VHU_MAX_FDS are enforced */
	uint8_t *buf;			/* header at +4, body at +16 (8-aligned) */
	uint32_t have;			/* bytes held of a message that straddles chunks */
	uint64_t need;			/* its total length once the header is in, else 0;
					 * 64 bits: 12 + a 32-bit size must not wrap */
	bool began;			/* it began in the last chunk fed */
	struct vhu_fds fds;		/* its fds */
};

/**
 * \return 0, -EINVAL for rules->max_size above VHU_CONN_MAX_SIZE, or -ENOMEM.
 * rules->max_size 0 means VHU_DEFAULT_MAX_SIZE.
 */
int vhu__framer_init(struct vhu_framer *f, const struct vhu_rules *rules);

/** Close held fds and free the buffer. Idempotent. */
void vhu__framer_fini(struct vhu_framer *f);

/**
 * Feed (part of) one chunk; *used (may be NULL) is set to the bytes consumed.
 * \return 0: the whole chunk was consumed and every fd of *fds (may be
 *         NULL) went to a message; a negative validation error: the stream
 *         is broken (call vhu__framer_fini), *fds closed; or deliver's
 *         positive return: feeding stopped right after that message, and the
 *         rest of the chunk, from *used on, is the caller's to feed again
 *         later, with the fds still in *fds (which belong to it).
 */
int vhu__framer_feed_part(struct vhu_framer *f, const uint8_t *data, size_t len,
			  struct vhu_fds *fds, vhu_framer_deliver_fn deliver, void *arg,
			  size_t *used);

/**
 * Feed a whole chunk, for callers that never resume one: as
 * vhu__framer_feed_part, but on deliver's positive return the chunk's
 * remaining fds are closed too (the framer owns *fds in every case).
 */
static inline int
vhu__framer_feed(struct vhu_framer *f, const uint8_t *data, size_t len, struct vhu_fds *fds,
		 vhu_framer_deliver_fn deliver, void *arg)
{
	int r = vhu__framer_feed_part(f, data, len, fds, deliver, arg, NULL);

	if (r > 0 && fds) {
		vhu_fds_close(fds);
	}
	return r;
}

/**
 * Keep a delivered message's body for a later delivery: copied into the
 * framer's own buffer unless it is there already. \return where it now is,
 * valid until the framer is fed again.
 */
void *vhu__framer_keep(struct vhu_framer *f, void *body, uint32_t size);

/** \return true between messages (no byte of a message held). */
static inline bool
vhu__framer_idle(const struct vhu_framer *f)
{
	return f->have == 0;
}

/*
 * Move src's fds into the empty set dst, copying only its n slots (a whole
 * struct vhu_fds is 33 words: copying or zeroing it per message showed up
 * as most of the framer's time).
 */
static inline void
vhu__fds_move(struct vhu_fds *dst, struct vhu_fds *src)
{
	unsigned int n = src->n < VHU_MAX_FDS ? src->n : VHU_MAX_FDS;

	memcpy(dst->fd, src->fd, n * sizeof(dst->fd[0]));
	dst->n = n;
	src->n = 0;
}

#endif
