/* SPDX-License-Identifier: MIT */
/*
 * The input formats of the fuzz targets. The targets read them; the corpus
 * recorder writes them, so a recorded handshake and a mutated one are read
 * the same way. Every reader is total: a short input reads as zeros, so
 * any byte string is a valid input.
 *
 * fuzz_wire:
 *   cfg, nfds, aux, aux2, then a 12-byte header, then body bytes.
 * fuzz_framer:
 *   cfg, stop, plan, then the byte stream.
 * fuzz_endpoint:
 *   cfg, plan, nops, nops * (op, arg), then the byte stream.
 *
 * cfg: bit 0 channel, bits 1-2 expect (fuzz_wire keeps 3, an invalid
 * value; the others fold it to EITHER), bits 3-5 index into fz_max_sizes,
 * bit 6 target specific (framer: chunks at 4 mod 8; endpoint: non-blocking).
 *
 * plan: n (at most FZ_MAX_CHUNKS), then n * (len lo, len hi, nfds). The
 * stream is cut into chunks of those lengths (clamped to what is left);
 * what remains after the last one is one more chunk without fds.
 */
#ifndef VHU_FUZZ_INPUT_H
#define VHU_FUZZ_INPUT_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <vhu/wire.h>

#define FZ_MAX_CHUNKS	64u
#define FZ_MAX_OPS	32u

#define FZ_CFG(chan, expect, maxsel, bit6) \
	((uint8_t)(((chan) & 1u) | (((expect) & 3u) << 1) | (((maxsel) & 7u) << 3) | \
		   ((bit6) ? 0x40u : 0u)))
#define FZ_CFG_BIT6	0x40u

/* Index 0 is the default limit; the small ones make the size check bite. */
static const uint32_t fz_max_sizes[8] = { 0, 12, 40, 64, 256, 4096, 8192, 65536 };

/* The recorded sessions use the default limit, like a real endpoint. */
#define FZ_MAXSEL_DEFAULT	0u

struct fz_reader {
	const uint8_t *p;
	size_t n;
};

static inline uint8_t
fz_u8(struct fz_reader *r)
{
	uint8_t v;

	if (r->n == 0) {
		return 0;
	}
	v = *r->p++;
	r->n--;
	return v;
}

static inline uint32_t
fz_u32(struct fz_reader *r)
{
	uint32_t v = 0;
	unsigned int i;

	for (i = 0; i < 4; i++) {
		v |= (uint32_t)fz_u8(r) << (8 * i);
	}
	return v;
}

/* Rules from a cfg byte; fold_expect maps the invalid expect value 3 to EITHER. */
static inline void
fz_rules(uint8_t cfg, int fold_expect, struct vhu_rules *rules)
{
	rules->channel = cfg & 1u;
	rules->expect = (cfg >> 1) & 3u;
	if (fold_expect && rules->expect > VHU_EXPECT_EITHER) {
		rules->expect = VHU_EXPECT_EITHER;
	}
	rules->max_size = fz_max_sizes[(cfg >> 3) & 7u];
}

struct fz_chunk {
	size_t off;
	size_t len;
	unsigned int nfds;
};

struct fz_plan {
	unsigned int n;
	struct fz_chunk c[FZ_MAX_CHUNKS + 1];
};

/* Read the plan's entries; the lengths are fitted to the stream by fz_plan_fit. */
static inline void
fz_plan_read(struct fz_reader *r, struct fz_plan *pl, unsigned int max_fds)
{
	unsigned int i, n = fz_u8(r) % (FZ_MAX_CHUNKS + 1);

	for (i = 0; i < n; i++) {
		unsigned int lo = fz_u8(r), hi = fz_u8(r);

		pl->c[i].len = lo | (hi << 8);
		pl->c[i].nfds = fz_u8(r) % (max_fds + 1);
	}
	pl->n = n;
}

/*
 * Lay the chunks over a stream of len bytes; cap the fds of the whole plan
 * at max_total (later chunks lose theirs).
 */
static inline void
fz_plan_fit(struct fz_plan *pl, size_t len, unsigned int max_total)
{
	unsigned int i, total = 0;
	size_t off = 0;

	for (i = 0; i < pl->n; i++) {
		pl->c[i].off = off;
		if (pl->c[i].len > len - off) {
			pl->c[i].len = len - off;
		}
		off += pl->c[i].len;
		if (pl->c[i].nfds > max_total - total) {
			pl->c[i].nfds = 0;
		}
		total += pl->c[i].nfds;
	}
	if (off < len || pl->n == 0) {
		pl->c[pl->n].off = off;
		pl->c[pl->n].len = len - off;
		pl->c[pl->n].nfds = 0;
		pl->n++;
	}
}

/* Writer side (the recorder): a growing byte buffer. */
struct fz_buf {
	uint8_t b[16384];
	size_t n;
	int overflow;
};

static inline void
fz_put(struct fz_buf *w, const void *p, size_t len)
{
	if (len == 0) {
		return;
	}
	if (len > sizeof(w->b) - w->n) {
		w->overflow = 1;
		return;
	}
	memcpy(w->b + w->n, p, len);
	w->n += len;
}

static inline void
fz_put_u8(struct fz_buf *w, uint8_t v)
{
	fz_put(w, &v, 1);
}

static inline void
fz_put_chunk(struct fz_buf *w, size_t len, unsigned int nfds)
{
	fz_put_u8(w, (uint8_t)(len & 0xff));
	fz_put_u8(w, (uint8_t)(len >> 8));
	fz_put_u8(w, (uint8_t)nfds);
}

#endif
