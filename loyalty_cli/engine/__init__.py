"""The stages of a run, one module each (SPEC 5): sources, earning, returns, bonuses, ..."""
