/*
 * rdma_open - open RDMA device contexts and protection domains.
 *
 *   rdma_open [-d DEVICE] [-c CONTEXTS] [-p PDS] [-t HOLD_SECONDS]
 *
 * Picks DEVICE by name (default: the first device libibverbs lists), opens
 * CONTEXTS contexts with ibv_open_device() (default 1; each one charges an
 * rdma cgroup hca_handle), then allocates PDS protection domains with
 * ibv_alloc_pd() (default 0; each one charges an hca_object) on the first
 * context that opened.  Holds everything for HOLD_SECONDS (default 0,
 * fractions allowed), then releases it.
 *
 * Output, one flushed line per operation, then a summary:
 *   device=rxe0 num_devices=1
 *   open_device index=0 ok
 *   open_device index=1 failed errno=EAGAIN
 *   alloc_pd index=0 ok
 *   alloc_pd index=1 failed errno=EAGAIN
 *   contexts_ok=A contexts_failed=B pds_ok=C pds_failed=D
 * If no context opened, the PDs are not attempted; they all count as
 * failed, after a line `alloc_pd skipped reason=no_context count=PDS`.
 *
 * No device at all: `error=ENODEV no rdma device`, exit 1.  Named device
 * missing: `error=ENODEV device=NAME not found`, exit 1.
 * Exit 0 if every requested operation succeeded, 1 otherwise, 2 on usage.
 *
 * Static build: the verbs providers cannot be dlopen()ed, so they are
 * compiled in through RDMA_STATIC_PROVIDERS (see <infiniband/verbs.h>).
 * rxe = Soft-RoCE, siw = Soft-iWARP: the two that work without hardware.
 * Link line (kept in harness/workloads.py LINK_FLAGS):
 *   gcc -static -Wall -o rdma_open rdma_open.c \
 *       -lrxe-rdmav34 -lsiw-rdmav34 -libverbs -lnl-route-3 -lnl-3 -lpthread
 */
#define RDMA_STATIC_PROVIDERS rxe, siw

#include <infiniband/verbs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "errname.h"

#define MAX_CONTEXTS 65536
#define MAX_PDS (1024UL * 1024UL)

static void usage(void)
{
	fprintf(stderr,
		"usage: rdma_open [-d DEVICE] [-c CONTEXTS] [-p PDS] [-t HOLD_SECONDS]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	const char *want = NULL;
	unsigned long ncontexts = 1, npds = 0, i;
	unsigned long ctx_ok = 0, ctx_failed = 0, pd_ok = 0, pd_failed = 0;
	double hold = 0.0;
	struct ibv_device **list, *dev = NULL;
	struct ibv_context **ctxs, *pd_ctx = NULL;
	struct ibv_pd **pds;
	int num = 0, opt, j;

	while ((opt = getopt(argc, argv, "d:c:p:t:")) != -1) {
		switch (opt) {
		case 'd':
			if (*optarg == '\0')
				usage();
			want = optarg;
			break;
		case 'c':
			if (parse_ulong(optarg, &ncontexts) != 0 || ncontexts > MAX_CONTEXTS)
				usage();
			break;
		case 'p':
			if (parse_ulong(optarg, &npds) != 0 || npds > MAX_PDS)
				usage();
			break;
		case 't':
			if (parse_seconds(optarg, &hold) != 0)
				usage();
			break;
		default:
			usage();
		}
	}
	if (optind != argc)
		usage();

	list = ibv_get_device_list(&num);
	if (list == NULL || num <= 0) {
		emit("error=ENODEV no rdma device\n");
		if (list != NULL)
			ibv_free_device_list(list);
		return 1;
	}
	for (j = 0; j < num; j++) {
		if (want == NULL || strcmp(ibv_get_device_name(list[j]), want) == 0) {
			dev = list[j];
			break;
		}
	}
	if (dev == NULL) {
		emit("error=ENODEV device=%s not found\n", want);
		ibv_free_device_list(list);
		return 1;
	}
	emit("device=%s num_devices=%d\n", ibv_get_device_name(dev), num);

	ctxs = calloc(ncontexts ? ncontexts : 1, sizeof(*ctxs));
	pds = calloc(npds ? npds : 1, sizeof(*pds));
	if (ctxs == NULL || pds == NULL) {
		emit("error=ENOMEM op=calloc\n");
		return 1;
	}

	for (i = 0; i < ncontexts; i++) {
		errno = 0;
		ctxs[i] = ibv_open_device(dev);
		if (ctxs[i] == NULL) {
			emit("open_device index=%lu failed errno=%s\n", i, errname(errno));
			ctx_failed++;
		} else {
			emit("open_device index=%lu ok\n", i);
			ctx_ok++;
			if (pd_ctx == NULL)
				pd_ctx = ctxs[i];
		}
	}

	if (npds > 0 && pd_ctx == NULL) {
		emit("alloc_pd skipped reason=no_context count=%lu\n", npds);
		pd_failed = npds;
	} else {
		for (i = 0; i < npds; i++) {
			errno = 0;
			pds[i] = ibv_alloc_pd(pd_ctx);
			if (pds[i] == NULL) {
				emit("alloc_pd index=%lu failed errno=%s\n", i, errname(errno));
				pd_failed++;
			} else {
				emit("alloc_pd index=%lu ok\n", i);
				pd_ok++;
			}
		}
	}

	emit("contexts_ok=%lu contexts_failed=%lu pds_ok=%lu pds_failed=%lu\n",
	     ctx_ok, ctx_failed, pd_ok, pd_failed);

	sleep_seconds(hold);

	for (i = 0; i < npds; i++)
		if (pds[i] != NULL)
			ibv_dealloc_pd(pds[i]);
	for (i = 0; i < ncontexts; i++)
		if (ctxs[i] != NULL)
			ibv_close_device(ctxs[i]);
	ibv_free_device_list(list);
	free(pds);
	free(ctxs);
	return (ctx_failed || pd_failed) ? 1 : 0;
}
