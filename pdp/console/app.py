"""The console's aiohttp application: mounted at /console/ on the PDP's http_listen.

Owns what every console request goes through (the `guard` middleware): the sign-in
check (a page needs a signed-in person; a GET without one goes to the login, anything
else is refused), the CSRF check of every state change (the session's token in the form
or the X-CSRF-Token header, and an Origin, when sent, that is this console's), and the
headers of every answer — a strict Content-Security-Policy (scripts, styles and fetches
from this origin only, no inline script or style, no framing, forms post here only),
nosniff, no referrer to other sites, no caching — on every answer, a page's fault too
(an unexpected exception is logged and answered by the error page, never aiohttp's bare
500 without those headers). It also owns the page layout, the error page and who counts
as an auditor. What each page shows and who may see it is in `views/`.
"""

from __future__ import annotations

import asyncio
import logging
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from aiohttp import web

from pdp.console.markup import Html, join, render, tag
from pdp.console.settings import ConsoleSettings
from pdp.console.signin import DevProvider, OIDCProvider, Provider, SignIn, redirect
from pdp.console.websession import WEB_SESSION, WebSession, WebSessions, cookie_name
from pdp.domain.identity import DevIssuer

if TYPE_CHECKING:
    from pdp.app import PDPApp

log = logging.getLogger("portcullis.console")

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    # same-origin, not no-referrer: under no-referrer a browser sends `Origin: null` with a
    # form POST, and the Origin check needs the real one
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}
FORMS = ("application/x-www-form-urlencoded", "multipart/form-data")
# reachable without signing in
PUBLIC = ("/console/login", "/console/callback", "/console/signed-out", "/console/static/",
          "/console/dev-issuer/")  # fmt: skip
# fetched by a page on its own, not by the person: they do not keep a sign-in alive
UNTOUCHED = ("/console/approvals/stream", "/console/approvals/list")
# state changes that carry no console session: the dev issuer's own form (its codes are
# bound to the login by state and PKCE)
UNSESSIONED_POSTS = ("/console/dev-issuer/authorize",)
NAV = (("approvals", "Approvals"), ("sessions", "Sessions"), ("evidence", "Evidence"),
       ("decisions", "Decisions"))  # fmt: skip
STATIC = Path(str(resources.files("pdp.console").joinpath("static")))


class Console:
    """The console of one PDP."""

    dev: DevProvider | None = None

    def __init__(self, pdp: PDPApp, settings: ConsoleSettings) -> None:
        self.pdp = pdp
        self.settings = settings
        self.sessions = WebSessions(settings.session_seconds, settings.idle_seconds)
        self.stopping = asyncio.Event()
        provider: Provider | None = None
        if settings.issuer:
            provider = OIDCProvider(settings)
        elif pdp.config.identity.dev:
            self.dev = DevProvider(settings, DevIssuer(pdp.config.identity))
            provider = self.dev
        self.signin = SignIn(self, provider, pdp.verifier) if provider is not None else None

    # -- who ---------------------------------------------------------------------------------

    def is_auditor(self, session: WebSession) -> bool:
        """Auditors see every session, the evidence and the decisions; others their own."""
        return bool(set(session.groups) & set(self.settings.auditor_groups))

    # -- the guard -------------------------------------------------------------------------

    @web.middleware
    async def guard(self, request: web.Request, handler: Any) -> web.StreamResponse:
        try:
            response = await self._guarded(request, handler)
        except web.HTTPException as exc:
            response = exc
            if exc.status >= 400:  # every refusal as a page, its text escaped
                response = self.error_page(request, exc.status, exc.text or exc.reason)
        except Exception:  # a fault: logged here, answered with no detail and every header
            log.exception("console: %s %s failed", request.method, request.path[:200])
            response = self.error_page(request, 500, "the console could not answer this")
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        if not request.path.startswith("/console/static/"):
            response.headers["Cache-Control"] = "no-store"
        if isinstance(response, web.HTTPException):
            raise response
        return response

    async def _guarded(self, request: web.Request, handler: Any) -> web.StreamResponse:
        cookie = request.cookies.get(cookie_name(self.settings.secure), "")
        # what a page fetches by itself (its event stream, the list it reloads when told
        # of a change) is not the person's activity: an idle tab still expires
        session = self.sessions.find(cookie, touch=not request.path.endswith(UNTOUCHED))
        request[WEB_SESSION] = session
        public = request.path.startswith(PUBLIC)
        if request.method not in ("GET", "HEAD"):
            origin = request.headers.get("Origin")
            if origin is not None and origin != self._origin(request):
                return self.error_page(request, 403, "cross-origin request refused")
            sessioned = request.path not in UNSESSIONED_POSTS
            if sessioned and session is None:
                return self.error_page(request, 401, "sign in first")
            form: Any = {}
            if request.content_type in FORMS:
                try:  # read once here (aiohttp keeps it for the handler)
                    form = await request.post()
                except (ValueError, LookupError):  # an unknown charset, a broken multipart
                    return self.error_page(request, 400, "the form cannot be read")
            if session is not None and sessioned:
                presented = request.headers.get("X-CSRF-Token", "") or str(form.get("csrf", ""))
                if not session.csrf_ok(presented):
                    return self.error_page(request, 403, "missing or wrong CSRF token")
        elif session is None and not public:
            return redirect(f"/console/login?next={quote(request.path_qs, safe='/?=&')}", 302)
        return await handler(request)

    def _origin(self, request: web.Request) -> str:
        if self.settings.public_url:
            parts = urlsplit(self.settings.public_url)
            return f"{parts.scheme}://{parts.netloc}"
        return f"{request.scheme}://{request.host}"

    # -- pages -------------------------------------------------------------------------------

    def page(
        self,
        request: web.Request,
        title: str,
        content: Html,
        *,
        section: str = "",
        status: int = 200,
        flash: Html | str = "",
        scripts: tuple[str, ...] = (),
    ) -> web.Response:
        session: WebSession | None = request.get(WEB_SESSION)
        nav = Html("".join(
            tag("li", tag("a", label, href=f"/console/{key}/",
                          aria_current="page" if key == section else None))
            for key, label in NAV
        ))  # fmt: skip
        account: Html | str = ""
        if session is not None:
            groups = ", ".join(session.groups) or "no groups"
            account = render("account.html", subject=session.subject, groups=groups,
                             csrf=session.csrf)  # fmt: skip
        if isinstance(flash, str) and flash:
            flash = tag("p", flash, class_="flash", role="status")
        body = render(
            "layout.html",
            title=title,
            csrf=session.csrf if session else "",
            nav=nav,
            account=account,
            flash=flash,
            content=content,
            scripts=join(
                tag("script", "", src=f"/console/static/{s}", defer=True) for s in scripts
            ),
        )
        return web.Response(text=body, status=status, content_type="text/html", charset="utf-8")

    def error_page(self, request: web.Request, status: int, message: str) -> web.Response:
        title = {400: "Bad request", 401: "Sign in first", 403: "Refused", 404: "Not found",
                 500: "Console fault"}.get(status, "Error")  # fmt: skip
        body = render("message.html", title=title, message=message)
        return web.Response(text=body, status=status, content_type="text/html", charset="utf-8")

    async def index(self, request: web.Request) -> web.Response:
        return redirect("/console/approvals/", 302)

    async def signed_out(self, request: web.Request) -> web.Response:
        body = render("message.html", title="Signed out", message="You have signed out.")
        return web.Response(text=body, content_type="text/html", charset="utf-8")


CONSOLE = web.AppKey("console", Console)


def build_console(pdp: PDPApp, settings: ConsoleSettings | None = None) -> web.Application:
    """The console sub-application (mount with `add_subapp("/console/", ...)`)."""
    from pdp.console.views import approvals, decisions, evidence, sessions

    console = Console(pdp, settings or ConsoleSettings.from_config(pdp.config))
    app = web.Application(middlewares=[console.guard])
    app.router.add_get("/", console.index)
    app.router.add_get("/signed-out", console.signed_out)
    app.router.add_static("/static/", STATIC, append_version=False)
    if console.signin is not None:
        app.add_routes([_relative(r) for r in console.signin.routes()])
    else:

        async def no_signin(request: web.Request) -> web.Response:
            return console.error_page(request, 503, "no identity issuer is configured")

        app.router.add_get("/login", no_signin)
    if console.dev is not None:
        app.add_routes([_relative(r) for r in console.dev.routes()])
    for view in (approvals, sessions, evidence, decisions):
        app.add_routes([_relative(r) for r in view.routes(console)])

    async def stop_streams(_: web.Application) -> None:
        console.stopping.set()

    app.on_shutdown.append(stop_streams)
    app[CONSOLE] = console
    return app


def mount_console(app: web.Application, pdp: PDPApp, settings: ConsoleSettings) -> None:
    """The console at /console/ of the PDP's HTTP application (and /console sent there)."""

    async def to_console(request: web.Request) -> web.Response:
        return redirect("/console/", 302)

    app.router.add_get("/console", to_console)
    app.add_subapp("/console/", build_console(pdp, settings))


def _relative(route: web.RouteDef) -> web.RouteDef:
    """Routes are written with their full /console/ path; the sub-app adds the prefix."""
    path = route.path.removeprefix("/console")
    return web.RouteDef(route.method, path, route.handler, route.kwargs)
