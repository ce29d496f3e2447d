"""Named kernel configs: fragments in kconfigs/ over a make target.

A fragment may start from another with `# orch-include: NAME` and names the
make target it starts from with `# orch-start: TARGET` (default tinyconfig).
After olddefconfig every option a fragment asks for must be in the final
.config: Kconfig silently drops what its dependencies do not allow.

Your own configs, as tuxmake spells them: `--kconfig FILE|TARGET` starts
from a full .config or a make target instead of kconfigs/ (plus vm.config,
what a virtme-ng boot needs), and `--kconfig-add` puts options, a fragment
file or an in-tree fragment on top (custom()); every added option is
checked for survival like a fragment's.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, replace
from pathlib import Path

from orchestrator.core import proc
from orchestrator.core.errors import BadInput, Exit, OrchError
from orchestrator.core.names import SAFE, slug
from orchestrator.core.paths import data_root

_OPT = re.compile(r"^(CONFIG_\w+)=(.*)$")
_OFF = re.compile(r"^# (CONFIG_\w+) is not set$")


@dataclass(frozen=True)
class Add:
    """One --kconfig-add: option lines (`text`), or an in-tree fragment
    (`tree`, read from the worktree at configure time: it follows the
    source state under test)."""
    spelled: str
    text: str = ""
    tree: str | None = None


@dataclass
class KConfig:
    name: str
    start: str          # make target the fragment goes on top of
    fragment: str       # all included fragments, in order
    wanted: dict[str, str]
    startfile: bytes | None = None   # a full .config (--kconfig FILE) instead of `make start`
    adds: tuple[Add, ...] = ()       # in-tree fragments not read yet (resolved())
    spec: tuple[str | None, str | None, tuple[str, ...]] = (None, None, ())
    # ^ (--config, --kconfig, --kconfig-add) it was made from: what a command line says

    def flags(self) -> dict[str, object]:
        """The options (run/options.py's names) that make this config again."""
        base, start, adds = self.spec
        if start is None and base is None and not adds:
            base = self.name
        return {"configs": [base] if base else [], "kconfig": start, "kconfig_add": list(adds)}

    @property
    def digest(self) -> str:
        h = hashlib.sha256(f"{self.start}\n{self.fragment}".encode())
        # Only a full .config adds to what is hashed: base's stamp stays as it was.
        if self.startfile is not None:
            h.update(b"\0startfile\0" + hashlib.sha256(self.startfile).digest())
        return h.hexdigest()


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


_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_TARGET = re.compile(r"^[A-Za-z0-9_.-]*config$")
_TREE_FRAGMENT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*\.config$")
# Where the kernel keeps fragments `make NAME.config` merges.
TREE_FRAGMENT_DIRS = ("kernel/configs", "arch/x86/configs")
MAX_FRAGMENT = 1 << 20


def parse_add(spec: str) -> Add:
    """One --kconfig-add, as tuxmake spells it, less what needs a network
    or runs make: CONFIG_X=VALUE, `# CONFIG_X is not set`, a fragment file,
    an in-tree fragment name (kvm_guest.config)."""
    line = spec.strip()
    if _OPT.match(line) or _OFF.match(line):
        return Add(spec, text=line)
    if line.startswith("make:"):
        raise BadInput(f"--kconfig-add {spec}: make targets are not run; name an in-tree "
                       "fragment (kvm_guest.config) or give CONFIG_X=y")
    if _URL.match(line):
        raise BadInput(f"--kconfig-add {spec}: orch fetches no URLs; download the fragment "
                       "and give its file")
    path = Path(line).expanduser()
    if path.is_file():
        return Add(spec, text=_fragment_file(path, f"--kconfig-add {spec}"))
    if _TREE_FRAGMENT.match(line):
        return Add(spec, tree=line)
    raise BadInput(f"--kconfig-add {spec}: not CONFIG_X=VALUE, '# CONFIG_X is not set', "
                   "a fragment file or an in-tree fragment name (kvm_guest.config)")


def _fragment_file(path: Path, what: str) -> str:
    data = path.read_bytes()[:MAX_FRAGMENT + 1]
    if len(data) > MAX_FRAGMENT:
        raise BadInput(f"{what}: larger than a fragment ({MAX_FRAGMENT >> 20} MiB)")
    text = data.decode(errors="replace")
    if not parse(text):
        raise BadInput(f"{what}: no CONFIG_ option in it")
    return text


def custom(base: str | None, kconfig: str | None, adds: list[str],
           kdir: Path | None = None) -> KConfig:
    """The config of --config base (or --kconfig FILE|TARGET) with each
    --kconfig-add on top, in order (a later one wins, as in tuxmake).
    Named `base+<sha8>` or `kconfig-<sha8>`: the hash is of what it is
    made of, so the same options give the same build directory and results."""
    if kconfig is not None and base is not None:
        raise BadInput("--kconfig is the whole config: give it or --config, not both")
    parsed = tuple(parse_add(a) for a in adds)
    if kconfig is None:
        kc = load(base or default_matrix(kdir)[0], kdir)
        if not parsed:
            return kc
        prefix = f"{kc.name}+"
    else:
        kc = _start(kconfig, kdir)
        prefix = "kconfig-"
    h = hashlib.sha256(kc.start.encode())
    h.update(hashlib.sha256(kc.startfile or b"").digest())
    for a in parsed:
        h.update(f"\0{a.tree or ''}\0{a.text}".encode())
    name = slug(f"{prefix}{h.hexdigest()[:8]}", 64, keep="+" + SAFE)
    fragment = _layered(kc.fragment, parsed)
    # Fragments are applied in order, so a later option wins (parse's dict).
    return replace(kc, name=name, wanted=parse(fragment), fragment=fragment,
                   adds=tuple(a for a in parsed if a.tree is not None),
                   spec=(base if kconfig is None else None, kconfig, tuple(adds)))


def chosen(configs: list[str], kconfig: str | None, adds: list[str],
           kdir: Path | None = None) -> list[KConfig]:
    """What a command builds: each --config (else the matrix), or the one
    --kconfig, with the --kconfig-adds on top. Bad input fails here, before
    any work."""
    if kconfig is not None:
        if configs:
            raise BadInput("--kconfig is the whole config: give it or --config, not both")
        return [custom(None, kconfig, adds, kdir)]
    return [custom(c, None, adds, kdir) for c in configs or default_matrix(kdir)]


def _layered(fragment: str, parsed: tuple[Add, ...]) -> str:
    """The fragment with the literal adds on top, and a marker where each
    in-tree one goes (resolved() reads it), so their order is kept."""
    parts = [fragment]
    for a in parsed:
        parts.append(f"# orch-tree-fragment: {a.tree}" if a.tree else a.text)
    return "\n".join(parts)


def _start(kconfig: str, kdir: Path | None) -> KConfig:
    """--kconfig: a full .config file, or a make target; with vm.config."""
    vm = load("vm", kdir)
    if _URL.match(kconfig):
        raise BadInput(f"--kconfig {kconfig}: orch fetches no URLs; download the .config "
                       "and give its file")
    path = Path(kconfig).expanduser()
    if path.is_file():
        data = path.read_bytes()[:MAX_CONFIG + 1]
        if len(data) > MAX_CONFIG or not parse(data.decode(errors="replace")):
            raise BadInput(f"--kconfig {kconfig}: not a kernel .config")
        return replace(vm, start="olddefconfig", startfile=data)
    if _TARGET.match(kconfig):
        return replace(vm, start=kconfig)
    raise BadInput(f"--kconfig {kconfig}: neither a .config file nor a make target "
                   "ending in config (defconfig, tinyconfig, x86_64_defconfig)")


def resolved(kc: KConfig, src: Path) -> KConfig:
    """kc with its in-tree fragments read from `src`: what configure applies."""
    if not kc.adds:
        return kc
    root = src.resolve()
    lines = []
    for line in kc.fragment.splitlines():
        m = re.match(r"^# orch-tree-fragment: (\S+)$", line)
        lines.append(f"# {m.group(1)} of the tree\n{_tree_fragment(root, m.group(1))}"
                     if m else line)
    fragment = "\n".join(lines)
    return replace(kc, fragment=fragment, wanted=parse(fragment), adds=())


def _tree_fragment(root: Path, name: str) -> str:
    for d in TREE_FRAGMENT_DIRS:
        p = (root / d / name)
        # The tree is the one under test: a fragment that points out of it is not read.
        if p.is_file() and p.resolve().is_relative_to(root):
            return _fragment_file(p.resolve(), f"--kconfig-add {name}")
    raise BadInput(f"--kconfig-add {name}: no such fragment in this tree's "
                   + " or ".join(f"{d}/" for d in TREE_FRAGMENT_DIRS))


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
    kc = resolved(kc, Path(src))
    try:
        if not (bd.exists(".config") and bd.state().get("kconfig") == kc.digest):
            if kc.startfile is not None:
                started = kc.startfile
            else:
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
