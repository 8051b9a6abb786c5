"""The login page of the code flow: a plain HTML form, no script, no third-party anything."""

from __future__ import annotations

from html import escape

OAUTH_FIELDS = ("response_type", "client_id", "redirect_uri", "scope", "state", "code_challenge",
                "code_challenge_method")
"""The authorization request's parameters, carried through the form as hidden fields."""
CSRF_FIELD = "csrf"
LOGIN_PAGE_CSP = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'"

_PAGE = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Sign in - Clinic</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{{font-family:sans-serif;max-width:24rem;margin:4rem auto}}label{{display:block;margin:.8rem 0}}
input{{width:100%}}.error{{color:#a00}}</style></head>
<body>
<h1>Sign in</h1>
<p><strong>{client}</strong> asks for: {scopes}</p>
{error}
<form method="post" action="{action}">
{hidden}
<label>Username <input name="username" autocomplete="username" required value="{username}"></label>
<label>Password <input name="password" type="password" autocomplete="current-password" required></label>
<button type="submit">Sign in</button>
</form>
</body>
</html>
"""


def login_page(action: str, params: dict[str, str], scope: str, csrf: str, error: str | None = None,
               username: str = "") -> str:
    """The form; ``params`` are the authorization request's, posted back unchanged."""
    hidden = "\n".join(f'<input type="hidden" name="{name}" value="{escape(params[name])}">'
                       for name in OAUTH_FIELDS if name in params)
    hidden += f'\n<input type="hidden" name="{CSRF_FIELD}" value="{escape(csrf)}">'
    return _PAGE.format(client=escape(params.get("client_id", "")), scopes=escape(scope or "(none)"),
                        error=f'<p class="error" role="alert">{escape(error)}</p>' if error else "",
                        action=escape(action), hidden=hidden, username=escape(username))
