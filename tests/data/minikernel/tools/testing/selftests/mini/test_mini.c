// SPDX-License-Identifier: GPL-2.0
/*
 * The stand-in tree's kselftest: KTAP on stdout as kselftest.h prints it,
 * and kselftest's exit codes (0 pass, 1 fail, 4 skip); run_kselftest.sh
 * makes of them "ok N selftests: mini: test_mini" and the rest.
 *
 * What it reports is set by this source, as a series would change it:
 * MINI_BEHAVIOUR is one of
 *   "pass"   both subtests ok
 *   "fail"   mini_config not ok, exit 1
 *   "skip"   the whole test skipped (1..0 # SKIP), exit 4
 *   "hang"   mini_magic ok, then it sleeps past any timeout
 *   "die"    mini_magic ok, then "# ORCH-KSFT:DIE" and it sleeps: a
 *            stand-in guest stops there, as a kernel that crashes would
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <linux/mini.h>		/* the tree's own: $(O)/usr/include (make headers) */
#include "local_config.h"	/* written here by check_config.sh */

#define MINI_BEHAVIOUR "pass"

#ifdef LOCAL_CONFIG_MINI
#define MINI_CONFIG 1
#else
#define MINI_CONFIG 0
#endif

int main(void)
{
	const char *b = MINI_BEHAVIOUR;
	int config_ok = MINI_CONFIG && strcmp(b, "fail");

	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("TAP version 13\n");
	if (!strcmp(b, "skip")) {
		printf("1..0 # SKIP mini: the source says skip\n");
		return 4;
	}
	printf("1..2\n");
	printf("# mini: behaviour %s\n", b);
	printf("%s 1 mini_magic\n", MINI_MAGIC == 0x4d494e49 ? "ok" : "not ok");
	if (!strcmp(b, "hang") || !strcmp(b, "die")) {
		if (!strcmp(b, "die"))
			printf("# ORCH-KSFT:DIE\n");
		for (;;)
			sleep(3600);
	}
	printf("%s 2 mini_config\n", config_ok ? "ok" : "not ok");
	printf("# Totals: pass:%d fail:%d xfail:0 xpass:0 skip:0 error:0\n",
	       1 + config_ok, !config_ok);
	return config_ok ? 0 : 1;
}
