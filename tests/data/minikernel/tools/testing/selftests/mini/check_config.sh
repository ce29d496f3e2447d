#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# As mm's check_config.sh: probe the toolchain and record what was found in
# a C header and a Makefile fragment, in the current (the source) directory.
if echo 'int main(void) { return 0; }' | $CC -x c - -o /dev/null 2>/dev/null; then
	echo "#define LOCAL_CONFIG_MINI 1" > local_config.h
else
	echo "// the compiler did not link a program" > local_config.h
fi
echo "MINI_EXTRA_LIBS =" > local_config.mk
