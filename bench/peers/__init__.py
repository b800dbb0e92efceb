"""What microshop is measured against, each served as the benchmark serves microshop.

    raw_wsgi      a WSGI callable and nothing else: the limit of waitress on this machine
    flask_hello   a bare Flask hello: the limit of a Flask app
    fastapi_read  GET /order/<id> in FastAPI + uvicorn, by microshop's rules
    naive_flask   GET /order/<id> as a tutorial stack writes it: flask-restful,
                  flask-jwt-extended and a Flask-SQLAlchemy get

The two reads use no microshop code; they read the seeded order database and accept the
access tokens that microshop's login issues (the same secret).
"""
