"""``make bench``: microshop measured against the raw WSGI limit and its peers in one run.

    seed.py      the data set, written straight into migrated databases
    shop.py      the microshop under test: environment, migrations, PostgreSQL schemas, login
    servers.py   server processes on free loopback ports, and their CPU and memory
    load.py      wrk, with wrk.lua, the requests of every case
    cases.py     the cases and the servers they load
    report.py    medians, issue #11's ratios, the Markdown table and the JSON
    run.py       the command: ``python -m bench.run --help``
    peers/       the apps microshop is compared with

See docs/performance.md for the method and the latest results.
"""
