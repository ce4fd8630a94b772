"""The web console served from the PDP's http_listen at /console/ (issue 29).

Approvers decide approval requests, requesters follow and withdraw theirs, auditors search
and replay sessions, check and export evidence and read the decision log — in a browser,
signed in with the same OIDC issuer as every token (authorization code + PKCE), every page
authorised by the rules the CLI and the approvals API use, through the same domain code.
Server-rendered HTML with a little local JavaScript; nothing from a CDN.

    app.py        the sub-application, its guard (sign-in, CSRF, CSP) and layout
    signin.py     the OIDC login, and the dev issuer's authorize form (embedded default)
    websession.py server-side sign-in sessions behind an opaque cookie
    markup.py     escaped-by-default HTML; client text made inert
    charts.py     inline SVG charts drawn on the server
    views/        approvals, sessions (search and replay), evidence, decisions
"""
