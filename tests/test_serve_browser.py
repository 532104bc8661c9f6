"""The demo page of `kdl serve` in a real browser: headless Chromium (the system's chromium and
chromedriver, driven by Selenium) loads the page of a served digits run, uploads
docs/examples/seven.png, presses Predict and shows the label `recipe.predict` gives, with the
explanation picture; a file that is not an image shows the server's error on the page. The
screenshot is written to the test's tmp folder (docs/images/serve/demo_page.png is one of them).

Run in the jax session of `make test` only: the page and the server are the same on every
backend, and tests/test_serve.py covers the server on each.
"""

import os
import shutil

import pytest
from test_serve import SEVEN, serve_load

import kdl

CHROMIUM = os.environ.get("KDL_CHROMIUM", shutil.which("chromium") or "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("KDL_CHROMEDRIVER", shutil.which("chromedriver") or "/usr/bin/chromedriver")
WAIT = 120        # seconds for the page's answer (a loaded machine, a first call that compiles)

pytestmark = pytest.mark.skipif(not (os.path.isfile(CHROMIUM) and os.path.isfile(CHROMEDRIVER)),
                                reason=f"no headless browser: {CHROMIUM} and {CHROMEDRIVER} are needed "
                                       "(`make browser` installs Debian's chromium and chromium-driver)")


@pytest.fixture(scope="module")
def page(backend, tmp_path_factory):
    if backend != "jax":
        pytest.skip("the page and the server do not depend on the backend: run once, in the jax session "
                    "(tests/test_serve.py covers the server on every backend)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium drives the browser (kdl[test])")
    run = train_digits(tmp_path_factory.mktemp("browser"))
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=860,1180"):
        options.add_argument(argument)
    with serve_load.start_server(run, backend=backend) as url:
        driver = webdriver.Chrome(service=webdriver.ChromeService(CHROMEDRIVER), options=options)
        try:
            driver.get(url)
            _wait_for_state(driver, ("ready",))
            yield kdl.recipes.load(run), driver
        finally:
            driver.quit()


def train_digits(folder):
    """A small CNN trained for a few seconds on the embedded digits, saved to folder/digits."""
    recipe = kdl.recipes.image_classifier(epochs=4, filters=[8], dense=16, seed=0)
    recipe.fit(verbose=0)
    return recipe.save(folder / "digits")


def _wait_for_state(driver, states):
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, WAIT).until(
        lambda d: d.find_element("tag name", "body").get_attribute("data-state") in states)
    return driver.find_element("tag name", "body").get_attribute("data-state")


def test_the_page_shows_the_runs_prediction_for_an_uploaded_image(page, tmp_path):
    recipe, driver = page
    assert "image classifier" in driver.find_element("id", "task").text
    driver.find_element("id", "files").send_keys(str(SEVEN))
    driver.find_element("id", "predict").click()
    state = _wait_for_state(driver, ("done", "error"))
    assert state == "done", driver.find_element("id", "error").text
    expected = recipe.predict(str(SEVEN))
    shown = driver.find_element("css selector", ".prediction .label").text
    assert shown == expected.labels[0]
    bars = driver.find_elements("css selector", ".prediction .top tr")
    assert len(bars) == 5 and bars[0].text.split()[0] == expected.labels[0]
    picture = driver.find_element("css selector", ".prediction img.explanation")
    assert driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth", picture) > 100
    driver.save_screenshot(str(tmp_path / "demo_page.png"))
    assert (tmp_path / "demo_page.png").stat().st_size > 1000


def test_the_page_shows_the_servers_error(page, tmp_path):
    _, driver = page
    (tmp_path / "notes.png").write_text("not an image")
    driver.find_element("id", "files").clear()
    driver.find_element("id", "files").send_keys(str(tmp_path / "notes.png"))
    driver.find_element("id", "predict").click()
    assert _wait_for_state(driver, ("error", "done")) == "error"
    message = driver.find_element("id", "error").text
    assert "cannot read image notes.png" in message and "HTTP 422" in message
    assert driver.find_elements("css selector", ".prediction") == []
