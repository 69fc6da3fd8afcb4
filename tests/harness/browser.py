"""A browser (Chromium driven over the DevTools protocol) on the frontend of a release on the real node."""

from __future__ import annotations

import secrets
from contextlib import contextmanager

CHROMIUM = "/usr/bin/chromium"


# Chromium as root, headless, with none of its own background connections (this machine's network is closed).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def open_chat(page, origin: str = "http://localhost:3000") -> None:
    """Register a new user on the frontend at `origin`, log in, create a conversation and wait for its chat's
    WebSocket to connect."""
    email = f"journey-{secrets.token_hex(4)}@example.com"
    password = secrets.token_urlsafe(12) + "Aa1"  # the backend wants a digit and a capital
    page.goto(f"{origin}/register", wait_until="networkidle")
    page.fill("#username", "Journey")
    page.fill("#email", email)
    page.fill("#password", password)
    page.click("button[type=submit]")
    page.wait_for_url("**/login", timeout=30_000)
    page.fill("#email", email)
    page.fill("#password", password)
    page.click("button[type=submit]")
    page.wait_for_url("**/conversations", timeout=30_000)
    page.get_by_role("button", name="New Conversation").first.click()
    page.wait_for_url("**/chat/*", timeout=30_000)
    page.get_by_text("Connected to AgentForge").wait_for(timeout=30_000)


@contextmanager
def browser_page(args: tuple[str, ...] | list[str] = ()):
    """A page of headless Chromium, with more command-line arguments if given."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, *args])
        try:
            yield browser.new_page(viewport={"width": 1280, "height": 800})
        finally:
            browser.close()
