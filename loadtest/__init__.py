"""The locust load test of streamstats (see the README's "Load testing" section).

`locustfile.py` is what locust runs (it imports gevent, so nothing else imports it); `histogram.py` and
`report.py` are plain Python and tested in the test suite; `run.py` starts a server, locust, and its
workers.
"""
