"""The map page at `/` (the map-page issue builds it; this placeholder keeps the route alive)."""

from flask import Flask, render_template


def init_app(app: Flask) -> None:
    app.add_url_rule("/", "index", lambda: render_template("index.html"))
