"""The chat page in headless Chromium, against `python -m bot try` as `make run` starts it.

Debian's chromium and chromium-driver drive it (Selenium pointed at both, so nothing downloads
a browser or a driver of its own). Without them the tests are skipped, saying how to install.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final, Literal
from urllib.parse import urlsplit

import pytest
from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.select import Select
from selenium.webdriver.support.wait import WebDriverWait

from bot.sandbox.telegram.seed import SUPERVISORS_GROUP, TOKEN
from tests.sandboxed import get_json, trial

CHROMIUM: Final = Path("/usr/bin/chromium")
DRIVER: Final = Path("/usr/bin/chromedriver")
ARTEFACTS: Final = Path(__file__).resolve().parents[4] / "artifacts" / "browser"
WAIT: Final = 30.0  # seconds: generous, the machine may be loaded

pytestmark = pytest.mark.skipif(
    not (CHROMIUM.exists() and DRIVER.exists()),
    reason="the browser tests need Debian's Chromium: "
    "apt-get install -y --no-install-recommends chromium chromium-driver",
)


@contextmanager
def opened_page(cwd: Path, *args: str) -> Iterator[webdriver.Chrome]:
    """The chat page of a fresh `python -m bot try` (with `args`), open in headless Chromium."""
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    options.add_argument("--window-size=1400,860")
    with trial(cwd, None, *args) as running:
        url = running.page_url()
        driver = webdriver.Chrome(options=options, service=Service(executable_path=str(DRIVER)))
        try:
            driver.get(url)
            shown(driver, '#chats li[data-chat="bot"]')  # the service registered its bot
            yield driver
        finally:
            driver.quit()


@pytest.fixture
def page(tmp_path: Path) -> Iterator[webdriver.Chrome]:
    with opened_page(tmp_path) as driver:
        yield driver


@pytest.fixture(scope="module")
def group_chat(tmp_path_factory: pytest.TempPathFactory) -> Iterator[webdriver.Chrome]:
    """One page for the attacks, open as Пётр in the supervisors' group chat."""
    with opened_page(tmp_path_factory.mktemp("attacks")) as driver:
        be(driver, 28)
        open_chat(driver, "chat2001")
        yield driver


def shown(driver: webdriver.Chrome, css: str, text: str = "") -> WebElement:
    """The first element matching `css` (and holding `text`), once the page shows it."""

    def find(driver: webdriver.Chrome) -> WebElement | Literal[False]:
        for element in driver.find_elements(By.CSS_SELECTOR, css):
            if text in element.text:
                return element
        return False

    waiting = WebDriverWait(driver, WAIT, ignored_exceptions=[StaleElementReferenceException])
    found: WebElement = waiting.until(find)
    return found


def be(driver: webdriver.Chrome, user_id: int) -> None:
    Select(driver.find_element(By.ID, "me")).select_by_value(str(user_id))


def open_chat(driver: webdriver.Chrome, key: str) -> None:
    """Click the chat in the list; the list is redrawn as messages arrive, so an element found
    a moment ago may be gone: find it again and click until a click lands."""

    def click(driver: webdriver.Chrome) -> bool:
        driver.find_element(By.CSS_SELECTOR, f'#chats li[data-chat="{key}"]').click()
        return True

    ignored = [StaleElementReferenceException, NoSuchElementException]
    WebDriverWait(driver, WAIT, ignored_exceptions=ignored).until(click)


def type_in(driver: webdriver.Chrome, text: str) -> None:
    field = driver.find_element(By.ID, "text")
    field.send_keys(text)
    field.send_keys(Keys.ENTER)


def customer_side(driver: webdriver.Chrome) -> list[str]:
    """The texts the customer's side of the open-line chat shows."""
    shown(driver, "#customer-feed .message")
    return [m.text for m in driver.find_elements(By.CSS_SELECTOR, "#customer-feed .message")]


def vote_of(driver: webdriver.Chrome, session_id: int, stars: str) -> WebElement:
    return shown(driver, f'#sessions tr[data-session="{session_id}"] .vote', stars)


def test_a_rate_typed_to_the_bot_is_answered_and_shown_in_the_sessions(
    page: webdriver.Chrome,
) -> None:
    be(page, 27)
    me = Select(page.find_element(By.ID, "me")).first_selected_option.text
    assert me.startswith("Светлана Иванова (27) — supervisor, may rate"), "the id to configure"
    open_chat(page, "bot")
    type_in(page, "/rate 494 5 Молодец")
    answer = shown(page, "#feed .message.bot", "Сохранено")
    assert "494" in answer.text
    assert "Молодец" in answer.text
    assert vote_of(page, 494, "★★★★★").get_attribute("title") == "5"


def test_a_star_clicked_after_a_rate_in_an_open_line_is_saved_and_the_customer_sees_nothing(
    page: webdriver.Chrome, capsys: pytest.CaptureFixture[str]
) -> None:
    be(page, 27)
    open_chat(page, "chat1157")
    shown(page, "#chat-about", "the bot answers a /rate here in your private chat with it")
    dialog = customer_side(page)  # the customer's messages and the operator's answers
    type_in(page, "/rate")
    open_chat(page, "bot")  # the bot answers the supervisor privately, with stars to click
    prompt = shown(page, "#feed .message.bot", "494")
    prompt.find_element(By.CSS_SELECTOR, '.keyboard button[data-button="3"]').click()
    vote_of(page, 494, "★★★★☆")
    shown(page, "#feed .message.bot", "Сохранено")
    open_chat(page, "chat1157")
    shown(page, "#feed .message.mine", "/rate")
    assert customer_side(page) == dialog, "neither the command nor an answer reached the customer"
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    screenshot = ARTEFACTS / "chat-page.png"
    assert page.save_screenshot(str(screenshot))
    with capsys.disabled():
        print(f"\nscreenshot of the chat page: {screenshot}")  # noqa: T201 - where the artefact is


# What a user may type to make the page run something, and the text the page shows instead.
ATTACKS: Final = (
    ('<img src=x onerror="window.pwned=1">', '<img src=x onerror="window.pwned=1">'),
    ("[url=javascript:window.pwned=2]ссылка[/url]", "[url=javascript:window.pwned=2]ссылка[/url]"),
    ('[send=x" onclick="window.pwned=3]кнопка[/send]', "кнопка"),  # a command link, as in B24
    ('[color=red" onmouseover="window.pwned=4]цвет[/color]', '[color=red" onmouseover="window'),
)


@pytest.mark.parametrize(("attack", "text"), ATTACKS)
def test_an_attack_typed_into_a_chat_is_shown_as_text_and_runs_nothing(
    group_chat: webdriver.Chrome, attack: str, text: str
) -> None:
    page = group_chat
    type_in(page, attack)
    message = shown(page, "#feed .message.mine .body", text)
    for link in message.find_elements(By.CSS_SELECTOR, "a, span"):
        link.click()
    assert page.execute_script("return window.pwned") is None
    live = page.execute_script(
        "return [...document.querySelectorAll('#feed *')].flatMap(e => [...e.attributes]"
        ".filter(a => a.name.startsWith('on') || /javascript:/i.test(a.value)).map(a => a.name))"
    )
    assert live == []
    assert page.find_elements(By.CSS_SELECTOR, "#feed img") == []


def test_in_the_telegram_group_a_rate_and_a_pressed_star_are_saved_and_fed(
    page: webdriver.Chrome,
) -> None:
    be(page, 27)  # Светлана's Telegram account is linked to her portal account
    open_chat(page, "tg-2001")
    type_in(page, "/rate 495 3 Норм")
    shown(page, "#feed .message.telegram.bot", "Сохранено")
    vote_of(page, 495, "★★★☆☆")
    type_in(page, "/rate 494")
    prompt = shown(page, "#feed .message.telegram.bot", "494")
    prompt.find_element(By.CSS_SELECTOR, ".keyboard button:nth-child(2)").click()
    vote_of(page, 494, "★★☆☆☆")
    open_chat(page, "tg-2004")  # the feed: every saved vote, once
    shown(page, "#feed .message.telegram.bot", "сессия 495")
    shown(page, "#feed .message.telegram.bot", "сессия 494")


def test_colour_and_size_are_drawn_under_a_policy_that_refuses_inline_styles(
    group_chat: webdriver.Chrome,
) -> None:
    page = group_chat
    type_in(page, "[color=#ff0000]красный[/color] и [size=24]крупный[/size]")
    message = shown(page, "#feed .message.mine .body", "крупный")
    red = message.find_element(By.CSS_SELECTOR, "span.bb-color")
    big = message.find_element(By.CSS_SELECTOR, "span.bb-size")
    assert red.value_of_css_property("color") in ("rgba(255, 0, 0, 1)", "rgb(255, 0, 0)")
    assert big.value_of_css_property("font-size") == "24px"


AUTHORIZE: Final = "https://b24.example.com/oauth/authorize/?client_id=local.1&state=n0nce"
# Links a button may carry that must open nothing: the page shows them, inert.
HOSTILE_LINKS: Final = (
    "javascript:window.pwned=1",
    " JavaScript:window.pwned=2",
    "data:text/html,<script>window.pwned=3</script>",
    "tg://resolve?domain=SandboxRatingBot",
)


def bot_sends_a_link(page: webdriver.Chrome, text: str) -> None:
    """The bot posts `text` with a url button in the supervisors' group, through the fake Bot
    API over HTTP, as the service would."""
    body = {
        "chat_id": SUPERVISORS_GROUP,
        "text": text,
        "reply_markup": {"inline_keyboard": [[{"text": "Связать аккаунт", "url": AUTHORIZE}]]},
    }
    port = urlsplit(page.current_url).port
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/telegram/bot{TOKEN}/sendMessage",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310 - loopback
        assert json.load(answer)["ok"] is True


def test_a_link_button_is_a_link_to_a_new_tab_as_the_person_the_page_plays(
    page: webdriver.Chrome,
) -> None:
    assert page.get_cookie("sandbox_user") is not None, "set for the person the page opens as"
    be(page, 28)
    cookie = page.get_cookie("sandbox_user")
    assert cookie is not None
    assert (cookie["value"], cookie["path"], cookie["sameSite"]) == ("28", "/", "Lax")
    bot_sends_a_link(page, "Свяжите аккаунт Битрикс24")
    open_chat(page, "tg-2001")
    shown(page, "#feed .message.telegram.bot", "Свяжите аккаунт")
    link = shown(page, "#feed .message.telegram.bot .keyboard a.link-button", "Связать")
    assert link.get_attribute("href") == AUTHORIZE
    assert link.get_attribute("target") == "_blank"
    assert sorted(str(link.get_attribute("rel")).split()) == ["noopener", "noreferrer"]
    drawn = page.execute_script(
        "return arguments[0].map((link) => { const node = linkButton('x', link, {});"
        " node.click(); return [node.tagName, node.getAttribute('href')]; })",
        list(HOSTILE_LINKS),
    )
    assert drawn == [["SPAN", None]] * len(HOSTILE_LINKS), "shown, but no link to follow"
    assert page.execute_script("return window.pwned") is None
    page.refresh()  # the page comes back as the person it played
    shown(page, '#chats li[data-chat="bot"]')
    assert (
        Select(page.find_element(By.ID, "me")).first_selected_option.get_attribute("value") == "28"
    )


def sandbox_json(page: webdriver.Chrome, path: str) -> Any:
    """What the sandbox serving `page` answers at `path`."""
    return get_json(f"http://127.0.0.1:{urlsplit(page.current_url).port}{path}")


def test_in_application_mode_a_supervisor_allows_once_in_a_new_tab_and_the_vote_is_saved(
    tmp_path: Path,
) -> None:
    """`make run APP=1`: Светлана's first /rate waits for her consent; one click on the
    button, the portal's consent in a new tab lands on the service's page, and back in the
    chat her waiting vote is answered, saved with her own token."""
    with opened_page(tmp_path, "--app") as page:
        callback = sandbox_json(page, "/_sandbox/oauth")["app"]["handler_url"]
        be(page, 27)
        open_chat(page, "bot")
        type_in(page, "/rate 494 5 Молодец")
        button = shown(page, "#feed .message.bot .keyboard a.link-button", "Разрешить")
        assert sandbox_json(page, "/_sandbox/sessions/494")["vote_head"] == 0, "it waits"
        chat = page.current_window_handle
        button.click()
        WebDriverWait(page, WAIT).until(lambda driver: len(driver.window_handles) == 2)
        page.switch_to.window(next(h for h in page.window_handles if h != chat))
        shown(page, "body", "Готово")
        assert page.current_url.startswith(callback + "?"), "the service's page, via consent"
        page.close()
        page.switch_to.window(chat)
        answer = shown(page, "#feed .message.bot", "Сохранено")
        assert "★★★★★ 5/5" in answer.text
        assert "Молодец" in answer.text
        vote_of(page, 494, "★★★★★")
        votes = [
            (call["user_id"], call["auth"])
            for call in sandbox_json(page, "/_sandbox/calls")
            if call["method"] == "imopenlines.session.head.vote" and call["status"] == 200
        ]
        assert votes == [(27, "token")], "cast once, with Светлана's own token"
        assert sandbox_json(page, "/_sandbox/sessions/494")["vote_head"] == 5
