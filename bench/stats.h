/* SPDX-License-Identifier: MIT */
/**
 * \file
 * Statistics of vhu-bench: summaries of per-repetition figures and latency
 * percentiles. Pure functions, no allocation, no clock.
 */
#ifndef VHU_BENCH_STATS_H
#define VHU_BENCH_STATS_H

#include <stddef.h>
#include <stdint.h>

/** Most repetitions a summary takes (the CLI enforces it). */
#define BENCH_MAX_REPS	1000u

/** Median, minimum and maximum of a set of figures. */
struct bench_summary {
	double median;	/**< mean of the two middle values for an even count */
	double min;
	double max;
};

/**
 * Summarise n figures (not modified).
 * \return 0, or -EINVAL if n is 0 or above BENCH_MAX_REPS.
 */
int bench_summarize(const double *v, size_t n, struct bench_summary *out);

/** Latency percentiles, in the unit of the samples. */
struct bench_pctls {
	uint64_t p50;
	uint64_t p90;
	uint64_t p99;
	uint64_t p999;	/**< p99.9 */
	uint64_t min;
	uint64_t max;
};

/**
 * Nearest-rank percentile of a sorted array: the smallest sample such that
 * at least p of the samples are <= it, i.e. sorted[ceil(p * n) - 1].
 * p is given in thousandths of a percent (p50 = 50000, p99.9 = 99900), so
 * the rank is computed in integers and 99.9% of 1000 is exactly rank 999.
 * \return the sample, or 0 if n is 0.
 */
uint64_t bench_pctl_sorted(const uint64_t *sorted, size_t n, unsigned int p_milli);

/** Sort samples ascending, in place. */
void bench_sort_u64(uint64_t *v, size_t n);

/**
 * Sort samples in place and fill p50/p90/p99/p99.9, min and max.
 * \return 0, or -EINVAL if n is 0.
 */
int bench_latency_pctls(uint64_t *samples, size_t n, struct bench_pctls *out);

#endif
