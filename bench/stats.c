/* SPDX-License-Identifier: MIT */
#include "stats.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a;
	double y = *(const double *)b;

	return (x > y) - (x < y);
}

static int
cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a;
	uint64_t y = *(const uint64_t *)b;

	return (x > y) - (x < y);
}

int
bench_summarize(const double *v, size_t n, struct bench_summary *out)
{
	double tmp[BENCH_MAX_REPS];

	if (n == 0 || n > BENCH_MAX_REPS) {
		return -EINVAL;
	}
	memcpy(tmp, v, n * sizeof(*v));
	qsort(tmp, n, sizeof(*tmp), cmp_double);
	out->min = tmp[0];
	out->max = tmp[n - 1];
	if (n % 2) {
		out->median = tmp[n / 2];
	} else {
		out->median = (tmp[n / 2 - 1] + tmp[n / 2]) / 2.0;
	}
	return 0;
}

uint64_t
bench_pctl_sorted(const uint64_t *sorted, size_t n, unsigned int p_milli)
{
	uint64_t rank;

	if (n == 0) {
		return 0;
	}
	if (p_milli > 100000) {
		p_milli = 100000;
	}
	/* ceil(p * n) with p = p_milli / 100000, in integers */
	rank = ((uint64_t)p_milli * n + 99999) / 100000;
	if (rank == 0) {
		rank = 1;
	}
	return sorted[rank - 1];
}

void
bench_sort_u64(uint64_t *v, size_t n)
{
	qsort(v, n, sizeof(*v), cmp_u64);
}

int
bench_latency_pctls(uint64_t *samples, size_t n, struct bench_pctls *out)
{
	if (n == 0) {
		return -EINVAL;
	}
	bench_sort_u64(samples, n);
	out->p50 = bench_pctl_sorted(samples, n, 50000);
	out->p90 = bench_pctl_sorted(samples, n, 90000);
	out->p99 = bench_pctl_sorted(samples, n, 99000);
	out->p999 = bench_pctl_sorted(samples, n, 99900);
	out->min = samples[0];
	out->max = samples[n - 1];
	return 0;
}
