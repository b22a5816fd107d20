"""What the Redshift and STS APIs share on the wire: AWS Query protocol error documents and
timestamps."""

from __future__ import annotations

import datetime
import uuid
from xml.sax.saxutils import escape


def error_xml(namespace: str, code: str, message: str) -> str:
    """An AWS Query error document, as botocore parses it into modelled exceptions."""
    kind = "Receiver" if code in ("ServiceUnavailable", "InternalFailure") else "Sender"
    return (f'<ErrorResponse xmlns="{namespace}"><Error><Type>{kind}</Type><Code>{escape(code)}</Code>'
            f"<Message>{escape(message)}</Message></Error><RequestId>{uuid.uuid4()}</RequestId></ErrorResponse>")


def iso8601(moment: datetime.datetime) -> str:
    # With a Z: without it botocore returns a naive datetime and redshift_connector's cache
    # check fails comparing it with an aware one (reference §3).
    return moment.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
