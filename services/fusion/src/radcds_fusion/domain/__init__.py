"""Pure domain of fusion: nodules, guideline engines, comparison with priors. No infrastructure here."""
