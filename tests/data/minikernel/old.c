/* A warning the baseline already has: not the series' fault. */
int mini_old(void)
{
	int unused_in_base;
	return 0;
}
