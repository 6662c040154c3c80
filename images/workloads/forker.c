/*
 * forker - fork N sleeping children, count the forks that fail.
 *
 *   forker [-t HOLD_SECONDS] N
 *
 * Attempts N fork()s (it keeps trying after a failure, so F counts every
 * refused fork).  Each child sleeps HOLD_SECONDS (default 2, fractions
 * allowed) and exits.  Under a pids cgroup limit fork() fails with EAGAIN.
 *
 * Output:
 *   forked=K failed=F first_errno=EAGAIN|none     (printed before waiting,
 *                                                  while children still live)
 *   reaped=K                                       (after all children exited)
 *
 * Exit 0 if all N forks succeeded, 1 otherwise, 2 on usage errors.
 *
 * Build: gcc -static -Wall -o forker forker.c
 */
#include <stdio.h>
#include <stdlib.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "errname.h"

static void usage(void)
{
	fprintf(stderr, "usage: forker [-t HOLD_SECONDS] N\n");
	exit(2);
}

int main(int argc, char **argv)
{
	unsigned long n, i, forked = 0, failed = 0, reaped = 0;
	double hold = 2.0;
	int first_errno = 0, opt, status;
	pid_t pid;

	while ((opt = getopt(argc, argv, "t:")) != -1) {
		switch (opt) {
		case 't':
			if (parse_seconds(optarg, &hold) != 0)
				usage();
			break;
		default:
			usage();
		}
	}
	if (optind != argc - 1 || parse_ulong(argv[optind], &n) != 0)
		usage();

	for (i = 0; i < n; i++) {
		pid = fork();
		if (pid < 0) {
			if (failed == 0)
				first_errno = errno;
			failed++;
			continue;
		}
		if (pid == 0) {
			/* stdout was flushed before every fork: nothing to duplicate */
			sleep_seconds(hold);
			_exit(0);
		}
		forked++;
	}
	emit("forked=%lu failed=%lu first_errno=%s\n", forked, failed,
	     failed ? errname(first_errno) : "none");

	while ((pid = wait(&status)) > 0 || errno == EINTR) {
		if (pid > 0)
			reaped++;
	}
	emit("reaped=%lu\n", reaped);
	return failed ? 1 : 0;
}
