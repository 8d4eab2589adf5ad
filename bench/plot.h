/* SPDX-License-Identifier: MIT */
/**
 * \file
 * --plot: the rates of a run as a PNG, drawn by gnuplot (Debian's
 * gnuplot-nox): one cluster of bars per case, one bar per transport, on a
 * log scale. The script goes to gnuplot's standard input; nothing else is
 * written but the PNG.
 */
#ifndef VHU_BENCH_PLOT_H
#define VHU_BENCH_PLOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "report.h"

/**
 * Write the gnuplot script that draws res into path (a PNG) to f. Pure
 * formatting, for tests; a transport or case with no figure plots as a gap.
 */
void bench_plot_script(FILE *f, const char *path, const struct bench_run_info *info,
		       const struct bench_result *res, size_t n);

/**
 * Run gnuplot on that script.
 * \return 0, or -1 with err set (gnuplot missing, or it failed).
 */
/** Is gnuplot on PATH (checked before a run, so that --plot fails fast)? */
bool bench_plot_available(void);

int bench_plot(const char *path, const struct bench_run_info *info,
	       const struct bench_result *res, size_t n, char *err, size_t errlen);

#endif
