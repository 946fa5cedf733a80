"""The imperative shell around the engine: evaluate, migrate and follow a migration.

Each step is a plain function of a `Runtime` (config, PVE client, state store) and a
`Dispatcher` (how to schedule the next step), so the Celery tasks stay one-liners and the
steps can be exercised with a real Redis and simulator without Celery in between.
"""

from balancer.runtime.context import Dispatcher, Runtime
from balancer.runtime.evaluate import evaluate
from balancer.runtime.follow import poll_migration
from balancer.runtime.migrate import start_migration
from balancer.runtime.timings import Timings

__all__ = ["Dispatcher", "Runtime", "Timings", "evaluate", "poll_migration", "start_migration"]
