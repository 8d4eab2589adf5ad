/* SPDX-License-Identifier: MIT */
#include "listen.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>

#include "report.h"

static volatile sig_atomic_t stopping;

static void
on_signal(int sig)
{
	(void)sig;
	stopping = 1;
}

void
bench_listen_signals(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
}

bool
bench_listen_stopping(void)
{
	return stopping != 0;
}

void
bench_listen_ready(const char *path, const char *transport)
{
	printf("vhu-bench: serving %s with %s (one line per session; Ctrl-C stops)\n", path,
	       transport);
	fflush(stdout);
}

static uint64_t
cpu_ns(void)
{
	struct rusage ru;

	if (getrusage(RUSAGE_SELF, &ru) < 0) {
		return 0;
	}
	return (uint64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000u +
	       (uint64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000u;
}

void
bench_session_open(struct bench_session *s)
{
	if (s->open++ == 0) {
		unsigned int index = s->index;

		memset(s, 0, sizeof(*s));
		s->index = index;
		s->open = 1;
		s->t0_ns = bench_now_ns();
		s->cpu0_ns = cpu_ns();
		s->allocs0 = bench_allocs();
	}
	s->conns++;
}

bool
bench_session_close(struct bench_session *s, const char *transport,
		    const struct bench_counts *k, int err, const char *detail)
{
	double secs, rate, cpu, allocs;
	char r[16], c[16];

	if (k) {
		s->k.msgs += k->msgs;
		s->k.replies += k->replies;
		s->k.fds += k->fds;
		s->k.fd_msgs += k->fd_msgs;
		s->k.probes += k->probes;
	}
	if (err < 0 && s->err == 0) {
		s->err = err;
		snprintf(s->detail, sizeof(s->detail), "%s", detail && *detail ? detail :
			 vhu_strerror(err));
	}
	if (--s->open > 0) {
		return false;
	}
	secs = (double)(bench_now_ns() - s->t0_ns) / 1e9;
	rate = secs > 0 ? (double)s->k.msgs / secs : 0;
	cpu = s->k.msgs ? (double)(cpu_ns() - s->cpu0_ns) / (double)s->k.msgs : 0;
	allocs = s->k.msgs ? (double)(bench_allocs() - s->allocs0) / (double)s->k.msgs : 0;
	bench_fmt_rate(r, sizeof(r), rate);
	bench_fmt_us(c, sizeof(c), cpu);
	s->index++;
	printf("session %u (%s): %u connection%s, %llu requests, %llu replies, %llu fds "
	       "in %.2f s: %s msgs/s, server CPU %s us/msg", s->index, transport, s->conns,
	       s->conns == 1 ? "" : "s", (unsigned long long)s->k.msgs,
	       (unsigned long long)s->k.replies, (unsigned long long)s->k.fds, secs, r, c);
	if (bench_allocs_counted()) {
		printf(", %.2g allocs/msg", allocs);
	}
	if (s->err < 0) {
		printf("; a connection failed: %s", s->detail);
	}
	printf("\n");
	fflush(stdout);
	return true;
}
