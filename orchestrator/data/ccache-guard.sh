#!/bin/sh
# orch's CC for kernel builds, run as: sh ccache-guard.sh gcc ARGS...
#
# ccache in depend mode (orch's) hashes a compile's arguments, its source
# and the headers gcc lists in its dependency file, and nothing else. Files
# the assembler reads itself, through `.incbin` or `.include`, are in none of
# these: a source that pulls one in is served from the cache with the old
# file's contents. arch/x86/boot/compressed/piggy.S is such a source (it is
# the compressed kernel: `.incbin "vmlinux.bin.xz"` and two sizes), and so
# are rmpiggy.S, kernel/configs.c, usr/initramfs_data.S and the certificate
# and firmware blobs. Those compiles bypass ccache; every other one uses it.
# (Headers that pull files in this way are found before the build, by
# orch's scan of the tree, which turns ccache off for that build.)
for a in "$@"; do
    case "$a" in
    *.c|*.S|*.s|*.sx)
        if [ -f "$a" ] && grep -qE '\.(incbin|include)([[:space:]]|\\|")' "$a"; then
            [ -n "${ORCH_UNCACHED_LOG:-}" ] && printf '%s\n' "$a" >> "$ORCH_UNCACHED_LOG"
            exec "$@"
        fi;;
    esac
done
exec ccache "$@"
