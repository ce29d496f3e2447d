#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# The stand-in's second test, a script (TEST_PROGS: installed as it is).
echo "TAP version 13"
echo "1..1"
echo "ok 1 mini_script"
exit 0
