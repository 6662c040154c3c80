/*
 * cpuhog - burn CPU for a given wall time.
 *
 *   cpuhog [-n THREADS] SECONDS
 *
 * Busy-loops for SECONDS of wall time (fractions allowed, e.g. 2.5) in
 * THREADS workers (default 1).  Workers are forked processes rather than
 * pthreads (simpler in a static binary); with -n 1 the work runs in this
 * process.  Each worker sends its loop count back through a pipe.
 *
 * Output (one line, at the end):
 *   wall_s=X cpu_s=Y loops=Z threads=N workers_failed=K
 * cpu_s is user+system time from getrusage(RUSAGE_SELF) + getrusage(
 * RUSAGE_CHILDREN), so under a cpu.max / cfs quota cpu_s < THREADS*wall_s.
 *
 * Exit 0 on success, 1 if a worker could not be forked or did not finish
 * cleanly, 2 on usage errors.
 *
 * Build: gcc -static -Wall -o cpuhog cpuhog.c
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "errname.h"

#define MAX_WORKERS 4096

static void usage(void)
{
	fprintf(stderr, "usage: cpuhog [-n THREADS] SECONDS\n");
	exit(2);
}

/* Spin until the monotonic clock passes `deadline`; return the loop count. */
static uint64_t burn(double deadline)
{
	volatile uint64_t acc = 1;
	uint64_t loops = 0;
	int i;

	for (;;) {
		for (i = 0; i < 1024; i++)
			acc = acc * 6364136223846793005ULL + 1442695040888963407ULL;
		loops++;
		if (now_s() >= deadline)
			break;
	}
	return loops;
}

static double tv_s(struct timeval tv)
{
	return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

int main(int argc, char **argv)
{
	unsigned long nworkers = 1, i, started = 0;
	unsigned long failed = 0;
	double seconds, start, deadline, wall, cpu;
	uint64_t loops = 0, v;
	struct rusage self, children;
	int pfd[2], opt, status;
	pid_t pid;

	while ((opt = getopt(argc, argv, "n:")) != -1) {
		switch (opt) {
		case 'n':
			if (parse_ulong(optarg, &nworkers) != 0 || nworkers == 0 ||
			    nworkers > MAX_WORKERS)
				usage();
			break;
		default:
			usage();
		}
	}
	if (optind != argc - 1 || parse_seconds(argv[optind], &seconds) != 0)
		usage();

	start = now_s();
	deadline = start + seconds;

	if (nworkers == 1) {
		loops = burn(deadline);
	} else {
		if (pipe(pfd) != 0) {
			emit("error=%s op=pipe\n", errname(errno));
			return 1;
		}
		for (i = 0; i < nworkers; i++) {
			pid = fork();
			if (pid < 0) {
				emit("error=%s op=fork started=%lu\n", errname(errno), started);
				failed += nworkers - i;
				break;
			}
			if (pid == 0) {
				close(pfd[0]);
				v = burn(deadline);
				/* 8 bytes < PIPE_BUF: the write is atomic */
				_exit(write(pfd[1], &v, sizeof(v)) == sizeof(v) ? 0 : 1);
			}
			started++;
		}
		close(pfd[1]);
		while (read(pfd[0], &v, sizeof(v)) == sizeof(v))
			loops += v;
		close(pfd[0]);
		while ((pid = wait(&status)) > 0 || errno == EINTR) {
			if (pid > 0 && !(WIFEXITED(status) && WEXITSTATUS(status) == 0))
				failed++;
		}
	}

	wall = now_s() - start;
	getrusage(RUSAGE_SELF, &self);
	getrusage(RUSAGE_CHILDREN, &children);
	cpu = tv_s(self.ru_utime) + tv_s(self.ru_stime) +
	      tv_s(children.ru_utime) + tv_s(children.ru_stime);
	emit("wall_s=%.3f cpu_s=%.3f loops=%llu threads=%lu workers_failed=%lu\n",
	     wall, cpu, (unsigned long long)loops, nworkers, failed);
	return failed ? 1 : 0;
}
