"""orch's cache as a whole: what each kind of entry is (kinds), how much
room each takes and when it was last used (usage: `orch cache du`), trimming
it to a size and an age, least recently used first (gc: `orch cache gc`,
and the nightly's automatic gc), and what the nightly's last nights keep
(pins). Entries are taken away only under core.cache_use's locks, so never
one a running orch holds. Imports kernel, guest, source and core; the
nightly, the fan-out and the commands import it."""
