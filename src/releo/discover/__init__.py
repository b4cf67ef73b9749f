"""Residual analysis and equation discovery (SINDy) on the model's outputs.

The targets are the model's exclusive residuals, the decoded LAI and, on simulated sites, the
planted exclusive effects.

- :mod:`.trajectories`: trajectories on irregular days and their daily drivers, checked;
- :mod:`.sindy`: integral-form SINDy between observations with model bridges, then
  :mod:`.output_error` refinement on the simulation error, bagging for inclusion
  probabilities; :mod:`.library` and :mod:`.integrate` underneath;
- :mod:`.truth`, :mod:`.latents`, :mod:`.series`, :mod:`.fields`: the trajectories of the
  planted truth, of the trained model's outputs, per field;
- :mod:`.targets`: what is fitted (truth, matched and raw residuals, LAI);
- :mod:`.analysis`, :mod:`.residuals`, :mod:`.compare`: dependence measures,
  disentanglement, affine matches, structure scores;
- :mod:`.equations`, :mod:`.report`: the targets' equations, summarised and written out
  (the ``discover`` stage: :mod:`releo.stages.discover`).

Nothing heavy is imported here: ``releo.config`` reads :mod:`.config` at every stage.
"""
