/* Reports one subtest, then segfaults. */
#include <stdio.h>
int main(void)
{
	printf("ok 1 test_before_the_crash\n");
	fflush(stdout);
	*(volatile int *)0 = 1;
	return 0;
}
