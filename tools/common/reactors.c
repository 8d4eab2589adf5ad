/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include "reactors.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vhu/device.h>
#include <vhu/error.h>
#include <vhu/uring.h>

#include "clock.h"
#include "log.h"
#include "num.h"
#include "signals.h"

/* How long a wait may block before a flag is looked at again. */
#define WAIT_SLICE_MS	200
/* How long the devices may take to let go of every ring at exit. */
#define GONE_MS		5000

#define LOAD(p)		__atomic_load_n((p), __ATOMIC_ACQUIRE)
#define STORE(p, v)	__atomic_store_n((p), (v), __ATOMIC_RELEASE)

struct reactor {
	struct tool_reactors *rx;
	pthread_t th;
	unsigned int cpu;
	int rc;				/* the ring's creation, then its loop */
	sem_t ready;
};

struct tool_reactors {
	unsigned int n;
	struct vhu_ring_opts ro;
	struct vhu_ring *rings[TOOL_MAX_CPUS];
	struct reactor r[TOOL_MAX_CPUS];
	unsigned int started;		/* threads running: r[1 .. started] */
	bool busy_poll;			/* atomic */
	bool exit;			/* atomic: the threads stop */
};

/* The server let go of every ring (one server per process). */
static bool g_gone;

static int
cpu_token(const char *s, size_t len, unsigned int *out)
{
	char buf[16];

	if (len == 0 || len >= sizeof(buf)) {
		return -EINVAL;
	}
	memcpy(buf, s, len);
	buf[len] = '\0';
	return tool_parse_uint(buf, 0, CPU_SETSIZE - 1, out);
}

int
tool_parse_cpus(const char *s, unsigned int *cpus, unsigned int *n, char *why,
		unsigned int whysz)
{
	cpu_set_t allowed, seen;
	const char *p = s;

	*n = 0;
	CPU_ZERO(&seen);
	if (sched_getaffinity(0, sizeof(allowed), &allowed) != 0) {
		CPU_ZERO(&allowed);
		CPU_SET(0, &allowed);
	}
	if (*s == '\0') {
		snprintf(why, whysz, "an empty CPU list");
		return -EINVAL;
	}
	while (*p != '\0') {
		const char *end = strchr(p, ',');
		const char *dash;
		size_t len = end != NULL ? (size_t)(end - p) : strlen(p);
		unsigned int lo, hi, c;

		dash = memchr(p, '-', len);
		if (dash == NULL) {
			if (cpu_token(p, len, &lo) < 0) {
				goto syntax;
			}
			hi = lo;
		} else if (cpu_token(p, (size_t)(dash - p), &lo) < 0 ||
			   cpu_token(dash + 1, len - (size_t)(dash - p) - 1, &hi) < 0 || hi < lo) {
			goto syntax;
		}
		for (c = lo; c <= hi; c++) {
			if (CPU_ISSET(c, &seen)) {
				snprintf(why, whysz, "CPU %u is named twice", c);
				return -EINVAL;
			}
			if (!CPU_ISSET(c, &allowed)) {
				snprintf(why, whysz, "CPU %u is not available to this process", c);
				return -ERANGE;
			}
			if (*n == TOOL_MAX_CPUS) {
				snprintf(why, whysz, "more than %u CPUs", TOOL_MAX_CPUS);
				return -EINVAL;
			}
			CPU_SET(c, &seen);
			cpus[(*n)++] = c;
		}
		if (end == NULL) {
			break;
		}
		p = end + 1;
		if (*p == '\0') {
			goto syntax;
		}
	}
	return 0;
syntax:
	snprintf(why, whysz, "'%s' is not a CPU list (like 0,1 or 0-3)", s);
	return -EINVAL;
}

static int
pin(unsigned int cpu)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	return sched_setaffinity(0, sizeof(set), &set) == 0 ? 0 : -errno;
}

static bool
transient(int rc)
{
	return rc >= 0 || rc == -EINTR || rc == -ETIME || rc == -EAGAIN;
}

static void *
reactor_main(void *arg)
{
	struct reactor *r = arg;
	struct tool_reactors *rx = r->rx;
	struct vhu_ring *ring = NULL;
	unsigned int i = (unsigned int)(r - rx->r);
	sigset_t stop;
	int rc;

	/* The first thread takes the signals; this one only runs its ring. */
	sigemptyset(&stop);
	sigaddset(&stop, SIGINT);
	sigaddset(&stop, SIGTERM);
	sigaddset(&stop, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &stop, NULL);
	rc = pin(r->cpu);
	if (rc == 0) {
		/* Created here: a SINGLE_ISSUER ring is driven by the thread that made it. */
		rc = vhu_ring_create(&rx->ro, &ring);
	}
	rx->rings[i] = ring;
	r->rc = rc;
	sem_post(&r->ready);
	if (rc < 0) {
		return NULL;
	}
	while (!LOAD(&rx->exit)) {
		rc = LOAD(&rx->busy_poll) ? vhu_ring_poll(ring)
					  : vhu_ring_wait(ring, WAIT_SLICE_MS);
		if (!transient(rc) && r->rc == 0) {
			r->rc = rc;	/* reported by the first thread at exit */
		}
	}
	vhu_ring_destroy(ring);
	return NULL;
}

void
tool_reactors_stop(struct tool_reactors *rx)
{
	unsigned int i;

	STORE(&rx->exit, true);
	for (i = 1; i <= rx->started; i++) {
		pthread_join(rx->r[i].th, NULL);
		if (rx->r[i].rc < 0) {
			tool_log_err("the ring on CPU %u failed: %s", rx->r[i].cpu,
				     vhu_strerror(rx->r[i].rc));
		}
		sem_destroy(&rx->r[i].ready);
	}
	vhu_ring_destroy(rx->rings[0]);
	free(rx);
}

int
tool_reactors_start(const unsigned int *cpus, unsigned int n, const struct vhu_ring_opts *ro,
		    struct tool_reactors **out)
{
	struct tool_reactors *rx;
	unsigned int i;
	int rc;

	*out = NULL;
	if (n == 0 || n > TOOL_MAX_CPUS) {
		return -EINVAL;
	}
	rx = calloc(1, sizeof(*rx));
	if (rx == NULL) {
		return -ENOMEM;
	}
	rx->n = n;
	rx->ro = *ro;
	for (i = 0; i < n; i++) {
		rx->r[i].rx = rx;
		rx->r[i].cpu = cpus[i];
	}
	rc = pin(cpus[0]);
	if (rc < 0) {
		tool_log_err("cannot run on CPU %u: %s", cpus[0], vhu_strerror(rc));
		free(rx);
		return rc;
	}
	rc = vhu_ring_create(ro, &rx->rings[0]);
	if (rc < 0) {
		tool_log_err("cannot create the io_uring: %s (%s)", vhu_strerror(rc),
			     vhu_ring_error_hint(rc));
		free(rx);
		return rc;
	}
	for (i = 1; i < n; i++) {
		struct reactor *r = &rx->r[i];

		sem_init(&r->ready, 0, 0);
		rc = -pthread_create(&r->th, NULL, reactor_main, r);
		if (rc < 0) {
			sem_destroy(&r->ready);
			tool_log_err("cannot start the thread for CPU %u: %s", r->cpu,
				     vhu_strerror(rc));
			break;
		}
		rx->started = i;
		while (sem_wait(&r->ready) != 0 && errno == EINTR) {
		}
		if (r->rc < 0) {
			rc = r->rc;
			tool_log_err("cannot set up the ring on CPU %u: %s", r->cpu,
				     vhu_strerror(rc));
			break;
		}
	}
	if (rc < 0) {
		tool_reactors_stop(rx);
		return rc;
	}
	*out = rx;
	return 0;
}

struct vhu_ring *const *
tool_reactors_rings(const struct tool_reactors *rx)
{
	return rx->rings;
}

unsigned int
tool_reactors_count(const struct tool_reactors *rx)
{
	return rx->n;
}

void
tool_reactors_server_gone(void *ctx)
{
	STORE(&g_gone, true);
}

int
tool_reactors_serve(struct tool_reactors *rx, struct vhu_dev_server *srv, bool busy_poll)
{
	struct vhu_ring *ring = rx->rings[0];
	int64_t deadline;
	int rc = 0;

	STORE(&rx->busy_poll, busy_poll);
	while (!tool_stop_signal()) {
		rc = busy_poll ? vhu_ring_poll(ring) : vhu_ring_wait(ring, WAIT_SLICE_MS);
		tool_log_flush();
		if (!transient(rc)) {
			tool_log_err("the ring failed: %s; exiting", vhu_strerror(rc));
			break;
		}
		rc = 0;
	}
	if (rc == 0) {
		tool_log_info("%s: shutting down", strsignal(tool_stop_signal()));
	}
	/* Every ring lets go of every device (requests finish or are dropped) before it stops. */
	STORE(&g_gone, false);
	vhu_dev_server_destroy(srv);
	deadline = tool_now_ns() + GONE_MS * 1000000ll;
	while (!LOAD(&g_gone) && tool_now_ns() < deadline) {
		int r = vhu_ring_wait(ring, 50);

		if (!transient(r)) {
			break;
		}
	}
	if (!LOAD(&g_gone)) {
		tool_log_err("devices still busy after %d ms; exiting without them", GONE_MS);
	}
	tool_log_flush();
	tool_reactors_stop(rx);
	return rc;
}
