"""The labelling page in a real headless Chromium (Playwright) against a real server process on loopback: keyboard
answers land in the store's preference table, undo takes one back, a second labeller is recorded as such, and a
server killed with SIGKILL loses no recorded answer."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

from embodied.datasets.preferences import read_preferences

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run"]  # fmt: skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(store, port, *extra) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-m", "embodied.cli", "label", f"dataset={store}", f"port={port}",
                                "queries=3", *extra], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # readiness, not a timing assumption: poll until it answers or dies
        if process.poll() is not None:
            raise AssertionError(f"label server exited: {process.stdout.read().decode()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
                if json.load(response)["ok"]:
                    return process
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise AssertionError("label server never answered /healthz")


@pytest.fixture()
def store(image_store, tmp_path):
    path = tmp_path / "store.zarr"
    shutil.copytree(image_store, path)
    return path


@pytest.fixture()
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield browser
        browser.close()


def _progress(page, answered: int) -> None:
    page.wait_for_function(f"document.getElementById('progress').textContent.startsWith('{answered} of')")


def test_keyboard_answers_undo_and_a_second_labeller_land_in_the_store(store, browser):
    port = _free_port()
    server = _start(store, port, "labeller=alice")
    try:
        page = browser.new_page()
        page.goto(f"http://127.0.0.1:{port}/")
        page.wait_for_selector("body[data-state=asking]")
        assert page.locator("canvas").count() == 2
        page.wait_for_function("document.querySelector('canvas').width > 0")  # the frames play
        first = int(page.get_attribute("body", "data-query"))
        page.keyboard.press("ArrowLeft")
        _progress(page, 1)
        page.keyboard.press("ArrowDown")
        _progress(page, 2)
        page.keyboard.press("u")  # takes back the "equal" answer
        _progress(page, 1)
        page.keyboard.press("ArrowRight")
        _progress(page, 2)
        page.keyboard.press(" ")  # replay: nothing recorded
        page.keyboard.press("ArrowLeft")
        page.wait_for_selector("body[data-state=done]")
        page.fill("#labeller", "bob")  # a second person answers the same queries
        page.dispatch_event("#labeller", "change")
        page.wait_for_selector("body[data-state=asking]")
        page.keyboard.press("ArrowRight")
        _progress(page, 1)
        bad = urllib.request.Request(f"http://127.0.0.1:{port}/api/answer", data=b'{"query": 99, "ranking": [0, 1], '
                                     b'"labeller": "x"}', headers={"Content-Type": "application/json"})  # fmt: skip
        with pytest.raises(urllib.error.HTTPError) as error:
            urllib.request.urlopen(bad)
        assert error.value.code == 422
        again = urllib.request.Request(f"http://127.0.0.1:{port}/api/answer", data=json.dumps(
            {"query": first, "ranking": [0, 1], "labeller": "alice"}).encode(),
            headers={"Content-Type": "application/json"})  # fmt: skip
        with pytest.raises(urllib.error.HTTPError) as error:  # one answer per person and query
            urllib.request.urlopen(again)
        assert error.value.code == 409
    finally:
        server.send_signal(signal.SIGKILL)  # no clean shutdown: every answer must already be committed
        server.wait()
    prefs = read_preferences(store)
    names = [prefs.labellers[i] for i in prefs.labeller]
    assert names == ["alice", "alice", "alice", "bob"]
    np.testing.assert_array_equal(prefs.ranking[:, :2], [[0, 1], [1, 0], [0, 1], [1, 0]])
    assert (prefs.episodes[:, 2] == -1).all()
    assert {tuple(sorted(row[:2])) for row in prefs.episodes[:3]} == {(0, 1), (0, 2), (1, 2)}  # 3 queries, once each
    assert tuple(prefs.episodes[3, :2]) == tuple(prefs.episodes[0, :2])  # bob's first query is alice's first
    assert first == 0

    server = _start(store, port, "labeller=bob")  # the lock died with the killed server; bob resumes at query 2
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/next?labeller=bob") as response:
            assert json.load(response)["progress"] == {"answered": 1, "total": 3}
    finally:
        server.terminate()
        server.wait()


def test_triplets_are_ranked_with_number_keys(store, browser):
    port = _free_port()
    server = _start(store, port, "query_size=3", "queries=1")
    try:
        page = browser.new_page()
        page.goto(f"http://127.0.0.1:{port}/")
        page.wait_for_selector("body[data-state=asking]")
        page.keyboard.press("3")
        page.keyboard.press("1")
        page.wait_for_selector("body[data-state=done]")
    finally:
        server.terminate()
        server.wait()
    prefs = read_preferences(store)
    np.testing.assert_array_equal(prefs.ranking, [[1, 2, 0]])  # shown third is best, first is second


def test_the_server_refuses_remote_hosts_unless_told(store):
    from embodied.cli import main

    assert main(["label", f"dataset={store}", "host=0.0.0.0"]) == 2
