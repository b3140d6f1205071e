"""Pure domain of inference: model envelopes and manifests, model outputs, study locators. No infrastructure here."""
