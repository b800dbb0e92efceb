"""What runs a process: the composition of services, serving, the CLI, the docs UI,
observability, migrations, the service client and the event relay.

Only the composition and the CLI (and ``wsgi.py``) are entry points here; no service
imports the runtime."""
