"""Your own configs (--kconfig, --kconfig-add) on a stand-in tree whose
Kconfig really drops an option whose dependency is off, as olddefconfig
does: each form reaches the final .config, a dropped option is named, a bad
form is refused in one line, and names and kernel keys follow the options."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from helpers import git, one_error_line, orch

from orchestrator.core.errors import BadInput, Exit
from orchestrator.kernel import kcache, kconfig
from orchestrator.run.options import Options, argv_of

# olddefconfig as Kconfig does it: the last line for a symbol wins, a
# symbol no Kconfig defines goes, and BAR goes unless its DEP is on.
OLDDEFCONFIG = r"""
import re, sys
path = sys.argv[1]
opts = {}
for line in open(path):
    m = re.match(r"^(CONFIG_\w+)=(.*)$", line.strip()) or \
        re.match(r"^# (CONFIG_\w+) is not set$", line.strip())
    if m:
        opts[m.group(1)] = m.group(2) if m.lastindex == 2 else "n"
known = {"CONFIG_" + l.split()[1] for l in open("Kconfig") if l.startswith("config ")}
opts = {k: v for k, v in opts.items() if k in known and v != "n"}
if opts.get("CONFIG_DEP") != "y":
    opts.pop("CONFIG_BAR", None)
open(path, "w").write("".join(f"{k}={v}\n" for k, v in sorted(opts.items())))
"""

MAKEFILE = """\
O ?= .
tinyconfig:
\t@mkdir -p $(O) && echo CONFIG_MINI=y > $(O)/.config
defconfig:
\t@mkdir -p $(O) && printf 'CONFIG_MINI=y\\nCONFIG_FOO=y\\n' > $(O)/.config
olddefconfig:
\t@python3 olddefconfig.py $(O)/.config
"""

KCONFIG = "".join(f"config {s}\n\tbool\n" for s in
                  ("MINI", "FOO", "BAR", "DEP", "VIRTIO", "KVM_GUEST", "NUM"))


@pytest.fixture
def tree(tmp_path):
    src = tmp_path / "src"
    (src / "kernel" / "configs").mkdir(parents=True)
    (src / "Makefile").write_text(MAKEFILE)
    (src / "olddefconfig.py").write_text(OLDDEFCONFIG)
    (src / "Kconfig").write_text(KCONFIG)
    (src / "kernel/configs/kvm_guest.config").write_text("CONFIG_KVM_GUEST=y\n")
    git(src, "init", "-q")
    git(src, "add", ".")
    git(src, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "tree")
    return src


@pytest.fixture
def kdir(tmp_path):
    d = tmp_path / "kconfigs"
    d.mkdir()
    (d / "base.config").write_text("CONFIG_MINI=y\n")
    (d / "vm.config").write_text("CONFIG_VIRTIO=y\n")
    (d / "matrix").write_text("base\n")
    return d


def _configure(tree, tmp_path, kc, build="b"):
    final = kconfig.configure(tree, tmp_path / build, kc, tmp_path / f"{build}.log")
    return kconfig.parse(final.read_text()), final


def test_each_add_form_reaches_the_final_config(tree, tmp_path, kdir):
    frag = tmp_path / "my.config"
    frag.write_text("# mine\nCONFIG_DEP=y\n")
    kc = kconfig.custom("base", None, ["CONFIG_FOO=y", str(frag), "CONFIG_BAR=y",
                                       "kvm_guest.config", "# CONFIG_MINI is not set",
                                       "CONFIG_NUM=7"], kdir)
    opts, _ = _configure(tree, tmp_path, kc)
    assert opts == {"CONFIG_FOO": "y", "CONFIG_DEP": "y", "CONFIG_BAR": "y",
                    "CONFIG_KVM_GUEST": "y", "CONFIG_NUM": "7"}
    assert re.fullmatch(r"base\+[0-9a-f]{8}", kc.name)


def test_a_dropped_add_is_named(tree, tmp_path, kdir):
    kc = kconfig.custom("base", None, ["CONFIG_BAR=y"], kdir)   # DEP is off
    with pytest.raises(BadInput) as e:
        _configure(tree, tmp_path, kc)
    assert str(e.value) == (f"config {kc.name}: options did not survive olddefconfig: "
                            "CONFIG_BAR=y (got n)")
    assert e.value.exit == Exit.BAD_INPUT


def test_a_later_add_wins(tree, tmp_path, kdir):
    kc = kconfig.custom("base", None, ["kvm_guest.config", "# CONFIG_KVM_GUEST is not set"],
                        kdir)
    opts, _ = _configure(tree, tmp_path, kc)
    assert "CONFIG_KVM_GUEST" not in opts


def test_an_in_tree_fragment_follows_the_source_state(tree, tmp_path, kdir):
    kc = kconfig.custom("base", None, ["kvm_guest.config"], kdir)
    first, _ = _configure(tree, tmp_path, kc)
    (tree / "kernel/configs/kvm_guest.config").write_text("CONFIG_KVM_GUEST=y\nCONFIG_FOO=y\n")
    second, _ = _configure(tree, tmp_path, kc)
    assert "CONFIG_FOO" not in first and second["CONFIG_FOO"] == "y"
    (tree / "kernel/configs/kvm_guest.config").unlink()
    with pytest.raises(BadInput, match=r"^--kconfig-add kvm_guest.config: no such fragment "
                       r"in this tree's kernel/configs/ or arch/x86/configs/$"):
        _configure(tree, tmp_path, kc)


def test_an_in_tree_fragment_out_of_the_tree_is_not_read(tree, tmp_path, kdir):
    (tmp_path / "outside.config").write_text("CONFIG_FOO=y\n")
    (tree / "kernel/configs/evil.config").symlink_to(tmp_path / "outside.config")
    with pytest.raises(BadInput, match="no such fragment"):
        _configure(tree, tmp_path, kconfig.custom("base", None, ["evil.config"], kdir))


def test_kconfig_target_and_file(tree, tmp_path, kdir):
    target = kconfig.custom(None, "defconfig", ["CONFIG_DEP=y"], kdir)
    opts, _ = _configure(tree, tmp_path, target, "t")
    assert opts == {"CONFIG_MINI": "y", "CONFIG_FOO": "y", "CONFIG_VIRTIO": "y",
                    "CONFIG_DEP": "y"}
    # A full .config: copied in, its own options not checked (UNKNOWN goes),
    # vm.config's are.
    dot = tmp_path / "dot.config"
    dot.write_text("CONFIG_FOO=y\nCONFIG_UNKNOWN=y\n")
    full = kconfig.custom(None, str(dot), [], kdir)
    opts, _ = _configure(tree, tmp_path, full, "f")
    assert opts == {"CONFIG_FOO": "y", "CONFIG_VIRTIO": "y"}
    assert re.fullmatch(r"kconfig-[0-9a-f]{8}", full.name) and full.name != target.name
    (kdir / "vm.config").write_text("CONFIG_BAR=y\n")   # DEP off: vm's options are checked
    with pytest.raises(BadInput, match=r"options did not survive olddefconfig: CONFIG_BAR=y"):
        _configure(tree, tmp_path, kconfig.custom(None, str(dot), [], kdir), "g")


def test_names_and_kernel_keys_follow_the_options(tree, tmp_path, kdir):
    a1 = kconfig.custom("base", None, ["CONFIG_FOO=y"], kdir)
    a2 = kconfig.custom("base", None, ["CONFIG_FOO=y"], kdir)
    b = kconfig.custom("base", None, ["CONFIG_DEP=y"], kdir)
    assert a1.name == a2.name != b.name
    assert kconfig.custom("base", None, [], kdir).name == "base"
    keys = [kcache.cache_key("t" * 40, _configure(tree, tmp_path, kc, n)[1])
            for n, kc in (("a1", a1), ("a2", a2), ("b", b))]
    assert keys[0] == keys[1] != keys[2]


@pytest.mark.parametrize("spec, why", [
    ("make:kvm_guest.config", "make targets are not run"),
    ("https://example.org/x.config", "orch fetches no URLs"),
    ("CONFIG_FOO", "not CONFIG_X=VALUE"),
    ("no/such/file", "not CONFIG_X=VALUE"),
])
def test_a_bad_add_is_refused(kdir, spec, why):
    with pytest.raises(BadInput, match=f"^--kconfig-add {re.escape(spec)}: {why}"):
        kconfig.custom("base", None, [spec], kdir)


def test_kconfig_with_config_or_a_bad_start_is_refused(kdir, tmp_path):
    with pytest.raises(BadInput, match="give it or --config, not both"):
        kconfig.chosen(["base"], "defconfig", [], kdir)
    with pytest.raises(BadInput, match="neither a .config file nor a make target"):
        kconfig.chosen([], "nosuchthing", [], kdir)
    (tmp_path / "empty").write_text("hello\n")
    with pytest.raises(BadInput, match="not a kernel .config"):
        kconfig.chosen([], str(tmp_path / "empty"), [], kdir)


def test_flags_make_the_config_again(kdir):
    for kc in (kconfig.custom("base", None, ["CONFIG_FOO=y"], kdir),
               kconfig.custom(None, "defconfig", ["CONFIG_FOO=y"], kdir),
               kconfig.load("base", kdir)):
        f = kc.flags()
        again = kconfig.chosen(f["configs"], f["kconfig"], f["kconfig_add"], kdir)
        assert [k.name for k in again] == [kc.name]
        assert argv_of(Options(**f))[2:4] in (["--config", "base"], ["--kconfig", "defconfig"])


def test_vm_config_is_a_subset_of_base():
    vm, base = kconfig.load("vm").wanted, kconfig.load("base").wanted
    assert vm and {k: base.get(k) for k in vm} == vm


@pytest.mark.parametrize("args, line", [
    (["--kconfig-add", "make:kvm_guest.config"],
     "orch: error: --kconfig-add make:kvm_guest.config: make targets are not run"),
    (["--kconfig", "defconfig", "--config", "base"],
     "orch: error: --kconfig is the whole config: give it or --config, not both"),
])
def test_the_command_refuses_in_one_line(env, tmp_path, args, line):
    mbox = tmp_path / "s.mbox"
    mbox.write_text("")
    r = orch(env, tmp_path, "test", "--mbox", str(mbox), "--offline-mode", *args)
    assert r.returncode == Exit.BAD_INPUT, r.stderr
    assert one_error_line(r.stderr).startswith(line)


def test_orch_test_builds_the_added_options_under_their_name(tmp_path, env, mini):
    """End to end on the stand-in tree: the record names the config by its
    hash and keeps the flags; the kernel built has the options, one of them
    from the tree's own fragment."""
    from helpers import build_only, run_json, series
    (mini / "kernel/configs").mkdir(parents=True)
    (mini / "kernel/configs/extra.config").write_text("CONFIG_EXTRA=y\n")
    git(mini, "add", "-A")
    git(mini, "commit", "-q", "-m", "mini: a fragment")
    mbox = series(mini, tmp_path, "s", [("mini: feature", {"feature.c": "int f(void);\n"})])
    r, rd = build_only(env, tmp_path, mini, mbox, "--config", "base",
                       "--kconfig-add", "CONFIG_NUM=7", "--kconfig-add", "extra.config")
    assert r.returncode == 0, r.stderr
    data = run_json(rd)
    (cfg,) = data["configs"]
    assert re.fullmatch(r"base\+[0-9a-f]{8}", cfg["name"]), cfg["name"]
    assert (cfg.get("kconfig"), cfg["kconfig_add"]) == (None, ["CONFIG_NUM=7", "extra.config"])
    final = kconfig.parse(Path(cfg["patched"]["build"]["dotconfig"]).read_text())
    assert final["CONFIG_NUM"] == "7" and final["CONFIG_EXTRA"] == "y"
