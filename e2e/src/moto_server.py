# moto's S3 server with one request handled at a time. `moto_server` handles requests on parallel
# threads, and its create-only check (If-None-Match: *) and the write that follows are then not
# atomic; S3's are. Connections still get threads of their own (so HTTP keep-alive works), but the
# application behind them runs under one lock.
import sys
import threading

from werkzeug.serving import run_simple
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

moto = DomainDispatcherApplication(create_backend_app)
one_at_a_time = threading.Lock()


def serialized(environ, start_response):
    with one_at_a_time:
        return list(moto(environ, start_response))


run_simple(sys.argv[1], int(sys.argv[2]), serialized, threaded=True, use_reloader=False)
