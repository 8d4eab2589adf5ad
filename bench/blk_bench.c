/* SPDX-License-Identifier: MIT */
/*
 * The blk-* scenarios: one client thread drives every queue of a
 * vhu_blkdrv by polling (submit, kick, harvest), keeping --iodepth
 * requests in flight per queue; each target is first verified (a pattern
 * written and read back: it must come back, or come back as zeroes from a
 * null device that was told to read zeroes), then measured --reps times.
 * Figures: IOPS, MB/s, latency percentiles, the client's CPU per I/O (all
 * of it, spinning included, and the part spent in calls that did work),
 * the back-end's CPU per I/O (schedstat of its PID from SO_PEERCRED).
 */
#define _GNU_SOURCE
#include "blk_bench.h"

#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <inttypes.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>
#include <dirent.h>

#include <vhu/blkdrv.h>
#include <vhu/error.h>
#include <vhu/wire.h>

#include "common/num.h"
#include "stats.h"

#define MAX_TARGETS	8
#define MAX_DEPTHS	4
#define MAX_SAMPLES	(8u << 20)
#define VERIFY_BYTES	(4u << 20)
#define SPAN_MAX	(1ull << 30)	/* random offsets within the first GiB */

enum blk_sc { SC_RANDREAD, SC_RANDWRITE, SC_SEQ, SC_N };
static const char *const sc_names[SC_N] = { "blk-randread", "blk-randwrite", "blk-seq" };

struct target {
	char name[32];
	const char *path;
};

struct opts {
	unsigned int scenarios;
	unsigned int bs;		/* 0: 4 KiB, 64 KiB for blk-seq */
	unsigned int depths[MAX_DEPTHS];
	unsigned int ndepths;
	unsigned int queues;
	unsigned int reps;
	unsigned int ms;
	int cpu;
	bool no_event_idx;		/* do not negotiate VIRTIO_RING_F_EVENT_IDX */
	bool wait;			/* sleep on the call eventfds instead of spinning */
	bool json;
	const char *plot;
	struct target t[MAX_TARGETS];
	unsigned int nt;
};

struct figures {
	bool ok;
	char err[160];
	double iops, mbps;
	uint64_t p50, p99, p999;	/* ns */
	double client_ns, work_ns, backend_ns;	/* per I/O */
	double kicks;				/* kick eventfd writes per I/O */
	bool event_idx;				/* negotiated */
	const char *verified;
};

struct req {
	uint64_t t0;
	unsigned int q;
	unsigned int slot;
};

static uint64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t
thread_cpu_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* CPU time of every thread of pid, from /proc/PID/task/ * /schedstat; 0 if unknown. */
static uint64_t
proc_cpu_ns(int pid)
{
	char dir[64], p[384];
	struct dirent *e;
	uint64_t sum = 0;
	DIR *d;

	if (pid <= 0) {
		return 0;
	}
	snprintf(dir, sizeof(dir), "/proc/%d/task", pid);
	d = opendir(dir);
	if (d == NULL) {
		return 0;
	}
	while ((e = readdir(d)) != NULL) {
		unsigned long long v;
		FILE *f;

		if (e->d_name[0] == '.') {
			continue;
		}
		snprintf(p, sizeof(p), "%s/%s/schedstat", dir, e->d_name);
		f = fopen(p, "re");
		if (f != NULL) {
			if (fscanf(f, "%llu", &v) == 1) {
				sum += v;
			}
			fclose(f);
		}
	}
	closedir(d);
	return sum;
}

static uint64_t
xorshift(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	*s = x;
	return x;
}

static uint8_t
pattern(uint64_t off)
{
	return (uint8_t)((off * 2654435761u) >> 13 ^ off >> 12 ^ 0x3c);
}

static int
run_sync(struct vhu_blkdrv *d, bool write, uint64_t sector, uint8_t *buf, size_t len)
{
	struct vhu_blkdrv_completion c;
	int rc = write ? vhu_blkdrv_write(d, 0, sector, buf, len, NULL)
		       : vhu_blkdrv_read(d, 0, sector, buf, len, NULL);

	if (rc == 0) {
		rc = vhu_blkdrv_kick(d, 0);
	}
	if (rc == 0) {
		rc = vhu_blkdrv_wait(d, 0, &c, 1, 1, 5000);
		rc = rc < 0 ? rc : c.ret;
	}
	return rc;
}

/*
 * The separate verification pass: write a pattern over the first
 * VERIFY_BYTES (or less on a small device), read it back into a buffer
 * filled with a canary. Data back: "data"; all zeroes: "zeroes" (a null
 * device); anything else fails the target.
 */
static const char *
verify(struct vhu_blkdrv *d, uint8_t *buf, size_t len, char *err, size_t errlen)
{
	uint64_t cap = vhu_blkdrv_info(d)->capacity * 512;
	size_t n = len < cap ? len : (size_t)cap, chunk = 65536, i;
	bool zero = true, same = true;
	int rc;

	for (i = 0; i < n; i++) {
		buf[i] = pattern(i);
	}
	for (i = 0; i < n; i += chunk) {
		rc = run_sync(d, true, i / 512, buf + i, n - i < chunk ? n - i : chunk);
		if (rc < 0) {
			snprintf(err, errlen, "verify: write at %zu: %s", i, vhu_strerror(rc));
			return NULL;
		}
	}
	memset(buf, 0xa5, n);
	for (i = 0; i < n; i += chunk) {
		rc = run_sync(d, false, i / 512, buf + i, n - i < chunk ? n - i : chunk);
		if (rc < 0) {
			snprintf(err, errlen, "verify: read at %zu: %s", i, vhu_strerror(rc));
			return NULL;
		}
	}
	for (i = 0; i < n && (zero || same); i++) {
		zero = zero && buf[i] == 0;
		same = same && buf[i] == pattern(i);
	}
	if (same) {
		return "data";
	}
	if (zero) {
		return "zeroes";
	}
	snprintf(err, errlen, "verify: the data read back is neither what was written nor "
		 "zeroes (a null-co export needs read-zeroes=on)");
	return NULL;
}

/* One measured repetition: ms of I/O at depth per queue. */
/* The offset of queue q's next request: sequential per queue, or random in the span. */
static uint64_t
next_off(enum blk_sc sc, uint64_t *seq, uint64_t span, unsigned int bs, uint64_t *seed)
{
	uint64_t off;

	if (sc != SC_SEQ) {
		return xorshift(seed) % (span / bs) * bs;
	}
	off = *seq;
	*seq = (*seq + bs) % span;
	return off;
}

static int
submit_one(struct vhu_blkdrv *d, bool write, unsigned int q, uint64_t off, uint8_t *b,
	   unsigned int bs, struct req *r)
{
	return write ? vhu_blkdrv_write(d, q, off / 512, b, bs, r)
		     : vhu_blkdrv_read(d, q, off / 512, b, bs, r);
}

/*
 * --wait: nothing completed on any queue, so sleep until a back-end calls.
 * Each queue first asks for a call (vhu_blkdrv_arm_call: race-free, a
 * completion already published says so); then one poll(2) over their call
 * eventfds, whose counters are read back to zero.
 */
static int
wait_calls(struct vhu_blkdrv *d, unsigned int nq)
{
	struct pollfd pfd[VHU_BLKDRV_MAX_QUEUES];
	unsigned int q;
	int n;

	for (q = 0; q < nq; q++) {
		if (vhu_blkdrv_arm_call(d, q) != 0) {
			return 0;	/* completions pending: harvest them */
		}
		pfd[q].fd = vhu_blkdrv_call_fd(d, q);
		pfd[q].events = POLLIN;
	}
	do {
		n = poll(pfd, nq, 5000);
	} while (n < 0 && errno == EINTR);
	if (n <= 0) {
		return n == 0 ? -ETIMEDOUT : -errno;
	}
	for (q = 0; q < nq; q++) {
		uint64_t v;

		if ((pfd[q].revents & POLLIN) && read(pfd[q].fd, &v, sizeof(v)) < 0 &&
		    errno != EAGAIN) {
			return -errno;
		}
	}
	return 0;
}

static int
measure(struct vhu_blkdrv *d, const struct opts *o, enum blk_sc sc, unsigned int depth,
	unsigned int bs, uint8_t *buf, struct req *reqs, uint64_t *samples, size_t *nsamples,
	struct figures *f, uint64_t *ios_out, uint64_t *work_out, uint64_t *cpu_out,
	uint64_t *bcpu_out, uint64_t *elapsed_out)
{
	unsigned int nq = vhu_blkdrv_info(d)->queues, q, i;
	uint64_t cap = vhu_blkdrv_info(d)->capacity * 512, span, seed = 0x9e3779b97f4a7c15ull;
	uint64_t seq[VHU_BLKDRV_MAX_QUEUES] = { 0 };
	uint64_t t_end, t_start, cpu0, bcpu0, ios = 0, work = 0;
	struct vhu_blkdrv_completion c[64];
	int pid = vhu_blkdrv_peer_pid(d), rc;
	bool write = sc == SC_RANDWRITE;

	span = (cap < SPAN_MAX ? cap : SPAN_MAX) / bs * bs;
	if (span < bs) {
		snprintf(f->err, sizeof(f->err), "device smaller than one block");
		return -1;
	}
	for (q = 0; q < nq; q++) {
		seq[q] = (span / nq) * q / bs * bs;
	}
	bcpu0 = proc_cpu_ns(pid);
	cpu0 = thread_cpu_ns();
	t_start = now_ns();
	t_end = t_start + (uint64_t)o->ms * 1000000ull;
	/* Fill every queue. */
	for (q = 0; q < nq; q++) {
		for (i = 0; i < depth; i++) {
			struct req *r = &reqs[q * depth + i];
			uint64_t off = next_off(sc, &seq[q], span, bs, &seed);

			r->q = q;
			r->slot = i;
			r->t0 = now_ns();
			rc = submit_one(d, write, q, off, buf + (size_t)(q * depth + i) * bs, bs, r);
			if (rc < 0) {
				snprintf(f->err, sizeof(f->err), "submit: %s", vhu_strerror(rc));
				return -1;
			}
		}
		vhu_blkdrv_kick(d, q);
	}
	for (;;) {
		uint64_t t = now_ns();
		bool stop = t >= t_end;
		unsigned int left = 0, got = 0;

		for (q = 0; q < nq; q++) {
			uint64_t w0 = t;
			int n = vhu_blkdrv_poll(d, q, c, 64), k;
			bool resubmitted = false;

			if (n < 0) {
				snprintf(f->err, sizeof(f->err), "poll: %s", vhu_strerror(n));
				return -1;
			}
			for (k = 0; k < n; k++) {
				struct req *r = c[k].cookie;
				uint64_t done = now_ns(), off;

				if (c[k].ret != 0) {
					snprintf(f->err, sizeof(f->err), "I/O failed: %s",
						 vhu_strerror(c[k].ret));
					return -1;
				}
				if (*nsamples < MAX_SAMPLES) {
					samples[(*nsamples)++] = done - r->t0;
				}
				ios++;
				if (stop) {
					continue;
				}
				off = next_off(sc, &seq[q], span, bs, &seed);
				r->t0 = done;
				rc = submit_one(d, write, q, off,
						buf + (size_t)(q * depth + r->slot) * bs, bs, r);
				if (rc < 0) {
					snprintf(f->err, sizeof(f->err), "submit: %s", vhu_strerror(rc));
					return -1;
				}
				resubmitted = true;
			}
			if (resubmitted) {
				vhu_blkdrv_kick(d, q);
			}
			if (n > 0) {
				work += now_ns() - w0;
			}
			got += (unsigned int)n;
			left += vhu_blkdrv_inflight(d, q);
		}
		if (o->wait && got == 0 && left > 0) {
			rc = wait_calls(d, nq);
			if (rc < 0) {
				snprintf(f->err, sizeof(f->err), "waiting for a call: %s",
					 vhu_strerror(rc));
				return -1;
			}
		}
		if (stop && left == 0) {
			break;
		}
		if (stop && now_ns() > t_end + 5000000000ull) {
			snprintf(f->err, sizeof(f->err), "requests still in flight 5 s after the end");
			return -1;
		}
	}
	*elapsed_out = now_ns() - t_start;
	*cpu_out = thread_cpu_ns() - cpu0;
	*bcpu_out = pid > 0 ? proc_cpu_ns(pid) - bcpu0 : 0;
	*ios_out = ios;
	*work_out = work;
	return 0;
}

/* Kicks written on every queue so far. */
static uint64_t
kicks(const struct vhu_blkdrv *d)
{
	unsigned int q, nq = vhu_blkdrv_info(d)->queues;
	uint64_t n = 0;

	for (q = 0; q < nq; q++) {
		n += vhu_blkdrv_kicks(d, q);
	}
	return n;
}

static void
run_target(const struct opts *o, const struct target *t, enum blk_sc sc, unsigned int depth,
	   unsigned int bs, struct figures *f, uint64_t *samples)
{
	struct vhu_blkdrv_opts dopts = { .num_queues = o->queues, .timeout_ms = 5000,
					 .no_event_idx = o->no_event_idx };
	struct vhu_blkdrv *d = NULL;
	size_t bytes = (size_t)o->queues * depth * bs, ns = 0;
	struct req *reqs = NULL;
	double iops[64], best_iops = 0;
	uint64_t tot_ios = 0, tot_work = 0, tot_cpu = 0, tot_bcpu = 0, tot_el = 0;
	uint64_t all_ios = 0, kicks0;
	struct bench_pctls p;
	uint8_t *buf, *vbuf;
	unsigned int r;
	int rc;

	memset(f, 0, sizeof(*f));
	dopts.queue_size = 256;
	while (dopts.queue_size < depth) {
		dopts.queue_size *= 2;
	}
	rc = vhu_blkdrv_connect(t->path, &dopts, &d);
	if (rc < 0) {
		snprintf(f->err, sizeof(f->err), "connect %s: %s", t->path, vhu_strerror(rc));
		return;
	}
	if (vhu_blkdrv_alloc(d, bytes, (void **)&buf) < 0 ||
	    vhu_blkdrv_alloc(d, VERIFY_BYTES, (void **)&vbuf) < 0) {
		snprintf(f->err, sizeof(f->err), "alloc: out of shared memory");
		goto out;
	}
	f->verified = verify(d, vbuf, VERIFY_BYTES, f->err, sizeof(f->err));
	if (f->verified == NULL) {
		goto out;
	}
	reqs = calloc((size_t)o->queues * depth, sizeof(*reqs));
	if (reqs == NULL) {
		goto out;
	}
	kicks0 = kicks(d);
	/* A short warm-up, then the repetitions. */
	for (r = 0; r <= o->reps && r < 64; r++) {
		uint64_t ios, work, cpu, bcpu, el;
		size_t n0 = ns;

		if (measure(d, o, sc, depth, bs, buf, reqs, samples, &ns, f, &ios, &work, &cpu,
			    &bcpu, &el) < 0) {
			goto out;
		}
		all_ios += ios;
		if (r == 0) {
			ns = n0;	/* the warm-up's samples do not count */
			continue;
		}
		iops[r - 1] = (double)ios * 1e9 / (double)el;
		tot_ios += ios;
		tot_work += work;
		tot_cpu += cpu;
		tot_bcpu += bcpu;
		tot_el += el;
	}
	{
		struct bench_summary s;

		bench_summarize(iops, o->reps, &s);
		best_iops = s.median;
	}
	bench_latency_pctls(samples, ns, &p);
	f->iops = best_iops;
	f->mbps = best_iops * bs / 1e6;
	f->p50 = p.p50;
	f->p99 = p.p99;
	f->p999 = p.p999;
	f->client_ns = tot_ios ? (double)tot_cpu / tot_ios : 0;
	f->work_ns = tot_ios ? (double)tot_work / tot_ios : 0;
	f->backend_ns = tot_ios ? (double)tot_bcpu / tot_ios : 0;
	f->kicks = all_ios ? (double)(kicks(d) - kicks0) / all_ios : 0;
	f->event_idx = (vhu_blkdrv_info(d)->features >> VHU_F_RING_EVENT_IDX) & 1;
	f->ok = true;
	(void)tot_el;
out:
	free(reqs);
	vhu_blkdrv_destroy(d);
}

static void
usage(FILE *out)
{
	fprintf(out,
		"vhu-bench --scenario blk-randread,blk-randwrite,blk-seq --connect NAME=PATH ...\n"
		"  --bs BYTES        block size (default 4096; 65536 for blk-seq)\n"
		"  --iodepth LIST    requests in flight per queue (default 1,32)\n"
		"  --queues N        queues (default 1)\n"
		"  --reps N          measured repetitions (default 5) of --time MS (default 1000)\n"
		"  --cpu N           pin the client to CPU N\n"
		"  --no-event-idx    do not negotiate VIRTIO_RING_F_EVENT_IDX (flags only)\n"
		"  --wait            when nothing has completed, sleep on the queues' call\n"
		"                    eventfds (as a guest does) instead of spinning: leaves\n"
		"                    the CPU to a back-end that shares it\n"
		"  --json            JSON lines, one per case x target\n"
		"  --plot FILE.png   IOPS per case and target (gnuplot)\n");
}

static int
parse_scenarios(struct opts *o, const char *arg)
{
	char *s = strdup(arg), *tok, *save;

	if (s == NULL) {
		return -1;
	}
	for (tok = strtok_r(s, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		int k;

		for (k = 0; k < SC_N && strcmp(tok, sc_names[k]) != 0; k++)
			;
		if (k == SC_N) {
			fprintf(stderr, "vhu-bench: unknown blk scenario %s\n", tok);
			free(s);
			return -1;
		}
		o->scenarios |= 1u << k;
	}
	free(s);
	return 0;
}

static int
parse_depths(struct opts *o, const char *arg)
{
	char *s = strdup(arg), *tok, *save;

	if (s == NULL) {
		return -1;
	}
	for (tok = strtok_r(s, ",", &save); tok && o->ndepths < MAX_DEPTHS;
	     tok = strtok_r(NULL, ",", &save)) {
		unsigned int v;

		if (tool_parse_uint(tok, 1, 1024, &v) < 0) {
			fprintf(stderr, "vhu-bench: --iodepth 1..1024, not '%s'\n", tok);
			free(s);
			return -1;
		}
		o->depths[o->ndepths++] = v;
	}
	free(s);
	return 0;
}

/* --connect [NAME=]PATH */
static int
parse_target(struct opts *o, const char *arg)
{
	const char *eq = strchr(arg, '=');
	struct target *t;

	if (o->nt == MAX_TARGETS) {
		fprintf(stderr, "vhu-bench: at most %d --connect\n", MAX_TARGETS);
		return -1;
	}
	t = &o->t[o->nt++];
	if (eq != NULL) {
		snprintf(t->name, sizeof(t->name), "%.*s", (int)(eq - arg), arg);
		t->path = eq + 1;
	} else {
		snprintf(t->name, sizeof(t->name), "target%u", o->nt);
		t->path = arg;
	}
	return 0;
}

/* A number option within [min, max]; a message naming it otherwise. */
static int
parse_num(const char *opt, const char *arg, unsigned int min, unsigned int max, unsigned int *out)
{
	if (tool_parse_uint(arg, min, max, out) < 0) {
		fprintf(stderr, "vhu-bench: %s needs a number from %u to %u, not '%s'\n", opt, min,
			max, arg);
		return -1;
	}
	return 0;
}

static int
parse(struct opts *o, int argc, char **argv)
{
	static const struct option lo[] = {
		{ "scenario", required_argument, NULL, 's' },
		{ "bs", required_argument, NULL, 'b' },
		{ "iodepth", required_argument, NULL, 'd' },
		{ "queues", required_argument, NULL, 'q' },
		{ "reps", required_argument, NULL, 'r' },
		{ "time", required_argument, NULL, 't' },
		{ "cpu", required_argument, NULL, 'c' },
		{ "no-event-idx", no_argument, NULL, 'E' },
		{ "wait", no_argument, NULL, 'W' },
		{ "connect", required_argument, NULL, 'C' },
		{ "json", no_argument, NULL, 'j' },
		{ "plot", required_argument, NULL, 'p' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	unsigned int cpu;
	int c, rc = 0;

	memset(o, 0, sizeof(*o));
	o->queues = 1;
	o->reps = 5;
	o->ms = 1000;
	o->cpu = -1;
	optind = 1;
	while (rc == 0 && (c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (c) {
		case 's':
			rc = parse_scenarios(o, optarg);
			break;
		case 'b':
			rc = parse_num("--bs", optarg, 512, 1u << 20, &o->bs);
			if (rc == 0 && o->bs % 512 != 0) {
				fprintf(stderr, "vhu-bench: --bs must be a multiple of 512\n");
				rc = -1;
			}
			break;
		case 'd':
			rc = parse_depths(o, optarg);
			break;
		case 'q':
			rc = parse_num("--queues", optarg, 1, VHU_BLKDRV_MAX_QUEUES, &o->queues);
			break;
		case 'r':
			rc = parse_num("--reps", optarg, 1, 63, &o->reps);
			break;
		case 't':
			rc = parse_num("--time", optarg, 1, 3600000, &o->ms);
			break;
		case 'c':
			rc = parse_num("--cpu", optarg, 0, CPU_SETSIZE - 1, &cpu);
			o->cpu = (int)cpu;
			break;
		case 'C':
			rc = parse_target(o, optarg);
			break;
		case 'E':
			o->no_event_idx = true;
			break;
		case 'W':
			o->wait = true;
			break;
		case 'j':
			o->json = true;
			break;
		case 'p':
			o->plot = optarg;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			return -1;
		}
	}
	if (rc < 0) {
		return -1;
	}
	if (o->nt == 0) {
		fprintf(stderr, "vhu-bench: blk scenarios need --connect NAME=PATH (a vhost-user-blk "
			"back-end)\n");
		return -1;
	}
	if (o->ndepths == 0) {
		o->depths[0] = 1;
		o->depths[1] = 32;
		o->ndepths = 2;
	}
	return 0;
}

bool
bench_blk_wanted(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		const char *v = NULL;

		if (strncmp(argv[i], "--scenario=", 11) == 0) {
			v = argv[i] + 11;
		} else if (strcmp(argv[i], "--scenario") == 0 && i + 1 < argc) {
			v = argv[i + 1];
		}
		if (v != NULL && strncmp(v, "blk-", 4) == 0) {
			return true;
		}
	}
	return false;
}

static void
plot(const struct opts *o, char cases[][64], struct figures (*res)[MAX_TARGETS], unsigned int nc)
{
	FILE *g = popen("gnuplot", "w");
	unsigned int c, t;

	if (g == NULL) {
		fprintf(stderr, "vhu-bench: gnuplot: %s\n", strerror(errno));
		return;
	}
	fprintf(g, "set terminal pngcairo size 1000,500\nset output '%s'\n"
		"set style data histograms\nset style fill solid\nset ylabel 'IOPS'\n"
		"set xtics rotate by -20\nset key top right\n", o->plot);
	fprintf(g, "plot ");
	for (t = 0; t < o->nt; t++) {
		fprintf(g, "%s'-' using 2:xtic(1) title '%s'", t ? ", " : "", o->t[t].name);
	}
	fprintf(g, "\n");
	for (t = 0; t < o->nt; t++) {
		for (c = 0; c < nc; c++) {
			fprintf(g, "\"%s\" %.0f\n", cases[c], res[c][t].ok ? res[c][t].iops : 0);
		}
		fprintf(g, "e\n");
	}
	if (pclose(g) != 0) {
		fprintf(stderr, "vhu-bench: gnuplot failed (is gnuplot-nox installed?)\n");
	}
}

int
bench_blk_main(int argc, char **argv)
{
	static char cases[SC_N * MAX_DEPTHS][64];
	static struct figures res[SC_N * MAX_DEPTHS][MAX_TARGETS];
	uint64_t *samples;
	struct opts o;
	unsigned int nc = 0, t, k, di;
	int status = 0;

	if (parse(&o, argc, argv) < 0) {
		return 2;
	}
	if (o.cpu >= 0) {
		cpu_set_t set;

		CPU_ZERO(&set);
		CPU_SET(o.cpu, &set);
		if (sched_setaffinity(0, sizeof(set), &set) < 0) {
			fprintf(stderr, "vhu-bench: pinning to CPU %d: %s\n", o.cpu, strerror(errno));
			return 2;
		}
	}
	samples = malloc(MAX_SAMPLES * sizeof(*samples));
	if (samples == NULL) {
		return 1;
	}
	if (!o.json) {
		printf("# vhu-bench blk: client %s, %u queue(s), %u x %u ms per figure, %s%s\n",
		       o.cpu >= 0 ? "pinned" : "not pinned", o.queues, o.reps, o.ms,
		       o.wait ? "waiting on calls" : "polling",
		       o.no_event_idx ? ", EVENT_IDX not negotiated" : "");
	}
	for (k = 0; k < SC_N; k++) {
		if (!(o.scenarios >> k & 1)) {
			continue;
		}
		for (di = 0; di < o.ndepths; di++) {
			unsigned int bs = o.bs ? o.bs : (k == SC_SEQ ? 65536u : 4096u);
			unsigned int depth = o.depths[di];

			snprintf(cases[nc], sizeof(cases[nc]), "%s/bs=%u/qd=%u/q=%u", sc_names[k], bs,
				 depth, o.queues);
			if (!o.json) {
				printf("\n%s\n%-12s %10s %9s %8s %8s %8s %10s %10s %10s %8s %7s %s\n",
				       cases[nc], "target", "IOPS", "MB/s", "p50us", "p99us",
				       "p99.9us", "cli-ns/IO", "drv-ns/IO", "be-ns/IO", "kicks/IO",
				       "ratio", "verified");
			}
			for (t = 0; t < o.nt; t++) {
				struct figures *f = &res[nc][t];
				double ratio;

				run_target(&o, &o.t[t], (enum blk_sc)k, depth, bs, f, samples);
				ratio = res[nc][0].ok && res[nc][0].iops > 0 ? f->iops / res[nc][0].iops
									     : 0;
				if (!f->ok) {
					status = 1;
					if (o.json) {
						printf("{\"scenario\":\"%s\",\"case\":\"%s\",\"target\":\"%s\","
						       "\"status\":\"failed\",\"error\":\"%s\"}\n",
						       sc_names[k], cases[nc], o.t[t].name, f->err);
					} else {
						printf("%-12s FAILED: %s\n", o.t[t].name, f->err);
					}
					continue;
				}
				if (o.json) {
					printf("{\"scenario\":\"%s\",\"case\":\"%s\",\"target\":\"%s\","
					       "\"bs\":%u,\"iodepth\":%u,\"queues\":%u,\"iops\":%.0f,"
					       "\"mbps\":%.1f,\"p50_us\":%.2f,\"p99_us\":%.2f,"
					       "\"p999_us\":%.2f,\"client_cpu_ns_per_io\":%.0f,"
					       "\"driver_ns_per_io\":%.0f,\"backend_cpu_ns_per_io\":%.0f,"
					       "\"kicks_per_io\":%.3f,\"event_idx\":%s,"
					       "\"ratio\":%.3f,\"verified\":\"%s\",\"status\":\"ok\"}\n",
					       sc_names[k], cases[nc], o.t[t].name, bs, depth, o.queues,
					       f->iops, f->mbps, f->p50 / 1e3, f->p99 / 1e3, f->p999 / 1e3,
					       f->client_ns, f->work_ns, f->backend_ns, f->kicks,
					       f->event_idx ? "true" : "false", ratio, f->verified);
				} else {
					printf("%-12s %10.0f %9.1f %8.1f %8.1f %8.1f %10.0f %10.0f %10.0f "
					       "%8.3f %6.2fx %s\n",
					       o.t[t].name, f->iops, f->mbps, f->p50 / 1e3, f->p99 / 1e3,
					       f->p999 / 1e3, f->client_ns, f->work_ns, f->backend_ns,
					       f->kicks, ratio, f->verified);
				}
				fflush(stdout);
			}
			nc++;
		}
	}
	if (o.plot != NULL) {
		plot(&o, cases, res, nc);
	}
	free(samples);
	return status;
}
