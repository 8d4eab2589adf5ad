/* SPDX-License-Identifier: MIT */
/*
 * iovec cursor. A stream transfer may stop anywhere inside an iovec array;
 * these helpers resume from there without copying the array (mutable
 * cursor) or without touching a caller's const array (vhu_iov_tail).
 */
#include <string.h>

#include <vhu/iov.h>

/* Step over iovecs that have nothing left, so c->iov has bytes or c->cnt is 0. */
static void
skip_empty(struct vhu_iovc *c)
{
	while (c->cnt > 0 && c->iov->iov_len == 0) {
		c->iov++;
		c->cnt--;
	}
}

void
vhu_iovc_init(struct vhu_iovc *c, struct iovec *iov, unsigned int cnt)
{
	c->iov = iov;
	c->cnt = iov ? cnt : 0;
	skip_empty(c);
}

size_t
vhu_iovc_advance(struct vhu_iovc *c, size_t n)
{
	size_t done = 0;

	skip_empty(c);
	while (done < n && c->cnt > 0) {
		size_t step = n - done;

		if (step >= c->iov->iov_len) {
			done += c->iov->iov_len;
			c->iov++;
			c->cnt--;
		} else {
			c->iov->iov_base = (char *)c->iov->iov_base + step;
			c->iov->iov_len -= step;
			done += step;
		}
		skip_empty(c);
	}
	return done;
}

size_t
vhu_iovc_len(const struct vhu_iovc *c)
{
	return vhu_iov_len(c->iov, c->cnt);
}

bool
vhu_iovc_done(const struct vhu_iovc *c)
{
	unsigned int i;

	for (i = 0; i < c->cnt; i++) {
		if (c->iov[i].iov_len > 0) {
			return false;
		}
	}
	return true;
}

size_t
vhu_iov_len(const struct iovec *iov, unsigned int cnt)
{
	size_t len = 0;
	unsigned int i;

	if (!iov) {
		return 0;
	}
	for (i = 0; i < cnt; i++) {
		len += iov[i].iov_len;
	}
	return len;
}

unsigned int
vhu_iov_tail(const struct iovec *src, unsigned int cnt, size_t off,
	     struct iovec *dst, unsigned int dst_max)
{
	unsigned int i, n = 0;

	if (!src || !dst) {
		return 0;
	}
	for (i = 0; i < cnt && n < dst_max; i++) {
		size_t len = src[i].iov_len;

		if (off >= len) {
			off -= len;
			continue;
		}
		/* Empty iovecs carry nothing; leaving them out saves dst slots. */
		dst[n].iov_base = (char *)src[i].iov_base + off;
		dst[n].iov_len = len - off;
		off = 0;
		n++;
	}
	return n;
}

size_t
vhu_iov_to_buf(const struct iovec *iov, unsigned int cnt, size_t off, void *buf, size_t len)
{
	size_t copied = 0;
	unsigned int i;

	if (!iov) {
		return 0;
	}
	for (i = 0; i < cnt && copied < len; i++) {
		size_t avail = iov[i].iov_len, chunk;

		if (off >= avail) {
			off -= avail;
			continue;
		}
		chunk = avail - off;
		if (chunk > len - copied) {
			chunk = len - copied;
		}
		memcpy((char *)buf + copied, (const char *)iov[i].iov_base + off, chunk);
		copied += chunk;
		off = 0;
	}
	return copied;
}
