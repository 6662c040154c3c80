/* Takes the kernel down (sysrq c). */
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>
int main(void)
{
	int fd = open("/proc/sys/kernel/sysrq", O_WRONLY);

	printf("ok 1 test_before_the_panic\n");
	fflush(stdout);
	if (fd >= 0 && write(fd, "1", 1) == 1)
		close(fd);
	fd = open("/proc/sysrq-trigger", O_WRONLY);
	if (fd >= 0)
		write(fd, "c", 1);
	return 1;
}
