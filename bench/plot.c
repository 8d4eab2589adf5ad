/* SPDX-License-Identifier: MIT */
#include "plot.h"

#include <math.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* Cases and transports in the order they first appear. */
#define PLOT_MAX	64

static size_t
uniq(const char **names, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++) {
		if (strcmp(names[i], name) == 0) {
			return i;
		}
	}
	return n;
}

/* A gnuplot single-quoted string: ' doubles. */
static void
quoted(FILE *f, const char *s)
{
	fputc('\'', f);
	for (; *s; s++) {
		if (*s == '\'') {
			fputc('\'', f);
		}
		fputc(*s, f);
	}
	fputc('\'', f);
}

/* A data-block column: double-quoted, with any " in the name made a '. */
static void
column(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		fputc(*s == '"' ? '\'' : *s, f);
	}
	fputc('"', f);
}

static const struct bench_result *
find(const struct bench_result *res, size_t n, const char *label, const char *transport)
{
	for (size_t i = 0; i < n; i++) {
		if (strcmp(res[i].label, label) == 0 && strcmp(res[i].transport, transport) == 0) {
			return &res[i];
		}
	}
	return NULL;
}

/* One colour per bar of a cluster: the 9 built-in transports, then --connect targets. */
static const char *const palette[] = {
	"#9400d3", "#009e73", "#56b4e9", "#e69f00", "#f0e442", "#0072b2", "#e51e10", "#000000",
	"#a0a0a0", "#8b4513", "#ff69b4", "#2e8b57", "#4682b4", "#daa520", "#708090", "#dc143c",
	"#00ced1",
};

void
bench_plot_script(FILE *f, const char *path, const struct bench_run_info *info,
		  const struct bench_result *res, size_t n)
{
	const char *cases[PLOT_MAX], *trs[PLOT_MAX];
	size_t nc = 0, nt = 0;

	for (size_t i = 0; i < n; i++) {
		if (uniq(cases, nc, res[i].label) == nc && nc < PLOT_MAX) {
			cases[nc++] = res[i].label;
		}
		if (uniq(trs, nt, res[i].transport) == nt && nt < PLOT_MAX) {
			trs[nt++] = res[i].transport;
		}
	}
	fprintf(f, "set terminal pngcairo size %zu,720 noenhanced font ',10'\nset output ",
		nc * nt * 14 + 400 > 1200 ? nc * nt * 14 + 400 : 1200);
	quoted(f, path);
	fprintf(f, "\nset title 'vhu-bench: messages per second (log scale; median of %u "
		"repetitions); kernel %s, client CPU %d, server CPU %d'\n", info->reps,
		info->kernel, info->cpu_client, info->cpu_server);
	/* gnuplot's own colours repeat after 8; the built-in transports alone are 9 */
	for (size_t t = 0; t < sizeof(palette) / sizeof(palette[0]); t++) {
		fprintf(f, "set linetype %zu lc rgb '%s'\n", t + 1, palette[t]);
	}
	fprintf(f, "set linetype cycle %zu\n", sizeof(palette) / sizeof(palette[0]));
	fputs("set style data histogram\n"
	      "set style histogram clustered gap 1\n"
	      "set style fill solid 0.9 border -1\n"
	      "set boxwidth 0.9\n"
	      "set logscale y\n"
	      "set format y '%.0s%c'\n"
	      "set ylabel 'messages/s'\n"
	      "set grid ytics\n"
	      "set xtics rotate by -30 nomirror\n"
	      "set key outside right top\n"
	      "set datafile missing '-'\n"
	      "$rates << EOD\ncase", f);
	for (size_t t = 0; t < nt; t++) {
		fputc(' ', f);
		column(f, trs[t]);
	}
	fputc('\n', f);
	for (size_t c = 0; c < nc; c++) {
		column(f, cases[c]);
		for (size_t t = 0; t < nt; t++) {
			const struct bench_result *r = find(res, n, cases[c], trs[t]);

			if (r && r->status == BENCH_OK && isfinite(r->rate.median) &&
			    r->rate.median > 0) {
				fprintf(f, " %.6g", r->rate.median);
			} else {
				fputs(" -", f);
			}
		}
		fputc('\n', f);
	}
	fprintf(f, "EOD\nplot for [i=2:%zu] $rates using i:xtic(1) title columnheader(i)\n",
		nt + 1);
}

bool
bench_plot_available(void)
{
	const char *path = getenv("PATH");
	char dir[4096];

	while (path && *path) {
		size_t len = strcspn(path, ":");

		/* an empty entry is the current directory */
		snprintf(dir, sizeof(dir), "%.*s/gnuplot", (int)(len ? len : 1), len ? path : ".");
		if (access(dir, X_OK) == 0) {
			return true;
		}
		path += len;
		path += *path == ':';
	}
	return false;
}

int
bench_plot(const char *path, const struct bench_run_info *info, const struct bench_result *res,
	   size_t n, char *err, size_t errlen)
{
	/* a gnuplot that dies early must not take vhu-bench with it */
	void (*old)(int) = signal(SIGPIPE, SIG_IGN);
	FILE *p = popen("gnuplot", "w");
	int st;

	if (p == NULL) {
		signal(SIGPIPE, old);
		snprintf(err, errlen, "cannot start gnuplot");
		return -1;
	}
	bench_plot_script(p, path, info, res, n);
	st = pclose(p);
	signal(SIGPIPE, old);
	if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		if (st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 127) {
			snprintf(err, errlen, "gnuplot not found (apt-get install gnuplot-nox)");
		} else {
			snprintf(err, errlen, "gnuplot failed (status %d)", st);
		}
		return -1;
	}
	return 0;
}
