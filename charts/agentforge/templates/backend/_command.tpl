{{/*
The backend container's command ($), run by the image's python with the uvicorn command line as its arguments:
1. secrets never reach a log line: uvicorn logs the path of every accepted WebSocket at INFO, and the chat's carries
   the access token in `?token=`; the app logs REDIS_URL, password included (a warning when Redis is unavailable at
   start, and at INFO on every connection). A log record factory redacts both (a query's token, a URL's password)
   in every record's message and arguments, whatever logger, handler or `--log-config` formats it;
2. every start of the container, restarts included, waits until Redis answers the backend's own client
   (agentforge.redisClientWait): the app checks Redis once, at start, and would otherwise run for good with its
   Redis-backed guards off. SIGTERM ends the wait with status 0;
3. then runs uvicorn's own CLI in this process, which gets the kubelet's SIGTERM itself.
*/}}
{{- define "agentforge.backendCommand" -}}
import logging, re

REDACTIONS = [(re.compile(r"([?&]token=)[^&#\s\"']+"), r"\1[redacted]"),
              (re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]*:)[^/\s@]+@"), r"\1[redacted]@")]


def redact(value):
    if isinstance(value, str):
        for pattern, replacement in REDACTIONS:
            value = pattern.sub(replacement, value)
    return value


make_record = logging.getLogRecordFactory()


def redacted_record(*args, **kwargs):
    record = make_record(*args, **kwargs)
    record.msg = redact(record.msg)
    if isinstance(record.args, tuple):
        record.args = tuple(redact(arg) for arg in record.args)
    elif isinstance(record.args, dict):
        record.args = {key: redact(arg) for key, arg in record.args.items()}
    return record


logging.setLogRecordFactory(redacted_record)

# The container's PID 1 until uvicorn takes over, and the kernel drops a signal PID 1 has no handler for: without
# this, the kubelet's SIGTERM would not stop a container still waiting for Redis (uvicorn installs its own later).
import signal, sys

signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))

{{ include "agentforge.redisClientWait" . }}

from uvicorn.main import main

sys.argv = sys.argv[1:]
sys.exit(main())
{{- end -}}
