"""The account page in a real headless Chromium: rotate a key, sign out everywhere and manage users by
keyboard, with the focus ring visible on every control. Screenshots go to ``test-results/screenshots/``."""

from __future__ import annotations

import pytest

from .test_review_list_page import shot, sign_in, tab_walk
from .test_review_page import CHROMIUM_ARGS

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
def test_rotate_key_and_sign_out_everywhere_by_keyboard(start_queue, chromium_bin) -> None:
    from playwright.sync_api import expect, sync_playwright

    queue = start_queue()
    ann = queue.add_user("ann", "annotator")

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_bin, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 800})
            sign_in(page, queue.url, ann)
            other = browser.new_page()  # a second session of ann's (another device)
            sign_in(other, queue.url, ann)

            # To the account page by keyboard: Tab to the "Account" link, Enter.
            page.get_by_role("link", name="Account").evaluate("el => el.id = 'account-link'")
            assert [f for f in tab_walk(page, until="account-link") if not f["visible"]] == []
            page.keyboard.press("Enter")
            page.wait_for_url(f"{queue.url}/review/account")
            assert page.locator("#users").count() == 0  # an annotator manages no one

            walked = tab_walk(page, until="sign-out-everywhere")
            assert {"rotate-key", "sign-out-everywhere"} <= {f["id"] for f in walked}
            assert [f for f in walked if not f["visible"]] == []

            # Rotate with Enter: the new key shows once, the old one fails at once, the new one works.
            page.focus("#rotate-key")
            page.keyboard.press("Enter")
            expect(page.locator("#new-key-box")).to_be_visible()
            new = page.input_value("#new-key")
            assert new.startswith("gbq_") and new != ann
            assert queue.call("GET", "/api/v1/me", key=ann).status_code == 401
            assert queue.call("GET", "/api/v1/me", key=new).json()["name"] == "ann"
            page.focus("#new-key")
            assert page.evaluate("() => document.activeElement.id") == "new-key"
            shot(page, "key-rotation.png")
            page.goto(f"{queue.url}/review/account")
            expect(page.locator("#rotate-key")).to_be_visible()
            assert page.locator("#new-key").count() == 0  # shown once only

            # Sign out everywhere with Enter: this page and the other device are back at the login form.
            page.focus("#sign-out-everywhere")
            page.keyboard.press("Enter")
            expect(page.locator("#api_key")).to_be_visible()
            other.reload()
            expect(other.locator("#api_key")).to_be_visible()
            # The old key no longer signs in; the new one does.
            page.fill("#api_key", ann)
            page.get_by_role("button", name="Sign in").click()
            expect(page.locator(".error")).to_contain_text("unknown API key")
            sign_in(page, queue.url, new)
            expect(page.get_by_role("link", name="Account")).to_be_visible()
        finally:
            browser.close()


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
def test_owner_changes_a_role_and_deactivates_by_keyboard(start_queue, chromium_bin) -> None:
    from playwright.sync_api import expect, sync_playwright

    queue = start_queue()
    ann = queue.add_user("ann", "annotator")

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_bin, args=CHROMIUM_ARGS)
        try:
            annotator = browser.new_page()
            sign_in(annotator, queue.url, ann)
            page = browser.new_page(viewport={"width": 1100, "height": 800})
            sign_in(page, queue.url, queue.owner_key)
            page.goto(f"{queue.url}/review/account")
            row = page.locator("#users tbody tr[data-user='ann']")
            expect(row.locator(".role")).to_have_text("annotator")
            walked = tab_walk(page, until="deactivate-1")  # users by name: ann first, then owner
            assert {"role-1", "set-role-1", "deactivate-1"} <= {f["id"] for f in walked}
            assert [f for f in walked if not f["visible"]] == []
            assert page.locator("#users tbody tr[data-user='owner'] button").count() == 0  # not oneself

            # A role by keyboard: arrow up on the focused choice (annotator -> admin), Enter on the button.
            page.focus("#role-1")
            page.keyboard.press("ArrowUp")
            expect(page.locator("#role-1")).to_have_value("admin")
            page.focus("#set-role-1")
            page.keyboard.press("Enter")
            expect(page.locator("#message")).to_have_text("Saved: ann is now admin.")
            expect(row.locator(".role")).to_have_text("admin")
            annotator.goto(f"{queue.url}/review/lead")  # the role applies to ann's open session at once
            expect(annotator.locator("#progress")).to_be_visible()
            shot(page, "account-owner.png")

            page.focus("#deactivate-1")
            page.keyboard.press("Enter")
            expect(page.locator("#message")).to_have_text("Saved: ann is deactivated.")
            expect(row.locator(".state")).to_have_text("deactivated")
            assert queue.call("GET", "/api/v1/me", key=ann).status_code == 401
            annotator.reload()
            expect(annotator.locator("#api_key")).to_be_visible()
        finally:
            browser.close()
