"""Finding the commit that changed a result: the step rules (good,
bad, skip), one bisect step's build and boot, and the revision walk.
Imports run and below."""
