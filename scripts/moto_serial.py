"""moto's S3 server with one request handled at a time.

moto checks a conditional put (`If-None-Match: *`) and then writes, not atomically: two writers
putting the same new key at once can both succeed (measured: 1 pair in 40 on this machine),
where S3 refuses the second with 412. affluent's object-store commits and compaction lease rely
on that refusal, so the tests serve moto's application behind a lock: connections are still
accepted in parallel, requests are applied one after the other, as atomically as S3.

scripts/test installs this next to the virtualenv's moto_server (with its Python) and points
AFFLUENT_MOTO_SERVER at it. Arguments are moto_server's.
"""
import threading

import moto.server as server

_lock = threading.Lock()
_App = server.DomainDispatcherApplication


class _Serial(_App):
    def __call__(self, environ, start_response):
        with _lock:
            # The whole answer under the lock: a streamed body is read before the next request.
            return list(super().__call__(environ, start_response))


server.DomainDispatcherApplication = _Serial

if __name__ == "__main__":
    server.main()
