/*
 * memhog - allocate and touch anonymous memory, reporting progress.
 *
 *   memhog [-s STEP_MIB] [-t HOLD_SECONDS] [-r PASSES] [-f] [-m FILE [-R] [-L]] MIB
 *
 * Maps MIB MiB of private anonymous memory, STEP_MIB MiB per mmap() call
 * (default 1), and writes to every page so it is really charged to the
 * memory cgroup.  After each step it prints `reached_mib=N` (flushed), so a
 * run that the kernel OOM-kills shows how far it got.  At the end it prints
 * `done mib=N`, then holds the memory for HOLD_SECONDS (default 0, fractions
 * allowed).
 *
 * -r PASSES reads every page back PASSES times after the last step, printing
 * `reread pass=K` after each pass: pages swapped out meanwhile are swapped in
 * (and charged again) by these reads.
 *
 * -f fills every page with xorshift64 output instead of a single non-zero
 * byte, so zram/zswap cannot compress the pages to (almost) nothing.
 *
 * -m FILE maps the first MIB MiB of FILE (shared, read-only) instead of anonymous
 * memory and reads every page: page-cache faults (filemap_fault, do_read_fault),
 * each folio charged to the memory cgroup as it is added to the page cache.
 * With -R the mapping is MADV_RANDOM (no readahead: each fault reads its own
 * folio through __filemap_get_folio); with -L it is mlock2(MLOCK_ONFAULT)ed, so
 * the faulted pages cannot be reclaimed and a memory.max below MIB ends in a
 * memcg OOM from the page-cache fault path.  FILE shorter than MIB MiB:
 * `error=EINVAL at_mib=0`, exit 1.
 *
 * If mmap() fails: `error=ENOMEM at_mib=N` (N = MiB mapped so far), exit 1.
 * Exit 2 on usage errors.
 *
 * Build: gcc -static -Wall -o memhog memhog.c   (no -O2: keep the stores)
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "errname.h"

#define MIB (1024UL * 1024UL)

static void usage(void)
{
	fprintf(stderr, "usage: memhog [-s STEP_MIB] [-t HOLD_SECONDS] [-r PASSES] [-f] "
		"[-m FILE [-R] [-L]] MIB\n");
	exit(2);
}

static uint64_t xorshift64(uint64_t *state)
{
	uint64_t x = *state;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	*state = x;
	return x;
}

/* Write to every page of [p, p+len); volatile so no compiler drops a store. */
static void touch(unsigned char *p, size_t len, size_t pagesize, int fill, uint64_t *rng)
{
	size_t off, i;

	for (off = 0; off < len; off += pagesize) {
		if (fill) {
			volatile uint64_t *w = (volatile uint64_t *)(p + off);

			for (i = 0; i < pagesize / sizeof(uint64_t); i++)
				w[i] = xorshift64(rng);
		} else {
			volatile unsigned char *b = p + off;

			/* non-zero so the page is not a zero page / same-filled */
			*b = (unsigned char)(1 + (off / pagesize) % 255);
		}
	}
}

/* Read one byte of every page of [p, p+len); returns their sum so no read is dropped. */
static unsigned long reread(const unsigned char *p, size_t len, size_t pagesize)
{
	unsigned long sum = 0;
	size_t off;

	for (off = 0; off < len; off += pagesize)
		sum += *(const volatile unsigned char *)(p + off);
	return sum;
}

int main(int argc, char **argv)
{
	unsigned long total_mib, step_mib = 1, reached = 0, this_mib, passes = 0, k, n = 0;
	unsigned long sum = 0;
	struct { void *p; size_t len; } *regions = NULL;
	double hold = 0.0;
	int fill = 0, opt, fd = -1, random_access = 0, lock = 0;
	const char *file = NULL;
	struct stat st;
	long ps;
	uint64_t rng = 0x9e3779b97f4a7c15ULL;
	void *p;

	while ((opt = getopt(argc, argv, "s:t:r:fm:RL")) != -1) {
		switch (opt) {
		case 's':
			if (parse_ulong(optarg, &step_mib) != 0 || step_mib == 0)
				usage();
			break;
		case 't':
			if (parse_seconds(optarg, &hold) != 0)
				usage();
			break;
		case 'r':
			if (parse_ulong(optarg, &passes) != 0)
				usage();
			break;
		case 'f':
			fill = 1;
			break;
		case 'm':
			file = optarg;
			break;
		case 'R':
			random_access = 1;
			break;
		case 'L':
			lock = 1;
			break;
		default:
			usage();
		}
	}
	if (optind != argc - 1 || parse_ulong(argv[optind], &total_mib) != 0)
		usage();
	if (total_mib > SIZE_MAX / MIB || step_mib > SIZE_MAX / MIB)
		usage();
	if ((random_access || lock) && file == NULL)
		usage();
	if (file != NULL) {
		fd = open(file, O_RDONLY);
		if (fd < 0) {
			emit("error=%s at_mib=0\n", errname(errno));
			return 1;
		}
		if (fstat(fd, &st) != 0 || (unsigned long)st.st_size < total_mib * MIB) {
			emit("error=EINVAL at_mib=0\n");
			return 1;
		}
	}

	ps = sysconf(_SC_PAGESIZE);
	if (ps <= 0)
		ps = 4096;
	regions = calloc(total_mib / step_mib + 1, sizeof(*regions));
	if (regions == NULL) {
		emit("error=ENOMEM at_mib=0\n");
		return 1;
	}

	while (reached < total_mib) {
		this_mib = total_mib - reached;
		if (this_mib > step_mib)
			this_mib = step_mib;
		if (file != NULL)
			p = mmap(NULL, this_mib * MIB, PROT_READ, MAP_SHARED, fd,
				 (off_t)(reached * MIB));
		else
			p = mmap(NULL, this_mib * MIB, PROT_READ | PROT_WRITE,
				 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p == MAP_FAILED) {
			emit("error=%s at_mib=%lu\n", errname(errno), reached);
			return 1;
		}
		if (file != NULL) {
			if (random_access && madvise(p, this_mib * MIB, MADV_RANDOM) != 0) {
				emit("error=%s at_mib=%lu\n", errname(errno), reached);
				return 1;
			}
			if (lock && mlock2(p, this_mib * MIB, MLOCK_ONFAULT) != 0) {
				emit("error=%s at_mib=%lu\n", errname(errno), reached);
				return 1;
			}
			sum += reread(p, this_mib * MIB, (size_t)ps);
		} else {
			touch(p, this_mib * MIB, (size_t)ps, fill, &rng);
		}
		regions[n].p = p;
		regions[n++].len = this_mib * MIB;
		reached += this_mib;
		emit("reached_mib=%lu\n", reached);
	}
	emit("done mib=%lu\n", reached);
	for (k = 1; k <= passes; k++) {
		unsigned long i;

		for (i = 0; i < n; i++)
			sum += reread(regions[i].p, regions[i].len, (size_t)ps);
		emit("reread pass=%lu\n", k);
	}
	if (passes && sum == 0 && file == NULL)
		emit("reread_sum=0\n");  /* never: every page holds a non-zero byte */
	sleep_seconds(hold);
	return 0;
}
