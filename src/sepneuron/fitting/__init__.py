"""The pieces of :func:`sepneuron.fit` (public names re-exported by :mod:`sepneuron.train`).

* :mod:`.config` -- :class:`TrainConfig`; :mod:`.history` -- :class:`History`;
* :mod:`.loop` -- ``fit``: builds a :class:`~.run.Run` and runs the short loop;
* :mod:`.run` -- the run's state, its loss closure and one training step;
* :mod:`.callbacks` -- the :class:`Callback` protocol and the built-in callbacks
  (evaluation, tuner step, conditioning, plateau stop, function adapters);
* :mod:`.coarse` -- coarse to fine (``coarse_fraction``): a first phase on part of the rows;
* :mod:`.recovery` -- NaN recovery; :mod:`.checkpointing` -- the :class:`Checkpoint` callback.

The optimizers are in :mod:`sepneuron.optimizers` (a registry). Nothing is imported here,
so that :mod:`sepneuron.settings` and these modules can import each other's leaves freely.
"""
