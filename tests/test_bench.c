/* SPDX-License-Identifier: MIT */
/*
 * vhu-bench's own logic: statistics, ratios, the table and the JSON lines,
 * and the command line. Nothing here measures or asserts a timing.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "cli.h"
#include "helpers.h"
#include "peer.h"
#include "plot.h"
#include "report.h"
#include "stats.h"

TestSuite(bench, .init = t_setup, .fini = t_teardown);

/* ---- percentiles ---------------------------------------------------- */

Test(bench, pctls_of_one_sample_are_that_sample)
{
	uint64_t v[] = { 42 };
	struct bench_pctls p;

	cr_assert_eq(bench_latency_pctls(v, 1, &p), 0);
	cr_assert_eq(p.p50, 42);
	cr_assert_eq(p.p90, 42);
	cr_assert_eq(p.p99, 42);
	cr_assert_eq(p.p999, 42);
	cr_assert_eq(p.min, 42);
	cr_assert_eq(p.max, 42);
}

Test(bench, pctls_odd_count_nearest_rank)
{
	uint64_t v[] = { 50, 10, 40, 20, 30 };
	struct bench_pctls p;

	cr_assert_eq(bench_latency_pctls(v, 5, &p), 0);
	/* ranks ceil(0.5*5)=3, ceil(0.9*5)=5 */
	cr_assert_eq(p.p50, 30);
	cr_assert_eq(p.p90, 50);
	cr_assert_eq(p.p99, 50);
	cr_assert_eq(p.min, 10);
	cr_assert_eq(p.max, 50);
	/* sorted in place */
	for (int i = 0; i < 5; i++) {
		cr_assert_eq(v[i], (uint64_t)(i + 1) * 10);
	}
}

Test(bench, pctls_even_count_nearest_rank)
{
	uint64_t v[] = { 4, 2, 3, 1 };
	struct bench_pctls p;

	cr_assert_eq(bench_latency_pctls(v, 4, &p), 0);
	/* ranks ceil(0.5*4)=2, ceil(0.9*4)=4: no interpolation */
	cr_assert_eq(p.p50, 2);
	cr_assert_eq(p.p90, 4);
	cr_assert_eq(p.p999, 4);
}

/* 1..n in a scrambled order (a fixed permutation: 7919 is prime). */
static void
scrambled(uint64_t *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		v[i] = (i * 7919) % n + 1;
	}
}

Test(bench, p999_of_1000_samples_is_rank_999)
{
	uint64_t v[1000];
	struct bench_pctls p;

	scrambled(v, 1000);
	cr_assert_eq(bench_latency_pctls(v, 1000, &p), 0);
	cr_assert_eq(p.p50, 500);
	cr_assert_eq(p.p90, 900);
	cr_assert_eq(p.p99, 990);
	cr_assert_eq(p.p999, 999, "99.9%% of 1000 is rank 999 exactly, got %llu",
		     (unsigned long long)p.p999);
	cr_assert_eq(p.max, 1000);
}

Test(bench, p999_of_1001_samples_rounds_rank_up)
{
	uint64_t v[1001];
	struct bench_pctls p;

	scrambled(v, 1001);
	cr_assert_eq(bench_latency_pctls(v, 1001, &p), 0);
	/* ceil(0.999 * 1001) = ceil(999.999) = 1000; ceil(0.5 * 1001) = 501 */
	cr_assert_eq(p.p999, 1000);
	cr_assert_eq(p.p50, 501);
}

Test(bench, pctls_of_nothing_is_an_error)
{
	struct bench_pctls p;

	cr_assert_eq(bench_latency_pctls(NULL, 0, &p), -EINVAL);
	cr_assert_eq(bench_pctl_sorted(NULL, 0, 50000), 0);
}

Test(bench, pctl_sorted_bounds)
{
	uint64_t v[] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 };

	cr_assert_eq(bench_pctl_sorted(v, 10, 0), 1, "p0 is the minimum");
	cr_assert_eq(bench_pctl_sorted(v, 10, 100000), 10, "p100 is the maximum");
	cr_assert_eq(bench_pctl_sorted(v, 10, 10000), 1);
	cr_assert_eq(bench_pctl_sorted(v, 10, 10001), 2);
}

/* ---- median / min / max -------------------------------------------- */

Test(bench, summary_odd_even_single)
{
	const double odd[] = { 3.0, 1.0, 2.0 };
	const double even[] = { 4.0, 1.0, 3.0, 2.0 };
	const double one[] = { 7.5 };
	struct bench_summary s;

	cr_assert_eq(bench_summarize(odd, 3, &s), 0);
	cr_assert_float_eq(s.median, 2.0, 1e-12);
	cr_assert_float_eq(s.min, 1.0, 1e-12);
	cr_assert_float_eq(s.max, 3.0, 1e-12);
	cr_assert_float_eq(odd[0], 3.0, 0, "the input is left as it was");

	cr_assert_eq(bench_summarize(even, 4, &s), 0);
	cr_assert_float_eq(s.median, 2.5, 1e-12, "even count: mean of the middle two");
	cr_assert_float_eq(s.min, 1.0, 1e-12);
	cr_assert_float_eq(s.max, 4.0, 1e-12);

	cr_assert_eq(bench_summarize(one, 1, &s), 0);
	cr_assert_float_eq(s.median, 7.5, 1e-12);
	cr_assert_float_eq(s.min, 7.5, 1e-12);
	cr_assert_float_eq(s.max, 7.5, 1e-12);
}

Test(bench, summary_rejects_empty_and_too_many)
{
	static double many[BENCH_MAX_REPS + 1];
	struct bench_summary s;

	cr_assert_eq(bench_summarize(many, 0, &s), -EINVAL);
	cr_assert_eq(bench_summarize(many, BENCH_MAX_REPS + 1, &s), -EINVAL);
	cr_assert_eq(bench_summarize(many, BENCH_MAX_REPS, &s), 0);
}

/* ---- formatting ----------------------------------------------------- */

static const char *
fmt(int (*f)(char *, size_t, double), double v)
{
	static char buf[32];

	f(buf, sizeof(buf), v);
	return buf;
}

Test(bench, ratio_format)
{
	cr_assert_str_eq(fmt(bench_fmt_ratio, 0.8734), "0.87x");
	cr_assert_str_eq(fmt(bench_fmt_ratio, 0.5), "0.50x");
	cr_assert_str_eq(fmt(bench_fmt_ratio, 0.0046), "0.0046x", "small ratios stay readable");
	cr_assert_str_eq(fmt(bench_fmt_ratio, 0.996), "1.00x");
	cr_assert_str_eq(fmt(bench_fmt_ratio, 0.0), "0.00x");
	cr_assert_str_eq(fmt(bench_fmt_ratio, 1.0), "1.00x");
	cr_assert_str_eq(fmt(bench_fmt_ratio, 12.34), "12.3x");
	cr_assert_str_eq(fmt(bench_fmt_ratio, 250.0), "250x");
	cr_assert_str_eq(fmt(bench_fmt_ratio, NAN), "-");
	cr_assert_str_eq(fmt(bench_fmt_ratio, INFINITY), "-");
}

Test(bench, rate_and_latency_format)
{
	cr_assert_str_eq(fmt(bench_fmt_rate, 950.0), "950");
	cr_assert_str_eq(fmt(bench_fmt_rate, 52100.0), "52.1k");
	cr_assert_str_eq(fmt(bench_fmt_rate, 523000.0), "523k");
	cr_assert_str_eq(fmt(bench_fmt_rate, 999999.0), "1.00M", "no '1000k'");
	cr_assert_str_eq(fmt(bench_fmt_rate, 4830000.0), "4.83M");
	cr_assert_str_eq(fmt(bench_fmt_rate, NAN), "-");
	cr_assert_str_eq(fmt(bench_fmt_us, 18234.0), "18.2");
	cr_assert_str_eq(fmt(bench_fmt_us, 1234.0), "1.23");
	cr_assert_str_eq(fmt(bench_fmt_us, 412000.0), "412");
	cr_assert_str_eq(fmt(bench_fmt_us, NAN), "-");
}

/* ---- ratios --------------------------------------------------------- */

static void
fake(struct bench_result *r, const char *sc, const char *tr, double rate, double lat,
     double cpu)
{
	bench_result_init(r, sc, tr);
	r->depth = 1;
	r->msgs = 1000;
	r->rate.median = rate;
	r->rate.min = rate * 0.9;
	r->rate.max = rate * 1.1;
	r->has_latency = !isnan(lat);
	for (int l = 0; l < BENCH_NLAT; l++) {
		r->lat_ns[l] = lat * (l + 1);
	}
	r->cpu_client_ns = cpu / 2;
	r->cpu_server_ns = cpu / 2;
}

/* rt: blocking 100k, uring-exact 50k, raw 200k; pipe: only uring-exact. */
static void
fake_run(struct bench_result *res)
{
	fake(&res[0], "rt", "blocking", 100e3, 10e3, 4000);
	fake(&res[1], "rt", "uring-exact", 50e3, 20e3, 2000);
	fake(&res[2], "rt", "uring-stream", NAN, NAN, NAN);
	res[2].status = BENCH_UNAVAILABLE;
	strcpy(res[2].reason, "no \"engine\" here");
	fake(&res[3], "rt", "raw", 200e3, 5e3, 1000);
	fake(&res[4], "pipe", "uring-exact", 1e6, NAN, 500);
	bench_compute_ratios(res, 5);
}

Test(bench, ratios_are_against_the_same_scenario)
{
	struct bench_result res[5];

	fake_run(res);
	cr_assert_float_eq(res[1].rate_ratio[BENCH_BASE_BLOCKING], 0.5, 1e-12);
	cr_assert_float_eq(res[1].rate_ratio[BENCH_BASE_RAW], 0.25, 1e-12);
	cr_assert_float_eq(res[1].lat_ratio[BENCH_BASE_BLOCKING][BENCH_P99], 2.0, 1e-12);
	cr_assert_float_eq(res[1].lat_ratio[BENCH_BASE_RAW][BENCH_P50], 4.0, 1e-12);
	cr_assert_float_eq(res[1].cpu_ratio[BENCH_BASE_BLOCKING], 0.5, 1e-12);
	cr_assert_float_eq(res[0].rate_ratio[BENCH_BASE_BLOCKING], 1.0, 1e-12);
	cr_assert(isnan(res[2].rate_ratio[BENCH_BASE_BLOCKING]), "no ratio for a failed run");
	cr_assert(isnan(res[4].rate_ratio[BENCH_BASE_BLOCKING]),
		  "pipe has no blocking row: rt's must not be used");
}

Test(bench, failed_baseline_gives_no_ratio)
{
	struct bench_result res[2];

	fake(&res[0], "rt", "blocking", 100e3, 10e3, 4000);
	res[0].status = BENCH_FAILED;
	fake(&res[1], "rt", "uring-exact", 50e3, 20e3, 2000);
	bench_compute_ratios(res, 2);
	cr_assert(isnan(res[1].rate_ratio[BENCH_BASE_BLOCKING]));
	cr_assert(isnan(res[1].cpu_ratio[BENCH_BASE_BLOCKING]));
}

/* ---- table ---------------------------------------------------------- */

/* The line after the first one that starts with prefix (NULL if none); static buffer. */
static const char *
line_after(const char *text, const char *prefix, int skip)
{
	static char line[512];
	const char *p = text;

	while (p && *p) {
		if (strncmp(p, prefix, strlen(prefix)) == 0) {
			break;
		}
		p = strchr(p, '\n');
		p = p ? p + 1 : NULL;
	}
	for (int i = 0; p && *p && i < skip; i++) {
		p = strchr(p, '\n');
		p = p ? p + 1 : NULL;
	}
	if (p == NULL || *p == 0) {
		return NULL;
	}
	snprintf(line, sizeof(line), "%.*s", (int)strcspn(p, "\n"), p);
	return line;
}

static char *
table_of(const struct bench_result *res, size_t n, const char *sc)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);

	cr_assert_not_null(f);
	bench_print_table(f, res, n, sc);
	fclose(f);
	return text;
}

Test(bench, table_prints_ratios_under_each_figure)
{
	struct bench_result res[5];
	char *text;
	const char *l;

	fake_run(res);
	text = table_of(res, 5, "rt");

	l = line_after(text, "uring-exact ", 0);
	cr_assert_not_null(l, "%s", text);
	cr_assert(strstr(l, "50.0k") && strstr(l, "45.0k..55.0k"), "figures: %s", l);
	l = line_after(text, "uring-exact ", 1);
	cr_assert(strncmp(l, "  vs blocking", 13) == 0, "%s", l);
	/* rate, then p50..p99.9 (2x each), then CPU */
	cr_assert(strstr(l, "0.50x") && strstr(l, "2.00x"), "%s", l);
	l = line_after(text, "uring-exact ", 2);
	cr_assert(strncmp(l, "  vs raw", 8) == 0 && strstr(l, "0.25x") && strstr(l, "4.00x"),
		  "%s", l);

	/* a baseline is not compared with itself */
	l = line_after(text, "blocking ", 1);
	cr_assert(strncmp(l, "  vs raw", 8) == 0, "%s", l);
	l = line_after(text, "raw ", 1);
	cr_assert(l == NULL || strncmp(l, "  vs raw", 8) != 0, "%s", l);

	l = line_after(text, "uring-stream ", 0);
	cr_assert(strstr(l, "unavailable: no \"engine\" here"), "%s", l);
	cr_assert_null(strstr(text, "pipe"), "only the rt rows: %s", text);
	free(text);
}

Test(bench, table_without_latency_has_no_latency_columns)
{
	struct bench_result res[5];
	char *text;
	const char *l;

	fake_run(res);
	text = table_of(res, 5, "pipe");
	cr_assert_null(strstr(text, "p99.9"), "%s", text);
	l = line_after(text, "uring-exact ", 0);
	cr_assert(strstr(l, "1.00M"), "%s", l);
	l = line_after(text, "uring-exact ", 1);
	cr_assert_null(l, "no ratio lines: neither baseline ran pipe (%s)", l);
	free(text);
}

Test(bench, a_failed_baseline_keeps_its_ratio_line)
{
	struct bench_result res[2];
	char *text;
	const char *l;

	fake(&res[0], "pipe", "blocking", 100e3, NAN, 1000);
	res[0].status = BENCH_FAILED;
	fake(&res[1], "pipe", "uring-stream", 1e6, NAN, 500);
	bench_compute_ratios(res, 2);
	text = table_of(res, 2, "pipe");
	l = line_after(text, "uring-stream ", 1);
	cr_assert_not_null(l);
	cr_assert(strncmp(l, "  vs blocking", 13) == 0 && strstr(l, "-"),
		  "the baseline ran and failed: its ratio is shown as missing (%s)", l);
	free(text);
}

/* ---- JSON lines ----------------------------------------------------- */

struct jfield {
	char key[48];
	char str[256];	/* string value, unescaped */
	double num;
	int kind;	/* 's', 'n', '0' (null) */
};

/* Parse one flat JSON object (strings, numbers, null) on one line. */
static int
parse_flat(const char *s, struct jfield *out, int max)
{
	int n = 0;

	if (*s++ != '{') {
		return -1;
	}
	while (*s != '}') {
		struct jfield *f = &out[n];
		size_t k = 0;

		if (n == max || *s++ != '"') {
			return -1;
		}
		while (*s != '"' && k + 1 < sizeof(f->key)) {
			f->key[k++] = *s++;
		}
		f->key[k] = 0;
		if (*s++ != '"' || *s++ != ':') {
			return -1;
		}
		if (*s == '"') {
			s++;
			k = 0;
			while (*s != '"') {
				if (*s == 0 || k + 1 >= sizeof(f->str)) {
					return -1;
				}
				if (*s == '\\') {
					s++;
					if (*s == 'u') {
						f->str[k++] = (char)strtol(s + 1, NULL, 16);
						s += 5;
						continue;
					}
				}
				f->str[k++] = *s++;
			}
			f->str[k] = 0;
			s++;
			f->kind = 's';
		} else if (strncmp(s, "null", 4) == 0) {
			s += 4;
			f->kind = '0';
		} else {
			char *end;

			f->num = strtod(s, &end);
			if (end == s) {
				return -1;
			}
			s = end;
			f->kind = 'n';
		}
		n++;
		if (*s == ',') {
			s++;
		} else if (*s != '}') {
			return -1;
		}
	}
	return strcmp(s, "}\n") == 0 ? n : -1;
}

static const struct jfield *
jget(const struct jfield *f, int n, const char *key)
{
	const struct jfield *hit = NULL;

	for (int i = 0; i < n; i++) {
		if (strcmp(f[i].key, key) == 0) {
			cr_assert_null(hit, "key %s appears twice", key);
			hit = &f[i];
		}
	}
	cr_assert_not_null(hit, "key %s missing", key);
	return hit;
}

static const char *const json_keys[] = {
	"scenario", "case", "param", "conns", "msg_bytes", "transport", "status", "reason", "depth", "reps", "duration_ms", "count",
	"warmup_ms", "cpu_client", "cpu_server", "ncpus", "kernel", "vhu_version", "msgs",
	"rate_median", "rate_min", "rate_max", "rate_vs_blocking", "rate_vs_raw",
	"lat_p50_ns", "lat_p50_vs_blocking", "lat_p50_vs_raw",
	"lat_p90_ns", "lat_p90_vs_blocking", "lat_p90_vs_raw",
	"lat_p99_ns", "lat_p99_vs_blocking", "lat_p99_vs_raw",
	"lat_p999_ns", "lat_p999_vs_blocking", "lat_p999_vs_raw",
	"cpu_client_ns_per_msg", "cpu_server_ns_per_msg", "cpu_vs_blocking", "cpu_vs_raw",
	"enters_per_msg", "sendmsgs_per_msg", "mb_per_s", "allocs_client_per_msg", "allocs_server_per_msg",
	"fds_checked",
};

static int
json_of(const struct bench_result *r, struct jfield *f, int max)
{
	struct bench_run_info info = {
		.cpu_client = 0, .cpu_server = 1, .ncpus = 2, .reps = 5, .duration_ms = 300,
		.warmup_ms = 100, .kernel = "6.18-test",
	};
	char *text = NULL;
	size_t len = 0;
	FILE *mf = open_memstream(&text, &len);
	int n;

	cr_assert_not_null(mf);
	bench_print_json(mf, &info, r);
	fclose(mf);
	cr_assert_eq(strchr(text, '\n'), text + len - 1, "one line: %s", text);
	n = parse_flat(text, f, max);
	cr_assert_gt(n, 0, "not a flat JSON object: %s", text);
	free(text);
	return n;
}

Test(bench, json_line_has_every_key_once)
{
	struct bench_result res[5];
	struct jfield f[64];
	int n;

	fake_run(res);
	n = json_of(&res[1], f, 64);
	cr_assert_eq(n, (int)(sizeof(json_keys) / sizeof(json_keys[0])), "field count");
	for (size_t i = 0; i < sizeof(json_keys) / sizeof(json_keys[0]); i++) {
		jget(f, n, json_keys[i]);
	}
	cr_assert_str_eq(jget(f, n, "scenario")->str, "rt");
	cr_assert_str_eq(jget(f, n, "transport")->str, "uring-exact");
	cr_assert_str_eq(jget(f, n, "status")->str, "ok");
	cr_assert_eq(jget(f, n, "reason")->kind, '0');
	cr_assert_str_eq(jget(f, n, "kernel")->str, "6.18-test");
	cr_assert_float_eq(jget(f, n, "rate_median")->num, 50e3, 1e-6);
	cr_assert_float_eq(jget(f, n, "rate_vs_blocking")->num, 0.5, 1e-9);
	cr_assert_float_eq(jget(f, n, "rate_vs_raw")->num, 0.25, 1e-9);
	cr_assert_float_eq(jget(f, n, "lat_p999_ns")->num, 80e3, 1e-6);
	cr_assert_float_eq(jget(f, n, "cpu_server_ns_per_msg")->num, 1000, 1e-9);
	cr_assert_eq(jget(f, n, "enters_per_msg")->kind, '0', "unset figures are null");
	cr_assert_float_eq(jget(f, n, "reps")->num, 5, 0);
}

Test(bench, json_line_of_an_unavailable_transport)
{
	struct bench_result res[5];
	struct jfield f[64];
	int n;

	fake_run(res);
	n = json_of(&res[2], f, 64);
	cr_assert_str_eq(jget(f, n, "status")->str, "unavailable");
	cr_assert_str_eq(jget(f, n, "reason")->str, "no \"engine\" here", "escaped and back");
	cr_assert_eq(jget(f, n, "rate_median")->kind, '0');
	cr_assert_eq(jget(f, n, "rate_vs_blocking")->kind, '0');
	cr_assert_eq(jget(f, n, "lat_p50_ns")->kind, '0');
}

/* ---- command line --------------------------------------------------- */

static int
parse(struct bench_opts *o, char *err, const char *a0, const char *a1, const char *a2,
      const char *a3)
{
	char *argv[] = { "vhu-bench", (char *)a0, (char *)a1, (char *)a2, (char *)a3, NULL };
	int argc = 1;

	while (argv[argc]) {
		argc++;
	}
	return bench_opts_parse(o, argc, argv, err, 160);
}

Test(bench, cli_defaults_cover_everything)
{
	struct bench_opts o;
	char err[160];

	cr_assert_eq(parse(&o, err, NULL, NULL, NULL, NULL), 0);
	cr_assert_eq(o.scenarios, (1u << BENCH_NSCENARIOS) - 1);
	cr_assert_eq(BENCH_NSCENARIOS, 5, "rt, pipe, oneway, fds, conns");
	cr_assert_eq(o.transports, (1u << BENCH_NTRANSPORTS) - 1);
	cr_assert_eq(o.reps, 5);
	cr_assert_eq(o.duration_ms, 200);
	cr_assert_eq(o.depth, 256);
	cr_assert_eq(o.sizes.n, 5);
	cr_assert_eq(o.sizes.v[0], 0);
	cr_assert_eq(o.sizes.v[4], 4096);
	cr_assert_eq(o.nfds.n, 2);
	cr_assert_eq(o.nfds.v[1], 8);
	cr_assert_eq(o.conns.n, 3);
	cr_assert_eq(o.conns.v[2], 256);
	cr_assert_eq(o.ntargets, 0);
	cr_assert_null(o.listen);
	cr_assert_eq(o.cpu_client, -1);
	cr_assert(!o.json);
}

Test(bench, cli_lists_and_baselines)
{
	struct bench_opts o;
	char err[160];

	cr_assert_eq(parse(&o, err, "--scenario", "pipe", "--transport", "uring-stream+poll"), 0);
	cr_assert_eq(o.scenarios, 1u << BENCH_SC_PIPE);
	cr_assert_eq(o.transports, 1u << BENCH_TR_URING_STREAM_POLL | 1u << BENCH_TR_BLOCKING |
				   1u << BENCH_TR_RAW, "the baselines are added");
	cr_assert_eq(parse(&o, err, "--transport", "uring-exact", "--no-baselines", NULL), 0);
	cr_assert_eq(o.transports, 1u << BENCH_TR_URING_EXACT);
}

Test(bench, cli_quick_and_explicit_options)
{
	struct bench_opts o;
	char err[160];

	cr_assert_eq(parse(&o, err, "--quick", NULL, NULL, NULL), 0);
	cr_assert_eq(o.reps, 3);
	cr_assert_eq(o.duration_ms, 100);
	cr_assert_eq(parse(&o, err, "--quick", "-r", "7", NULL), 0);
	cr_assert_eq(o.reps, 7, "an explicit -r wins over --quick");
	cr_assert_eq(parse(&o, err, "--cpus", "1,0", "-n", "5000"), 0);
	cr_assert_eq(o.cpu_client, 1);
	cr_assert_eq(o.cpu_server, 0);
	cr_assert_eq(o.count, 5000);
	cr_assert_eq(parse(&o, err, "--json", "--depth", "64", NULL), 0);
	cr_assert(o.json);
	cr_assert_eq(o.depth, 64);
}

Test(bench, cli_errors_name_the_fault)
{
	struct bench_opts o;
	char err[160];

	cr_assert_eq(parse(&o, err, "--transport", "uring-fast", NULL, NULL), -EINVAL);
	cr_assert(strstr(err, "uring-fast"), "%s", err);
	cr_assert_eq(parse(&o, err, "--scenario", "rt,", NULL, NULL), 0, "trailing comma");
	cr_assert_eq(parse(&o, err, "--scenario", "", NULL, NULL), -EINVAL);
	cr_assert_eq(parse(&o, err, "--depth", "0", NULL, NULL), -EINVAL);
	cr_assert(strstr(err, "--depth"), "%s", err);
	cr_assert_eq(parse(&o, err, "--depth", "5000", NULL, NULL), -EINVAL);
	cr_assert_eq(parse(&o, err, "--cpus", "1", NULL, NULL), -EINVAL);
	cr_assert_eq(parse(&o, err, "-r", "0", NULL, NULL), -EINVAL);
	cr_assert_eq(parse(&o, err, "-t", "12ms", NULL, NULL), -EINVAL);
	cr_assert_eq(parse(&o, err, "--frobnicate", NULL, NULL, NULL), -EINVAL);
	cr_assert(strstr(err, "--frobnicate"), "%s", err);
	cr_assert_eq(parse(&o, err, "stray", NULL, NULL, NULL), -EINVAL);
	cr_assert(strstr(err, "stray"), "%s", err);
}

Test(bench, cli_scenario_parameters)
{
	struct bench_opts o;
	char err[160];

	cr_assert_eq(parse(&o, err, "--sizes", "4096,0,7", "--conns", "2"), 0);
	cr_assert_eq(o.sizes.n, 3);
	cr_assert_eq(o.sizes.v[0], 4096);
	cr_assert_eq(o.sizes.v[1], 0);
	cr_assert_eq(o.sizes.v[2], 7);
	cr_assert_eq(o.conns.n, 1);
	cr_assert_eq(o.conns.v[0], 2);
	cr_assert_eq(parse(&o, err, "--fds", "1,2,8", NULL, NULL), 0);
	cr_assert_eq(o.nfds.n, 3);
	cr_assert_eq(parse(&o, err, "--sizes", "4097", NULL, NULL), -EINVAL);
	cr_assert(strstr(err, "--sizes") && strstr(err, "4096"), "%s", err);
	cr_assert_eq(parse(&o, err, "--fds", "0", NULL, NULL), -EINVAL);
	cr_assert(strstr(err, "--fds"), "%s", err);
	cr_assert_eq(parse(&o, err, "--fds", "9", NULL, NULL), -EINVAL);
	cr_assert_eq(parse(&o, err, "--conns", "1,,2", NULL, NULL), -EINVAL);
	cr_assert(strstr(err, "--conns"), "%s", err);
	cr_assert_eq(parse(&o, err, "--conns", "1,2,3,4,5,6,7,8,9", NULL, NULL), -EINVAL,
		     "more values than BENCH_MAX_PARAMS");
	cr_assert_eq(parse(&o, err, "--scenario", "fds,oneway", NULL, NULL), 0);
	cr_assert_eq(o.scenarios, 1u << BENCH_SC_FDS | 1u << BENCH_SC_ONEWAY);
}

Test(bench, cli_connect_targets)
{
	struct bench_opts o;
	char err[160];

	cr_assert_eq(parse(&o, err, "--connect", "qsd=/tmp/a.sock", "--connect", "/tmp/b.sock"), 0);
	cr_assert_eq(o.ntargets, 2);
	cr_assert_str_eq(o.targets[0].name, "qsd");
	cr_assert_str_eq(o.targets[0].path, "/tmp/a.sock");
	cr_assert_str_eq(o.targets[1].name, "connect:2");
	cr_assert_str_eq(o.targets[1].path, "/tmp/b.sock");
	cr_assert_eq(o.transports, 1u << BENCH_TR_BLOCKING | 1u << BENCH_TR_RAW,
		     "with --connect only the baselines run unless --transport names more");
	cr_assert_eq(parse(&o, err, "--connect", "/tmp/a.sock", "--transport", "uring-stream"), 0);
	cr_assert_eq(o.transports, 1u << BENCH_TR_URING_STREAM | 1u << BENCH_TR_BLOCKING |
				   1u << BENCH_TR_RAW);
	cr_assert_eq(parse(&o, err, "--connect", "/tmp/a.sock", "--no-baselines", NULL), 0,
		     "targets alone are something to measure");
	cr_assert_eq(o.transports, 0);
	cr_assert_eq(parse(&o, err, "--connect", "raw=/tmp/a.sock", NULL, NULL), -EINVAL);
	cr_assert(strstr(err, "built-in"), "%s", err);
	cr_assert_eq(parse(&o, err, "--connect", "=/tmp/a.sock", NULL, NULL), -EINVAL);
	cr_assert_eq(parse(&o, err, "--connect", "x=", NULL, NULL), -EINVAL);
	cr_assert(strstr(err, "path"), "%s", err);
	cr_assert_eq(parse(&o, err, "--transport", "raw", "--no-baselines", NULL), 0);
	cr_assert_eq(parse(&o, err, "--no-baselines", "--transport", "raw", NULL), 0);
}

Test(bench, cli_listen)
{
	struct bench_opts o;
	char err[160];

	cr_assert_eq(parse(&o, err, "--listen", "/tmp/l.sock", NULL, NULL), 0);
	cr_assert_str_eq(o.listen, "/tmp/l.sock");
	cr_assert_eq(o.transports, 1u << BENCH_TR_URING_STREAM, "default server: uring-stream");
	cr_assert_eq(parse(&o, err, "--listen", "/tmp/l.sock", "--transport", "blocking"), 0);
	cr_assert_eq(o.transports, 1u << BENCH_TR_BLOCKING, "no baselines added when serving");
	cr_assert_eq(parse(&o, err, "--listen", "/tmp/l.sock", "--transport", "raw"), -EINVAL);
	cr_assert(strstr(err, "raw"), "%s", err);
	cr_assert_eq(parse(&o, err, "--listen", "/tmp/l.sock", "--transport",
			   "blocking,uring-exact"), -EINVAL);
	cr_assert(strstr(err, "one --transport"), "%s", err);
	cr_assert_eq(parse(&o, err, "--listen", "/tmp/l.sock", "--connect", "/tmp/x"), -EINVAL);
	cr_assert_eq(parse(&o, err, "--exit-after", "2", NULL, NULL), -EINVAL);
	cr_assert(strstr(err, "--listen"), "%s", err);
	cr_assert_eq(parse(&o, err, "--listen", "/tmp/l.sock", "--exit-after", "2"), 0);
	cr_assert_eq(o.exit_after, 2);
}

/* ---- what each case sends, and how the servers answer -------------- */

static const struct vhu_rules server_rules_for_test = {
	.channel = VHU_CHAN_FRONTEND,
	.expect = VHU_EXPECT_REQUEST,
	.max_size = BENCH_MAX_SIZE,
};

static void
hdr_of(const struct bench_traffic *tr, struct vhu_hdr *h)
{
	memcpy(h, tr->msg, sizeof(*h));
}

Test(bench, traffic_requests_are_exact_and_valid)
{
	struct bench_traffic tr;
	struct vhu_hdr h;
	static const uint8_t get_features[12] = { 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0 };
	static const uint8_t set_owner[12] = { 3, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0 };

	bench_traffic_init(&tr, BENCH_SC_RT, 0, 256);
	cr_assert_eq(tr.depth, 1);
	cr_assert_eq(tr.msg_len, 12);
	cr_assert_arr_eq(tr.msg, get_features, 12, "rt: a bare GET_FEATURES header");

	bench_traffic_init(&tr, BENCH_SC_ONEWAY, 0, 256);
	cr_assert_eq(tr.depth, 0, "oneway: nothing is answered");
	cr_assert_arr_eq(tr.msg, set_owner, 12, "oneway/0: SET_OWNER");

	bench_traffic_init(&tr, BENCH_SC_ONEWAY, 4096, 256);
	hdr_of(&tr, &h);
	cr_assert_eq(h.request, VHU_REQ_SET_CONFIG);
	cr_assert_eq(h.flags, VHU_VERSION, "no NEED_REPLY");
	cr_assert_eq(h.size, VHU_CONFIG_HDR_SIZE + 4096);
	cr_assert_eq(tr.msg_len, 12 + 12 + 4096);
	cr_assert_eq(vhu_msg_check(&server_rules_for_test, &h, tr.msg + 12, 0), 0,
		     "the largest payload passes the servers' validation");

	bench_traffic_init(&tr, BENCH_SC_FDS, 1, 256);
	hdr_of(&tr, &h);
	cr_assert_eq(tr.depth, BENCH_FDS_DEPTH, "fds in flight stay bounded");
	cr_assert_eq(h.request, VHU_REQ_SET_VRING_CALL);
	cr_assert_eq(h.flags, VHU_VERSION | VHU_FLAG_NEED_REPLY);
	cr_assert_eq(vhu_msg_check(&server_rules_for_test, &h, tr.msg + 12, 1), 0);
	cr_assert_eq(vhu_msg_check(&server_rules_for_test, &h, tr.msg + 12, 0), -VHU_EFDS);

	bench_traffic_init(&tr, BENCH_SC_FDS, 8, 16);
	hdr_of(&tr, &h);
	cr_assert_eq(tr.depth, 16);
	cr_assert_eq(h.request, VHU_REQ_SET_MEM_TABLE);
	cr_assert_eq(h.size, VHU_MEM_TABLE_SIZE(8));
	cr_assert_eq(vhu_msg_check(&server_rules_for_test, &h, tr.msg + 12, 8), 0,
		     "8 valid, non-overlapping regions");
	cr_assert_eq(vhu_msg_check(&server_rules_for_test, &h, tr.msg + 12, 7), -VHU_EFDS);

	bench_traffic_init(&tr, BENCH_SC_CONNS, 16, 256);
	cr_assert_eq(tr.nconns, 16);
	cr_assert_eq(tr.depth, 16, "--depth is split over the connections");
	bench_traffic_init(&tr, BENCH_SC_CONNS, 256, 64);
	cr_assert_eq(tr.depth, 1, "at least one in flight on each");
}

Test(bench, fill_requests_repeats_the_message)
{
	struct bench_traffic tr;
	uint8_t buf[3 * (12 + 12 + 64)];

	bench_traffic_init(&tr, BENCH_SC_ONEWAY, 64, 0);
	bench_fill_requests(&tr, buf, 3);
	for (int i = 0; i < 3; i++) {
		cr_assert_arr_eq(buf + i * tr.msg_len, tr.msg, tr.msg_len);
	}
}

static uint64_t
reply_value(const uint8_t *reply, uint32_t request)
{
	struct vhu_hdr h;
	uint64_t v;

	memcpy(&h, reply, sizeof(h));
	cr_assert_eq(h.request, request);
	cr_assert_eq(h.flags, VHU_VERSION | VHU_FLAG_REPLY);
	cr_assert_eq(h.size, 8);
	memcpy(&v, reply + 12, sizeof(v));
	return v;
}

Test(bench, serve_answers_what_a_backend_would)
{
	struct bench_counts k = { 0 };
	uint8_t reply[BENCH_REPLY_SIZE];
	struct vhu_hdr h;

	h = vhu_hdr_request(VHU_REQ_GET_FEATURES, 0, false);
	cr_assert_eq(bench_serve(&k, &h, NULL, 0, reply), 1);
	cr_assert_eq(reply_value(reply, VHU_REQ_GET_FEATURES), BENCH_FEATURES);
	h = vhu_hdr_request(VHU_REQ_GET_PROTOCOL_FEATURES, 0, false);
	cr_assert_eq(bench_serve(&k, &h, NULL, 0, reply), 1);
	cr_assert_eq(reply_value(reply, VHU_REQ_GET_PROTOCOL_FEATURES),
		     UINT64_C(1) << VHU_PROTOCOL_F_REPLY_ACK);
	h = vhu_hdr_request(VHU_REQ_SET_CONFIG, 76, false);
	cr_assert_eq(bench_serve(&k, &h, NULL, 0, reply), 0, "no NEED_REPLY: no reply");
	h = vhu_hdr_request(VHU_REQ_SET_PROTOCOL_FEATURES, 8, true);
	cr_assert_eq(bench_serve(&k, &h, NULL, 0, reply), 1);
	cr_assert_eq(reply_value(reply, VHU_REQ_SET_PROTOCOL_FEATURES), 0, "ack: success");
	cr_assert_eq(k.msgs, 4);
	cr_assert_eq(k.replies, 3);
}

/* The fd check: the server writes to the fds of one request in BENCH_PROBE_EVERY. */
Test(bench, serve_probes_fds_and_counts_them)
{
	struct bench_counts k = { 0 };
	uint8_t reply[BENCH_REPLY_SIZE];
	struct vhu_hdr h = vhu_hdr_request(VHU_REQ_SET_MEM_TABLE, VHU_MEM_TABLE_SIZE(2), true);
	int fds[2] = { t_eventfd(), t_eventfd() };
	unsigned int n = 3 * BENCH_PROBE_EVERY + 1;
	uint64_t v;

	for (unsigned int i = 0; i < n; i++) {
		cr_assert_eq(bench_serve(&k, &h, fds, 2, reply), 1);
	}
	cr_assert_eq(k.fds, 2 * n);
	cr_assert_eq(k.probes, 4, "requests 0, 64, 128 and 192");
	for (int i = 0; i < 2; i++) {
		cr_assert_eq(read(fds[i], &v, sizeof(v)), (ssize_t)sizeof(v));
		cr_assert_eq(v, 4, "each eventfd was written once per probe");
		close(fds[i]);
	}
}

Test(bench, serve_refuses_an_fd_that_is_not_an_eventfd)
{
	struct bench_counts k = { 0 };
	uint8_t reply[BENCH_REPLY_SIZE];
	struct vhu_hdr h = vhu_hdr_request(VHU_REQ_SET_VRING_CALL, 8, true);
	int p[2];

	cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
	/* the read end of a pipe cannot be written: not the file the client sent */
	cr_assert_eq(bench_serve(&k, &h, &p[0], 1, reply), -VHU_EFDS);
	close(p[0]);
	close(p[1]);
}

static void
totals_ok(struct bench_totals *t)
{
	memset(t, 0, sizeof(*t));
	t->sent = 1000;
	t->replies = 1000;
	t->want_replies = true;
	t->nfds = 2;
	t->counters[0] = 16;
	t->counters[1] = 16;
	t->has_server = true;
	t->srv_msgs = 1000;
	t->srv_fds = 2000;
	t->srv_probes = 16;
}

static struct bench_result
checked(const struct bench_totals *t)
{
	struct bench_result r;

	bench_result_init(&r, "fds", "uring-stream");
	bench_check_totals(&r, t);
	return r;
}

Test(bench, totals_name_what_was_lost)
{
	struct bench_totals t;
	struct bench_result r;

	totals_ok(&t);
	r = checked(&t);
	cr_assert_eq(r.status, BENCH_OK, "%s", r.reason);
	cr_assert_eq(r.fds_checked, 2000);

	totals_ok(&t);
	t.replies = 999;
	r = checked(&t);
	cr_assert_eq(r.status, BENCH_FAILED);
	cr_assert(strstr(r.reason, "lost replies: 1 of 1000"), "%s", r.reason);

	totals_ok(&t);
	t.srv_msgs = 998;
	r = checked(&t);
	cr_assert(strstr(r.reason, "lost requests") && strstr(r.reason, "998 of 1000"), "%s",
		  r.reason);

	totals_ok(&t);
	t.srv_fds = 1999;
	r = checked(&t);
	cr_assert(strstr(r.reason, "lost fds: 1999"), "%s", r.reason);

	totals_ok(&t);
	t.counters[1] = 15;
	r = checked(&t);
	cr_assert_eq(r.status, BENCH_FAILED);
	cr_assert(strstr(r.reason, "wrong fds") && strstr(r.reason, "eventfd 2 counts 15"), "%s",
		  r.reason);
	cr_assert_eq(r.fds_checked, 0);

	totals_ok(&t);
	t.has_server = false;
	t.srv_msgs = 0;
	r = checked(&t);
	cr_assert_eq(r.status, BENCH_OK, "an outside back-end: only the client's count");
	cr_assert_eq(r.fds_checked, 0, "nothing checked its fds");

	totals_ok(&t);
	t.want_replies = false;
	t.replies = 0;
	t.nfds = 0;
	t.srv_fds = 0;
	r = checked(&t);
	cr_assert_eq(r.status, BENCH_OK, "oneway: no replies expected");
}

/* ---- cases in the table, JSON and plot ------------------------------ */

Test(bench, ratios_never_cross_cases)
{
	struct bench_result res[3];

	fake(&res[0], "oneway", "blocking", 100e3, NAN, 1000);
	fake(&res[1], "oneway", "raw", 400e3, NAN, 1000);
	fake(&res[2], "oneway", "uring-stream", 200e3, NAN, 1000);
	bench_case_label(res[0].label, sizeof(res[0].label), "oneway", true, 64);
	bench_case_label(res[1].label, sizeof(res[1].label), "oneway", true, 4096);
	bench_case_label(res[2].label, sizeof(res[2].label), "oneway", true, 64);
	cr_assert_str_eq(res[0].label, "oneway/64");
	bench_compute_ratios(res, 3);
	cr_assert_float_eq(res[2].rate_ratio[BENCH_BASE_BLOCKING], 2.0, 1e-12);
	cr_assert(isnan(res[2].rate_ratio[BENCH_BASE_RAW]), "raw ran oneway/4096 only");
}

Test(bench, oneway_table_has_bandwidth)
{
	struct bench_result res[2];
	char *text;
	const char *l;

	fake(&res[0], "oneway", "blocking", 100e3, NAN, 1000);
	fake(&res[1], "oneway", "uring-stream", 250e3, NAN, 1000);
	for (int i = 0; i < 2; i++) {
		snprintf(res[i].label, sizeof(res[i].label), "oneway/4096");
		res[i].param = 4096;
		res[i].msg_bytes = 4120;
		res[i].depth = 0;
		res[i].allocs_server = 0;
	}
	bench_compute_ratios(res, 2);
	text = table_of(res, 2, "oneway/4096");
	cr_assert(strstr(text, "SET_CONFIG requests, 4096-byte payload (4120 bytes each)"), "%s",
		  text);
	cr_assert(strstr(text, "MB/s"), "%s", text);
	l = line_after(text, "uring-stream ", 0);
	/* 250k/s x 4120 bytes = 1030 MB/s; server allocations 0 */
	cr_assert(strstr(l, "1030") && l[strlen(l) - 1] == '0', "%s", l);
	l = line_after(text, "uring-stream ", 1);
	cr_assert(strstr(l, "2.50x"), "%s", l);
	free(text);
}

Test(bench, plot_script_has_a_row_per_case)
{
	struct bench_result res[4];
	struct bench_run_info info = { .reps = 5, .cpu_client = 0, .cpu_server = 1,
				       .kernel = "6.18-test" };
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);

	fake(&res[0], "rt", "blocking", 20e3, 50e3, 1000);
	fake(&res[1], "rt", "uring-stream", 40e3, 25e3, 1000);
	fake(&res[2], "pipe", "blocking", 300e3, NAN, 1000);
	fake(&res[3], "pipe", "uring-stream", NAN, NAN, NAN);
	res[3].status = BENCH_FAILED;
	cr_assert_not_null(f);
	bench_plot_script(f, "/tmp/it's.png", &info, res, 4);
	fclose(f);
	cr_assert(strstr(text, "set output '/tmp/it''s.png'"), "quoted: %s", text);
	cr_assert(strstr(text, "case \"blocking\" \"uring-stream\"\n"), "%s", text);
	cr_assert(strstr(text, "\"rt\" 20000 40000\n"), "%s", text);
	cr_assert(strstr(text, "\"pipe\" 300000 -\n"), "a failed run is a gap: %s", text);
	cr_assert(strstr(text, "plot for [i=2:3]"), "%s", text);
	/* gnuplot repeats its colours after 8: the 9 built-in transports need their own */
	cr_assert(strstr(text, "set linetype 9 lc rgb '#"), "%s", text);
	free(text);
}
