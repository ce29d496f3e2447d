int mini_main(void)
{
	return 0;
}
