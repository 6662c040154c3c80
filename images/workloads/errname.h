/*
 * errname.h - shared helpers for the kharness guest workloads.
 *
 * Header-only on purpose: every workload is a single C file compiled with
 * `gcc -static -Wall -o X X.c`, so there is nothing to link against.
 *
 * Output convention: results go to stdout as space-separated key=value
 * tokens, one fflush() per line, so a run that is OOM-killed (or otherwise
 * killed) has already published everything it reached.
 */
#ifndef KHARNESS_ERRNAME_H
#define KHARNESS_ERRNAME_H

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

/*
 * Symbolic name of an errno value ("EAGAIN"), or its decimal number when it
 * is not one we know.  The result for unknown values points to a static
 * buffer: use it before the next call.
 */
static inline const char *errname(int e)
{
	static char buf[24];

	switch (e) {
	case 0: return "0";
	case EPERM: return "EPERM";
	case ENOENT: return "ENOENT";
	case ESRCH: return "ESRCH";
	case EINTR: return "EINTR";
	case EIO: return "EIO";
	case ENXIO: return "ENXIO";
	case E2BIG: return "E2BIG";
	case ENOEXEC: return "ENOEXEC";
	case EBADF: return "EBADF";
	case ECHILD: return "ECHILD";
	case EAGAIN: return "EAGAIN";	/* == EWOULDBLOCK on Linux */
	case ENOMEM: return "ENOMEM";
	case EACCES: return "EACCES";
	case EFAULT: return "EFAULT";
	case EBUSY: return "EBUSY";
	case EEXIST: return "EEXIST";
	case EXDEV: return "EXDEV";
	case ENODEV: return "ENODEV";
	case ENOTDIR: return "ENOTDIR";
	case EISDIR: return "EISDIR";
	case EINVAL: return "EINVAL";
	case ENFILE: return "ENFILE";
	case EMFILE: return "EMFILE";
	case ENOTTY: return "ENOTTY";
	case EFBIG: return "EFBIG";
	case ENOSPC: return "ENOSPC";
	case ESPIPE: return "ESPIPE";
	case EROFS: return "EROFS";
	case EPIPE: return "EPIPE";
	case EDOM: return "EDOM";
	case ERANGE: return "ERANGE";
	case EDEADLK: return "EDEADLK";
	case ENAMETOOLONG: return "ENAMETOOLONG";
	case ENOSYS: return "ENOSYS";
	case ENOTSUP: return "EOPNOTSUPP";	/* == EOPNOTSUPP on Linux */
	case EPROTONOSUPPORT: return "EPROTONOSUPPORT";
	case EAFNOSUPPORT: return "EAFNOSUPPORT";
	case EADDRINUSE: return "EADDRINUSE";
	case ENETDOWN: return "ENETDOWN";
	case ENETUNREACH: return "ENETUNREACH";
	case ECONNREFUSED: return "ECONNREFUSED";
	case ECONNRESET: return "ECONNRESET";
	case ETIMEDOUT: return "ETIMEDOUT";
	case EOVERFLOW: return "EOVERFLOW";
	case ENOBUFS: return "ENOBUFS";
	case EDQUOT: return "EDQUOT";
	case ECANCELED: return "ECANCELED";
	case ENOMSG: return "ENOMSG";
	case ENODATA: return "ENODATA";
	case EPROTO: return "EPROTO";
	case EBADMSG: return "EBADMSG";
	default:
		snprintf(buf, sizeof(buf), "%d", e);
		return buf;
	}
}

/*
 * printf + fflush: every result line must reach the pipe immediately, since
 * the kernel may kill us at any moment (that is the point of most tests).
 */
__attribute__((format(printf, 1, 2)))
static inline void emit(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	fflush(stdout);
}

/* Parse a non-negative integer; returns 0 on success, -1 on junk/overflow. */
static inline int parse_ulong(const char *s, unsigned long *out)
{
	char *end;
	unsigned long v;

	if (s == NULL || *s == '\0' || *s == '-' || *s == '+')
		return -1;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno != 0 || *end != '\0')
		return -1;
	*out = v;
	return 0;
}

/* Parse a finite, non-negative number of seconds ("2", "2.5"). */
static inline int parse_seconds(const char *s, double *out)
{
	char *end;
	double v;

	if (s == NULL || *s == '\0')
		return -1;
	errno = 0;
	v = strtod(s, &end);
	if (errno != 0 || *end != '\0' || !isfinite(v) || v < 0.0)
		return -1;
	*out = v;
	return 0;
}

/* Sleep for a (fractional) number of seconds, resuming after signals. */
static inline void sleep_seconds(double seconds)
{
	struct timespec ts, rem;

	if (seconds <= 0.0)
		return;
	ts.tv_sec = (time_t)seconds;
	ts.tv_nsec = (long)((seconds - (double)ts.tv_sec) * 1e9);
	if (ts.tv_nsec >= 1000000000L)
		ts.tv_nsec = 999999999L;
	while (nanosleep(&ts, &rem) != 0 && errno == EINTR)
		ts = rem;
}

/* CLOCK_MONOTONIC as floating-point seconds. */
static inline double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

#endif /* KHARNESS_ERRNAME_H */
