/* SPDX-License-Identifier: MIT */
/*
 * fuzz_framer: the engine's stream framer fed an arbitrary byte stream cut
 * at arbitrary points, with real fds (dups of /dev/null) attached to
 * chunks (format in fuzz_input.h).
 *
 * The harness keeps its own model of the stream: where each message
 * begins and ends, which chunk's fds it owns (the last message that begins
 * in a chunk), and the first chunk in which something is wrong (a header
 * or message vhu_msg_check refuses, or fds in a chunk where no message
 * begins). It then holds the framer to it:
 *  - messages are delivered in order, each in the chunk where it ends,
 *    with exactly the input's bytes, an 8-byte aligned body, and exactly
 *    the fds of the chunk it owns; each passes vhu_msg_check;
 *  - feed returns 0 before the first faulty chunk and, in it, one of the
 *    faults the model found there; a stop asked by deliver is returned
 *    as is;
 *  - without a fault every whole message is delivered, and the framer is
 *    idle exactly when the stream ends between messages;
 *  - ownership: the chunk's set is empty after every feed, every fd is
 *    closed exactly once by the end (close() is wrapped), and the process
 *    has as many fds as before.
 * All fds are made before the first feed, so no fd number is reused while
 * the framer runs and a stale close cannot hide.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <vhu/error.h>
#include <vhu/fds.h>
#include <vhu/wire.h>

#include "framer.h"
#include "fuzz_common.h"
#include "fuzz_input.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_TOTAL_FDS	96u
#define NO_CHUNK	UINT32_MAX
#define MAX_FAULTS	8u

struct model_msg {
	size_t off;		/* first header byte in the stream */
	struct vhu_hdr hdr;	/* valid if hdr_in */
	bool hdr_in;		/* all 12 header bytes are in the stream */
	bool whole;		/* and all of the body */
	uint32_t first_chunk;	/* chunk of the first header byte */
	uint32_t hdr_chunk;	/* chunk of the last header byte */
	uint32_t end_chunk;	/* chunk of the last byte (whole only) */
	uint32_t fd_chunk;	/* chunk whose fds it owns, or NO_CHUNK */
};

struct model {
	struct model_msg *m;
	size_t n;
	size_t whole;			/* leading whole messages */
	bool ends_between;		/* the stream ends at a message boundary */
	uint32_t fault_chunk;		/* first chunk with a fault, or NO_CHUNK */
	int faults[MAX_FAULTS];		/* the faults found in that chunk */
	unsigned int nfaults;
	uint32_t owner[FZ_MAX_CHUNKS + 1];	/* message owning each chunk's fds */
};

struct run {
	struct vhu_rules rules;
	const uint8_t *stream;
	struct fz_plan plan;
	int fds[FZ_MAX_CHUNKS + 1][VHU_MAX_FDS];
	struct model model;
	uint32_t chunk;		/* chunk being fed */
	size_t delivered;
	unsigned int stop_at;	/* 0: never; else stop on this delivery */
	int stop_ret;
};

static uint32_t
chunk_of(const struct fz_plan *pl, size_t pos)
{
	uint32_t c;

	for (c = 0; c < pl->n; c++) {
		if (pos >= pl->c[c].off && pos - pl->c[c].off < pl->c[c].len) {
			return c;
		}
	}
	return NO_CHUNK;
}

static void
add_fault(struct model *md, uint32_t chunk, int code)
{
	if (chunk > md->fault_chunk) {
		return;
	}
	if (chunk < md->fault_chunk) {
		md->fault_chunk = chunk;
		md->nfaults = 0;
	}
	if (md->nfaults < MAX_FAULTS) {
		md->faults[md->nfaults++] = code;
	}
}

/* vhu_msg_check on a message of the stream, from an aligned copy of its body. */
static int
model_msg_check(const struct run *rn, const struct model_msg *m, unsigned int nfds)
{
	void *body = NULL;
	int r;

	if (m->hdr.size > 0) {
		body = malloc(m->hdr.size);
		FZ_CHECK(body != NULL, "malloc");
		memcpy(body, rn->stream + m->off + VHU_HDR_SIZE, m->hdr.size);
	}
	r = vhu_msg_check(&rn->rules, &m->hdr, body, nfds);
	free(body);
	return r;
}

static unsigned int
model_nfds(const struct run *rn, const struct model_msg *m)
{
	return m->fd_chunk == NO_CHUNK ? 0 : rn->plan.c[m->fd_chunk].nfds;
}

static void
model_build(struct run *rn, size_t slen)
{
	struct model *md = &rn->model;
	size_t off = 0, i;
	uint32_t c;

	md->m = malloc((slen / VHU_HDR_SIZE + 1) * sizeof(*md->m));
	FZ_CHECK(md->m != NULL, "malloc");
	md->n = 0;
	md->fault_chunk = NO_CHUNK;
	md->nfaults = 0;
	while (off < slen) {
		struct model_msg *m = &md->m[md->n++];

		memset(m, 0, sizeof(*m));
		m->off = off;
		m->first_chunk = chunk_of(&rn->plan, off);
		m->fd_chunk = NO_CHUNK;
		if (slen - off < VHU_HDR_SIZE) {
			break;
		}
		memcpy(&m->hdr, rn->stream + off, VHU_HDR_SIZE);
		m->hdr_in = true;
		m->hdr_chunk = chunk_of(&rn->plan, off + VHU_HDR_SIZE - 1);
		if (m->hdr.size > slen - off - VHU_HDR_SIZE) {
			break;
		}
		m->whole = true;
		off += VHU_HDR_SIZE + m->hdr.size;
		m->end_chunk = chunk_of(&rn->plan, off - 1);
	}
	md->ends_between = md->n == 0 || md->m[md->n - 1].whole;

	/* The fds of a chunk belong to the last message that begins in it. */
	for (c = 0; c < rn->plan.n; c++) {
		md->owner[c] = NO_CHUNK;
	}
	for (i = 0; i < md->n; i++) {
		md->owner[md->m[i].first_chunk] = (uint32_t)i;
	}
	for (c = 0; c < rn->plan.n; c++) {
		if (md->owner[c] != NO_CHUNK) {
			md->m[md->owner[c]].fd_chunk = c;
		} else if (rn->plan.c[c].nfds > 0) {
			add_fault(md, c, -VHU_EINVALID);
		}
	}

	/* Faults of the messages, up to the first one the framer must stop at. */
	md->whole = 0;
	for (i = 0; i < md->n; i++) {
		const struct model_msg *m = &md->m[i];
		int r;

		if (!m->hdr_in) {
			break;
		}
		r = vhu_hdr_check(&rn->rules, &m->hdr);
		if (r < 0) {
			add_fault(md, m->hdr_chunk, r);
			break;
		}
		if (!m->whole) {
			break;
		}
		r = model_msg_check(rn, m, model_nfds(rn, m));
		if (r < 0) {
			add_fault(md, m->end_chunk, r);
			break;
		}
		md->whole++;
	}
}

static int
deliver(void *arg, const struct vhu_hdr *hdr, void *body, struct vhu_fds *fds)
{
	struct run *rn = arg;
	const struct model_msg *m;
	unsigned int i, want;

	FZ_CHECK(rn->delivered < rn->model.n, "delivery %zu of %zu messages", rn->delivered,
		 rn->model.n);
	m = &rn->model.m[rn->delivered++];
	FZ_CHECK(m->whole && (size_t)(m - rn->model.m) < rn->model.whole,
		 "delivered message %zu, which the model refuses", rn->delivered - 1);
	FZ_CHECK(m->end_chunk == rn->chunk, "message ending in chunk %u delivered in chunk %u",
		 m->end_chunk, rn->chunk);
	FZ_CHECK(memcmp(hdr, rn->stream + m->off, VHU_HDR_SIZE) == 0, "header bytes differ");
	if (hdr->size > 0) {
		FZ_CHECK(((uintptr_t)body & 7u) == 0, "body at %p not 8-byte aligned", body);
		FZ_CHECK(memcmp(body, rn->stream + m->off + VHU_HDR_SIZE, hdr->size) == 0,
			 "body bytes differ");
	}
	FZ_CHECK(vhu_msg_check(&rn->rules, hdr, body, fds->n) == 0, "delivered an invalid message");

	want = model_nfds(rn, m);
	FZ_CHECK(fds->n == want, "message %zu got %u fds, owns %u", rn->delivered - 1, fds->n,
		 want);
	for (i = 0; i < fds->n; i++) {
		FZ_CHECK(fds->fd[i] == rn->fds[m->fd_chunk][i], "fd %u is %d, chunk %u sent %d", i,
			 fds->fd[i], m->fd_chunk, rn->fds[m->fd_chunk][i]);
		FZ_CHECK(fz_fd_is_open(fds->fd[i]), "delivered fd %d is closed", fds->fd[i]);
	}
	vhu_fds_close(fds);

	if (rn->stop_at != 0 && rn->delivered == rn->stop_at) {
		return rn->stop_ret;
	}
	return 0;
}

static bool
is_fault(const struct model *md, int r)
{
	unsigned int i;

	for (i = 0; i < md->nfaults; i++) {
		if (md->faults[i] == r) {
			return true;
		}
	}
	return false;
}

static void
make_fds(struct run *rn)
{
	uint32_t c;
	unsigned int i;

	for (c = 0; c < rn->plan.n; c++) {
		for (i = 0; i < rn->plan.c[c].nfds; i++) {
			rn->fds[c][i] = fz_fd_new();
		}
	}
}

/* Feed every chunk; returns the chunk the framer stopped in, or plan.n. */
static uint32_t
feed_all(struct run *rn, struct vhu_framer *f, bool shift)
{
	uint32_t c;

	for (c = 0; c < rn->plan.n; c++) {
		const struct fz_chunk *ch = &rn->plan.c[c];
		size_t pad = shift ? 4 : 0;
		uint8_t *buf = malloc(ch->len + pad + 1);
		struct vhu_fds set;
		size_t before = rn->delivered;
		unsigned int i;
		int r;

		FZ_CHECK(buf != NULL, "malloc");
		memcpy(buf + pad, rn->stream + ch->off, ch->len);
		vhu_fds_init(&set);
		for (i = 0; i < ch->nfds; i++) {
			set.fd[i] = rn->fds[c][i];
		}
		set.n = ch->nfds;
		rn->chunk = c;
		r = vhu__framer_feed(f, buf + pad, ch->len, &set, deliver, rn);
		free(buf);
		FZ_CHECK(set.n == 0, "chunk %u: %u fds left with the caller", c, set.n);

		if (rn->stop_at != 0 && rn->delivered == rn->stop_at && rn->delivered > before) {
			FZ_CHECK(r == rn->stop_ret, "chunk %u: deliver stopped, feed: %d", c, r);
			return c;
		}
		if (c < rn->model.fault_chunk) {
			FZ_CHECK(r == 0, "chunk %u: error %d (%s) before the first fault (%u)", c,
				 r, vhu_errname(r), rn->model.fault_chunk);
			continue;
		}
		FZ_CHECK(r < 0 && is_fault(&rn->model, r),
			 "chunk %u: feed gave %d (%s), model expects a fault here (first: %d)", c,
			 r, vhu_errname(r), rn->model.faults[0]);
		return c;
	}
	return c;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz_reader rd = { data, size };
	struct vhu_framer f;
	struct run *rn = calloc(1, sizeof(*rn));
	uint8_t cfg, stop;
	int fds_before, r;
	uint32_t c, last;
	unsigned int i;

	FZ_CHECK(rn != NULL, "calloc");
	/* Opened once, before counting: it stays open across runs. */
	fz_fd_devnull();
	fds_before = fz_fd_count();
	cfg = fz_u8(&rd);
	stop = fz_u8(&rd);
	fz_rules(cfg, 1, &rn->rules);
	rn->stop_at = stop & 0x7f;
	rn->stop_ret = (stop & 0x80) ? -EIO : 1;
	fz_plan_read(&rd, &rn->plan, VHU_MAX_FDS);
	rn->stream = rd.p;
	fz_plan_fit(&rn->plan, rd.n, MAX_TOTAL_FDS);
	model_build(rn, rd.n);
	make_fds(rn);

	r = vhu__framer_init(&f, &rn->rules);
	FZ_CHECK(r == 0, "framer_init %d", r);
	last = feed_all(rn, &f, (cfg & FZ_CFG_BIT6) != 0);
	if (last == rn->plan.n) {
		FZ_CHECK(rn->delivered == rn->model.whole, "%zu of %zu whole messages delivered",
			 rn->delivered, rn->model.whole);
		FZ_CHECK(vhu__framer_idle(&f) == rn->model.ends_between,
			 "idle %d, stream ends between messages %d", vhu__framer_idle(&f),
			 rn->model.ends_between);
	}
	vhu__framer_fini(&f);
	vhu__framer_fini(&f);
	/* Chunks never fed: their fds are still ours. */
	for (c = last + 1; c < rn->plan.n; c++) {
		for (i = 0; i < rn->plan.c[c].nfds; i++) {
			close(rn->fds[c][i]);
		}
	}

	/* Every fd we made is closed now: by us on delivery, or by the framer. */
	for (c = 0; c < rn->plan.n; c++) {
		for (i = 0; i < rn->plan.c[c].nfds; i++) {
			FZ_CHECK(!fz_fd_is_open(rn->fds[c][i]), "chunk %u fd %d leaked", c,
				 rn->fds[c][i]);
		}
	}
	FZ_CHECK(fz_fd_count() == fds_before, "fd count %d, was %d", fz_fd_count(), fds_before);
	free(rn->model.m);
	free(rn);
	return 0;
}
