"""What a service is written with: errors, responses, validation, money, pagination, auth,
events (publish and handle), the deny list, ``@operation`` and the service's parts.

A service imports these modules and nothing of ``app.runtime``; importing one loads only
what it uses (no composition, no server, no migrations)."""
