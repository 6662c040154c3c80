/* Reports one subtest, then never finishes. */
#include <stdio.h>
#include <unistd.h>
int main(void)
{
	printf("ok 1 test_before_the_hang\n");
	fflush(stdout);
	for (;;)
		pause();
}
