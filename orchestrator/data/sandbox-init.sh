#!/bin/sh
# orch's first process in every sandbox (sandbox.wrap), run before any
# untrusted code: it mounts the copy-on-write layers a series' build works
# in, removes the files orch named (the objects a series must rebuild), then
# gives up every privilege for good and runs the step.
#
#   --overlay LOWER UPPER WORK TARGET   kernel overlayfs: TARGET shows LOWER,
#                                       every write lands in UPPER
#   --rm PATH                           remove PATH (through the layers)
#   --user UID GID GROUPS               become UID:GID (GROUPS: comma list or -)
#   --caps                              this process holds capabilities: drop
#                                       the bounding set too
#   -- ARGV...                          the step
#
# Why setpriv and not bwrap's own --uid/--cap-drop: bwrap run by root makes
# no user namespace (it keeps root's capabilities in the host's), and with
# one it can only map root to root; the step must run as an unprivileged id
# of the host so that files it makes (QEMU's 9p too) are nobody's, never
# root's, and device nodes cannot be made at all.
set -eu
user=""
bounding=""
while [ $# -gt 0 ]; do
    case "$1" in
    --overlay)
        mount -t overlay orch-layer -o "lowerdir=$2,upperdir=$3,workdir=$4" "$5"
        shift 5;;
    --rm)
        rm -f -- "$2"
        shift 2;;
    --user)
        if [ "$4" = - ]; then groups="--clear-groups"; else groups="--groups=$4"; fi
        user="--reuid=$2 --regid=$3 $groups"
        shift 4;;
    --caps)
        bounding="--bounding-set=-all"
        shift;;
    --)
        shift
        break;;
    *)
        echo "sandbox-init: unknown option $1" >&2
        exit 125;;
    esac
done
# shellcheck disable=SC2086 # word splitting of the option lists is wanted
exec setpriv $user --inh-caps=-all $bounding --no-new-privs -- "$@"
