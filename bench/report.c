/* SPDX-License-Identifier: MIT */
#include "report.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <vhu/version.h>

#include "common/json.h"

const char *const bench_base_names[BENCH_NBASE] = {
	[BENCH_BASE_BLOCKING] = "blocking",
	[BENCH_BASE_RAW] = "raw",
};

static const char *const lat_names[BENCH_NLAT] = {
	[BENCH_P50] = "p50",
	[BENCH_P90] = "p90",
	[BENCH_P99] = "p99",
	[BENCH_P999] = "p999",
};

static const char *
status_name(enum bench_status st)
{
	switch (st) {
	case BENCH_OK:
		return "ok";
	case BENCH_UNAVAILABLE:
		return "unavailable";
	case BENCH_FAILED:
		break;
	}
	return "failed";
}

void
bench_result_init(struct bench_result *r, const char *scenario, const char *transport)
{
	memset(r, 0, sizeof(*r));
	r->scenario = scenario;
	snprintf(r->label, sizeof(r->label), "%s", scenario);
	r->transport = transport;
	r->conns = 1;
	r->allocs_client = NAN;
	r->allocs_server = NAN;
	r->rate.median = NAN;
	r->rate.min = NAN;
	r->rate.max = NAN;
	r->cpu_client_ns = NAN;
	r->cpu_server_ns = NAN;
	r->enters_per_msg = NAN;
	r->sendmsgs_per_msg = NAN;
	for (int i = 0; i < BENCH_NLAT; i++) {
		r->lat_ns[i] = NAN;
	}
	for (int b = 0; b < BENCH_NBASE; b++) {
		r->rate_ratio[b] = NAN;
		r->cpu_ratio[b] = NAN;
		for (int i = 0; i < BENCH_NLAT; i++) {
			r->lat_ratio[b][i] = NAN;
		}
	}
}

static void __attribute__((format(printf, 2, 3)))
failed(struct bench_result *res, const char *fmt, ...)
{
	va_list ap;

	res->status = BENCH_FAILED;
	va_start(ap, fmt);
	vsnprintf(res->reason, sizeof(res->reason), fmt, ap);
	va_end(ap);
}

void
bench_check_totals(struct bench_result *res, const struct bench_totals *t)
{
	if (t->want_replies && t->replies != t->sent) {
		failed(res, "lost replies: %" PRIu64 " of %" PRIu64 " requests got none",
		       t->sent - t->replies, t->sent);
		return;
	}
	if (!t->has_server) {
		return;
	}
	if (t->srv_msgs != t->sent) {
		failed(res, "lost requests: the server received %" PRIu64 " of %" PRIu64,
		       t->srv_msgs, t->sent);
		return;
	}
	if (t->srv_fds != t->srv_msgs * t->nfds) {
		failed(res, "lost fds: %" PRIu64 " arrived with %" PRIu64 " requests of %u",
		       t->srv_fds, t->srv_msgs, t->nfds);
		return;
	}
	for (unsigned int i = 0; i < t->nfds && i < 8; i++) {
		if (t->counters[i] != t->srv_probes) {
			failed(res, "wrong fds: the server wrote to fd %u of %" PRIu64 " requests, "
			       "the client's eventfd %u counts %" PRIu64, i + 1, t->srv_probes,
			       i + 1, t->counters[i]);
			return;
		}
	}
	res->fds_checked = t->srv_fds;
}

void
bench_case_label(char *buf, size_t len, const char *scenario, bool has_param, unsigned int param)
{
	if (has_param) {
		snprintf(buf, len, "%s/%u", scenario, param);
	} else {
		snprintf(buf, len, "%s", scenario);
	}
}

static double
ratio(double x, double base)
{
	if (!isfinite(x) || !isfinite(base) || base == 0.0) {
		return NAN;
	}
	return x / base;
}

static const struct bench_result *
find_base(const struct bench_result *res, size_t n, const char *label, const char *transport)
{
	for (size_t i = 0; i < n; i++) {
		if (res[i].status == BENCH_OK && strcmp(res[i].label, label) == 0 &&
		    strcmp(res[i].transport, transport) == 0) {
			return &res[i];
		}
	}
	return NULL;
}

void
bench_compute_ratios(struct bench_result *res, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		struct bench_result *r = &res[i];

		for (int b = 0; b < BENCH_NBASE; b++) {
			const struct bench_result *base;

			base = find_base(res, n, r->label, bench_base_names[b]);
			r->rate_ratio[b] = NAN;
			r->cpu_ratio[b] = NAN;
			for (int l = 0; l < BENCH_NLAT; l++) {
				r->lat_ratio[b][l] = NAN;
			}
			if (base == NULL || r->status != BENCH_OK) {
				continue;
			}
			r->rate_ratio[b] = ratio(r->rate.median, base->rate.median);
			r->cpu_ratio[b] = ratio(r->cpu_client_ns + r->cpu_server_ns,
						base->cpu_client_ns + base->cpu_server_ns);
			if (r->has_latency && base->has_latency) {
				for (int l = 0; l < BENCH_NLAT; l++) {
					r->lat_ratio[b][l] = ratio(r->lat_ns[l], base->lat_ns[l]);
				}
			}
		}
	}
}

/* Three significant figures without an exponent, for values >= 0. */
static int
fmt_sig3(char *buf, size_t len, double v, const char *suffix)
{
	if (v < 10.0) {
		return snprintf(buf, len, "%.2f%s", v, suffix);
	}
	if (v < 100.0) {
		return snprintf(buf, len, "%.1f%s", v, suffix);
	}
	return snprintf(buf, len, "%.0f%s", v, suffix);
}

int
bench_fmt_ratio(char *buf, size_t len, double r)
{
	if (!isfinite(r)) {
		return snprintf(buf, len, "-");
	}
	/* small ratios keep two significant digits: 0.0046x, not 0.00x */
	if (r > 0.0 && r < 0.995) {
		return snprintf(buf, len, "%#.2gx", r);
	}
	return fmt_sig3(buf, len, r, "x");
}

int
bench_fmt_rate(char *buf, size_t len, double rate)
{
	if (!isfinite(rate)) {
		return snprintf(buf, len, "-");
	}
	if (rate < 1000.0) {
		return snprintf(buf, len, "%.0f", rate);
	}
	/* 999.96k would print as "1000k": switch unit where rounding would */
	if (rate < 999.5e3) {
		return fmt_sig3(buf, len, rate / 1e3, "k");
	}
	if (rate < 999.5e6) {
		return fmt_sig3(buf, len, rate / 1e6, "M");
	}
	return fmt_sig3(buf, len, rate / 1e9, "G");
}

int
bench_fmt_us(char *buf, size_t len, double ns)
{
	if (!isfinite(ns)) {
		return snprintf(buf, len, "-");
	}
	return fmt_sig3(buf, len, ns / 1e3, "");
}

void
bench_print_header(FILE *f, const struct bench_run_info *info)
{
	fprintf(f, "vhu-bench: kernel %s, %u CPU%s available; ", info->kernel, info->ncpus,
		info->ncpus == 1 ? "" : "s");
	if (info->cpu_client == info->cpu_server) {
		fprintf(f, "client and server share CPU %d\n", info->cpu_client);
	} else {
		fprintf(f, "client on CPU %d, server on CPU %d\n", info->cpu_client,
			info->cpu_server);
	}
	if (info->count) {
		fprintf(f, "method: warm-up %u ms, then %u repetitions of %llu messages; "
			"median [min..max] of the per-repetition rate\n", info->warmup_ms,
			info->reps, (unsigned long long)info->count);
	} else {
		fprintf(f, "method: warm-up %u ms, then %u repetitions of %u ms; "
			"median [min..max] of the per-repetition rate\n", info->warmup_ms,
			info->reps, info->duration_ms);
	}
	fprintf(f, "ratios: this transport / baseline, same run (rate: >1 is faster; "
		"latency, CPU: >1 is costlier)\n");
	if (info->ntargets) {
		fprintf(f, "outside back-ends (--connect) run where they are: vhu-bench does not "
			"pin them; their CPU is read from /proc\n");
	}
}

static bool
case_has_latency(const struct bench_result *res, size_t n, const char *label)
{
	for (size_t i = 0; i < n; i++) {
		if (strcmp(res[i].label, label) == 0 && res[i].has_latency) {
			return true;
		}
	}
	return false;
}

static bool
is_oneway(const struct bench_result *r)
{
	return strcmp(r->scenario, "oneway") == 0;
}

/* Megabytes (10^6 bytes) of requests per second. */
static double
mbps(const struct bench_result *r)
{
	return r->rate.median * r->msg_bytes / 1e6;
}

#define COL_NAME	"%-18s"
#define COL_RATE	"%9s"
#define COL_RANGE	"  %-15s"
#define COL_NUM		"%9s"

static void
print_allocs(FILE *f, double v)
{
	char cell[16];

	if (!isfinite(v)) {
		snprintf(cell, sizeof(cell), "-");
	} else if (v == 0.0) {
		snprintf(cell, sizeof(cell), "0");
	} else {
		snprintf(cell, sizeof(cell), "%.2g", v);
	}
	fprintf(f, COL_NUM, cell);
}

static void
print_figures(FILE *f, const struct bench_result *r, bool lat)
{
	char rate[16], lo[16], hi[16], range[40], cell[16];

	bench_fmt_rate(rate, sizeof(rate), r->rate.median);
	bench_fmt_rate(lo, sizeof(lo), r->rate.min);
	bench_fmt_rate(hi, sizeof(hi), r->rate.max);
	snprintf(range, sizeof(range), "%s..%s", lo, hi);
	fprintf(f, COL_NAME COL_RATE COL_RANGE, r->transport, rate, range);
	if (lat) {
		for (int l = 0; l < BENCH_NLAT; l++) {
			bench_fmt_us(cell, sizeof(cell), r->has_latency ? r->lat_ns[l] : NAN);
			fprintf(f, COL_NUM, cell);
		}
	}
	if (is_oneway(r)) {
		fmt_sig3(cell, sizeof(cell), mbps(r), "");
		fprintf(f, COL_NUM, cell);
	}
	bench_fmt_us(cell, sizeof(cell), r->cpu_client_ns + r->cpu_server_ns);
	fprintf(f, COL_NUM, cell);
	bench_fmt_us(cell, sizeof(cell), r->cpu_client_ns);
	fprintf(f, COL_NUM, cell);
	bench_fmt_us(cell, sizeof(cell), r->cpu_server_ns);
	fprintf(f, COL_NUM, cell);
	print_allocs(f, r->allocs_server);
	fputc('\n', f);
}

static void
print_ratios(FILE *f, const struct bench_result *r, int b, bool lat)
{
	char label[32], cell[16];

	snprintf(label, sizeof(label), "  vs %s", bench_base_names[b]);
	bench_fmt_ratio(cell, sizeof(cell), r->rate_ratio[b]);
	fprintf(f, COL_NAME COL_RATE COL_RANGE, label, cell, "");
	if (lat) {
		for (int l = 0; l < BENCH_NLAT; l++) {
			bench_fmt_ratio(cell, sizeof(cell), r->lat_ratio[b][l]);
			fprintf(f, COL_NUM, cell);
		}
	}
	if (is_oneway(r)) {
		bench_fmt_ratio(cell, sizeof(cell), r->rate_ratio[b]);
		fprintf(f, COL_NUM, cell);
	}
	bench_fmt_ratio(cell, sizeof(cell), r->cpu_ratio[b]);
	fprintf(f, COL_NUM "\n", cell);
}

/* What the case sent, in words. */
static void
print_case(FILE *f, const struct bench_result *r, bool lat)
{
	const char *sc = r->scenario;

	fprintf(f, "\n%s: ", r->label);
	if (strcmp(sc, "oneway") == 0) {
		fprintf(f, "%s requests, %u-byte payload (%u bytes each), no replies",
			r->param ? "SET_CONFIG" : "SET_OWNER", r->param, r->msg_bytes);
	} else if (strcmp(sc, "fds") == 0) {
		fprintf(f, "%s with %u fd%s and NEED_REPLY, %u in flight; every fd checked",
			r->param == 1 ? "SET_VRING_CALL" : "SET_MEM_TABLE", r->param,
			r->param == 1 ? "" : "s", r->depth);
	} else if (strcmp(sc, "conns") == 0) {
		fprintf(f, "%u GET_FEATURES in flight over %u connection%s", r->depth, r->conns,
			r->conns == 1 ? "" : "s");
	} else {
		fprintf(f, "%u GET_FEATURES request%s in flight", r->depth,
			r->depth == 1 ? "" : "s");
	}
	fprintf(f, "; %sCPU (user+sys) per message in us; server heap allocations per "
		"message\n", lat ? "round-trip latency and " : "");
}

static bool
in_case(const struct bench_result *res, size_t n, const char *label, const char *transport)
{
	for (size_t i = 0; i < n; i++) {
		if (strcmp(res[i].label, label) == 0 && strcmp(res[i].transport, transport) == 0) {
			return true;
		}
	}
	return false;
}

void
bench_print_table(FILE *f, const struct bench_result *res, size_t n, const char *label)
{
	bool lat = case_has_latency(res, n, label);
	const struct bench_result *first = NULL;

	for (size_t i = 0; i < n && !first; i++) {
		if (strcmp(res[i].label, label) == 0) {
			first = &res[i];
		}
	}
	if (first == NULL) {
		return;
	}
	print_case(f, first, lat);
	fprintf(f, COL_NAME COL_RATE COL_RANGE, "transport", "msgs/s", "min..max");
	if (lat) {
		fprintf(f, COL_NUM COL_NUM COL_NUM COL_NUM, "p50", "p90", "p99", "p99.9");
	}
	if (is_oneway(first)) {
		fprintf(f, COL_NUM, "MB/s");
	}
	fprintf(f, COL_NUM COL_NUM COL_NUM COL_NUM "\n", "cpu/msg", "client", "server", "allocs");
	for (size_t i = 0; i < n; i++) {
		const struct bench_result *r = &res[i];

		if (strcmp(r->label, label) != 0) {
			continue;
		}
		if (r->status != BENCH_OK) {
			fprintf(f, COL_NAME "  %s: %s\n", r->transport, status_name(r->status),
				r->reason);
			continue;
		}
		print_figures(f, r, lat);
		for (int b = 0; b < BENCH_NBASE; b++) {
			/* no line for a baseline that was not run at all (--no-baselines) */
			if (strcmp(r->transport, bench_base_names[b]) != 0 &&
			    in_case(res, n, label, bench_base_names[b])) {
				print_ratios(f, r, b, lat);
			}
		}
	}
}

static void
json_num(FILE *f, const char *key, double v)
{
	fprintf(f, ",\"%s\":", key);
	if (isfinite(v)) {
		fprintf(f, "%.9g", v);
	} else {
		fputs("null", f);
	}
}

void
bench_print_json(FILE *f, const struct bench_run_info *info, const struct bench_result *r)
{
	char key[48];

	fputs("{\"scenario\":", f);
	tool_json_str(f, r->scenario);
	fputs(",\"case\":", f);
	tool_json_str(f, r->label);
	fprintf(f, ",\"param\":%u,\"conns\":%u,\"msg_bytes\":%u", r->param, r->conns,
		r->msg_bytes);
	fputs(",\"transport\":", f);
	tool_json_str(f, r->transport);
	fprintf(f, ",\"status\":\"%s\",\"reason\":", status_name(r->status));
	if (r->status != BENCH_OK) {
		tool_json_str(f, r->reason);
	} else {
		fputs("null", f);
	}
	fprintf(f, ",\"depth\":%u,\"reps\":%u,\"duration_ms\":%u,\"count\":%llu,"
		"\"warmup_ms\":%u,\"cpu_client\":%d,\"cpu_server\":%d,\"ncpus\":%u,\"kernel\":",
		r->depth, info->reps, info->duration_ms, (unsigned long long)info->count,
		info->warmup_ms, info->cpu_client, info->cpu_server, info->ncpus);
	tool_json_str(f, info->kernel);
	fputs(",\"vhu_version\":", f);
	tool_json_str(f, vhu_version());
	fprintf(f, ",\"msgs\":%llu", (unsigned long long)r->msgs);
	json_num(f, "rate_median", r->rate.median);
	json_num(f, "rate_min", r->rate.min);
	json_num(f, "rate_max", r->rate.max);
	for (int b = 0; b < BENCH_NBASE; b++) {
		snprintf(key, sizeof(key), "rate_vs_%s", bench_base_names[b]);
		json_num(f, key, r->rate_ratio[b]);
	}
	for (int l = 0; l < BENCH_NLAT; l++) {
		snprintf(key, sizeof(key), "lat_%s_ns", lat_names[l]);
		json_num(f, key, r->has_latency ? r->lat_ns[l] : NAN);
		for (int b = 0; b < BENCH_NBASE; b++) {
			snprintf(key, sizeof(key), "lat_%s_vs_%s", lat_names[l],
				 bench_base_names[b]);
			json_num(f, key, r->lat_ratio[b][l]);
		}
	}
	json_num(f, "cpu_client_ns_per_msg", r->cpu_client_ns);
	json_num(f, "cpu_server_ns_per_msg", r->cpu_server_ns);
	for (int b = 0; b < BENCH_NBASE; b++) {
		snprintf(key, sizeof(key), "cpu_vs_%s", bench_base_names[b]);
		json_num(f, key, r->cpu_ratio[b]);
	}
	json_num(f, "enters_per_msg", r->enters_per_msg);
	json_num(f, "sendmsgs_per_msg", r->sendmsgs_per_msg);
	json_num(f, "mb_per_s", is_oneway(r) ? mbps(r) : NAN);
	json_num(f, "allocs_client_per_msg", r->allocs_client);
	json_num(f, "allocs_server_per_msg", r->allocs_server);
	fprintf(f, ",\"fds_checked\":%llu", (unsigned long long)r->fds_checked);
	fputs("}\n", f);
}
