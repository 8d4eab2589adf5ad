/* SPDX-License-Identifier: MIT */
#include "report.h"

#include <math.h>
#include <string.h>

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
	r->transport = transport;
	r->rate.median = NAN;
	r->rate.min = NAN;
	r->rate.max = NAN;
	r->cpu_client_ns = NAN;
	r->cpu_server_ns = NAN;
	r->enters_per_msg = NAN;
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

static double
ratio(double x, double base)
{
	if (!isfinite(x) || !isfinite(base) || base == 0.0) {
		return NAN;
	}
	return x / base;
}

static const struct bench_result *
find_base(const struct bench_result *res, size_t n, const char *scenario, const char *transport)
{
	for (size_t i = 0; i < n; i++) {
		if (res[i].status == BENCH_OK && strcmp(res[i].scenario, scenario) == 0 &&
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

			base = find_base(res, n, r->scenario, bench_base_names[b]);
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
}

static bool
scenario_has_latency(const struct bench_result *res, size_t n, const char *scenario)
{
	for (size_t i = 0; i < n; i++) {
		if (strcmp(res[i].scenario, scenario) == 0 && res[i].has_latency) {
			return true;
		}
	}
	return false;
}

#define COL_NAME	"%-18s"
#define COL_RATE	"%9s"
#define COL_RANGE	"  %-15s"
#define COL_NUM		"%9s"

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
	bench_fmt_us(cell, sizeof(cell), r->cpu_client_ns + r->cpu_server_ns);
	fprintf(f, COL_NUM, cell);
	bench_fmt_us(cell, sizeof(cell), r->cpu_client_ns);
	fprintf(f, COL_NUM, cell);
	bench_fmt_us(cell, sizeof(cell), r->cpu_server_ns);
	fprintf(f, COL_NUM "\n", cell);
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
	bench_fmt_ratio(cell, sizeof(cell), r->cpu_ratio[b]);
	fprintf(f, COL_NUM "\n", cell);
}

void
bench_print_table(FILE *f, const struct bench_result *res, size_t n, const char *scenario)
{
	bool lat = scenario_has_latency(res, n, scenario);
	unsigned int depth = 0;

	for (size_t i = 0; i < n; i++) {
		if (strcmp(res[i].scenario, scenario) == 0) {
			depth = res[i].depth;
			break;
		}
	}
	fprintf(f, "\n%s: %u request%s in flight; %sCPU time (user+sys per message) in us\n",
		scenario, depth, depth == 1 ? "" : "s", lat ? "latency (one round trip) and " : "");
	fprintf(f, COL_NAME COL_RATE COL_RANGE, "transport", "msgs/s", "min..max");
	if (lat) {
		fprintf(f, COL_NUM COL_NUM COL_NUM COL_NUM, "p50", "p90", "p99", "p99.9");
	}
	fprintf(f, COL_NUM COL_NUM COL_NUM "\n", "cpu/msg", "client", "server");
	for (size_t i = 0; i < n; i++) {
		const struct bench_result *r = &res[i];

		if (strcmp(r->scenario, scenario) != 0) {
			continue;
		}
		if (r->status != BENCH_OK) {
			fprintf(f, COL_NAME "  %s: %s\n", r->transport, status_name(r->status),
				r->reason);
			continue;
		}
		print_figures(f, r, lat);
		for (int b = 0; b < BENCH_NBASE; b++) {
			if (strcmp(r->transport, bench_base_names[b]) != 0) {
				print_ratios(f, r, b, lat);
			}
		}
	}
}

static void
json_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\') {
			fprintf(f, "\\%c", c);
		} else if (c < 0x20) {
			fprintf(f, "\\u%04x", c);
		} else {
			fputc(c, f);
		}
	}
	fputc('"', f);
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
	json_str(f, r->scenario);
	fputs(",\"transport\":", f);
	json_str(f, r->transport);
	fprintf(f, ",\"status\":\"%s\",\"reason\":", status_name(r->status));
	if (r->status != BENCH_OK) {
		json_str(f, r->reason);
	} else {
		fputs("null", f);
	}
	fprintf(f, ",\"depth\":%u,\"reps\":%u,\"duration_ms\":%u,\"count\":%llu,"
		"\"warmup_ms\":%u,\"cpu_client\":%d,\"cpu_server\":%d,\"ncpus\":%u,\"kernel\":",
		r->depth, info->reps, info->duration_ms, (unsigned long long)info->count,
		info->warmup_ms, info->cpu_client, info->cpu_server, info->ncpus);
	json_str(f, info->kernel);
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
	fputs("}\n", f);
}
