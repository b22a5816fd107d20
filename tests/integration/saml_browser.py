"""A person at a web browser, for redshift_connector's BrowserSamlCredentialsProvider: the
driver opens its login_url with Python's webbrowser module, which runs $BROWSER (this script,
given the URL). It loads the sign-in page, fills in the user name and password
(SAML_BROWSER_USER, SAML_BROWSER_PASSWORD) and submits it, then does what the answer's page
does in a browser: posts its form (the SAMLResponse) to the form's action, the driver's
listener. The IdP's certificate is verified against SAML_BROWSER_CA.

    python3 saml_browser.py URL
"""

from __future__ import annotations

import html.parser
import os
import ssl
import sys
import urllib.parse
import urllib.request


class Form(html.parser.HTMLParser):
    """The first form of a page: its action and its inputs' names and values."""

    def __init__(self):
        super().__init__()
        self.action: str | None = None
        self.fields: dict[str, str] = {}

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form" and self.action is None:
            self.action = attrs.get("action", "")
        elif tag == "input" and attrs.get("name"):
            self.fields[attrs["name"]] = attrs.get("value") or ""


def form_of(page: str) -> Form:
    form = Form()
    form.feed(page)
    if form.action is None:
        raise SystemExit(f"no form on the page: {page[:200]}")
    return form


def main(url: str) -> None:
    context = ssl.create_default_context(cafile=os.environ["SAML_BROWSER_CA"])
    with urllib.request.urlopen(url, context=context, timeout=20) as page:
        sign_in = form_of(page.read().decode())
    sign_in.fields.update(UserName=os.environ["SAML_BROWSER_USER"], Password=os.environ["SAML_BROWSER_PASSWORD"])
    target = urllib.parse.urljoin(url, sign_in.action)
    with urllib.request.urlopen(target, urllib.parse.urlencode(sign_in.fields).encode(), context=context,
                                timeout=20) as page:
        posting = form_of(page.read().decode())
    # The page's onload: post the form to its action (the driver's listener, plain http).
    with urllib.request.urlopen(posting.action, urllib.parse.urlencode(posting.fields).encode(), timeout=20) as done:
        done.read()


if __name__ == "__main__":
    main(sys.argv[1])
