"""Keep out of ccache the compiles it can serve wrongly.

In depend mode ccache hashes a compile's arguments, its source and the
headers gcc lists in its dependency file. The files an assembler directive
pulls in (`.incbin`, `.include`) are in none of these, so ccache hands back
an object holding an earlier file's bytes: a stale compressed kernel linked
into a new bzImage (arch/x86/boot/compressed/piggy.S), measured here. (Its
preprocessor mode refuses `.incbin` by scanning the preprocessed text, but
still misses `.include`.)

Two parts, covering every directive written out in a source or a header
(not one assembled by macro string concatenation, nor one in a generated
header; the image check in kimage.py still catches a stale payload):
- the compiler wrapper (data/ccache-guard.sh, orch's CC) compiles a source
  that holds such a directive with gcc itself, and logs it;
- before a build, the headers of the tree are scanned: a header with such a
  directive can reach any compile unseen, so ccache is off for that build.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

from orchestrator.core import paths, proc, untrusted

GUARD = paths.DATA / "ccache-guard.sh"
LOG = ".orch-uncached.log"   # in the build directory: the compiles that bypassed ccache
_DIRECTIVE = re.compile(r"\.(incbin|include)(\s|\\|\")")
MAX_HEADER = 16 << 20
_COMMENT = re.compile(r"/\*.*?\*/|//[^\n]*", re.S)


def cc() -> str:
    """Kbuild's CC: the wrapper, then the compiler."""
    return f"{GUARD} gcc"


def _compiled_for(path: str, arch: str = "x86") -> bool:
    """Headers that can reach a compile of the target kernel: not another
    architecture's, not host tools' or documentation's."""
    top = path.split("/", 1)[0]
    if top in ("Documentation", "tools", "scripts", "samples"):
        return False
    return not path.startswith("arch/") or path.startswith(f"arch/{arch}/")


@functools.lru_cache(maxsize=64)
def headers_with_directives(src: Path, tree_id: str) -> tuple[str, ...]:
    """Headers in the tree whose code (not comments) has `.incbin`/`.include`.
    Scanned once per source state (`tree_id`, git's tree object id of `src`'s
    checkout), not once per config built from it."""
    r = proc.run(["git", "-C", str(src), "grep", "-l", "-F", "-e", ".incbin", "-e", ".include",
                  "--", "*.h", "*.inc"], timeout=300)
    if r.returncode not in (0, 1):
        raise RuntimeError(f"git grep failed in {src}: {r.output.strip()[:200]}")
    found = []
    for rel in r.output.splitlines():
        rel = rel.strip()
        if not rel or not _compiled_for(rel):
            continue
        # A tracked file of the series' tree: a link (to /dev/zero, say) is
        # not followed, a huge one not read whole.
        text = untrusted.read_text(src / rel, MAX_HEADER)
        if text is None:
            continue
        if _DIRECTIVE.search(_COMMENT.sub("", text)):
            found.append(rel)
    return tuple(found)


def read_log(log: Path, builddir: Path, src: Path) -> list[str]:
    """The sources this build compiled without ccache, relative where possible
    (`log`: orch's copy of the wrapper's log, taken out of the build
    directory as an untrusted file)."""
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return []
    out = set()
    for line in lines:
        p = Path(line.strip())
        for root in (builddir, src):
            if p.is_absolute() and p.is_relative_to(root):
                p = p.relative_to(root)
                break
        out.add(str(p).removeprefix("./"))
    return sorted(out)
