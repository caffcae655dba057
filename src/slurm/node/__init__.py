"""The node side: the code that runs on the compute nodes, in every job.

``python -m slurm.node.runner`` is the job script's one command; it reads the task and its call from the
payload (``payload``), runs it, and writes the outcome (``outcome``) where ``layout`` says, atomically
(``atomic``); multi-rank tasks add ``ranks`` and ``gather``, checkpointing tasks ``checkpoint``.

This package imports only the standard library and itself (an import-linter contract, run by
``.ci/lint``): each array task's start-up cost is that of this package, and the submitting side
(``slurm.cluster`` and below) may import it, never the other way round. cloudpickle is the one outside
package a job loads, and only for what plain pickle refuses (see ``outcome``). docs/architecture.md draws
the whole map.
"""

#: True in a job's runner process (set by ``runner.run``, the job script's entry, before the task's module
#: is imported). ``@task`` then keeps its options
#: unchecked until they are used: the submitting side checked them when it imported the same module, and
#: checking them again would cost every array task the import of ``slurm.resources`` (dataclasses,
#: inspect, re: about 40 ms) for a task module whose decorators name resources.
in_job_runner = False
