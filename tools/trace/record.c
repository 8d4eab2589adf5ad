/* SPDX-License-Identifier: MIT */
/* Trace lines: one per message (text or JSON, with --hex and --verbose extras) and events. */
#define _GNU_SOURCE
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/json.h"
#include "trace.h"

/* Seconds since start with microseconds: the same text in both formats. */
static void
put_time(void)
{
	int64_t us = (tool_now_ns() - app.t0) / 1000;

	if (us < 0) {
		us = 0;
	}
	if (app.opt.json) {
		fprintf(app.out, "{\"t\":%" PRId64 ".%06" PRId64, us / 1000000, us % 1000000);
	} else {
		fprintf(app.out, "%5" PRId64 ".%06" PRId64, us / 1000000, us % 1000000);
	}
}

/* What a passed fd refers to, from its /proc link (memfd, eventfd, socket, ...). */
static const char *
fd_type(int fd, char *buf, size_t len)
{
	char link[64], target[256];
	struct stat st;
	ssize_t n;

	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	n = readlink(link, target, sizeof(target) - 1);
	if (n > 0) {
		target[n] = '\0';
		if (strncmp(target, "/memfd:", 7) == 0) {
			return "memfd";
		}
		if (strncmp(target, "socket:", 7) == 0) {
			return "socket";
		}
		if (strncmp(target, "pipe:", 5) == 0) {
			return "pipe";
		}
		if (strncmp(target, "anon_inode:", 11) == 0) {
			/* "anon_inode:[eventfd]" and the like: the name in brackets. */
			const char *name = target + 11;
			size_t l;

			if (*name == '[') {
				name++;
			}
			l = strcspn(name, "]");
			snprintf(buf, len, "%.*s", (int)l, name);
			return buf;
		}
	}
	if (fstat(fd, &st) != 0) {
		return "unknown";
	}
	if (S_ISREG(st.st_mode)) {
		return "file";
	}
	if (S_ISDIR(st.st_mode)) {
		return "directory";
	}
	if (S_ISCHR(st.st_mode)) {
		return "chardev";
	}
	if (S_ISBLK(st.st_mode)) {
		return "blockdev";
	}
	return "other";
}

const char *
chan_name(uint8_t chan)
{
	return chan == VHU_CHAN_BACKEND ? "backend-channel" : "main";
}

const char *
side_name(uint8_t side)
{
	return side == SIDE_BACK ? "back-end" : "front-end";
}

static void
hexdump(const struct vhu_hdr *h, const uint8_t *body)
{
	uint8_t hb[VHU_HDR_SIZE];
	uint32_t total = VHU_HDR_SIZE + h->size;
	uint32_t i, j;

	memcpy(hb, h, VHU_HDR_SIZE);
	for (i = 0; i < total; i += 16) {
		fprintf(app.out, "        %04" PRIx32 " ", i);
		for (j = i; j < i + 16 && j < total; j++) {
			uint8_t c = j < VHU_HDR_SIZE ? hb[j] : body[j - VHU_HDR_SIZE];

			fprintf(app.out, " %02x", c);
		}
		putc('\n', app.out);
	}
}

static void
json_hex(const struct vhu_hdr *h, const uint8_t *body)
{
	uint8_t hb[VHU_HDR_SIZE];
	uint32_t i;

	memcpy(hb, h, VHU_HDR_SIZE);
	fputs(",\"hex\":\"", app.out);
	for (i = 0; i < VHU_HDR_SIZE; i++) {
		fprintf(app.out, "%02x", hb[i]);
	}
	for (i = 0; i < h->size; i++) {
		fprintf(app.out, "%02x", body[i]);
	}
	putc('"', app.out);
}

void
trace_message(const struct end *e, const struct vhu_msg *m, int bad, const char *note)
{
	const struct vhu_hdr *h = &m->hdr;
	const char *dir = e->side == SIDE_FRONT ? "F->B" : "B->F";
	const char *name = vhu_req_name((enum vhu_channel)e->chan, h->request);
	bool reply = (h->flags & VHU_FLAG_REPLY) != 0;
	bool need = (h->flags & VHU_FLAG_NEED_REPLY) != 0;
	const uint8_t *body = m->body;
	struct emit em = { .f = app.out, .json = app.opt.json };
	char tbuf[32];
	unsigned int i;
	FILE *f = app.out;

	put_time();
	if (app.opt.json) {
		fprintf(f, ",\"session\":%u,\"dir\":\"%s\",\"channel\":\"%s\",\"request\":",
			e->s->id, dir, chan_name(e->chan));
		tool_json_str(app.out, name);
		fprintf(f, ",\"code\":%" PRIu32 ",\"flags\":\"0x%" PRIx32 "\",\"reply\":%s"
			",\"need_reply\":%s,\"size\":%" PRIu32 ",\"fds\":%u", h->request, h->flags,
			reply ? "true" : "false", need ? "true" : "false", h->size, m->fds.n);
		if (app.opt.verbose) {
			fputs(",\"fd_types\":[", f);
			for (i = 0; i < m->fds.n; i++) {
				fprintf(f, "%s", i ? "," : "");
				tool_json_str(app.out, fd_type(m->fds.fd[i], tbuf, sizeof(tbuf)));
			}
			putc(']', f);
		}
		fputs(",\"body\":{", f);
		describe_body(&em, e->chan, h, body);
		fprintf(f, "},\"valid\":%s", bad == 0 ? "true" : "false");
		if (bad != 0) {
			fputs(",\"error\":", f);
			tool_json_str(app.out, vhu_errname(bad));
			fputs(",\"error_text\":", f);
			tool_json_str(app.out, vhu_strerror(bad));
		}
		if (note != NULL) {
			fputs(",\"note\":", f);
			tool_json_str(app.out, note);
		}
		if (app.opt.hex) {
			json_hex(h, body);
		}
		fputs("}\n", f);
		fflush(f);
		return;
	}
	if (app.opt.keep) {
		/* Sessions run at once and their lines interleave: each names its own. */
		fprintf(f, " #%u", e->s->id);
	}
	fprintf(f, " %s %-15s %-22s flags=0x%" PRIx32, dir, chan_name(e->chan), name, h->flags);
	if (reply || need) {
		fprintf(f, "(%s%s%s)", reply ? "REPLY" : "", reply && need ? "|" : "",
			need ? "NEED_REPLY" : "");
	}
	fprintf(f, " size=%" PRIu32 " fds=%u", h->size, m->fds.n);
	if (app.opt.verbose && m->fds.n > 0) {
		putc('(', f);
		for (i = 0; i < m->fds.n; i++) {
			fprintf(f, "%s%s", i ? "," : "", fd_type(m->fds.fd[i], tbuf, sizeof(tbuf)));
		}
		putc(')', f);
	}
	em.sep[0] = true;
	describe_body(&em, e->chan, h, body);
	if (note != NULL) {
		fprintf(f, " [%s]", note);
	}
	if (bad != 0) {
		fprintf(f, " INVALID %s: %s", vhu_errname(bad), vhu_strerror(bad));
	}
	putc('\n', f);
	if (app.opt.hex) {
		hexdump(h, body);
	}
	fflush(f);
}

void
trace_event(const struct session *s, const char *event, const char *chan, const char *side,
	    int reason, const char *text)
{
	FILE *f = app.out;

	put_time();
	if (app.opt.json) {
		fprintf(f, ",\"event\":\"%s\",\"session\":%u", event, s != NULL ? s->id : 0);
		if (chan != NULL) {
			fprintf(f, ",\"channel\":\"%s\"", chan);
		}
		if (side != NULL) {
			fprintf(f, ",\"side\":\"%s\"", side);
		}
		if (reason != 0) {
			fputs(",\"reason\":", f);
			tool_json_str(app.out, vhu_errname(reason));
		}
		fputs(",\"text\":", f);
		tool_json_str(app.out, text);
		fputs("}\n", f);
	} else {
		fprintf(f, " ---- session %u: %s\n", s != NULL ? s->id : 0, text);
	}
	fflush(f);
}
