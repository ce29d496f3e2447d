"""Named kernel configs: fragments in kconfigs/ over a make target.

A fragment may start from another with `# orch-include: NAME` and names the
make target it starts from with `# orch-start: TARGET` (default tinyconfig).
After olddefconfig every option a fragment asks for must be in the final
.config: Kconfig silently drops what its dependencies do not allow.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from orchestrator.core import proc
from orchestrator.core.errors import BadInput, Exit, OrchError
from orchestrator.core.paths import data_root

_OPT = re.compile(r"^(CONFIG_\w+)=(.*)$")
_OFF = re.compile(r"^# (CONFIG_\w+) is not set$")


@dataclass
class KConfig:
    name: str
    start: str          # make target the fragment goes on top of
    fragment: str       # all included fragments, in order
    wanted: dict[str, str]

    @property
    def digest(self) -> str:
        return hashlib.sha256(f"{self.start}\n{self.fragment}".encode()).hexdigest()


def kconfig_dir() -> Path:
    return data_root() / "kconfigs"


def available(kdir: Path | None = None) -> list[str]:
    return sorted(p.stem for p in (kdir or kconfig_dir()).glob("*.config"))


def default_matrix(kdir: Path | None = None) -> list[str]:
    lines = ((kdir or kconfig_dir()) / "matrix").read_text().splitlines()
    return [l.strip() for l in lines if l.strip() and not l.startswith("#")]


def load(name: str, kdir: Path | None = None, _seen: tuple = ()) -> KConfig:
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name) or name in _seen:
        raise BadInput(f"bad config name: {name!r}")
    kdir = kdir or kconfig_dir()
    path = kdir / f"{name}.config"
    if not path.exists():
        raise BadInput(f"unknown config {name!r} (have: {', '.join(available(kdir))})")
    text = path.read_text()
    start, parts = "tinyconfig", []
    for line in text.splitlines():
        m = re.match(r"^# orch-include:\s*(\S+)", line)
        if m:
            inc = load(m.group(1), kdir, _seen + (name,))
            start = inc.start
            parts.append(inc.fragment)
        m = re.match(r"^# orch-start:\s*(\S+)", line)
        if m:
            start = m.group(1)
    parts.append(text)
    fragment = "\n".join(parts)
    return KConfig(name, start, fragment, parse(fragment))


def parse(text: str) -> dict[str, str]:
    opts: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if m := _OPT.match(line):
            opts[m.group(1)] = m.group(2)
        elif m := _OFF.match(line):
            opts[m.group(1)] = "n"
    return opts


def dropped(wanted: dict[str, str], final: dict[str, str]) -> list[str]:
    out = []
    for k, v in wanted.items():
        got = final.get(k, "n")
        if got != v and not (v == "n" and got == ""):
            out.append(f"{k}={v} (got {got})")
    return out


def defined_symbols(src: Path) -> set[str]:
    """Every symbol some Kconfig file of `src` defines."""
    r = proc.run(["git", "-C", src, "grep", "-h", "-E", r"^\s*(menu)?config\s+[A-Za-z0-9_]+",
                  "--", "*Kconfig*"], timeout=120)
    return {"CONFIG_" + line.split()[1] for line in r.output.splitlines()
            if len(line.split()) >= 2}


MAX_CONFIG = 16 << 20   # a .config is a few hundred KiB


def make_base(builddir: Path) -> list[str]:
    return ["make", f"O={builddir}", "ARCH=x86_64"]


def _plain_make(argv: list[str], log: Path, src: Path) -> proc.Result:
    return proc.run(argv, cwd=src, log=log, timeout=600, append=True)


def configure(src: Path, builddir, kc: KConfig, log: Path,
              make=_plain_make) -> Path:
    """Write the build directory's .config for kc; keep an existing one if it is kc's.
    Returns orch's copy of the final .config (outside the build directory).

    `builddir` is a buildtree.BuildDir (or a plain directory). `make(argv,
    log, src)` runs each make: the builder passes its sandbox, since Kconfig
    runs host programs compiled from the (patched) tree; what they leave in
    the build directory is read as untrusted (buildtree).

    Regenerating an unchanged .config would still rewrite it and cost a
    needless syncconfig; the stamp (in orch's notes, not in the build
    directory) keeps the patched build incremental.
    """
    from orchestrator.kernel import buildtree
    bd = buildtree.BuildDir.of(builddir)
    bd.path.mkdir(parents=True, exist_ok=True)
    try:
        if not (bd.exists(".config") and bd.state().get("kconfig") == kc.digest):
            r = make([*make_base(bd.path), kc.start], log, src)
            if not r.ok:
                raise OrchError(f"make {kc.start} failed (see {log})", Exit.INFRA)
            started = bd.read(".config", MAX_CONFIG) or b""
            bd.write(".config", started + f"\n# orch fragment {kc.name}\n{kc.fragment}\n".encode())
            bd.set_state(kconfig=None)
        # Always: the source (a patch) may have changed Kconfig files.
        r = make([*make_base(bd.path), "olddefconfig"], log, src)
        if not r.ok:
            raise OrchError(f"make olddefconfig failed (see {log})", Exit.INFRA)
        final = bd.read(".config", MAX_CONFIG)
    except buildtree.UnsafeFile as e:
        raise OrchError(f"the build left a .config orch will not read: {e}", Exit.INFRA)
    if final is None:
        raise OrchError(f"make olddefconfig wrote no .config (see {log})", Exit.INFRA)
    # A symbol this tree does not define at all (renamed, say PROC_SYSCTL
    # -> SYSCTL in 7.3) is noted, not fatal: fragments serve several trees.
    known = defined_symbols(src)
    unknown = sorted(k for k in kc.wanted if k not in known)
    if unknown:
        with open(log, "a") as f:
            f.write(f"# orch: not defined in this tree, ignored: {' '.join(unknown)}\n")
    wanted = {k: v for k, v in kc.wanted.items() if k in known}
    lost = dropped(wanted, parse(final.decode(errors="replace")))
    if lost:
        raise BadInput(f"config {kc.name}: options did not survive olddefconfig: "
                       + ", ".join(lost))
    bd.set_state(kconfig=kc.digest)
    copy = bd.meta / "config"
    copy.write_bytes(final)
    return copy
