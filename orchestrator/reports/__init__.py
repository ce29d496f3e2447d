"""What a night publishes, from its records: HTML with SVG charts,
JUnit, KCIDB and text. Reads records, runs nothing (no builds, boots or
git). Imports nightly's and run's records and core."""
