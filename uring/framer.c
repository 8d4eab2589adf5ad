/* SPDX-License-Identifier: MIT */
/*
 * Stream framing. A message that lies entirely inside a chunk is delivered
 * from the chunk itself when its body is 8-byte aligned there; otherwise,
 * and for a message that straddles chunks, it is copied into the
 * reassembly buffer. The header is checked as soon as its 12 bytes are
 * known, so an oversized size is refused before any body byte is held.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <vhu/error.h>

#include "framer.h"

#define HDR_OFF		4u
#define BODY_OFF	(HDR_OFF + VHU_HDR_SIZE)

_Static_assert(BODY_OFF % 8 == 0, "reassembled bodies are 8-byte aligned");

int
vhu__framer_init(struct vhu_framer *f, const struct vhu_rules *rules)
{
	memset(f, 0, sizeof(*f));
	f->rules = *rules;
	if (f->rules.max_size == 0) {
		f->rules.max_size = VHU_DEFAULT_MAX_SIZE;
	}
	vhu_fds_init(&f->fds);
	if (f->rules.max_size > VHU_CONN_MAX_SIZE) {
		return -EINVAL;
	}
	/* malloc returns 16-byte aligned memory, so buf + BODY_OFF is 8-aligned. */
	f->buf = malloc((size_t)BODY_OFF + f->rules.max_size);
	if (!f->buf) {
		return -ENOMEM;
	}
	return 0;
}

void
vhu__framer_fini(struct vhu_framer *f)
{
	vhu_fds_close(&f->fds);
	free(f->buf);
	f->buf = NULL;
	f->have = 0;
	f->need = 0;
}

static int
check_hdr(const struct vhu_framer *f, const struct vhu_hdr *hdr)
{
	int r = f->frames_only ? 0 : vhu_hdr_check(&f->rules, hdr);

	if (r < 0) {
		return r;
	}
	/* The reassembly buffer holds max_size body bytes, whatever the rules say. */
	if (hdr->size > f->rules.max_size) {
		return -VHU_EOVERSIZED;
	}
	return 0;
}

/* Validate the whole message, then hand it over; fds are consumed either way. */
static int
emit(struct vhu_framer *f, const struct vhu_hdr *hdr, void *body, struct vhu_fds *fds,
     vhu_framer_deliver_fn deliver, void *arg)
{
	int r;

	if (f->frames_only) {
		/* The control space holds one fd more than any message may carry. */
		r = fds->n > VHU_MAX_FDS ? -VHU_EFDS : 0;
	} else {
		r = vhu_msg_check(&f->rules, hdr, body, fds->n);
	}
	if (r < 0) {
		vhu_fds_close(fds);
		return r;
	}
	r = deliver(arg, hdr, body, fds);
	/* A well-behaved deliver leaves the set empty; make sure nothing leaks. */
	if (fds->n > 0) {
		vhu_fds_close(fds);
	}
	return r;
}

/* Finish the message held from earlier chunks. *p advances over what it used. */
static int
feed_held(struct vhu_framer *f, const uint8_t *data, size_t len, size_t *p,
	  struct vhu_fds *chunk_fds, vhu_framer_deliver_fn deliver, void *arg)
{
	struct vhu_hdr hdr;
	size_t take;
	int r;

	if (f->have < VHU_HDR_SIZE) {
		take = VHU_HDR_SIZE - f->have;
		if (take > len) {
			take = len;
		}
		memcpy(f->buf + HDR_OFF + f->have, data, take);
		f->have += (uint32_t)take;
		*p += take;
		if (f->have < VHU_HDR_SIZE) {
			return 0;
		}
		memcpy(&hdr, f->buf + HDR_OFF, sizeof(hdr));
		r = check_hdr(f, &hdr);
		if (r < 0) {
			return r;
		}
		f->need = VHU_HDR_SIZE + (uint64_t)hdr.size;
	}
	/*
	 * fds in a chunk where this message goes on to (or past) the end: no
	 * message begins in the chunk, so they came with body bytes.
	 */
	if (chunk_fds->n > 0 && f->need - f->have >= (uint64_t)(len - *p)) {
		return -VHU_EINVALID;
	}
	take = len - *p;
	if (f->need - f->have < (uint64_t)take) {
		take = (size_t)(f->need - f->have);
	}
	memcpy(f->buf + HDR_OFF + f->have, data + *p, take);
	f->have += (uint32_t)take;
	*p += take;
	if (f->have < f->need) {
		return 0;
	}
	memcpy(&hdr, f->buf + HDR_OFF, sizeof(hdr));
	f->have = 0;
	f->need = 0;
	return emit(f, &hdr, f->buf + BODY_OFF, &f->fds, deliver, arg);
}

int
vhu__framer_feed_part(struct vhu_framer *f, const uint8_t *data, size_t len,
		      struct vhu_fds *fds, vhu_framer_deliver_fn deliver, void *arg, size_t *used)
{
	/*
	 * Sets are moved by their n slots only: zeroing or copying all
	 * VHU_MAX_FDS of them per message was most of the framer's time.
	 */
	struct vhu_fds none, *cf = fds ? fds : &none;
	size_t p = 0;
	int r = 0;

	none.n = 0;
	f->began = false;
	if (f->have > 0) {
		r = feed_held(f, data, len, &p, cf, deliver, arg);
		if (r != 0) {
			goto out;
		}
	}
	while (p < len) {
		size_t rem = len - p;
		struct vhu_fds *mfds = &none;	/* stays empty: consumers only empty a set */
		struct vhu_hdr hdr;
		uint64_t total;
		uint8_t *body;

		if (rem < VHU_HDR_SIZE) {
			/* The header straddles: the last message that begins in this chunk. */
			memcpy(f->buf + HDR_OFF, data + p, rem);
			f->have = (uint32_t)rem;
			f->need = 0;
			f->began = true;
			vhu__fds_move(&f->fds, cf);
			p = len;
			break;
		}
		memcpy(&hdr, data + p, sizeof(hdr));
		total = VHU_HDR_SIZE + (uint64_t)hdr.size;
		/*
		 * A message that does not end in this chunk, or is larger than the
		 * reassembly buffer, is judged by its header before any of it is
		 * copied; one that ends here and fits is judged whole by emit()
		 * (vhu_msg_check() checks the header first, with the same results).
		 */
		r = total > rem || hdr.size > f->rules.max_size || f->frames_only ?
			check_hdr(f, &hdr) : 0;
		if (r < 0) {
			goto out;
		}
		if (total >= rem) {
			/* Nothing begins after it in this chunk: the chunk's fds are its own. */
			mfds = cf;
		}
		if (total > rem) {
			memcpy(f->buf + HDR_OFF, data + p, rem);
			f->have = (uint32_t)rem;
			f->need = total;
			f->began = true;
			vhu__fds_move(&f->fds, mfds);
			p = len;
			break;
		}
		body = (uint8_t *)data + p + VHU_HDR_SIZE;
		if (hdr.size == 0) {
			body = f->buf + BODY_OFF;
		} else if ((uintptr_t)body & 7u) {
			memcpy(f->buf + BODY_OFF, body, hdr.size);
			body = f->buf + BODY_OFF;
		}
		p += (size_t)total;
		r = emit(f, &hdr, body, mfds, deliver, arg);
		if (r != 0) {
			goto out;
		}
	}
	if (cf->n > 0) {
		/* No message began in this chunk, yet fds came with it. */
		r = -VHU_EINVALID;
	}
out:
	if (used) {
		*used = p;
	}
	if (r < 0) {
		vhu_fds_close(cf);
		vhu_fds_close(&f->fds);
		f->have = 0;
		f->need = 0;
	} else if (r == 0) {
		vhu_fds_close(cf);	/* empty: every fd went to a message */
	}
	return r;
}

void *
vhu__framer_keep(struct vhu_framer *f, void *body, uint32_t size)
{
	uint8_t *own = f->buf + BODY_OFF;

	if (body != own && size > 0) {
		memmove(own, body, size);
	}
	return own;
}
